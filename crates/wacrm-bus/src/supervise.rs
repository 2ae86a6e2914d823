//! Consumers are supervised: a consumer that stops — a fatal error, a lost bus, a panic — is
//! logged at ERROR at once with its group, shown as down, and restarted with backoff.
//!
//! [`ConsumerRegistry`] is what the process knows about each of its consumer groups: up or
//! down, the last error and its class, the last commit, restarts. Runners report into it
//! ([`crate::runner::ConsumerRunner::with_registry`]); `/v1/status` and the metrics read it.
//! Metrics: `wacrm_consumer_up{group}` (1 or 0), `wacrm_consumer_last_commit_timestamp_seconds`
//! (the age is `time() - …`), `wacrm_consumer_errors_total{group,class}`,
//! `wacrm_consumer_restarts_total{group}`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use wacrm_core::ErrorClass;

use crate::runner::RunnerError;

/// The last error a consumer met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LastError {
    /// `retry`, `dead_letter` or `fatal`.
    pub class: String,
    /// What happened (no personal data: error texts of the bus, the store or a CRM).
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One consumer group of this process, as `/v1/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ConsumerStatus {
    /// The consumer group.
    pub group: String,
    /// Whether it is running now.
    pub up: bool,
    /// The last error it met (a retried one included), if any.
    pub last_error: Option<LastError>,
    /// When it last committed offsets.
    pub last_commit_at: Option<DateTime<Utc>>,
    /// Seconds since then.
    pub last_commit_age_seconds: Option<f64>,
    /// How often it was restarted after stopping.
    pub restarts: u32,
}

#[derive(Debug, Clone, Default)]
struct State {
    up: bool,
    last_error: Option<LastError>,
    last_commit_at: Option<DateTime<Utc>>,
    restarts: u32,
}

/// What this process knows about its consumers.
#[derive(Debug, Default)]
pub struct ConsumerRegistry {
    groups: Mutex<BTreeMap<String, State>>,
}

fn class_name(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Retry => "retry",
        ErrorClass::DeadLetter => "dead_letter",
        ErrorClass::Fatal => "fatal",
    }
}

impl ConsumerRegistry {
    fn with<R>(&self, group: &str, f: impl FnOnce(&mut State) -> R) -> R {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        f(groups.entry(group.to_owned()).or_default())
    }

    /// The group is running.
    pub fn up(&self, group: &str) {
        self.with(group, |s| s.up = true);
        metrics::gauge!("wacrm_consumer_up", "group" => group.to_owned()).set(1.0);
    }

    /// The group stopped (`error`: why, when it was not asked to).
    pub fn down(&self, group: &str, error: Option<(ErrorClass, String)>) {
        if let Some((class, message)) = &error {
            self.error(group, *class, message);
        }
        self.with(group, |s| s.up = false);
        metrics::gauge!("wacrm_consumer_up", "group" => group.to_owned()).set(0.0);
    }

    /// The group met an error (it may go on: a retried one).
    pub fn error(&self, group: &str, class: ErrorClass, message: &str) {
        self.with(group, |s| {
            s.last_error = Some(LastError {
                class: class_name(class).to_owned(),
                message: message.to_owned(),
                at: Utc::now(),
            });
        });
        metrics::counter!("wacrm_consumer_errors_total", "group" => group.to_owned(), "class" => class_name(class))
            .increment(1);
    }

    /// The group committed offsets.
    pub fn committed(&self, group: &str) {
        let now = Utc::now();
        self.with(group, |s| s.last_commit_at = Some(now));
        metrics::gauge!("wacrm_consumer_last_commit_timestamp_seconds", "group" => group.to_owned())
            .set(now.timestamp_millis() as f64 / 1000.0);
    }

    fn restarted(&self, group: &str) {
        self.with(group, |s| s.restarts = s.restarts.saturating_add(1));
        metrics::counter!("wacrm_consumer_restarts_total", "group" => group.to_owned())
            .increment(1);
    }

    /// Every group, by name.
    pub fn snapshot(&self) -> Vec<ConsumerStatus> {
        let now = Utc::now();
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups
            .iter()
            .map(|(group, s)| ConsumerStatus {
                group: group.clone(),
                up: s.up,
                last_error: s.last_error.clone(),
                last_commit_at: s.last_commit_at,
                last_commit_age_seconds: s
                    .last_commit_at
                    .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
                restarts: s.restarts,
            })
            .collect()
    }

    /// One group, if this process runs it.
    pub fn get(&self, group: &str) -> Option<ConsumerStatus> {
        self.snapshot().into_iter().find(|s| s.group == group)
    }
}

/// How a supervisor waits before restarting a stopped consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// After a lost bus or a panic: the first wait (doubling).
    pub first: Duration,
    /// After a fatal error (credentials refused, misconfiguration): the first wait, longer —
    /// a restart helps only once someone has fixed something, or the far side recovered.
    pub first_after_fatal: Duration,
    /// The longest wait.
    pub max: Duration,
    /// A consumer that ran this long before stopping starts its backoff afresh.
    pub healthy_after: Duration,
}

impl Default for RestartPolicy {
    /// 1 s (30 s after a fatal error), doubling up to 10 minutes; afresh after 5 minutes up.
    fn default() -> Self {
        RestartPolicy {
            first: Duration::from_secs(1),
            first_after_fatal: Duration::from_secs(30),
            max: Duration::from_secs(600),
            healthy_after: Duration::from_secs(300),
        }
    }
}

/// Runs a consumer until `shutdown`, restarting it whenever it stops otherwise.
///
/// `start` builds and runs one incarnation (subscribe, build the handler, run the runner) and
/// returns what the runner returned. A stop is logged at ERROR at once, with the group, the
/// error and its class, and the group is shown down until the restart.
pub async fn supervise<F, Fut>(
    group: String,
    registry: Arc<ConsumerRegistry>,
    policy: RestartPolicy,
    shutdown: CancellationToken,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), RunnerError>>,
{
    let mut failures: u32 = 0;
    loop {
        registry.up(&group);
        let started = tokio::time::Instant::now();
        let outcome = std::panic::AssertUnwindSafe(start()).catch_unwind().await;
        if shutdown.is_cancelled() {
            if let Ok(Err(e)) = &outcome {
                tracing::error!(group = %group, error = %e, "consumer stopped with an error while shutting down");
            }
            registry.down(&group, None);
            return;
        }
        let (class, message) = match outcome {
            Ok(Ok(())) => (
                ErrorClass::Fatal,
                "the consumer returned without being asked to stop".to_owned(),
            ),
            Ok(Err(e)) => (e.class(), e.to_string()),
            Err(panic) => (
                ErrorClass::Fatal,
                format!("panicked: {}", panic_text(&panic)),
            ),
        };
        if started.elapsed() >= policy.healthy_after {
            failures = 0;
        }
        let first = if class == ErrorClass::Fatal {
            policy.first_after_fatal
        } else {
            policy.first
        };
        let wait = first
            .saturating_mul(2u32.saturating_pow(failures.min(16)))
            .min(policy.max);
        failures = failures.saturating_add(1);
        tracing::error!(
            group = %group,
            class = class_name(class),
            error = %message,
            restart_in_s = wait.as_secs_f64(),
            "consumer stopped; restarting"
        );
        registry.down(&group, Some((class, message)));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        registry.restarted(&group);
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick() -> RestartPolicy {
        RestartPolicy {
            first: Duration::from_millis(5),
            first_after_fatal: Duration::from_millis(10),
            max: Duration::from_millis(20),
            healthy_after: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn a_stopped_consumer_is_shown_down_and_restarted() {
        let registry = Arc::new(ConsumerRegistry::default());
        let shutdown = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let task = {
            let (registry, shutdown, runs) = (registry.clone(), shutdown.clone(), runs.clone());
            tokio::spawn(supervise(
                "g".into(),
                registry,
                quick(),
                shutdown.clone(),
                move || {
                    let runs = runs.clone();
                    let shutdown = shutdown.clone();
                    async move {
                        match runs.fetch_add(1, Ordering::SeqCst) {
                            0 => Err(RunnerError::Fatal {
                                group: "g".into(),
                                reason: "token refused (401)".into(),
                            }),
                            1 => panic!("boom"),
                            _ => {
                                shutdown.cancelled().await;
                                Ok(())
                            }
                        }
                    }
                },
            ))
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "not restarted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let status = registry.get("g").unwrap();
        assert!(status.up);
        assert_eq!(status.restarts, 2);
        let last = status.last_error.unwrap();
        assert_eq!(last.class, "fatal");
        assert!(last.message.contains("boom"), "{}", last.message);
        shutdown.cancel();
        task.await.unwrap();
        assert!(!registry.get("g").unwrap().up);
    }
}
