//! A receiver of the signed webhook sink (`kind = "webhook"`), as an integrator would write
//! one from docs/adapters/webhook.md: it verifies every delivery's signature and timestamp on
//! its own (not with the sink's code), validates the batch's shape, keeps every event it
//! accepted by id, and fails a share of calls — before taking them, or after (the answer lost).
//! A `contact.erased` event is applied as the documentation asks: the contact's event, every
//! message event on the contact or listed, and their status events are forgotten, and the
//! erasure itself is not kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::oneshot;

use crate::loopback::{json_body, serve};

/// How the receiver behaves.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// The shared secret.
    pub secret: String,
    /// Share of calls answered 503 (half before taking the batch, half after).
    pub failure_rate: f64,
    /// Seed of the failures.
    pub seed: u64,
    /// Seconds a timestamp may be from the receiver's clock.
    pub tolerance_secs: i64,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            secret: "test-secret-0123456789".into(),
            failure_rate: 0.0,
            seed: 7,
            tolerance_secs: 300,
        }
    }
}

#[derive(Default)]
struct Received {
    /// Event id → times it came in a batch answered 2xx.
    accepted: HashMap<String, usize>,
    /// Events by id, as last accepted.
    events: HashMap<String, Value>,
    calls: usize,
    failed: usize,
    violations: Vec<String>,
    /// Erasures applied.
    erasures: usize,
}

impl Received {
    /// Forgets everything about a contact, as `contact.erased` asks.
    fn erase(&mut self, data: &Value) {
        let contact = data["contact"].as_str().unwrap_or_default().to_owned();
        let listed: Vec<String> = data["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let wamids: Vec<String> = self
            .events
            .values()
            .filter(|e| e["type"] == "message")
            .filter(|e| {
                e["data"]["contact"] == contact.as_str()
                    || e["data"]["wamid"]
                        .as_str()
                        .is_some_and(|w| listed.iter().any(|l| l == w))
            })
            .filter_map(|e| e["data"]["wamid"].as_str().map(str::to_owned))
            .chain(listed.iter().cloned())
            .collect();
        let gone = |id: &str, event: Option<&Value>| {
            id == format!("contact:{contact}")
                || wamids.iter().any(|w| w == id)
                || event.is_some_and(|e| {
                    e["type"] == "status"
                        && e["data"]["wamid"]
                            .as_str()
                            .is_some_and(|w| wamids.iter().any(|x| x == w))
                })
        };
        let doomed: Vec<String> = self
            .events
            .iter()
            .filter(|(id, event)| gone(id, Some(event)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in doomed {
            self.events.remove(&id);
            self.accepted.remove(&id);
        }
        self.accepted.retain(|id, _| !gone(id, None));
        self.erasures += 1;
    }
}

struct Inner {
    config: ReceiverConfig,
    received: Mutex<Received>,
    rng: Mutex<rand::rngs::StdRng>,
}

/// A running receiver; it stops when dropped.
pub struct Receiver {
    inner: Arc<Inner>,
    url: String,
    _stop: oneshot::Sender<()>,
}

impl Receiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start(config: ReceiverConfig) -> Receiver {
        let inner = Arc::new(Inner {
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(config.seed)),
            config,
            received: Mutex::new(Received::default()),
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let (addr, stop) = serve("webhook receiver", app).await;
        Receiver {
            inner,
            url: format!("http://{addr}/hook"),
            _stop: stop,
        }
    }

    /// The URL to configure.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn with<T>(&self, f: impl FnOnce(&Received) -> T) -> T {
        let received = match self.inner.received.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&received)
    }

    /// Event id → how many accepted batches carried it.
    pub fn accepted(&self) -> HashMap<String, usize> {
        self.with(|r| r.accepted.clone())
    }

    /// The accepted event of that id.
    pub fn event(&self, id: &str) -> Option<Value> {
        self.with(|r| r.events.get(id).cloned())
    }

    /// Calls received, and how many of them were failed on purpose.
    pub fn calls(&self) -> (usize, usize) {
        self.with(|r| (r.calls, r.failed))
    }

    /// Erasures applied (`contact.erased` events taken).
    pub fn erasures(&self) -> usize {
        self.with(|r| r.erasures)
    }

    /// Whether any event the receiver holds (its id or content) contains `text`: after an
    /// erasure, neither the phone nor a body may be left.
    pub fn holds(&self, text: &str) -> bool {
        self.with(|r| {
            r.events
                .iter()
                .any(|(id, e)| id.contains(text) || e.to_string().contains(text))
                || r.accepted.keys().any(|id| id.contains(text))
        })
    }

    /// Deliveries that did not verify or did not have the documented shape.
    pub fn violations(&self) -> Vec<String> {
        self.with(|r| r.violations.clone())
    }
}

/// Verifies `t=…,v1=…` independently of the sink's code.
fn verify(secret: &str, header: Option<&str>, body: &[u8], tolerance: i64) -> Result<(), String> {
    let header = header.ok_or("no x-wacrm-signature header")?;
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        if let Some(x) = part.strip_prefix("t=") {
            t = x.parse::<i64>().ok();
        } else if let Some(x) = part.strip_prefix("v1=") {
            v1 = Some(x.to_owned());
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(format!("malformed signature header {header:?}"));
    };
    let age = (chrono::Utc::now().timestamp() - t).abs();
    if age > tolerance {
        return Err(format!("timestamp {age}s away from now"));
    }
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if expected != v1 {
        return Err("signature mismatch".into());
    }
    Ok(())
}

/// The batch's shape, as docs/adapters/webhook.md documents it.
fn check_shape(batch: &Value) -> Result<Vec<(String, Value)>, String> {
    if !batch["connection"].is_string() {
        return Err("no connection".into());
    }
    let events = batch["events"].as_array().ok_or("events is not an array")?;
    let mut out = Vec::new();
    for e in events {
        let id = e["id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or("event without id")?;
        let data = &e["data"];
        let required: &[&str] = match e["type"].as_str() {
            Some("contact") => &["whatsapp_id", "business_number"],
            Some("message") => &["wamid", "contact", "direction", "time", "kind", "body"],
            Some("status") => &["wamid", "state"],
            Some("contact.erased") => &["contact", "whatsapp_id", "messages"],
            other => return Err(format!("event {id}: unknown type {other:?}")),
        };
        for field in required {
            if data.get(*field).is_none_or(Value::is_null) {
                return Err(format!("event {id}: data.{field} missing"));
            }
        }
        out.push((id.to_owned(), e.clone()));
    }
    Ok(out)
}

fn lock(inner: &Inner) -> std::sync::MutexGuard<'_, Received> {
    match inner.received.lock() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    lock(&inner).calls += 1;
    let signature = headers
        .get("x-wacrm-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = verify(
        &inner.config.secret,
        signature,
        &body,
        inner.config.tolerance_secs,
    ) {
        lock(&inner).violations.push(e);
        return StatusCode::UNAUTHORIZED;
    }
    let events = match json_body(&body).and_then(|b| check_shape(&b)) {
        Ok(events) => events,
        Err(e) => {
            lock(&inner).violations.push(e);
            return StatusCode::BAD_REQUEST;
        }
    };
    let roll: f64 = match inner.rng.lock() {
        Ok(mut rng) => rng.gen(),
        Err(poisoned) => poisoned.into_inner().gen(),
    };
    let fail = roll < inner.config.failure_rate;
    let mut received = lock(&inner);
    if fail && roll < inner.config.failure_rate / 2.0 {
        // Failed before taking anything.
        received.failed += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    for (id, event) in events {
        // Applied, and not kept: an erasure leaves nothing of the contact behind.
        if event["type"] == "contact.erased" {
            received.erase(&event["data"]);
            continue;
        }
        // Taken — but when the answer is a failure, the sender cannot know it was.
        if !fail {
            *received.accepted.entry(id.clone()).or_default() += 1;
        }
        received.events.insert(id, event);
    }
    if fail {
        received.failed += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    StatusCode::OK
}
