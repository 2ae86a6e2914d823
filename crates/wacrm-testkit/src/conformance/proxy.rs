//! A fault-injecting HTTP proxy between an adapter and its CRM's fake: the faults of the
//! conformance suite are played here, the same way for every CRM, while the fake only keeps
//! state and validates requests against the vendor's spec. What a fault answers in the CRM's
//! own words (a 429's headers, a daily-quota body, a validation error) comes from the
//! [`Canned`] answers its target declares.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use tokio::sync::oneshot;

use crate::loopback::serve;

/// An answer the proxy gives instead of (or after) the CRM's.
#[derive(Debug, Clone)]
pub struct Canned {
    /// HTTP status.
    pub status: u16,
    /// Headers (`retry-after`, a CRM's rate-limit headers, `content-type`).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Canned {
    /// A JSON answer.
    pub fn json(status: u16, headers: &[(&str, &str)], body: serde_json::Value) -> Canned {
        let mut headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        headers.push(("content-type".into(), "application/json".into()));
        Canned {
            status,
            headers,
            body: body.to_string(),
        }
    }
}

/// A fault, played on the requests that follow.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The next N requests are answered `503` without reaching the CRM.
    ServerErrors(u32),
    /// The next N requests are answered with the CRM's rate-limit answer without reaching it.
    RateLimited(u32, Canned),
    /// The next N writes (POST, PUT, PATCH, DELETE) reach the CRM and are applied, and then
    /// answered `502`: the answer is lost after the work was done.
    AnswerLost(u32),
    /// Every request is answered with the CRM's daily-quota answer until the faults are reset.
    QuotaExhausted(Canned),
    /// Every request whose body contains the text is answered with the CRM's rejection of an
    /// invalid input, until the faults are reset.
    Reject(String, Canned),
}

#[derive(Default)]
struct Faults {
    counted: VecDeque<Fault>,
    standing: Vec<Fault>,
}

struct Inner {
    upstream: String,
    client: reqwest::Client,
    faults: Mutex<Faults>,
}

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    inner: Arc<Inner>,
    base_url: String,
    _stop: oneshot::Sender<()>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (a fake's base URL, without a trailing slash); paths and
    /// queries are kept.
    pub async fn start(upstream: &str) -> FaultProxy {
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            faults: Mutex::new(Faults::default()),
        });
        let app = Router::new().fallback(forward).with_state(inner.clone());
        let (addr, stop) = serve("fault proxy", app).await;
        FaultProxy {
            inner,
            base_url: format!("http://{addr}"),
            _stop: stop,
        }
    }

    /// The proxy's base URL (give it to the adapter instead of the fake's).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        lock(&self.inner)
    }

    /// Plays `fault` on the requests that follow (counted faults in the order injected).
    pub fn inject(&self, fault: Fault) {
        let mut faults = self.faults();
        match fault {
            Fault::QuotaExhausted(_) | Fault::Reject(..) => faults.standing.push(fault),
            counted => faults.counted.push_back(counted),
        }
    }

    /// Removes every fault.
    pub fn reset(&self) {
        *self.faults() = Faults::default();
    }
}

fn lock(inner: &Inner) -> std::sync::MutexGuard<'_, Faults> {
    match inner.faults.lock() {
        Ok(f) => f,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn answer(canned: &Canned) -> Response {
    let mut response = Response::new(Body::from(canned.body.clone()));
    *response.status_mut() =
        StatusCode::from_u16(canned.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &canned.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn status(code: u16) -> Response {
    answer(&Canned {
        status: code,
        headers: Vec::new(),
        body: String::new(),
    })
}

/// What happens to one request, decided before it is forwarded.
enum Plan {
    Answer(Response),
    ForwardThenLose,
    Forward,
}

fn plan(inner: &Inner, method: &Method, body: &[u8]) -> Plan {
    let mut faults = lock(inner);
    for fault in &faults.standing {
        match fault {
            Fault::QuotaExhausted(canned) => return Plan::Answer(answer(canned)),
            Fault::Reject(text, canned)
                if String::from_utf8_lossy(body).contains(text.as_str()) =>
            {
                return Plan::Answer(answer(canned))
            }
            _ => {}
        }
    }
    let write = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let (plan, spent) = match faults.counted.front_mut() {
        Some(Fault::ServerErrors(n)) => {
            *n -= 1;
            (Plan::Answer(status(503)), *n == 0)
        }
        Some(Fault::RateLimited(n, canned)) => {
            *n -= 1;
            (Plan::Answer(answer(canned)), *n == 0)
        }
        Some(Fault::AnswerLost(n)) if write => {
            *n -= 1;
            (Plan::ForwardThenLose, *n == 0)
        }
        _ => (Plan::Forward, false),
    };
    if spent {
        faults.counted.pop_front();
    }
    plan
}

async fn forward(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let plan = plan(&inner, &method, &body);
    if let Plan::Answer(response) = plan {
        return response;
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = inner
        .client
        .request(method, format!("{}{path}", inner.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            request = request.header(name, value);
        }
    }
    let upstream = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fault proxy: upstream unreachable: {e}");
            return status(502);
        }
    };
    if matches!(plan, Plan::ForwardThenLose) {
        // Applied by the CRM; the answer never reaches the adapter.
        let _ = upstream.bytes().await;
        return status(502);
    }
    let code = upstream.status().as_u16();
    let upstream_headers = upstream.headers().clone();
    let bytes = upstream.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in &upstream_headers {
        if name != axum::http::header::CONTENT_LENGTH
            && name != axum::http::header::TRANSFER_ENCODING
        {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}
