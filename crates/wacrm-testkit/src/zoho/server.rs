//! The HTTP side: the token endpoint, and one handler that authenticates, charges credits,
//! validates and dispatches every API call and records it.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use super::routes::{match_route, Op, Route};
use super::state::{new_access_token, State};
use super::FakeRequest;

pub(super) type Shared = Arc<Mutex<State>>;

/// The token endpoint's path on the accounts server.
const TOKEN_PATH: &str = "/oauth/v2/token";
/// The prefix of every API call.
const API_PREFIX: &str = "/crm/v8/";
/// The `Authorization` scheme Zoho wants.
const SCHEME: &str = "Zoho-oauthtoken";
/// How long an access token lives, as the token answer states it.
const EXPIRES_IN: u64 = 3600;
/// The most records (notes, fields) one write may carry.
pub(super) const MAX_BATCH: usize = 100;
/// Most record ids a delete takes (Zoho's delete-records page: up to 100 per call).
const MAX_DELETE: usize = 100;

/// The router: everything goes through [`handle`].
pub(super) fn router(state: Shared) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An answer, before it becomes an HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Reply {
    pub status: StatusCode,
    /// `None`: an empty body (`204`).
    pub body: Option<Value>,
}

impl Reply {
    pub(super) fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
        }
    }

    /// `204` with an empty body, Zoho's "nothing matched".
    pub(super) fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
        }
    }

    /// Zoho's error body `{"code", "details", "message", "status": "error"}`.
    pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Reply {
        Reply::json(status, error_body(code, message, json!({})))
    }

    /// One result per input item under `key` (`data`, or `fields` for field creation):
    /// `success` when every item succeeded, `207` when some failed, `400` when all failed.
    pub(super) fn batch(key: &str, items: Vec<Result<Value, Value>>, success: StatusCode) -> Reply {
        let failed = items.iter().filter(|i| i.is_err()).count();
        let status = if failed == 0 {
            success
        } else if failed == items.len() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::MULTI_STATUS
        };
        let items: Vec<Value> = items
            .into_iter()
            .map(|i| match i {
                Ok(v) | Err(v) => v,
            })
            .collect();
        Reply::json(status, json!({ key: items }))
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self.body {
            Some(body) => (self.status, axum::Json(body)).into_response(),
            None => self.status.into_response(),
        }
    }
}

/// `{"code", "details", "message", "status": "error"}`, a request's or one item's error.
pub(super) fn error_body(code: &str, message: &str, details: Value) -> Value {
    json!({"code": code, "details": details, "message": message, "status": "error"})
}

/// A per-item error naming the field at fault: `details: {api_name, json_path}`.
pub(super) fn field_error(code: &str, message: &str, api_name: &str, json_path: &str) -> Value {
    error_body(
        code,
        message,
        json!({"api_name": api_name, "json_path": json_path}),
    )
}

/// One request to an implemented operation, as the handlers see it.
pub(super) struct Call<'a> {
    pub route: Route,
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
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = parse_query(uri.query());
    let path = uri.path();
    let mut state = lock(&shared);
    if method == Method::POST && path == TOKEN_PATH {
        state.token_requests += 1;
        let form = parse_query(Some(&String::from_utf8_lossy(&body)));
        let reply = state.token(&query, &form);
        drop(state);
        return reply.into_response();
    }
    let raw = String::from_utf8_lossy(&body).into_owned();
    let parsed = crate::loopback::json_body(&body);
    let authorization = crate::loopback::authorization(&headers);
    let reply = state.process(
        method.as_str(),
        path,
        &query,
        authorization.as_deref(),
        &parsed,
    );
    state.requests.push(FakeRequest {
        method: method.as_str().to_ascii_uppercase(),
        path: path.to_owned(),
        query: query.clone(),
        body: parsed.unwrap_or(Value::String(raw)),
        status: reply.status.as_u16(),
    });
    drop(state);
    reply.into_response()
}

impl State {
    /// `POST /oauth/v2/token`, the refresh-token grant.
    fn token(&mut self, query: &[(String, String)], form: &[(String, String)]) -> Reply {
        let param = |name: &str| {
            form.iter()
                .chain(query)
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let refuse = |error: &str| Reply::json(StatusCode::BAD_REQUEST, json!({"error": error}));
        let grant = param("grant_type");
        if grant.as_deref() != Some("refresh_token") {
            self.violations.push(format!(
                "POST {TOKEN_PATH}: grant_type: {grant:?} is not `refresh_token`, the grant the \
                 adapter uses"
            ));
            return refuse("unsupported_grant_type");
        }
        for name in ["client_id", "client_secret", "refresh_token"] {
            if param(name).is_none() {
                self.violations.push(format!(
                    "POST {TOKEN_PATH}: {name}: required by the refresh-token grant"
                ));
            }
        }
        if param("client_id").as_deref() != Some(self.config.client_id.as_str())
            || param("client_secret").as_deref() != Some(self.config.client_secret.as_str())
        {
            return refuse("invalid_client");
        }
        if param("refresh_token").as_deref() != Some(self.config.refresh_token.as_str()) {
            return refuse("invalid_code");
        }
        let token = new_access_token();
        self.tokens.insert(token.clone());
        Reply::json(
            StatusCode::OK,
            json!({
                "access_token": token,
                "api_domain": self.base_url,
                "token_type": "Bearer",
                "expires_in": EXPIRES_IN,
            }),
        )
    }

    /// Path, authentication, credit, routing, validation, and the operation itself; each step
    /// may answer on its own.
    fn process(
        &mut self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        authorization: Option<&str>,
        parsed: &Result<Value, String>,
    ) -> Reply {
        let method = method.to_ascii_uppercase();
        if !path.starts_with(API_PREFIX) {
            return self.not_implemented(&method, path);
        }
        let (scheme, token) = authorization
            .map(str::trim)
            .and_then(|a| a.split_once(' '))
            .map_or(("", ""), |(s, t)| (s, t.trim()));
        if authorization.is_some() && scheme != SCHEME {
            self.violations.push(format!(
                "{method} {path}: Authorization: the scheme is {scheme:?}; Zoho wants \
                 `{SCHEME} <access token>`"
            ));
        }
        if scheme != SCHEME || !self.tokens.contains(token) {
            return Reply::error(
                StatusCode::UNAUTHORIZED,
                "INVALID_TOKEN",
                "invalid oauth token",
            );
        }
        self.credits += 1;
        let Some(route) = match_route(&method, path) else {
            return self.not_implemented(&method, path);
        };
        let body = match parsed {
            Ok(body) => body.clone(),
            Err(e) => {
                let line = format!("(root): json: invalid JSON body: {e}");
                return self.reject(&route, path, vec![line]);
            }
        };
        let mut errors = Vec::new();
        if route.method == "GET" && !body.is_null() {
            errors.push("(root): body: a GET carries no body".to_owned());
        }
        if let Some(specs) = self.specs.clone() {
            errors.extend(specs.validate(route.doc, route.template, route.method, &body, query));
        }
        if !errors.is_empty() {
            return self.reject(&route, path, errors);
        }
        let call = Call {
            route,
            path,
            body: &body,
            query,
        };
        self.dispatch(&call)
    }

    /// `404 INVALID_URL_PATTERN`, and a violation.
    fn not_implemented(&mut self, method: &str, path: &str) -> Reply {
        self.violations.push(format!(
            "{method} {path}: the adapter called an endpoint the fake does not implement"
        ));
        Reply::error(
            StatusCode::NOT_FOUND,
            "INVALID_URL_PATTERN",
            "Please check if the URL trying to access is a correct one",
        )
    }

    /// Records each line as a violation and answers `400 INVALID_DATA`.
    fn reject(&mut self, route: &Route, path: &str, errors: Vec<String>) -> Reply {
        for line in errors {
            self.violations
                .push(format!("{} {path}: {line}", route.method));
        }
        Reply::error(StatusCode::BAD_REQUEST, "INVALID_DATA", "invalid data")
    }

    /// A request that breaks Zoho's documented contract where the schema cannot say so (a
    /// limit, the COQL shape, an unknown module): recorded as a violation, answered `400`.
    pub(super) fn violation(&mut self, call: &Call<'_>, line: impl Into<String>) -> Reply {
        let route = call.route;
        self.reject(&route, call.path, vec![line.into()])
    }

    /// The `data` array of a write, checked against the documented batch limit.
    pub(super) fn batch_items<'b>(
        &mut self,
        call: &Call<'b>,
        key: &str,
    ) -> Result<&'b Vec<Value>, Reply> {
        let items = match call.body.get(key).and_then(Value::as_array) {
            Some(items) => items,
            None => return Err(self.violation(call, format!("/{key}: required: no `{key}` array"))),
        };
        if items.is_empty() {
            return Err(self.violation(call, format!("/{key}: minItems: `{key}` is empty")));
        }
        if items.len() > MAX_BATCH {
            return Err(self.violation(
                call,
                format!(
                    "/{key}: maxItems: {} items; Zoho takes at most {MAX_BATCH} per request",
                    items.len()
                ),
            ));
        }
        Ok(items)
    }

    /// `?ids=` of a delete: 1 to 100 record ids ("up to 100 records per API call", Zoho's
    /// delete-records page), each answered in order: `SUCCESS` or `INVALID_DATA` (no such
    /// record, a second delete included). The documents give deletes a `200` whatever the
    /// per-record outcomes, so the fake does too. `remove` deletes one id, if held.
    pub(super) fn delete_ids(
        &mut self,
        call: &Call<'_>,
        remove: impl Fn(&mut State, u64) -> bool,
    ) -> Reply {
        let ids: Vec<String> = call
            .query("ids")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_owned)
            .collect();
        if ids.is_empty() || ids.len() > MAX_DELETE {
            return self.violation(
                call,
                format!("?ids: {} ids; a delete takes 1 to {MAX_DELETE}", ids.len()),
            );
        }
        if !call.body.is_null() {
            return self.violation(call, "(root): body: a delete carries no body");
        }
        let items = ids
            .iter()
            .map(|text| match super::state::parse_id(text) {
                Some(id) if remove(self, id) => json!({
                    "code": "SUCCESS",
                    "details": {"id": text},
                    "message": "record deleted",
                    "status": "success",
                }),
                _ => error_body(
                    "INVALID_DATA",
                    "the related id given seems to be invalid",
                    json!({"id": text}),
                ),
            })
            .collect::<Vec<_>>();
        Reply::json(StatusCode::OK, json!({ "data": items }))
    }

    /// `DELETE /Contacts?ids=…`: the contacts are gone (Zoho keeps deleted records in its
    /// Recycle Bin for 60 days; the fake forgets them). Their notes stay: the fake does not
    /// assume Zoho deletes a record's notes with it, so an erasing client deletes them itself.
    fn delete_records(&mut self, call: &Call<'_>) -> Reply {
        self.delete_ids(call, |state, id| state.contacts.remove(&id).is_some())
    }

    /// `?module=` of the fields operations: the fake holds `Contacts` only.
    fn check_module(&mut self, call: &Call<'_>) -> Option<Reply> {
        match call.query("module") {
            Some(super::state::CONTACTS) => None,
            other => Some(self.violation(
                call,
                format!("?module: {other:?}: the fake implements the Contacts module only"),
            )),
        }
    }

    fn dispatch(&mut self, call: &Call<'_>) -> Reply {
        match call.route.op {
            Op::FieldsList => match self.check_module(call) {
                Some(reply) => reply,
                None => self.fields_list(),
            },
            Op::FieldCreate => match self.check_module(call) {
                Some(reply) => reply,
                None => self.field_create(call),
            },
            Op::Coql => self.coql(call),
            Op::Upsert => self.upsert(call),
            Op::UpdateRecords => self.update_records(call),
            Op::DeleteRecords => self.delete_records(call),
            Op::NotesList => self.notes_list(call),
            Op::NotesCreate => self.notes_create(call),
            Op::NotesUpdate => self.notes_update(call),
            Op::NotesDelete => self.notes_delete(call),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_answer_by_how_many_items_failed() {
        let ok = || Ok(json!({"status": "success"}));
        let bad = || Err(json!({"status": "error"}));
        assert_eq!(
            Reply::batch("data", vec![ok(), ok()], StatusCode::CREATED).status,
            StatusCode::CREATED
        );
        assert_eq!(
            Reply::batch("data", vec![ok(), bad()], StatusCode::OK).status,
            StatusCode::MULTI_STATUS
        );
        let all_bad = Reply::batch("fields", vec![bad()], StatusCode::OK);
        assert_eq!(all_bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(all_bad.body, Some(json!({"fields": [{"status": "error"}]})));
    }

    #[test]
    fn forms_are_split_and_decoded() {
        assert_eq!(
            parse_query(Some(
                "grant_type=refresh_token&refresh_token=1000.a%2Bb&x=a+b"
            )),
            vec![
                ("grant_type".to_owned(), "refresh_token".to_owned()),
                ("refresh_token".to_owned(), "1000.a+b".to_owned()),
                ("x".to_owned(), "a b".to_owned()),
            ]
        );
        assert!(parse_query(None).is_empty());
    }
}
