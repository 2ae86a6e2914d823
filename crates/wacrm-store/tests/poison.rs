//! A record the database refuses never blocks the store projection: PostgreSQL refuses a U+0000
//! in a text (SQLSTATE 22021, 22P05 in JSON), the batch fails as a whole, and the runner
//! isolates the record, dead-letters it with the reason, and stores everything after it.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio_util::sync::CancellationToken;
use wacrm_bus::embedded::EmbeddedBus;
use wacrm_bus::runner::ConsumerRunner;
use wacrm_bus::{EventBus, Topics};
use wacrm_store::entities::{dead_letter, message};
use wacrm_store::projection::{self, Projection};

const NUMBER: &str = "106540352242922";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_text_is_dead_lettered_and_the_rest_is_stored() {
    for test_db in common::projection_databases().await {
        let dir = tempfile::tempdir().unwrap();
        let bus: Arc<dyn EventBus> = Arc::new(
            EmbeddedBus::open(&wacrm_bus::config::EmbeddedConfig {
                path: dir.path().join("bus.db"),
                max_batch: 1024,
            })
            .unwrap(),
        );
        let topics = Topics::default();
        let mut events = Vec::new();
        for i in 0..40 {
            let body = if i == 17 {
                "pedido \u{0} 4711".to_owned()
            } else {
                format!("mensagem {i}")
            };
            let webhook = wacrm_testkit::webhooks::text(
                NUMBER,
                &format!("55119870{:05}", i % 7),
                &format!("wamid.poison.{i:03}"),
                &body,
                1_800_000_000 + i,
            );
            let normalised = wacrm_whatsapp::normalise::parse_and_normalise(
                &webhook,
                chrono::DateTime::from_timestamp(1_800_000_100, 0).unwrap(),
            )
            .unwrap();
            events.extend(normalised.events);
        }
        let records: Vec<_> = events
            .iter()
            .map(|e| wacrm_bus::cloudevents::event_record(&topics, "wacrm-test", e).unwrap())
            .collect();
        bus.publish(records).await.unwrap();

        let mut config = Projection::runner_config(Duration::ZERO);
        config.initial_backoff = Duration::from_millis(5);
        config.max_backoff = Duration::from_millis(20);
        let runner = ConsumerRunner::new(bus.clone(), topics.clone(), config, test_db.projection());
        let subscription = bus
            .subscribe(projection::GROUP, &Projection::topics(&topics))
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(runner.run(subscription, shutdown.clone()));

        let refuses_nul = test_db.name == "postgres";
        let want = if refuses_nul { 39 } else { 40 };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let stored = message::Entity::find().count(&test_db.db).await.unwrap();
            let dead = dead_letter::Entity::find()
                .count(&test_db.db)
                .await
                .unwrap();
            if stored == want && (!refuses_nul || dead == 1) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: {stored} of {want} messages stored, {dead} dead letters",
                test_db.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The messages after the refused one were stored.
        let last = message::Entity::find()
            .filter(message::Column::Wamid.eq("wamid.poison.039"))
            .count(&test_db.db)
            .await
            .unwrap();
        assert_eq!(last, 1, "{}", test_db.name);
        if refuses_nul {
            let dead = dead_letter::Entity::find()
                .all(&test_db.db)
                .await
                .unwrap()
                .remove(0);
            assert!(
                String::from_utf8_lossy(&dead.payload).contains("wamid.poison.017"),
                "{}",
                String::from_utf8_lossy(&dead.payload)
            );
            assert!(
                dead.reason.contains("0x00") || dead.reason.contains("\\u0000"),
                "{}",
                dead.reason
            );
            assert_eq!(dead.source, format!("consumer:{}", projection::GROUP));
        }
        shutdown.cancel();
        task.await.unwrap().unwrap();
    }
}
