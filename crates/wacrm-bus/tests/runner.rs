//! The runner never lets one record block a partition, and never retries a commit forever: a
//! batch that keeps failing with a data error is halved until the record that fails on its own
//! is found and dead-lettered; a commit that keeps failing sends the runner back to polling; a
//! handler that must wait (a CRM's daily quota) is parked while the runner keeps polling.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use support::embedded::{config, drain};
use tokio_util::sync::CancellationToken;
use wacrm_bus::embedded::EmbeddedBus;
use wacrm_bus::runner::{ConsumerRunner, Handled, Handler, HandlerError, RunnerConfig};
use wacrm_bus::supervise::ConsumerRegistry;
use wacrm_bus::{cloudevents, BusError, EventBus, OutboundRecord, Record, Subscription, Topics};

/// Like a database that refuses any batch containing the payload `poison` (a U+0000 in a text
/// on PostgreSQL): the whole transaction fails, and the error does not say which record.
struct RefusesPoison {
    applied: Arc<Mutex<Vec<String>>>,
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl Handler for RefusesPoison {
    async fn handle(&mut self, records: &[Record]) -> Result<Handled, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if records.iter().any(|r| r.payload == b"poison") {
            return Err(HandlerError::Data(
                "invalid byte sequence for encoding \"UTF8\": 0x00".into(),
            ));
        }
        let mut applied = self.applied.lock().unwrap();
        for r in records {
            let text = String::from_utf8_lossy(&r.payload).into_owned();
            // Re-handling after a split is idempotent: record each payload once.
            if !applied.contains(&text) {
                applied.push(text);
            }
        }
        Ok(Handled::default())
    }
}

fn records(topics: &Topics, payloads: &[String]) -> Vec<OutboundRecord> {
    payloads
        .iter()
        .map(|p| OutboundRecord {
            topic: topics.conversations.clone(),
            key: "k".into(),
            headers: vec![],
            payload: p.as_bytes().to_vec(),
        })
        .collect()
}

/// How many records `group` has not committed (after its runner stopped).
async fn uncommitted(bus: &Arc<dyn EventBus>, topics: &Topics, group: &str) -> i64 {
    let mut again = bus
        .subscribe(group, std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    again.lag().await.unwrap()
}

fn quick(group: &str) -> RunnerConfig {
    let mut cfg = RunnerConfig::new(group);
    cfg.initial_backoff = Duration::from_millis(2);
    cfg.max_backoff = Duration::from_millis(10);
    cfg.poll_wait = Duration::from_millis(50);
    cfg
}

#[tokio::test]
async fn a_record_the_database_refuses_is_isolated_and_dead_lettered_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    let mut payloads: Vec<String> = (0..100).map(|i| format!("m{i:03}")).collect();
    payloads.insert(37, "poison".into());
    bus.publish(records(&topics, &payloads)).await.unwrap();

    let applied = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let registry = Arc::new(ConsumerRegistry::default());
    let runner = ConsumerRunner::new(
        bus.clone(),
        topics.clone(),
        quick("g"),
        RefusesPoison {
            applied: applied.clone(),
            calls: calls.clone(),
        },
    )
    .with_registry(registry.clone());
    let sub = bus
        .subscribe("g", std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner.run(sub, shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while applied.lock().unwrap().len() < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the partition is blocked: {} of 100 applied after {} calls",
            applied.lock().unwrap().len(),
            calls.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Everything but the poison, in order.
    let expected: Vec<String> = (0..100).map(|i| format!("m{i:03}")).collect();
    assert_eq!(*applied.lock().unwrap(), expected);

    let mut dlq = bus
        .subscribe("inspector", std::slice::from_ref(&topics.dead_letters))
        .await
        .unwrap();
    let dead = drain(&mut dlq, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, b"poison");
    assert_eq!(dead[0].header(cloudevents::DLQ_OFFSET), Some("37"));
    let reason = dead[0].header(cloudevents::DLQ_REASON).unwrap();
    assert!(reason.contains("0x00"), "{reason}");
    assert!(reason.contains("3 times"), "{reason}");

    // Bounded: halving 101 records costs a few dozen calls, not a retry loop.
    assert!(
        calls.load(Ordering::SeqCst) < 60,
        "{} calls",
        calls.load(Ordering::SeqCst)
    );
    let status = registry.get("g").unwrap();
    assert!(status.last_commit_at.is_some());
    assert_eq!(status.last_error.unwrap().class, "dead_letter");
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(uncommitted(&bus, &topics, "g").await, 0);
}

/// Retryable errors (a database that is down) are never isolated: nothing is dead-lettered.
struct Down(Arc<AtomicUsize>);

#[async_trait]
impl Handler for Down {
    async fn handle(&mut self, _records: &[Record]) -> Result<Handled, HandlerError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(HandlerError::Retryable("connection refused".into()))
    }
}

#[tokio::test]
async fn an_outage_is_retried_and_never_dead_letters_anything() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    let payloads: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    bus.publish(records(&topics, &payloads)).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let runner = ConsumerRunner::new(bus.clone(), topics.clone(), quick("g"), Down(calls.clone()));
    let sub = bus
        .subscribe("g", std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner.run(sub, shutdown.clone()));
    while calls.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let mut dlq = bus
        .subscribe("inspector", std::slice::from_ref(&topics.dead_letters))
        .await
        .unwrap();
    assert!(dlq
        .poll(10, Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());
}

/// A subscription whose commits fail until it was rewound and polled again — as a Kafka
/// member that was evicted during a long batch rejoins only by polling.
struct CommitsAfterRejoin {
    inner: Box<dyn Subscription>,
    rewound: bool,
    failed_commits: Arc<AtomicUsize>,
}

#[async_trait]
impl Subscription for CommitsAfterRejoin {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        self.inner.poll(max, wait).await
    }
    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        if !self.rewound {
            self.failed_commits.fetch_add(1, Ordering::SeqCst);
            return Err(BusError::Unavailable("unknown member id".into()));
        }
        self.inner.commit(records).await
    }
    async fn rewind(&mut self) -> Result<(), BusError> {
        self.rewound = true;
        self.inner.rewind().await
    }
    async fn lag(&mut self) -> Result<i64, BusError> {
        self.inner.lag().await
    }
    async fn pause(&mut self) -> Result<(), BusError> {
        self.inner.pause().await
    }
    async fn resume(&mut self) -> Result<(), BusError> {
        self.inner.resume().await
    }
    async fn close(self: Box<Self>) -> Result<(), BusError> {
        self.inner.close().await
    }
}

struct Counts(Arc<Mutex<Vec<String>>>);

#[async_trait]
impl Handler for Counts {
    async fn handle(&mut self, records: &[Record]) -> Result<Handled, HandlerError> {
        let mut seen = self.0.lock().unwrap();
        seen.extend(
            records
                .iter()
                .map(|r| String::from_utf8_lossy(&r.payload).into_owned()),
        );
        Ok(Handled::default())
    }
}

#[tokio::test]
async fn a_commit_that_keeps_failing_sends_the_runner_back_to_polling() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    let payloads: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    bus.publish(records(&topics, &payloads)).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let failed_commits = Arc::new(AtomicUsize::new(0));
    let sub = Box::new(CommitsAfterRejoin {
        inner: bus
            .subscribe("g", std::slice::from_ref(&topics.conversations))
            .await
            .unwrap(),
        rewound: false,
        failed_commits: failed_commits.clone(),
    });
    let runner = ConsumerRunner::new(
        bus.clone(),
        topics.clone(),
        quick("g"),
        Counts(seen.clone()),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner.run(sub, shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runner never polled again after its commits failed ({} failed commits)",
            failed_commits.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    // Three tries, then the batch came again and was committed.
    assert_eq!(failed_commits.load(Ordering::SeqCst), 3);
    assert_eq!(uncommitted(&bus, &topics, "g").await, 0);
}

/// A subscription that logs what the runner asks of it.
struct Logged {
    inner: Box<dyn Subscription>,
    log: Arc<Mutex<Vec<&'static str>>>,
}

#[async_trait]
impl Subscription for Logged {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        self.log.lock().unwrap().push("poll");
        self.inner.poll(max, wait).await
    }
    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        self.log.lock().unwrap().push("commit");
        self.inner.commit(records).await
    }
    async fn rewind(&mut self) -> Result<(), BusError> {
        self.log.lock().unwrap().push("rewind");
        self.inner.rewind().await
    }
    async fn lag(&mut self) -> Result<i64, BusError> {
        self.inner.lag().await
    }
    async fn pause(&mut self) -> Result<(), BusError> {
        self.log.lock().unwrap().push("pause");
        self.inner.pause().await
    }
    async fn resume(&mut self) -> Result<(), BusError> {
        self.log.lock().unwrap().push("resume");
        self.inner.resume().await
    }
    async fn close(self: Box<Self>) -> Result<(), BusError> {
        self.inner.close().await
    }
}

/// Parks the first batch it is handed (a CRM's daily quota), then handles everything.
struct ParksOnce {
    parked: bool,
    seen: Arc<Mutex<Vec<String>>>,
    calls: Arc<Mutex<Vec<std::time::Instant>>>,
}

#[async_trait]
impl Handler for ParksOnce {
    async fn handle(&mut self, records: &[Record]) -> Result<Handled, HandlerError> {
        self.calls.lock().unwrap().push(std::time::Instant::now());
        if !self.parked {
            self.parked = true;
            return Err(HandlerError::Park {
                wait: Duration::from_millis(400),
                reason: "daily quota".into(),
            });
        }
        self.seen.lock().unwrap().extend(
            records
                .iter()
                .map(|r| String::from_utf8_lossy(&r.payload).into_owned()),
        );
        Ok(Handled::default())
    }
}

#[tokio::test]
async fn a_parked_handler_is_not_called_while_the_runner_keeps_polling_paused() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    let payloads: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    bus.publish(records(&topics, &payloads)).await.unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sub = Box::new(Logged {
        inner: bus
            .subscribe("g", std::slice::from_ref(&topics.conversations))
            .await
            .unwrap(),
        log: log.clone(),
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let handler = ParksOnce {
        parked: false,
        seen: seen.clone(),
        calls: calls.clone(),
    };
    let runner = ConsumerRunner::new(bus.clone(), topics.clone(), quick("g"), handler);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner.run(sub, shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 5 {
        assert!(tokio::time::Instant::now() < deadline, "never unparked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();

    // The batch came again, whole and in order, after the wait — and only then.
    assert_eq!(*seen.lock().unwrap(), payloads);
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "handled while parked");
    assert!(calls[1] - calls[0] >= Duration::from_millis(400));
    // Paused, polled all along (a Kafka member must poll to keep its place), resumed, rewound.
    let log = log.lock().unwrap().clone();
    let pause = log.iter().position(|s| *s == "pause").expect("paused");
    let resume = log.iter().position(|s| *s == "resume").expect("resumed");
    assert!(pause < resume, "{log:?}");
    let polls_while_parked = log[pause..resume].iter().filter(|s| **s == "poll").count();
    // 400 ms of polls of at most `poll_wait` (50 ms) each.
    assert!(polls_while_parked >= 4, "{log:?}");
    assert_eq!(log.get(resume + 1), Some(&"rewind"), "{log:?}");
    assert!(!log[..resume].contains(&"commit"), "{log:?}");
    assert_eq!(uncommitted(&bus, &topics, "g").await, 0);
}

/// A bus that refuses any record over 1,000 bytes, as Kafka refuses one over `message.max.bytes`.
struct RefusesLarge(Arc<dyn EventBus>);

#[async_trait]
impl EventBus for RefusesLarge {
    async fn publish(&self, records: Vec<OutboundRecord>) -> Result<(), BusError> {
        if records.iter().any(|r| r.payload.len() > 1_000) {
            return Err(BusError::Rejected("Broker: Message size too large".into()));
        }
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

/// Publishes each record it handles to the contacts topic (as the sender publishes outcomes).
struct Forwards {
    bus: Arc<dyn EventBus>,
    topics: Topics,
}

#[async_trait]
impl Handler for Forwards {
    async fn handle(&mut self, records: &[Record]) -> Result<Handled, HandlerError> {
        let out = records
            .iter()
            .map(|r| OutboundRecord {
                topic: self.topics.contacts.clone(),
                key: r.key.clone(),
                headers: vec![],
                payload: r.payload.clone(),
            })
            .collect();
        self.bus
            .publish(out)
            .await
            .map_err(|e| HandlerError::from_bus("forwarding", e))?;
        Ok(Handled::default())
    }
}

#[tokio::test]
async fn a_record_too_large_for_the_bus_is_dead_lettered_without_its_bytes_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    let mut payloads: Vec<String> = (0..9).map(|i| format!("m{i}")).collect();
    payloads.insert(4, "x".repeat(2_000));
    embedded.publish(records(&topics, &payloads)).await.unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(RefusesLarge(embedded.clone()));
    let runner = ConsumerRunner::new(
        bus.clone(),
        topics.clone(),
        quick("g"),
        Forwards {
            bus: bus.clone(),
            topics: topics.clone(),
        },
    );
    let shutdown = CancellationToken::new();
    let sub = bus
        .subscribe("g", std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    let task = tokio::spawn(runner.run(sub, shutdown.clone()));

    let mut forwarded = embedded
        .subscribe("read-contacts", std::slice::from_ref(&topics.contacts))
        .await
        .unwrap();
    // Re-handling after a split may forward a record again (consumers are idempotent): read
    // until nine distinct ones came.
    let mut distinct = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while distinct.len() < 9 && tokio::time::Instant::now() < deadline {
        let batch = forwarded
            .poll(100, Duration::from_millis(200))
            .await
            .unwrap();
        distinct.extend(
            batch
                .iter()
                .map(|r| String::from_utf8_lossy(&r.payload).into_owned()),
        );
    }
    let mut dead = embedded
        .subscribe("read-dlq", std::slice::from_ref(&topics.dead_letters))
        .await
        .unwrap();
    let dlq = drain(&mut dead, 1).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();

    // Everything but the large record went on.
    assert_eq!(distinct, (0..9).map(|i| format!("m{i}")).collect());
    // The large record is a dead letter that says why, kept without its bytes (the bus refuses
    // them on the dead-letter topic too).
    assert_eq!(dlq.len(), 1);
    let reason = dlq[0].header(cloudevents::DLQ_REASON).unwrap();
    assert!(reason.contains("too large"), "{reason}");
    assert!(dlq[0].payload.is_empty());
    assert_eq!(uncommitted(&bus, &topics, "g").await, 0);
}
