//! What every fake HTTP server in the testkit shares: serving a router on a free loopback port
//! until its handle is dropped, and reading request bodies and bearer tokens.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::Router;
use serde_json::Value;
use tokio::sync::oneshot;

/// Serves `app` on `127.0.0.1:0`; the server stops when the returned sender is dropped (or
/// sent to). `name` labels panics and errors.
pub(crate) async fn serve(name: &str, app: Router) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(listener) => listener,
        Err(e) => panic!("{name}: cannot bind 127.0.0.1:0: {e}"),
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => panic!("{name}: no local address: {e}"),
    };
    let (shutdown, stopped) = oneshot::channel::<()>();
    let name = name.to_owned();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // A dropped sender stops the server as well.
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            eprintln!("{name}: server error: {e}");
        }
    });
    (addr, shutdown)
}

/// The body as JSON (`Null` when empty), or the parse error.
pub(crate) fn json_body(body: &Bytes) -> Result<Value, String> {
    let raw = String::from_utf8_lossy(body);
    if raw.trim().is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_str(&raw).map_err(|e| e.to_string())
    }
}

/// The `Authorization` header's value.
pub(crate) fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// One request a fake received, as the Pipedrive and Zoho fakes record it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeRequest {
    /// The HTTP method, upper case.
    pub method: String,
    /// The path, without the query string (e.g. `/api/v2/persons`).
    pub path: String,
    /// The query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// The body as JSON; `Null` when empty, a JSON string when it was not JSON.
    pub body: Value,
    /// The status the fake answered.
    pub status: u16,
}
