//! Bus outage: the Kafka-protocol broker stops for 30 s under load. While it is down webhooks get
//! 503 (none is acknowledged and lost); after it returns everything flows, and the consumers
//! resume from their committed offsets: every acknowledged message reaches the store, once.
#![allow(clippy::unwrap_used)]

#[path = "../crates/wacrm/tests/common/mod.rs"]
mod common;
mod fault_support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::{Bus, Service};
use fault_support::*;

const TOTAL: usize = 4_000;
const CONTACTS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_get_503_while_kafka_is_down_and_nothing_acknowledged_is_lost() {
    // Opt-in (`WACRM_FAULT_KAFKA=1`): tansu 0.6, the only Kafka-protocol broker that can be
    // installed here, does not survive it. Its SQLite storage is served by one task that ends
    // for good on the first reply it cannot deliver (a client that timed out during the
    // outage) or the first storage error; in memory (not restartable) its groups were not
    // served again after a 30-second SIGSTOP either (docs/testing.md). The 6-second outage of
    // crates/wacrm/tests/end_to_end.rs runs in CI.
    if std::env::var_os("WACRM_FAULT_KAFKA").is_none() {
        eprintln!("skipped (set WACRM_FAULT_KAFKA=1 to run the 30-second Kafka outage)");
        return;
    }
    let Some(broker) = common::broker::Broker::start() else {
        eprintln!("SKIPPED: no Kafka-protocol broker installed (tansu)");
        return;
    };
    let mut service = Service::new(Bus::Kafka(broker));
    let key = service.admin_key();
    service.start().await;
    let mut pending: VecDeque<usize> = (0..TOTAL).collect();
    let mut tally = Tally::default();
    while tally.acked.len() < TOTAL / 4 {
        round(&service, &mut pending, CONTACTS, 16, 100, &mut tally).await;
    }

    let Bus::Kafka(broker) = &mut service.bus else {
        unreachable!()
    };
    broker.stop();
    let stopped = Instant::now();
    // Give in-flight publishes their timeout, then everything must be refused.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let acked_before = tally.acked.len();
    let mut outage = Tally::default();
    while stopped.elapsed() < Duration::from_secs(30) {
        round(&service, &mut pending, CONTACTS, 16, 50, &mut outage).await;
    }
    assert!(
        outage.acked.is_empty(),
        "{} webhooks acknowledged while the broker was down",
        outage.acked.len()
    );
    assert!(
        outage.refused.get(&503).copied().unwrap_or(0) > 0,
        "{:?}",
        outage.refused
    );
    assert_eq!(tally.acked.len(), acked_before);

    let Bus::Kafka(broker) = &mut service.bus else {
        unreachable!()
    };
    broker.restart();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "never recovered: {:?}\n{}",
            tally.refused,
            service.log()
        );
        round(&service, &mut pending, CONTACTS, 16, 200, &mut tally).await;
    }
    assert_eq!(tally.acked.len(), TOTAL);
    service
        .wait_stored(&key, tally.acked.iter().cloned(), Duration::from_secs(120))
        .await;
    service.terminate();
}
