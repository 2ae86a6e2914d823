//! The HTTP side: one handler that authenticates, routes, validates, plays queued errors and
//! accepts messages, and records every request.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use super::checks::{is_mark_as_read, violations};
use super::errors::{invalid_token_body, unknown_path_body};
use super::state::{digits, Attempt, State};
use super::{GraphError, GraphRequest, SentMessage};

pub(super) type Shared = Arc<Mutex<State>>;

/// The router: everything goes through [`handle`].
pub(super) fn router(state: Shared) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An answer, before it becomes an HTTP response.
struct Reply {
    status: u16,
    body: Value,
    /// Held this long before answering ([`GraphError::Timeout`]).
    hold: Option<Duration>,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body,
            hold: None,
        }
    }

    fn error(error: &GraphError) -> Reply {
        Reply {
            status: error.http_status(),
            body: error.body(&fbtrace_id()),
            hold: match error {
                GraphError::Timeout(hold) => Some(*hold),
                _ => None,
            },
        }
    }

    fn raw(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            hold: None,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // Graph names the failing scheme, as OAuth 2.0 bearer resources do.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("OAuth \"Facebook Platform\" \"invalid_token\""),
            );
        }
        response
    }
}

/// A Graph-style trace id (opaque, 23 characters).
fn fbtrace_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("A{}", &id[..22])
}

async fn handle(
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let (latency, answer_delay) = {
        let state = lock(&shared);
        (state.config.latency, state.config.answer_delay)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let raw = String::from_utf8_lossy(&body).into_owned();
    let parsed = crate::loopback::json_body(&body);
    let authorization = crate::loopback::authorization(&headers);
    let reply = {
        let mut state = lock(&shared);
        let request = Incoming {
            method: method.as_str(),
            path: uri.path(),
            authorization: authorization.as_deref(),
            parsed: &parsed,
            at,
        };
        let reply = state.process(&request);
        state.requests.push(GraphRequest {
            method: method.as_str().to_ascii_uppercase(),
            path: uri.path().to_owned(),
            status: reply.status,
            at,
            body: parsed
                .clone()
                .unwrap_or_else(|_| Value::String(raw.clone())),
        });
        reply
    };
    if let Some(hold) = reply.hold {
        tokio::time::sleep(hold).await;
    }
    if !answer_delay.is_zero() {
        tokio::time::sleep(answer_delay).await;
    }
    reply.into_response()
}

/// One request, as the pipeline sees it.
struct Incoming<'a> {
    method: &'a str,
    path: &'a str,
    authorization: Option<&'a str>,
    parsed: &'a Result<Value, String>,
    at: Instant,
}

impl State {
    /// The pipeline of `graph.rs`'s module documentation, steps 2 to 7.
    fn process(&mut self, request: &Incoming<'_>) -> Reply {
        if !self.authorized(request.authorization) {
            return Reply::raw(401, invalid_token_body(&fbtrace_id()));
        }
        let phone_number_id = match self.route(request) {
            Ok(id) => id,
            Err(reply) => return reply,
        };
        let body = match request.parsed {
            Ok(body) if body.is_object() => body,
            Ok(other) => {
                let kind = match other {
                    Value::Null => "an empty body",
                    _ => "a JSON value that is not an object",
                };
                return self.reject(request, vec![format!("(root): type: {kind}")]);
            }
            Err(e) => {
                return self.reject(
                    request,
                    vec![format!("(root): json: invalid JSON body: {e}")],
                )
            }
        };
        let mark_as_read = is_mark_as_read(body);
        if !mark_as_read {
            self.attempts.push(Attempt {
                phone_number_id: phone_number_id.clone(),
                to_digits: body
                    .get("to")
                    .and_then(Value::as_str)
                    .map(digits)
                    .unwrap_or_default(),
                at: request.at,
            });
        }
        let found = violations(self.spec.as_deref(), body);
        if !found.is_empty() {
            return self.reject(request, found);
        }
        if mark_as_read {
            let message_id = body
                .get("message_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            self.mark_read.push((phone_number_id, message_id));
            return Reply::ok(json!({"success": true}));
        }
        if let Some(error) = self.take_queued(&phone_number_id) {
            return Reply::error(&error);
        }
        self.accept(phone_number_id, body, request.at)
    }

    fn authorized(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(|a| a.split_once(' '))
            .is_some_and(|(scheme, token)| {
                scheme.eq_ignore_ascii_case("bearer") && token.trim() == self.config.access_token
            })
    }

    /// `POST /{version}/{phone_number_id}/messages` → the phone number id; anything else is a
    /// violation answered `400`.
    fn route(&mut self, request: &Incoming<'_>) -> Result<String, Reply> {
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        let [version, phone_number_id, "messages"] = segments.as_slice() else {
            let line = "(path): route: not /{version}/{phone_number_id}/messages, the only \
                        operation the Graph fake implements"
                .to_owned();
            self.record_violations(request, vec![line]);
            return Err(Reply::raw(
                400,
                unknown_path_body(request.path, &fbtrace_id()),
            ));
        };
        if *version != self.config.version {
            let line = format!(
                "(path): version: {version:?} is not the configured Graph API version {:?}",
                self.config.version
            );
            self.record_violations(request, vec![line]);
            return Err(Reply::raw(
                400,
                unknown_path_body(request.path, &fbtrace_id()),
            ));
        }
        if phone_number_id.is_empty() {
            let line = "(path): phone_number_id: empty".to_owned();
            return Err(self.reject(request, vec![line]));
        }
        if !request.method.eq_ignore_ascii_case("POST") {
            let line = format!("(method): {} is not supported, only POST", request.method);
            self.record_violations(request, vec![line]);
            let error = GraphError::Code {
                http_status: 400,
                code: 100,
                subcode: None,
                title: format!(
                    "Unsupported {} request",
                    request.method.to_ascii_lowercase()
                ),
                message: format!(
                    "Unsupported {} request; the messages edge only accepts POST",
                    request.method
                ),
            };
            return Err(Reply::error(&error));
        }
        Ok((*phone_number_id).to_owned())
    }

    fn record_violations(&mut self, request: &Incoming<'_>, lines: Vec<String>) {
        let method = request.method.to_ascii_uppercase();
        self.violations.extend(
            lines
                .into_iter()
                .map(|line| format!("{method} {}: {line}", request.path)),
        );
    }

    /// Records the violations and answers `400` code `100` with them as details.
    fn reject(&mut self, request: &Incoming<'_>, lines: Vec<String>) -> Reply {
        let details = lines.join("; ");
        self.record_violations(request, lines);
        Reply::error(&GraphError::invalid_parameter(details))
    }

    /// Step 7: a fresh wamid, recorded and answered.
    fn accept(&mut self, phone_number_id: String, body: &Value, at: Instant) -> Reply {
        let to = body
            .get("to")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let wamid = self.next_wamid(&phone_number_id, &to);
        let mut message = json!({"id": wamid});
        if body.get("type").and_then(Value::as_str) == Some("template") {
            message["message_status"] = json!("accepted");
        }
        let answer = json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": digits(&to)}],
            "messages": [message],
        });
        self.sent.push(SentMessage {
            phone_number_id,
            to,
            body: body.clone(),
            wamid,
            at,
        });
        Reply::ok(answer)
    }
}
