//! A metering proxy for CRM fakes that keep no clock: it forwards every request to the fake
//! unchanged and records when each arrived and how many were in flight at once, so `wacrm-load
//! e2e` can hold a CRM's busiest stretch and its concurrency against the CRM's documented limits
//! (Zoho's fake counts credits but not time or concurrency).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

/// What the proxy has seen.
#[derive(Default)]
struct Seen {
    arrivals: Vec<Instant>,
    in_flight: usize,
    max_in_flight: usize,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    seen: Mutex<Seen>,
}

impl Shared {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        // A panic while counting leaves the counts usable.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts a request out of flight when its answer is ready (or its handler is dropped).
struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut seen = self.0.seen();
        seen.in_flight = seen.in_flight.saturating_sub(1);
    }
}

/// A running metering proxy; it stops when dropped.
pub struct Meter {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Meter {
    /// A proxy on a free loopback port in front of `upstream` (a base URL without a trailing
    /// slash); paths and query strings are kept.
    pub async fn start(upstream: &str) -> std::io::Result<Meter> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            seen: Mutex::new(Seen::default()),
        });
        let serving = Arc::clone(&shared);
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, hyper::Error>(forward(&shared, request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Meter {
            addr,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`: give it to the client instead of the upstream's URL.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forgets the arrivals so far (not the most in flight).
    pub fn clear(&self) {
        self.shared.seen().arrivals.clear();
    }

    /// Requests forwarded since the last [`Meter::clear`].
    #[must_use]
    pub fn requests(&self) -> usize {
        self.shared.seen().arrivals.len()
    }

    /// The most requests in flight at once since the proxy started.
    #[must_use]
    pub fn max_in_flight(&self) -> usize {
        self.shared.seen().max_in_flight
    }

    /// The most requests that arrived within any `window` since the last [`Meter::clear`].
    #[must_use]
    pub fn busiest(&self, window: Duration) -> usize {
        busiest(&self.shared.seen().arrivals, window)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The most of `times` (in any order) within any `window`.
#[must_use]
pub fn busiest(times: &[Instant], window: Duration) -> usize {
    let mut times = times.to_vec();
    times.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// Forwards one request upstream and hands back its answer (`502` when the upstream cannot be
/// reached, which the client then sees as the CRM failing).
async fn forward(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    {
        let mut seen = shared.seen();
        seen.arrivals.push(Instant::now());
        seen.in_flight += 1;
        seen.max_in_flight = seen.max_in_flight.max(seen.in_flight);
    }
    let _in_flight = InFlight(shared);
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let mut headers = parts.headers;
    // The client sets these for the upstream connection itself.
    for hop in ["host", "content-length", "connection", "transfer-encoding"] {
        headers.remove(hop);
    }
    let sent = shared
        .client
        .request(parts.method, format!("{}{path}", shared.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let Ok(answer) = sent else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let code = answer.status();
    let mut headers = answer.headers().clone();
    for hop in ["content-length", "connection", "transfer-encoding"] {
        headers.remove(hop);
    }
    let Ok(bytes) = answer.bytes().await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = code;
    *response.headers_mut() = headers;
    response
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}
