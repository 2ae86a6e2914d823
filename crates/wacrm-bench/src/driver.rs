//! Drives webhooks at a server: open-loop at a fixed arrival rate (latency measured from each
//! request's scheduled time, so a slow server cannot hide behind fewer requests — no coordinated
//! omission), or closed-loop with a fixed concurrency.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, Semaphore};

use crate::payloads::{Generator, Webhook};

/// How requests are paced.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Open loop: this many requests per second, whatever the answers.
    Rate(f64),
    /// Closed loop: this many requests in flight.
    Concurrency(usize),
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The latency histogram could not be made.
    #[error("latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    /// The open-loop pacer's thread could not be started.
    #[error("cannot start the pacer thread: {0}")]
    Pacer(std::io::Error),
    /// No URL to send to.
    #[error("no target URL")]
    NoTarget,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Requests answered 200.
    pub ok: u64,
    /// Failures by kind (`status 503`, `connect`, `overload` …).
    pub errors: BTreeMap<String, u64>,
    /// Messages in the requests answered 200.
    pub messages: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency of answered requests, microseconds.
    pub latency: Histogram<u64>,
}

impl Report {
    /// Requests per second answered 200.
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Messages per second in requests answered 200.
    pub fn mps(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// A latency percentile in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// All failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Where requests go: one URL, or several taken in turn (request `n` to URL `n mod len`), as a
/// load balancer in front of several instances would spread them.
#[derive(Debug, Clone)]
pub struct Targets(Arc<[String]>);

impl Targets {
    /// The URL of request `n`.
    fn get(&self, n: usize) -> &str {
        &self.0[n % self.0.len()]
    }
}

impl From<String> for Targets {
    fn from(url: String) -> Self {
        Targets(Arc::from(vec![url]))
    }
}

impl From<Vec<String>> for Targets {
    /// Several URLs taken in turn. An empty list is not a target: `drive` would have nowhere to
    /// send, so it is refused there.
    fn from(urls: Vec<String>) -> Self {
        Targets(Arc::from(urls))
    }
}

/// Pre-generated webhooks, cycled when a run needs more (wamids then repeat, which the server
/// treats as Meta's retries).
pub struct Pool {
    hooks: Vec<Arc<Webhook>>,
}

impl Pool {
    /// `count` webhooks from the generator.
    pub fn new(generator: &Generator, count: usize) -> Self {
        Pool {
            hooks: (0..count.max(1))
                .map(|n| Arc::new(generator.webhook(n)))
                .collect(),
        }
    }

    fn get(&self, n: usize) -> Arc<Webhook> {
        Arc::clone(&self.hooks[n % self.hooks.len()])
    }
}

struct Outcome {
    latency_us: u64,
    result: Result<usize, String>,
}

async fn post(client: &reqwest::Client, url: &str, hook: &Webhook) -> Result<usize, String> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", &hook.signature)
        .body(hook.body.clone())
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timeout".to_owned()
            } else if e.is_connect() {
                "connect".to_owned()
            } else {
                "transport".to_owned()
            }
        })?;
    let status = response.status();
    let _ = response.bytes().await;
    if status.is_success() {
        Ok(hook.wamids.len())
    } else {
        Err(format!("status {}", status.as_u16()))
    }
}

/// Sends webhooks from `pool` to `targets` (in turn) for `duration`, paced as asked. In open loop at most
/// `max_in_flight` requests are outstanding; a request that would exceed it is counted as an
/// `overload` error instead of being delayed (delaying it would hide the server's slowness).
pub async fn drive(
    client: reqwest::Client,
    targets: impl Into<Targets>,
    pool: Arc<Pool>,
    pace: Pace,
    duration: Duration,
    max_in_flight: usize,
) -> Result<Report, DriveError> {
    let targets: Targets = targets.into();
    if targets.0.is_empty() {
        return Err(DriveError::NoTarget);
    }
    let latency = Histogram::new_with_bounds(1, 120_000_000, 3)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let start = Instant::now();
    let deadline = start + duration;
    match pace {
        Pace::Rate(rate) => {
            let permits = Arc::new(Semaphore::new(max_in_flight));
            let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let tx = tx.clone();
            let client = client.clone();
            let targets = targets.clone();
            let runtime = tokio::runtime::Handle::current();
            // Paced by a thread of its own: tokio's timers tick in whole milliseconds, so
            // `sleep_until` sends each request up to a millisecond after its time, and that
            // delay — the generator's, not the server's — would count as latency. A thread's
            // sleep wakes within tens of microseconds.
            std::thread::Builder::new()
                .name("wacrm-load-pacer".into())
                .spawn(move || {
                    let mut n = 0usize;
                    loop {
                        let scheduled = start + interval.mul_f64(n as f64);
                        if scheduled >= deadline {
                            break;
                        }
                        std::thread::sleep(scheduled.saturating_duration_since(Instant::now()));
                        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                            let _ = tx.send(Outcome {
                                latency_us: 0,
                                result: Err("overload".into()),
                            });
                            n += 1;
                            continue;
                        };
                        let hook = pool.get(n);
                        let (tx, client, targets) = (tx.clone(), client.clone(), targets.clone());
                        runtime.spawn(async move {
                            let result = post(&client, targets.get(n), &hook).await;
                            // From the scheduled time, not the send: a late send is latency.
                            let latency_us = scheduled.elapsed().as_micros() as u64;
                            drop(permit);
                            let _ = tx.send(Outcome { latency_us, result });
                        });
                        n += 1;
                    }
                })
                .map_err(DriveError::Pacer)?;
        }
        Pace::Concurrency(workers) => {
            let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            for _ in 0..workers.max(1) {
                let (tx, client, targets, pool, counter) = (
                    tx.clone(),
                    client.clone(),
                    targets.clone(),
                    Arc::clone(&pool),
                    Arc::clone(&counter),
                );
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let hook = pool.get(n);
                        let sent = Instant::now();
                        let result = post(&client, targets.get(n), &hook).await;
                        let latency_us = sent.elapsed().as_micros() as u64;
                        if tx.send(Outcome { latency_us, result }).is_err() {
                            break;
                        }
                    }
                });
            }
        }
    }
    drop(tx);
    let mut report = Report {
        ok: 0,
        errors: BTreeMap::new(),
        messages: 0,
        elapsed: Duration::ZERO,
        latency,
    };
    while let Some(outcome) = rx.recv().await {
        match outcome.result {
            Ok(messages) => {
                report.ok += 1;
                report.messages += messages as u64;
                let _ = report.latency.record(outcome.latency_us.max(1));
            }
            Err(kind) => *report.errors.entry(kind).or_default() += 1,
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}
