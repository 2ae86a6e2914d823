//! A deadline for a request's body, on routes that read bodies before any key is checked.
//!
//! The webhook route reads the whole body before it can check the signature, so without a
//! deadline a client trickling a body holds a connection, and its memory, for as long as it
//! likes.
//! The body is read here, within [`ServerConfig::body_read_timeout_ms`] and
//! [`ServerConfig::max_body_bytes`], and handed on whole:
//! - over the size → 413, as the body limit answers;
//! - not arrived in time → 408 (Meta retries the delivery), and the connection is closed;
//! - the client went away → 400.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;

use crate::ServerConfig;

/// The deadline and size a body must keep to.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    /// How long the body may take once the head has arrived; `None`: as long as it takes.
    pub timeout: Option<Duration>,
    /// The largest body accepted.
    pub max_bytes: usize,
}

impl BodyDeadline {
    /// The deadline `[server]` configures.
    pub fn from_config(config: &ServerConfig) -> Self {
        BodyDeadline {
            timeout: config.body_read_timeout(),
            max_bytes: config.max_body_bytes,
        }
    }

    /// Middleware: reads the body within the deadline, then runs the handler on it.
    pub async fn enforce(self, request: Request, next: Next) -> Response {
        let (parts, body) = request.into_parts();
        let read = axum::body::to_bytes(body, self.max_bytes);
        let read = match self.timeout {
            Some(timeout) => tokio::time::timeout(timeout, read).await,
            None => Ok(read.await),
        };
        match read {
            Ok(Ok(bytes)) => {
                next.run(Request::from_parts(parts, Body::from(bytes)))
                    .await
            }
            Ok(Err(e)) if is_too_large(&e) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded").into_response()
            }
            Ok(Err(_)) => (StatusCode::BAD_REQUEST, "the body could not be read").into_response(),
            Err(_) => {
                metrics::counter!("wacrm_http_body_timeouts_total").increment(1);
                tracing::warn!(timeout = ?self.timeout, "request body did not arrive in time");
                let mut response = (
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive in time",
                )
                    .into_response();
                // The rest of the body may still be on its way: this connection cannot be reused.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
        }
    }
}

fn is_too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(e) = source {
        if e.is::<LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}
