//! Bus configuration (`[bus]` in `wacrm.toml`, `WACRM_BUS__…` in the environment).

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
    /// Prefix of every topic name.
    pub topic_prefix: String,
    /// How long a publish may wait for durability before the webhook is answered 503.
    pub publish_timeout_ms: u64,
    /// `[bus.embedded]`.
    pub embedded: EmbeddedConfig,
    /// `[bus.kafka]`.
    pub kafka: crate::kafka::KafkaConfig,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            backend: Backend::Embedded,
            topic_prefix: "wacrm.".into(),
            publish_timeout_ms: 5_000,
            embedded: EmbeddedConfig::default(),
            kafka: crate::kafka::KafkaConfig::default(),
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
