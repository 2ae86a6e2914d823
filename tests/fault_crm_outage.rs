//! CRM outage: for a while the HubSpot fake answers 30 % of requests with 5xx and plays bursts of
//! 429 with Retry-After. Everything still syncs, exactly once, and the configured rate is never
//! exceeded.
#![allow(clippy::unwrap_used)]

#[path = "../crates/wacrm/tests/common/mod.rs"]
mod common;
mod fault_support;

use std::collections::VecDeque;
use std::time::Duration;

use common::{Bus, Service};
use fault_support::*;
use wacrm_testkit::hubspot::{FakeConfig, Fault, HubSpotFake};

const TOTAL: usize = 3_000;
const CONTACTS: usize = 100;
const LIMIT: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_rate_limited_crm_gets_everything_once_within_its_limit() {
    let fake = HubSpotFake::start(FakeConfig {
        requests_per_10s: LIMIT,
        ..FakeConfig::default()
    })
    .await;
    let mut service = Service::new(Bus::Embedded).with_env(&crm_env(&fake, LIMIT));
    crm_setup(&service);
    service.start().await;

    fake.inject(Fault::ServerErrorRate(30));
    let mut pending: VecDeque<usize> = (0..TOTAL).collect();
    let mut tally = Tally::default();
    let mut rounds = 0;
    while !pending.is_empty() {
        round(&service, &mut pending, CONTACTS, 16, 250, &mut tally).await;
        rounds += 1;
        if rounds % 3 == 0 {
            fake.inject(Fault::RateLimited {
                count: 5,
                retry_after_secs: 2,
                policy: "TEN_SECONDLY_ROLLING",
            });
        }
    }
    assert_eq!(tally.acked.len(), TOTAL);
    // Let the faults bite for a while, then the CRM recovers.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let during = fake.communications().len();
    fake.reset_faults();
    wait_communications(&fake, &service, TOTAL, Duration::from_secs(240)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = communication_wamids(&fake);
    assert_eq!(fake.communications().len(), TOTAL, "duplicates");
    assert!(seen.values().all(|n| *n == 1));
    let faulted = fake.requests().iter().filter(|r| r.status >= 429).count();
    eprintln!("{during} synced during the outage; {faulted} requests answered 429/5xx");
    assert!(faulted > 0, "the faults were played");
    assert!(
        fake.max_requests_in_any_window(Duration::from_secs(10)) <= LIMIT as usize,
        "rate limit exceeded"
    );
    service.terminate();
}
