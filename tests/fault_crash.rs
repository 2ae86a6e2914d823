//! Crash: SIGKILL the service at random moments during a 10,000-message burst, on the embedded
//! bus and on Kafka; restart it and let it drain. The CRM fake must hold exactly 10,000
//! communications — none lost, none duplicated — and every webhook answered 200 must be in the
//! store.
#![allow(clippy::unwrap_used)]

#[path = "../crates/wacrm/tests/common/mod.rs"]
mod common;
mod fault_support;

use std::collections::VecDeque;
use std::time::Duration;

use common::{Bus, Service};
use fault_support::*;
use rand::Rng;
use wacrm_testkit::hubspot::{FakeConfig, HubSpotFake};

const TOTAL: usize = 10_000;
const CONTACTS: usize = 100;
const LIMIT: u32 = 190;

async fn crash_during_burst(bus: Bus) {
    let fake = HubSpotFake::start(FakeConfig {
        requests_per_10s: LIMIT,
        ..FakeConfig::default()
    })
    .await;
    let mut service = Service::new(bus).with_env(&crm_env(&fake, LIMIT));
    if matches!(service.bus, Bus::Kafka(_)) {
        // One record per record batch. tansu 0.6's in-memory storage, asked to fetch from an
        // offset inside a batch, answers from the next batch on: a consumer that resumes from
        // an offset committed mid-batch (as after every SIGKILL here) skips the rest of that
        // batch. This run lost 2 – 10 acknowledged messages that way, each time the tail of one
        // batch in the log right after a committed offset; crates/wacrm-bus/tests/kafka.rs
        // checks that a resume inside a batch reads the rest of it (on SQLite storage, which
        // gets it right).
        std::fs::write(
            service.path().join("wacrm.toml"),
            "[bus.kafka.properties]\n\"batch.num.messages\" = \"1\"\n",
        )
        .unwrap();
    }
    let name = service.bus.name();
    crm_setup(&service);
    let key = service.admin_key();
    service.start().await;

    // Kill at three random points of the burst.
    let mut rng = rand::thread_rng();
    let mut kill_at: Vec<usize> = (0..3).map(|_| rng.gen_range(500..TOTAL - 500)).collect();
    kill_at.sort_unstable();
    let mut pending: VecDeque<usize> = (0..TOTAL).collect();
    let mut tally = Tally::default();
    let mut kills = 0;
    while !pending.is_empty() {
        // Rounds of 200 with 32 in flight; the kill lands while a round is in flight.
        let kill_now = kill_at.first().is_some_and(|k| tally.acked.len() >= *k);
        if kill_now {
            kill_at.remove(0);
            let port = service.port;
            let round_fut = round(&service, &mut pending, CONTACTS, 32, 200, &mut tally);
            let delay = Duration::from_millis(rng.gen_range(5..60));
            let pid = service.child.as_ref().unwrap().id();
            let killer = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            });
            round_fut.await;
            killer.await.unwrap();
            service.kill();
            kills += 1;
            assert_eq!(service.port, port);
            if matches!(service.bus, Bus::Kafka(_)) {
                // Wait out the dead instance's consumer sessions. tansu 0.6 notices a dead
                // group member only when a request for its group arrives; a new member that
                // joins while the dead one is still the group's leader gets no partitions until
                // then, and an expiry that a heartbeat notices leaves the dead member's
                // partitions assigned to nobody (its group coordinator, docs/testing.md). A
                // member that joins after the session has run out removes the dead one at its
                // first JoinGroup and takes every partition. Real Kafka rebalances on expiry.
                tokio::time::sleep(common::KAFKA_SESSION_TIMEOUT + Duration::from_secs(1)).await;
            }
            service.start().await;
        } else {
            round(&service, &mut pending, CONTACTS, 32, 200, &mut tally).await;
        }
    }
    assert_eq!(kills, 3);
    assert_eq!(tally.acked.len(), TOTAL);
    eprintln!("{name}: refused while killed: {:?}", tally.refused);

    // Every acknowledged webhook is in the store.
    service
        .wait_stored(&key, tally.acked.iter().cloned(), Duration::from_secs(120))
        .await;
    // Exactly once in the CRM.
    wait_communications(&fake, &service, TOTAL, Duration::from_secs(300)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = communication_wamids(&fake);
    assert_eq!(fake.communications().len(), TOTAL, "{name}: duplicates");
    assert_eq!(seen.len(), TOTAL, "{name}");
    assert!(
        seen.values().all(|n| *n == 1),
        "{name}: a wamid logged twice"
    );
    assert!(tally.acked.iter().all(|w| seen.contains_key(w)));
    assert!(fake.max_requests_in_any_window(Duration::from_secs(10)) <= LIMIT as usize);
    service.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_10000_message_burst_loses_and_doubles_nothing() {
    crash_during_burst(Bus::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_sigkill_during_a_10000_message_burst_loses_and_doubles_nothing() {
    // Runs when `WACRM_FAULT_KAFKA` is set (`.ci/run` sets it for this test). The broker is
    // never restarted here, so it keeps its log in memory: tansu's SQLite storage stops serving
    // for good when a client dies with a request in flight, which is exactly what this suite
    // does (crates/wacrm-bus/tests/support/broker.rs).
    if std::env::var_os("WACRM_FAULT_KAFKA").is_none() {
        eprintln!("skipped (set WACRM_FAULT_KAFKA=1 to run the crash run on Kafka)");
        return;
    }
    let Some(broker) = common::broker::Broker::start_in_memory() else {
        eprintln!("SKIPPED: no Kafka-protocol broker installed (tansu)");
        return;
    };
    crash_during_burst(Bus::Kafka(broker)).await;
}
