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

/// `[bus.kafka]`. Its `Debug` shows the properties that hold secrets as `***`.
#[derive(Clone, Serialize, Deserialize)]
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
    /// How long the topics wacrm creates keep records, in milliseconds (`-1`: forever): their
    /// `retention.ms`, and the compacted contacts topic's `delete.retention.ms` (how long a
    /// tombstone stays). Not read from `[bus.kafka]`: the application sets it from
    /// `[retention] bus_log_days`, the one retention of the bus whichever the backend.
    #[serde(skip)]
    pub topic_retention_ms: i64,
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
            // `[retention] bus_log_days`'s default, 7 days.
            topic_retention_ms: 7 * 86_400_000,
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    // The properties carry the SASL password and may carry keys: their names are shown, the
    // values of secret ones are not.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_property(k) { "***" } else { v };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("create_topics", &self.create_topics)
            .field("idempotence", &self.idempotence)
            .field("properties", &properties)
            .field("topic_retention_ms", &self.topic_retention_ms)
            .finish()
    }
}

/// Whether the librdkafka property `name` (dotted, or as the environment spells it:
/// `SASL_PASSWORD`) may hold a secret, whose value must not reach a log. librdkafka's own list
/// of sensitive properties (passwords, private keys and their passphrases, the OAUTHBEARER
/// configuration and client secret, the SASL user name, inline PEM) and, for names it may
/// add, anything named like a password, secret, key or token.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('_', ".");
    [
        "password",
        "secret",
        "passphrase",
        "key",
        "token",
        "sasl.username",
        "sasl.oauthbearer.config",
        ".pem",
    ]
    .iter()
    .any(|part| name.contains(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_properties(pairs: &[(&str, &str)]) -> KafkaConfig {
        KafkaConfig {
            properties: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..KafkaConfig::default()
        }
    }

    #[test]
    fn debug_never_shows_a_kafka_secret_but_names_every_property() {
        let config = BusConfig {
            kafka: with_properties(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.username", "svc-user-7"),
                ("sasl.password", "pw-dotted-1"),
                // As the environment delivers `WACRM_BUS__KAFKA__PROPERTIES__SASL_PASSWORD`.
                ("sasl_password", "pw-env-2"),
                ("SSL_KEY_PASSWORD", "pw-upper-3"),
                ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----pem-4"),
                ("ssl.ca.location", "/etc/wacrm/kafka-ca.pem"),
            ]),
            ..BusConfig::default()
        };
        let shown = format!("{config:?}");
        for secret in [
            "svc-user-7",
            "pw-dotted-1",
            "pw-env-2",
            "pw-upper-3",
            "pem-4",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for visible in [
            "SASL_SSL",
            "SCRAM-SHA-512",
            "/etc/wacrm/kafka-ca.pem",
            "sasl.password",
            "sasl_password",
        ] {
            assert!(shown.contains(visible), "{visible} not in {shown}");
        }
    }

    /// Every property librdkafka itself marks sensitive (`_RK_SENSITIVE` in its configuration
    /// table, 2.12) is a secret here too; the usual ones around them are not.
    #[test]
    fn librdkafkas_sensitive_properties_are_secrets() {
        for name in [
            "ssl.key.location",
            "ssl.key.password",
            "ssl.key.pem",
            "ssl_key",
            "ssl.ca.pem",
            "ssl.keystore.password",
            "sasl.username",
            "sasl.password",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.assertion.private.key.file",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "sasl.oauthbearer.assertion.private.key.pem",
        ] {
            assert!(is_secret_property(name), "{name}");
        }
        for name in [
            "security.protocol",
            "sasl.mechanisms",
            "sasl.mechanism",
            "ssl.ca.location",
            "ssl.endpoint.identification.algorithm",
            "message.max.bytes",
            "client.rack",
        ] {
            assert!(!is_secret_property(name), "{name}");
        }
    }
}
