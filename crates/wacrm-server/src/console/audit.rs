//! The audit screen: the audit log filtered by actor, action, contact and day, a page at a
//! time, and its export as CSV (itself audited). It reads through `GET /v1/audit` with the
//! account as the caller: an account limited to business numbers reads what such a key reads.

use std::sync::Arc;

use axum::extract::{Extension, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::conversations::{json_of, signed_in};
use super::page::{page, respond, Locale, Nav, Text};
use crate::api::AuditFilter;
use crate::auth::Caller;
use crate::config::ConsoleConfig;
use crate::AppState;

/// Entries per page.
const PAGE: u64 = 100;
/// Most entries one export holds.
const EXPORT_LIMIT: u64 = 1000;

/// The screen's filters, as the form sends them.
#[derive(Debug, Deserialize, Default)]
pub struct AuditForm {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    contact: String,
    /// A day, `YYYY-MM-DD`.
    #[serde(default)]
    from: String,
    /// A day, `YYYY-MM-DD` (included).
    #[serde(default)]
    until: String,
    after: Option<i64>,
}

fn day_start(day: &str) -> Option<DateTime<Utc>> {
    NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
}

fn non_empty(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty()).then(|| v.chars().take(200).collect())
}

impl AuditForm {
    fn filter(&self, limit: u64) -> AuditFilter {
        AuditFilter {
            key_id: non_empty(&self.actor),
            action: non_empty(&self.action),
            contact_id: non_empty(&self.contact),
            after: self.after,
            from: day_start(&self.from),
            until: day_start(&self.until).map(|t| t + chrono::Duration::days(1)),
            limit: Some(limit),
        }
    }

    fn query_string(&self, after: Option<i64>) -> String {
        let mut pairs = url_pairs(&[
            ("actor", &self.actor),
            ("action", &self.action),
            ("contact", &self.contact),
            ("from", &self.from),
            ("until", &self.until),
        ]);
        if let Some(after) = after {
            pairs.push(format!("after={after}"));
        }
        pairs.join("&")
    }
}

/// `name=value` pairs, percent-encoded, for the non-empty values.
fn url_pairs(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| {
            let encoded: String = v
                .trim()
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={encoded}")
        })
        .collect()
}

async fn entries(
    state: &Arc<AppState>,
    caller: Caller,
    filter: AuditFilter,
) -> Result<Vec<Value>, Response> {
    let (status, body) =
        json_of(crate::api::audit_log(State(state.clone()), caller, Query(filter)).await).await;
    if status == StatusCode::FORBIDDEN {
        return Err(status.into_response());
    }
    if !status.is_success() {
        return Err((status, "unavailable").into_response());
    }
    Ok(body.as_array().cloned().unwrap_or_default())
}

fn cell(entry: &Value, field: &str) -> String {
    match &entry[field] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `GET /console/audit`.
pub async fn screen(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Query(form): Query<AuditForm>,
) -> Response {
    let (session, account) = match signed_in(&state, &config, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let locale = Locale::parse(&account.locale);
    let nav = || Nav {
        name: &account.name,
        csrf: &session.csrf,
        account: &account,
    };
    let list = match entries(&state, Caller(account.principal()), form.filter(PAGE)).await {
        Ok(list) => list,
        Err(r) if r.status() == StatusCode::FORBIDDEN => {
            return respond(
                StatusCode::FORBIDDEN,
                page(
                    locale,
                    locale.t(Text::Audit),
                    Some(nav()),
                    html! {
                        div.card { p #error .error { (locale.t(Text::Forbidden)) } }
                    },
                ),
            )
        }
        Err(r) => return r,
    };
    let last_seq = list.last().and_then(|e| e["seq"].as_i64());
    let full_page = u64::try_from(list.len()).unwrap_or(0) >= PAGE;
    let body = html! {
        div.card {
            h1 { (locale.t(Text::Audit)) }
            form #audit-filter method="get" action="/console/audit" {
                div.filters {
                    label { (locale.t(Text::Actor)) input type="text" name="actor" value=(form.actor) placeholder="account:ana"; }
                    label { (locale.t(Text::Action)) input type="text" name="action" value=(form.action) placeholder="messages.send"; }
                    label { (locale.t(Text::Contact)) input type="text" name="contact" value=(form.contact); }
                    label { (locale.t(Text::From)) input type="date" name="from" value=(form.from); }
                    label { (locale.t(Text::Until)) input type="date" name="until" value=(form.until); }
                }
                button type="submit" { (locale.t(Text::Filter)) }
            }
            p { a #audit-export href={ "/console/audit.csv?" (form.query_string(None)) } { (locale.t(Text::Export)) } }
        }
        div.card {
            @if list.is_empty() {
                p #no-entries { (locale.t(Text::NoEntries)) }
            } @else {
                div.scroll {
                    table #audit-entries {
                        thead { tr {
                            th { "#" } th { (locale.t(Text::When)) } th { (locale.t(Text::Actor)) }
                            th { (locale.t(Text::Action)) } th { (locale.t(Text::Contact)) }
                            th { (locale.t(Text::Target)) } th { (locale.t(Text::Outcome)) }
                        } }
                        tbody {
                            @for e in &list {
                                tr.entry {
                                    td { (cell(e, "seq")) }
                                    td { (cell(e, "at")) }
                                    td { (cell(e, "actor")) " " span.meta { (cell(e, "key_id")) } }
                                    td { (cell(e, "action")) }
                                    td { (cell(e, "contact_id")) }
                                    td { (cell(e, "target")) }
                                    td { (cell(e, "outcome")) }
                                }
                            }
                        }
                    }
                }
                @if full_page {
                    p { a #audit-next href={ "/console/audit?" (form.query_string(last_seq)) } { (locale.t(Text::Next)) } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(locale, locale.t(Text::Audit), Some(nav()), body),
    )
}

fn csv_field(value: &str) -> String {
    // Quoted, quotes doubled; a leading formula character is neutralised so a spreadsheet
    // never runs an entry's text as a formula.
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// `GET /console/audit.csv`: the filtered entries (at most 1,000) as CSV. The export is itself
/// an audited read (`audit.read`, then `audit.export`).
pub async fn export(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Query(form): Query<AuditForm>,
) -> Response {
    let (_, account) = match signed_in(&state, &config, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let list = match entries(
        &state,
        Caller(account.principal()),
        form.filter(EXPORT_LIMIT),
    )
    .await
    {
        Ok(list) => list,
        Err(r) => return r,
    };
    let caller = Caller(account.principal());
    let target = format!("{} entries", list.len());
    if let Err(r) = caller
        .audit(&state, "audit.export", None, Some(&target), "ok")
        .await
    {
        return r;
    }
    let fields = [
        "seq",
        "at",
        "key_id",
        "actor",
        "action",
        "contact_id",
        "target",
        "outcome",
        "hash",
    ];
    let mut csv = fields.join(",");
    csv.push('\n');
    for e in &list {
        let row: Vec<String> = fields.iter().map(|f| csv_field(&cell(e, f))).collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"wacrm-audit.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        csv,
    )
        .into_response()
}
