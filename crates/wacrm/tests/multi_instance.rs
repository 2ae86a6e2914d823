//! Three wacrm processes on one Kafka-protocol broker and one PostgreSQL store, each behind a
//! port of its own, as N instances run in production (docs/scaling.md).
//!
//! Webhooks are spread over the three; one instance is SIGKILLed mid-burst (its webhooks go to
//! the others, as Meta retries them) and started again; sends are spread over the three and one
//! instance is restarted with SIGTERM while they are in flight. Then, measured at the fakes:
//! every acknowledged message is in the store and on the CRM exactly once, every send request
//! reached WhatsApp exactly once, and the business number's limit, the pair limit and the CRM
//! connection's limit held across all three instances together.
//!
//! Needs the broker (tansu) and `WACRM_TEST_POSTGRES_URL`; under CI (`CI` or
//! `WACRM_REQUIRE_KAFKA`) it fails without them instead of skipping.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::broker::Broker;
use common::{Bus, Service};
use serde_json::{json, Value};
use wacrm_testkit::graph::{GraphConfig, GraphFake};
use wacrm_testkit::hubspot::{FakeConfig, HubSpotFake};
use wacrm_testkit::webhooks;

const NUMBER: &str = "106540352242922";
/// The business number's limit: low, so that three instances would exceed it together.
const PER_SECOND: u32 = 8;
/// The pair limit: two at once, then one a second.
const PAIR_BURST: u32 = 2;
const PAIR_PERIOD: Duration = Duration::from_secs(1);
/// The CRM connection's limit (HubSpot's rolling ten seconds), set on the fake and the adapter.
const CRM_PER_10S: u32 = 8;
const CONTACTS: usize = 24;
const INBOUND_PER_CONTACT: usize = 10;
const SENDS_PER_CONTACT: usize = 3;

fn contact(c: usize) -> String {
    format!("55119{:08}", 88_000_000 + c)
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("WACRM_REQUIRE_KAFKA").is_some()
}

/// Posts a webhook to instance `first`, or to the next one up when it cannot be reached (as
/// Meta retries a delivery that failed). The instance that acknowledged it.
async fn deliver(services: &[Service], first: usize, body: Vec<u8>) -> usize {
    for step in 0..services.len() {
        let i = (first + step) % services.len();
        if services[i].child.is_none() {
            continue;
        }
        match services[i].post_webhook(body.clone()).await {
            200 => return i,
            // Down (killed, connection refused) or not durable (503): Meta delivers it again.
            _ => continue,
        }
    }
    panic!("no instance acknowledged a webhook");
}

/// Every instance's log, for a failure's message.
fn all_logs(services: &[Service]) -> String {
    services
        .iter()
        .enumerate()
        .map(|(i, s)| format!("--- instance {i} ---\n{}", s.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A fresh PostgreSQL database and a broker, or `None` (after saying why) where the suite
/// cannot run; under CI it fails instead. The broker keeps its log in memory: instances are
/// killed with requests in flight (see the broker support).
async fn store_and_broker() -> Option<(String, Broker)> {
    let Some(pg) = wacrm_testkit::postgres::fresh_database().await else {
        assert!(
            !required(),
            "the multi-instance suite needs WACRM_TEST_POSTGRES_URL here (CI)"
        );
        eprintln!("WACRM_TEST_POSTGRES_URL not set: skipped");
        return None;
    };
    Some((pg, Broker::start_in_memory()?))
}

async fn request_state(service: &Service, key: &str, id: &str) -> Value {
    service.get_json(&format!("/v1/requests/{id}"), key).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_the_work_and_every_limit() {
    let Some((pg, broker)) = store_and_broker().await else {
        return;
    };
    let graph = GraphFake::start(GraphConfig::default()).await;
    let hubspot = HubSpotFake::start(FakeConfig {
        requests_per_10s: CRM_PER_10S,
        ..FakeConfig::default()
    })
    .await;
    let env = [
        ("WACRM_STORE__URL", pg.clone()),
        ("WACRM_STORE__MAX_CONNECTIONS", "8".to_owned()),
        ("WACRM_WHATSAPP__ACCESS_TOKEN", graph.config().access_token),
        ("WACRM_WHATSAPP__GRAPH_BASE_URL", graph.base_url()),
        ("WACRM_WHATSAPP__GRAPH_VERSION", graph.config().version),
        ("WACRM_WHATSAPP__RETRY_BASE_MS", "50".to_owned()),
        (
            "WACRM_WHATSAPP__MESSAGES_PER_SECOND",
            PER_SECOND.to_string(),
        ),
        ("WACRM_WHATSAPP__PAIR_BURST", PAIR_BURST.to_string()),
        (
            "WACRM_WHATSAPP__PAIR_PERIOD_MS",
            PAIR_PERIOD.as_millis().to_string(),
        ),
        ("WACRM_CRM__CONNECTIONS__MAIN__KIND", "hubspot".to_owned()),
        (
            "WACRM_CRM__CONNECTIONS__MAIN__TOKEN",
            FakeConfig::default().token,
        ),
        ("WACRM_CRM__CONNECTIONS__MAIN__BASE_URL", hubspot.base_url()),
        (
            "WACRM_CRM__CONNECTIONS__MAIN__REQUESTS_PER_10S",
            CRM_PER_10S.to_string(),
        ),
        (
            "WACRM_CRM__CONNECTIONS__MAIN__RECONCILE_AFTER_MS",
            "500".to_owned(),
        ),
        // Claims waited for and partitions moved, in a failure's logs.
        (
            "WACRM_LOG",
            "warn,wacrm_sender=info,wacrm_bus=info".to_owned(),
        ),
    ];
    let mut services: Vec<Service> = (0..3)
        .map(|_| Service::new(Bus::SharedKafka(broker.bootstrap())).with_env(&env))
        .collect();
    let setup = services[0]
        .command()
        .args(["crm", "setup", "hubspot", "--connection", "main"])
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    // One store: a key made through one instance works on every one.
    let agent = services[0]
        .create_key(&["--name", "Bruno", "--role", "agent", "--number", NUMBER])
        .unwrap();
    for service in &mut services {
        service.start().await;
    }

    // Inbound: ten messages from each of 24 contacts, spread over the three instances; the
    // first instance is SIGKILLed a third of the way through and comes back at the end.
    let now = chrono::Utc::now().timestamp();
    let mut acknowledged = Vec::new();
    let mut acknowledged_by = [0usize; 3];
    let total = CONTACTS * INBOUND_PER_CONTACT;
    for i in 0..total {
        if i == total / 3 {
            services[0].kill();
        }
        let c = i % CONTACTS;
        let wamid = format!("wamid.multi.{i:05}");
        let body = webhooks::text(
            NUMBER,
            &contact(c),
            &wamid,
            &format!("mensagem {i}"),
            now - 600 + i as i64,
        );
        acknowledged_by[deliver(&services, i % 3, body).await] += 1;
        acknowledged.push(wamid);
    }
    services[0].start().await;
    services[2]
        .wait_stored(&agent, acknowledged.clone(), Duration::from_secs(120))
        .await;
    assert!(
        acknowledged_by.iter().all(|n| *n > 0),
        "every instance took webhooks: {acknowledged_by:?}"
    );

    // Sends: three to each contact (their windows are open), spread over the instances; the
    // second instance is restarted with SIGTERM while they are in flight.
    let mut request_ids = Vec::new();
    for k in 0..SENDS_PER_CONTACT {
        for c in 0..CONTACTS {
            let service = &services[(c + k) % 3];
            let response = service
                .client
                .post(service.url("/v1/messages"))
                .header("authorization", format!("Bearer {agent}"))
                .json(&json!({"from": NUMBER, "to": contact(c), "type": "text",
                              "body": format!("envio {c}-{k}")}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            assert_eq!(status, 202, "{body}");
            request_ids.push(body["request_id"].as_str().unwrap().to_owned());
        }
    }
    let sends = request_ids.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while graph.sent().len() < sends / 4 {
        assert!(Instant::now() < deadline, "sending never began");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(graph.sent().len() < sends, "the restart must come mid-send");
    services[1].terminate();
    services[1].start().await;

    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &request_ids {
        loop {
            let request = request_state(&services[2], &agent, id).await;
            if request["state"] == "sent" {
                break;
            }
            assert!(
                request["state"] != "failed" && request["state"] != "unknown",
                "request {id}: {request}\n{}",
                all_logs(&services)
            );
            assert!(
                Instant::now() < deadline,
                "request {id} never sent: {request}\n{}",
                services[1].log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Long enough for a second attempt anyone might still make.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Exactly one Graph send per request.
    let mut per_body: HashMap<String, usize> = HashMap::new();
    for sent in graph.sent() {
        *per_body
            .entry(sent.body["text"]["body"].to_string())
            .or_default() += 1;
    }
    assert_eq!(per_body.len(), sends, "{per_body:?}");
    assert!(
        per_body.values().all(|n| *n == 1),
        "a request reached WhatsApp twice: {per_body:?}"
    );
    // The number's and the pairs' limits held across the three instances.
    let busiest = graph.max_rate(NUMBER, Duration::from_secs(1));
    assert!(
        busiest <= PER_SECOND as usize,
        "{busiest} sends in one second from three instances; the number allows {PER_SECOND}"
    );
    for c in 0..CONTACTS {
        let pair = graph.max_pair_rate(NUMBER, &contact(c), PAIR_PERIOD * 4);
        // A burst, then one a period: at most the burst and four more in four periods, one
        // of them for a slot on the window's closing edge.
        assert!(pair <= PAIR_BURST as usize + 4, "contact {c}: {pair}");
    }

    // Every acknowledged inbound message and every sent one on the CRM, exactly once.
    let expected = acknowledged.len() + sends;
    let deadline = Instant::now() + Duration::from_secs(180);
    while hubspot.communications().len() < expected {
        assert!(
            Instant::now() < deadline,
            "{} of {expected} communications on the CRM",
            hubspot.communications().len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut per_wamid: HashMap<String, usize> = HashMap::new();
    for c in hubspot.communications() {
        *per_wamid
            .entry(c.properties["wacrm_wamid"].clone())
            .or_default() += 1;
    }
    assert_eq!(per_wamid.len(), expected, "one communication per message");
    assert!(
        per_wamid.values().all(|n| *n == 1),
        "a message is on the CRM's timeline twice"
    );
    for wamid in &acknowledged {
        assert_eq!(per_wamid.get(wamid), Some(&1), "{wamid}");
    }
    assert_eq!(hubspot.contacts().len(), CONTACTS, "one contact per person");
    // The connection's limit held across the three instances.
    let busiest = hubspot.max_requests_in_any_window(Duration::from_secs(10));
    eprintln!(
        "CRM: {} requests, at most {busiest} in ten seconds (limit {CRM_PER_10S}); Graph: at most \
         {} sends in a second (limit {PER_SECOND}); webhooks acknowledged per instance: \
         {acknowledged_by:?}",
        hubspot.requests().len(),
        graph.max_rate(NUMBER, Duration::from_secs(1)),
    );
    assert!(
        busiest <= CRM_PER_10S as usize,
        "{busiest} CRM requests in ten seconds from three instances; the limit is {CRM_PER_10S}"
    );
    assert!(
        hubspot.violations().is_empty(),
        "{:?}",
        hubspot.violations()
    );
    for service in &mut services {
        service.terminate();
    }
}

/// A consumer that keeps working on a batch past its group's patience loses its partitions
/// while its calls to WhatsApp are still on the wire; the instance that takes them over is
/// handed the same commands. It must wait for the first instance's outcome (the message is
/// sent once, and reported `sent`), not declare the requests interrupted (`unknown`): the
/// first instance is alive and finishing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_still_on_the_wire_when_its_partition_moves_is_waited_for() {
    let Some((pg, broker)) = store_and_broker().await else {
        return;
    };
    // Meta answers after 20 s, and a member that has not polled for 7 s leaves its group (the
    // consumers' `max.poll.interval.ms`, as low as librdkafka allows above the session
    // timeout): the first instance is still in its batch when the group gives its partitions
    // to the second, as a member that outruns `max.poll.interval.ms` in production is.
    let answer_delay = Duration::from_secs(20);
    let graph = GraphFake::start(GraphConfig {
        answer_delay,
        ..GraphConfig::default()
    })
    .await;
    let env = [
        ("WACRM_STORE__URL", pg.clone()),
        ("WACRM_WHATSAPP__ACCESS_TOKEN", graph.config().access_token),
        ("WACRM_WHATSAPP__GRAPH_BASE_URL", graph.base_url()),
        ("WACRM_WHATSAPP__GRAPH_VERSION", graph.config().version),
        ("WACRM_WHATSAPP__REQUEST_TIMEOUT_MS", "40000".to_owned()),
        (
            "WACRM_BUS__KAFKA__PROPERTIES__MAX_POLL_INTERVAL_MS",
            "7000".to_owned(),
        ),
        // The sender's and the bus's news (claims waited for, partitions moved) at info.
        (
            "WACRM_LOG",
            "warn,wacrm_sender=info,wacrm_bus=info".to_owned(),
        ),
    ];
    let mut first = Service::new(Bus::SharedKafka(broker.bootstrap())).with_env(&env);
    let mut second = Service::new(Bus::SharedKafka(broker.bootstrap())).with_env(&env);
    let agent = first
        .create_key(&["--name", "Bruno", "--role", "agent", "--number", NUMBER])
        .unwrap();
    first.start().await;

    // Open the conversations' windows, then ask for one send to each contact: commands on
    // every partition of the commands topic.
    const SENDS: usize = 8;
    let now = chrono::Utc::now().timestamp();
    let mut inbound = Vec::new();
    for c in 0..SENDS {
        let wamid = format!("wamid.moved.{c:02}");
        let body = webhooks::text(NUMBER, &contact(c), &wamid, "oi", now - 60);
        assert_eq!(first.post_webhook(body).await, 200);
        inbound.push(wamid);
    }
    first
        .wait_stored(&agent, inbound, Duration::from_secs(60))
        .await;
    let mut request_ids = Vec::new();
    for c in 0..SENDS {
        let response = first
            .client
            .post(first.url("/v1/messages"))
            .header("authorization", format!("Bearer {agent}"))
            .json(&json!({"from": NUMBER, "to": contact(c), "type": "text",
                          "body": format!("movido {c}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        let body: Value = response.json().await.unwrap();
        request_ids.push(body["request_id"].as_str().unwrap().to_owned());
    }
    // Every send is on the wire from the first instance; now the second joins the group.
    let deadline = Instant::now() + Duration::from_secs(30);
    while graph.sent().len() < SENDS {
        assert!(
            Instant::now() < deadline,
            "the first instance never sent\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.start().await;

    let deadline = Instant::now() + answer_delay * 4;
    for id in &request_ids {
        loop {
            let request = request_state(&second, &agent, id).await;
            if request["state"] == "sent" {
                break;
            }
            assert!(
                request["state"] != "failed" && request["state"] != "unknown",
                "request {id}: {request}\n--- second instance ---\n{}",
                second.log()
            );
            assert!(
                Instant::now() < deadline,
                "request {id} never sent: {request}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(
        graph.sent().len(),
        SENDS,
        "each request reached WhatsApp once"
    );
    // Whether the group moved the partitions while the calls were on the wire: the second
    // instance saw the first's claims. Without it this test shows nothing, so it must happen.
    let waited = second.log().matches("another instance is sending").count();
    eprintln!(
        "the second instance waited for the first on {waited} commands\n--- first ---\n{}\n--- second ---\n{}",
        first.log(),
        second.log()
    );
    assert!(
        waited > 0,
        "the partitions never moved mid-send\n--- second instance ---\n{}",
        second.log()
    );
    first.terminate();
    second.terminate();
}
