//! wacrm's event bus.
//!
//! [`EventBus`] is what every producer and consumer in wacrm talks to: publish a batch of keyed
//! records and get an answer only once they are durable; subscribe as a named consumer group;
//! poll batches; commit after processing (at-least-once, in order per key). Two backends
//! implement it: [`embedded`] (a single-node log in a local SQLite file, the zero-config
//! default) and Kafka. [`runner`] is the loop every consumer runs in; [`cloudevents`] maps core
//! events to records and back.

pub mod cloudevents;
pub mod config;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod erase;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod runner;
pub mod supervise;
pub mod topics;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wacrm_core::ErrorClass;

pub use config::BusConfig;
pub use erase::{BusErased, BusErasure};
pub use topics::Topics;

/// A record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRecord {
    /// The topic.
    pub topic: String,
    /// The key: records with one key stay in order.
    pub key: String,
    /// Headers (CloudEvents attributes, dead-letter context).
    pub headers: Vec<(String, String)>,
    /// The value.
    pub payload: Vec<u8>,
}

/// A record read from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The topic.
    pub topic: String,
    /// The partition (always 0 on the embedded bus).
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
    /// The key.
    pub key: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The value.
    pub payload: Vec<u8>,
    /// When the bus stored it, in milliseconds since the epoch.
    pub timestamp_ms: i64,
}

impl Record {
    /// The first header with that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why the bus could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The bus cannot be reached or cannot write now; the same call may succeed later.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// The bus did not confirm within the configured time; nothing may be assumed durable.
    #[error("event bus did not confirm within {0:?}")]
    Timeout(Duration),
    /// The bus refused these records (too large, invalid topic…); retrying will not help.
    #[error("event bus rejected the records: {0}")]
    Rejected(String),
    /// The bus is misconfigured or closed for good.
    #[error("event bus failed: {0}")]
    Fatal(String),
}

impl BusError {
    /// What the caller should do.
    pub fn class(&self) -> ErrorClass {
        match self {
            BusError::Unavailable(_) | BusError::Timeout(_) => ErrorClass::Retry,
            BusError::Rejected(_) => ErrorClass::DeadLetter,
            BusError::Fatal(_) => ErrorClass::Fatal,
        }
    }
}

/// The event bus.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes records and returns only when every one of them is durable. On error, none may
    /// be assumed durable (some may be, so publishers must be idempotent downstream).
    async fn publish(&self, records: Vec<OutboundRecord>) -> Result<(), BusError>;

    /// Joins a consumer group on the given topics. Positions start at the group's committed
    /// offsets (or at the beginning for a new group).
    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// Whether the bus is reachable and writable now (for readiness checks).
    async fn check(&self) -> Result<(), BusError>;

    /// The backend's name (`embedded`, `kafka`).
    fn backend(&self) -> &'static str;

    /// Delivers whatever is still queued, within `timeout` (for shutdown). Publishes already
    /// wait for durability, so this only matters for records whose publisher gave up waiting.
    async fn close(&self, timeout: Duration) -> Result<(), BusError> {
        let _ = timeout;
        Ok(())
    }

    /// Erases a person (LGPD erasure, [`erase`]): deletes their records from a log of wacrm's
    /// own, or publishes tombstones for their keys on Kafka's compacted contacts topic. A bus
    /// that can do neither refuses (the erasure stays pending and says so).
    async fn erase(&self, request: &BusErasure) -> Result<BusErased, BusError> {
        let _ = request;
        Err(BusError::Fatal(format!(
            "the {} bus cannot erase records",
            self.backend()
        )))
    }

    /// Removes the oldest records that `policy` lets go, at most about `max_records` in this
    /// call (call again while [`Trimmed::done`] is `false`); with `dry_run`, counts everything
    /// it would remove now and removes nothing. `None` when the backend has no log of its own
    /// to trim: a Kafka broker deletes by each topic's `retention.ms` itself (which wacrm sets
    /// when it creates the topics and `wacrm doctor` checks), so the default does nothing.
    async fn trim(
        &self,
        policy: TrimPolicy,
        max_records: usize,
        dry_run: bool,
    ) -> Result<Option<Trimmed>, BusError> {
        let _ = (policy, max_records, dry_run);
        Ok(None)
    }
}

/// What [`EventBus::trim`] may remove. Only a topic's oldest records go: trimming stops at
/// the first record that must stay, so what is left of a topic is everything after a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrimPolicy {
    /// Records stored before this time (milliseconds since the epoch) go once every consumer
    /// group that committed on their topic has consumed them.
    pub older_than_ms: i64,
    /// The hard limit: records stored before this time go even when a group has not consumed
    /// them (a group that stopped for good would otherwise keep the log forever). `None`:
    /// never.
    pub unconsumed_older_than_ms: Option<i64>,
}

/// What one [`EventBus::trim`] call removed (or, as a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Records removed.
    pub records: u64,
    /// Records removed that a consumer group had not consumed (past the hard limit), by group:
    /// that group resumes after them.
    pub unconsumed: std::collections::BTreeMap<String, u64>,
    /// Whether nothing more may go now; `false`: call again.
    pub done: bool,
}

/// A consumer group member's view of its topics.
#[async_trait]
pub trait Subscription: Send {
    /// Up to `max` records, waiting up to `wait` for the first one. Records of one partition
    /// come in offset order. Empty on timeout.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError>;

    /// Marks everything up to and including these records as processed and makes that durable.
    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError>;

    /// Goes back to the last committed position, so uncommitted records are delivered again.
    async fn rewind(&mut self) -> Result<(), BusError>;

    /// How many records of the subscribed topics the group has not committed yet.
    async fn lag(&mut self) -> Result<i64, BusError>;

    /// Stops delivering records (Kafka: pauses every assigned partition) while the member keeps
    /// its place in the group: [`poll`](Self::poll) must still be called — on Kafka it is what
    /// keeps the member within `max.poll.interval.ms` — and returns nothing until
    /// [`resume`](Self::resume). A partition assigned while paused may still deliver; the
    /// caller rewinds after resuming, so whatever came meanwhile is delivered again.
    async fn pause(&mut self) -> Result<(), BusError>;

    /// Delivers records again after [`pause`](Self::pause).
    async fn resume(&mut self) -> Result<(), BusError>;

    /// Leaves the group after committing nothing more.
    async fn close(self: Box<Self>) -> Result<(), BusError>;
}

/// Opens the bus a configuration asks for.
pub async fn open(config: &BusConfig) -> Result<Arc<dyn EventBus>, BusError> {
    match config.backend {
        #[cfg(feature = "embedded")]
        config::Backend::Embedded => Ok(Arc::new(embedded::EmbeddedBus::open(&config.embedded)?)),
        #[cfg(feature = "kafka")]
        config::Backend::Kafka => {
            let specs = kafka::expected_topics(&config.topics(), &config.kafka);
            match kafka::check_topics(&config.kafka, &specs, config.kafka.create_topics).await {
                Ok(states) => {
                    for (spec, state) in states {
                        if state != kafka::TopicState::Ok {
                            tracing::warn!(topic = %spec.name, ?state, "kafka topic is not as expected; see `wacrm doctor`");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "kafka topics could not be checked"),
            }
            Ok(Arc::new(
                kafka::KafkaBus::open(
                    &config.kafka,
                    Duration::from_millis(config.publish_timeout_ms),
                )?
                .with_group_prefix(&config.topic_prefix),
            ))
        }
        #[allow(unreachable_patterns)]
        backend => Err(BusError::Fatal(format!(
            "this build of wacrm-bus has no {backend:?} backend (features \"kafka\", \"embedded\")"
        ))),
    }
}
