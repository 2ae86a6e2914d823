//! The loop every consumer runs in: poll a batch, hand it to the handler, retry what is
//! transient, dead-letter what is bad, commit only what was handled.
//!
//! Guarantees: at-least-once (a record's offset is committed only after the handler succeeded
//! on it, or after it was durably dead-lettered), in order per partition, and a bad record never
//! blocks the ones behind it: a record the handler names is dead-lettered at once; a batch that
//! keeps failing with a data error (the database refused something in it) is retried a bounded
//! number of times, then halved until the record that fails alone is found and dead-lettered
//! with the reason. A commit that keeps failing (a rebalance, a lost group member) is not
//! retried forever: the runner goes back to the committed position and polls again, so the
//! member rejoins and the batch is delivered again (handled idempotently). A handler never
//! blocks past Kafka's `max.poll.interval.ms`: one that must wait long returns
//! [`HandlerError::Park`], and the runner pauses consumption, keeps polling through the wait,
//! then resumes and rewinds, so the batch comes again. On shutdown the
//! runner stops polling, finishes the batch in hand (or abandons it uncommitted if it is stuck
//! retrying: it will be delivered again), commits and returns.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;
use wacrm_core::redact::scrub;
use wacrm_core::ErrorClass;

use crate::cloudevents::{dead_letter_record, DeadLetterOrigin};
use crate::supervise::ConsumerRegistry;
use crate::{BusError, EventBus, Record, Subscription, Topics};

/// What went wrong in a handler, by what the runner should do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Transient: the whole batch is offered again after a backoff.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The batch failed in a way one of its records may cause: the database refused data in it
    /// (a U+0000 in a text on PostgreSQL, a constraint), or the bus refused a record as too
    /// large. Retried like `Retryable` up to [`RunnerConfig::data_error_attempts`] times, then
    /// the runner halves the batch until it finds the record that fails on its own, and
    /// dead-letters it with this reason; the rest flows.
    #[error("data error: {0}")]
    Data(String),
    /// `batch[index]` can never be processed. The handler applied nothing of the batch; the
    /// runner handles the records before it, dead-letters it, and goes on after it.
    #[error("record {index} cannot be processed: {reason}")]
    Permanent {
        /// Index of the bad record in the batch handed to the handler.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The batch cannot be handled before `wait` has passed (a CRM's daily quota is used up, a
    /// retry or rate limit asks for a long wait). The handler returns instead of sleeping: on
    /// Kafka a member that does not poll for `max.poll.interval.ms` is put out of its group.
    /// The runner pauses consumption, keeps polling for `wait` (shutdown ends it early), then
    /// resumes, rewinds to the last commit and offers the batch again. Whatever of the batch
    /// the handler applied is applied again, which idempotence makes harmless.
    #[error("parked for {wait:?}: {reason}")]
    Park {
        /// How long to wait before the batch is offered again.
        wait: Duration,
        /// Why.
        reason: String,
    },
    /// The consumer cannot go on (misconfiguration, lost credentials); the runner stops.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl HandlerError {
    /// The error's class.
    pub fn class(&self) -> ErrorClass {
        match self {
            HandlerError::Retryable(_) | HandlerError::Park { .. } => ErrorClass::Retry,
            HandlerError::Permanent { .. } | HandlerError::Data(_) => ErrorClass::DeadLetter,
            HandlerError::Fatal(_) => ErrorClass::Fatal,
        }
    }

    /// A bus error met while handling a batch (publishing what it produced), by its class: an
    /// unavailable bus is retried; a record the bus refuses (too large) is a data error, which
    /// the runner isolates to the record that causes it and dead-letters; a fatal one stops
    /// the consumer.
    pub fn from_bus(context: &str, error: BusError) -> HandlerError {
        match error.class() {
            ErrorClass::Retry => HandlerError::Retryable(format!("{context}: {error}")),
            ErrorClass::DeadLetter => HandlerError::Data(format!("{context}: {error}")),
            ErrorClass::Fatal => HandlerError::Fatal(format!("{context}: {error}")),
        }
    }
}

/// `error` with its reason scrubbed ([`wacrm_core::redact::scrub`]): a handler's reason may
/// quote what a third party answered, which carries phone numbers and bodies.
fn scrubbed(error: HandlerError) -> HandlerError {
    match error {
        HandlerError::Retryable(reason) => HandlerError::Retryable(scrub(&reason)),
        HandlerError::Data(reason) => HandlerError::Data(scrub(&reason)),
        HandlerError::Permanent { index, reason } => HandlerError::Permanent {
            index,
            reason: scrub(&reason),
        },
        HandlerError::Park { wait, reason } => HandlerError::Park {
            wait,
            reason: scrub(&reason),
        },
        HandlerError::Fatal(reason) => HandlerError::Fatal(scrub(&reason)),
    }
}

/// What a handler did with a batch that it (otherwise) handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handled {
    /// Records that can never be processed, by index in the batch, with the reason: the runner
    /// dead-letters them before committing. The handler applied everything else.
    pub dead_letters: Vec<(usize, String)>,
}

/// A consumer's processing step. A call must be idempotent: the same records may be handed
/// again after a crash or a retry. On `Err`, nothing of the batch may be assumed applied (a
/// `Permanent` error means nothing was applied; a `Retryable` one may leave part applied, which
/// idempotence makes harmless).
#[async_trait]
pub trait Handler: Send {
    /// Processes a batch, in order.
    async fn handle(&mut self, records: &[Record]) -> Result<Handled, HandlerError>;
}

/// Why the runner stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The handler said it cannot go on.
    #[error("consumer {group} stopped: {reason}")]
    Fatal {
        /// The group.
        group: String,
        /// Why.
        reason: String,
    },
    /// The bus failed for good.
    #[error("consumer {group} lost the bus: {source}")]
    Bus {
        /// The group.
        group: String,
        /// The bus error.
        source: BusError,
    },
}

impl RunnerError {
    /// The error's class: a fatal handler error is `Fatal`; a lost bus may come back (`Retry`).
    pub fn class(&self) -> ErrorClass {
        match self {
            RunnerError::Fatal { .. } => ErrorClass::Fatal,
            RunnerError::Bus { .. } => ErrorClass::Retry,
        }
    }
}

/// How a runner polls and retries.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The consumer group.
    pub group: String,
    /// Most records per batch.
    pub max_batch: usize,
    /// Longest wait for a batch.
    pub poll_wait: Duration,
    /// How long a batch may keep collecting records (up to `max_batch`) before it is handled,
    /// counted from when the bus stored its oldest record: larger batches mean fewer calls to
    /// slow downstream systems, and records that already waited (behind a slow batch) do not
    /// wait again.
    pub linger: Duration,
    /// Lingering stops once a batch holds this many records (capped by `max_batch`): the size
    /// of one downstream call, so a lingering batch becomes one full call rather than a full one
    /// and a sliver. A batch polled larger than this (a consumer that is behind) is kept whole.
    pub linger_target: usize,
    /// How a batch waits out its linger.
    pub linger_mode: LingerMode,
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Attempts at a batch that fails with [`HandlerError::Data`] before its records are
    /// isolated.
    pub data_error_attempts: u32,
    /// Attempts at a commit before the runner rewinds and polls again.
    pub commit_attempts: u32,
}

/// How a batch waits out [`RunnerConfig::linger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LingerMode {
    /// Take records as they arrive and go the moment the batch holds `linger_target`: for a
    /// consumer whose batch size means something downstream (one CRM call). The consumer wakes
    /// on every append while it lingers.
    UntilTarget,
    /// Sleep the linger out, then take what arrived meanwhile (up to `linger_target`): one
    /// wake-up per batch instead of one per append. For a consumer whose cost is per batch
    /// and whose batch size means nothing downstream (the store projection): under moderate
    /// load it handles a few large batches a second instead of one small batch per append.
    Sleep,
}

impl RunnerConfig {
    /// Defaults for a group: batches of up to 500, backoff from 100 ms to 30 s.
    pub fn new(group: impl Into<String>) -> Self {
        RunnerConfig {
            group: group.into(),
            max_batch: 500,
            poll_wait: Duration::from_millis(500),
            linger: Duration::ZERO,
            linger_target: usize::MAX,
            linger_mode: LingerMode::UntilTarget,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            data_error_attempts: 3,
            commit_attempts: 3,
        }
    }

    /// Delays from `initial_backoff`, doubling with jitter, up to `max_backoff`, without end.
    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// Runs a consumer until `shutdown` is cancelled or a fatal error.
pub struct ConsumerRunner<H> {
    bus: Arc<dyn EventBus>,
    topics: Topics,
    config: RunnerConfig,
    handler: H,
    registry: Arc<ConsumerRegistry>,
}

enum Outcome {
    Done,
    Abandoned,
    /// The handler asked to wait this long before the batch comes again.
    Parked(Duration),
}

enum Attempt {
    Ok(Vec<(usize, String)>),
    Bad {
        index: usize,
        reason: String,
    },
    /// Data errors every time, `data_error_attempts` times: isolate.
    Suspect(String),
    Parked(Duration),
    Abandoned,
}

/// One step of handling a batch (indices into it).
enum Step {
    Handle(std::ops::Range<usize>),
    DeadLetter(usize, String),
}

/// How long ago the bus stored the oldest record of a batch (zero when unknown, or when clocks
/// disagree).
fn oldest_age(batch: &[Record]) -> Duration {
    let Some(oldest) = batch
        .iter()
        .map(|r| r.timestamp_ms)
        .filter(|t| *t > 0)
        .min()
    else {
        return Duration::ZERO;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Duration::from_millis(now.saturating_sub(oldest).max(0) as u64)
}

impl<H: Handler> ConsumerRunner<H> {
    /// A runner for a handler.
    pub fn new(bus: Arc<dyn EventBus>, topics: Topics, config: RunnerConfig, handler: H) -> Self {
        ConsumerRunner {
            bus,
            topics,
            config,
            handler,
            registry: Arc::new(ConsumerRegistry::default()),
        }
    }

    /// Reports commits and errors into `registry` (for `/v1/status` and the metrics).
    pub fn with_registry(mut self, registry: Arc<ConsumerRegistry>) -> Self {
        self.registry = registry;
        self
    }

    /// Runs [`run`](Self::run) on an OS thread of its own, with a single-threaded runtime;
    /// the returned future ends with what `run` returned.
    ///
    /// For a consumer whose batch is many round trips in sequence (every statement of a
    /// database transaction): on the service's shared runtime it waits at each of them behind
    /// every other ready task, so a flood of webhooks starves it (the store projection stored
    /// about 6,500 events a second at 7,000 webhooks/s, less than half of what came). On its own
    /// thread the operating system shares the cores between it and the webhook path.
    pub fn run_on_own_thread(
        self,
        subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = Result<(), RunnerError>> + Send + 'static
    where
        H: 'static,
    {
        let group = self.config.group.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        let started = std::thread::Builder::new()
            .name(format!("{group}-runner"))
            .spawn(move || {
                let outcome = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(self.run(subscription, shutdown)),
                    Err(e) => Err(RunnerError::Fatal {
                        group: self.config.group.clone(),
                        reason: format!("cannot start a runtime: {e}"),
                    }),
                };
                // The caller may have stopped waiting; the outcome is then nobody's to report.
                let _ = done.send(outcome);
            });
        async move {
            if let Err(e) = started {
                return Err(RunnerError::Fatal {
                    group,
                    reason: format!("cannot start a thread: {e}"),
                });
            }
            result.await.unwrap_or_else(|_| {
                Err(RunnerError::Fatal {
                    group,
                    reason: "its thread ended without a result (it panicked)".into(),
                })
            })
        }
    }

    /// Polls, handles and commits until shutdown.
    pub async fn run(
        mut self,
        mut subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> Result<(), RunnerError> {
        let group = self.config.group.clone();
        let mut poll_backoff = self.config.backoff();
        // Lag costs two round trips on Kafka (committed offsets, log ends; both off the
        // consumer's fetch connection, which would hold them up to `fetch.wait.max.ms` each):
        // measure it at most this often.
        let lag_every = Duration::from_secs(5);
        let mut lag_measured = tokio::time::Instant::now() - lag_every;
        while !shutdown.is_cancelled() {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                polled = subscription.poll(self.config.max_batch, self.config.poll_wait) => polled,
            };
            let batch = match batch {
                Ok(b) => {
                    poll_backoff = self.config.backoff();
                    b
                }
                Err(e) if e.class() == ErrorClass::Fatal => {
                    return Err(RunnerError::Bus { group, source: e });
                }
                Err(e) => {
                    tracing::warn!(group = %group, error = %e, "poll failed; retrying");
                    self.registry.error(&group, e.class(), &e.to_string());
                    self.sleep(&mut poll_backoff, &shutdown).await;
                    continue;
                }
            };
            if batch.is_empty() {
                continue;
            }
            let batch = self.linger(subscription.as_mut(), batch, &shutdown).await;
            let handling = std::time::Instant::now();
            let outcome = self.process(&batch, &shutdown).await?;
            metrics::histogram!("wacrm_consumer_handle_seconds", "group" => group.clone())
                .record(handling.elapsed());
            metrics::histogram!("wacrm_consumer_batch_records", "group" => group.clone())
                .record(batch.len() as f64);
            match outcome {
                Outcome::Done => {}
                Outcome::Abandoned => {
                    // Shutting down mid-retry: leave the batch uncommitted for redelivery.
                    break;
                }
                Outcome::Parked(wait) => {
                    self.park(subscription.as_mut(), wait, &shutdown).await;
                    continue;
                }
            }
            let committing = std::time::Instant::now();
            if !self
                .commit(subscription.as_mut(), &batch, &shutdown)
                .await?
            {
                // Not committed: poll again from the committed position (the member rejoins
                // its group by polling; the batch comes again and is handled idempotently).
                if let Err(e) = subscription.rewind().await {
                    tracing::warn!(group = %group, error = %e, "rewind after a failed commit failed; polling on");
                }
                continue;
            }
            self.registry.committed(&group);
            metrics::histogram!("wacrm_consumer_commit_seconds", "group" => group.clone())
                .record(committing.elapsed());
            metrics::counter!("wacrm_consumer_records_total", "group" => group.clone())
                .increment(batch.len() as u64);
            if lag_measured.elapsed() >= lag_every {
                lag_measured = tokio::time::Instant::now();
                if let Ok(lag) = subscription.lag().await {
                    metrics::gauge!("wacrm_consumer_lag", "group" => group.clone()).set(lag as f64);
                }
            }
        }
        let _ = subscription.close().await;
        Ok(())
    }

    /// Tops a started batch up: until it is `linger` old or holds `linger_target` records.
    async fn linger(
        &self,
        subscription: &mut dyn Subscription,
        mut batch: Vec<Record>,
        shutdown: &CancellationToken,
    ) -> Vec<Record> {
        let waited = oldest_age(&batch);
        if waited >= self.config.linger {
            return batch;
        }
        let deadline = tokio::time::Instant::now() + (self.config.linger - waited);
        let target = self
            .config
            .linger_target
            .clamp(1, self.config.max_batch.max(1));
        if self.config.linger_mode == LingerMode::Sleep && batch.len() < target {
            tokio::select! {
                // Shutting down: handle what we have.
                _ = shutdown.cancelled() => return batch,
                _ = tokio::time::sleep_until(deadline) => {}
            }
            // A poll error: handle what we have; the next poll meets the error again.
            if let Ok(more) = subscription
                .poll(target - batch.len(), Duration::ZERO)
                .await
            {
                batch.extend(more);
            }
            return batch;
        }
        while batch.len() < target {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                break;
            }
            let polled = tokio::select! {
                // Shutting down: handle what we have.
                _ = shutdown.cancelled() => break,
                polled = subscription.poll(target - batch.len(), remaining) => polled,
            };
            match polled {
                Ok(more) if !more.is_empty() => batch.extend(more),
                // Nothing more in time, or a poll error: handle what we have.
                _ => break,
            }
        }
        batch
    }

    /// Waits `wait` without handling anything and without leaving the group: consumption is
    /// paused and the subscription polled all along (whatever a poll still delivers is dropped),
    /// then resumed and rewound, so the parked batch and everything after it come again from
    /// the last commit.
    async fn park(
        &self,
        subscription: &mut dyn Subscription,
        wait: Duration,
        shutdown: &CancellationToken,
    ) {
        let group = &self.config.group;
        metrics::counter!("wacrm_consumer_parked_total", "group" => group.clone()).increment(1);
        if let Err(e) = subscription.pause().await {
            // Polls may then deliver records, which are dropped and come again after the rewind.
            tracing::warn!(group = %group, error = %e, "could not pause consumption while parked");
        }
        let until = tokio::time::Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                polled = subscription.poll(self.config.max_batch, left.min(self.config.poll_wait)) => {
                    if let Err(e) = polled {
                        tracing::debug!(group = %group, error = %e, "poll while parked failed");
                        // Not a busy loop on a bus that fails at once.
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(left.min(self.config.poll_wait)) => {}
                        }
                    }
                }
            }
        }
        if let Err(e) = subscription.resume().await {
            tracing::warn!(group = %group, error = %e, "could not resume consumption after parking");
        }
        if let Err(e) = subscription.rewind().await {
            tracing::warn!(group = %group, error = %e, "rewind after parking failed; polling on");
        }
    }

    async fn sleep(&self, backoff: &mut ExponentialBackoff, shutdown: &CancellationToken) {
        let delay = backoff.next().unwrap_or(self.config.max_backoff);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }

    /// Handles a batch in order, splitting it where the handler says a record is bad or a
    /// data error must be isolated. The work is a stack of steps (next on top), so splitting
    /// needs no recursion.
    async fn process(
        &mut self,
        batch: &[Record],
        shutdown: &CancellationToken,
    ) -> Result<Outcome, RunnerError> {
        let mut work = vec![Step::Handle(0..batch.len())];
        while let Some(step) = work.pop() {
            let range = match step {
                Step::DeadLetter(index, reason) => {
                    if !self.dead_letter(&batch[index], &reason, shutdown).await {
                        return Ok(Outcome::Abandoned);
                    }
                    continue;
                }
                Step::Handle(range) if range.is_empty() => continue,
                Step::Handle(range) => range,
            };
            let slice = &batch[range.clone()];
            match self.handle_with_retry(slice, shutdown).await? {
                Attempt::Ok(dead) => {
                    if !self.dead_letter_all(slice, &dead, shutdown).await {
                        return Ok(Outcome::Abandoned);
                    }
                }
                Attempt::Abandoned => return Ok(Outcome::Abandoned),
                Attempt::Parked(wait) => return Ok(Outcome::Parked(wait)),
                Attempt::Bad { index, reason } => {
                    // The records before the bad one, then it, then the rest.
                    let bad = range.start + index;
                    work.push(Step::Handle(bad + 1..range.end));
                    work.push(Step::DeadLetter(bad, reason));
                    work.push(Step::Handle(range.start..bad));
                }
                Attempt::Suspect(reason) if slice.len() == 1 => {
                    let reason = format!(
                        "failed {} times on its own: {reason}",
                        self.config.data_error_attempts.max(1)
                    );
                    work.push(Step::DeadLetter(range.start, reason));
                }
                Attempt::Suspect(reason) => {
                    // Halve: the first half (in order) before the second, each isolated alike.
                    tracing::warn!(group = %self.config.group, records = slice.len(), %reason, "a batch keeps failing with a data error; isolating the record");
                    let middle = range.start + slice.len() / 2;
                    work.push(Step::Handle(middle..range.end));
                    work.push(Step::Handle(range.start..middle));
                }
            }
        }
        Ok(Outcome::Done)
    }

    /// Dead-letters the records a handler named. False on shutdown.
    async fn dead_letter_all(
        &self,
        records: &[Record],
        dead: &[(usize, String)],
        shutdown: &CancellationToken,
    ) -> bool {
        for (index, reason) in dead {
            if let Some(record) = records.get(*index) {
                if !self.dead_letter(record, reason, shutdown).await {
                    return false;
                }
            }
        }
        true
    }

    /// Handles records, retrying transient errors until success, shutdown or a permanent error.
    async fn handle_with_retry(
        &mut self,
        records: &[Record],
        shutdown: &CancellationToken,
    ) -> Result<Attempt, RunnerError> {
        let mut backoff = self.config.backoff();
        let mut data_errors: u32 = 0;
        loop {
            // Reasons are scrubbed as they leave the handler, whatever it wrote: they reach the
            // log, the consumer's status and dead letters.
            match self.handler.handle(records).await.map_err(scrubbed) {
                Ok(handled) => {
                    let dead = handled.dead_letters.into_iter();
                    return Ok(Attempt::Ok(dead.map(|(i, r)| (i, scrub(&r))).collect()));
                }
                Err(HandlerError::Permanent { index, reason }) if index < records.len() => {
                    return Ok(Attempt::Bad { index, reason });
                }
                Err(HandlerError::Permanent { index, reason }) => {
                    return Err(RunnerError::Fatal {
                        group: self.config.group.clone(),
                        reason: format!(
                            "handler named record {index} of {}: {reason}",
                            records.len()
                        ),
                    });
                }
                Err(HandlerError::Park { wait, reason }) => {
                    tracing::warn!(group = %self.config.group, wait_ms = wait.as_millis() as u64, %reason, "consumer parked");
                    self.registry.error(
                        &self.config.group,
                        ErrorClass::Retry,
                        &format!("parked: {reason}"),
                    );
                    return Ok(Attempt::Parked(wait));
                }
                Err(HandlerError::Fatal(reason)) => {
                    return Err(RunnerError::Fatal {
                        group: self.config.group.clone(),
                        reason,
                    });
                }
                Err(HandlerError::Data(reason)) => {
                    data_errors = data_errors.saturating_add(1);
                    self.registry
                        .error(&self.config.group, ErrorClass::DeadLetter, &reason);
                    if data_errors >= self.config.data_error_attempts.max(1) {
                        return Ok(Attempt::Suspect(reason));
                    }
                    metrics::counter!("wacrm_consumer_retries_total", "group" => self.config.group.clone())
                        .increment(1);
                    tracing::warn!(group = %self.config.group, %reason, "handler met a data error; retrying");
                    if shutdown.is_cancelled() {
                        return Ok(Attempt::Abandoned);
                    }
                    self.sleep(&mut backoff, shutdown).await;
                }
                Err(HandlerError::Retryable(reason)) => {
                    metrics::counter!("wacrm_consumer_retries_total", "group" => self.config.group.clone())
                        .increment(1);
                    tracing::warn!(group = %self.config.group, %reason, "handler failed; retrying");
                    self.registry
                        .error(&self.config.group, ErrorClass::Retry, &reason);
                    if shutdown.is_cancelled() {
                        return Ok(Attempt::Abandoned);
                    }
                    self.sleep(&mut backoff, shutdown).await;
                }
            }
        }
    }

    /// Publishes a dead letter for a record, retrying until it is durable. False on shutdown.
    async fn dead_letter(
        &self,
        record: &Record,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        // The last guard before a reason is durable (every path above scrubbed it already).
        let reason = &scrub(reason);
        let dlq = dead_letter_record(
            &self.topics,
            DeadLetterOrigin::Consumer {
                group: &self.config.group,
                record,
            },
            ErrorClass::DeadLetter,
            reason,
            record.payload.clone(),
        );
        let mut dlq = dlq;
        let mut backoff = self.config.backoff();
        loop {
            match self.bus.publish(vec![dlq.clone()]).await {
                Ok(()) => {
                    metrics::counter!("wacrm_consumer_dead_letters_total", "group" => self.config.group.clone())
                        .increment(1);
                    tracing::warn!(group = %self.config.group, topic = %record.topic, offset = record.offset, %reason, "record dead-lettered");
                    return true;
                }
                Err(BusError::Rejected(why)) if !dlq.payload.is_empty() => {
                    // The record itself is too large for the dead-letter topic: keep where it
                    // was and why, without its bytes, rather than block the partition.
                    tracing::warn!(group = %self.config.group, topic = %record.topic, offset = record.offset, bytes = record.payload.len(), "dead letter refused by the bus; kept without its payload");
                    dlq = dead_letter_record(
                        &self.topics,
                        DeadLetterOrigin::Consumer {
                            group: &self.config.group,
                            record,
                        },
                        ErrorClass::DeadLetter,
                        &format!(
                            "{reason} (its {} bytes were refused by the bus: {why}; kept without them)",
                            record.payload.len()
                        ),
                        Vec::new(),
                    );
                }
                Err(e) => {
                    tracing::warn!(group = %self.config.group, error = %e, "dead letter not published; retrying");
                    if shutdown.is_cancelled() {
                        return false;
                    }
                    self.sleep(&mut backoff, shutdown).await;
                }
            }
        }
    }

    /// Commits a batch: true once committed, false when it kept failing (the caller rewinds
    /// and polls again rather than retrying forever: with Kafka, a member that lost its group
    /// rejoins only by polling). Errs only when the bus is gone for good.
    async fn commit(
        &self,
        subscription: &mut dyn Subscription,
        batch: &[Record],
        shutdown: &CancellationToken,
    ) -> Result<bool, RunnerError> {
        let mut backoff = self.config.backoff();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match subscription.commit(batch).await {
                Ok(()) => return Ok(true),
                Err(e) if e.class() == ErrorClass::Fatal => {
                    return Err(RunnerError::Bus {
                        group: self.config.group.clone(),
                        source: e,
                    })
                }
                Err(e) => {
                    self.registry
                        .error(&self.config.group, e.class(), &e.to_string());
                    if shutdown.is_cancelled() || attempts >= self.config.commit_attempts.max(1) {
                        // Uncommitted work is redelivered and handled idempotently.
                        tracing::warn!(group = %self.config.group, error = %e, "commit failed; polling again from the committed position");
                        return Ok(false);
                    }
                    tracing::warn!(group = %self.config.group, error = %e, "commit failed; retrying");
                    self.sleep(&mut backoff, shutdown).await;
                }
            }
        }
    }
}
