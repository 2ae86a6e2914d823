//! The HTTP side: one handler that authenticates, plays faults, rate-limits, validates and
//! dispatches, and records every request.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};

use super::routes::{match_route, Limiter, Route};
use super::specs::parse_query;
use super::state::{Counted, State};
use super::{FakeRequest, NOMINAL_DAILY_LIMIT};

pub(super) type Shared = Arc<Mutex<State>>;

/// The router: everything goes through [`handle`].
pub(super) fn router(state: Shared) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An answer, before it becomes an HTTP response.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
    pub correlation_id: String,
}

impl Reply {
    pub(super) fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
            correlation_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// `204 No Content` (archives, GDPR deletes).
    pub(super) fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
            headers: Vec::new(),
            correlation_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// HubSpot's error body: `{"status":"error","message","correlationId","category"}`.
    pub(super) fn error(status: StatusCode, category: &str, message: impl Into<String>) -> Reply {
        let correlation_id = uuid::Uuid::new_v4().to_string();
        Reply {
            status,
            body: Some(json!({
                "status": "error",
                "message": message.into(),
                "correlationId": correlation_id,
                "category": category,
            })),
            headers: Vec::new(),
            correlation_id,
        }
    }

    /// `400 VALIDATION_ERROR`.
    pub(super) fn validation(message: impl Into<String>) -> Reply {
        Reply::error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    /// Adds `context.<key> = values` to an error body.
    pub(super) fn with_context(mut self, key: &str, values: Vec<String>) -> Reply {
        if let Some(Value::Object(body)) = &mut self.body {
            let context = body
                .entry("context")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(context) = context {
                context.insert(key.to_owned(), json!(values));
            }
        }
        self
    }

    /// Sets `errors` (HubSpot's `ErrorDetail` list) on an error body.
    pub(super) fn with_errors(mut self, errors: Vec<Value>) -> Reply {
        if let Some(Value::Object(body)) = &mut self.body {
            body.insert("errors".to_owned(), Value::Array(errors));
        }
        self
    }

    fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = match &self.body {
            Some(body) => (self.status, axum::Json(body.clone())).into_response(),
            None => self.status.into_response(),
        };
        let headers = response.headers_mut();
        for (name, value) in self
            .headers
            .iter()
            .map(|(n, v)| (*n, v.clone()))
            .chain([("x-hubspot-correlation-id", self.correlation_id.clone())])
        {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        response
    }
}

async fn handle(
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let latency = lock(&shared).latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let raw = String::from_utf8_lossy(&body).into_owned();
    let parsed = crate::loopback::json_body(&body);
    let authorization = crate::loopback::authorization(&headers);
    // The lock is released before any later await (a guard held across one is not `Send`).
    let (reply, hold) = {
        let mut state = lock(&shared);
        let request = Incoming {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query(),
            authorization: authorization.as_deref(),
            raw: &raw,
            parsed: &parsed,
            at,
        };
        let reply = state.process(&request);
        let reply = state.with_rate_headers(reply, at);
        state.requests.push(FakeRequest {
            method: method.as_str().to_ascii_uppercase(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            status: reply.status.as_u16(),
            at,
            body: parsed
                .clone()
                .unwrap_or_else(|_| Value::String(raw.clone())),
        });
        let hold = state.hold_answer.take();
        (reply, hold)
    };
    if let Some(hold) = hold {
        // The request was applied (and recorded) already: only its answer is late.
        tokio::time::sleep(hold).await;
    }
    reply.into_response()
}

/// One request, as the pipeline sees it.
pub(super) struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub raw: &'a str,
    pub parsed: &'a Result<Value, String>,
    pub at: Instant,
}

const TEN_SECONDS: Duration = Duration::from_secs(10);
const ONE_SECOND: Duration = Duration::from_secs(1);

/// HubSpot's `429` body.
fn rate_limited(policy: &str) -> Reply {
    let message = match policy {
        "TEN_SECONDLY_ROLLING" => "You have reached your ten_secondly_rolling limit.".to_owned(),
        "SECONDLY" => "You have reached your secondly limit.".to_owned(),
        "DAILY" => "You have reached your daily limit.".to_owned(),
        other => format!(
            "You have reached your {} limit.",
            other.to_ascii_lowercase()
        ),
    };
    let correlation_id = uuid::Uuid::new_v4().to_string();
    Reply {
        status: StatusCode::TOO_MANY_REQUESTS,
        body: Some(json!({
            "status": "error",
            "message": message,
            "errorType": "RATE_LIMIT",
            "correlationId": correlation_id,
            "policyName": policy,
        })),
        headers: Vec::new(),
        correlation_id,
    }
}

/// Drops arrival times older than `window` before `at`; returns how many remain.
fn in_window(
    times: &mut std::collections::VecDeque<Instant>,
    at: Instant,
    window: Duration,
) -> usize {
    while let Some(front) = times.front() {
        if at.saturating_duration_since(*front) >= window {
            times.pop_front();
        } else {
            break;
        }
    }
    times.iter().filter(|t| **t <= at).count()
}

impl State {
    /// The pipeline of `hubspot.rs`'s module documentation, steps 2 to 6.
    fn process(&mut self, request: &Incoming<'_>) -> Reply {
        if !self.authorized(request.authorization) {
            return Reply::error(
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 \
                 authentication and you can find more details at \
                 https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            );
        }
        if let Some(reply) = self.play_counted_fault() {
            return reply;
        }
        if self.server_error_rate > 0 && rand::random::<u8>() % 100 < self.server_error_rate {
            self.counted_faults.push_front(Counted::ServerErrors(1));
            if let Some(reply) = self.play_counted_fault() {
                return reply;
            }
        }
        if let Some(reply) = self.play_validation_trigger(request) {
            return reply;
        }
        let route = match_route(request.method, request.path);
        if let Some(reply) = self.admit(route.as_ref().map(|r| r.limiter), request.at) {
            return reply;
        }
        let Some(route) = route else {
            return Reply::error(
                StatusCode::NOT_IMPLEMENTED,
                "NOT_IMPLEMENTED",
                format!(
                    "wacrm HubSpot fake: {} {} is not an operation the fake implements",
                    request.method, request.path
                ),
            );
        };
        let query = parse_query(request.query);
        let body = match request.parsed {
            Ok(body) => body.clone(),
            Err(e) => {
                let line = format!("(root): json: invalid JSON body: {e}");
                self.violations
                    .push(format!("{} {}: {line}", route.method, request.path));
                return Reply::validation(format!("Invalid input JSON: {e}"));
            }
        };
        if let Some(reply) = self.validate_against_spec(&route, request.path, &body, &query) {
            return reply;
        }
        let reply = self.dispatch(&route, &body, &query);
        self.lose_answer(reply)
    }

    /// [`super::Fault::AppliedThenServerErrorRate`]: a successful answer (the operation was
    /// applied) becomes a server error now and then.
    fn lose_answer(&mut self, reply: Reply) -> Reply {
        if !reply.status.is_success()
            || self.applied_then_error_rate == 0
            || rand::random::<u8>() % 100 >= self.applied_then_error_rate
        {
            return reply;
        }
        self.lost_answers += 1;
        self.counted_faults.push_front(Counted::ServerErrors(1));
        self.play_counted_fault().unwrap_or(reply)
    }

    fn authorized(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(|a| a.split_once(' '))
            .is_some_and(|(scheme, token)| {
                scheme.eq_ignore_ascii_case("bearer") && token.trim() == self.config.token
            })
    }

    fn play_counted_fault(&mut self) -> Option<Reply> {
        let front = self.counted_faults.front_mut()?;
        let (reply, left) = match front {
            Counted::AppliedThenDelay(hold) => {
                // Not an answer of its own: the request goes on, its answer is held later.
                self.hold_answer = Some(*hold);
                self.counted_faults.pop_front();
                return None;
            }
            Counted::ServerErrors(left) => {
                let (status, message) = match self.server_errors_played % 3 {
                    0 => (StatusCode::BAD_GATEWAY, "Bad Gateway"),
                    1 => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
                };
                self.server_errors_played += 1;
                *left -= 1;
                (Reply::error(status, "INTERNAL_ERROR", message), *left)
            }
            Counted::RateLimited {
                count,
                retry_after_secs,
                policy,
            } => {
                *count -= 1;
                (
                    rate_limited(policy).with_header("retry-after", retry_after_secs.to_string()),
                    *count,
                )
            }
        };
        if left == 0 {
            self.counted_faults.pop_front();
        }
        Some(reply)
    }

    fn play_validation_trigger(&mut self, request: &Incoming<'_>) -> Option<Reply> {
        let trigger = self
            .validation_triggers
            .iter()
            .find(|t| request.raw.contains(t.as_str()))?
            .clone();
        // Name the input that carries the text, as HubSpot names the failing input.
        let inputs = request
            .parsed
            .as_ref()
            .ok()
            .and_then(|b| b.get("inputs"))
            .and_then(Value::as_array);
        let found = inputs.and_then(|inputs| {
            inputs.iter().enumerate().find_map(|(i, input)| {
                let text = input.to_string();
                text.contains(trigger.as_str()).then(|| {
                    let property =
                        input
                            .get("properties")
                            .and_then(Value::as_object)
                            .and_then(|ps| {
                                ps.iter().find_map(|(k, v)| {
                                    (k.contains(trigger.as_str())
                                        || v.as_str().is_some_and(|v| v.contains(trigger.as_str())))
                                    .then(|| k.clone())
                                })
                            });
                    (
                        i,
                        input.get("id").and_then(Value::as_str).map(str::to_owned),
                        property,
                    )
                })
            })
        });
        let reply = match found {
            Some((index, id, property)) => {
                let name = property.unwrap_or_else(|| "(input)".to_owned());
                let detail = json!([{
                    "isValid": false,
                    "message": format!("Injected validation error for {trigger:?}"),
                    "error": "INVALID_VALUE",
                    "name": name,
                }]);
                let mut reply = Reply::validation(format!(
                    "Property values were not valid: {detail}"
                ))
                .with_context("inputIndex", vec![index.to_string()])
                .with_errors(vec![json!({
                    "message": format!("Injected validation error for {trigger:?} in inputs[{index}]"),
                    "in": format!("inputs[{index}]"),
                })]);
                if let Some(id) = id {
                    reply = reply.with_context("ids", vec![id]);
                }
                reply
            }
            None => Reply::validation(format!(
                "Property values were not valid: injected validation error for {trigger:?}"
            )),
        };
        Some(reply)
    }

    /// Counts the request against the limits, or answers `429`.
    fn admit(&mut self, limiter: Option<Limiter>, at: Instant) -> Option<Reply> {
        if let Some(limit) = self.config.daily_limit {
            if self.daily_used >= limit {
                return Some(rate_limited("DAILY"));
            }
        }
        match limiter.unwrap_or(Limiter::TenSecondly) {
            Limiter::TenSecondly => {
                let used = in_window(&mut self.ten_second_window, at, TEN_SECONDS);
                if used >= self.config.requests_per_10s as usize {
                    return Some(rate_limited("TEN_SECONDLY_ROLLING"));
                }
                self.ten_second_window.push_back(at);
            }
            Limiter::Search => {
                let used = in_window(&mut self.search_window, at, ONE_SECOND);
                if used >= self.config.search_requests_per_s as usize {
                    return Some(rate_limited("SECONDLY"));
                }
                self.search_window.push_back(at);
            }
            Limiter::Exempt => {}
        }
        self.daily_used += 1;
        None
    }

    fn validate_against_spec(
        &mut self,
        route: &Route,
        path: &str,
        body: &Value,
        query: &[(String, String)],
    ) -> Option<Reply> {
        let specs = self.specs.clone()?;
        let errors = specs.validate(route.doc, route.template, route.method, body, query);
        if errors.is_empty() {
            return None;
        }
        for line in &errors {
            self.violations
                .push(format!("{} {path}: {line}", route.method));
        }
        let details = errors
            .iter()
            .map(|line| {
                let location = line.split(": ").next().unwrap_or("(root)");
                json!({"message": line, "in": location})
            })
            .collect();
        Some(
            Reply::validation(format!(
                "Invalid input JSON: the request does not match HubSpot's {} document: {}",
                route.doc.file(),
                errors.join("; ")
            ))
            .with_errors(details),
        )
    }

    /// Adds the `X-HubSpot-RateLimit-*` headers.
    pub(super) fn with_rate_headers(&mut self, reply: Reply, at: Instant) -> Reply {
        let max = self.config.requests_per_10s as usize;
        let used = in_window(&mut self.ten_second_window, at, TEN_SECONDS);
        let daily = self.config.daily_limit.unwrap_or(NOMINAL_DAILY_LIMIT);
        reply
            .with_header(
                "x-hubspot-ratelimit-interval-milliseconds",
                TEN_SECONDS.as_millis().to_string(),
            )
            .with_header("x-hubspot-ratelimit-max", max.to_string())
            .with_header(
                "x-hubspot-ratelimit-remaining",
                max.saturating_sub(used).to_string(),
            )
            .with_header("x-hubspot-ratelimit-daily", daily.to_string())
            .with_header(
                "x-hubspot-ratelimit-daily-remaining",
                daily.saturating_sub(self.daily_used).to_string(),
            )
    }
}
