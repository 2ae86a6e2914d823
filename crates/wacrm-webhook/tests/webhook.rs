//! The webhook sink driven by the sync engine against a receiver that verifies every delivery
//! on its own and fails a share of calls; and the verification snippets of
//! docs/adapters/webhook.md, run as printed, against real deliveries.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use wacrm_core::{DeliveryState, Direction, Event};
use wacrm_sync::SyncEngine;
use wacrm_testkit::conformance;
use wacrm_testkit::sink::{Receiver, ReceiverConfig};
use wacrm_webhook::mapping::{batch, signature};
use wacrm_webhook::{WebhookConfig, WebhookSink};

const SECRET: &str = "test-secret-0123456789";

/// The engine with a sink to `receiver`, on a temporary store (kept while the directory lives).
async fn start_engine(receiver: &Receiver) -> (SyncEngine, tempfile::TempDir) {
    let (db, dir) = conformance::temp_store().await;
    let mut config = WebhookConfig {
        url: receiver.url(),
        secret: SECRET.into(),
        requests_per_s: 500,
        retry_backoff_ms: 5,
        max_retry_backoff_ms: 50,
        ..WebhookConfig::default()
    };
    config.sync.name = "hook".into();
    config.sync.reconcile_after_ms = 0;
    let sink = WebhookSink::new(config.clone()).unwrap();
    (SyncEngine::new(config.sync, Arc::new(sink), db), dir)
}

fn wa_id(contact: usize) -> String {
    format!("55119{:08}", 80_000_000 + contact)
}

fn message(i: usize, contact: usize, direction: Direction) -> Event {
    conformance::text_message(
        &format!("wamid.{i}"),
        &wa_id(contact),
        &format!("Cliente {contact}"),
        1_750_000_000 + i as i64,
        direction,
        &format!("mensagem {i}"),
    )
}

fn status(i: usize, contact: usize, state: DeliveryState) -> Event {
    conformance::status_update(
        &format!("wamid.{i}"),
        &wa_id(contact),
        state,
        1_750_000_100 + i as i64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_reach_a_receiver_that_fails_thirty_percent_of_calls() {
    let receiver = Receiver::start(ReceiverConfig {
        secret: SECRET.into(),
        failure_rate: 0.3,
        ..ReceiverConfig::default()
    })
    .await;
    let (mut engine, _dir) = start_engine(&receiver).await;
    let events: Vec<Event> = (0..10_000)
        .map(|i| message(i, i % 100, Direction::Inbound))
        .collect();
    let started = Instant::now();
    for chunk in events.chunks(2000) {
        assert_eq!(conformance::sync_batch(&mut engine, chunk).await, vec![]);
    }
    let elapsed = started.elapsed();
    assert!(
        receiver.violations().is_empty(),
        "{:?}",
        receiver.violations()
    );
    let accepted = receiver.accepted();
    let missing: Vec<usize> = (0..10_000)
        .filter(|i| !accepted.contains_key(&format!("wamid.{i}")))
        .collect();
    assert!(missing.is_empty(), "never received: {missing:?}");
    assert!((0..100).all(|c| accepted.contains_key(&format!("contact:{}", wa_id(c)))));
    let repeats: usize = accepted.values().map(|n| n - 1).sum();
    let (calls, failed) = receiver.calls();
    eprintln!(
        "webhook sink: 10,100 events (10,000 messages, 100 contacts) in {elapsed:.1?}: \
         {calls} calls, {failed} failed on purpose, {repeats} events received more than once"
    );
    assert!(
        failed > calls / 5,
        "the receiver failed too few calls: {failed}/{calls}"
    );
    let event = receiver.event("wamid.4242").unwrap();
    assert_eq!(event["data"]["contact"], wa_id(42));
    assert_eq!(event["data"]["direction"], "inbound");
    assert!(event["data"]["body"]
        .as_str()
        .unwrap()
        .contains("mensagem 4242"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_arrive_as_events_with_stable_ids_and_a_dead_receiver_dead_letters() {
    let receiver = Receiver::start(ReceiverConfig {
        secret: SECRET.into(),
        ..ReceiverConfig::default()
    })
    .await;
    let (mut engine, _dir) = start_engine(&receiver).await;
    assert_eq!(
        conformance::sync_batch(&mut engine, &[message(7, 3, Direction::Outbound)]).await,
        vec![]
    );
    let statuses = [
        status(7, 3, DeliveryState::Read),
        status(7, 3, DeliveryState::Delivered),
    ];
    assert_eq!(
        conformance::sync_batch(&mut engine, &statuses).await,
        vec![]
    );
    let accepted = receiver.accepted();
    assert!(accepted.contains_key("wamid.7"), "{accepted:?}");
    let read = receiver.event("wamid.7:read").unwrap();
    assert_eq!(read["type"], "status");
    assert_eq!(read["data"]["state"], "read");
    assert!(
        receiver.violations().is_empty(),
        "{:?}",
        receiver.violations()
    );

    // A receiver that fails every call: the batch is dead-lettered after its attempts, not
    // retried forever and not lost.
    let down = Receiver::start(ReceiverConfig {
        secret: SECRET.into(),
        failure_rate: 1.0,
        ..ReceiverConfig::default()
    })
    .await;
    let (mut engine, _dir) = start_engine(&down).await;
    let dead = conformance::sync_batch(&mut engine, &[message(8, 4, Direction::Inbound)]).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1.contains("8 attempts"), "{dead:?}");
    assert_eq!(down.calls().0, 8, "one batch, eight attempts");
}

#[test]
fn a_wrong_secret_or_a_plain_http_url_is_refused_at_build() {
    let config = WebhookConfig {
        url: "http://hooks.example.com/x".into(),
        secret: SECRET.into(),
        ..WebhookConfig::default()
    };
    assert!(WebhookSink::new(config).is_err());
    let config = WebhookConfig {
        url: "https://hooks.example.com/x".into(),
        secret: "short".into(),
        ..WebhookConfig::default()
    };
    assert!(WebhookSink::new(config).is_err());
    let config = WebhookConfig {
        url: "https://hooks.example.com/x".into(),
        secret: SECRET.into(),
        ..WebhookConfig::default()
    };
    assert!(!format!("{config:?}").contains(SECRET));
}

/// The fenced block of docs/adapters/webhook.md in `language`.
fn snippet(language: &str) -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/adapters/webhook.md"
    ))
    .unwrap();
    let start = doc.find(&format!("```{language}\n")).unwrap() + language.len() + 4;
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_owned()
}

/// Runs `program` (a verifier snippet plus a driver reading SECRET, HEADER and the body file)
/// and returns what it printed.
fn run(interpreter: &str, file: &std::path::Path, body: &std::path::Path, header: &str) -> String {
    let out = std::process::Command::new(interpreter)
        .arg(file)
        .env("SECRET", SECRET)
        .env("HEADER", header)
        .env("BODY_FILE", body)
        .output()
        .unwrap_or_else(|e| panic!("{interpreter}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_documented_python_and_node_verifiers_accept_a_delivery_and_refuse_a_forgery() {
    let dir = tempfile::tempdir().unwrap();
    let python = dir.path().join("verify.py");
    std::fs::write(
        &python,
        snippet("python")
            + "\nimport os\nbody = open(os.environ['BODY_FILE'], 'rb').read()\n\
               print(verify(os.environ['SECRET'].encode(), os.environ['HEADER'], body))\n",
    )
    .unwrap();
    let node = dir.path().join("verify.js");
    std::fs::write(
        &node,
        snippet("javascript")
            + "\nconst fs = require('fs');\nconst body = fs.readFileSync(process.env.BODY_FILE);\n\
               console.log(verify(process.env.SECRET, process.env.HEADER, body) ? 'True' : 'False');\n",
    )
    .unwrap();
    let body = batch(
        "hook",
        vec![
            serde_json::json!({"id": "wamid.1", "type": "message", "data": {"body": "olá, tudo bem?"}}),
        ],
    );
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, &body).unwrap();
    let now = chrono::Utc::now().timestamp();
    let good = signature(SECRET.as_bytes(), now, &body);
    let forged = signature(b"another-secret-000000", now, &body);
    let stale = signature(SECRET.as_bytes(), now - 301, &body);
    for (interpreter, file) in [("python3", &python), ("node", &node)] {
        assert_eq!(
            run(interpreter, file, &body_file, &good),
            "True",
            "{interpreter}"
        );
        assert_eq!(
            run(interpreter, file, &body_file, &forged),
            "False",
            "{interpreter}"
        );
        assert_eq!(
            run(interpreter, file, &body_file, &stale),
            "False",
            "{interpreter}"
        );
        assert_eq!(
            run(interpreter, file, &body_file, "t=1,v1=zz"),
            "False",
            "{interpreter}"
        );
    }
}

/// The sink as a conformance target: at-least-once, through the receiver fake.
struct SinkTarget {
    receiver: Receiver,
    /// What the target claims (the suite must catch a false claim).
    delivery: conformance::Delivery,
}

impl SinkTarget {
    fn upstream_of(url: &str) -> String {
        url.trim_end_matches("/hook").to_owned()
    }
}

impl conformance::Target for SinkTarget {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn delivery(&self) -> conformance::Delivery {
        self.delivery
    }

    fn upstream(&self) -> String {
        SinkTarget::upstream_of(&self.receiver.url())
    }

    fn adapter(
        &self,
        base_url: &str,
    ) -> (wacrm_crm::ConnectionConfig, Arc<dyn wacrm_crm::CrmAdapter>) {
        let mut config = WebhookConfig {
            url: format!("{base_url}/hook"),
            secret: SECRET.into(),
            requests_per_s: 500,
            attempts: 4,
            retry_backoff_ms: 5,
            max_retry_backoff_ms: 50,
            ..WebhookConfig::default()
        };
        config.sync.name = "conformance".into();
        let sink = WebhookSink::new(config.clone()).unwrap();
        (config.sync, Arc::new(sink))
    }

    fn rate_limited(&self) -> conformance::Canned {
        conformance::Canned::json(
            429,
            &[("retry-after", "0")],
            serde_json::json!({"error": "slow down"}),
        )
    }

    fn quota_exhausted(&self) -> Option<conformance::Canned> {
        None
    }

    fn rejected(&self) -> conformance::Canned {
        conformance::Canned::json(400, &[], serde_json::json!({"error": "invalid event"}))
    }

    fn messages(&self) -> std::collections::HashMap<String, Vec<conformance::Held>> {
        let accepted = self.receiver.accepted();
        let rank = |s: &str| ["sent", "delivered", "read"].iter().position(|x| *x == s);
        let mut out = std::collections::HashMap::new();
        for (id, copies) in &accepted {
            let Some(event) = self.receiver.event(id) else {
                continue;
            };
            if event["type"] != "message" {
                continue;
            }
            // The furthest state received, as docs/adapters/webhook.md tells receivers to keep.
            let status = accepted
                .keys()
                .filter_map(|k| k.strip_prefix(&format!("{id}:")))
                .max_by_key(|s| rank(s))
                .map(str::to_owned);
            let held = conformance::Held {
                contact: event["data"]["contact"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                status,
            };
            out.insert(id.clone(), vec![held; *copies]);
        }
        out
    }

    fn contacts_for(&self, whatsapp_id: &str) -> Vec<String> {
        match self
            .receiver
            .accepted()
            .get(&format!("contact:{whatsapp_id}"))
        {
            Some(copies) => vec![whatsapp_id.to_owned(); *copies],
            None => Vec::new(),
        }
    }

    fn hand_made_contact(&self, _phone: &str, _name: &str) -> Option<String> {
        None
    }

    fn violations(&self) -> Vec<String> {
        self.receiver.violations()
    }

    fn holds(&self, text: &str) -> bool {
        self.receiver.holds(text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_passes_the_conformance_suite_at_least_once() {
    let receiver = Receiver::start(ReceiverConfig {
        secret: SECRET.into(),
        ..ReceiverConfig::default()
    })
    .await;
    let target = SinkTarget {
        receiver,
        delivery: conformance::Delivery::AtLeastOnce,
    };
    conformance::run(&target).await;
}

/// The suite can fail: the sink, claiming exactly once, is caught repeating an event whose
/// answer was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "2 copies")]
async fn the_suite_catches_a_repeat_from_a_target_claiming_exactly_once() {
    let receiver = Receiver::start(ReceiverConfig {
        secret: SECRET.into(),
        ..ReceiverConfig::default()
    })
    .await;
    let target = SinkTarget {
        receiver,
        delivery: conformance::Delivery::ExactlyOnce,
    };
    conformance::crash_between_write_and_ledger(&target).await;
}
