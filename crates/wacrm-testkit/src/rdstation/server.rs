//! The HTTP side: the token endpoint, and one handler that authenticates, rate-limits,
//! routes, validates and records every request.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use super::state::{Kind, Recorded, Reply, State};
use super::{FakeRequest, TOKEN_PATH};

pub(super) type Shared = Arc<Mutex<State>>;

/// The API's path prefix (crm-v2-introduction: `https://api.rd.services/crm/v2/`).
const API: &str = "/crm/v2";
/// An access token's life, as the token answer states it (crm-v2-authentication-step3: 7,200 s).
const EXPIRES_IN: u64 = 7200;
/// The documented rate window (crm-v2-introduction, "Limite de requisições": per minute).
const WINDOW: Duration = Duration::from_secs(60);

pub(super) fn router(state: Shared) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Vec::new();
    };
    match reqwest::Url::parse(&format!("http://query.invalid/?{query}")) {
        Ok(url) => url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if reply.body.is_null() {
        status.into_response()
    } else {
        (status, axum::Json(reply.body)).into_response()
    };
    if let Some(seconds) = reply.retry_after {
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert("retry-after", v);
        }
    }
    response
}

async fn handle(
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let raw = String::from_utf8_lossy(&body).into_owned();
    let query = parse_query(uri.query());
    let mut state = lock(&shared);
    if uri.path() == TOKEN_PATH {
        state.token_requests += 1;
        let form = parse_query(Some(&raw));
        let reply = state.token(method.as_str(), &headers, &query, &form);
        return respond(reply);
    }
    let parsed = crate::loopback::json_body(&body);
    let reply = state.process(method.as_str(), uri.path(), &query, &headers, &parsed, at);
    state.requests.push(Recorded {
        at,
        request: FakeRequest {
            method: method.as_str().to_ascii_uppercase(),
            path: uri.path().to_owned(),
            query,
            body: parsed.unwrap_or(Value::String(raw)),
            status: reply.status,
        },
    });
    drop(state);
    respond(reply)
}

impl State {
    /// `POST /oauth2/token` with `grant_type=refresh_token`, `client_id`, `client_secret`,
    /// `refresh_token`, form-encoded (crm-v2-authentication-step4's cURL). A refresh answers a
    /// new access token and a **new refresh token**; the one used is retired ("o antigo já não
    /// funciona mais"). A retired or unknown refresh token answers `400 {"error":
    /// "invalid_grant"}` (the body of RD's refusal is not documented; RFC 6749 §5.2's).
    fn token(
        &mut self,
        method: &str,
        headers: &HeaderMap,
        query: &[(String, String)],
        form: &[(String, String)],
    ) -> Reply {
        let param = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let form_encoded = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if method != "POST" || !form_encoded || !query.is_empty() {
            self.violations.push(format!(
                "{method} {TOKEN_PATH}: the token request is a form-encoded POST"
            ));
            return Reply::ok(400, json!({"error": "invalid_request"}));
        }
        if param("grant_type").as_deref() != Some("refresh_token") {
            self.violations.push(format!(
                "POST {TOKEN_PATH}: grant_type is not refresh_token"
            ));
            return Reply::ok(400, json!({"error": "unsupported_grant_type"}));
        }
        if param("client_id").as_deref() != Some(self.config.client_id.as_str())
            || param("client_secret").as_deref() != Some(self.config.client_secret.as_str())
        {
            return Reply::ok(401, json!({"error": "invalid_client"}));
        }
        if param("refresh_token").as_deref() != Some(self.refresh_token.as_str()) {
            return Reply::ok(
                400,
                json!({"error": "invalid_grant", "error_description": "refresh token invalid or already used"}),
            );
        }
        let n = self.token_requests;
        let access = format!("rd-access-{n}-{:x}", rand::random::<u64>());
        let refresh = format!("rd-refresh-{n}-{:x}", rand::random::<u64>());
        let old = std::mem::replace(&mut self.refresh_token, refresh.clone());
        self.retired_refresh_tokens.push(old);
        self.access_tokens.insert(access.clone());
        Reply::ok(
            200,
            json!({"access_token": access, "refresh_token": refresh,
                   "expires_in": EXPIRES_IN, "token_type": "Bearer"}),
        )
    }

    /// At most `requests_per_minute` admitted in any rolling minute; over it `429` with
    /// `Retry-After` in seconds (crm-v2-introduction). Each such request is the client
    /// exceeding the limit, counted in `rate_violations`.
    fn admit(&mut self, at: Instant) -> Option<Reply> {
        while self
            .window
            .front()
            .is_some_and(|t| at.duration_since(*t) >= WINDOW)
        {
            self.window.pop_front();
        }
        if self.window.len() >= self.config.requests_per_minute as usize {
            self.rate_violations += 1;
            let oldest = self.window.front().copied().unwrap_or(at);
            let wait = WINDOW.saturating_sub(at.duration_since(oldest)).as_secs() + 1;
            let mut reply = Reply::error(429, "TOO_MANY_REQUESTS", "rate limit exceeded");
            reply.retry_after = Some(wait);
            return Some(reply);
        }
        self.window.push_back(at);
        None
    }

    fn process(
        &mut self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        headers: &HeaderMap,
        parsed: &Result<Value, String>,
        at: Instant,
    ) -> Reply {
        let Some(rest) = path.strip_prefix(API) else {
            return self.violation(method, path, "outside /crm/v2");
        };
        // `Authorization: Bearer <access_token>` (CRMS.md §3; crm-v2-authentication).
        let token = crate::loopback::authorization(headers);
        let valid = token
            .as_deref()
            .and_then(|t| t.strip_prefix("Bearer "))
            .is_some_and(|t| self.access_tokens.contains(t));
        if !valid {
            return Reply::error(401, "UNAUTHORIZED", "invalid or expired access token");
        }
        if let Some(reply) = self.admit(at) {
            return reply;
        }
        let body = match parsed {
            Ok(b) => b.clone(),
            Err(e) => return self.violation(method, path, format!("invalid JSON: {e}")),
        };
        let writes = method == "POST" || method == "PUT";
        if writes
            && headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| !v.starts_with("application/json"))
        {
            // crm-v2-introduction: "o Content-Type sempre será application/json".
            return self.violation(method, path, "Content-Type must be application/json");
        }
        if !writes && !body.is_null() {
            return self.violation(method, path, "a GET carries no body");
        }
        let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
        if segments.len() == 2 && !super::state::is_hex24(segments[1]) {
            return self.violation(method, path, "an id is a 24-hex string");
        }
        let no_query = |s: &mut State| -> Option<Reply> {
            if query.is_empty() {
                None
            } else {
                Some(s.violation(method, path, "no query parameters here"))
            }
        };
        match (method, segments.as_slice()) {
            ("GET", ["users"]) => self.simple_list(path, query, "users"),
            ("GET", ["custom_fields"]) => self.simple_list(path, query, "custom_fields"),
            ("GET", ["pipelines"]) => self.simple_list(path, query, "pipelines"),
            ("GET", ["contacts"]) => self.list_op(Kind::Contact, path, query),
            ("POST", ["contacts"]) => {
                no_query(self).unwrap_or_else(|| self.contact_create(path, &body))
            }
            ("GET", ["contacts", id]) => {
                no_query(self).unwrap_or_else(|| self.one(Kind::Contact, id))
            }
            ("PUT", ["contacts", id]) => {
                no_query(self).unwrap_or_else(|| self.contact_update(path, id, &body))
            }
            ("GET", ["deals"]) => self.list_op(Kind::Deal, path, query),
            ("POST", ["deals"]) => no_query(self).unwrap_or_else(|| self.deal_create(path, &body)),
            ("GET", ["tasks"]) => self.list_op(Kind::Task, path, query),
            ("POST", ["tasks"]) => no_query(self).unwrap_or_else(|| self.task_create(path, &body)),
            ("GET", ["tasks", id]) => no_query(self).unwrap_or_else(|| self.one(Kind::Task, id)),
            ("PUT", ["tasks", id]) => {
                no_query(self).unwrap_or_else(|| self.task_update(path, id, &body))
            }
            _ => {
                let reply = self.violation(
                    method,
                    path,
                    "the adapter called an endpoint the fake does not implement",
                );
                Reply {
                    status: 404,
                    ..reply
                }
            }
        }
    }

    /// Users, custom fields and pipelines: `{"data": [...], "links": {...}}`. RD Station's
    /// n8n node reads them without paging; the fake answers every one on one page and takes
    /// `filter=entity:<entity>` on custom fields (as clients in the wild send it).
    fn simple_list(&mut self, path: &str, query: &[(String, String)], what: &str) -> Reply {
        let mut entity = None;
        for (name, value) in query {
            match name.as_str() {
                "page[number]" | "page[size]" => {}
                "filter" if what == "custom_fields" => match value.strip_prefix("entity:") {
                    Some(e) => entity = Some(e.to_owned()),
                    None => {
                        return self.violation("GET", path, "custom fields filter on entity only")
                    }
                },
                other => {
                    return self.violation("GET", path, format!("unknown query parameter {other}"))
                }
            }
        }
        let rows: Vec<Value> = match what {
            "users" => self.users.clone(),
            "pipelines" => self.pipelines.clone(),
            _ => self
                .custom_fields
                .iter()
                .filter(|f| entity.as_deref().is_none_or(|e| f["entity"] == e))
                .cloned()
                .collect(),
        };
        Reply::ok(200, json!({"data": rows, "links": {"self": path}}))
    }
}
