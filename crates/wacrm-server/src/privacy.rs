//! The data subject's side of the API: consent records and the export.
//!
//! - `POST /v1/contacts/{id}/consent` (`consent:write`): records an opt-in or opt-out for a
//!   purpose — audited before it is written, refused (503) when it cannot be.
//! - `GET /v1/contacts/{id}/consent` (`conversations:read`): what is in force and the history.
//! - `GET /v1/contacts/{id}/export` (`contacts:export`): everything wacrm holds on the contact,
//!   as one JSON document streamed a page at a time (`wacrm_store::export`).
//!
//! Every route finds the contact as the read API does: a key limited to business numbers sees
//! only contacts with a conversation on one of them (404 for the rest, whose existence is not
//! revealed), and reads and records only the part of its numbers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use wacrm_core::consent::{self as rule, Channel, MarketingPolicy, Purpose};
use wacrm_core::conversation::is_phone_number_id;
use wacrm_core::outbound::{OutboundContent, TemplateCategory};
use wacrm_store::consent::{self as records, ConsentSummary, ConsentView, NewConsent};
use wacrm_store::export::{self, ExportError, Sink};
use wacrm_store::keys::scope;
use wacrm_store::queries::ContactView;

use crate::api::{audited, audited_with, visible_contact, AuditFacts};
use crate::auth::{error, Caller};
use crate::send::Refused;
use crate::AppState;

/// The longest `source` kept (a form's URL, a campaign's name).
const MAX_SOURCE_CHARS: usize = 1000;
/// How far ahead of this server's clock `at` may be (another machine's clock).
const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);
/// Chunks of an export in flight between the store and the client (64 KiB each).
const EXPORT_CHUNKS_IN_FLIGHT: usize = 4;

fn store_error(e: wacrm_store::StoreError) -> Response {
    tracing::error!(error = %e, "store failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
}

fn invalid(message: impl Into<String>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(Refused {
            error: message.into(),
            reason: "invalid".into(),
        }),
    )
        .into_response()
}

/// A contact with the consent in force (`GET /v1/contacts/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ContactDetail {
    /// The contact.
    #[serde(flatten)]
    pub contact: ContactView,
    /// The consent decision in force per purpose and business number (those the key may see);
    /// the history is at `GET /v1/contacts/{id}/consent`.
    pub consent: Vec<ConsentView>,
}

/// The answer of `GET /v1/contacts/{id}` for a contact the caller may see.
pub(crate) async fn contact_detail(
    state: &AppState,
    caller: &Caller,
    contact: ContactView,
) -> Response {
    let numbers = caller.0.business_numbers.as_deref();
    match records::summary(&state.db, &contact.id, numbers).await {
        Ok(summary) => Json(ContactDetail {
            contact,
            consent: summary.current,
        })
        .into_response(),
        Err(e) => store_error(e),
    }
}

/// `POST /v1/contacts/{id}/consent`: an opt-in (`granted: true`) or opt-out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
pub struct RecordConsent {
    /// `marketing`, `service`, `surveys`, `data_sharing`, or `custom:<slug>` for a purpose of
    /// the business's own.
    pub purpose: String,
    /// `true`: the contact agreed; `false`: they refused or withdrew.
    pub granted: bool,
    /// `whatsapp`, `web_form`, `in_person`, `phone`, `email`, `sms`, `paper` or `other`.
    pub channel: String,
    /// Where: the form's URL, the campaign, the shop (1 to 1000 characters).
    pub source: String,
    /// When the contact decided (RFC 3339); default now. Not in the future.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// Limits the decision to one business number; absent: every number of the business. A
    /// key limited to business numbers must give one of them.
    #[serde(default)]
    pub phone_number_id: Option<String>,
}

/// The answer of `POST /v1/contacts/{id}/consent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConsentRecorded {
    /// The decision as recorded.
    pub record: ConsentView,
    /// What is in force now, per purpose and business number.
    pub current: Vec<ConsentView>,
}

/// A validated request: the decision's purpose and channel as written, and the time.
struct Checked {
    purpose: String,
    channel: String,
    source: String,
    at: DateTime<Utc>,
}

/// Validates a request; `Err` says what is wrong, in words.
fn check(body: &RecordConsent, now: DateTime<Utc>) -> Result<Checked, String> {
    let purpose = Purpose::parse(&body.purpose)?;
    let channel = Channel::parse(&body.channel)?;
    let source = body.source.trim();
    let chars = source.chars().count();
    if chars == 0 || chars > MAX_SOURCE_CHARS {
        return Err(format!(
            "source must be 1 to {MAX_SOURCE_CHARS} characters (it is {chars}): the form's URL, \
             the campaign, the place"
        ));
    }
    let at = body.at.unwrap_or(now);
    if at > now + CLOCK_SKEW {
        return Err(format!("at ({}) is in the future", at.to_rfc3339()));
    }
    Ok(Checked {
        purpose: purpose.as_string(),
        channel: channel.as_str().to_owned(),
        source: source.to_owned(),
        at,
    })
}

/// `POST /v1/contacts/{id}/consent`: records an opt-in or opt-out. The intent is audited
/// before anything is written (503 and nothing recorded when it cannot be); the outcome
/// follows as a second entry.
#[utoipa::path(post, path = "/v1/contacts/{id}/consent", tag = "contacts", security(("api_key" = [])),
    params(("id" = String, Path, description = "Contact id")),
    request_body(content = RecordConsent, content_type = "application/json"),
    responses(
        (status = 201, description = "Recorded", body = ConsentRecorded),
        (status = 400, description = "Not JSON, or not a RecordConsent", body = crate::auth::ApiError),
        (status = 401),
        (status = 403, description = "Missing consent:write, or a business number the key may not use"),
        (status = 404, description = "No such contact (or not one of the key's numbers)"),
        (status = 422, description = "Unknown purpose or channel, empty source, a time in the future, an unknown number", body = Refused),
        (status = 503, description = "The audit log or the store is unavailable; nothing was recorded")))]
pub async fn record_consent(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    const ACTION: &str = "consent.record";
    let mut number = None;
    let mut detail = None;
    // `Err`: the intent could not be audited — answered as is (503), nothing done.
    let response: Result<Response, Response> = async {
        if let Err(r) = caller.require(scope::CONSENT_WRITE) {
            return Ok(r.into_response());
        }
        let request: RecordConsent = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    format!("not a RecordConsent: {e}"),
                ))
            }
        };
        let checked = match check(&request, Utc::now()) {
            Ok(c) => c,
            Err(why) => return Ok(invalid(why)),
        };
        match &request.phone_number_id {
            Some(n) if !is_phone_number_id(n) => {
                return Ok(invalid(
                    "phone_number_id must be a business number's phone number id (digits only)",
                ))
            }
            Some(n) if !caller.0.may_use_number(n) => {
                return Ok(error(
                    StatusCode::FORBIDDEN,
                    format!("this key may not use business number {n}"),
                ))
            }
            Some(n) => match is_business_number(&state, n).await {
                Ok(true) => {}
                Ok(false) => {
                    return Ok((
                        StatusCode::UNPROCESSABLE_ENTITY,
                        Json(Refused {
                            error: format!("{n} is not one of this business's numbers"),
                            reason: "unknown_number".into(),
                        }),
                    )
                        .into_response())
                }
                Err(e) => return Ok(store_error(e)),
            },
            None if caller.0.business_numbers.is_some() => {
                return Ok(error(
                    StatusCode::FORBIDDEN,
                    "this key is limited to business numbers: give the phone_number_id the \
                     decision is limited to",
                ))
            }
            None => {}
        }
        number.clone_from(&request.phone_number_id);
        let contact = match visible_contact(&state, &caller, &id).await {
            Ok(c) => c,
            Err(r) => return Ok(r),
        };
        // What was decided, never where (a source may be a URL with personal data in it).
        detail = Some(serde_json::json!({
            "purpose": checked.purpose,
            "granted": request.granted,
            "channel": checked.channel,
        }));
        let intent = AuditFacts {
            contact_id: Some(&id),
            target: Some(&checked.purpose),
            phone_number_id: number.as_deref(),
            detail: detail.clone(),
        };
        caller.audit_intent(&state, ACTION, &intent).await?;
        let new = NewConsent {
            contact_id: contact.id.clone(),
            purpose: checked.purpose.clone(),
            granted: request.granted,
            channel: checked.channel,
            source: checked.source,
            recorded_by: caller.0.name.clone(),
            key_id: Some(caller.0.key_id.clone()),
            phone_number_id: request.phone_number_id.clone(),
            at: checked.at,
        };
        let record = match records::record(&state.db, new).await {
            Ok(r) => r,
            Err(e) => return Ok(store_error(e)),
        };
        let numbers = caller.0.business_numbers.as_deref();
        Ok(
            match records::summary(&state.db, &contact.id, numbers).await {
                Ok(summary) => (
                    StatusCode::CREATED,
                    Json(ConsentRecorded {
                        record,
                        current: summary.current,
                    }),
                )
                    .into_response(),
                Err(e) => store_error(e),
            },
        )
    }
    .await;
    match response {
        Ok(response) => {
            let facts = AuditFacts {
                contact_id: Some(&id),
                target: detail.as_ref().and_then(|d| d["purpose"].as_str()),
                phone_number_id: number.as_deref(),
                detail: detail.clone(),
            };
            audited_with(&state, &caller, ACTION, &facts, response).await
        }
        Err(unavailable) => unavailable,
    }
}

/// Whether a number is this business's: configured, or one WhatsApp's webhooks reached.
async fn is_business_number(
    state: &AppState,
    phone_number_id: &str,
) -> Result<bool, wacrm_store::StoreError> {
    if state.whatsapp.numbers.contains_key(phone_number_id) {
        return Ok(true);
    }
    wacrm_store::outbound::is_known_number(&state.db, phone_number_id).await
}

/// `GET /v1/contacts/{id}/consent`: the decisions in force and the whole history (those of
/// the key's numbers and the business-wide ones, for a key limited to numbers).
#[utoipa::path(get, path = "/v1/contacts/{id}/consent", tag = "contacts", security(("api_key" = [])),
    params(("id" = String, Path, description = "Contact id")),
    responses((status = 200, body = ConsentSummary), (status = 401), (status = 403), (status = 404)))]
pub async fn contact_consent(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let response = async {
        if let Err(r) = caller.require(scope::CONVERSATIONS_READ) {
            return r.into_response();
        }
        let contact = match visible_contact(&state, &caller, &id).await {
            Ok(c) => c,
            Err(r) => return r,
        };
        let numbers = caller.0.business_numbers.as_deref();
        match records::summary(&state.db, &contact.id, numbers).await {
            Ok(summary) => Json(summary).into_response(),
            Err(e) => store_error(e),
        }
    }
    .await;
    audited(&state, &caller, "consent.read", Some(&id), None, response).await
}

/// The send API's consent check: a marketing template to a contact whose current decision for
/// `marketing` on the number is an opt-out — or, when `[whatsapp] marketing_requires_opt_in`
/// is set, who has no current opt-in — is refused (422, audited as the send's outcome).
pub(crate) async fn check_marketing_consent(
    state: &AppState,
    phone_number_id: &str,
    contact_id: Option<&str>,
    content: &OutboundContent,
    category: Option<TemplateCategory>,
) -> Result<(), Response> {
    if rule::marketing_template(content, category).is_none() {
        return Ok(());
    }
    let consent = match contact_id {
        Some(id) => {
            let marketing = Purpose::Marketing.as_string();
            records::in_force(&state.db, id, phone_number_id, &marketing)
                .await
                .map_err(store_error)?
        }
        None => None,
    };
    let policy = MarketingPolicy {
        requires_opt_in: state.whatsapp.marketing_requires_opt_in,
    };
    rule::check_marketing(content, category, consent.as_ref(), policy).map_err(|r| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(Refused {
                error: r.to_string(),
                reason: r.code().to_owned(),
            }),
        )
            .into_response()
    })
}

/// An export's chunks on their way to the client.
struct ChannelSink(mpsc::Sender<Result<Bytes, std::io::Error>>);

impl Sink for ChannelSink {
    async fn write(&mut self, chunk: Vec<u8>) -> Result<(), ExportError> {
        self.0
            .send(Ok(Bytes::from(chunk)))
            .await
            .map_err(|_| ExportError::Output("the client went away".into()))
    }
}

/// A response body fed by a channel: each chunk as it is written; an error aborts the
/// response, so a client never takes a cut-short export for a whole one.
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(hyper::body::Frame::data)))
    }
}

/// `GET /v1/contacts/{id}/export`: everything wacrm holds on the contact, as JSON (see
/// `docs/privacy.md` for the document). Audited before anything is read (503 when it cannot
/// be); the outcome (`ok`, or `error` when the export stopped midway and the response was
/// aborted) follows when the document is complete.
#[utoipa::path(get, path = "/v1/contacts/{id}/export", tag = "contacts", security(("api_key" = [])),
    params(("id" = String, Path, description = "Contact id")),
    responses(
        (status = 200, description = "The export (format `wacrm.contact_export`, version 1), streamed; `partial` is true for a key limited to business numbers, which gets those numbers' part", content_type = "application/json", body = Object),
        (status = 401), (status = 403, description = "Missing contacts:export"),
        (status = 404, description = "No such contact (or not one of the key's numbers)"),
        (status = 503, description = "The audit log or the store is unavailable; nothing was exported")))]
pub async fn export_contact(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    const ACTION: &str = "contacts.export";
    let contact = async {
        caller
            .require(scope::CONTACTS_EXPORT)
            .map_err(IntoResponse::into_response)?;
        visible_contact(&state, &caller, &id).await
    }
    .await;
    let contact = match contact {
        Ok(c) => c,
        Err(r) => return audited(&state, &caller, ACTION, Some(&id), None, r).await,
    };
    let numbers = caller.0.business_numbers.clone();
    let detail = serde_json::json!({"partial": numbers.is_some()});
    let facts = AuditFacts {
        contact_id: Some(&contact.id),
        detail: Some(detail.clone()),
        ..AuditFacts::default()
    };
    if let Err(unavailable) = caller.audit_intent(&state, ACTION, &facts).await {
        return unavailable;
    }
    let (tx, rx) = mpsc::channel(EXPORT_CHUNKS_IN_FLIGHT);
    let filename = format!("attachment; filename=\"contact-{}.json\"", contact.id);
    let task_state = state.clone();
    let task_caller = Caller(caller.0.clone());
    tokio::spawn(async move {
        let mut sink = ChannelSink(tx.clone());
        let result = export::export(&task_state.db, &contact, numbers.as_deref(), &mut sink).await;
        let outcome = match &result {
            Ok(stats) => {
                tracing::info!(
                    messages = stats.messages,
                    bytes = stats.bytes,
                    "contact exported"
                );
                "ok"
            }
            Err(e) => {
                tracing::error!(error = %e, "contact export stopped");
                let _ = tx
                    .send(Err(std::io::Error::other("the export stopped midway")))
                    .await;
                "error"
            }
        };
        let facts = AuditFacts {
            contact_id: Some(&contact.id),
            detail: Some(detail),
            ..AuditFacts::default()
        };
        if task_caller
            .audit_entry(&task_state, ACTION, &facts, outcome)
            .await
            .is_err()
        {
            tracing::error!(
                "the outcome of a contact export could not be audited (its intent was)"
            );
        }
    });
    let mut response = Response::new(Body::new(ChannelBody(rx)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&filename) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}
