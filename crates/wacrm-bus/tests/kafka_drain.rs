//! A Kafka consumer works off a backlog at the client library's pace: nothing the runner does
//! between batches (committing, measuring the group's lag) waits behind the consumer's own
//! fetch. How fast, against a plain librdkafka consumer, is measured by `wacrm-load drain`
//! (docs/performance.md); this suite checks the behaviour with bounds far from both.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use support::broker::Broker;
use tokio_util::sync::CancellationToken;
use wacrm_bus::kafka::{check_topics, expected_topics, KafkaBus, KafkaConfig};
use wacrm_bus::runner::{ConsumerRunner, Handled, Handler, HandlerError, RunnerConfig};
use wacrm_bus::{BusError, EventBus, OutboundRecord, Record, Subscription, Topics};

/// Creates wacrm's topics under `prefix` (the production partition count) and publishes
/// `records` records to the conversation topic, 100 a publish, keyed over 300 contacts.
async fn backlog(broker: &Broker, prefix: &str, records: usize) -> (Topics, Arc<KafkaBus>) {
    let cfg = KafkaConfig {
        brokers: broker.bootstrap(),
        session_timeout_ms: 6_000,
        ..KafkaConfig::default()
    };
    let topics = Topics::with_prefix(prefix);
    check_topics(&cfg, &expected_topics(&topics, &cfg), true)
        .await
        .unwrap();
    let bus = Arc::new(KafkaBus::open(&cfg, Duration::from_secs(30)).unwrap());
    let ids: Vec<usize> = (0..records).collect();
    for chunk in ids.chunks(100) {
        bus.publish(
            chunk
                .iter()
                .map(|n| OutboundRecord {
                    topic: topics.conversations.clone(),
                    key: format!("contact-{}", n % 300),
                    headers: vec![("n".into(), n.to_string())],
                    payload: n.to_string().into_bytes(),
                })
                .collect(),
        )
        .await
        .unwrap();
    }
    (topics, bus)
}

/// Keeps what it was handed.
struct Keeps(Arc<Mutex<BTreeSet<String>>>);

#[async_trait]
impl Handler for Keeps {
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

/// Counts the records its commits covered.
struct CountsCommits {
    inner: Box<dyn Subscription>,
    committed: Arc<Mutex<usize>>,
}

#[async_trait]
impl Subscription for CountsCommits {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        self.inner.poll(max, wait).await
    }
    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        self.inner.commit(records).await?;
        *self.committed.lock().unwrap() += records.len();
        Ok(())
    }
    async fn rewind(&mut self) -> Result<(), BusError> {
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

/// The store projection's shape: one member of a group on the conversation, contact and
/// dead-letter topics (36 partitions), through the runner, with a handler that does nothing
/// but keep what it saw.
///
/// The bound: a consumer that keeps up drains these 2,000 records in 1–2 s here (a debug
/// build on two shared cores; joining the group included). Before the fix the runner's lag
/// measurement (after the first batch, then every 5 s) asked for each partition's log end on
/// the consumer's own connection, where every request waited behind the consumer's fetch
/// (`fetch.wait.max.ms`, 0.5 s): 18 s per measurement, one per batch of 500, so about 75 s
/// for the five batches. 20 s lies far from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_drains_a_backlog_without_stalling_between_batches() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let records = 2_000;
    let (topics, bus) = backlog(&broker, "drain1.", records).await;
    let group = "drain1-store";
    let committed = Arc::new(Mutex::new(0));
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let subscription = Box::new(CountsCommits {
        inner: bus
            .subscribe(
                group,
                &[
                    topics.conversations.clone(),
                    topics.contacts.clone(),
                    topics.dead_letters.clone(),
                ],
            )
            .await
            .unwrap(),
        committed: committed.clone(),
    });
    let bus: Arc<dyn EventBus> = bus;
    let runner = ConsumerRunner::new(
        bus,
        topics.clone(),
        RunnerConfig::new(group),
        Keeps(seen.clone()),
    );
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(runner.run(subscription, shutdown.clone()));
    let within = Duration::from_secs(20);
    while *committed.lock().unwrap() < records {
        assert!(
            started.elapsed() < within,
            "{} of {records} records committed after {within:?}",
            committed.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("{records} records drained in {:?}", started.elapsed());
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(seen.lock().unwrap().len(), records, "every record handled");
}

/// `lag` counts what the group has not committed: from the committed offset where there is
/// one, from the start of the log where there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_from_the_committed_offsets_and_the_log_start() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let records = 600;
    let (topics, bus) = backlog(&broker, "drain2.", records).await;
    let mut sub = bus
        .subscribe("drain2-group", std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < records {
        assert!(Instant::now() < deadline, "{} of {records}", got.len());
        got.extend(sub.poll(1000, Duration::from_millis(500)).await.unwrap());
    }
    // Nothing committed: everything counts, from the start of each partition's log.
    assert_eq!(sub.lag().await.unwrap(), records as i64);
    // Two partitions committed to their end, one halfway.
    let mut partitions: Vec<i32> = got.iter().map(|r| r.partition).collect();
    partitions.sort();
    partitions.dedup();
    let mut done: Vec<Record> = got
        .iter()
        .filter(|r| partitions[..2].contains(&r.partition))
        .cloned()
        .collect();
    let third: Vec<&Record> = got
        .iter()
        .filter(|r| r.partition == partitions[2])
        .collect();
    done.extend(third[..third.len() / 2].iter().map(|r| (*r).clone()));
    sub.commit(&done).await.unwrap();
    assert_eq!(sub.lag().await.unwrap(), (records - done.len()) as i64);
    sub.commit(&got).await.unwrap();
    assert_eq!(sub.lag().await.unwrap(), 0);
}
