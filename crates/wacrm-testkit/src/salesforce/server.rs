//! The HTTP side: the token endpoint, and one handler that authenticates, counts the API
//! allocation, routes, validates and dispatches every API call and records it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use super::state::{new_access_token, State};
use super::FakeRequest;

/// The fake's state and its concurrency counters.
pub(super) struct Shared {
    pub state: Mutex<State>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

/// The token endpoint (OAuth 2.0 Client Credentials Flow / JWT Bearer Flow pages of Salesforce
/// Help: `POST https://MyDomainName.my.salesforce.com/services/oauth2/token`).
pub(super) const TOKEN_PATH: &str = "/services/oauth2/token";
/// Every REST call is under `/services/data/vXX.X/` (REST API Developer Guide, "Resources").
const DATA_PREFIX: &str = "/services/data/";
/// The JWT-bearer grant's `grant_type` (RFC 7523; Salesforce Help, "OAuth 2.0 JWT Bearer Flow
/// for Server-to-Server Integration").
pub(super) const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

pub(super) fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An answer, before it becomes an HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub(super) fn json(status: StatusCode, body: Value) -> Reply {
        Reply { status, body }
    }

    /// Salesforce's error body: a JSON array of `{"message", "errorCode"}` (REST API Developer
    /// Guide, "Status Codes and Error Responses"; CRMS §2).
    pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Reply {
        Reply::json(status, json!([{"message": message, "errorCode": code}]))
    }
}

/// One request to the data API, as the operations see it.
pub(super) struct Call<'a> {
    pub method: &'a str,
    /// The path after `/services/data/vXX.X`.
    pub rest: &'a str,
    pub path: &'a str,
    pub body: &'a Value,
    pub query: &'a [(String, String)],
    pub version: &'a str,
}

impl Call<'_> {
    pub(super) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits and percent-decodes a query string or a form body (`+` is a space).
pub(super) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
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

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = parse_query(uri.query());
    let path = uri.path().to_owned();
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if method == Method::POST && path == TOKEN_PATH {
        let mut state = lock(&shared);
        state.token_requests += 1;
        let form = parse_query(Some(&String::from_utf8_lossy(&body)));
        let reply = state.token(&headers, &form);
        drop(state);
        return (reply.status, axum::Json(reply.body)).into_response();
    }
    // Concurrency: every request in flight at once is counted, so a test can show the adapter
    // never holds more than Salesforce's concurrent-request limit.
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let latency = lock(&shared).config.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let raw = String::from_utf8_lossy(&body).into_owned();
    let parsed = crate::loopback::json_body(&body);
    let authorization = crate::loopback::authorization(&headers);
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut state = lock(&shared);
    let max = state.config.max_concurrent_requests;
    if now > max {
        state.violations.push(format!(
            "{method} {path}: {now} requests in flight at once; the adapter promised at most \
             {max} (Salesforce allows 25 concurrent long requests per org: \"Salesforce \
             Developer Limits and Allocations Quick Reference\", API Request Limits)"
        ));
    }
    let reply = state.process(
        method.as_str(),
        &path,
        &query,
        authorization.as_deref(),
        content_type.as_deref(),
        &parsed,
    );
    state.requests.push(FakeRequest {
        method: method.as_str().to_ascii_uppercase(),
        path: path.clone(),
        query: query.clone(),
        body: parsed.unwrap_or(Value::String(raw)),
        status: reply.status.as_u16(),
    });
    state.hosts.push(host);
    let limit_info = state.limit_info();
    let counted = path.starts_with(DATA_PREFIX);
    drop(state);
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    // A 204 carries no body (a record delete).
    let mut response = if reply.status == StatusCode::NO_CONTENT {
        reply.status.into_response()
    } else {
        (reply.status, axum::Json(reply.body)).into_response()
    };
    // "This response header is returned in each request to REST API" (REST API Developer
    // Guide, "Limit Info Header").
    if counted {
        if let Ok(value) = HeaderValue::from_str(&limit_info) {
            response.headers_mut().insert("sforce-limit-info", value);
        }
    }
    response
}

/// Decodes base64url without padding (a JWT's segments).
fn base64url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'=' => continue,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

impl State {
    /// `POST /services/oauth2/token`: the client-credentials grant (client id and secret in
    /// the form body) or the JWT-bearer grant (an assertion whose claims are checked; its
    /// signature is not verified — the fake holds no certificate). Answers the documented
    /// token response: `access_token`, `signature`, `scope`, `instance_url`, `id`,
    /// `token_type`, `issued_at` (Salesforce Help, "OAuth 2.0 Client Credentials Flow",
    /// sample response). Refusals are `400 {"error", "error_description"}` (same pages).
    fn token(&mut self, headers: &HeaderMap, form: &[(String, String)]) -> Reply {
        let param = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let refuse = |error: &str, description: &str| {
            Reply::json(
                StatusCode::BAD_REQUEST,
                json!({"error": error, "error_description": description}),
            )
        };
        let form_type = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !form_type.starts_with("application/x-www-form-urlencoded") {
            self.violations.push(format!(
                "POST {TOKEN_PATH}: Content-Type {form_type:?}: the token request is a form \
                 (application/x-www-form-urlencoded)"
            ));
        }
        match param("grant_type").as_deref() {
            Some("client_credentials") => {
                for name in ["client_id", "client_secret"] {
                    if param(name).is_none() {
                        self.violations.push(format!(
                            "POST {TOKEN_PATH}: {name}: required by the client-credentials grant"
                        ));
                    }
                }
                if param("client_id").as_deref() != Some(self.config.client_id.as_str())
                    || param("client_secret").as_deref() != Some(self.config.client_secret.as_str())
                {
                    return refuse("invalid_client", "invalid client credentials");
                }
            }
            Some(JWT_GRANT) => {
                let Some(assertion) = param("assertion") else {
                    self.violations.push(format!(
                        "POST {TOKEN_PATH}: assertion: required by the JWT grant"
                    ));
                    return refuse("invalid_request", "assertion missing");
                };
                if let Err(why) = self.check_assertion(&assertion) {
                    return refuse("invalid_grant", &why);
                }
            }
            other => {
                self.violations.push(format!(
                    "POST {TOKEN_PATH}: grant_type {other:?}: the adapter uses \
                     client_credentials or the JWT bearer grant"
                ));
                return refuse("unsupported_grant_type", "grant type not supported");
            }
        }
        let token = new_access_token();
        self.tokens.insert(token.clone());
        let instance_url = self
            .config
            .instance_url
            .clone()
            .unwrap_or_else(|| self.base_url.clone());
        let issued_at = chrono::Utc::now().timestamp_millis().to_string();
        Reply::json(
            StatusCode::OK,
            json!({
                "access_token": token,
                "signature": "c2lnbmF0dXJlLW9mLXRoZS1mYWtl",
                "scope": "api",
                "instance_url": instance_url,
                "id": format!("{}/id/00DFAKE0000000001/005FAKE0000000001", self.base_url),
                "token_type": "Bearer",
                "issued_at": issued_at,
            }),
        )
    }

    /// The JWT-bearer assertion's header and claims (Salesforce Help, "OAuth 2.0 JWT Bearer
    /// Flow": `alg` RS256, `iss` the consumer key, `aud` the login host, `sub` the username,
    /// `exp` within three minutes).
    fn check_assertion(&mut self, assertion: &str) -> Result<(), String> {
        let parts: Vec<&str> = assertion.split('.').collect();
        let decode = |s: &str| -> Option<Value> {
            base64url(s).and_then(|b| serde_json::from_slice(&b).ok())
        };
        let (Some(header), Some(claims)) = (
            parts.first().and_then(|s| decode(s)),
            parts.get(1).and_then(|s| decode(s)),
        ) else {
            self.violations.push(format!(
                "POST {TOKEN_PATH}: assertion: not a JWT (three base64url parts)"
            ));
            return Err("invalid assertion".into());
        };
        if parts.len() != 3 || header["alg"] != "RS256" {
            self.violations.push(format!(
                "POST {TOKEN_PATH}: assertion: alg {}: Salesforce takes RS256",
                header["alg"]
            ));
            return Err("invalid assertion".into());
        }
        if claims["iss"].as_str() != Some(self.config.client_id.as_str()) {
            return Err("client identifier invalid".into());
        }
        if claims["aud"].as_str() != Some(self.config.jwt_audience.as_str()) {
            return Err("audience invalid".into());
        }
        if claims["sub"].as_str() != Some(self.config.jwt_subject.as_str()) {
            return Err("user hasn't approved this consumer".into());
        }
        let now = chrono::Utc::now().timestamp();
        match claims["exp"].as_i64() {
            Some(exp) if exp > now && exp <= now + 300 => Ok(()),
            Some(_) => Err("expired authorization code".into()),
            None => {
                self.violations.push(format!(
                    "POST {TOKEN_PATH}: assertion: exp missing or not a number"
                ));
                Err("invalid assertion".into())
            }
        }
    }

    /// Path, authentication, allocation, routing, validation, the operation; each step may
    /// answer on its own.
    fn process(
        &mut self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        authorization: Option<&str>,
        content_type: Option<&str>,
        parsed: &Result<Value, String>,
    ) -> Reply {
        let method = method.to_ascii_uppercase();
        self.arrivals.push(std::time::Instant::now());
        let Some(after) = path.strip_prefix(DATA_PREFIX) else {
            return self.not_implemented(&method, path);
        };
        let (version, rest) = match after.split_once('/') {
            Some((v, r)) => (v, format!("/{r}")),
            None => (after, String::new()),
        };
        // "Pin an API version ≥ 46.0": upserts answer 200/201 with a body only from 46.0
        // (CRMS §2, dome-upsert.html), and sObject Collections upsert exists from 46.0
        // (resources-composite-sobjects-collections-upsert.html).
        let number: Option<f64> = version.strip_prefix('v').and_then(|v| v.parse().ok());
        match number {
            Some(n) if n >= 46.0 && version.contains('.') => {}
            _ => {
                self.violations.push(format!(
                    "{method} {path}: version {version:?}: the adapter pins vXX.X ≥ v46.0"
                ));
                return Reply::error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "The requested resource does not exist",
                );
            }
        }
        // `Authorization: Bearer <token>` (CRMS §2; every REST example).
        let token = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim);
        if authorization.is_some() && token.is_none() {
            self.violations.push(format!(
                "{method} {path}: Authorization: Salesforce wants `Bearer <access token>`"
            ));
        }
        if !token.is_some_and(|t| self.tokens.contains(t)) {
            return Reply::error(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            );
        }
        // The org's rolling 24-hour allocation: over it, 403 REQUEST_LIMIT_EXCEEDED (CRMS §2,
        // errorcodes.htm). The message is the one Salesforce is reported to send for the daily
        // total ("TotalRequests Limit exceeded.", unverified wording).
        if self.api_used >= self.config.daily_api_requests {
            return Reply::error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            );
        }
        self.api_used += 1;
        let body = match parsed {
            Ok(body) => body.clone(),
            Err(e) => {
                self.violations
                    .push(format!("{method} {path}: the body is not JSON: {e}"));
                return Reply::error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", "invalid JSON");
            }
        };
        if method == "GET" && !body.is_null() {
            self.violations
                .push(format!("{method} {path}: a GET carries no body"));
        }
        if !body.is_null() && !content_type.is_some_and(|c| c.starts_with("application/json")) {
            self.violations.push(format!(
                "{method} {path}: Content-Type {content_type:?}: JSON bodies are sent as \
                 application/json (REST API Developer Guide, examples)"
            ));
        }
        let call = Call {
            method: &method,
            rest: &rest,
            path,
            body: &body,
            query,
            version,
        };
        self.dispatch(&call)
    }

    /// `404 NOT_FOUND`, and a violation: the adapter called an endpoint the fake does not
    /// implement.
    pub(super) fn not_implemented(&mut self, method: &str, path: &str) -> Reply {
        self.violations.push(format!(
            "{method} {path}: the adapter called an endpoint the fake does not implement"
        ));
        Reply::error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        )
    }

    /// A request off the documented contract: a violation, answered `400` with `code`.
    pub(super) fn violation(
        &mut self,
        call: &Call<'_>,
        code: &str,
        line: impl Into<String>,
    ) -> Reply {
        let line = line.into();
        self.violations
            .push(format!("{} {}: {line}", call.method, call.path));
        Reply::error(StatusCode::BAD_REQUEST, code, &line)
    }

    fn dispatch(&mut self, call: &Call<'_>) -> Reply {
        let segments: Vec<&str> = call.rest.trim_start_matches('/').split('/').collect();
        match (call.method, segments.as_slice()) {
            ("GET", ["query"]) => self.query_op(call),
            ("GET", ["query", locator]) => self.query_more(call, locator),
            ("GET", ["limits"]) => self.limits(call),
            ("GET", ["sobjects", object, "describe"]) => self.describe(object),
            ("PATCH", ["composite", "sobjects", object, field]) => {
                self.collections_upsert(call, object, field)
            }
            ("PATCH", ["composite", "sobjects"]) => self.collections_update(call),
            ("DELETE", ["composite", "sobjects"]) => self.collections_delete(call),
            ("DELETE", ["sobjects", object, id]) => self.record_delete(call, object, id),
            ("POST", ["tooling", "sobjects", "CustomObject"]) => self.create_custom_object(call),
            ("POST", ["tooling", "sobjects", "CustomField"]) => self.create_custom_field(call),
            _ => self.not_implemented(call.method, call.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_decodes_jwt_segments() {
        assert_eq!(
            base64url("eyJhbGciOiJSUzI1NiJ9").unwrap(),
            br#"{"alg":"RS256"}"#
        );
        assert!(base64url("a+b").is_none());
    }
}
