//! The Kommo adapter driven by the sync engine against the Kommo fake, which validates every
//! request against Kommo's documented shapes and enforces its 7 requests a second: the
//! conformance suite, the calls a thousand messages cost, a refused item, setup and check.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wacrm_core::{Direction, ErrorClass, Event};
use wacrm_crm::{ConnectionConfig, CrmAdapter, CrmError};
use wacrm_kommo::{mapping, Kommo, KommoConfig};
use wacrm_sync::SyncEngine;
use wacrm_testkit::conformance::{self, same_phone, Canned, Held, Target};
use wacrm_testkit::kommo::{FakeConfig, KommoFake};

const CODE: &str = "WHATSAPP_ID";

fn config(fake: &KommoFake, base_url: &str) -> KommoConfig {
    let mut config = KommoConfig {
        token: fake.config().token,
        base_url: base_url.to_owned(),
        ..KommoConfig::default()
    };
    config.sync.name = "kommo".into();
    config
}

struct KommoTarget {
    fake: KommoFake,
}

impl Target for KommoTarget {
    fn name(&self) -> &'static str {
        "kommo"
    }

    fn upstream(&self) -> String {
        self.fake.base_url()
    }

    fn adapter(&self, base_url: &str) -> (ConnectionConfig, Arc<dyn CrmAdapter>) {
        let config = config(&self.fake, base_url);
        (config.sync.clone(), Arc::new(Kommo::new(config).unwrap()))
    }

    /// Kommo's 429 (no `Retry-After` documented; the body shape is the problem document's).
    fn rate_limited(&self) -> Canned {
        let mut canned = Canned::json(
            429,
            &[],
            json!({"title": "Too Many Requests", "type": "https://httpstatus.es/429", "status": 429,
                   "detail": "Too many requests"}),
        );
        canned.headers.retain(|(k, _)| k != "content-type");
        canned
            .headers
            .push(("content-type".into(), "application/problem+json".into()));
        canned
    }

    /// Kommo documents no daily quota (limitations page: 7 requests a second only).
    fn quota_exhausted(&self) -> Option<Canned> {
        None
    }

    /// A whole call refused for one item; the canned answer cannot know the call's request
    /// ids, so it names one the adapter never uses (`"0"`: the SDK notes the API refuses 0),
    /// and the adapter must find the item by splitting the call.
    fn rejected(&self) -> Canned {
        Canned::json(
            400,
            &[],
            json!({"title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400,
                   "detail": "Request validation failed",
                   "validation-errors": [{"request_id": "0", "errors": [
                       {"code": "InvalidValue", "path": "params.text", "detail": "This value is not valid."}]}]}),
        )
    }

    fn messages(&self) -> HashMap<String, Vec<Held>> {
        let mut out: HashMap<String, Vec<Held>> = HashMap::new();
        for note in self.fake.notes() {
            for wamid in mapping::wamids_in(&note.text) {
                out.entry(wamid.clone()).or_default().push(Held {
                    contact: note.entity_id.to_string(),
                    status: mapping::status_in(&note.text, &wamid),
                });
            }
        }
        out
    }

    fn contacts_for(&self, whatsapp_id: &str) -> Vec<String> {
        let field = self.fake.field_id(CODE).unwrap_or_default();
        self.fake
            .contacts()
            .into_iter()
            .filter(|c| {
                c.field(field).as_deref() == Some(whatsapp_id)
                    || c.phones.iter().any(|p| same_phone(p, whatsapp_id))
            })
            .map(|c| c.id.to_string())
            .collect()
    }

    fn hand_made_contact(&self, phone: &str, name: &str) -> Option<String> {
        Some(self.fake.insert_contact(name, phone).to_string())
    }

    fn violations(&self) -> Vec<String> {
        self.fake.violations()
    }

    fn holds(&self, text: &str) -> bool {
        self.fake.holds(text)
    }
}

async fn started() -> KommoTarget {
    let fake = KommoFake::start(FakeConfig::default()).await;
    let adapter = Kommo::new(config(&fake, &fake.base_url())).unwrap();
    let created = adapter.setup().await.unwrap();
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(
        adapter.setup().await.unwrap().is_empty(),
        "setup is idempotent"
    );
    KommoTarget { fake }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kommo_passes_the_conformance_suite() {
    let target = started().await;
    conformance::run(&target).await;
    assert_eq!(
        target.fake.rate_violations(),
        0,
        "more than 7 requests in a second"
    );
    let busiest = target
        .fake
        .max_requests_in_any_window(Duration::from_secs(1));
    eprintln!("kommo conformance: busiest second {busiest} requests");
    assert!(busiest <= 7, "{busiest} requests in a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_what_is_missing_and_a_bad_token_or_a_block_is_classified() {
    let fake = KommoFake::start(FakeConfig::default()).await;
    let adapter = Kommo::new(config(&fake, &fake.base_url())).unwrap();
    let missing = adapter.check().await.unwrap_err();
    assert_eq!(missing.class(), ErrorClass::Fatal);
    assert!(missing.to_string().contains("wacrm crm setup"), "{missing}");
    adapter.setup().await.unwrap();
    let ok = adapter.check().await.unwrap();
    assert!(ok.iter().any(|l| l.contains("WhatsApp ID")), "{ok:?}");
    assert!(ok.iter().any(|l| l.contains("token accepted")), "{ok:?}");

    let mut wrong = config(&fake, &fake.base_url());
    wrong.token = "not-the-token".into();
    let err = Kommo::new(wrong).unwrap().check().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Fatal, "{err}");
    assert!(!err.to_string().contains("not-the-token"), "{err}");

    // A blocked account (HTML 403) parks the connection, not stops it for good.
    fake.block(true);
    let err = adapter.check().await.unwrap_err();
    assert!(matches!(err, CrmError::QuotaExhausted { .. }), "{err}");
    fake.block(false);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    // No credential, no account: refused at once, naming what is missing.
    let mut none = config(&fake, "");
    none.token.clear();
    let err = Kommo::new(none).err().unwrap();
    assert!(err.to_string().contains("subdomain"), "{err}");
    let mut oauth = config(&fake, &fake.base_url());
    oauth.client_id = "integration-id".into();
    let err = Kommo::new(oauth).err().unwrap();
    assert!(err.to_string().contains("refresh_token"), "{err}");
}

fn message(i: usize, contact: usize) -> Event {
    conformance::text_message(
        &format!("wamid.km{i}"),
        &format!("5511977{contact:06}"),
        &format!("Cliente {contact}"),
        1_780_000_000 + i as i64,
        Direction::Inbound,
        &format!("mensagem {i}"),
    )
}

/// Contacts and notes go in arrays of 50: a batch of 1,000 messages from 100 new contacts
/// costs the field lookup, one page of the (empty) contact list, two contact creates and two
/// note creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_a_hundred_contacts_within_the_limits() {
    let target = started().await;
    let fake = &target.fake;
    let (db, _dir) = conformance::temp_store().await;
    let (sync, adapter) = target.adapter(&fake.base_url());
    let mut engine = SyncEngine::new(sync, adapter, db);
    fake.clear_requests();
    let first: Vec<Event> = (0..1000).map(|i| message(i, i % 100)).collect();
    assert_eq!(conformance::sync_batch(&mut engine, &first).await, vec![]);
    let new_contacts = fake.requests().len();

    // The same hundred people write again: they are known now.
    fake.clear_requests();
    let second: Vec<Event> = (1000..2000).map(|i| message(i, i % 100)).collect();
    assert_eq!(conformance::sync_batch(&mut engine, &second).await, vec![]);
    let known_contacts = fake.requests().len();
    eprintln!(
        "Kommo calls for 1,000 messages from 100 contacts: {new_contacts} with 100 new \
         contacts, {known_contacts} with the contacts known"
    );
    assert_eq!(fake.contacts().len(), 100);
    assert_eq!(target.messages().len(), 2000);
    assert!(target.messages().values().all(|v| v.len() == 1));
    assert!(new_contacts <= 6, "{new_contacts} calls");
    assert!(known_contacts <= 3, "{known_contacts} calls");
    assert_eq!(fake.rate_violations(), 0, "more than 7 requests a second");
    assert!(fake.max_requests_in_any_window(Duration::from_secs(1)) <= 7);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// Kommo refuses a whole call for one invalid item and names its `request_id`: that item alone
/// is dead-lettered, the rest is written once, with no splitting in halves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_kommo_refuses_by_request_id_is_dead_lettered_alone() {
    let target = started().await;
    let fake = &target.fake;
    let (db, _dir) = conformance::temp_store().await;
    let (sync, adapter) = target.adapter(&fake.base_url());
    let mut engine = SyncEngine::new(sync, adapter, db);
    let mut events: Vec<Event> = (0..30).map(|i| message(5000 + i, 500 + i % 3)).collect();
    events[7] = conformance::text_message(
        "wamid.km5007",
        &format!("5511977{:06}", 500 + 7 % 3),
        "Cliente",
        1_780_005_007,
        Direction::Inbound,
        "refuse-me",
    );
    fake.reject_text(Some("refuse-me"));
    fake.clear_requests();
    let dead = conformance::sync_batch(&mut engine, &events).await;
    fake.reject_text(None);
    assert_eq!(
        dead.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![7],
        "{dead:?}"
    );
    let held = target.messages();
    for i in (0..30).filter(|i| *i != 7) {
        assert_eq!(held[&format!("wamid.km{}", 5000 + i)].len(), 1, "{i}");
    }
    assert!(!held.contains_key("wamid.km5007"));
    let note_posts = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v4/contacts/notes")
        .count();
    // The call naming the note, the two other notes, the refused note's lines alone (named:
    // the other nine go in one call).
    assert!(note_posts <= 4, "{note_posts} note calls");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// OAuth 2: the access token comes from the refresh token, Kommo rotates the refresh token on
/// every use, and the newest is kept in the connection's file, so a restart with the
/// configured (now retired) token still works; an expired access token is renewed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_keeps_the_rotated_refresh_token_across_restarts() {
    let fake = KommoFake::start(FakeConfig {
        refresh_token: "first-refresh-token".into(),
        ..FakeConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let oauth = || {
        let mut c = config(&fake, &fake.base_url());
        c.token.clear();
        c.client_id = fake.config().client_id;
        c.client_secret = fake.config().client_secret;
        c.refresh_token = "first-refresh-token".into();
        c.token_file = dir.path().join("kommo.json").display().to_string();
        c.redirect_uri = "https://example.com/kommo/back".into();
        c
    };
    let adapter = Kommo::new(oauth()).unwrap();
    adapter.setup().await.unwrap();
    assert_eq!(fake.token_calls(), 1);
    assert_ne!(fake.current_refresh_token(), "first-refresh-token");

    // A restart with the configured token, which Kommo has retired: the file has the new one.
    let restarted = Kommo::new(oauth()).unwrap();
    restarted.check().await.unwrap();
    assert_eq!(fake.token_calls(), 2);

    // The access token expires early: refused once, renewed, sent again.
    fake.expire_access_tokens();
    restarted.check().await.unwrap();
    assert_eq!(fake.token_calls(), 3);
    let saved = std::fs::read_to_string(dir.path().join("kommo.json")).unwrap();
    assert!(!saved.contains("first-refresh-token"), "{saved}");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// The fake refuses what Kommo's documents rule out, and says so as a violation: a call over
/// the batch size, an undocumented query parameter, a list page over 250, a note type it does
/// not implement, a field that does not exist; and it refuses, without a violation, a note on a
/// contact that does not exist (Kommo's own refusal, naming the `request_id`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_refuses_requests_off_the_documented_shapes() {
    let fake = KommoFake::start(FakeConfig {
        requests_per_second: 100,
        ..FakeConfig::default()
    })
    .await;
    let client = reqwest::Client::new();
    let token = fake.config().token;
    let send = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut request = client
            .request(method, format!("{}{path}", fake.base_url()))
            .bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let contacts: Vec<serde_json::Value> =
        (0..51).map(|i| json!({"name": format!("c{i}")})).collect();
    let cases = [
        (
            reqwest::Method::POST,
            "/api/v4/contacts",
            Some(json!(contacts)),
        ),
        (reqwest::Method::GET, "/api/v4/contacts?sort=id", None),
        (reqwest::Method::GET, "/api/v4/contacts?limit=500", None),
        (
            reqwest::Method::POST,
            "/api/v4/contacts/notes",
            Some(json!([{"entity_id": 1, "note_type": "sms_in", "params": {"text": "x"}}])),
        ),
        (
            reqwest::Method::POST,
            "/api/v4/contacts",
            Some(
                json!([{"name": "x", "custom_fields_values": [{"field_id": 999, "values": [{"value": "1"}]}]}]),
            ),
        ),
        (reqwest::Method::GET, "/api/v4/leads", None),
    ];
    for (n, (method, path, body)) in cases.into_iter().enumerate() {
        let status = send(method, path, body).await.unwrap().status().as_u16();
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert_eq!(
            fake.violations().len(),
            n + 1,
            "{path}: {:?}",
            fake.violations()
        );
    }
    // An empty list is a 204 without a body.
    let empty = send(
        reqwest::Method::GET,
        "/api/v4/contacts?limit=250&page=1",
        None,
    )
    .await
    .unwrap();
    assert_eq!(empty.status().as_u16(), 204);
    // Kommo's own refusal: not a violation, the request_id named.
    let refused = send(
        reqwest::Method::POST,
        "/api/v4/contacts/notes",
        Some(json!([{"entity_id": 424242, "note_type": "common", "params": {"text": "x"}, "request_id": "7"}])),
    )
    .await
    .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["validation-errors"][0]["request_id"], "7");
    assert_eq!(fake.violations().len(), 6);
    // Without the token: 401, not counted.
    let anonymous = client
        .get(format!("{}/api/v4/account", fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}

/// The index reads the whole list once, then only what changed: a contact a salesperson makes
/// after the first read (phone typed without the 9th digit) is found by the next batch's
/// `filter[updated_at][from]` read, linked, and given the WhatsApp id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_made_by_hand_later_is_found_through_the_changes() {
    let target = started().await;
    let fake = &target.fake;
    let first = fake.insert_contact("Ana", "+55 11 7700-0001");
    let (db, _dir) = conformance::temp_store().await;
    let (sync, adapter) = target.adapter(&fake.base_url());
    let mut engine = SyncEngine::new(sync, adapter, db);
    let from = |n: usize, wa: &str| {
        conformance::text_message(
            &format!("wamid.later{n}"),
            wa,
            "Cliente",
            1_780_000_000 + n as i64,
            Direction::Inbound,
            "oi",
        )
    };
    assert_eq!(
        conformance::sync_batch(&mut engine, &[from(1, "5511977000001")]).await,
        vec![]
    );
    let second = fake.insert_contact("Bia", "(11) 7700-0002");
    fake.clear_requests();
    assert_eq!(
        conformance::sync_batch(&mut engine, &[from(2, "5511977000002")]).await,
        vec![]
    );
    let lists: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v4/contacts")
        .collect();
    assert_eq!(lists.len(), 1);
    assert!(
        lists[0]
            .query
            .iter()
            .any(|(k, _)| k == "filter[updated_at][from]"),
        "{:?}",
        lists[0].query
    );
    let held = target.messages();
    assert_eq!(held["wamid.later1"][0].contact, first.to_string());
    assert_eq!(held["wamid.later2"][0].contact, second.to_string());
    assert_eq!(fake.contacts().len(), 2, "no contact was created");
    let field = fake.field_id(CODE).unwrap();
    let bia = fake
        .contacts()
        .into_iter()
        .find(|c| c.id == second)
        .unwrap();
    assert_eq!(bia.field(field).as_deref(), Some("5511977000002"));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}
