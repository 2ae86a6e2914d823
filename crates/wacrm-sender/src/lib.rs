//! The outbound sender: a consumer of the commands topic that sends what employees asked for
//! through the WhatsApp Graph API.
//!
//! For each `wacrm.message.send_requested.v1` (and `…read_requested.v1`) it:
//!
//! 1. claims the request in the store (`accepted` → `sending`, one conditional update), so a
//!    command delivered twice is sent once; a finished request only has its outcome published
//!    again; a request found `sending` by another instance that is alive (a consumer that lost
//!    its partition in a rebalance while still working on it) is waited for (the batch parks
//!    and comes again); a request found `sending` by an instance that is gone, or left so by
//!    this one (wacrm stopped mid-call), becomes `unknown` and is not sent again: a duplicate
//!    message to a customer is worse than asking the employee to check. Claims name the
//!    instance ([`Sender::with_instance`], `wacrm_store::instances`);
//! 2. waits for the number's and the recipient pair's rate limits;
//! 3. calls the Graph API and classifies the outcome by whether Meta may have sent the message:
//!    only outcomes that say nothing was sent (a failed connect, Meta's rate-limit and
//!    temporary codes) are retried with backoff (the request handed back to `accepted` while it
//!    waits) until `max_retry_ms`; an outcome nobody can know (a timeout or reset after the
//!    request was written, a 5xx without such a code, an unreadable answer) ends the request as
//!    `unknown` and is never sent again automatically; permanent errors fail the request;
//!    131050 also records the opt-out; an invalid token marks the number's sending health
//!    (`/v1/status`) and alerts once. A wait (rate limit or retry) that would take the batch past
//!    [`BATCH_BUDGET`] parks the batch instead of blocking the handler (the request handed back,
//!    its retries remembered). A call already on its way when wacrm is told to stop is
//!    not abandoned: it finishes (it is bounded by `request_timeout_ms`), or, should the process
//!    die first, the request stays `sending` and the restart marks it `unknown`;
//! 4. records the outcome (wamid or errors) in the store, then publishes it:
//!    `wacrm.message.sent.v1` (the store shows it, statuses attach to it, CRM adapters log it
//!    with the employee's name) or `wacrm.message.send_failed.v1`.
//!
//! Commands of one conversation are handled in order; different conversations of a batch
//! concurrently.

pub mod throttle;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use wacrm_bus::cloudevents::{decode_event, event_record};
use wacrm_bus::runner::{Handled, Handler, HandlerError, RunnerConfig};
use wacrm_bus::{EventBus, Record, Topics};
use wacrm_core::message::Sender as Employee;
use wacrm_core::optout::opted_out_by_error;
use wacrm_core::outbound::{FailureKind, ReadRequest, SendFailure, SendRequest};
use wacrm_core::rate::LimiterUnavailable;
use wacrm_core::{Event, EventPayload, MetaError};
use wacrm_store::outbound::{self as requests, state, Claim, NewRequest, OutboundRow};
use wacrm_store::{Db, StoreError};
use wacrm_whatsapp::graph::{message_body, Disposition};
use wacrm_whatsapp::{GraphClient, GraphError, SendHealth, WhatsAppConfig};

pub use throttle::Throttle;

/// The sender's consumer group.
pub const GROUP: &str = "wacrm-sender";

/// The sender (a [`Handler`] of the commands topic).
pub struct Sender {
    inner: Arc<Inner>,
}

struct Inner {
    graph: GraphClient,
    config: WhatsAppConfig,
    throttle: Throttle,
    db: Db,
    bus: Arc<dyn EventBus>,
    topics: Topics,
    source: String,
    health: Arc<SendHealth>,
    shutdown: CancellationToken,
    /// How long one batch may wait (for rate limits, between retries) before the sender parks
    /// instead of waiting on: see [`BATCH_BUDGET`].
    batch_budget: Duration,
    /// Requests between two attempts while the sender is parked: when the first attempt was
    /// made and how many were made, so the backoff and `max_retry_ms` carry on across the park.
    retrying: Mutex<HashMap<String, Retrying>>,
    /// The id this sender's claims carry: the instance registered in `wacrm_store::instances`.
    instance: String,
}

/// How long one batch may wait, for rate limits or between retries, before the sender hands it
/// back to the runner to park (pause the partitions and keep polling) rather than sleeping on
/// inside the handler: on Kafka a member that does not poll for `max.poll.interval.ms` (5
/// minutes by default) is put out of its group, and the retry budget alone (`max_retry_ms`,
/// 10 minutes by default) is longer than that. A Graph call already on its way is never cut
/// short, so a batch takes at most this plus one `request_timeout_ms` per conversation in turn.
pub const BATCH_BUDGET: Duration = Duration::from_secs(60);

/// How long the sender parks when a rate limiter is not ready within the batch's budget.
const PARK_FOR_RATE_LIMIT: Duration = Duration::from_secs(1);

/// How long the sender parks when another live instance is sending a request of the batch.
const PARK_FOR_OTHER_INSTANCE: Duration = Duration::from_secs(2);

/// A request's retries so far, kept while the sender is parked.
#[derive(Debug, Clone, Copy)]
struct Retrying {
    since: tokio::time::Instant,
    tries: u32,
}

/// Why handling a command stopped short.
enum Stop {
    /// The store failed: retry the batch.
    Store(StoreError),
    /// Shutting down while waiting: the request was handed back; it is delivered again.
    Shutdown,
    /// Waiting on would take the batch past its budget: the request was handed back
    /// (`accepted`); the batch is offered again after this long.
    Park(Duration),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

impl Sender {
    /// A sender for the configured Graph API, writing to `db` and publishing on `bus`. On a
    /// PostgreSQL store its rate limits are shared with every instance on that store.
    pub fn new(
        config: WhatsAppConfig,
        db: Db,
        bus: Arc<dyn EventBus>,
        topics: Topics,
        source: String,
        health: Arc<SendHealth>,
        shutdown: CancellationToken,
    ) -> Result<Self, GraphError> {
        Ok(Sender {
            inner: Arc::new(Inner {
                graph: GraphClient::new(config.clone())?,
                // Instances sharing a PostgreSQL store share its limiter: a number's limit holds
                // whichever instance sends (docs/scaling.md).
                throttle: match wacrm_store::rate::PgLimiter::new(&db) {
                    Some(shared) => Throttle::shared(&config, Arc::new(shared)),
                    None => Throttle::new(&config),
                },
                config,
                db,
                bus,
                topics,
                source,
                health,
                shutdown,
                batch_budget: BATCH_BUDGET,
                retrying: Mutex::new(HashMap::new()),
                instance: wacrm_store::instances::new_id(),
            }),
        })
    }

    /// The same sender with another batch budget (see [`BATCH_BUDGET`]).
    pub fn with_batch_budget(mut self, budget: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.batch_budget = budget;
        }
        self
    }

    /// The same sender claiming requests as `instance`, an id registered and kept alive with
    /// `wacrm_store::instances` (`wacrm serve` does). Without it the sender's claims carry an
    /// id no other instance sees alive: fine for one process, but then another instance that
    /// takes over a partition mid-send declares the request `unknown` instead of waiting.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.instance = instance.into();
        }
        self
    }

    /// The topics the sender consumes.
    pub fn topics(topics: &Topics) -> Vec<String> {
        vec![topics.commands.clone()]
    }

    /// The runner configuration: small batches, no linger (a message should leave now).
    pub fn runner_config() -> RunnerConfig {
        let mut config = RunnerConfig::new(GROUP);
        config.max_batch = 100;
        config
    }
}

enum Command {
    Send(SendRequest),
    Read(ReadRequest),
}

#[async_trait]
impl Handler for Sender {
    async fn handle(&mut self, records: &[Record]) -> Result<Handled, HandlerError> {
        let mut dead = Vec::new();
        // Commands by conversation key, in order; conversations in parallel.
        let mut groups: BTreeMap<&str, Vec<Command>> = BTreeMap::new();
        for (index, record) in records.iter().enumerate() {
            match decode_event(record) {
                Ok(event) => match event.payload {
                    EventPayload::SendRequested(r) => groups
                        .entry(&record.key)
                        .or_default()
                        .push(Command::Send(r)),
                    EventPayload::ReadRequested(r) => groups
                        .entry(&record.key)
                        .or_default()
                        .push(Command::Read(r)),
                    other => dead.push((index, format!("{} is not a command", other.type_name()))),
                },
                Err(e) => dead.push((index, e.to_string())),
            }
        }
        let inner = &self.inner;
        let budget_ends = tokio::time::Instant::now() + inner.batch_budget;
        let results = futures::future::join_all(groups.into_values().map(|commands| async move {
            let mut events = Vec::new();
            for command in commands {
                let outcome = match command {
                    Command::Send(r) => inner.send(&r, budget_ends).await,
                    Command::Read(r) => inner.read(&r, budget_ends).await,
                };
                events.extend(outcome?);
            }
            Ok::<_, Stop>(events)
        }))
        .await;
        let mut events = Vec::new();
        let mut stop = None;
        let mut park: Option<Duration> = None;
        for result in results {
            match result {
                Ok(e) => events.extend(e),
                // The earliest: a conversation that must wait longer parks again.
                Err(Stop::Park(wait)) => park = Some(park.map_or(wait, |p| p.min(wait))),
                Err(s) => stop = Some(s),
            }
        }
        // Publish what finished even when another conversation must be retried: a finished
        // request republishes the same events (same ids) when the batch comes again.
        inner.publish(&events).await?;
        match (stop, park) {
            (None, None) => Ok(Handled { dead_letters: dead }),
            // A database that refuses data in a command (a constraint) refuses it every time:
            // the runner isolates and dead-letters it.
            (Some(Stop::Store(e)), _) if e.is_data_error() => {
                Err(HandlerError::Data(format!("store: {e}")))
            }
            (Some(Stop::Store(e)), _) => Err(HandlerError::Retryable(format!("store: {e}"))),
            (Some(Stop::Shutdown), _) => Err(HandlerError::Retryable("shutting down".into())),
            (Some(Stop::Park(wait)), _) | (None, Some(wait)) => Err(HandlerError::Park {
                wait,
                reason: "waiting for WhatsApp's rate limits, a retry or another instance's send"
                    .into(),
            }),
        }
    }
}

/// How a call to WhatsApp ended, after retries.
enum Attempted {
    Sent(String),
    Failed(GraphError),
}

impl Inner {
    async fn publish(&self, events: &[Event]) -> Result<(), HandlerError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut records = Vec::with_capacity(events.len());
        for event in events {
            records.push(
                event_record(&self.topics, &self.source, event)
                    .map_err(|e| HandlerError::Data(e.to_string()))?,
            );
        }
        self.bus
            .publish(records)
            .await
            .map_err(|e| HandlerError::from_bus("publishing outcomes", e))
    }

    /// Claims a request, creating its row if the API did not (a command from elsewhere).
    async fn claim(
        &self,
        request_id: &str,
        create: impl FnOnce() -> NewRequest,
    ) -> Result<Claim, StoreError> {
        match self.claim_existing(request_id).await? {
            Claim::Missing => {
                requests::create(&self.db, create()).await?;
                self.claim_existing(request_id).await
            }
            claim => Ok(claim),
        }
    }

    async fn claim_existing(&self, request_id: &str) -> Result<Claim, StoreError> {
        requests::claim(
            &self.db,
            request_id,
            &self.instance,
            self.claim_held_at_most(),
        )
        .await
    }

    /// The longest this sender (or any configured alike) holds one claim: waits end at the
    /// batch budget, then one call runs to its timeout; retries claim again. Twice the call's
    /// timeout leaves room for the store writes around it.
    fn claim_held_at_most(&self) -> Duration {
        self.batch_budget + 2 * Duration::from_millis(self.config.request_timeout_ms)
    }

    /// Another live instance is sending `request_id`: wait for it rather than declare it lost.
    fn wait_for_holder(request_id: &str, holder: &str) -> Stop {
        tracing::info!(
            request_id,
            holder,
            "another instance is sending this request; waiting for its outcome"
        );
        metrics::counter!("wacrm_sender_claims_busy_total").increment(1);
        Stop::Park(PARK_FOR_OTHER_INSTANCE)
    }

    async fn send(
        &self,
        request: &SendRequest,
        budget_ends: tokio::time::Instant,
    ) -> Result<Vec<Event>, Stop> {
        let claim = self
            .claim(&request.request_id, || {
                orphan_row(
                    "send",
                    &request.request_id,
                    &request.sent_by,
                    &request.business,
                    serde_json::to_value(request).unwrap_or_default(),
                )
            })
            .await?;
        match claim {
            Claim::Claimed => {}
            Claim::Busy { holder } => {
                return Err(Self::wait_for_holder(&request.request_id, &holder))
            }
            Claim::Finished(row) => return Ok(finished_events(request, &row)),
            Claim::Interrupted(_) => {
                let reason = "wacrm stopped while this message was with WhatsApp; it may or may \
                              not have been sent and is not sent again automatically";
                requests::finish_failed(
                    &self.db,
                    &request.request_id,
                    state::UNKNOWN,
                    reason,
                    None,
                )
                .await?;
                metrics::counter!("wacrm_sender_messages_total", "outcome" => "unknown")
                    .increment(1);
                return Ok(failure_event(
                    request,
                    FailureKind::Unknown,
                    reason,
                    Vec::new(),
                ));
            }
            Claim::Missing => {
                return Err(Stop::Store(StoreError::Invalid(
                    "request row missing after create".into(),
                )))
            }
        }
        let number = &request.business.phone_number_id;
        let body = message_body(request);
        let attempted = self
            .attempt(
                &request.request_id,
                Repeat::Never,
                budget_ends,
                || self.throttle.until_ready(number, &request.to),
                || self.graph.send(number, &body),
            )
            .await?;
        match attempted {
            Attempted::Sent(wamid) => {
                if self.health.sent_ok(number) {
                    tracing::info!(phone_number_id = %number, "sending works again for this number");
                }
                requests::finish_sent(&self.db, &request.request_id, &wamid).await?;
                metrics::counter!("wacrm_sender_messages_total", "outcome" => "sent").increment(1);
                Ok(Event::message(request.to_message(&wamid, Utc::now()))
                    .into_iter()
                    .collect())
            }
            Attempted::Failed(error) => {
                let disposition = error.disposition();
                let reason = self.failure_reason(number, &error, disposition);
                let errors = vec![error.as_meta_error()];
                let (final_state, kind, outcome) = if disposition == Disposition::Unknown {
                    (state::UNKNOWN, FailureKind::Unknown, "unknown")
                } else {
                    (state::FAILED, FailureKind::Failed, "failed")
                };
                requests::finish_failed(
                    &self.db,
                    &request.request_id,
                    final_state,
                    &reason,
                    serde_json::to_value(&errors).ok(),
                )
                .await?;
                metrics::counter!("wacrm_sender_messages_total", "outcome" => outcome).increment(1);
                let mut events = failure_event(request, kind, &reason, errors);
                if disposition == Disposition::OptedOut {
                    events.extend(opted_out_by_error(
                        &request.business,
                        &request.contact,
                        Utc::now(),
                        &request.request_id,
                    ));
                }
                Ok(events)
            }
        }
    }

    async fn read(
        &self,
        request: &ReadRequest,
        budget_ends: tokio::time::Instant,
    ) -> Result<Vec<Event>, Stop> {
        let claim = self
            .claim(&request.request_id, || {
                orphan_row(
                    "read",
                    &request.request_id,
                    &request.sent_by,
                    &request.business,
                    serde_json::to_value(request).unwrap_or_default(),
                )
            })
            .await?;
        match claim {
            Claim::Claimed => {}
            Claim::Interrupted(_) => {
                // Marking as read twice is harmless: try again.
                requests::release(&self.db, &request.request_id).await?;
                return Box::pin(self.read(request, budget_ends)).await;
            }
            Claim::Busy { holder } => {
                return Err(Self::wait_for_holder(&request.request_id, &holder))
            }
            Claim::Finished(_) | Claim::Missing => return Ok(Vec::new()),
        }
        let number = &request.business.phone_number_id;
        let attempted = self
            .attempt(
                &request.request_id,
                // Marking a message read twice is harmless: an unknown outcome is tried again.
                Repeat::EvenIfUnknown,
                budget_ends,
                || self.throttle.until_number_ready(number),
                || async {
                    self.graph
                        .mark_read(number, &request.wamid)
                        .await
                        .map(|()| request.wamid.clone())
                },
            )
            .await?;
        match attempted {
            Attempted::Sent(wamid) => {
                self.health.sent_ok(number);
                requests::finish_sent(&self.db, &request.request_id, &wamid).await?;
            }
            Attempted::Failed(error) => {
                let reason = self.failure_reason(number, &error, error.disposition());
                let errors = vec![error.as_meta_error()];
                requests::finish_failed(
                    &self.db,
                    &request.request_id,
                    state::FAILED,
                    &reason,
                    serde_json::to_value(&errors).ok(),
                )
                .await?;
            }
        }
        Ok(Vec::new())
    }

    fn failure_reason(&self, number: &str, error: &GraphError, disposition: Disposition) -> String {
        // The request's reason, its event's and the CRM's: scrubbed as a last guard, whatever
        // an error's text carries.
        let reason = match disposition {
            Disposition::TokenInvalid => {
                if self.health.token_rejected(number, &error.to_string()) {
                    tracing::error!(
                        phone_number_id = %number,
                        error = %error,
                        "ALERT: WhatsApp rejected the access token of this business number; \
                         nothing can be sent from it until the token is replaced"
                    );
                }
                format!("the access token was rejected ({error}); nothing is sent from this number until it is replaced")
            }
            Disposition::OptedOut => {
                format!("the contact stopped marketing messages ({error}); opt-out recorded")
            }
            Disposition::Unknown => format!(
                "WhatsApp may or may not have sent this message ({error}); it is not sent again \
                 automatically: check with the customer before sending it again"
            ),
            d if d.is_retryable() => format!(
                "gave up after retrying for {} ms: {error}",
                self.config.max_retry_ms
            ),
            _ => format!("WhatsApp refused the message: {error}"),
        };
        wacrm_core::redact::scrub(&reason)
    }

    /// Calls WhatsApp until it answers something final, retrying what certainly sent nothing
    /// (and, for `Repeat::EvenIfUnknown`, what may have) with backoff until `max_retry_ms`.
    ///
    /// `ready` waits for the rate limiters; nothing has been sent while it waits, so on
    /// shutdown the request is handed back to `accepted` and the redelivered command sends it.
    /// `call` is never abandoned on shutdown: once the request may be on the wire it runs to its
    /// answer or its timeout, and the outcome is recorded.
    ///
    /// Waiting past `budget_ends` (for `ready`, or for the next retry) parks instead: the
    /// request is handed back and its retries so far are remembered for when the batch comes
    /// again.
    async fn attempt<W, WFut, F, Fut>(
        &self,
        request_id: &str,
        repeat: Repeat,
        budget_ends: tokio::time::Instant,
        ready: W,
        call: F,
    ) -> Result<Attempted, Stop>
    where
        W: Fn() -> WFut,
        WFut: std::future::Future<Output = Result<(), LimiterUnavailable>>,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<String, GraphError>>,
    {
        let limit = Duration::from_millis(self.config.max_retry_ms);
        let base = Duration::from_millis(self.config.retry_base_ms.max(1));
        let Retrying {
            since: started,
            mut tries,
        } = self.resume_retries(request_id);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    requests::release(&self.db, request_id).await?;
                    self.remember_retries(request_id, started, tries);
                    return Err(Stop::Shutdown);
                }
                ready = tokio::time::timeout_at(budget_ends, ready()) => {
                    let unavailable = match ready {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e),
                        Err(_) => {
                            // Nothing was sent: hand the request back and park.
                            requests::release(&self.db, request_id).await?;
                            self.remember_retries(request_id, started, tries);
                            return Err(Stop::Park(PARK_FOR_RATE_LIMIT));
                        }
                    };
                    if let Some(e) = unavailable {
                        // No slot was granted: nothing may be sent. Hand it back and try later.
                        tracing::warn!(error = %e, "send waits for the shared rate limiter");
                        requests::release(&self.db, request_id).await?;
                        self.remember_retries(request_id, started, tries);
                        return Err(Stop::Park(PARK_FOR_RATE_LIMIT));
                    }
                }
            }
            let error = match call().await {
                Ok(id) => return Ok(Attempted::Sent(id)),
                Err(e) => e,
            };
            let disposition = error.disposition();
            let retryable = disposition.is_retryable()
                || (repeat == Repeat::EvenIfUnknown && disposition == Disposition::Unknown);
            if !retryable {
                return Ok(Attempted::Failed(error));
            }
            let wait = backoff(disposition, base, tries);
            if started.elapsed() + wait > limit {
                return Ok(Attempted::Failed(error));
            }
            metrics::counter!("wacrm_sender_retries_total", "code" => error.code().unwrap_or(0).to_string())
                .increment(1);
            tracing::warn!(error = %error, wait_ms = wait.as_millis() as u64, "send retried");
            requests::release(&self.db, request_id).await?;
            if tokio::time::Instant::now() + wait > budget_ends {
                self.remember_retries(request_id, started, tries.saturating_add(1));
                return Err(Stop::Park(wait));
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return Err(Stop::Shutdown),
                _ = tokio::time::sleep(wait) => {}
            }
            if self.claim_existing(request_id).await? != Claim::Claimed {
                return Err(Stop::Store(StoreError::Invalid(format!(
                    "request {request_id} was taken while waiting to retry"
                ))));
            }
            tries = tries.saturating_add(1);
        }
    }
}

impl Inner {
    /// A request's retries so far (from an earlier, parked batch), or a fresh start.
    fn resume_retries(&self, request_id: &str) -> Retrying {
        self.retrying
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(request_id)
            .unwrap_or(Retrying {
                since: tokio::time::Instant::now(),
                tries: 0,
            })
    }

    /// Keeps a request's retries for when its parked batch comes again. Entries of requests
    /// that never come back here (another instance took the partition) are dropped once their
    /// retry budget is long spent, so the map stays bounded.
    fn remember_retries(&self, request_id: &str, since: tokio::time::Instant, tries: u32) {
        let stale = Duration::from_millis(self.config.max_retry_ms).saturating_mul(2);
        let mut retrying = self.retrying.lock().unwrap_or_else(PoisonError::into_inner);
        retrying.retain(|_, r| r.since.elapsed() < stale);
        retrying.insert(request_id.to_owned(), Retrying { since, tries });
    }
}

/// Whether a call may be repeated after an outcome nobody knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// A send: a second call is a second message to the customer.
    Never,
    /// A mark-as-read: a second call changes nothing.
    EvenIfUnknown,
}

/// The wait before retry `tries` (from 0): pair limits back off 4^x (Meta's advice for
/// 131056), everything else 2^x, both with up to 25 % jitter and capped.
fn backoff(disposition: Disposition, base: Duration, tries: u32) -> Duration {
    let (factor, cap): (u32, u32) = match disposition {
        Disposition::RetryPair => (4, 300),
        _ => (2, 60),
    };
    let exp = factor.saturating_pow(tries.min(10));
    let wait = base.saturating_mul(exp).min(base.saturating_mul(cap));
    let jitter = rand::random::<f64>() * 0.25;
    wait + wait.mul_f64(jitter)
}

/// The row of a command that reached the sender without one (published by something other than
/// the API, or the store was replaced): no idempotency key, no request hash.
fn orphan_row(
    kind: &'static str,
    request_id: &str,
    sent_by: &Employee,
    business: &wacrm_core::BusinessNumber,
    command: serde_json::Value,
) -> NewRequest {
    NewRequest {
        request_id: request_id.to_owned(),
        key_id: sent_by.key_id.clone(),
        idempotency_key: None,
        request_hash: String::new(),
        kind,
        phone_number_id: business.phone_number_id.clone(),
        contact_id: None,
        command,
    }
}

fn finished_events(request: &SendRequest, row: &OutboundRow) -> Vec<Event> {
    match (row.state.as_str(), &row.wamid) {
        (state::SENT, Some(wamid)) => Event::message(request.to_message(wamid, row.updated_at))
            .into_iter()
            .collect(),
        (state::FAILED | state::UNKNOWN, _) => {
            let kind = if row.state == state::UNKNOWN {
                FailureKind::Unknown
            } else {
                FailureKind::Failed
            };
            let errors: Vec<MetaError> = row
                .errors
                .clone()
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            let mut event = failure_event(
                request,
                kind,
                row.reason.as_deref().unwrap_or("failed"),
                errors,
            );
            for e in &mut event {
                e.time = row.updated_at;
                if let EventPayload::SendFailed(f) = &mut e.payload {
                    f.failed_at = row.updated_at;
                }
            }
            event
        }
        _ => Vec::new(),
    }
}

fn failure_event(
    request: &SendRequest,
    kind: FailureKind,
    reason: &str,
    errors: Vec<MetaError>,
) -> Vec<Event> {
    Event::send_failed(SendFailure {
        request_id: request.request_id.clone(),
        business: request.business.clone(),
        contact: request.contact.clone(),
        kind,
        reason: reason.to_owned(),
        errors,
        sent_by: request.sent_by.clone(),
        failed_at: Utc::now(),
    })
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_backoff_grows_by_four() {
        let base = Duration::from_secs(1);
        let first = backoff(Disposition::RetryPair, base, 0);
        let third = backoff(Disposition::RetryPair, base, 2);
        assert!(first >= base && first <= base.mul_f64(1.25));
        assert!(third >= base * 16 && third <= (base * 16).mul_f64(1.25));
        let capped = backoff(Disposition::RetryTransient, base, 30);
        assert!(capped <= (base * 60).mul_f64(1.25));
    }
}
