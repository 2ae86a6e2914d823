//! Who a message belongs to on HubSpot: one CRM contact per person across a number change, a
//! BSUID-only sender and the store's sibling identities; and with `send_phone = false`, no
//! phone number in any request.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ActiveValue::Set, EntityTrait};
use wacrm_bus::runner::Handler;
use wacrm_core::{
    BusinessNumber, ContactIdentity, ContactProfile, Direction, Event, Message, MessageContent,
};
use wacrm_hubspot::{HubSpot, HubSpotConfig};
use wacrm_sync::SyncEngine;
use wacrm_testkit::hubspot::{FakeConfig, HubSpotFake};

const OLD: &str = "5511987654321";
const NEW: &str = "5511923456789";
const BSUID: &str = "BR.1111222233334444555";

struct Harness {
    fake: HubSpotFake,
    engine: SyncEngine,
    db: wacrm_store::Db,
    _dir: tempfile::TempDir,
}

async fn harness(send_phone: bool) -> Harness {
    let fake = HubSpotFake::start(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = wacrm_store::connect(&wacrm_store::StoreConfig {
        url: format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display()),
        max_connections: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    wacrm_store::migrate(&db).await.unwrap();
    let mut config = HubSpotConfig {
        token: FakeConfig::default().token,
        base_url: fake.base_url(),
        ..HubSpotConfig::default()
    };
    config.sync.name = "main".into();
    config.sync.reconcile_after_ms = 0;
    config.sync.minimisation.send_phone = send_phone;
    let hubspot = HubSpot::new(config.clone()).unwrap();
    hubspot.setup().await.unwrap();
    fake.clear_requests();
    let engine = SyncEngine::new(config.sync.clone(), Arc::new(hubspot), db.clone());
    Harness {
        fake,
        engine,
        db,
        _dir: dir,
    }
}

fn message(i: usize, wa_id: Option<&str>, bsuid: Option<&str>, content: MessageContent) -> Event {
    message_as(i, wa_id, bsuid, "Maria Souza", content)
}

fn message_as(
    i: usize,
    wa_id: Option<&str>,
    bsuid: Option<&str>,
    name: &str,
    content: MessageContent,
) -> Event {
    Event::message(Message {
        wamid: format!("wamid.id.{i}"),
        direction: Direction::Inbound,
        business: BusinessNumber::new("106540352242922"),
        contact: ContactProfile {
            identity: ContactIdentity::from_webhook(wa_id, bsuid),
            name: Some(name.into()),
            username: None,
        },
        timestamp: chrono::DateTime::from_timestamp(1_750_000_000 + i as i64, 0).unwrap(),
        context: None,
        referral: None,
        content,
        sent_by: None,
    })
    .unwrap()
}

fn text(body: &str) -> MessageContent {
    MessageContent::Text {
        body: body.to_owned(),
        preview_url: false,
    }
}

fn changed_number(to: &str) -> MessageContent {
    MessageContent::System {
        system_type: "user_changed_number".into(),
        body: Some(format!("User changed from {OLD} to {to}")),
        new_wa_id: Some(to.to_owned()),
    }
}

async fn sync(engine: &mut SyncEngine, events: &[Event]) {
    let records = wacrm_testkit::bus::records(events).unwrap();
    for _ in 0..10 {
        match engine.handle(&records).await {
            Ok(handled) => {
                assert!(
                    handled.dead_letters.is_empty(),
                    "{:?}",
                    handled.dead_letters
                );
                return;
            }
            Err(e) => {
                eprintln!("retrying after: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("the batch never synced");
}

/// The contact every communication is associated with.
fn contacts_of_communications(fake: &HubSpotFake) -> Vec<String> {
    let mut ids: Vec<String> = fake
        .communications()
        .iter()
        .map(|c| {
            fake.associations_of("communications", &c.id)[0]
                .to_id
                .clone()
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_change_keeps_one_contact_and_moves_its_whatsapp_id() {
    let mut h = harness(true).await;
    sync(&mut h.engine, &[message(1, Some(OLD), None, text("oi"))]).await;
    sync(
        &mut h.engine,
        &[message(2, Some(OLD), None, changed_number(NEW))],
    )
    .await;
    sync(
        &mut h.engine,
        &[message(3, Some(NEW), None, text("meu número novo"))],
    )
    .await;
    // And in one batch: the notice and the new number's first messages together.
    sync(
        &mut h.engine,
        &[
            message(4, Some(NEW), None, changed_number("5511934567890")),
            message(5, Some("5511934567890"), None, text("de novo")),
        ],
    )
    .await;
    let contacts = h.fake.contacts();
    assert_eq!(contacts.len(), 1, "one contact: {contacts:?}");
    assert_eq!(h.fake.communication_count(), 5);
    assert_eq!(
        contacts_of_communications(&h.fake),
        [contacts[0].id.clone()]
    );
    assert_eq!(
        contacts[0].properties["whatsapp_id"], "5511934567890",
        "the CRM contact carries the latest number's WhatsApp id"
    );
    assert!(h.fake.violations().is_empty(), "{:?}", h.fake.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bsuid_only_sender_lands_on_the_contact_its_phone_made() {
    let mut h = harness(true).await;
    sync(
        &mut h.engine,
        &[message(1, Some(OLD), Some(BSUID), text("oi"))],
    )
    .await;
    sync(
        &mut h.engine,
        &[message(2, None, Some(BSUID), text("sem telefone"))],
    )
    .await;
    // Both shapes of one person in one batch, never seen before: one contact too.
    sync(
        &mut h.engine,
        &[
            message(3, None, Some("BR.999"), text("a")),
            message(4, Some(NEW), Some("BR.999"), text("b")),
        ],
    )
    .await;
    let contacts = h.fake.contacts();
    assert_eq!(contacts.len(), 2, "{contacts:?}");
    assert_eq!(h.fake.communication_count(), 4);
    let by_wamid = |w: &str| {
        let c = h
            .fake
            .communications()
            .into_iter()
            .find(|c| c.properties["wacrm_wamid"] == w)
            .unwrap();
        h.fake.associations_of("communications", &c.id)[0]
            .to_id
            .clone()
    };
    assert_eq!(by_wamid("wamid.id.1"), by_wamid("wamid.id.2"));
    assert_eq!(by_wamid("wamid.id.3"), by_wamid("wamid.id.4"));
    assert_ne!(by_wamid("wamid.id.1"), by_wamid("wamid.id.3"));
    assert!(h.fake.violations().is_empty(), "{:?}", h.fake.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sibling_identity_in_the_store_finds_the_linked_contact() {
    use wacrm_store::entities::contact_identity;
    let mut h = harness(true).await;
    sync(&mut h.engine, &[message(1, Some(OLD), None, text("oi"))]).await;
    // The projection learnt that this phone and this BSUID are one store contact.
    for (kind, value) in [("phone", format!("+{OLD}")), ("bsuid", BSUID.to_owned())] {
        contact_identity::Entity::insert(contact_identity::ActiveModel {
            kind: Set(kind.into()),
            value: Set(value),
            contact_id: Set("c-1".into()),
            created_at: Set(chrono::Utc::now()),
        })
        .exec(&h.db)
        .await
        .unwrap();
    }
    sync(
        &mut h.engine,
        &[message(2, None, Some(BSUID), text("sem telefone"))],
    )
    .await;
    assert_eq!(h.fake.contacts().len(), 1);
    assert_eq!(contacts_of_communications(&h.fake).len(), 1);
}

/// Every string in a request body, with its digits only.
fn digit_runs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => {
            out.push(s.chars().filter(char::is_ascii_digit).collect());
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| digit_runs(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| digit_runs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_send_phone_no_request_carries_the_phone() {
    let mut h = harness(false).await;
    sync(
        &mut h.engine,
        &[
            // A phone-only contact, whose profile name and message are its own number.
            message_as(
                1,
                Some(OLD),
                None,
                "+55 11 98765-4321",
                text("me liga: (11) 98765-4321 ou 5511987654321"),
            ),
            // A phone + BSUID contact.
            message(2, Some(NEW), Some(BSUID), text("oi")),
        ],
    )
    .await;
    // The phone-only contact changes number; the new number writes.
    sync(
        &mut h.engine,
        &[message(3, Some(OLD), None, changed_number("5511934567890"))],
    )
    .await;
    sync(
        &mut h.engine,
        &[message(4, Some("5511934567890"), None, text("novo"))],
    )
    .await;

    assert_eq!(h.fake.contacts().len(), 2, "{:?}", h.fake.contacts());
    assert_eq!(h.fake.communication_count(), 4);
    let requests = h.fake.requests();
    assert!(!requests.is_empty());
    // The subscriber digits of every number involved, in any spelling (separators removed).
    for number in ["87654321", "23456789", "34567890"] {
        for r in &requests {
            let mut runs = Vec::new();
            digit_runs(&r.body, &mut runs);
            assert!(
                runs.iter().all(|d| !d.contains(number)),
                "{} {} carries {number}: {:#}",
                r.method,
                r.path,
                r.body
            );
            let raw = r.body.to_string();
            assert!(!raw.contains("8765-4321") && !raw.contains(number));
        }
    }
    for c in h.fake.contacts() {
        assert!(!c.properties.contains_key("phone"), "{c:?}");
        let id = &c.properties["whatsapp_id"];
        assert!(id == BSUID || id.starts_with("wa-"), "{id}");
    }
    // The pseudonym is keyed by a stored random secret, not by the number alone.
    let secret = wacrm_store::sync::connection_secret(&h.db, "main")
        .await
        .unwrap();
    assert_eq!(secret.len(), 32);
    assert_eq!(
        wacrm_store::sync::connection_secret(&h.db, "main")
            .await
            .unwrap(),
        secret,
        "created once"
    );
    assert!(h.fake.violations().is_empty(), "{:?}", h.fake.violations());
}
