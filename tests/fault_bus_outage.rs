//! Bus outage: for 30 s under load no client of wacrm's reaches the Kafka-protocol broker —
//! every connection to it is closed and new ones are closed at once, as when the broker is down.
//! While it is out of reach webhooks get 503 (none is acknowledged and lost); after it is back
//! everything flows, and the consumers resume from their committed offsets: every acknowledged
//! message reaches the store, once.
#![allow(clippy::unwrap_used)]

#[path = "../crates/wacrm/tests/common/mod.rs"]
mod common;
mod fault_support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::{Bus, Service};
use fault_support::*;
use wacrm_bus::kafka::{check_topics, expected_topics, KafkaBus, KafkaConfig};
use wacrm_bus::{EventBus, OutboundRecord, Topics};

const TOTAL: usize = 4_000;
const CONTACTS: usize = 100;
/// How long each phase after the outage (acknowledging the rest, then storing) may take.
const BUDGET: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_get_503_while_kafka_is_down_and_nothing_acknowledged_is_lost() {
    // Runs when `WACRM_FAULT_KAFKA` is set (`.ci/run` sets it for this suite): it takes a
    // minute. The outage is made at the loopback proxy that the broker advertises as its address
    // (`reply_keeper` in crates/wacrm-bus/tests/support/broker.rs), not by killing the broker:
    // tansu 0.6 — the only Kafka-protocol broker that can be installed here — does not reliably
    // serve again after a restart on its persistent storage (docs/testing.md), and a broker
    // process restart is what `crates/wacrm-bus/tests/kafka.rs` covers at the bus level. To
    // wacrm the two look alike: every connection drops and no new one gets through.
    if std::env::var_os("WACRM_FAULT_KAFKA").is_none() {
        eprintln!("skipped (set WACRM_FAULT_KAFKA=1 to run the 30-second Kafka outage)");
        return;
    }
    let Some(broker) = common::broker::Broker::start_cuttable() else {
        eprintln!("SKIPPED: no Kafka-protocol broker installed (tansu)");
        return;
    };
    let mut service = Service::new(Bus::Kafka(broker));
    // One record per record batch, as in the crash run (tests/fault_crash.rs): tansu's
    // in-memory storage, asked to fetch from an offset inside a batch, answers from the next
    // batch on, and the consumers resume from their committed offsets after the outage.
    std::fs::write(
        service.path().join("wacrm.toml"),
        "[bus.kafka.properties]\n\"batch.num.messages\" = \"1\"\n",
    )
    .unwrap();
    let key = service.admin_key();
    service.start().await;
    let Bus::Kafka(broker) = &service.bus else {
        unreachable!()
    };
    let probe = Probe::new(broker.bootstrap()).await;
    assert!(
        probe.answered(broker).await,
        "the probe fails on a serving broker"
    );
    let mut pending: VecDeque<usize> = (0..TOTAL).collect();
    let mut tally = Tally::default();
    while tally.acked.len() < TOTAL / 4 {
        round(&service, &mut pending, CONTACTS, 16, 100, &mut tally).await;
    }

    broker.cut_clients_off();
    let cut = Instant::now();
    assert!(
        !probe.answered(broker).await,
        "a new client reached the broker through the cut"
    );
    // Give in-flight publishes their timeout, then everything must be refused.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(cut.elapsed())).await;
    let acked_before = tally.acked.len();
    let mut outage = Tally::default();
    while cut.elapsed() < Duration::from_secs(30) {
        round(&service, &mut pending, CONTACTS, 16, 50, &mut outage).await;
    }
    assert!(
        outage.acked.is_empty(),
        "{} webhooks acknowledged while the broker was out of reach",
        outage.acked.len()
    );
    assert!(
        outage.refused.get(&503).copied().unwrap_or(0) > 0,
        "{:?}",
        outage.refused
    );
    assert_eq!(tally.acked.len(), acked_before);

    broker.let_clients_back();
    let started = Instant::now();
    while !pending.is_empty() {
        if started.elapsed() > BUDGET {
            let serving = probe.answered(broker).await;
            panic!(
                "never recovered: {:?} (a new client is served: {serving})\n{}",
                tally.refused,
                service.log()
            );
        }
        round(&service, &mut pending, CONTACTS, 16, 200, &mut tally).await;
    }
    assert_eq!(tally.acked.len(), TOTAL);

    // Every acknowledged message reaches the store: the consumers resume from their
    // committed offsets.
    let started = Instant::now();
    let mut missing: Vec<String> = tally.acked.iter().cloned().collect();
    while !missing.is_empty() {
        if started.elapsed() > BUDGET {
            let Bus::Kafka(broker) = &service.bus else {
                unreachable!()
            };
            let serving = probe.answered(broker).await;
            let missing = service.not_stored_exactly(&key, missing).await;
            panic!(
                "{} acknowledged messages never reached the store (a new client is served: \
                 {serving}){}\n{}",
                missing.len(),
                service.kafka_whereabouts(&missing).await,
                service.log()
            );
        }
        missing = service.not_stored(&key, missing).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    service.terminate();
}

/// What a new client asks the broker: metadata, and one publish to a topic of its own.
struct Probe {
    config: KafkaConfig,
    topic: String,
}

impl Probe {
    async fn new(bootstrap: String) -> Probe {
        let config = KafkaConfig {
            brokers: bootstrap,
            idempotence: false,
            ..KafkaConfig::default()
        };
        let topics = Topics::with_prefix("probe.");
        check_topics(&config, &expected_topics(&topics, &config), true)
            .await
            .unwrap();
        Probe {
            config,
            topic: topics.conversations,
        }
    }

    /// Whether the broker answers a new client's metadata request and takes its publish.
    async fn answered(&self, broker: &common::broker::Broker) -> bool {
        if !broker.answers_metadata(Duration::from_secs(5)) {
            eprintln!(
                "{} probe: no answer to a metadata request within 5 s",
                clock()
            );
            return false;
        }
        let Ok(bus) = KafkaBus::open(&self.config, Duration::from_secs(5)) else {
            eprintln!("{} probe: no producer", clock());
            return false;
        };
        let record = OutboundRecord {
            topic: self.topic.clone(),
            key: "probe".into(),
            headers: Vec::new(),
            payload: b"probe".to_vec(),
        };
        match bus.publish(vec![record]).await {
            Ok(()) => true,
            Err(e) => {
                eprintln!("{} probe: metadata answered, publish failed: {e}", clock());
                false
            }
        }
    }
}

/// The time of day, for the watchdog's lines beside wacrm's log.
fn clock() -> String {
    chrono::Utc::now().format("%H:%M:%S%.3f").to_string()
}
