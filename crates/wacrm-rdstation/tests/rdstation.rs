//! The RD Station CRM adapter driven by the sync engine against the RD Station fake, which
//! validates every request against the documented v2 shapes, rotates refresh tokens and
//! enforces 120 requests a minute: the conformance suite, the calls a thousand messages cost,
//! the rate window, a restart after token rotation, where messages go, setup and check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wacrm_core::{Direction, ErrorClass, Event};
use wacrm_crm::{ConnectionConfig, CrmAdapter};
use wacrm_rdstation::mapping;
use wacrm_rdstation::{LogTo, RdStation, RdStationConfig};
use wacrm_sync::SyncEngine;
use wacrm_testkit::conformance::{self, same_phone, Canned, Held, Target};
use wacrm_testkit::rdstation::{FakeConfig, RdStationFake};

const SLUG: &str = "whatsapp_id";

/// Requests a minute for tests that count calls rather than time (the fake enforces the same).
const FAST: u32 = 100_000;

fn config(fake: &RdStationFake, api_host: &str, token_file: &Path, rpm: u32) -> RdStationConfig {
    let f = fake.config();
    let mut config = RdStationConfig {
        client_id: f.client_id,
        client_secret: f.client_secret,
        refresh_token: f.refresh_token,
        token_file: token_file.display().to_string(),
        // API calls through the fault proxy when given one; tokens straight from the fake.
        base_url: format!("{api_host}/crm/v2"),
        token_url: fake.token_url(),
        requests_per_minute: rpm,
        ..RdStationConfig::default()
    };
    config.sync.name = "rdstation".into();
    config
}

fn fake_config(rpm: u32) -> FakeConfig {
    FakeConfig {
        requests_per_minute: rpm,
        ..FakeConfig::default()
    }
}

struct RdTarget {
    fake: RdStationFake,
    dir: tempfile::TempDir,
    rpm: u32,
}

impl RdTarget {
    fn token_file(&self) -> std::path::PathBuf {
        self.dir.path().join("rdstation.oauth.json")
    }

    fn config(&self, api_host: &str) -> RdStationConfig {
        config(&self.fake, api_host, &self.token_file(), self.rpm)
    }
}

/// Which contact a task is on: its deal's first contact.
fn held(fake: &RdStationFake) -> HashMap<String, Vec<Held>> {
    let deals: HashMap<String, Value> = fake
        .deals()
        .into_iter()
        .map(|d| (d["id"].as_str().unwrap().to_owned(), d))
        .collect();
    let mut out: HashMap<String, Vec<Held>> = HashMap::new();
    for task in fake.tasks() {
        let text = task["description"].as_str().unwrap_or_default();
        let contact = deals[task["deal_id"].as_str().unwrap()]["contact_ids"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for wamid in mapping::wamids_in(text) {
            out.entry(wamid.clone()).or_default().push(Held {
                contact: contact.clone(),
                status: mapping::status_in(text, &wamid),
            });
        }
    }
    out
}

impl Target for RdTarget {
    fn name(&self) -> &'static str {
        "rdstation"
    }

    fn upstream(&self) -> String {
        self.fake.base_url()
    }

    fn adapter(&self, base_url: &str) -> (ConnectionConfig, Arc<dyn CrmAdapter>) {
        let config = self.config(base_url);
        (
            config.sync.clone(),
            Arc::new(RdStation::new(config).unwrap()),
        )
    }

    /// crm-v2-introduction: 429 with `Retry-After` in seconds, the v2 error envelope.
    fn rate_limited(&self) -> Canned {
        Canned::json(
            429,
            &[("retry-after", "0")],
            json!({"errors": [{"code": "TOO_MANY_REQUESTS", "detail": "rate limit exceeded"}]}),
        )
    }

    /// RD Station documents 120 requests a minute and no daily quota.
    fn quota_exhausted(&self) -> Option<Canned> {
        None
    }

    fn rejected(&self) -> Canned {
        Canned::json(
            422,
            &[],
            json!({"errors": [{"code": "UNPROCESSABLE_ENTITY", "detail": "invalid"}]}),
        )
    }

    fn messages(&self) -> HashMap<String, Vec<Held>> {
        held(&self.fake)
    }

    fn contacts_for(&self, whatsapp_id: &str) -> Vec<String> {
        self.fake
            .contacts()
            .into_iter()
            .filter(|c| {
                c["custom_fields"][SLUG].as_str() == Some(whatsapp_id)
                    || c["phones"].as_array().into_iter().flatten().any(|p| {
                        p["phone"]
                            .as_str()
                            .is_some_and(|p| same_phone(p, whatsapp_id))
                    })
            })
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn hand_made_contact(&self, phone: &str, name: &str) -> Option<String> {
        Some(self.fake.insert_contact(name, phone))
    }

    fn violations(&self) -> Vec<String> {
        self.fake.violations()
    }

    fn holds(&self, text: &str) -> bool {
        self.fake.holds(text)
    }
}

async fn started(rpm: u32) -> RdTarget {
    let target = RdTarget {
        fake: RdStationFake::start(fake_config(rpm)).await,
        dir: tempfile::tempdir().unwrap(),
        rpm,
    };
    let adapter = RdStation::new(target.config(&target.fake.base_url())).unwrap();
    assert!(
        adapter.setup().await.unwrap().is_empty(),
        "setup creates nothing"
    );
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdstation_passes_the_conformance_suite() {
    let target = started(FAST).await;
    conformance::run(&target).await;
    assert_eq!(target.fake.rate_violations(), 0);
    // The hand-made contact kept the phone its salesperson typed.
    let hand_made = target
        .fake
        .contacts()
        .into_iter()
        .find(|c| c["name"] == "Maria Souza")
        .unwrap();
    assert!(
        hand_made["phones"][0]["phone"]
            .as_str()
            .is_some_and(|p| p.starts_with("+55 11 8")),
        "{hand_made}"
    );
    assert_eq!(
        hand_made["custom_fields"][SLUG].as_str(),
        Some(conformance::wa_id(7, 0).as_str())
    );
    // Every task is a completed WhatsApp task on a deal.
    for task in target.fake.tasks() {
        assert_eq!(task["type"], "whatsapp", "{task}");
        assert_eq!(task["status"], "completed", "{task}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_what_is_missing_and_a_bad_token_is_fatal() {
    let fake = RdStationFake::start(FakeConfig {
        contact_fields: Vec::new(),
        ..FakeConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.json");
    let adapter = RdStation::new(config(&fake, &fake.base_url(), &file, FAST)).unwrap();
    let missing = adapter.check().await.unwrap_err();
    assert_eq!(missing.class(), ErrorClass::Fatal);
    assert!(missing.to_string().contains("whatsapp_id"), "{missing}");
    assert!(missing.to_string().contains("wacrm crm setup"), "{missing}");
    // setup cannot create the field (the API documents no way): it says what to create.
    let setup = adapter.setup().await.unwrap_err().to_string();
    assert!(setup.contains("Campos personalizados"), "{setup}");
    fake.add_contact_field("WhatsApp ID", SLUG);
    assert!(adapter.setup().await.unwrap().is_empty());
    let ok = adapter.check().await.unwrap();
    assert!(ok.iter().any(|l| l.contains(SLUG)), "{ok:?}");
    // A configured pipeline that does not exist is reported.
    let mut wrong_pipeline = config(&fake, &fake.base_url(), &file, FAST);
    wrong_pipeline.pipeline_id = "0123456789abcdef01234567".into();
    let err = RdStation::new(wrong_pipeline).unwrap().check().await;
    assert!(err.unwrap_err().to_string().contains("pipeline_id"));
    // A refresh token RD Station does not know: fatal.
    let mut wrong = config(
        &fake,
        &fake.base_url(),
        &dir.path().join("other.json"),
        FAST,
    );
    wrong.refresh_token = "not-a-refresh-token".into();
    let err = RdStation::new(wrong).unwrap().check().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Fatal, "{err}");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// RD Station retires a refresh token once used: the rotated one is kept in the token file,
/// so a new process on the same file still works, and the configured token alone no longer
/// would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_survives_a_restart() {
    let fake = RdStationFake::start(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crm").join("rd.oauth.json");
    let configured = fake.config().refresh_token;

    let first = RdStation::new(config(&fake, &fake.base_url(), &file, FAST)).unwrap();
    first.check().await.unwrap();
    assert_eq!(fake.retired_refresh_tokens(), vec![configured.clone()]);
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains(&fake.current_refresh_token()), "{saved}");
    assert!(
        !saved.contains(&configured),
        "the configured token is not stored"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    drop(first);

    // The process restarts after its access token expired: same configuration, same file.
    fake.expire_access_tokens();
    let second = RdStation::new(config(&fake, &fake.base_url(), &file, FAST)).unwrap();
    second.check().await.unwrap();
    assert_eq!(fake.retired_refresh_tokens().len(), 2);
    // An access token refused mid-run (revoked): renewed once, with the newest refresh token.
    fake.expire_access_tokens();
    second.check().await.unwrap();
    assert_eq!(fake.retired_refresh_tokens().len(), 3);

    // The configured token alone (no file) is retired: RD refuses it.
    let without_file = dir.path().join("fresh.json");
    let third = RdStation::new(config(&fake, &fake.base_url(), &without_file, FAST)).unwrap();
    let err = third.check().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Fatal, "{err}");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

fn message(i: usize, contact: usize) -> Event {
    conformance::text_message(
        &format!("wamid.rd{i}"),
        &format!("5511988{contact:06}"),
        &format!("Cliente {contact}"),
        1_780_000_000 + i as i64,
        Direction::Inbound,
        &format!("mensagem {i}"),
    )
}

/// v2 creates one record per request: a batch costs a lookup per ten contacts, a create per
/// new contact, a deal lookup per fifty contacts, a deal per contact without one, and a task
/// (plus its completion) per contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_a_hundred_contacts() {
    let target = started(FAST).await;
    let fake = &target.fake;
    let (db, _dir) = conformance::temp_store().await;
    let (sync, adapter) = target.adapter(&fake.base_url());
    let mut engine = SyncEngine::new(sync, adapter, db);
    fake.clear_requests();
    let first: Vec<Event> = (0..1000).map(|i| message(i, i % 100)).collect();
    assert_eq!(conformance::sync_batch(&mut engine, &first).await, vec![]);
    let new_contacts = fake.requests();
    fake.clear_requests();
    let second: Vec<Event> = (1000..2000).map(|i| message(i, i % 100)).collect();
    assert_eq!(conformance::sync_batch(&mut engine, &second).await, vec![]);
    let known_contacts = fake.requests();
    let count = |requests: &[wacrm_testkit::rdstation::FakeRequest], method: &str, path: &str| {
        requests
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path))
            .count()
    };
    for (label, r) in [("100 new", &new_contacts), ("100 known", &known_contacts)] {
        eprintln!(
            "RD Station calls for 1,000 messages from {label} contacts: {} (contact lookups {}, \
             contact creates {}, deal lookups {}, deal creates {}, task creates {}, task \
             updates {}, other {})",
            r.len(),
            count(r, "GET", "/crm/v2/contacts"),
            count(r, "POST", "/crm/v2/contacts"),
            count(r, "GET", "/crm/v2/deals"),
            count(r, "POST", "/crm/v2/deals"),
            count(r, "POST", "/crm/v2/tasks"),
            count(r, "PUT", "/crm/v2/tasks"),
            count(r, "GET", "/crm/v2/users") + count(r, "GET", "/crm/v2/custom_fields"),
        );
    }
    assert_eq!(fake.contacts().len(), 100);
    assert_eq!(fake.deals().len(), 100, "one deal per contact, reused");
    let held = target.messages();
    assert_eq!(held.len(), 2000);
    assert!(held.values().all(|v| v.len() == 1));
    // Floors: 10 lookups + 100 contacts + 2 deal lookups + 100 deals + 100 tasks + 100
    // completions (+ users and custom fields once); then 2 deal lookups + 200 task calls.
    assert!(new_contacts.len() <= 415, "{} calls", new_contacts.len());
    assert!(
        known_contacts.len() <= 202,
        "{} calls",
        known_contacts.len()
    );
    assert_eq!(fake.rate_violations(), 0);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// With RD Station's real limit, the busiest minute stays within 120 requests (the SDK keeps
/// a margin): about 125 requests, so the test takes a little over a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_busiest_minute_stays_within_120_requests() {
    let target = started(120).await;
    let fake = &target.fake;
    let (db, _dir) = conformance::temp_store().await;
    let (sync, adapter) = target.adapter(&fake.base_url());
    let mut engine = SyncEngine::new(sync, adapter, db);
    fake.clear_requests();
    let events: Vec<Event> = (0..300).map(|i| message(i, i % 30)).collect();
    let started = std::time::Instant::now();
    assert_eq!(conformance::sync_batch(&mut engine, &events).await, vec![]);
    let busiest = fake.max_requests_in_any_window(Duration::from_secs(60));
    eprintln!(
        "RD Station: {} requests in {:.1?}, busiest rolling minute {busiest}",
        fake.requests().len(),
        started.elapsed()
    );
    assert!(
        fake.requests().len() > 120,
        "the test must outlast the window"
    );
    assert!(busiest <= 120, "{busiest} requests in a minute");
    assert_eq!(fake.rate_violations(), 0);
    assert_eq!(target.messages().len(), 300);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// `log_to = "deal"`: a contact's open deal is where the salesperson works, so the messages
/// go there; `log_to = "whatsapp_deal"`: a deal of the contact's own in the WhatsApp
/// pipeline, reused batch after batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_on_the_open_deal_or_a_whatsapp_deal() {
    let target = started(FAST).await;
    let fake = &target.fake;
    let maria = fake.insert_contact("Maria", "+55 11 98800-0001");
    let won = fake.insert_deal("Pedido antigo", &maria, "won");
    let open = fake.insert_deal("Proposta", &maria, "ongoing");
    let (db, _dir) = conformance::temp_store().await;
    let (sync, adapter) = target.adapter(&fake.base_url());
    let mut engine = SyncEngine::new(sync, adapter, db);
    let batch: Vec<Event> = (0..3).map(|i| message(i, 1)).collect();
    assert_eq!(conformance::sync_batch(&mut engine, &batch).await, vec![]);
    let tasks = fake.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["deal_id"].as_str(), Some(open.as_str()));
    assert_ne!(tasks[0]["deal_id"].as_str(), Some(won.as_str()));
    let text = tasks[0]["description"].as_str().unwrap();
    assert!(text.starts_with(mapping::TITLE), "{text}");
    assert!(text.contains("Recebida de Cliente 1: mensagem 0"), "{text}");
    assert_eq!(tasks[0]["name"], "Mensagens do WhatsApp (3)");

    // A WhatsApp pipeline of its own.
    let whatsapp = fake.pipeline_id("WhatsApp");
    let (db, _dir2) = conformance::temp_store().await;
    let mut config = target.config(&fake.base_url());
    config.log_to = LogTo::WhatsappDeal;
    config.pipeline_id = whatsapp.clone();
    config.deal_name = "Conversa WhatsApp".into();
    let adapter: Arc<dyn CrmAdapter> = Arc::new(RdStation::new(config.clone()).unwrap());
    let mut engine = SyncEngine::new(config.sync.clone(), adapter, db);
    for round in 0..2 {
        let batch: Vec<Event> = (0..4)
            .map(|i| message(100 + round * 10 + i, 2 + i % 2))
            .collect();
        assert_eq!(conformance::sync_batch(&mut engine, &batch).await, vec![]);
    }
    let mine: Vec<Value> = fake
        .deals()
        .into_iter()
        .filter(|d| d["pipeline_id"] == whatsapp.as_str())
        .collect();
    assert_eq!(mine.len(), 2, "one WhatsApp deal per contact: {mine:?}");
    assert!(mine.iter().all(|d| d["name"]
        .as_str()
        .unwrap()
        .starts_with("Conversa WhatsApp — Cliente ")));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// A number change writes the new WhatsApp id onto the contact, keeping what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_number_is_written_onto_the_contact() {
    let target = started(FAST).await;
    let fake = &target.fake;
    let contact = fake.insert_contact("Joana", "(21) 99876-5432");
    let adapter = RdStation::new(target.config(&fake.base_url())).unwrap();
    adapter
        .update_whatsapp_ids(&[(contact.clone(), "5521999990000".into())])
        .await
        .unwrap();
    let stored = fake
        .contacts()
        .into_iter()
        .find(|c| c["id"] == contact.as_str())
        .unwrap();
    assert_eq!(stored["custom_fields"][SLUG], "5521999990000");
    assert_eq!(stored["phones"][0]["phone"], "(21) 99876-5432");
    assert_eq!(stored["name"], "Joana");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn the_kind_is_named_rdstation() {
    use wacrm_crm::AdapterKind;
    assert_eq!(wacrm_rdstation::RdStationKind.kind(), "rdstation");
}
