//! Two senders sharing one PostgreSQL store, as two instances do, share a business number's
//! limit: together they never send more a second than the number allows, measured at the Graph
//! fake. (Each had its own in-process limiter before, and together sent twice the limit.)
//! Runs when `WACRM_TEST_POSTGRES_URL` names a server (CI sets it).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use wacrm_bus::config::EmbeddedConfig;
use wacrm_bus::embedded::EmbeddedBus;
use wacrm_bus::runner::Handler;
use wacrm_bus::{EventBus, Topics};
use wacrm_core::message::Sender as Employee;
use wacrm_core::outbound::{OutboundContent, SendRequest};
use wacrm_core::{BusinessNumber, ContactIdentity, Event};
use wacrm_sender::Sender;
use wacrm_store::StoreConfig;
use wacrm_testkit::graph::{GraphConfig, GraphFake};
use wacrm_whatsapp::{SendHealth, WhatsAppConfig};

const NUMBER: &str = "106540352242922";
const PER_SECOND: u32 = 20;

async fn instance(url: &str, fake: &GraphFake, dir: &std::path::Path, n: usize) -> Sender {
    // A pool and a bus of its own, as a separate process has.
    let db = wacrm_store::connect(&StoreConfig {
        url: url.to_owned(),
        max_connections: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    wacrm_store::migrate(&db).await.unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(
        EmbeddedBus::open(&EmbeddedConfig {
            path: dir.join(format!("bus-{n}.db")),
            max_batch: 1024,
        })
        .unwrap(),
    );
    Sender::new(
        WhatsAppConfig {
            access_token: Some(fake.config().access_token),
            graph_base_url: fake.base_url(),
            graph_version: fake.config().version,
            request_timeout_ms: 2_000,
            retry_base_ms: 10,
            max_retry_ms: 3_000,
            messages_per_second: PER_SECOND,
            ..WhatsAppConfig::default()
        },
        db,
        bus,
        Topics::default(),
        "/test".into(),
        Arc::new(SendHealth::default()),
        CancellationToken::new(),
    )
    .unwrap()
}

fn request(n: usize) -> Event {
    let to = format!("55119{n:08}");
    Event::send_requested(SendRequest {
        request_id: format!("req-{n}-{}", uuid::Uuid::new_v4()),
        business: BusinessNumber::new(NUMBER),
        to: to.clone(),
        contact: ContactIdentity::from_webhook(Some(&to), None),
        content: OutboundContent::Text {
            body: "Olá!".into(),
            preview_url: false,
        },
        category: None,
        reply_to: None,
        sent_by: Employee {
            key_id: "key1".into(),
            name: "Bruno Agent".into(),
        },
        requested_at: Utc::now(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_together_stay_within_a_numbers_limit() {
    let Some(url) = wacrm_testkit::postgres::fresh_database().await else {
        eprintln!("WACRM_TEST_POSTGRES_URL not set: skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fake = GraphFake::start(GraphConfig::default()).await;
    let mut a = instance(&url, &fake, dir.path(), 0).await;
    let mut b = instance(&url, &fake, dir.path(), 1).await;
    // 40 messages to 40 recipients each, at once: two seconds' worth of the number's limit.
    let batch = |from: usize| -> Vec<wacrm_bus::Record> {
        let events: Vec<Event> = (from..from + 40).map(request).collect();
        wacrm_testkit::bus::records(&events).unwrap()
    };
    let (first, second) = (batch(0), batch(1_000));
    let (ha, hb) = tokio::join!(a.handle(&first), b.handle(&second));
    for handled in [ha.unwrap(), hb.unwrap()] {
        assert!(handled.dead_letters.is_empty(), "{handled:?}");
    }
    assert_eq!(fake.sent().len(), 80, "every message sent once");
    let busiest = fake.max_rate(NUMBER, Duration::from_secs(1));
    assert!(
        busiest <= PER_SECOND as usize,
        "{busiest} sends in one second from two instances; the number allows {PER_SECOND}"
    );
}
