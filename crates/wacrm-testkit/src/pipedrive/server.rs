//! The HTTP side: one handler that authenticates, rate-limits, charges tokens, validates and
//! dispatches, and records every request.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use super::routes::{match_route, Op, Route};
use super::state::{Recorded, State};
use super::FakeRequest;

pub(super) type Shared = Arc<Mutex<State>>;

/// The header carrying the API token.
const TOKEN_HEADER: &str = "x-api-token";
/// `error_info` of Pipedrive's error bodies.
const ERROR_INFO: &str =
    "Please check developers.pipedrive.com for more information about Pipedrive API.";

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
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(super) fn raw(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// `200 {"success": true, "data": …, "additional_data": …}`.
    pub(super) fn success(data: Value, additional_data: Value) -> Reply {
        Reply::raw(
            StatusCode::OK,
            json!({"success": true, "data": data, "additional_data": additional_data}),
        )
    }

    /// Pipedrive's error body: `{"success": false, "error", "error_info", "data": null,
    /// "additional_data": null}`.
    pub(super) fn error(status: StatusCode, error: impl Into<String>) -> Reply {
        Reply::raw(
            status,
            json!({
                "success": false,
                "error": error.into(),
                "error_info": ERROR_INFO,
                "data": null,
                "additional_data": null,
            }),
        )
    }

    /// `404` as the documents' examples write it.
    pub(super) fn not_found() -> Reply {
        Reply::raw(
            StatusCode::NOT_FOUND,
            json!({
                "success": false,
                "error": "Entity was not found",
                "error_info": "Object was not found.",
                "data": null,
                "additional_data": null,
            }),
        )
    }

    pub(super) fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        response
    }
}

/// One request to an implemented operation, as the handlers see it.
pub(super) struct Call<'a> {
    pub route: &'a Route,
    pub path: &'a str,
    pub body: &'a Value,
    pub query: &'a [(String, String)],
}

impl Call<'_> {
    /// The first value of a query parameter.
    pub(super) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `{id}` path parameter (checked to be an integer before dispatch).
    pub(super) fn id(&self) -> i64 {
        self.route.param("id").parse().unwrap_or(-1)
    }

    /// A string member of the body.
    pub(super) fn str_field(&self, name: &str) -> Option<&str> {
        self.body.get(name).and_then(Value::as_str)
    }
}

/// Splits and percent-decodes a query string (`+` is a space).
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

async fn handle(
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let raw = String::from_utf8_lossy(&body).into_owned();
    let parsed = crate::loopback::json_body(&body);
    let token = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let query = parse_query(uri.query());
    let mut state = lock(&shared);
    let request = Incoming {
        method: method.as_str(),
        path: uri.path(),
        query: &query,
        token: token.as_deref(),
        parsed: &parsed,
        at,
    };
    let reply = state.process(&request);
    let reply = state.with_rate_headers(reply, at);
    state.requests.push(Recorded {
        at,
        request: FakeRequest {
            method: method.as_str().to_ascii_uppercase(),
            path: uri.path().to_owned(),
            query: query.clone(),
            body: parsed.unwrap_or(Value::String(raw)),
            status: reply.status.as_u16(),
        },
    });
    drop(state);
    reply.into_response()
}

/// One request, as the pipeline sees it.
struct Incoming<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a [(String, String)],
    token: Option<&'a str>,
    parsed: &'a Result<Value, String>,
    at: Instant,
}

impl State {
    /// Authentication, burst limit, daily budget, routing, token charge, validation, and the
    /// operation itself; each step may answer on its own.
    fn process(&mut self, request: &Incoming<'_>) -> Reply {
        if request.token.map(str::trim) != Some(self.config.token.as_str()) {
            return Reply::raw(
                StatusCode::UNAUTHORIZED,
                json!({"success": false, "error": "unauthorized access", "errorCode": 401}),
            );
        }
        if let Some(reply) = self.admit_burst(request.at) {
            return reply;
        }
        if let Some(reply) = self.over_budget() {
            return reply;
        }
        let Some(route) = match_route(request.method, request.path) else {
            self.violations.push(format!(
                "{} {}: the adapter called an endpoint the fake does not implement",
                request.method.to_ascii_uppercase(),
                request.path
            ));
            return Reply::error(
                StatusCode::NOT_FOUND,
                format!(
                    "wacrm Pipedrive fake: {} {} is not an operation the fake implements",
                    request.method.to_ascii_uppercase(),
                    request.path
                ),
            );
        };
        self.tokens_spent += self.token_cost(&route);
        let body = match request.parsed {
            Ok(body) => body.clone(),
            Err(e) => {
                let line = format!("(root): json: invalid JSON body: {e}");
                return self.reject(&route, request.path, vec![line]);
            }
        };
        let mut errors = Vec::new();
        for (name, value) in &route.params {
            if value.parse::<i64>().is_err() {
                errors.push(format!("{{{name}}}: type: {value:?} is not an integer"));
            }
        }
        if let Some(specs) = self.specs.clone() {
            errors.extend(specs.validate(
                route.api,
                route.template,
                route.method,
                &body,
                request.query,
            ));
        }
        if !errors.is_empty() {
            return self.reject(&route, request.path, errors);
        }
        let call = Call {
            route: &route,
            path: request.path,
            body: &body,
            query: request.query,
        };
        self.dispatch(&call)
    }

    /// The operation's `x-token-cost`, or the fake's own table without the documents.
    fn token_cost(&self, route: &Route) -> u64 {
        self.specs
            .as_ref()
            .and_then(|s| s.token_cost(route.api, route.template, route.method))
            .unwrap_or(route.fallback_cost)
    }

    /// Records each line as a violation and answers `400` naming them.
    fn reject(&mut self, route: &Route, path: &str, errors: Vec<String>) -> Reply {
        for line in &errors {
            self.violations
                .push(format!("{} {path}: {line}", route.method));
        }
        Reply::error(
            StatusCode::BAD_REQUEST,
            format!(
                "Validation failed: the request does not match Pipedrive's {} document: {}",
                route.api.file(),
                errors.join("; ")
            ),
        )
    }

    /// A request that breaks Pipedrive's documented contract where the schema cannot say so
    /// (a limit, a format, an unknown custom field key): recorded as a violation, answered
    /// `400`.
    pub(super) fn violation(&mut self, call: &Call<'_>, line: impl Into<String>) -> Reply {
        let line = line.into();
        self.violations
            .push(format!("{} {}: {line}", call.route.method, call.path));
        Reply::error(
            StatusCode::BAD_REQUEST,
            format!("Validation failed: {line}"),
        )
    }

    fn dispatch(&mut self, call: &Call<'_>) -> Reply {
        match call.route.op {
            Op::UsersMe => self.users_me(),
            Op::PersonFieldsList => self.person_fields_list(call),
            Op::PersonFieldCreate => self.person_field_create(call),
            Op::PersonFieldGet => self.person_field_get(call),
            Op::PersonsList => self.persons_list(call),
            Op::PersonCreate => self.person_create(call),
            Op::PersonPatch => self.person_patch(call),
            Op::PersonDelete => self.person_delete(call),
            Op::NotesList => self.notes_list(call),
            Op::NoteCreate => self.note_create(call),
            Op::NoteGet => self.note_get(call),
            Op::NoteUpdate => self.note_update(call),
            Op::NoteDelete => self.note_delete(call),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_split_and_decoded() {
        assert_eq!(
            parse_query(Some("sort=id%20DESC&custom_fields=a,b&x=a+b&flag")),
            vec![
                ("sort".to_owned(), "id DESC".to_owned()),
                ("custom_fields".to_owned(), "a,b".to_owned()),
                ("x".to_owned(), "a b".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert!(parse_query(None).is_empty());
    }
}
