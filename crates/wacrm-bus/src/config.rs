//! Bus configuration (`[bus]` in `wacrm.toml`, `WACRM_BUS__…` in the environment).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which backend carries events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// A single-node log in a local SQLite file.
    #[default]
    Embedded,
    /// Apache Kafka (or a Kafka-protocol broker).
    Kafka,
}

/// `[bus]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BusConfig {
    /// `embedded` (default) or `kafka`.
    pub backend: Backend,
    /// Prefix of every topic name; on Kafka, of every consumer group id too, unless it is the
    /// default (`kafka::group_id`).
    pub topic_prefix: String,
    /// How long a publish may wait for durability before the webhook is answered 503.
    pub publish_timeout_ms: u64,
    /// `[bus.embedded]`.
    pub embedded: EmbeddedConfig,
    /// `[bus.kafka]`.
    pub kafka: KafkaConfig,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            backend: Backend::Embedded,
            topic_prefix: crate::topics::DEFAULT_PREFIX.into(),
            publish_timeout_ms: 5_000,
            embedded: EmbeddedConfig::default(),
            kafka: KafkaConfig::default(),
        }
    }
}

impl BusConfig {
    /// The topic names.
    pub fn topics(&self) -> crate::Topics {
        crate::Topics::with_prefix(&self.topic_prefix)
    }
}

/// `[bus.embedded]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EmbeddedConfig {
    /// The log file.
    pub path: PathBuf,
    /// Most records one group commit writes (one fsync for all of them).
    pub max_batch: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            path: PathBuf::from("data/bus.db"),
            max_batch: 4096,
        }
    }
}

/// `[bus.kafka]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `client.id`.
    pub client_id: String,
    /// Partitions of the conversation, contact, command and dead-letter topics when wacrm
    /// creates them.
    pub partitions: i32,
    /// Replication factor when wacrm creates topics.
    pub replication_factor: i32,
    /// `session.timeout.ms` of consumers: how long a crashed member holds its partitions.
    pub session_timeout_ms: u64,
    /// Timeout of metadata, commit and admin requests.
    pub request_timeout_ms: u64,
    /// Create missing topics when `serve` starts (otherwise `wacrm doctor --create-topics`).
    pub create_topics: bool,
    /// Publish with an idempotent producer (`enable.idempotence`): a retried produce request
    /// is written once. Turn it off only for a broker that does not implement idempotent
    /// producers correctly (tansu 0.6 loses their state on restart and can stop serving);
    /// publishing then allows one request in flight per connection, so retries keep each key's
    /// order, and a retry may write a record twice — harmless, as every consumer is idempotent.
    pub idempotence: bool,
    /// Extra librdkafka properties (`security.protocol`, `sasl.mechanism`, …) for producers,
    /// consumers and the admin client alike.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            client_id: "wacrm".into(),
            partitions: 12,
            replication_factor: 1,
            session_timeout_ms: 10_000,
            request_timeout_ms: 10_000,
            create_topics: false,
            idempotence: true,
            properties: BTreeMap::new(),
        }
    }
}
