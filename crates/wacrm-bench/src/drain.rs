//! `wacrm-load drain`: how fast a Kafka consumer group works off a backlog, wacrm's against
//! librdkafka's own.
//!
//! A run publishes one backlog of `records` to a topic of its own (the production partition
//! count; each record with the six CloudEvents headers wacrm's records carry), before any clock
//! starts. Each measurement is a new consumer group reading that backlog from the start:
//! - *plain*: an rdkafka `BaseConsumer` and nothing of wacrm — poll a batch (the first record
//!   waited for, then whatever is already fetched, up to `max_batch`), commit it synchronously,
//!   again;
//! - *wacrm*: `KafkaBus::subscribe` and the `ConsumerRunner` every wacrm consumer runs, with a
//!   handler that does nothing.
//!
//! Each is timed from the moment its consumer is created (joining the group included) until
//! the commit that covers the last record returned. The two alternate within a round, and
//! which goes first alternates between rounds, so a slow spell of the machine's disk (fsync
//! stalls of 50–600 ms) falls on both alike; the ratio of each round is what to compare.
//!
//! One backlog for every measurement, rather than one each: tansu 0.6 (SQLite storage) reads a
//! fetched record's headers by scanning every header it holds, so each backlog published
//! slowed every later measurement (2,226 → 286 records/s over three rounds of fresh 10,000-
//! record backlogs); read again by a new group, the same backlog costs the broker the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use wacrm_bus::cloudevents as ce;
use wacrm_bus::kafka::{check_topics, KafkaBus, KafkaConfig, TopicSpec};
use wacrm_bus::runner::{ConsumerRunner, Handled, Handler, HandlerError, RunnerConfig};
use wacrm_bus::{BusError, EventBus, OutboundRecord, Record, Subscription, Topics};

/// What went wrong in a drain run.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// wacrm's bus failed (creating topics, publishing, subscribing).
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The plain consumer failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// wacrm's runner stopped with an error.
    #[error("runner: {0}")]
    Runner(String),
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct DrainOptions {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Records in each backlog.
    pub records: usize,
    /// Rounds, each measuring both consumers.
    pub rounds: usize,
    /// Partitions of each topic.
    pub partitions: i32,
    /// Bytes of each record's payload.
    pub payload_bytes: usize,
    /// Most records per batch, for both consumers (the runner's default is 500).
    pub max_batch: usize,
    /// Extra librdkafka properties for both consumers (`fetch.wait.max.ms=100`, …).
    pub properties: Vec<(String, String)>,
    /// Longest a consumer may take to drain: one that takes longer is stopped and reported
    /// with what it committed by then.
    pub timeout: Duration,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            brokers: "127.0.0.1:9092".into(),
            records: 10_000,
            rounds: 3,
            partitions: KafkaConfig::default().partitions,
            payload_bytes: 700,
            max_batch: RunnerConfig::new("defaults").max_batch,
            properties: Vec::new(),
            timeout: Duration::from_secs(300),
        }
    }
}

/// One consumer's drain of one backlog.
#[derive(Debug, Clone, Copy)]
pub struct Drained {
    /// Records committed.
    pub records: usize,
    /// Whether that is the whole backlog (otherwise the timeout stopped it).
    pub complete: bool,
    /// Commits (batches).
    pub batches: usize,
    /// From creating the consumer to the first record in hand.
    pub first_record: Duration,
    /// From creating the consumer to the last commit (to the timeout, when incomplete).
    pub elapsed: Duration,
}

impl Drained {
    /// Records per second, joining the group included.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Both consumers in one round.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// librdkafka's own consumer.
    pub plain: Drained,
    /// wacrm's consumer through its runner.
    pub wacrm: Drained,
}

impl Round {
    /// wacrm's rate as a share of the plain consumer's.
    pub fn ratio(&self) -> f64 {
        self.wacrm.rate() / self.plain.rate().max(1e-9)
    }
}

/// Median, lowest and highest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
}

impl Spread {
    /// Of `values` (zeros when there are none).
    pub fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let Some((&min, &max)) = values.first().zip(values.last()) else {
            return Spread {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            };
        };
        let mid = values.len() / 2;
        let median = if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        };
        Spread { median, min, max }
    }
}

/// Runs the rounds, printing each as it ends; returns them all.
pub async fn run(options: &DrainOptions) -> Result<Vec<Round>, DrainError> {
    let config = KafkaConfig {
        brokers: options.brokers.clone(),
        partitions: options.partitions,
        ..KafkaConfig::default()
    };
    let publisher = KafkaBus::open(&config, Duration::from_secs(30))?;
    let consuming = Arc::new(KafkaBus::open(
        &KafkaConfig {
            properties: options.properties.iter().cloned().collect(),
            ..config.clone()
        },
        Duration::from_secs(30),
    )?);
    // Names of this run's own: a broker given with --brokers may hold earlier runs'.
    let run = format!("drain{}-{}", std::process::id(), unix_millis());
    let topic = format!("{run}.backlog");
    backlog(&config, &publisher, &topic, options).await?;
    let mut rounds = Vec::with_capacity(options.rounds);
    for round in 0..options.rounds {
        let mut plain = None;
        let mut wacrm = None;
        // The first round starts with the plain consumer, the next with wacrm's, and so on.
        for kind in if round % 2 == 0 {
            [Kind::Plain, Kind::Wacrm]
        } else {
            [Kind::Wacrm, Kind::Plain]
        } {
            let group = format!("{run}.r{round}.{}", kind.name());
            let drained = match kind {
                Kind::Plain => drain_plain(&config, &topic, &group, options).await?,
                Kind::Wacrm => drain_wacrm(consuming.clone(), &topic, &group, options).await?,
            };
            println!(
                "round {} {}: {}",
                round + 1,
                kind.name(),
                describe(&drained)
            );
            match kind {
                Kind::Plain => plain = Some(drained),
                Kind::Wacrm => wacrm = Some(drained),
            }
        }
        if let (Some(plain), Some(wacrm)) = (plain, wacrm) {
            let measured = Round { plain, wacrm };
            println!("round {}: wacrm/plain {:.2}", round + 1, measured.ratio());
            rounds.push(measured);
        }
    }
    Ok(rounds)
}

/// Prints the spread over the rounds.
pub fn summarize(rounds: &[Round]) {
    let plain = Spread::of(rounds.iter().map(|r| r.plain.rate()).collect());
    let wacrm = Spread::of(rounds.iter().map(|r| r.wacrm.rate()).collect());
    let ratio = Spread::of(rounds.iter().map(Round::ratio).collect());
    println!(
        "plain librdkafka: median {:.0} records/s (min {:.0}, max {:.0})",
        plain.median, plain.min, plain.max
    );
    println!(
        "wacrm runner:     median {:.0} records/s (min {:.0}, max {:.0})",
        wacrm.median, wacrm.min, wacrm.max
    );
    println!(
        "wacrm / plain:    median {:.2} (min {:.2}, max {:.2}) over {} rounds",
        ratio.median,
        ratio.min,
        ratio.max,
        rounds.len()
    );
}

fn describe(d: &Drained) -> String {
    format!(
        "{:.0} records/s ({} in {:.2} s{}, {} commits, first record after {:.2} s)",
        d.rate(),
        d.records,
        d.elapsed.as_secs_f64(),
        if d.complete { "" } else { ", TIMED OUT" },
        d.batches,
        d.first_record.as_secs_f64()
    )
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Wacrm,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Wacrm => "wacrm",
        }
    }
}

/// Creates `topic` and publishes the backlog to it, keyed like conversations (many contacts,
/// so every partition gets its share), with the headers of a wacrm event record.
async fn backlog(
    config: &KafkaConfig,
    publisher: &KafkaBus,
    topic: &str,
    options: &DrainOptions,
) -> Result<(), DrainError> {
    let spec = TopicSpec {
        name: topic.to_owned(),
        partitions: options.partitions,
        cleanup_policy: "delete",
    };
    check_topics(config, &[spec], true).await?;
    let payload = vec![b'x'; options.payload_bytes];
    let ids: Vec<usize> = (0..options.records).collect();
    for chunk in ids.chunks(1_000) {
        let records = chunk
            .iter()
            .map(|n| OutboundRecord {
                topic: topic.to_owned(),
                key: format!("106540352242922/phone:+5511{:09}", n % 2_000),
                headers: vec![
                    (ce::SPECVERSION.into(), "1.0".into()),
                    (ce::ID.into(), format!("drain-{n:09}")),
                    (ce::TYPE.into(), "wacrm.message.received.v1".into()),
                    (ce::SOURCE.into(), "wacrm-load/drain".into()),
                    (ce::TIME.into(), "2026-01-01T00:00:00Z".into()),
                    (ce::CONTENT_TYPE.into(), "application/json".into()),
                ],
                payload: payload.clone(),
            })
            .collect();
        publisher.publish(records).await?;
    }
    Ok(())
}

/// librdkafka's own consumer, on a blocking thread: batches as wacrm takes them (the first
/// record waited for, then what is already fetched), each committed synchronously.
async fn drain_plain(
    config: &KafkaConfig,
    topic: &str,
    group: &str,
    options: &DrainOptions,
) -> Result<Drained, DrainError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in &options.properties {
        client.set(k, v);
    }
    let topic = topic.to_owned();
    let (want, max_batch, within) = (options.records, options.max_batch.max(1), options.timeout);
    tokio::task::spawn_blocking(move || -> Result<Drained, DrainError> {
        let started = Instant::now();
        let consumer: BaseConsumer = client.create()?;
        consumer.subscribe(&[&topic])?;
        let mut first_record = None;
        let (mut done, mut batches) = (0, 0);
        while done < want && started.elapsed() < within {
            let mut next: HashMap<i32, i64> = HashMap::new();
            let mut taken = 0;
            let mut wait = Duration::from_millis(100);
            while taken < max_batch {
                match consumer.poll(wait) {
                    Some(Ok(m)) => {
                        // Touch what a handler would read.
                        std::hint::black_box((m.key(), m.payload()));
                        first_record.get_or_insert_with(|| started.elapsed());
                        next.insert(m.partition(), m.offset() + 1);
                        taken += 1;
                        wait = Duration::ZERO;
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => break,
                }
            }
            if taken == 0 {
                continue;
            }
            let mut offsets = TopicPartitionList::new();
            for (partition, offset) in next {
                offsets.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
            }
            consumer.commit(&offsets, CommitMode::Sync)?;
            done += taken;
            batches += 1;
        }
        let elapsed = started.elapsed();
        Ok(Drained {
            records: done,
            complete: done >= want,
            batches,
            first_record: first_record.unwrap_or(elapsed),
            elapsed,
        })
    })
    .await
    .map_err(|e| DrainError::Runner(format!("the plain consumer's thread: {e}")))?
}

/// What the wacrm side has done so far.
#[derive(Default)]
struct Progress {
    committed: usize,
    commits: usize,
    first_record: Option<Instant>,
    last_commit: Option<Instant>,
}

type Shared = Arc<Mutex<Progress>>;

fn lock(progress: &Shared) -> std::sync::MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The handler that does nothing but note when the first record came.
struct NoOp(Shared);

#[async_trait]
impl Handler for NoOp {
    async fn handle(&mut self, records: &[Record]) -> Result<Handled, HandlerError> {
        std::hint::black_box(records);
        lock(&self.0).first_record.get_or_insert_with(Instant::now);
        Ok(Handled::default())
    }
}

/// wacrm's subscription as the runner uses it, counting what it commits.
struct Counted {
    inner: Box<dyn Subscription>,
    progress: Shared,
}

#[async_trait]
impl Subscription for Counted {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        self.inner.poll(max, wait).await
    }
    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        self.inner.commit(records).await?;
        let mut progress = lock(&self.progress);
        progress.committed += records.len();
        progress.commits += 1;
        progress.last_commit = Some(Instant::now());
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

/// wacrm's consumer: `subscribe` and the runner, as the store, sync and sender consumers run.
async fn drain_wacrm(
    bus: Arc<KafkaBus>,
    topic: &str,
    group: &str,
    options: &DrainOptions,
) -> Result<Drained, DrainError> {
    let progress = Shared::default();
    let started = Instant::now();
    let subscription = Box::new(Counted {
        inner: bus.subscribe(group, &[topic.to_owned()]).await?,
        progress: progress.clone(),
    });
    let mut config = RunnerConfig::new(group);
    config.max_batch = options.max_batch.max(1);
    let bus: Arc<dyn EventBus> = bus;
    let runner = ConsumerRunner::new(bus, Topics::default(), config, NoOp(progress.clone()));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner.run(subscription, shutdown.clone()));
    let drained = loop {
        let (committed, commits, first, last) = {
            let p = lock(&progress);
            (p.committed, p.commits, p.first_record, p.last_commit)
        };
        if committed >= options.records {
            let elapsed = last.map_or(started.elapsed(), |at| at - started);
            break Ok(Drained {
                records: committed,
                complete: true,
                batches: commits,
                first_record: first.map_or(elapsed, |at| at - started),
                elapsed,
            });
        }
        if started.elapsed() > options.timeout {
            let elapsed = started.elapsed();
            break Ok(Drained {
                records: committed,
                complete: false,
                batches: commits,
                first_record: first.map_or(elapsed, |at| at - started),
                elapsed,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    shutdown.cancel();
    match task.await {
        Ok(Ok(())) => drained,
        Ok(Err(e)) => Err(DrainError::Runner(e.to_string())),
        Err(e) => Err(DrainError::Runner(format!("the runner's task: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_is_the_median_and_the_extremes() {
        assert_eq!(
            Spread::of(vec![3.0, 1.0, 2.0]),
            Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(Spread::of(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Spread::of(Vec::new()).median, 0.0);
    }
}
