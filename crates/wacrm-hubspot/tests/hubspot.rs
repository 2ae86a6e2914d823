//! The HubSpot adapter driven by the sync engine against the stateful HubSpot fake, which
//! validates every request against HubSpot's OpenAPI documents.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use wacrm_bus::runner::Handler;
use wacrm_bus::Record;
use wacrm_core::{
    BusinessNumber, ContactIdentity, ContactProfile, DeliveryState, Direction, Event, Message,
    MessageContent, StatusUpdate,
};
use wacrm_hubspot::{HubSpot, HubSpotConfig};
use wacrm_sync::SyncEngine;
use wacrm_testkit::hubspot::{FakeConfig, Fault, HubSpotFake};

struct Harness {
    fake: HubSpotFake,
    engine: SyncEngine,
    _dir: tempfile::TempDir,
}

async fn harness(fake_config: FakeConfig, tune: impl FnOnce(&mut HubSpotConfig)) -> Harness {
    let fake = HubSpotFake::start(fake_config.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let db = wacrm_store::connect(&wacrm_store::StoreConfig {
        url,
        max_connections: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    wacrm_store::migrate(&db).await.unwrap();
    let mut config = HubSpotConfig {
        token: fake_config.token.clone(),
        base_url: fake.base_url(),
        ..HubSpotConfig::default()
    };
    config.sync.name = "main".into();
    config.sync.reconcile_after_ms = 0;
    config.requests_per_10s = fake_config.requests_per_10s;
    config.search_requests_per_s = fake_config.search_requests_per_s;
    tune(&mut config);
    let hubspot = HubSpot::new(config.clone()).unwrap();
    let created = hubspot.setup().await.unwrap();
    assert_eq!(created.len(), 3, "{created:?}");
    assert!(
        hubspot.setup().await.unwrap().is_empty(),
        "setup is idempotent"
    );
    fake.clear_requests();
    let engine = SyncEngine::new(config.sync.clone(), Arc::new(hubspot), db);
    Harness {
        fake,
        engine,
        _dir: dir,
    }
}

fn wa_id(contact: usize) -> String {
    format!("55119{:08}", 80_000_000 + contact)
}

fn message(i: usize, contact: usize, direction: Direction, body: &str) -> Event {
    Event::message(Message {
        wamid: format!("wamid.{i}"),
        direction,
        business: BusinessNumber::new("106540352242922"),
        contact: ContactProfile {
            identity: ContactIdentity::from_webhook(Some(&wa_id(contact)), None),
            name: Some(format!("Cliente Numero{contact}")),
            username: None,
        },
        timestamp: chrono::DateTime::from_timestamp(1_750_000_000 + i as i64, 0).unwrap(),
        context: None,
        referral: None,
        content: MessageContent::Text {
            body: body.to_owned(),
            preview_url: false,
        },
        sent_by: None,
    })
    .unwrap()
}

fn records(events: &[Event]) -> Vec<Record> {
    wacrm_testkit::bus::records(events).unwrap()
}

/// Runs the batch until the engine accepts it, as the runner would (retrying transient errors).
async fn sync(engine: &mut SyncEngine, events: &[Event]) -> Vec<(usize, String)> {
    let records = records(events);
    for _ in 0..30 {
        match engine.handle(&records).await {
            Ok(handled) => return handled.dead_letters,
            Err(e) => {
                eprintln!("retrying after: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    panic!("the batch never synced");
}

fn by_wamid(fake: &HubSpotFake) -> HashMap<String, Vec<wacrm_testkit::hubspot::FakeObject>> {
    let mut out: HashMap<String, Vec<_>> = HashMap::new();
    for c in fake.communications() {
        out.entry(c.properties.get("wacrm_wamid").cloned().unwrap_or_default())
            .or_default()
            .push(c);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_a_hundred_contacts_in_about_thirty_calls() {
    let mut h = harness(FakeConfig::default(), |_| {}).await;
    let events: Vec<Event> = (0..1000)
        .map(|i| message(i, i % 100, Direction::Inbound, &format!("olá {i}")))
        .collect();
    assert!(sync(&mut h.engine, &events).await.is_empty());
    assert!(h.fake.violations().is_empty(), "{:?}", h.fake.violations());
    let calls = h.fake.requests().len();
    eprintln!("HubSpot calls for 1,000 messages from 100 contacts: {calls}");
    assert!(calls <= 30, "{calls} calls");
    assert_eq!(h.fake.contacts().len(), 100);
    let comms = by_wamid(&h.fake);
    assert_eq!(comms.len(), 1000);
    assert!(comms.values().all(|v| v.len() == 1));
    let contacts: BTreeMap<String, String> = h
        .fake
        .contacts()
        .into_iter()
        .map(|c| (c.properties["whatsapp_id"].clone(), c.id))
        .collect();
    for i in [0usize, 1, 555, 999] {
        let c = &comms[&format!("wamid.{i}")][0];
        assert_eq!(c.properties["hs_communication_channel_type"], "WHATS_APP");
        assert_eq!(c.properties["hs_communication_logged_from"], "CRM");
        assert_eq!(
            c.properties["hs_timestamp"],
            ((1_750_000_000 + i as i64) * 1000).to_string()
        );
        assert!(c.properties["hs_communication_body"].contains(&format!("olá {i}")));
        assert!(c.properties["hs_communication_body"].starts_with("WhatsApp from Cliente"));
        let assoc = h.fake.associations_of("communications", &c.id);
        assert_eq!(assoc.len(), 1);
        assert_eq!(assoc[0].type_id, 81);
        assert_eq!(assoc[0].to_id, contacts[&wa_id(i % 100)]);
    }
    // Redelivery of the whole batch: nothing new, no CRM writes.
    h.fake.clear_requests();
    assert!(sync(&mut h.engine, &events).await.is_empty());
    assert_eq!(h.fake.communications().len(), 1000);
    assert_eq!(
        h.fake.requests().len(),
        0,
        "links and ledger answer a redelivery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_created_by_sales_is_linked_not_duplicated() {
    let mut h = harness(FakeConfig::default(), |_| {}).await;
    let id = h.fake.insert_contact(&[
        ("firstname", "Maria"),
        ("lastname", "Souza (cliente VIP)"),
        ("mobilephone", "+55 (11) 98765-4321"),
    ]);
    let event = Event::message(Message {
        wamid: "wamid.sales".into(),
        direction: Direction::Inbound,
        business: BusinessNumber::new("106540352242922"),
        contact: ContactProfile {
            identity: ContactIdentity::from_webhook(Some("551187654321"), None),
            name: Some("Mari".into()),
            username: None,
        },
        timestamp: chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap(),
        context: None,
        referral: None,
        content: MessageContent::Text {
            body: "oi".into(),
            preview_url: false,
        },
        sent_by: None,
    })
    .unwrap();
    assert!(sync(&mut h.engine, &[event]).await.is_empty());
    let contacts = h.fake.contacts();
    assert_eq!(contacts.len(), 1, "linked, not duplicated");
    assert_eq!(contacts[0].id, id);
    assert_eq!(
        contacts[0].properties["firstname"], "Maria",
        "what sales typed is kept"
    );
    let comms = h.fake.communications();
    assert_eq!(
        h.fake.associations_of("communications", &comms[0].id)[0].to_id,
        id
    );
    assert!(h.fake.violations().is_empty(), "{:?}", h.fake.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_of_429_and_5xx_end_with_everything_synced_within_the_rate() {
    let fake_config = FakeConfig {
        requests_per_10s: 10,
        ..FakeConfig::default()
    };
    let mut h = harness(fake_config, |_| {}).await;
    h.fake.inject(Fault::ServerErrors(4));
    h.fake.inject(Fault::RateLimited {
        count: 3,
        retry_after_secs: 1,
        policy: "TEN_SECONDLY_ROLLING",
    });
    h.fake.inject(Fault::ServerErrors(2));
    let events: Vec<Event> = (0..200)
        .map(|i| message(i, i % 20, Direction::Inbound, &format!("m{i}")))
        .collect();
    assert!(
        sync(&mut h.engine, &events).await.is_empty(),
        "dead letters only for genuine 4xx"
    );
    let comms = by_wamid(&h.fake);
    assert_eq!(comms.len(), 200);
    assert!(comms.values().all(|v| v.len() == 1), "no duplicates");
    assert_eq!(h.fake.contacts().len(), 20);
    let worst = h.fake.max_requests_in_any_window(Duration::from_secs(10));
    assert!(worst <= 10, "{worst} requests in a 10 s window, limit 10");
    let own_429s = h.fake.requests().iter().filter(|r| r.status == 429).count();
    assert!(
        own_429s <= 3,
        "only the injected 429s, never the fake's own limit: {own_429s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_hubspot_refuses_is_dead_lettered_and_the_rest_synced() {
    let mut h = harness(FakeConfig::default(), |_| {}).await;
    h.fake
        .inject(Fault::ValidationErrorFor("segredo-invalido".into()));
    let events = vec![
        message(1, 1, Direction::Inbound, "primeira"),
        message(2, 1, Direction::Inbound, "segredo-invalido"),
        message(3, 2, Direction::Inbound, "terceira"),
    ];
    let dead = sync(&mut h.engine, &events).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, 1);
    assert_eq!(h.fake.communications().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_update_the_same_communication_in_any_order() {
    let mut h = harness(FakeConfig::default(), |_| {}).await;
    let sent = message(7, 3, Direction::Outbound, "seu pedido saiu");
    assert!(sync(&mut h.engine, &[sent]).await.is_empty());
    let status = |state, at: i64| {
        Event::status(StatusUpdate {
            wamid: "wamid.7".into(),
            state,
            timestamp: chrono::DateTime::from_timestamp(1_750_000_100 + at, 0).unwrap(),
            business: BusinessNumber::new("106540352242922"),
            recipient: ContactIdentity::from_webhook(Some(&wa_id(3)), None),
            errors: vec![],
            pricing: None,
            conversation: None,
        })
        .unwrap()
    };
    assert!(sync(
        &mut h.engine,
        &[
            status(DeliveryState::Read, 20),
            status(DeliveryState::Sent, 5)
        ]
    )
    .await
    .is_empty());
    assert!(sync(&mut h.engine, &[status(DeliveryState::Delivered, 10)])
        .await
        .is_empty());
    let comms = h.fake.communications();
    assert_eq!(comms.len(), 1);
    assert_eq!(comms[0].properties["wacrm_status"], "read");
    assert!(comms[0].properties["hs_communication_body"].starts_with("WhatsApp sent by"));
    assert!(h.fake.violations().is_empty(), "{:?}", h.fake.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_number_owner_owns_its_contacts_and_messages() {
    let mut h = harness(FakeConfig::default(), |_| {}).await;
    // Owners must exist in HubSpot: create one, then an adapter that maps the number to it.
    let owner_id = h.fake.insert_owner("ana@example.com", "Ana", "Souza");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let db = wacrm_store::connect(&wacrm_store::StoreConfig {
        url,
        max_connections: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    wacrm_store::migrate(&db).await.unwrap();
    let mut config = HubSpotConfig {
        token: FakeConfig::default().token,
        base_url: h.fake.base_url(),
        ..HubSpotConfig::default()
    };
    config.sync.name = "owned".into();
    config.sync.reconcile_after_ms = 0;
    config
        .owners
        .insert("106540352242922".into(), owner_id.clone());
    h.engine = SyncEngine::new(
        config.sync.clone(),
        Arc::new(HubSpot::new(config).unwrap()),
        db,
    );
    assert!(
        sync(&mut h.engine, &[message(1, 42, Direction::Inbound, "olá")])
            .await
            .is_empty()
    );
    assert_eq!(
        h.fake.contacts()[0].properties.get("hubspot_owner_id"),
        Some(&owner_id)
    );
    assert_eq!(
        h.fake.communications()[0]
            .properties
            .get("hubspot_owner_id"),
        Some(&owner_id)
    );
    assert!(h.fake.violations().is_empty(), "{:?}", h.fake.violations());
}
