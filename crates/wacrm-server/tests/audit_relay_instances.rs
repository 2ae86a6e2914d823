//! Several instances on one PostgreSQL store each run the audit relay: an entry is published
//! on the bus once, however their passes overlap. (Runs when `WACRM_TEST_POSTGRES_URL` names a
//! server, as in CI.)
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use wacrm_bus::cloudevents::decode_event;
use wacrm_bus::{BusError, EventBus, OutboundRecord, Subscription, Topics};
use wacrm_core::EventPayload;
use wacrm_store::audit::{AuditLog, NewEntry};
use wacrm_store::StoreConfig;

/// A bus that takes its time to confirm a publish, so two relay passes overlap.
struct SlowBus(Arc<dyn EventBus>);

#[async_trait::async_trait]
impl EventBus for SlowBus {
    async fn publish(&self, records: Vec<OutboundRecord>) -> Result<(), BusError> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.publish(records).await
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.0.subscribe(group, topics).await
    }

    async fn check(&self) -> Result<(), BusError> {
        self.0.check().await
    }

    fn backend(&self) -> &'static str {
        self.0.backend()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_relays_of_several_instances_publish_each_entry_once() {
    let Some(url) = wacrm_testkit::postgres::fresh_database().await else {
        eprintln!("WACRM_TEST_POSTGRES_URL not set: skipped");
        return;
    };
    let mut instances = Vec::new();
    for _ in 0..2 {
        let db = wacrm_store::connect(&StoreConfig {
            url: url.clone(),
            max_connections: 4,
            ..Default::default()
        })
        .await
        .unwrap();
        wacrm_store::migrate(&db).await.unwrap();
        instances.push(db);
    }
    let log = AuditLog::new(instances[0].clone());
    for n in 0..3 {
        log.append(NewEntry {
            key_id: "cli".into(),
            actor: "Ana".into(),
            action: "keys.create".into(),
            contact_id: None,
            target: Some(format!("key-{n}")),
            outcome: "ok".into(),
            phone_number_id: None,
            detail: None,
        })
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(
        wacrm_bus::embedded::EmbeddedBus::open(&wacrm_bus::config::EmbeddedConfig {
            path: dir.path().join("bus.db"),
            ..Default::default()
        })
        .unwrap(),
    );
    let slow = SlowBus(bus.clone());
    let topics = Topics::default();
    let passes = futures::future::join_all(
        instances
            .iter()
            .map(|db| wacrm_server::audit_relay::relay_once(db, &slow, &topics, "/test")),
    )
    .await;
    for pass in &passes {
        assert!(pass.is_ok(), "{pass:?}");
    }
    // Later passes find nothing new.
    for db in &instances {
        wacrm_server::audit_relay::relay_once(db, &slow, &topics, "/test")
            .await
            .unwrap();
    }
    let mut sub = bus
        .subscribe("test-audit", std::slice::from_ref(&topics.audit))
        .await
        .unwrap();
    let records = sub.poll(100, Duration::from_millis(500)).await.unwrap();
    let seqs: Vec<i64> = records
        .iter()
        .map(|r| match decode_event(r).unwrap().payload {
            EventPayload::AuditRecorded(a) => a.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![1, 2, 3], "each entry once, in order");
}
