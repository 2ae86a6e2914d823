//! What the fault-injection suites share: a burst sender that retries until every webhook is
//! acknowledged (as Meta does), and waits on the CRM fake.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use wacrm_testkit::hubspot::{FakeConfig, HubSpotFake};
use wacrm_testkit::webhooks;

use crate::common::Service;

pub const NUMBER: &str = "106540352242922";

/// Message `i` of a burst: a one-message webhook from one of `contacts` contacts.
pub fn message(i: usize, contacts: usize) -> (String, Vec<u8>) {
    let wamid = format!("wamid.fault.{i:06}");
    let from = format!("55119{:08}", 86_000_000 + i % contacts);
    let body = webhooks::text(
        NUMBER,
        &from,
        &wamid,
        &format!("mensagem {i}"),
        1_760_000_000 + i as i64,
    );
    (wamid, body)
}

/// A CRM connection to `fake` for the service.
pub fn crm_env(fake: &HubSpotFake, limit: u32) -> Vec<(&'static str, String)> {
    vec![
        ("WACRM_CRM__CONNECTIONS__MAIN__KIND", "hubspot".into()),
        (
            "WACRM_CRM__CONNECTIONS__MAIN__TOKEN",
            FakeConfig::default().token,
        ),
        ("WACRM_CRM__CONNECTIONS__MAIN__BASE_URL", fake.base_url()),
        (
            "WACRM_CRM__CONNECTIONS__MAIN__REQUESTS_PER_10S",
            limit.to_string(),
        ),
        (
            "WACRM_CRM__CONNECTIONS__MAIN__RECONCILE_AFTER_MS",
            "1000".into(),
        ),
    ]
}

pub fn crm_setup(service: &Service) {
    let out = service
        .command()
        .args(["crm", "setup", "hubspot", "--connection", "main"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Tally of a burst.
#[derive(Default, Debug)]
pub struct Tally {
    /// Acknowledged (200) wamids.
    pub acked: BTreeSet<String>,
    /// Answers other than 200, by status (0: no answer).
    pub refused: HashMap<u16, usize>,
}

/// Sends messages `pending` with `concurrency` requests in flight, one round; what was not
/// acknowledged is returned to `pending`.
pub async fn round(
    service: &Service,
    pending: &mut VecDeque<usize>,
    contacts: usize,
    concurrency: usize,
    limit: usize,
    tally: &mut Tally,
) {
    let take: Vec<usize> = (0..limit.min(pending.len()))
        .filter_map(|_| pending.pop_front())
        .collect();
    let results: Vec<(usize, u16)> = stream::iter(take)
        .map(|i| async move {
            let (_, body) = message(i, contacts);
            (i, service.post_webhook(body).await)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for (i, status) in results {
        if status == 200 {
            tally.acked.insert(message(i, contacts).0);
        } else {
            *tally.refused.entry(status).or_default() += 1;
            pending.push_back(i);
        }
    }
}

/// Waits until the fake holds `count` communications; panics with the service log otherwise.
pub async fn wait_communications(
    fake: &HubSpotFake,
    service: &Service,
    count: usize,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let n = fake.communication_count();
        if n >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} communications after {within:?}\n{}",
            n,
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every communication's wamid, and how many communications carry each.
pub fn communication_wamids(fake: &HubSpotFake) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for c in fake.communications() {
        let wamid = c.properties.get("wacrm_wamid").cloned().unwrap_or_default();
        *seen.entry(wamid).or_default() += 1;
    }
    seen
}
