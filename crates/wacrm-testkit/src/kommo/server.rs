//! The HTTP side: one handler that authenticates, plays a block, rate-limits, routes and
//! records every request; the operations are in `store`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

use super::store::State;
use super::FakeRequest;

pub(super) type Shared = Arc<Mutex<State>>;

/// The router: everything goes through [`handle`].
pub(super) fn router(state: Shared) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// The page users report for a blocked account (research §4.5; unverified).
const BLOCKED_PAGE: &str = "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n\
<center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// An answer, before it becomes an HTTP response.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub status: StatusCode,
    /// `None`: no body (`204`).
    pub body: Option<Value>,
    pub content_type: &'static str,
}

impl Reply {
    /// `200 application/hal+json` (contacts page: "Content-Type: application/hal+json").
    pub(super) fn hal(body: Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: Some(body),
            content_type: "application/hal+json",
        }
    }

    /// `204` without a body: an empty list (SDK `AmoCRMApiRequest`: 204 "No content").
    pub(super) fn empty() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
            content_type: "application/hal+json",
        }
    }

    /// `application/problem+json` `{title, type, status, detail}` (contacts page: "Content-Type:
    /// application/problem+json"; fields unverified, as the SDK reads them).
    pub(super) fn problem(status: StatusCode, detail: impl Into<String>) -> Reply {
        Reply {
            status,
            body: Some(json!({
                "title": status.canonical_reason().unwrap_or("Error"),
                "type": format!("https://httpstatus.es/{}", status.as_u16()),
                "status": status.as_u16(),
                "detail": detail.into(),
            })),
            content_type: "application/problem+json",
        }
    }

    /// `400` with `validation-errors: [{request_id, errors: [{code, path, detail}]}]` (research
    /// §4.4, unverified field list; the SDK reads `validation-errors` of a 400).
    pub(super) fn refused(errors: Vec<Value>) -> Reply {
        let mut reply = Reply::problem(StatusCode::BAD_REQUEST, "Request validation failed");
        if let Some(body) = reply.body.as_mut() {
            body["validation-errors"] = Value::Array(errors);
        }
        reply
    }
}

fn respond(reply: &Reply) -> Response {
    let body = match &reply.body {
        Some(v) => Body::from(v.to_string()),
        None => Body::empty(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    if reply.body.is_some() {
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(reply.content_type),
        );
    }
    response
}

/// One request to an implemented operation, as the handlers see it.
pub(super) struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub body: &'a Value,
    /// `https://…` links are written against this address.
    pub base: &'a str,
}

impl Call<'_> {
    /// Every value of a query parameter, in order.
    pub(super) fn all(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of a query parameter.
    pub(super) fn query(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }
}

/// Splits and percent-decodes a query string (`filter%5Bid%5D%5B%5D=1` is `filter[id][]`).
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
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let query = parse_query(uri.query());
    let parsed = crate::loopback::json_body(&body);
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let reply = state.process(&Incoming {
        method: method.as_str(),
        path: uri.path(),
        query: &query,
        authorization: crate::loopback::authorization(&headers),
        raw: &String::from_utf8_lossy(&body),
        parsed: &parsed,
        at,
        base: format!("http://{host}"),
    });
    let response = match &reply {
        Ok(reply) => respond(reply),
        Err(()) => {
            let mut r = Response::new(Body::from(BLOCKED_PAGE));
            *r.status_mut() = StatusCode::FORBIDDEN;
            r.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/html"),
            );
            r
        }
    };
    state.requests.push((
        at,
        FakeRequest {
            method: method.as_str().to_ascii_uppercase(),
            path: uri.path().to_owned(),
            query,
            body: parsed.unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into())),
            status: response.status().as_u16(),
        },
    ));
    response
}

/// One request, as the pipeline sees it.
pub(super) struct Incoming<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a [(String, String)],
    authorization: Option<String>,
    raw: &'a str,
    parsed: &'a Result<Value, String>,
    at: Instant,
    base: String,
}

/// Kommo's rate window (limitations: "not more than 7 requests per second").
const WINDOW: Duration = Duration::from_secs(1);

impl State {
    /// Authentication, block, rate limit, routing, validation and the operation; `Err` is the
    /// blocked account's HTML page.
    fn process(&mut self, request: &Incoming<'_>) -> Result<Reply, ()> {
        if request.method.eq_ignore_ascii_case("POST") && request.path == "/oauth2/access_token" {
            return Ok(self.token_endpoint(request.raw));
        }
        let presented = request
            .authorization
            .as_deref()
            .and_then(|a| a.trim().strip_prefix("Bearer "))
            .unwrap_or_default();
        if presented != self.config.token && !self.access_tokens.iter().any(|t| t == presented) {
            return Ok(Reply::problem(
                StatusCode::UNAUTHORIZED,
                "Authorization failed: the access token is invalid or missing",
            ));
        }
        if self.blocked {
            return Err(());
        }
        while let Some(front) = self.window.front() {
            if request.at.saturating_duration_since(*front) >= WINDOW {
                self.window.pop_front();
            } else {
                break;
            }
        }
        if self.window.len() >= self.config.requests_per_second as usize {
            self.rate_violations += 1;
            return Ok(Reply::problem(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "more than {} requests in a second",
                    self.config.requests_per_second
                ),
            ));
        }
        self.window.push_back(request.at);
        let body = match request.parsed {
            Ok(body) => body.clone(),
            Err(e) => {
                return Ok(self.violation(
                    request.method,
                    request.path,
                    format!("body is not JSON: {e}"),
                ))
            }
        };
        let call = Call {
            method: request.method,
            path: request.path,
            query: request.query,
            body: &body,
            base: &request.base,
        };
        Ok(self.dispatch(&call))
    }

    /// Records a request off the documented shapes and answers `400`.
    pub(super) fn violation(&mut self, method: &str, path: &str, what: impl Into<String>) -> Reply {
        let what = what.into();
        self.violations
            .push(format!("{} {path}: {what}", method.to_ascii_uppercase()));
        Reply::problem(StatusCode::BAD_REQUEST, what)
    }

    fn dispatch(&mut self, call: &Call<'_>) -> Reply {
        let method = call.method.to_ascii_uppercase();
        match (method.as_str(), call.path.trim_end_matches('/')) {
            ("GET", "/api/v4/account") => self.account(call),
            ("GET", "/api/v4/contacts/custom_fields") => self.fields_list(call),
            ("POST", "/api/v4/contacts/custom_fields") => self.fields_add(call),
            ("GET", "/api/v4/contacts") => self.contacts_list(call),
            ("POST", "/api/v4/contacts") => self.contacts_add(call),
            ("PATCH", "/api/v4/contacts") => self.contacts_edit(call),
            ("GET", "/api/v4/contacts/notes") => self.notes_list(call),
            ("POST", "/api/v4/contacts/notes") => self.notes_add(call),
            ("PATCH", "/api/v4/contacts/notes") => self.notes_edit(call),
            _ => {
                let line = "the adapter called an endpoint the fake does not implement";
                self.violations
                    .push(format!("{method} {}: {line}", call.path));
                Reply::problem(StatusCode::NOT_FOUND, line)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracketed_query_keys_are_decoded() {
        assert_eq!(
            parse_query(Some("filter%5Bid%5D%5B%5D=1&filter[id][]=2&limit=250")),
            vec![
                ("filter[id][]".to_owned(), "1".to_owned()),
                ("filter[id][]".to_owned(), "2".to_owned()),
                ("limit".to_owned(), "250".to_owned()),
            ]
        );
    }
}
