//! The operations screen: each business number's sending health, each CRM connection's and
//! consumer's state (from `GET /v1/status`), and the dead letters with their re-drive (from
//! `GET /v1/dead-letters` and `POST /v1/dead-letters/{id}/retry`), all with the account as the
//! caller.

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;
use wacrm_store::keys::scope;

use super::conversations::{json_of, signed_in, signed_in_form};
use super::page::{page, post_button, respond, Locale, Nav, Text};
use crate::api::DeadLetterFilter;
use crate::auth::Caller;
use crate::config::ConsoleConfig;
use crate::AppState;

/// Dead letters the screen lists.
const DEAD_LETTERS: u64 = 50;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

fn consumer_rows(locale: Locale, consumers: &[Value]) -> Markup {
    html! {
        @for c in consumers {
            tr.consumer {
                td { (text(&c["group"])) }
                td { @if c["up"] == true { span.ok { (locale.t(Text::Running)) } } @else { span.bad { (locale.t(Text::Stopped)) } } }
                td { (c["last_commit_age_seconds"].as_f64().map(|s| format!("{s:.0} s")).unwrap_or_else(|| "—".into())) }
                td { (text(&c["restarts"])) }
                td { (text(&c["last_error"]["message"])) }
            }
        }
    }
}

/// `GET /console/operations`.
pub async fn screen(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Query(notice): Query<NoticeQuery>,
) -> Response {
    let (session, account) = match signed_in(&state, &config, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let locale = Locale::parse(&account.locale);
    let principal = account.principal();
    let (status, body) =
        json_of(crate::status::status(State(state.clone()), Caller(principal.clone())).await).await;
    if !status.is_success() {
        return (status, "unavailable").into_response();
    }
    let dead = if principal.has_scope(scope::DEAD_LETTERS_READ) {
        let filter = DeadLetterFilter {
            limit: Some(DEAD_LETTERS),
            include_resolved: Some(false),
        };
        let (status, list) = json_of(
            crate::api::dead_letters(
                State(state.clone()),
                Caller(principal.clone()),
                Query(filter),
            )
            .await,
        )
        .await;
        if !status.is_success() {
            return (status, "unavailable").into_response();
        }
        Some(list.as_array().cloned().unwrap_or_default())
    } else {
        None
    };
    let may_retry = principal.has_scope(scope::DEAD_LETTERS_RETRY);
    let numbers = body["sending"]["numbers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let connections = body["crm_connections"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let consumers = body["consumers"].as_array().cloned().unwrap_or_default();
    let markup = html! {
        @if let Some(n) = &notice.retried {
            p #notice .notice { (locale.t(Text::Retried)) " " (n) }
        }
        div.card {
            h1 { (locale.t(Text::Operations)) }
            h2 { (locale.t(Text::Sending)) }
            @if body["sending"]["configured"] != true {
                p.bad { (locale.t(Text::SendingOff)) }
            }
            table #numbers {
                thead { tr { th { (locale.t(Text::Number)) } th { (locale.t(Text::State)) } th { (locale.t(Text::Since)) } th { (locale.t(Text::Reason)) } } }
                tbody {
                    @for n in &numbers {
                        tr.number {
                            td { (text(&n["phone_number_id"])) }
                            td { @if n["state"] == "ok" { span.ok { "ok" } } @else { span.bad { (text(&n["state"])) } } }
                            td { (text(&n["since"])) }
                            td { (text(&n["reason"])) }
                        }
                    }
                }
            }
        }
        div.card {
            h2 { (locale.t(Text::CrmSync)) }
            div.scroll {
                table #crm-connections {
                    thead { tr { th { (locale.t(Text::Connection)) } th { "CRM" } th { (locale.t(Text::State)) } th { (locale.t(Text::LastCommit)) } th { (locale.t(Text::Restarts)) } th { (locale.t(Text::LastError)) } } }
                    tbody {
                        @for c in &connections {
                            tr.connection {
                                td { (text(&c["name"])) }
                                td { (text(&c["kind"])) }
                                td { @if c["consumer"]["up"] == true { span.ok { (locale.t(Text::Running)) } } @else { span.bad { (locale.t(Text::Stopped)) } } }
                                td { (c["consumer"]["last_commit_age_seconds"].as_f64().map(|s| format!("{s:.0} s")).unwrap_or_else(|| "—".into())) }
                                td { (text(&c["consumer"]["restarts"])) }
                                td { (text(&c["consumer"]["last_error"]["message"])) }
                            }
                        }
                    }
                }
            }
            h2 { (locale.t(Text::Consumers)) }
            div.scroll {
                table #consumers {
                    thead { tr { th { (locale.t(Text::Group)) } th { (locale.t(Text::State)) } th { (locale.t(Text::LastCommit)) } th { (locale.t(Text::Restarts)) } th { (locale.t(Text::LastError)) } } }
                    tbody { (consumer_rows(locale, &consumers)) }
                }
            }
        }
        @if let Some(dead) = &dead {
            div.card {
                h2 { (locale.t(Text::DeadLetters)) }
                @if dead.is_empty() {
                    p #no-dead-letters { (locale.t(Text::NoEntries)) }
                } @else {
                    div.scroll {
                        table #dead-letters {
                            thead { tr { th { (locale.t(Text::When)) } th { (locale.t(Text::Source)) } th { (locale.t(Text::Reason)) } th { (locale.t(Text::Attempts)) } th {} } }
                            tbody {
                                @for d in dead {
                                    tr.dead-letter data-id=(text(&d["id"])) {
                                        td { (text(&d["created_at"])) }
                                        td { (text(&d["source"])) }
                                        td { (text(&d["reason"])) }
                                        td { (text(&d["attempts"])) }
                                        td {
                                            @if may_retry {
                                                (post_button("retry", &format!("/console/dead-letters/{}/retry", text(&d["id"])), &session.csrf, locale.t(Text::Retry)))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(
            locale,
            locale.t(Text::Operations),
            Some(Nav {
                name: &account.name,
                csrf: &session.csrf,
                account: &account,
            }),
            markup,
        ),
    )
}

/// What the screen says after a re-drive.
#[derive(Debug, Deserialize, Default)]
pub struct NoticeQuery {
    retried: Option<String>,
}

/// A form with its CSRF token only.
#[derive(Deserialize)]
pub struct RetryForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/dead-letters/{id}/retry`: re-drives one dead letter through the API's
/// handler (audited, intent first), then shows the screen again.
pub async fn retry(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<RetryForm>,
) -> Response {
    let (_, account) = match signed_in_form(&state, &config, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (status, body) = json_of(
        crate::api::retry_dead_letter(
            State(state.clone()),
            Caller(account.principal()),
            Path(id.clone()),
        )
        .await,
    )
    .await;
    if !status.is_success() {
        return (status, text(&body["error"])).into_response();
    }
    let outcome = if body["resolved"] == true {
        "ok"
    } else {
        "failed"
    };
    Redirect::to(&format!("/console/operations?retried={outcome}")).into_response()
}
