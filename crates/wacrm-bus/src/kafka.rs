//! The Kafka backend (rdkafka, bundled librdkafka).
//!
//! Publishing: an idempotent `FutureProducer` (`enable.idempotence=true` unless configured
//! off for a broker without idempotent producers, `acks=all`);
//! `publish` enqueues every record and returns only when every delivery report is in. Records
//! are partitioned with `murmur2_random`, the Java client's partitioner, so JVM producers and
//! consumers agree on where a key lives.
//!
//! Consuming: a `StreamConsumer` per subscription with `enable.auto.commit=false` and
//! `enable.auto.offset.store=false`; offsets are committed synchronously, explicitly, after the
//! handler succeeded. Rebalance callbacks run inside `poll` (between batches), so no work is in
//! flight when partitions are revoked; a commit for a partition this member lost fails and the
//! batch is redelivered to the new owner (at-least-once; handlers are idempotent).
//! `lag` asks the group coordinator for the committed offsets and a client outside the group
//! for the log ends (`OffsetsClient`), never the consumer's own connection, where requests
//! wait behind its fetch. Fetch settings: `CONSUMER_FETCH`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::{
    BusErased, BusErasure, BusError, EventBus, OutboundRecord, Record, Subscription, Topics,
};

pub use crate::config::KafkaConfig;

impl KafkaConfig {
    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set_log_level(RDKafkaLogLevel::Warning);
        for (k, v) in self.librdkafka_properties() {
            c.set(k, v);
        }
        c
    }

    /// The extra properties under librdkafka's names. Environment variable names cannot hold
    /// dots, so `WACRM_BUS__KAFKA__PROPERTIES__SASL_PASSWORD` arrives as `sasl_password`:
    /// underscores become dots (no librdkafka property has an underscore in its name) and
    /// names are lower-cased.
    pub fn librdkafka_properties(&self) -> Vec<(String, &str)> {
        self.properties
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase().replace('_', "."), v.as_str()))
            .collect()
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// A client that could not be made. librdkafka's refusal of a property carries the property's
/// value, which may be a password (a misspelt `sasl.pasword=…`): the value is left out.
fn creation_error(client: &str, e: &KafkaError) -> BusError {
    match e {
        KafkaError::ClientConfig(_, description, name, _value) => BusError::Fatal(format!(
            "{client}: configuration property \"{name}\" refused: {description}"
        )),
        other => BusError::Fatal(format!("{client}: {other}")),
    }
}

fn classify(e: &KafkaError) -> BusError {
    let code = e.rdkafka_error_code();
    match code {
        Some(RDKafkaErrorCode::MessageTimedOut) | Some(RDKafkaErrorCode::RequestTimedOut) => {
            BusError::Unavailable(format!("kafka timed out: {e}"))
        }
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
        | Some(RDKafkaErrorCode::InvalidMessageSize)
        | Some(RDKafkaErrorCode::InvalidTopic)
        | Some(RDKafkaErrorCode::InvalidMessage)
        | Some(RDKafkaErrorCode::TopicAuthorizationFailed) => BusError::Rejected(e.to_string()),
        Some(RDKafkaErrorCode::Fatal)
        | Some(RDKafkaErrorCode::SaslAuthenticationFailed)
        | Some(RDKafkaErrorCode::ClusterAuthorizationFailed) => BusError::Fatal(e.to_string()),
        _ => BusError::Unavailable(e.to_string()),
    }
}

/// The producer's client context: notices when every broker connection went down, after
/// which the producer is replaced before its next publish (see `KafkaBus::replace_producer`).
#[derive(Clone, Default)]
pub struct ProducerHealth {
    all_brokers_down: Arc<AtomicBool>,
}

impl ClientContext for ProducerHealth {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.all_brokers_down.store(true, Ordering::Relaxed);
        }
        tracing::warn!(%error, reason, "kafka producer error");
    }
}

type IdempotentProducer = FutureProducer<ProducerHealth>;

/// The Kafka event bus.
pub struct KafkaBus {
    config: KafkaConfig,
    /// The deployment's topic prefix, which its group ids carry (see [`group_id`]).
    group_prefix: String,
    producer: RwLock<(IdempotentProducer, ProducerHealth)>,
    replaced_at: std::sync::Mutex<std::time::Instant>,
    publish_timeout: Duration,
    /// The client that asks for log-end offsets ([`OffsetsClient`]), made by the first
    /// subscription and shared by all.
    offsets: std::sync::Mutex<Option<Arc<OffsetsClient>>>,
}

/// A client outside every consumer group, for the offsets `lag` needs (`ListOffsets`).
///
/// Not the consumer's own connection: a broker answers one connection's requests in order,
/// and a consumer that has read to the end of its partitions always has a fetch waiting there
/// for up to `fetch.wait.max.ms` for new records. A `ListOffsets` on that connection waited
/// behind it: 0.5 s a partition with librdkafka's per-partition watermark query, so the
/// runner's lag measurement every 5 s stalled the store projection (36 partitions) for 18 s
/// at a time while a backlog waited. On a connection of its own the query is one request
/// (every partition at once) answered in a millisecond or two. Committed offsets come from
/// the group coordinator, which librdkafka talks to on a connection of its own already.
type OffsetsClient = BaseConsumer;

/// Shortest time between two producer replacements.
const MIN_REPLACE_INTERVAL: Duration = Duration::from_secs(1);

fn create_producer(
    config: &KafkaConfig,
    publish_timeout: Duration,
) -> Result<(IdempotentProducer, ProducerHealth), BusError> {
    let timeout_ms = publish_timeout.as_millis().max(1).to_string();
    let health = ProducerHealth::default();
    let mut client = config.client();
    if config.idempotence {
        client.set("enable.idempotence", "true");
    } else {
        client
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1");
    }
    client
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .set("message.timeout.ms", &timeout_ms)
        .set("compression.type", "lz4")
        .create_with_context(health.clone())
        .map(|p| (p, health))
        .map_err(|e| creation_error("kafka producer", &e))
}

impl KafkaBus {
    /// Creates the producer. No connection is made until the first request.
    pub fn open(config: &KafkaConfig, publish_timeout: Duration) -> Result<Self, BusError> {
        Ok(KafkaBus {
            config: config.clone(),
            group_prefix: crate::topics::DEFAULT_PREFIX.to_owned(),
            producer: RwLock::new(create_producer(config, publish_timeout)?),
            replaced_at: std::sync::Mutex::new(std::time::Instant::now() - MIN_REPLACE_INTERVAL),
            publish_timeout,
            offsets: std::sync::Mutex::new(None),
        })
    }

    /// The bus of the deployment whose topics carry `topic_prefix`: its consumer groups are
    /// its own ([`group_id`]).
    pub fn with_group_prefix(mut self, topic_prefix: &str) -> Self {
        self.group_prefix = topic_prefix.to_owned();
        self
    }

    /// The current producer; one that lost every broker since it was made is replaced first.
    fn producer(&self) -> Result<IdempotentProducer, BusError> {
        let (producer, health) = self
            .producer
            .read()
            .map(|p| p.clone())
            .map_err(|_| BusError::Fatal("producer lock poisoned".into()))?;
        if health.all_brokers_down.load(Ordering::Relaxed) {
            self.replace_producer(&producer, "all brokers were down");
            return self
                .producer
                .read()
                .map(|p| p.0.clone())
                .map_err(|_| BusError::Fatal("producer lock poisoned".into()));
        }
        Ok(producer)
    }

    /// The [`OffsetsClient`], made on first use (it connects only when asked something).
    fn offsets_client(&self) -> Result<Arc<OffsetsClient>, BusError> {
        let mut offsets = self
            .offsets
            .lock()
            .map_err(|_| BusError::Fatal("offsets client lock poisoned".into()))?;
        if let Some(client) = offsets.as_ref() {
            return Ok(client.clone());
        }
        // Without a `group.id` the consumer joins no group: it only answers offset queries.
        // The session timeout is unused, but librdkafka checks it against the operator's
        // consumer properties (`max.poll.interval.ms`) as it does for the group's consumers.
        let client: Arc<OffsetsClient> = Arc::new(
            self.config
                .client()
                .set(
                    "session.timeout.ms",
                    self.config.session_timeout_ms.to_string(),
                )
                .create()
                .map_err(|e| creation_error("kafka offsets client", &e))?,
        );
        *offsets = Some(client.clone());
        Ok(client)
    }

    /// Replaces a producer whose delivery failed or that lost every broker. librdkafka's
    /// idempotent producer cannot go on after a fatal error, and a broker that restarted
    /// without its idempotence state (tansu 0.6 does) rejects the old producer id for good —
    /// a producer that never sent to the restarted broker is accepted at once. So a failure
    /// retires the producer; its other in-flight records fail to their publishers, who retry
    /// (webhooks get 503), and consumers are idempotent, so a record that was in fact written
    /// and is published again does no harm. During an outage this creates at most one
    /// producer per publish timeout.
    fn replace_producer(&self, failed: &IdempotentProducer, e: impl std::fmt::Display) {
        let Ok(mut current) = self.producer.write() else {
            return;
        };
        // Concurrent publishers see the same failure: replace once.
        if !std::ptr::eq(
            current.0.client().native_ptr(),
            failed.client().native_ptr(),
        ) {
            return;
        }
        // While brokers stay down, a new producer a second is plenty.
        if self
            .replaced_at
            .lock()
            .map(|at| at.elapsed() < MIN_REPLACE_INTERVAL)
            .unwrap_or(false)
        {
            return;
        }
        match create_producer(&self.config, self.publish_timeout) {
            Ok(fresh) => {
                tracing::warn!(reason = %e, "kafka producer replaced");
                if let Ok(mut at) = self.replaced_at.lock() {
                    *at = std::time::Instant::now();
                }
                metrics::counter!("wacrm_kafka_producer_replacements_total").increment(1);
                *current = fresh;
            }
            Err(err) => tracing::error!(error = %err, "kafka producer could not be replaced"),
        }
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn publish(&self, records: Vec<OutboundRecord>) -> Result<(), BusError> {
        let producer = self.producer()?;
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (k, v) in &record.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let mut future_record = FutureRecord::to(&record.topic)
                .payload(&record.payload)
                .headers(headers);
            if !record.key.is_empty() {
                future_record = future_record.key(&record.key);
            }
            match producer.send_result(future_record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => {
                    self.replace_producer(&producer, &e);
                    return Err(classify(&e));
                }
            }
        }
        let results = match tokio::time::timeout(
            self.publish_timeout + Duration::from_secs(1),
            futures::future::join_all(deliveries),
        )
        .await
        {
            Ok(results) => results,
            Err(_) => {
                self.replace_producer(&producer, "deliveries did not complete in time");
                return Err(BusError::Timeout(self.publish_timeout));
            }
        };
        for result in results {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    self.replace_producer(&producer, &e);
                    return Err(classify(&e));
                }
                Err(_) => return Err(BusError::Unavailable("kafka producer closed".into())),
            }
        }
        Ok(())
    }

    async fn erase(&self, request: &BusErasure) -> Result<BusErased, BusError> {
        let producer = self.producer()?;
        let mut deliveries = Vec::with_capacity(request.contact_keys.len());
        for key in &request.contact_keys {
            // No value: a tombstone, which compaction keeps for `delete.retention.ms` and then
            // drops with every earlier record of the key.
            let tombstone = FutureRecord::<str, [u8]>::to(&request.contacts_topic).key(key);
            match producer.send_result(tombstone) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => return Err(classify(&e)),
            }
        }
        let results = tokio::time::timeout(
            self.publish_timeout + Duration::from_secs(1),
            futures::future::join_all(deliveries),
        )
        .await
        .map_err(|_| BusError::Timeout(self.publish_timeout))?;
        for result in results {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(classify(&e)),
                Err(_) => return Err(BusError::Unavailable("kafka producer closed".into())),
            }
        }
        Ok(BusErased {
            removed: 0,
            tombstones: request.contact_keys.len() as u64,
        })
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let make = ConsumerFactory {
            config: self.config.clone(),
            group: group_id(&self.group_prefix, group),
            topics: topics.to_vec(),
        };
        Ok(Box::new(KafkaSubscription {
            consumer: Arc::new(make.create()?),
            offsets: self.offsets_client()?,
            make,
            request_timeout: self.config.request_timeout(),
            replace_after: None,
        }))
    }

    async fn check(&self) -> Result<(), BusError> {
        let producer = self.producer()?;
        let timeout = self.config.request_timeout().min(Duration::from_secs(3));
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, timeout)
                .map(drop)
                .map_err(|e| classify(&e))
        })
        .await
        .map_err(|e| BusError::Fatal(e.to_string()))?
    }

    fn backend(&self) -> &'static str {
        "kafka"
    }

    async fn close(&self, timeout: Duration) -> Result<(), BusError> {
        let producer = self.producer()?;
        tokio::task::spawn_blocking(move || producer.flush(timeout).map_err(|e| classify(&e)))
            .await
            .map_err(|e| BusError::Fatal(e.to_string()))?
    }
}

/// The Kafka group id of wacrm's consumer group `group` (`wacrm-store`, `wacrm-sender`, a CRM
/// connection's) in the deployment whose topics carry `topic_prefix`. Two deployments on one
/// cluster (production and staging, two businesses) have different prefixes, so they never
/// share a group: one's rebalances, evictions and offset resets never reach the other. On the
/// default prefix the bare name is kept, so a deployment that upgrades keeps its committed
/// offsets.
pub fn group_id(topic_prefix: &str, group: &str) -> String {
    if topic_prefix == crate::topics::DEFAULT_PREFIX {
        group.to_owned()
    } else {
        format!("{topic_prefix}{group}")
    }
}

/// Logs partition assignments and revocations.
struct RebalanceLog {
    group: String,
}

impl ClientContext for RebalanceLog {}

impl ConsumerContext for RebalanceLog {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(group = %self.group, partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(group = %self.group, partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "rebalance error")
            }
        }
    }
}

/// Fetch settings of every consumer, under librdkafka's names; `bus.kafka.properties`
/// overrides them. They are librdkafka's defaults, pinned with the reason each suits wacrm.
/// With them a wacrm consumer works off a backlog at the rate of a plain librdkafka consumer on
/// the same broker (`wacrm-load drain`, docs/performance.md: median ratios 0.93–1.03 over runs
/// of three rounds), so nothing here holds a drain back; what did was the lag measurement (see
/// [`OffsetsClient`]).
///
/// - `fetch.wait.max.ms` 500: how long the broker may hold a fetch that found nothing new.
///   An idle consumer sends two fetches a second instead of ten at 100 ms. On tansu 0.6,
///   100 ms drained 10,000 records 1.4–1.6 times as fast for both consumers alike, mostly
///   in the first fetches after joining (50,000 records: no faster for the plain consumer); a
///   deployment on tansu can have it with `WACRM_BUS__KAFKA__PROPERTIES__FETCH_WAIT_MAX_MS`.
///   On Kafka a waiting fetch is answered as soon as records arrive, so a lower value only
///   adds requests.
/// - `fetch.min.bytes` 1: a fetch is answered as soon as it has anything; a consumer that is
///   behind gets what there is at once (64 KiB drained about a quarter slower).
/// - `queued.min.messages` 100,000: records prefetched per partition (within
///   `queued.max.messages.kbytes`, 64 MiB per consumer), so a batch of 500 finds its records
///   already fetched while the handler works on the one before (1,000 drained as fast).
/// - `max.partition.fetch.bytes` 1 MiB: about 1,400 wacrm records per partition per fetch
///   (256 KiB drained as fast).
const CONSUMER_FETCH: &[(&str, &str)] = &[
    ("fetch.wait.max.ms", "500"),
    ("fetch.min.bytes", "1"),
    ("queued.min.messages", "100000"),
    ("max.partition.fetch.bytes", "1048576"),
];

/// Builds a group's consumer, again when it must be replaced.
struct ConsumerFactory {
    config: KafkaConfig,
    group: String,
    topics: Vec<String>,
}

impl ConsumerFactory {
    fn create(&self) -> Result<StreamConsumer<RebalanceLog>, BusError> {
        let mut client = self.config.client();
        for (name, value) in CONSUMER_FETCH {
            if client.get(name).is_none() {
                client.set(*name, *value);
            }
        }
        let consumer: StreamConsumer<RebalanceLog> = client
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                self.config.session_timeout_ms.to_string(),
            )
            .set("enable.partition.eof", "false")
            .create_with_context(RebalanceLog {
                group: self.group.clone(),
            })
            .map_err(|e| creation_error("kafka consumer", &e))?;
        let names: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(|e| classify(&e))?;
        Ok(consumer)
    }
}

/// How long a consumer that lost every broker gets to recover on its own before it is replaced.
const CONSUMER_RECOVERY: Duration = Duration::from_secs(5);

struct KafkaSubscription {
    consumer: Arc<StreamConsumer<RebalanceLog>>,
    /// Asks for log-end offsets off the consumer's connection (see [`OffsetsClient`]).
    offsets: Arc<OffsetsClient>,
    make: ConsumerFactory,
    request_timeout: Duration,
    /// Set when the consumer reported an unavailable cluster: if it has not delivered anything
    /// by then, it is replaced by a new member of the same group, which resumes from the
    /// committed offsets. A broker that restarted may have lost the group's state (tansu does),
    /// and an old member can then stay stuck for good; a new one joins afresh.
    replace_after: Option<std::time::Instant>,
}

impl KafkaSubscription {
    async fn replace_if_stuck(&mut self) -> Result<(), BusError> {
        let Some(at) = self.replace_after else {
            return Ok(());
        };
        if std::time::Instant::now() < at {
            return Ok(());
        }
        tracing::warn!(group = %self.make.group, "kafka consumer lost the cluster; replacing it (it resumes from the committed offsets)");
        let fresh = Arc::new(self.make.create()?);
        let old = std::mem::replace(&mut self.consumer, fresh);
        // Closing leaves the group, which may wait on the network: not on this task.
        tokio::task::spawn_blocking(move || drop(old));
        self.replace_after = None;
        Ok(())
    }
}

/// The first (`Offset::Beginning`) or next (`Offset::End`) offset of each partition of
/// `partitions`' logs, in one `ListOffsets` request per leader.
fn log_offsets(
    client: &OffsetsClient,
    partitions: &TopicPartitionList,
    which: Offset,
    timeout: Duration,
) -> Result<HashMap<(String, i32), i64>, BusError> {
    let mut query = TopicPartitionList::new();
    for element in partitions.elements() {
        query
            .add_partition_offset(element.topic(), element.partition(), which)
            .map_err(|e| classify(&e))?;
    }
    let answered = client
        .offsets_for_times(query, timeout)
        .map_err(|e| classify(&e))?;
    let mut out = HashMap::new();
    for element in answered.elements() {
        if let Err(e) = element.error() {
            return Err(classify(&e));
        }
        if let Offset::Offset(o) = element.offset() {
            out.insert((element.topic().to_owned(), element.partition()), o);
        }
    }
    Ok(out)
}

/// A record from a message read with rdkafka, for integrators who run their own consumer
/// (then [`crate::cloudevents::decode_event`] gives the event).
pub fn record_from_kafka(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        headers,
        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        timestamp_ms: m.timestamp().to_millis().unwrap_or_default(),
    }
}

/// The record of a message, unless it is a tombstone (no value): an erasure's marker for the
/// broker's compaction (`crate::erase`), not an event. Skipped tombstones are committed with
/// the next record of their partition.
fn unless_tombstone(m: &rdkafka::message::BorrowedMessage<'_>) -> Option<Record> {
    m.payload().is_some().then(|| record_from_kafka(m))
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        self.replace_if_stuck().await?;
        let first = match tokio::time::timeout(wait, self.consumer.recv()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(Err(e)) => {
                let error = classify(&e);
                if matches!(error, BusError::Unavailable(_)) && self.replace_after.is_none() {
                    self.replace_after = Some(std::time::Instant::now() + CONSUMER_RECOVERY);
                }
                return Err(error);
            }
            Ok(Ok(m)) => {
                self.replace_after = None;
                unless_tombstone(&m)
            }
        };
        let mut out: Vec<Record> = first.into_iter().collect();
        // Take what is already fetched, without waiting.
        while out.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => out.extend(unless_tombstone(&m)),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer error while batching");
                    break;
                }
                None => break,
            }
        }
        Ok(out)
    }

    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        for r in records {
            let e = next
                .entry((r.topic.clone(), r.partition))
                .or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))
                .map_err(|e| classify(&e))?;
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| BusError::Fatal(e.to_string()))?
            .map_err(|e| classify(&e))
    }

    async fn rewind(&mut self) -> Result<(), BusError> {
        let consumer = self.consumer.clone();
        let timeout = self.request_timeout;
        tokio::task::spawn_blocking(move || -> Result<(), BusError> {
            let committed = consumer.committed(timeout).map_err(|e| classify(&e))?;
            for element in committed.elements() {
                let offset = match element.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    _ => Offset::Beginning,
                };
                consumer
                    .seek(element.topic(), element.partition(), offset, timeout)
                    .map_err(|e| classify(&e))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| BusError::Fatal(e.to_string()))?
    }

    async fn lag(&mut self) -> Result<i64, BusError> {
        let consumer = self.consumer.clone();
        let offsets = self.offsets.clone();
        let timeout = self.request_timeout;
        tokio::task::spawn_blocking(move || -> Result<i64, BusError> {
            // The group coordinator's answer, on librdkafka's coordinator connection.
            let committed = consumer.committed(timeout).map_err(|e| classify(&e))?;
            if committed.count() == 0 {
                return Ok(0);
            }
            // Serve what the offsets client's queue holds (errors, logs): nobody else polls it.
            let _ = offsets.poll(Duration::ZERO);
            let ends = log_offsets(&offsets, &committed, Offset::End, timeout)?;
            // A partition the group never committed is read from the start of its log.
            let uncommitted: Vec<_> = committed
                .elements()
                .into_iter()
                .filter(|e| !matches!(e.offset(), Offset::Offset(_)))
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            let starts = if uncommitted.is_empty() {
                HashMap::new()
            } else {
                let mut tpl = TopicPartitionList::new();
                for (topic, partition) in &uncommitted {
                    tpl.add_partition(topic, *partition);
                }
                log_offsets(&offsets, &tpl, Offset::Beginning, timeout)?
            };
            let mut lag = 0;
            for element in committed.elements() {
                let key = (element.topic().to_owned(), element.partition());
                let end = ends.get(&key).copied().unwrap_or(0);
                let done = match element.offset() {
                    Offset::Offset(o) => o,
                    _ => starts.get(&key).copied().unwrap_or(0),
                };
                lag += (end - done).max(0);
            }
            Ok(lag)
        })
        .await
        .map_err(|e| BusError::Fatal(e.to_string()))?
    }

    async fn pause(&mut self) -> Result<(), BusError> {
        let assignment = self.consumer.assignment().map_err(|e| classify(&e))?;
        self.consumer.pause(&assignment).map_err(|e| classify(&e))
    }

    async fn resume(&mut self) -> Result<(), BusError> {
        // Whatever is assigned now, including partitions assigned while paused (which were
        // never paused) and those of a consumer that replaced the paused one.
        let assignment = self.consumer.assignment().map_err(|e| classify(&e))?;
        self.consumer.resume(&assignment).map_err(|e| classify(&e))
    }

    async fn close(self: Box<Self>) -> Result<(), BusError> {
        self.consumer.unsubscribe();
        Ok(())
    }
}

/// What a topic should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// `cleanup.policy`: `delete` or `compact`.
    pub cleanup_policy: &'static str,
}

/// A day in milliseconds: the longest a topic's open segment lasts (`segment.ms`) and the
/// longest a compacted record waits for compaction (`max.compaction.lag.ms`).
const DAY_MS: i64 = 86_400_000;

/// The topic configuration wacrm creates a topic with: its cleanup policy and its retention
/// (`[retention] bus_log_days`, in [`KafkaConfig::topic_retention_ms`]).
///
/// - A `delete` topic gets `retention.ms`, and `segment.ms` of at most a day: Kafka deletes
///   whole segments once their newest record is past the retention, so with its default week
///   of `segment.ms` a record could outlive the retention by a week; here by a day at most.
/// - The compacted contacts topic gets `delete.retention.ms` (how long a tombstone stays
///   readable: a consumer that is behind by less than the bus's retention sees every erasure),
///   and at most a day of `segment.ms` and `max.compaction.lag.ms`, so a contact's older
///   records are compacted away within about a day of being replaced or tombstoned (the open
///   segment is never compacted).
///
/// A retention of `-1` (forever) sets `retention.ms=-1` and leaves the segment settings and
/// the tombstones' `delete.retention.ms` at the broker's defaults.
pub fn topic_configs(spec: &TopicSpec, config: &KafkaConfig) -> Vec<(&'static str, String)> {
    let retention = config.topic_retention_ms;
    let forever = retention < 0;
    let segment = if forever {
        None
    } else {
        Some(retention.clamp(1, DAY_MS).to_string())
    };
    let mut configs = vec![("cleanup.policy", spec.cleanup_policy.to_owned())];
    if spec.cleanup_policy == "compact" {
        if !forever {
            configs.push(("delete.retention.ms", retention.to_string()));
            configs.push(("max.compaction.lag.ms", DAY_MS.to_string()));
        }
    } else {
        configs.push(("retention.ms", retention.max(-1).to_string()));
    }
    if let Some(segment) = segment {
        configs.push(("segment.ms", segment));
    }
    configs
}

/// The configuration that says how long a topic keeps what it holds: `retention.ms`, or a
/// compacted topic's `delete.retention.ms` (its tombstones; its records stay until replaced).
/// `None` when the topic is left at the broker's default (a compacted topic kept forever).
pub fn retention_config(spec: &TopicSpec, config: &KafkaConfig) -> Option<(&'static str, String)> {
    let key = if spec.cleanup_policy == "compact" {
        "delete.retention.ms"
    } else {
        "retention.ms"
    };
    topic_configs(spec, config)
        .into_iter()
        .find(|(name, _)| *name == key)
}

/// The topics wacrm expects, with their partitions and cleanup policy.
pub fn expected_topics(topics: &Topics, config: &KafkaConfig) -> Vec<TopicSpec> {
    let spec = |name: &str, partitions: i32, cleanup_policy| TopicSpec {
        name: name.to_owned(),
        partitions,
        cleanup_policy,
    };
    vec![
        spec(&topics.conversations, config.partitions, "delete"),
        spec(&topics.contacts, config.partitions, "compact"),
        spec(&topics.commands, config.partitions, "delete"),
        spec(&topics.audit, 1, "delete"),
        spec(&topics.dead_letters, config.partitions, "delete"),
    ]
}

/// What `doctor` found for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicState {
    /// Exists as expected.
    Ok,
    /// Does not exist.
    Missing,
    /// Exists with another partition count (partitions can only grow; keys would move).
    Partitions {
        /// Found.
        found: i32,
    },
    /// Exists with another cleanup policy.
    CleanupPolicy {
        /// Found.
        found: String,
    },
    /// Exists, but keeps records for another time than the configured retention, or forever
    /// (`-1`), or sets none of its own (`found: None`: the broker's default applies). A
    /// warning, not a failure: the records are there, but replay reaches back (and personal
    /// data stays) for as long as the topic says, not the configuration.
    Retention {
        /// The configuration (`retention.ms`, `delete.retention.ms`).
        name: &'static str,
        /// Its value on the topic.
        found: Option<String>,
        /// The configured value.
        expected: String,
    },
}

/// Checks the expected topics and, if asked, creates the missing ones.
pub async fn check_topics(
    config: &KafkaConfig,
    specs: &[TopicSpec],
    create_missing: bool,
) -> Result<Vec<(TopicSpec, TopicState)>, BusError> {
    let admin: AdminClient<DefaultClientContext> = config
        .client()
        .create()
        .map_err(|e| creation_error("kafka admin", &e))?;
    let timeout = config.request_timeout();
    let options = AdminOptions::new().request_timeout(Some(timeout));
    if create_missing {
        let existing = topic_partitions(&admin, timeout).await?;
        // Each topic with its configuration: the retention is set when the topic is made.
        let missing: Vec<(&TopicSpec, Vec<(&'static str, String)>)> = specs
            .iter()
            .filter(|s| !existing.contains_key(&s.name))
            .map(|s| (s, topic_configs(s, config)))
            .collect();
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|(s, configs)| {
                configs.iter().fold(
                    NewTopic::new(
                        &s.name,
                        s.partitions,
                        TopicReplication::Fixed(config.replication_factor),
                    ),
                    |topic, (name, value)| topic.set(name, value),
                )
            })
            .collect();
        if !new.is_empty() {
            for result in admin
                .create_topics(&new, &options)
                .await
                .map_err(|e| classify(&e))?
            {
                match result {
                    Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => {
                        return Err(BusError::Unavailable(format!("creating {topic}: {code}")))
                    }
                }
            }
        }
    }
    let existing = topic_partitions(&admin, timeout).await?;
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let state = match existing.get(&spec.name) {
            None => TopicState::Missing,
            Some(found) if *found != spec.partitions => TopicState::Partitions { found: *found },
            Some(_) => match topic_config(&admin, &spec.name, &options).await {
                // A broker that does not answer `DescribeConfigs` cannot be checked further.
                None => TopicState::Ok,
                Some(found) => config_state(spec, config, &found),
            },
        };
        out.push((spec.clone(), state));
    }
    Ok(out)
}

/// How a topic's described configuration compares with what wacrm creates it with.
fn config_state(
    spec: &TopicSpec,
    config: &KafkaConfig,
    found: &HashMap<String, String>,
) -> TopicState {
    if let Some(policy) = found.get("cleanup.policy") {
        if policy != spec.cleanup_policy {
            return TopicState::CleanupPolicy {
                found: policy.clone(),
            };
        }
    }
    let Some((name, expected)) = retention_config(spec, config) else {
        return TopicState::Ok;
    };
    let value = found.get(name).cloned();
    let same = value
        .as_deref()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .zip(expected.parse::<i64>().ok())
        // Any negative `retention.ms` is Kafka's "forever".
        .is_some_and(|(found, expected)| found == expected || (found < 0 && expected < 0));
    if same {
        TopicState::Ok
    } else {
        TopicState::Retention {
            name,
            found: value,
            expected,
        }
    }
}

async fn topic_partitions(
    admin: &AdminClient<DefaultClientContext>,
    timeout: Duration,
) -> Result<HashMap<String, i32>, BusError> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, timeout)
        .map_err(|e| classify(&e))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect())
}

/// The topic's configuration (name → value), when the broker answers `DescribeConfigs`. A
/// broker may leave out what the topic does not set (tansu 0.6 answers only what the topic was
/// created with); Kafka answers every key, with the broker's defaults.
async fn topic_config(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    options: &AdminOptions,
) -> Option<HashMap<String, String>> {
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], options)
        .await
        .ok()?;
    let resource = results.into_iter().next()?.ok()?;
    Some(
        resource
            .entries
            .into_iter()
            .filter_map(|entry| Some((entry.name, entry.value?)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    //! Against librdkafka's mock cluster. The cluster is not `Send`: it stays on the test's
    //! thread (the default current-thread runtime) and is never moved into `tokio::spawn`.

    use super::*;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    fn cluster(
        topic: &str,
    ) -> (
        MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        KafkaConfig,
    ) {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic(topic, 3, 1).expect("topic");
        let config = KafkaConfig {
            brokers: mock.bootstrap_servers(),
            ..KafkaConfig::default()
        };
        (mock, config)
    }

    fn records(topic: &str, n: usize) -> Vec<OutboundRecord> {
        (0..n)
            .map(|i| OutboundRecord {
                topic: topic.into(),
                key: format!("key-{}", i % 5),
                headers: vec![("ce_id".into(), i.to_string())],
                payload: i.to_string().into_bytes(),
            })
            .collect()
    }

    async fn drain(sub: &mut Box<dyn Subscription>, want: usize) -> Vec<Record> {
        let mut out = Vec::new();
        for _ in 0..60 {
            if out.len() >= want {
                break;
            }
            out.extend(
                sub.poll(100, Duration::from_millis(500))
                    .await
                    .expect("poll"),
            );
        }
        out
    }

    /// What a new group reads of topic `t`.
    async fn read_back(bus: &KafkaBus, want: usize) -> Vec<Record> {
        let mut sub = bus
            .subscribe("g", &["t".to_owned()])
            .await
            .expect("subscribe");
        drain(&mut sub, want).await
    }

    #[tokio::test]
    async fn publish_consume_commit_on_a_mock_cluster() {
        let (_mock, config) = cluster("t");
        let bus = KafkaBus::open(&config, Duration::from_secs(5)).expect("bus");
        bus.publish(records("t", 50)).await.expect("publish");
        let mut sub = bus
            .subscribe("g", &["t".to_owned()])
            .await
            .expect("subscribe");
        let got = drain(&mut sub, 50).await;
        assert_eq!(got.len(), 50);
        assert!(got.iter().all(|r| r.header("ce_id").is_some()));
        // One key, one partition.
        for key in 0..5 {
            let parts: std::collections::HashSet<i32> = got
                .iter()
                .filter(|r| r.key == format!("key-{key}"))
                .map(|r| r.partition)
                .collect();
            assert_eq!(parts.len(), 1);
        }
        sub.commit(&got).await.expect("commit");
        assert_eq!(sub.lag().await.expect("lag"), 0);
    }

    #[tokio::test]
    async fn transient_produce_errors_are_retried_without_duplicates() {
        let (mock, config) = cluster("t");
        mock.request_errors(
            RDKafkaApiKey::Produce,
            &[
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            ],
        );
        let bus = KafkaBus::open(&config, Duration::from_secs(10)).expect("bus");
        bus.publish(records("t", 10))
            .await
            .expect("retried until durable");
        let got = read_back(&bus, 10).await;
        let mut ids: Vec<&str> = got.iter().filter_map(|r| r.header("ce_id")).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10);
        assert_eq!(
            got.len(),
            10,
            "the idempotent producer wrote each record once"
        );
    }

    #[tokio::test]
    async fn without_idempotence_retries_keep_each_keys_order() {
        let (mock, mut config) = cluster("t");
        config.idempotence = false;
        mock.request_errors(
            RDKafkaApiKey::Produce,
            &[
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            ],
        );
        let bus = KafkaBus::open(&config, Duration::from_secs(10)).expect("bus");
        for chunk in records("t", 40).chunks(8) {
            bus.publish(chunk.to_vec())
                .await
                .expect("retried until durable");
        }
        let got = read_back(&bus, 40).await;
        for key in 0..5 {
            // A retry may write a record again; its first copy never comes after a later
            // record of its key.
            let mut seen: Vec<usize> = Vec::new();
            for id in got
                .iter()
                .filter(|r| r.key == format!("key-{key}"))
                .filter_map(|r| r.header("ce_id")?.parse().ok())
            {
                if !seen.contains(&id) {
                    seen.push(id);
                }
            }
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "key-{key}: {seen:?}");
            assert_eq!(seen.len(), 8, "key-{key}: every record arrived");
        }
    }

    #[tokio::test]
    async fn a_down_broker_fails_the_publish_within_its_timeout() {
        let (mock, config) = cluster("t");
        let bus = KafkaBus::open(&config, Duration::from_millis(1500)).expect("bus");
        bus.publish(records("t", 1)).await.expect("up");
        mock.broker_down(1).expect("down");
        let started = std::time::Instant::now();
        let result = bus.publish(records("t", 1)).await;
        assert!(result.is_err());
        assert_eq!(
            result.err().map(|e| e.class()),
            Some(wacrm_core::ErrorClass::Retry)
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_refused_property_never_shows_its_value() {
        let mut config = KafkaConfig::default();
        config
            .properties
            .insert("sasl.pasword".into(), "hunter2-secret".into());
        let Err(error) = KafkaBus::open(&config, Duration::from_secs(1)) else {
            panic!("a misspelt property was accepted");
        };
        let shown = error.to_string();
        assert!(shown.contains("sasl.pasword"), "{shown}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
    }
}
