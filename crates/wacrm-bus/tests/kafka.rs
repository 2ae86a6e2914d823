//! The Kafka backend against a real Kafka-protocol broker (tansu).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::broker::Broker;
use tokio_util::sync::CancellationToken;
use wacrm_bus::kafka::{check_topics, expected_topics, KafkaBus, KafkaConfig, TopicState};
use wacrm_bus::runner::{ConsumerRunner, Handled, Handler, HandlerError, RunnerConfig};
use wacrm_bus::BusError;
use wacrm_bus::{EventBus, OutboundRecord, Record, Subscription, Topics};

fn config(broker: &Broker, partitions: i32) -> KafkaConfig {
    KafkaConfig {
        brokers: broker.bootstrap(),
        partitions,
        session_timeout_ms: 6_000,
        ..KafkaConfig::default()
    }
}

fn record(topic: &str, key: &str, n: usize) -> OutboundRecord {
    OutboundRecord {
        topic: topic.into(),
        key: key.into(),
        headers: vec![("n".into(), n.to_string())],
        payload: n.to_string().into_bytes(),
    }
}

/// Creates wacrm's topics under `prefix`, opens a bus and publishes records 0 – 9 under one
/// key in one publish (to one partition: one record batch).
async fn ten_records(
    cfg: &KafkaConfig,
    prefix: &str,
    publish_timeout: Duration,
) -> (Topics, KafkaBus) {
    let topics = Topics::with_prefix(prefix);
    check_topics(cfg, &expected_topics(&topics, cfg), true)
        .await
        .unwrap();
    let bus = KafkaBus::open(cfg, publish_timeout).unwrap();
    bus.publish(
        (0..10)
            .map(|n| record(&topics.conversations, "k", n))
            .collect(),
    )
    .await
    .unwrap();
    (topics, bus)
}

async fn drain(sub: &mut Box<dyn Subscription>, want: usize, within: Duration) -> Vec<Record> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        out.extend(sub.poll(1000, Duration::from_millis(500)).await.unwrap());
    }
    out
}

/// Kafka's Java client `Utils.murmur2`, the reference for where a key must land.
fn java_murmur2(data: &[u8]) -> i32 {
    let seed: u32 = 0x9747_b28c;
    let m: u32 = 0x5bd1_e995;
    let r = 24;
    let len = data.len();
    let mut h: u32 = seed ^ (len as u32);
    let chunks = len / 4;
    for i in 0..chunks {
        let mut k = u32::from_le_bytes([
            data[4 * i],
            data[4 * i + 1],
            data[4 * i + 2],
            data[4 * i + 3],
        ]);
        k = k.wrapping_mul(m);
        k ^= k >> r;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let tail = &data[chunks * 4..];
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h as i32
}

fn java_partition(key: &str, partitions: i32) -> i32 {
    (java_murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_keys_order_commits_and_resume() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let cfg = config(&broker, 4);
    let topics = Topics::with_prefix("it1.");
    let specs = expected_topics(&topics, &cfg);
    let created = check_topics(&cfg, &specs, true).await.unwrap();
    assert!(
        created.iter().all(|(_, s)| *s == TopicState::Ok),
        "{created:?}"
    );

    let bus = KafkaBus::open(&cfg, Duration::from_secs(10)).unwrap();
    bus.check().await.unwrap();
    let keys: Vec<String> = (0..20)
        .map(|i| format!("106540352242922/phone:+55119876543{i:02}"))
        .collect();
    let mut batch = Vec::new();
    for n in 0..200 {
        batch.push(record(&topics.conversations, &keys[n % 20], n));
    }
    bus.publish(batch).await.unwrap();

    let mut sub = bus
        .subscribe("it1-group", std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    let got = drain(&mut sub, 200, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 200);
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    for r in &got {
        assert_eq!(
            r.partition,
            java_partition(&r.key, 4),
            "murmur2 partitioning like the Java client"
        );
        assert_eq!(
            r.header("n"),
            Some(String::from_utf8_lossy(&r.payload).as_ref())
        );
        by_key
            .entry(&r.key)
            .or_default()
            .push(String::from_utf8_lossy(&r.payload).parse().unwrap());
    }
    for (key, seq) in &by_key {
        let mut sorted = seq.clone();
        sorted.sort();
        assert_eq!(seq, &sorted, "order of {key}");
    }

    // Commit everything of one partition only, leave the group, rejoin: the rest comes again.
    let committed: Vec<Record> = got.iter().filter(|r| r.partition == 0).cloned().collect();
    sub.commit(&committed).await.unwrap();
    sub.close().await.unwrap();
    let mut again = bus
        .subscribe("it1-group", std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    let redelivered = drain(&mut again, 200 - committed.len(), Duration::from_secs(40)).await;
    assert_eq!(redelivered.len(), 200 - committed.len());
    assert!(redelivered.iter().all(|r| r.partition != 0));
    again.commit(&redelivered).await.unwrap();
    assert_eq!(again.lag().await.unwrap(), 0);
}

/// A consumer that resumes from an offset committed inside a record batch reads the rest of
/// that batch. (tansu 0.6's in-memory storage does not: asked for an offset inside a batch it
/// answers from the next batch on, which is why the Kafka crash run gives its producer one
/// record per batch; docs/testing.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resuming_inside_a_record_batch_reads_the_rest_of_it() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let (topics, bus) = ten_records(&config(&broker, 1), "it3.", Duration::from_secs(10)).await;
    let group = std::slice::from_ref(&topics.conversations);
    let mut sub = bus.subscribe("it3-group", group).await.unwrap();
    let got = drain(&mut sub, 10, Duration::from_secs(30)).await;
    let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<i64>>());
    sub.commit(&got[..4]).await.unwrap();
    sub.close().await.unwrap();

    let mut again = bus.subscribe("it3-group", group).await.unwrap();
    let rest = drain(&mut again, 6, Duration::from_secs(40)).await;
    let offsets: Vec<i64> = rest.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (4..10).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_publishes_and_nothing_confirmed_is_lost() {
    let Some(mut broker) = Broker::start() else {
        return;
    };
    let (topics, bus) = ten_records(&config(&broker, 2), "it2.", Duration::from_secs(2)).await;

    broker.stop();
    let started = Instant::now();
    let down = bus
        .publish(vec![record(&topics.conversations, "k", 10)])
        .await;
    assert!(
        down.is_err(),
        "a publish during the outage must not be confirmed"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the publish timeout"
    );
    assert!(bus.check().await.is_err());

    broker.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match bus
            .publish(vec![record(&topics.conversations, "k", 11)])
            .await
        {
            Ok(()) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let mut sub = bus
        .subscribe("it2-group", std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    let got = drain(&mut sub, 11, Duration::from_secs(30)).await;
    let values: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    for n in (0..10).chain([11]) {
        assert!(
            values.contains(&n.to_string()),
            "{n} confirmed before/after the outage is there: {values:?}"
        );
    }
}

/// A subscription that keeps the errors its polls and commits met, and the highest offset it
/// committed.
struct ErrorsKept {
    inner: Box<dyn Subscription>,
    errors: Arc<Mutex<Vec<String>>>,
    committed: Arc<Mutex<Option<i64>>>,
}

impl ErrorsKept {
    fn keep<T>(&self, what: &str, result: Result<T, BusError>) -> Result<T, BusError> {
        if let Err(e) = &result {
            self.errors.lock().unwrap().push(format!("{what}: {e}"));
        }
        result
    }
}

#[async_trait::async_trait]
impl Subscription for ErrorsKept {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        let polled = self.inner.poll(max, wait).await;
        self.keep("poll", polled)
    }
    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        let committed = self.inner.commit(records).await;
        if committed.is_ok() {
            let mut highest = self.committed.lock().unwrap();
            *highest = records.iter().map(|r| r.offset).max().max(*highest);
        }
        self.keep("commit", committed)
    }
    async fn rewind(&mut self) -> Result<(), BusError> {
        self.inner.rewind().await
    }
    async fn lag(&mut self) -> Result<i64, BusError> {
        self.inner.lag().await
    }
    async fn pause(&mut self) -> Result<(), BusError> {
        let paused = self.inner.pause().await;
        self.keep("pause", paused)
    }
    async fn resume(&mut self) -> Result<(), BusError> {
        let resumed = self.inner.resume().await;
        self.keep("resume", resumed)
    }
    async fn close(self: Box<Self>) -> Result<(), BusError> {
        self.inner.close().await
    }
}

/// Waits `wait` on the first batch — by parking, or (as the sync engine did on a daily quota
/// before parking existed) by sleeping inside the handler — then handles everything.
struct WaitsOnce {
    wait: Duration,
    park: bool,
    waited: bool,
    seen: Arc<Mutex<Vec<i64>>>,
}

#[async_trait::async_trait]
impl Handler for WaitsOnce {
    async fn handle(&mut self, records: &[Record]) -> Result<Handled, HandlerError> {
        if !self.waited {
            self.waited = true;
            if self.park {
                return Err(HandlerError::Park {
                    wait: self.wait,
                    reason: "daily quota".into(),
                });
            }
            tokio::time::sleep(self.wait).await;
        }
        self.seen
            .lock()
            .unwrap()
            .extend(records.iter().map(|r| r.offset));
        Ok(Handled::default())
    }
}

/// Runs a consumer whose group allows 7 s between polls (`max.poll.interval.ms`) and whose
/// first batch waits 12 s; returns the errors its polls and commits met.
async fn wait_past_max_poll_interval(broker: &Broker, park: bool, prefix: &str) -> Vec<String> {
    let mut cfg = config(broker, 1);
    cfg.properties
        .insert("max.poll.interval.ms".into(), "7000".into());
    let (topics, bus) = ten_records(&cfg, prefix, Duration::from_secs(10)).await;
    let bus: Arc<dyn EventBus> = Arc::new(bus);
    let group = format!("{prefix}group");
    let errors = Arc::new(Mutex::new(Vec::new()));
    let committed = Arc::new(Mutex::new(None));
    let sub = Box::new(ErrorsKept {
        inner: bus
            .subscribe(&group, std::slice::from_ref(&topics.conversations))
            .await
            .unwrap(),
        errors: errors.clone(),
        committed: committed.clone(),
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = WaitsOnce {
        wait: Duration::from_secs(12),
        park,
        waited: false,
        seen: seen.clone(),
    };
    let mut runner_config = RunnerConfig::new(group.as_str());
    runner_config.initial_backoff = Duration::from_millis(50);
    runner_config.max_backoff = Duration::from_millis(500);
    let runner = ConsumerRunner::new(bus.clone(), topics.clone(), runner_config, handler);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner.run(sub, shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(90);
    while *committed.lock().unwrap() != Some(9) {
        assert!(
            Instant::now() < deadline,
            "never committed: {:?}",
            errors.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let offsets: std::collections::BTreeSet<i64> = seen.lock().unwrap().iter().copied().collect();
    assert_eq!(offsets, (0..10).collect(), "every record handled");
    let errors = errors.lock().unwrap().clone();
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_consumer_keeps_its_place_in_the_group_past_max_poll_interval() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let errors = wait_past_max_poll_interval(&broker, true, "park1.").await;
    assert!(errors.is_empty(), "{errors:?}");
}

/// What parking prevents: a handler that sleeps past `max.poll.interval.ms` is put out of its
/// group by librdkafka (its next poll fails with "maximum poll interval exceeded"). This is the
/// control for the test above: it shows the errors that test looks for do appear when the
/// handler blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_sleeps_past_max_poll_interval_is_put_out_of_its_group() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let errors = wait_past_max_poll_interval(&broker, false, "park2.").await;
    assert!(
        errors.iter().any(|e| e.contains("poll")),
        "no poll error after blocking past max.poll.interval.ms: {errors:?}"
    );
}

#[test]
fn frames_are_counted_across_reads() {
    use support::broker::reply_keeper::FrameCounter;
    let mut frames = FrameCounter::default();
    let mut stream = Vec::new();
    for body in [&b"abc"[..], b"", b"0123456789"] {
        stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
        stream.extend_from_slice(body);
    }
    // Byte by byte, the size split over reads: three frames, each counted once.
    let counted: usize = stream
        .iter()
        .map(|b| frames.feed(std::slice::from_ref(b)))
        .sum();
    assert_eq!(counted, 3);
    // All at once, twice over.
    let mut twice = stream.clone();
    twice.extend_from_slice(&stream);
    assert_eq!(frames.feed(&twice), 6);
    // A frame cut short is not counted until its last byte.
    assert_eq!(frames.feed(&stream[..stream.len() - 1]), 2);
    assert_eq!(frames.feed(&stream[stream.len() - 1..]), 1);
}

#[test]
fn the_probe_tells_a_frozen_broker_from_a_serving_one() {
    let Some(broker) = Broker::start_behind_reply_keeper() else {
        return;
    };
    assert!(broker.answers_metadata(Duration::from_secs(5)));
    broker.pause();
    // Clients give up with their requests in flight (the probe's connection closes unanswered).
    assert!(!broker.answers_metadata(Duration::from_millis(500)));
    assert!(!broker.answers_metadata(Duration::from_millis(500)));
    broker.resume();
    // Once it runs again it serves new clients (the keeper took the replies owed to the
    // probes that left).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker.answers_metadata(Duration::from_secs(2)) {
        assert!(Instant::now() < deadline, "the broker stopped serving");
    }
}

/// Two deployments on one cluster (production and staging, two businesses), each with its own
/// topic prefix, never share a consumer group: what one commits is kept under its own prefixed
/// group id, and the bare name (which both would have used) holds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_with_their_own_topic_prefix_have_their_own_groups() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};

    let Some(broker) = Broker::start() else {
        return;
    };
    let cfg = config(&broker, 1);
    for prefix in ["dep-a.", "dep-b."] {
        let (topics, _) = ten_records(&cfg, prefix, Duration::from_secs(10)).await;
        // Opened as `wacrm serve` opens it, from the deployment's configuration.
        let bus = wacrm_bus::open(&wacrm_bus::BusConfig {
            backend: wacrm_bus::config::Backend::Kafka,
            topic_prefix: prefix.to_owned(),
            kafka: cfg.clone(),
            ..wacrm_bus::BusConfig::default()
        })
        .await
        .unwrap();
        let mut sub = bus
            .subscribe("wacrm-store", std::slice::from_ref(&topics.conversations))
            .await
            .unwrap();
        let got = drain(&mut sub, 10, Duration::from_secs(30)).await;
        assert_eq!(got.len(), 10);
        sub.commit(&got).await.unwrap();
        sub.close().await.unwrap();
    }
    let committed = |group: &str, topic: &str| -> Option<i64> {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("group.id", group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, 0);
        let offsets = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        match offsets.elements()[0].offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        }
    };
    assert_eq!(
        committed("dep-a.wacrm-store", "dep-a.conversations"),
        Some(10)
    );
    assert_eq!(
        committed("dep-b.wacrm-store", "dep-b.conversations"),
        Some(10)
    );
    assert_eq!(committed("wacrm-store", "dep-a.conversations"), None);
    assert_eq!(committed("wacrm-store", "dep-b.conversations"), None);
    // The default prefix keeps the bare names: an upgraded deployment keeps its offsets.
    assert_eq!(
        wacrm_bus::kafka::group_id("wacrm.", "wacrm-store"),
        "wacrm-store"
    );
}
