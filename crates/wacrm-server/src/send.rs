//! The send API: `POST /v1/messages`, `POST /v1/messages/{wamid}/read`, `GET /v1/requests/{id}`.
//!
//! A request is checked before it is accepted — the key's scope and business numbers, WhatsApp's
//! content rules, the 24-hour window, the contact's marketing opt-out — and refused with a reason
//! (403 / 422) when it breaks one. An accepted request is written to the store, published as a
//! command on the commands topic and answered `202` with its request id; the sender does the
//! rest. An `Idempotency-Key` makes retries safe: the same key (per API key) with the same request
//! answers the first request again and never sends twice; with a different request it is refused
//! (422), as the IETF Idempotency-Key draft says.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wacrm_bus::cloudevents::event_record;
use wacrm_core::contact::{ContactIdentity, IdentityKey};
use wacrm_core::conversation::is_phone_number_id;
use wacrm_core::message::Sender;
use wacrm_core::outbound::{check_send, OutboundContent, ReadRequest, Refusal, SendRequest};
use wacrm_core::{BusinessNumber, Event, E164};
use wacrm_store::keys::scope;
use wacrm_store::outbound::{self as requests, Created, NewRequest, OutboundRow, RequestView};
use wacrm_store::queries::{self, MessageDetail};

use crate::auth::{error, Caller};
use crate::AppState;

/// The header that makes a request safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `POST /v1/messages`: what to send, from which number, to whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SendMessage {
    /// The business number to send from (its phone number id).
    pub from: String,
    /// The recipient's phone number with country code, in any punctuation (or their `wa_id`).
    /// Give this or `contact_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The recipient as a wacrm contact id. Give this or `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    /// The wamid of a message of the conversation this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// What to send: `type` is `text`, `template`, `image`, `audio`, `video`, `document`,
    /// `sticker`, `interactive` or `reaction`, with that type's fields.
    #[serde(flatten)]
    pub content: OutboundContent,
}

/// An answer of the send API: the request and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RequestDetail {
    /// The request.
    #[serde(flatten)]
    pub request: RequestView,
    /// The message it produced, with its delivery status, once sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageDetail>,
}

/// A refusal: `{"error": "...", "reason": "window_closed" | "opted_out" | "invalid" | …}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Refused {
    /// What went wrong, in words.
    pub error: String,
    /// A stable code.
    pub reason: String,
}

fn refused(status: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(Refused {
            error: message.into(),
            reason: reason.to_owned(),
        }),
    )
        .into_response()
}

fn refusal(r: &Refusal) -> Response {
    refused(StatusCode::UNPROCESSABLE_ENTITY, r.code(), r.to_string())
}

fn store_error(e: wacrm_store::StoreError) -> Response {
    tracing::error!(error = %e, "store failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
}

/// What the audit entry of a send call names.
#[derive(Default)]
struct Subject {
    contact_id: Option<String>,
    request_id: Option<String>,
}

/// `POST /v1/messages`: validates, queues and answers 202 with the request id.
#[utoipa::path(post, path = "/v1/messages", tag = "messages", security(("api_key" = [])),
    request_body(content = String, description = "A SendMessage (see components.schemas.SendMessage)", content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key never sends twice")),
    responses(
        (status = 202, description = "Accepted and queued", body = RequestDetail),
        (status = 400, description = "Not JSON, or not a SendMessage", body = crate::auth::ApiError),
        (status = 401), (status = 403, description = "Missing scope or business number not allowed for this key"),
        (status = 404, description = "No such contact"),
        (status = 422, description = "Refused: window closed, opted out, invalid content, or Idempotency-Key reused with another request", body = Refused),
        (status = 503, description = "Sending not configured, or the bus or the store is unavailable")))]
pub async fn send_message(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut subject = Subject::default();
    let response = send_inner(&state, &caller, &headers, &body, &mut subject).await;
    crate::api::audited(
        &state,
        &caller,
        "messages.send",
        subject.contact_id.as_deref(),
        subject.request_id.as_deref(),
        response,
    )
    .await
}

/// The request's `Idempotency-Key`; `Err` is the 400 to answer.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Box<Response>> {
    match headers.get(IDEMPOTENCY_KEY) {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(k) if !k.trim().is_empty() && k.len() <= 255 => Ok(Some(k.trim().to_owned())),
            _ => Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            ))),
        },
    }
}

fn request_hash(kind: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0x1f]);
    h.update(body);
    hex::encode(h.finalize())
}

/// The longest `to` read as a bare `wa_id` when it is not a phone number.
const MAX_WA_ID_LEN: usize = 32;

/// Whether a number is this business's: configured, or one WhatsApp's webhooks reached.
async fn is_business_number(
    state: &AppState,
    phone_number_id: &str,
) -> Result<bool, wacrm_store::StoreError> {
    if state.whatsapp.numbers.contains_key(phone_number_id) {
        return Ok(true);
    }
    requests::is_known_number(&state.db, phone_number_id).await
}

/// The employee behind a request, as the sent message will name them.
fn employee(caller: &Caller) -> Sender {
    Sender {
        key_id: caller.0.key_id.clone(),
        name: caller.0.name.clone(),
    }
}

/// Builds the identity a command carries from the keys the store knows, oldest first: the last
/// of each kind wins, so a contact who changed number is written to at the new one.
fn identity_of(keys: &[IdentityKey]) -> ContactIdentity {
    let mut identity = ContactIdentity::default();
    for key in keys {
        match key {
            IdentityKey::Phone(p) => identity.phone = Some(p.clone()),
            IdentityKey::Bsuid(b) => identity.bsuid = Some(b.clone()),
            IdentityKey::WaId(w) => identity.wa_id = Some(w.clone()),
        }
    }
    if identity.wa_id.is_none() {
        identity.wa_id = identity.phone.as_ref().map(|p| p.digits().to_owned());
    }
    identity
}

async fn send_inner(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
    subject: &mut Subject,
) -> Response {
    if let Err(r) = caller.require(scope::MESSAGES_SEND) {
        return r.into_response();
    }
    let request: SendMessage = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a SendMessage: {e}")),
    };
    // The number becomes a Graph URL segment and a store key: digits only, before anything.
    if !is_phone_number_id(&request.from) {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "`from` must be a business number's phone number id (digits only)",
        );
    }
    if !caller.0.may_use_number(&request.from) {
        return error(
            StatusCode::FORBIDDEN,
            format!("this key may not use business number {}", request.from),
        );
    }
    if !state.whatsapp.can_send() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "sending is not configured (WACRM_WHATSAPP__ACCESS_TOKEN)",
        );
    }
    match is_business_number(state, &request.from).await {
        Ok(true) => {}
        Ok(false) => {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_number",
                format!(
                    "{} is not one of this business's numbers: configure it under \
                     [whatsapp.numbers.{}], or wait until WhatsApp has sent a webhook for it",
                    request.from, request.from
                ),
            )
        }
        Err(e) => return store_error(e),
    }
    let idempotency = match idempotency_key(headers) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let hash = request_hash("send", body);
    if let Some(key) = &idempotency {
        match requests::find_by_idempotency_key(&state.db, &caller.0.key_id, key).await {
            Ok(Some(row)) => return replay(state, row, &hash, subject).await,
            Ok(None) => {}
            Err(e) => return store_error(e),
        }
    }
    if let Err(r) = request.content.validate() {
        return refusal(&r);
    }
    // The recipient: by contact id, or by phone / wa_id.
    let recipient = match (&request.contact_id, &request.to) {
        (Some(id), _) => match queries::get_contact(&state.db, id).await {
            Ok(Some(c)) => requests::recipient_by_contact(&state.db, &request.from, &c.id).await,
            Ok(None) => return error(StatusCode::NOT_FOUND, "no such contact"),
            Err(e) => return store_error(e),
        },
        (None, Some(to)) => {
            let key = match E164::parse(to) {
                Ok(phone) => IdentityKey::Phone(phone),
                Err(_)
                    if to.chars().all(|c| c.is_ascii_digit())
                        && !to.is_empty()
                        && to.len() <= MAX_WA_ID_LEN =>
                {
                    IdentityKey::WaId(to.clone())
                }
                Err(e) => {
                    return refused(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid",
                        format!("`to` is not a phone number: {e}"),
                    )
                }
            };
            requests::recipient(&state.db, &request.from, std::slice::from_ref(&key))
                .await
                .map(|mut r| {
                    if r.keys.is_empty() {
                        r.keys.push(key);
                    }
                    r
                })
        }
        (None, None) => {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "give `to` or `contact_id`",
            )
        }
    };
    let recipient = match recipient {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    subject.contact_id = recipient.contact_id.clone();
    let contact = identity_of(&recipient.keys);
    let Some(to) = contact.wa_id.clone() else {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "no phone number is known for this contact",
        );
    };
    let category = match &request.content {
        OutboundContent::Template { name, .. } => state.whatsapp.template_category(name),
        _ => None,
    };
    if let Err(r) = check_send(&request.content, category, &recipient.context, Utc::now()) {
        return refusal(&r);
    }
    // Consent records: an opt-out in force, or no opt-in where one is required.
    if let Err(r) = crate::privacy::check_marketing_consent(
        state,
        &request.from,
        recipient.contact_id.as_deref(),
        &request.content,
        category,
    )
    .await
    {
        return r;
    }
    let command = SendRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        business: BusinessNumber::new(request.from.clone()),
        to,
        contact,
        content: request.content.clone(),
        category,
        reply_to: request.reply_to.clone(),
        sent_by: employee(caller),
        requested_at: Utc::now(),
    };
    let new = NewRequest {
        request_id: command.request_id.clone(),
        key_id: caller.0.key_id.clone(),
        idempotency_key: idempotency,
        request_hash: hash.clone(),
        kind: "send",
        phone_number_id: request.from.clone(),
        contact_id: recipient.contact_id.clone(),
        command: serde_json::to_value(&command).unwrap_or_default(),
    };
    accept(
        state,
        caller,
        new,
        Event::send_requested(command),
        &hash,
        subject,
    )
    .await
}

/// Writes the request, publishes its command and answers 202 (or replays a concurrent twin).
///
/// Audit before action: the intent (`requested`, naming the request) is in the audit log before
/// the request exists; when it cannot be written nothing is done (503). The outcome follows as
/// the call's own entry.
async fn accept(
    state: &AppState,
    caller: &Caller,
    new: NewRequest,
    event: Option<Event>,
    hash: &str,
    subject: &mut Subject,
) -> Response {
    let Some(event) = event else {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "the recipient has no identity",
        );
    };
    let action = match new.kind {
        "read" => "messages.mark_read",
        _ => "messages.send",
    };
    if let Err(unavailable) = caller
        .audit(
            state,
            action,
            new.contact_id.as_deref(),
            Some(&new.request_id),
            "requested",
        )
        .await
    {
        return unavailable;
    }
    let row = match requests::create(&state.db, new).await {
        Ok(Created::New(row)) => row,
        Ok(Created::Existing(row)) => return replay(state, row, hash, subject).await,
        Err(e) => return store_error(e),
    };
    subject.request_id = Some(row.request_id.clone());
    if let Err(r) = publish(state, &event).await {
        return *r;
    }
    accepted(state, row, false).await
}

/// Publishes a command; `Err` is the response to answer.
async fn publish(state: &AppState, event: &Event) -> Result<(), Box<Response>> {
    let record = event_record(&state.topics, &state.source, event).map_err(|e| {
        tracing::error!(error = %e, "command cannot be encoded");
        Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "command cannot be encoded",
        ))
    })?;
    match tokio::time::timeout(state.publish_timeout, state.bus.publish(vec![record])).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "command not published");
            Err(Box::new(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "event bus unavailable; retry with the same Idempotency-Key",
            )))
        }
        Err(_) => Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "event bus did not confirm in time; retry with the same Idempotency-Key",
        ))),
    }
}

/// Answers a request made again with the same Idempotency-Key: the same request when the body
/// is the same (its command published again if it may not have been), 422 otherwise.
async fn replay(state: &AppState, row: OutboundRow, hash: &str, subject: &mut Subject) -> Response {
    subject.request_id = Some(row.request_id.clone());
    subject.contact_id = row.contact_id.clone();
    if row.request_hash != hash {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        );
    }
    if row.state == requests::state::ACCEPTED {
        // The first attempt may have failed to publish; the sender sends a request once.
        let event = match row.kind.as_str() {
            "read" => serde_json::from_value::<ReadRequest>(row.command.clone())
                .ok()
                .and_then(Event::read_requested),
            _ => serde_json::from_value::<SendRequest>(row.command.clone())
                .ok()
                .and_then(Event::send_requested),
        };
        if let Some(event) = event {
            if let Err(r) = publish(state, &event).await {
                return *r;
            }
        }
    }
    accepted(state, row, true).await
}

async fn accepted(state: &AppState, row: OutboundRow, replayed: bool) -> Response {
    let location = format!("/v1/requests/{}", row.request_id);
    let detail = match detail(state, row).await {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let mut response = (StatusCode::ACCEPTED, Json(detail)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("location", v);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

async fn detail(state: &AppState, row: OutboundRow) -> Result<RequestDetail, Box<Response>> {
    let message = match (&row.wamid, row.kind.as_str()) {
        (Some(wamid), "send") => queries::get_message(&state.db, wamid)
            .await
            .map_err(|e| Box::new(store_error(e)))?,
        _ => None,
    };
    Ok(RequestDetail {
        request: row.into(),
        message,
    })
}

/// `POST /v1/messages/{wamid}/read`: marks an inbound message as read (blue ticks).
#[utoipa::path(post, path = "/v1/messages/{wamid}/read", tag = "messages", security(("api_key" = [])),
    params(("wamid" = String, Path, description = "The inbound message"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 202, body = RequestDetail), (status = 401), (status = 403), (status = 404),
        (status = 422, body = Refused), (status = 503)))]
pub async fn mark_read(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(wamid): Path<String>,
) -> Response {
    let mut subject = Subject::default();
    let response = read_inner(&state, &caller, &headers, &wamid, &mut subject).await;
    crate::api::audited(
        &state,
        &caller,
        "messages.mark_read",
        subject.contact_id.as_deref(),
        Some(subject.request_id.as_deref().unwrap_or(&wamid)),
        response,
    )
    .await
}

async fn read_inner(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    wamid: &str,
    subject: &mut Subject,
) -> Response {
    if let Err(r) = caller.require(scope::MESSAGES_SEND) {
        return r.into_response();
    }
    let message = match queries::get_message(&state.db, wamid).await {
        Ok(Some(m)) => m.message,
        Ok(None) => return error(StatusCode::NOT_FOUND, "no such message"),
        Err(e) => return store_error(e),
    };
    subject.contact_id = Some(message.contact_id.clone());
    if !caller.0.may_use_number(&message.phone_number_id) {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "this key may not use business number {}",
                message.phone_number_id
            ),
        );
    }
    if message.direction != "inbound" {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "only inbound messages can be marked as read",
        );
    }
    if !state.whatsapp.can_send() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "sending is not configured (WACRM_WHATSAPP__ACCESS_TOKEN)",
        );
    }
    let idempotency = match idempotency_key(headers) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let hash = request_hash("read", wamid.as_bytes());
    if let Some(key) = &idempotency {
        match requests::find_by_idempotency_key(&state.db, &caller.0.key_id, key).await {
            Ok(Some(row)) => return replay(state, row, &hash, subject).await,
            Ok(None) => {}
            Err(e) => return store_error(e),
        }
    }
    let recipient = match requests::recipient_by_contact(
        &state.db,
        &message.phone_number_id,
        &message.contact_id,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let command = ReadRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        business: BusinessNumber::new(message.phone_number_id.clone()),
        wamid: wamid.to_owned(),
        contact: identity_of(&recipient.keys),
        sent_by: employee(caller),
        requested_at: Utc::now(),
    };
    let new = NewRequest {
        request_id: command.request_id.clone(),
        key_id: caller.0.key_id.clone(),
        idempotency_key: idempotency,
        request_hash: hash.clone(),
        kind: "read",
        phone_number_id: message.phone_number_id.clone(),
        contact_id: Some(message.contact_id.clone()),
        command: serde_json::to_value(&command).unwrap_or_default(),
    };
    accept(
        state,
        caller,
        new,
        Event::read_requested(command),
        &hash,
        subject,
    )
    .await
}

/// `GET /v1/requests/{id}`: a send or read request, with the message it produced.
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "messages", security(("api_key" = [])),
    params(("id" = String, Path, description = "The request id answered by POST /v1/messages")),
    responses((status = 200, body = RequestDetail), (status = 401), (status = 403), (status = 404)))]
pub async fn get_request(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let mut contact = None;
    let response = async {
        if let Err(r) = caller.require(scope::CONVERSATIONS_READ) {
            return r.into_response();
        }
        let row = match requests::get(&state.db, &id).await {
            Ok(Some(row)) => row,
            Ok(None) => return error(StatusCode::NOT_FOUND, "no such request"),
            Err(e) => return store_error(e),
        };
        contact = row.contact_id.clone();
        if !caller.0.may_use_number(&row.phone_number_id) {
            return error(
                StatusCode::FORBIDDEN,
                "this key may not read that business number",
            );
        }
        match detail(&state, row).await {
            Ok(d) => Json(d).into_response(),
            Err(r) => *r,
        }
    }
    .await;
    crate::api::audited(
        &state,
        &caller,
        "requests.read",
        contact.as_deref(),
        Some(&id),
        response,
    )
    .await
}
