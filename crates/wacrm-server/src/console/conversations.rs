//! The conversations screen: find a contact, read their history, reply within the rules.
//!
//! Each screen calls the same `/v1` handler an API key would, with the account as the caller:
//! the scopes, the business-number limits, the send rules and the audit entries are the API's,
//! not a second copy of them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use serde_json::{json, Value};
use wacrm_store::accounts::Account;
use wacrm_store::console_sessions::{random_token, Session};

use super::page::{page, respond, Locale, Nav, Text};
use super::session::{csrf_refused, same_token, standing, Standing};
use crate::api::{ContactFilter, HistoryPage};
use crate::auth::Caller;
use crate::config::ConsoleConfig;
use crate::AppState;

/// Most messages a history page shows.
const HISTORY_PAGE: u64 = 50;

/// The signed-in account, or the redirect to where it must go first.
pub(super) async fn signed_in(
    state: &Arc<AppState>,
    config: &ConsoleConfig,
    headers: &HeaderMap,
) -> Result<(Session, Box<Account>), Response> {
    match standing(state, config, headers).await {
        Standing::SignedIn(s, a) => Ok((s, a)),
        Standing::SecondFactorOwed(..) => Err(Redirect::to("/console/mfa").into_response()),
        Standing::Anonymous => Err(Redirect::to("/console/login").into_response()),
    }
}

/// The signed-in account of a form's request, once the form's CSRF token matched the session's;
/// otherwise the answer (a redirect to sign in, or 403).
pub(super) async fn signed_in_form(
    state: &Arc<AppState>,
    config: &ConsoleConfig,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<(Session, Box<Account>), Response> {
    let (session, account) = signed_in(state, config, headers).await?;
    if !same_token(csrf, &session.csrf) {
        return Err(csrf_refused());
    }
    Ok((session, account))
}

/// A handler's JSON answer: its status and body.
pub(super) async fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// The search form.
#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// `GET /console/conversations?q=`: the search.
pub async fn search(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Query(query): Query<SearchQuery>,
) -> Response {
    let (session, account) = match signed_in(&state, &config, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let locale = Locale::parse(&account.locale);
    let q = query.q.trim().chars().take(200).collect::<String>();
    let mut results: Option<Vec<Value>> = None;
    if !q.is_empty() {
        let filter = search_filter(&q);
        let caller = Caller(account.principal());
        let (status, body) =
            json_of(crate::api::list_contacts(State(state.clone()), caller, Query(filter)).await)
                .await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return (status, "unavailable").into_response();
        }
        results = Some(body.as_array().cloned().unwrap_or_default());
    }
    let body = html! {
        div.card {
            h1 { (locale.t(Text::Conversations)) }
            form #search method="get" action="/console/conversations" {
                label for="q" { (locale.t(Text::SearchHelp)) }
                input #q type="search" name="q" value=(q) required;
                button type="submit" { (locale.t(Text::Search)) }
            }
        }
        @if let Some(results) = &results {
            div.card {
                @if results.is_empty() {
                    p #no-results { (locale.t(Text::NoContacts)) }
                } @else {
                    ul.contacts {
                        @for c in results {
                            li {
                                a.contact href={ "/console/contacts/" (c["id"].as_str().unwrap_or_default()) } {
                                    (contact_label(c))
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
            locale.t(Text::Conversations),
            Some(Nav {
                name: &account.name,
                csrf: &session.csrf,
                account: &account,
            }),
            body,
        ),
    )
}

/// What a search box's text is: a phone (digits and punctuation), a BSUID (`BR.…`: a country
/// code, a dot), or else part of a name.
fn search_filter(q: &str) -> ContactFilter {
    let none = ContactFilter {
        wa_id: None,
        phone: None,
        bsuid: None,
        name: None,
    };
    let phone_like = q.chars().any(|c| c.is_ascii_digit())
        && q.chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let bsuid_like = q.len() > 3
        && q.as_bytes()[..2].iter().all(u8::is_ascii_uppercase)
        && q.as_bytes()[2] == b'.';
    if phone_like {
        ContactFilter {
            phone: Some(q.to_owned()),
            ..none
        }
    } else if bsuid_like {
        ContactFilter {
            bsuid: Some(q.to_owned()),
            ..none
        }
    } else {
        ContactFilter {
            name: Some(q.to_owned()),
            ..none
        }
    }
}

/// A contact's name and its phone, as a person reads them.
fn contact_label(contact: &Value) -> String {
    let name = contact["display_name"].as_str().unwrap_or_default();
    let phone = contact["identities"]
        .as_array()
        .and_then(|ids| ids.iter().find(|i| i["kind"] == "phone"))
        .and_then(|i| i["value"].as_str())
        .unwrap_or_default();
    match (name.is_empty(), phone.is_empty()) {
        (false, false) => format!("{name} · {phone}"),
        (false, true) => name.to_owned(),
        _ => phone.to_owned(),
    }
}

/// What a message shows: its text, or its type and caption.
fn message_text(m: &Value) -> String {
    let content = &m["content"];
    if let Some(body) = content["body"]
        .as_str()
        .or_else(|| content["text"]["body"].as_str())
    {
        return body.to_owned();
    }
    let kind = m["kind"].as_str().unwrap_or("message");
    match content["caption"].as_str() {
        Some(caption) => format!("[{kind}] {caption}"),
        None => format!("[{kind}]"),
    }
}

/// The outcome of a send, to show above the history.
enum Outcome {
    Sent,
    Refused(String),
}

async fn contact_screen(
    state: &Arc<AppState>,
    session: &Session,
    account: &Account,
    id: &str,
    outcome: Option<Outcome>,
) -> Response {
    let locale = Locale::parse(&account.locale);
    let caller = || Caller(account.principal());
    let (status, contact) =
        json_of(crate::api::get_contact(State(state.clone()), caller(), Path(id.to_owned())).await)
            .await;
    if status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN {
        let text = if status == StatusCode::NOT_FOUND {
            Text::NotFound
        } else {
            Text::Forbidden
        };
        return respond(
            status,
            page(
                locale,
                locale.t(text),
                Some(Nav {
                    name: &account.name,
                    csrf: &session.csrf,
                    account,
                }),
                html! {
                    div.card { p #error .error { (locale.t(text)) } }
                },
            ),
        );
    }
    if !status.is_success() {
        return (status, "unavailable").into_response();
    }
    let (status, history) = json_of(
        crate::api::contact_messages(
            State(state.clone()),
            caller(),
            Path(id.to_owned()),
            Query(HistoryPage {
                limit: Some(HISTORY_PAGE),
                before: None,
            }),
        )
        .await,
    )
    .await;
    if !status.is_success() {
        return (status, "unavailable").into_response();
    }
    let messages: Vec<Value> = history["messages"]
        .as_array()
        .or_else(|| history.as_array())
        .cloned()
        .unwrap_or_default();
    // Replies go from the business number of the latest message.
    let from = messages
        .first()
        .and_then(|m| m["phone_number_id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let label = contact_label(&contact);
    let body = html! {
        div.card {
            h1 #contact-name { (label) }
            @match &outcome {
                Some(Outcome::Sent) => p #notice .notice { (locale.t(Text::Sent)) },
                Some(Outcome::Refused(reason)) => p #refusal .refusal { (locale.t(Text::Refused)) " " (reason) },
                None => {},
            }
            @if account.principal().has_scope(wacrm_store::keys::scope::MESSAGES_SEND) && !from.is_empty() {
                form #send method="post" action={ "/console/contacts/" (id) "/send" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="from" value=(from);
                    input type="hidden" name="nonce" value=(random_token());
                    label for="body" { (locale.t(Text::Reply)) }
                    textarea #body name="body" required maxlength="4096" {}
                    button type="submit" { (locale.t(Text::Send)) }
                }
            }
        }
        div.card {
            h2 { (locale.t(Text::History)) }
            @if messages.is_empty() {
                p { (locale.t(Text::NoMessages)) }
            } @else {
                ul #history {
                    @for m in &messages {
                        @let outbound = m["direction"] == "outbound";
                        li.message.outbound[outbound].inbound[!outbound] {
                            div { (message_text(m)) }
                            div.meta {
                                (m["timestamp"].as_str().unwrap_or_default())
                                @if let Some(status) = m["status"].as_str() { " · " (status) }
                                @if let Some(who) = m["sent_by"]["name"].as_str() {
                                    " · " (locale.t(Text::SentBy)) " " (who)
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let status = match outcome {
        Some(Outcome::Refused(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    respond(
        status,
        page(
            locale,
            &label,
            Some(Nav {
                name: &account.name,
                csrf: &session.csrf,
                account,
            }),
            body,
        ),
    )
}

/// `GET /console/contacts/{id}`: a contact's history, newest first, and the reply form.
pub async fn contact(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (session, account) = match signed_in(&state, &config, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    contact_screen(&state, &session, &account, &id, None).await
}

/// The reply form.
#[derive(Deserialize)]
pub struct SendForm {
    #[serde(default)]
    csrf: String,
    from: String,
    nonce: String,
    body: String,
}

/// A refusal's words: the console's own for the rules people meet every day, the API's
/// otherwise.
fn refusal_words(locale: Locale, body: &Value) -> String {
    let reason = body["reason"].as_str().unwrap_or_default();
    let words = match (locale, reason) {
        (Locale::PtBr, "window_closed") => {
            Some("a janela de 24 horas está fechada: só um modelo aprovado pode ser enviado agora.")
        }
        (Locale::PtBr, "opted_out") => Some("o contato pediu para não receber mensagens."),
        _ => None,
    };
    words
        .map(str::to_owned)
        .or_else(|| body["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| reason.to_owned())
}

/// `POST /console/contacts/{id}/send`: sends a text through the send API. The form's nonce is
/// the request's `Idempotency-Key`, so a form sent twice (a double click, a reload) sends once.
pub async fn send(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<SendForm>,
) -> Response {
    let (session, account) = match signed_in_form(&state, &config, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let locale = Locale::parse(&account.locale);
    let request = json!({"from": form.from, "contact_id": id, "type": "text", "body": form.body});
    let mut api_headers = HeaderMap::new();
    let nonce: String = form
        .nonce
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(64)
        .collect();
    if let Ok(value) = HeaderValue::from_str(&format!("console-{nonce}")) {
        api_headers.insert("idempotency-key", value);
    }
    let (status, body) = json_of(
        crate::send::send_message(
            State(state.clone()),
            Caller(account.principal()),
            api_headers,
            Bytes::from(request.to_string()),
        )
        .await,
    )
    .await;
    let outcome = if status.is_success() {
        Outcome::Sent
    } else {
        Outcome::Refused(refusal_words(locale, &body))
    };
    contact_screen(&state, &session, &account, &id, Some(outcome)).await
}
