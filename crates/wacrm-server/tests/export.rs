//! The data-subject export: every class of data of the contact and nothing of another, a
//! number-limited key's part, the audit, the scope, and a history longer than a page.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Utc};
use http::StatusCode;
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::{json, Value};
use wacrm_bus::runner::Handler;
use wacrm_core::contact::{ContactIdentity, IdentityKey};
use wacrm_core::message::{Direction, Media, MessageContent};
use wacrm_core::{BusinessNumber, ContactProfile, Event, Message, E164};
use wacrm_store::entities::dead_letter;
use wacrm_store::keys::Role;
use wacrm_testkit::webhooks;

use common::*;

const NUMBER_A: &str = "106540352242922";
const NUMBER_B: &str = "106540352240000";
const MARIA: &str = "5511966660001";
const JOAO: &str = "5511966660002";

async fn harness_sending() -> Harness {
    let mut whatsapp = sending();
    for number in [NUMBER_A, NUMBER_B] {
        whatsapp.numbers.insert(
            number.into(),
            wacrm_whatsapp::config::NumberConfig::default(),
        );
    }
    harness_full(None, Some(SECRET), whatsapp).await
}

async fn webhook(h: &Harness, body: Vec<u8>) {
    let (status, text) = call(&h.app, signed(body)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

fn ago(minutes: i64) -> i64 {
    (Utc::now() - chrono::Duration::minutes(minutes)).timestamp()
}

async fn contact_id(h: &Harness, phone: &str) -> String {
    let key = IdentityKey::Phone(E164::parse(phone).unwrap());
    wacrm_store::queries::find_contacts(&h.db, &[key], None)
        .await
        .unwrap()[0]
        .id
        .clone()
}

async fn dead_letter_naming(h: &Harness, id: &str, wa_id: &str, number: Option<&str>) {
    let payload = json!({"entry": [{"changes": [{"value": {"contacts": [{"wa_id": wa_id}],
        "messages": [{"from": wa_id, "type": "mystery"}]}}]}]});
    dead_letter::Entity::insert(dead_letter::ActiveModel {
        id: Set(id.into()),
        source: Set("webhook".into()),
        error_class: Set("dead_letter".into()),
        reason: Set("unreadable part".into()),
        headers: Set(json!({})),
        payload: Set(payload.to_string().into_bytes()),
        bus_offset: Set(1),
        created_at: Set(Utc::now()),
        resolved_at: Set(None),
        attempts: Set(0),
        last_error: Set(None),
        phone_number_id: Set(number.map(str::to_owned)),
    })
    .exec_without_returning(&h.db)
    .await
    .unwrap();
}

/// Reads an export: the status and the document.
async fn export(h: &Harness, id: &str, key: &str) -> (StatusCode, Value, String) {
    let (status, body) = h.get(&format!("/v1/contacts/{id}/export"), Some(key)).await;
    let doc = serde_json::from_str(&body).unwrap_or(Value::Null);
    (status, doc, body)
}

/// Maria and João, with every kind of data wacrm keeps: messages in and out with statuses, a
/// send request, a keyword opt-out, a consent record, dead letters, CRM links and ledger rows,
/// reads and searches in the audit log.
async fn two_contacts(h: &Harness) -> (String, String) {
    for (who, body, wamid) in [
        (MARIA, "segredo da Maria", "wamid.maria.in"),
        (JOAO, "segredo do João", "wamid.joao.in"),
    ] {
        webhook(h, webhooks::text(NUMBER_A, who, wamid, body, ago(10))).await;
    }
    webhook(
        h,
        webhooks::text(NUMBER_A, MARIA, "wamid.maria.stop", "PARAR", ago(9)),
    )
    .await;
    webhook(
        h,
        webhooks::status(
            NUMBER_A,
            MARIA,
            "wamid.maria.out",
            "delivered",
            ago(8),
            None,
        ),
    )
    .await;
    webhook(
        h,
        webhooks::status(NUMBER_A, JOAO, "wamid.joao.out", "delivered", ago(8), None),
    )
    .await;
    h.project().await;
    let (maria, joao) = (contact_id(h, MARIA).await, contact_id(h, JOAO).await);
    // A picture Maria sent (a media reference).
    let picture = Message {
        wamid: "wamid.maria.image".into(),
        direction: Direction::Inbound,
        business: BusinessNumber::new(NUMBER_A),
        contact: ContactProfile {
            identity: ContactIdentity::from_webhook(Some(MARIA), None),
            name: Some("Maria Silva".into()),
            username: None,
        },
        timestamp: DateTime::from_timestamp(ago(7), 0).unwrap(),
        context: None,
        referral: None,
        content: MessageContent::Image(Media {
            id: Some("media-maria-1".into()),
            caption: Some("foto da Maria".into()),
            ..Media::default()
        }),
        sent_by: None,
    };
    let records = wacrm_testkit::bus::records(&[Event::message(picture).unwrap()]).unwrap();
    wacrm_store::projection::Projection::new(h.db.clone(), wacrm_bus::Topics::default())
        .handle(&records)
        .await
        .unwrap();

    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    for to in [MARIA, JOAO] {
        let (status, body) = h
            .post_json(
                "/v1/messages",
                &agent,
                &json!({"from": NUMBER_A, "to": to, "type": "text",
                        "body": format!("resposta para {to}")}),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let dpo = h.key("Dora DPO", Role::Dpo, None).await;
    for id in [&maria, &joao] {
        let (status, _) = h
            .post_json(
                &format!("/v1/contacts/{id}/consent"),
                &dpo,
                &json!({"purpose": "surveys", "granted": true, "channel": "web_form",
                        "source": format!("https://loja.example/pesquisa/{id}")}),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        h.get(&format!("/v1/contacts/{id}"), Some(&agent)).await;
    }
    h.get(&format!("/v1/contacts?phone={MARIA}"), Some(&agent))
        .await;
    dead_letter_naming(h, "dl-maria", MARIA, Some(NUMBER_A)).await;
    dead_letter_naming(h, "dl-joao", JOAO, Some(NUMBER_A)).await;
    wacrm_store::sync::put_links(
        &h.db,
        "hubspot-main",
        &[
            (format!("phone:+{MARIA}"), "crm-maria".into(), "upsert"),
            (format!("phone:+{JOAO}"), "crm-joao".into(), "upsert"),
        ],
    )
    .await
    .unwrap();
    wacrm_store::sync::mark_synced(
        &h.db,
        "hubspot-main",
        &[
            ("wamid.maria.in".into(), "note-maria".into()),
            ("wamid.joao.in".into(), "note-joao".into()),
        ],
    )
    .await
    .unwrap();
    (maria, joao)
}

#[tokio::test]
async fn the_export_holds_every_class_of_data_and_nothing_of_another_contact() {
    let h = harness_sending().await;
    let (maria, joao) = two_contacts(&h).await;
    let dpo = h.key("Dora DPO", Role::Dpo, None).await;
    let (status, doc, text) = export(&h, &maria, &dpo).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(doc["format"], "wacrm.contact_export");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["partial"], false);
    assert_eq!(doc["complete"], true);
    assert_eq!(doc["contact"]["id"], maria.as_str());
    assert_eq!(doc["profile"]["display_name"], "Maria Silva");
    assert!(doc["identities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["kind"] == "phone" && i["value"] == format!("+{MARIA}")));
    let messages = doc["messages"].as_array().unwrap();
    let wamids: Vec<&str> = messages
        .iter()
        .map(|m| m["wamid"].as_str().unwrap())
        .collect();
    for w in [
        "wamid.maria.in",
        "wamid.maria.stop",
        "wamid.maria.out",
        "wamid.maria.image",
    ] {
        assert!(wamids.contains(&w), "{w} in {wamids:?}");
    }
    assert!(text.contains("segredo da Maria"));
    assert!(text.contains("media-maria-1") && text.contains("foto da Maria"));
    let out = messages
        .iter()
        .find(|m| m["wamid"] == "wamid.maria.out")
        .unwrap();
    assert_eq!(out["status_history"][0]["status"], "delivered", "{out:#}");
    let synced = messages
        .iter()
        .find(|m| m["wamid"] == "wamid.maria.in")
        .unwrap();
    assert_eq!(synced["crm_ledger"][0]["connection"], "hubspot-main");
    assert_eq!(synced["crm_ledger"][0]["crm_id"], "note-maria");
    assert_eq!(doc["conversations"][0]["phone_number_id"], NUMBER_A);
    assert_eq!(doc["preferences"][0]["value"], "stop");
    let history = doc["consent"]["history"].as_array().unwrap();
    assert!(
        history.iter().any(|c| c["source"] == "keyword"),
        "{history:#?}"
    );
    assert!(
        history.iter().any(|c| c["purpose"] == "surveys"),
        "{history:#?}"
    );
    let requests = doc["outbound_requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(
        requests[0]["command"]["content"]["body"],
        format!("resposta para {MARIA}")
    );
    let dead: Vec<&str> = doc["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(dead, ["dl-maria"]);
    assert_eq!(doc["crm"]["links"][0]["crm_id"], "crm-maria");
    let audit = doc["audit"].as_array().unwrap();
    for action in [
        "contacts.read",
        "messages.send",
        "consent.record",
        "contacts.export",
    ] {
        assert!(
            audit.iter().any(|e| e["action"] == action),
            "{action}: {audit:#?}"
        );
    }
    assert!(audit.iter().all(|e| e["contact_id"] == maria.as_str()));
    assert_eq!(doc["audit_searches"][0]["action"], "contacts.search");

    // Nothing of João: his phone, his words, his id, his CRM records.
    for other in [
        JOAO,
        "segredo do João",
        joao.as_str(),
        "crm-joao",
        "note-joao",
        "dl-joao",
    ] {
        assert!(!text.contains(other), "{other} leaked into Maria's export");
    }
}

#[tokio::test]
async fn a_number_limited_key_exports_its_numbers_part_and_says_so() {
    let h = harness_sending().await;
    webhook(
        &h,
        webhooks::text(NUMBER_A, MARIA, "wamid.a.1", "no número A", ago(5)),
    )
    .await;
    webhook(
        &h,
        webhooks::text(NUMBER_B, MARIA, "wamid.b.1", "no número B", ago(4)),
    )
    .await;
    h.project().await;
    let maria = contact_id(&h, MARIA).await;
    dead_letter_naming(&h, "dl-on-a", MARIA, Some(NUMBER_A)).await;
    dead_letter_naming(&h, "dl-on-b", MARIA, Some(NUMBER_B)).await;
    dead_letter_naming(&h, "dl-unknown", MARIA, None).await;
    let admin = h.admin().await;
    let mut on_b = json!({"purpose": "marketing", "granted": true, "channel": "whatsapp",
                          "source": "campanha B", "phone_number_id": NUMBER_B});
    let path = format!("/v1/contacts/{maria}/consent");
    assert_eq!(
        h.post_json(&path, &admin, &on_b, &[]).await.0,
        StatusCode::CREATED
    );
    on_b["phone_number_id"] = json!(NUMBER_A);
    on_b["source"] = json!("campanha A");
    assert_eq!(
        h.post_json(&path, &admin, &on_b, &[]).await.0,
        StatusCode::CREATED
    );

    let dpo_a = h.key("Dora A", Role::Dpo, Some(&[NUMBER_A])).await;
    let (status, doc, text) = export(&h, &maria, &dpo_a).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(doc["partial"], true);
    assert_eq!(doc["business_numbers"], json!([NUMBER_A]));
    assert!(doc["excluded"].is_string());
    let wamids: Vec<&str> = doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["wamid"].as_str().unwrap())
        .collect();
    assert_eq!(wamids, ["wamid.a.1"]);
    let dead: Vec<&str> = doc["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(dead, ["dl-on-a"]);
    for other in [
        NUMBER_B,
        "no número B",
        "campanha B",
        "dl-on-b",
        "dl-unknown",
    ] {
        assert!(!text.contains(other), "{other} in number A's part");
    }
    // The whole export, for a key of every number.
    let (_, all, text) = export(&h, &maria, &admin).await;
    assert_eq!(all["partial"], false);
    assert_eq!(all["messages"].as_array().unwrap().len(), 2);
    assert_eq!(all["dead_letters"].as_array().unwrap().len(), 3);
    assert!(text.contains("campanha B"));

    // A key of a number the contact never wrote to does not learn they exist.
    let dpo_other = h.key("Dora C", Role::Dpo, Some(&["106540352249999"])).await;
    assert_eq!(
        export(&h, &maria, &dpo_other).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_export_needs_its_scope_and_is_audited_before_it_is_read() {
    use sea_orm::ConnectionTrait;
    let h = harness_sending().await;
    webhook(
        &h,
        webhooks::text(NUMBER_A, MARIA, "wamid.x.1", "oi", ago(5)),
    )
    .await;
    h.project().await;
    let maria = contact_id(&h, MARIA).await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    let auditor = h.key("Aud", Role::Auditor, None).await;
    for key in [&agent, &auditor] {
        let (status, _, body) = export(&h, &maria, key).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("contacts:export"), "{body}");
    }
    let dpo = h.key("Dora DPO", Role::Dpo, None).await;
    assert_eq!(export(&h, &maria, &dpo).await.0, StatusCode::OK);
    assert_eq!(
        export(&h, "no-such-contact", &dpo).await.0,
        StatusCode::NOT_FOUND
    );

    let admin = h.admin().await;
    let entries = |audit: &Value| -> Vec<(String, String)> {
        audit
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["actor"].as_str().unwrap().to_owned(),
                    e["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    // The outcome is written when the document is complete, just after the last byte.
    let mut seen = Vec::new();
    for _ in 0..50 {
        let (_, body) = h
            .get("/v1/audit?action=contacts.export", Some(&admin))
            .await;
        seen = entries(&serde_json::from_str(&body).unwrap());
        if seen.len() == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pairs: Vec<(&str, &str)> = seen.iter().map(|(a, o)| (a.as_str(), o.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("Bruno Agent", "denied"),
            ("Aud", "denied"),
            ("Dora DPO", "intent"),
            ("Dora DPO", "ok"),
            ("Dora DPO", "not_found"),
        ]
    );

    // An export that cannot be audited is not made.
    h.db.execute_unprepared(
        "CREATE TRIGGER audit_read_only BEFORE INSERT ON audit_log \
         BEGIN SELECT RAISE(ABORT, 'read-only'); END",
    )
    .await
    .unwrap();
    let (status, _, body) = export(&h, &maria, &dpo).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!body.contains("oi"), "{body}");
}

/// The store's side of consent and the export on PostgreSQL (when `WACRM_TEST_POSTGRES_URL`
/// names a server): the projection's keyword opt-out, a recorded opt-in, the decision in force
/// per number, and an export with every section.
#[tokio::test]
async fn consent_and_the_export_work_on_postgresql() {
    let Some(url) = wacrm_testkit::postgres::fresh_database().await else {
        return;
    };
    let db = wacrm_store::connect(&wacrm_store::StoreConfig {
        url,
        max_connections: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    wacrm_store::migrate(&db).await.unwrap();
    let identity = ContactIdentity::from_webhook(Some(MARIA), None);
    let at = |s: i64| DateTime::from_timestamp(1_764_504_000 + s, 0).unwrap();
    let message = |wamid: &str, body: &str, s: i64| Message {
        wamid: wamid.into(),
        direction: Direction::Inbound,
        business: BusinessNumber::new(NUMBER_A),
        contact: ContactProfile {
            identity: identity.clone(),
            name: Some("Maria".into()),
            username: None,
        },
        timestamp: at(s),
        context: None,
        referral: None,
        content: MessageContent::Text {
            body: body.into(),
            preview_url: false,
        },
        sent_by: None,
    };
    let mut events: Vec<Event> = [
        message("wamid.pg.1", "olá", 1),
        message("wamid.pg.2", "PARAR", 2),
    ]
    .into_iter()
    .filter_map(Event::message)
    .collect();
    events.extend(wacrm_core::optout::OptOutKeywords::default().derive(&events));
    let records = wacrm_testkit::bus::records(&events).unwrap();
    let mut projection =
        wacrm_store::projection::Projection::new(db.clone(), wacrm_bus::Topics::default());
    projection.handle(&records).await.unwrap();
    projection.handle(&records).await.unwrap();
    let contact = wacrm_store::queries::find_contacts(
        &db,
        &[IdentityKey::Phone(E164::parse(MARIA).unwrap())],
        None,
    )
    .await
    .unwrap()
    .remove(0);
    wacrm_store::consent::record(
        &db,
        wacrm_store::consent::NewConsent {
            contact_id: contact.id.clone(),
            purpose: "marketing".into(),
            granted: true,
            channel: "web_form".into(),
            source: "https://loja.example".into(),
            recorded_by: "Dora".into(),
            key_id: Some("k1".into()),
            phone_number_id: None,
            at: at(3),
        },
    )
    .await
    .unwrap();
    let on = |number: &'static str| {
        let db = db.clone();
        let id = contact.id.clone();
        async move {
            wacrm_store::consent::in_force(&db, &id, number, "marketing")
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert!(
        on(NUMBER_A).await.granted,
        "the later opt-in is in force on A"
    );
    assert!(on(NUMBER_B).await.granted);
    let summary = wacrm_store::consent::summary(&db, &contact.id, None)
        .await
        .unwrap();
    assert_eq!(
        summary.history.len(),
        2,
        "the keyword opt-out once, the opt-in"
    );
    let mut out = wacrm_store::export::WriterSink(Vec::new());
    let stats = wacrm_store::export::export(&db, &contact, None, &mut out)
        .await
        .unwrap();
    assert_eq!(stats.messages, 2);
    let doc: Value = serde_json::from_slice(&out.0).unwrap();
    assert_eq!(doc["complete"], true);
    assert_eq!(doc["consent"]["history"][0]["source"], "keyword");
    assert_eq!(doc["messages"][1]["content"]["body"], "PARAR");
}

#[tokio::test]
async fn a_history_longer_than_a_page_comes_whole_and_in_order() {
    let h = harness_sending().await;
    let identity = ContactIdentity::from_webhook(Some(MARIA), None);
    let start = Utc::now() - chrono::Duration::days(30);
    // 1,234 messages, some sharing a second: pages break inside equal times too.
    let events: Vec<Event> = (0..1234)
        .map(|i| Message {
            wamid: format!("wamid.long.{i:05}"),
            direction: if i % 3 == 0 {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            business: BusinessNumber::new(NUMBER_A),
            contact: ContactProfile {
                identity: identity.clone(),
                name: None,
                username: None,
            },
            timestamp: start + chrono::Duration::seconds(i / 2),
            context: None,
            referral: None,
            content: MessageContent::Text {
                body: format!("mensagem {i}"),
                preview_url: false,
            },
            sent_by: None,
        })
        .filter_map(Event::message)
        .collect();
    let records = wacrm_testkit::bus::records(&events).unwrap();
    wacrm_store::projection::Projection::new(h.db.clone(), wacrm_bus::Topics::default())
        .handle(&records)
        .await
        .unwrap();
    let maria = contact_id(&h, MARIA).await;
    let dpo = h.key("Dora DPO", Role::Dpo, None).await;
    let (status, doc, _) = export(&h, &maria, &dpo).await;
    assert_eq!(status, StatusCode::OK);
    let wamids: Vec<String> = doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["wamid"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..1234).map(|i| format!("wamid.long.{i:05}")).collect();
    assert_eq!(wamids, expected);
}
