//! The read API under `/v1`, health and readiness.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use wacrm_core::contact::IdentityKey;
use wacrm_core::phone::E164;
use wacrm_store::keys::scope;
use wacrm_store::queries::{self, ContactView, DeadLetterView, MessageDetail, MessageView};

use crate::auth::{error, Caller};
use crate::AppState;

/// The `/v1` routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/contacts", get(list_contacts))
        .route("/v1/contacts/{id}", get(get_contact))
        .route("/v1/contacts/{id}/messages", get(contact_messages))
        .route(
            "/v1/messages",
            axum::routing::post(crate::send::send_message),
        )
        .route("/v1/messages/{wamid}", get(get_message))
        .route(
            "/v1/messages/{wamid}/read",
            axum::routing::post(crate::send::mark_read),
        )
        .route("/v1/requests/{id}", get(crate::send::get_request))
        .route("/v1/dead-letters", get(dead_letters))
        .route("/v1/audit", get(audit_log))
        .route(
            "/v1/dead-letters/{id}/retry",
            axum::routing::post(retry_dead_letter),
        )
}

/// Writes the audit entry of an API call from its response, and answers it — or 503 when the
/// audit log cannot be written (an unaudited read is not served).
pub(crate) async fn audited(
    state: &AppState,
    caller: &Caller,
    action: &str,
    contact_id: Option<&str>,
    target: Option<&str>,
    response: Response,
) -> Response {
    let outcome = match response.status() {
        s if s.is_success() => "ok",
        StatusCode::FORBIDDEN => "denied",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::UNPROCESSABLE_ENTITY => "rejected",
        _ => "error",
    };
    match caller
        .audit(state, action, contact_id, target, outcome)
        .await
    {
        Ok(()) => response,
        Err(unavailable) => unavailable,
    }
}

fn store_error(e: wacrm_store::StoreError) -> Response {
    tracing::error!(error = %e, "store query failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
}

/// Filters of `GET /v1/contacts`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ContactFilter {
    /// A WhatsApp id (digits; Brazilian mobiles match with or without the 9th digit).
    pub wa_id: Option<String>,
    /// A phone number with country code, in any punctuation.
    pub phone: Option<String>,
    /// A business-scoped user id.
    pub bsuid: Option<String>,
}

/// `GET /v1/contacts?wa_id=…|phone=…|bsuid=…`
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", params(ContactFilter),
    security(("api_key" = [])),
    responses((status = 200, body = Vec<ContactView>), (status = 400), (status = 401), (status = 403)))]
pub async fn list_contacts(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(filter): Query<ContactFilter>,
) -> Response {
    let response = async {
        if let Err(r) = caller.require(scope::CONVERSATIONS_READ) {
            return r.into_response();
        }
        let mut keys = Vec::new();
        for raw in [filter.wa_id.as_deref(), filter.phone.as_deref()]
            .into_iter()
            .flatten()
        {
            match E164::parse(raw) {
                Ok(phone) => keys.push(IdentityKey::Phone(phone)),
                Err(_) => keys.push(IdentityKey::WaId(raw.to_owned())),
            }
        }
        if let Some(bsuid) = filter.bsuid {
            keys.push(IdentityKey::Bsuid(bsuid));
        }
        if keys.is_empty() {
            return error(StatusCode::BAD_REQUEST, "give wa_id, phone or bsuid");
        }
        match queries::find_contacts(&state.db, &keys).await {
            Ok(contacts) => Json(contacts).into_response(),
            Err(e) => store_error(e),
        }
    }
    .await;
    audited(&state, &caller, "contacts.search", None, None, response).await
}

/// `GET /v1/contacts/{id}`
#[utoipa::path(get, path = "/v1/contacts/{id}", tag = "contacts", security(("api_key" = [])),
    params(("id" = String, Path, description = "Contact id")),
    responses((status = 200, body = ContactView), (status = 401), (status = 403), (status = 404)))]
pub async fn get_contact(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let response = async {
        if let Err(r) = caller.require(scope::CONVERSATIONS_READ) {
            return r.into_response();
        }
        match queries::get_contact(&state.db, &id).await {
            Ok(Some(c)) => Json(c).into_response(),
            Ok(None) => error(StatusCode::NOT_FOUND, "no such contact"),
            Err(e) => store_error(e),
        }
    }
    .await;
    audited(&state, &caller, "contacts.read", Some(&id), None, response).await
}

/// Paging of lists.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Page {
    /// Most items (default 100, at most 1000).
    pub limit: Option<u64>,
}

impl Page {
    fn limit(&self) -> u64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

/// `GET /v1/contacts/{id}/messages`, ordered by WhatsApp's timestamp.
#[utoipa::path(get, path = "/v1/contacts/{id}/messages", tag = "contacts", security(("api_key" = [])),
    params(("id" = String, Path, description = "Contact id"), Page),
    responses((status = 200, body = Vec<MessageView>), (status = 401), (status = 403), (status = 404)))]
pub async fn contact_messages(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    let response = async {
        if let Err(r) = caller.require(scope::CONVERSATIONS_READ) {
            return r.into_response();
        }
        let contact = match queries::get_contact(&state.db, &id).await {
            Ok(Some(c)) => c,
            Ok(None) => return error(StatusCode::NOT_FOUND, "no such contact"),
            Err(e) => return store_error(e),
        };
        let numbers = caller.0.business_numbers.as_deref();
        match queries::contact_messages(&state.db, &contact.id, numbers, page.limit()).await {
            Ok(messages) => Json(messages).into_response(),
            Err(e) => store_error(e),
        }
    }
    .await;
    audited(&state, &caller, "messages.list", Some(&id), None, response).await
}

/// `GET /v1/messages/{wamid}`, with status history.
#[utoipa::path(get, path = "/v1/messages/{wamid}", tag = "messages", security(("api_key" = [])),
    params(("wamid" = String, Path, description = "WhatsApp message id")),
    responses((status = 200, body = MessageDetail), (status = 401), (status = 403), (status = 404)))]
pub async fn get_message(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(wamid): Path<String>,
) -> Response {
    let response = async {
        if let Err(r) = caller.require(scope::CONVERSATIONS_READ) {
            return r.into_response();
        }
        match queries::get_message(&state.db, &wamid).await {
            Ok(Some(m)) if !caller.0.may_use_number(&m.message.phone_number_id) => error(
                StatusCode::FORBIDDEN,
                "this key may not read that business number",
            ),
            Ok(Some(m)) => Json(m).into_response(),
            Ok(None) => error(StatusCode::NOT_FOUND, "no such message"),
            Err(e) => store_error(e),
        }
    }
    .await;
    audited(
        &state,
        &caller,
        "messages.read",
        None,
        Some(&wamid),
        response,
    )
    .await
}

/// Filters of `GET /v1/dead-letters`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeadLetterFilter {
    /// Most items (default 100, at most 1000).
    pub limit: Option<u64>,
    /// Include dead letters already re-driven successfully.
    pub include_resolved: Option<bool>,
}

/// `GET /v1/dead-letters`, newest first.
#[utoipa::path(get, path = "/v1/dead-letters", tag = "operations", security(("api_key" = [])), params(DeadLetterFilter),
    responses((status = 200, body = Vec<DeadLetterView>), (status = 401), (status = 403)))]
pub async fn dead_letters(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(filter): Query<DeadLetterFilter>,
) -> Response {
    let response = async {
        if let Err(r) = caller.require(scope::DEAD_LETTERS_READ) {
            return r.into_response();
        }
        let page = Page {
            limit: filter.limit,
        };
        match queries::dead_letters(
            &state.db,
            page.limit(),
            filter.include_resolved.unwrap_or(false),
        )
        .await
        {
            Ok(d) => Json(d).into_response(),
            Err(e) => store_error(e),
        }
    }
    .await;
    audited(&state, &caller, "dead_letters.list", None, None, response).await
}

/// Readiness of ingest: what a webhook needs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ok` or `unavailable` (the reason is logged, not shown: this route needs no key).
    pub bus: String,
    /// `ok` or `unavailable`.
    pub store: String,
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: ingest can take traffic — the bus and the store answer. Sending health and
/// consumers are not part of it (a number's rejected token must not take webhooks out of
/// rotation): `/v1/status` reports them.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let bus = state.bus.check().await;
    let store = wacrm_store::ping(&state.db).await;
    if let Err(e) = &bus {
        tracing::warn!(error = %e, "not ready: the bus does not answer");
    }
    if let Err(e) = &store {
        tracing::warn!(error = %e, "not ready: the store does not answer");
    }
    let word = |ok: bool| if ok { "ok" } else { "unavailable" }.to_owned();
    let body = Readiness {
        bus: word(bus.is_ok()),
        store: word(store.is_ok()),
    };
    let status = if bus.is_ok() && store.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The outcome of a re-drive.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedriveOutcome {
    /// The dead letter.
    pub id: String,
    /// Whether it was re-driven.
    pub resolved: bool,
    /// Why not, when it was not.
    pub error: Option<String>,
}

/// `POST /v1/dead-letters/{id}/retry`: re-drives one dead letter.
#[utoipa::path(post, path = "/v1/dead-letters/{id}/retry", tag = "operations", security(("api_key" = [])),
    params(("id" = String, Path, description = "Dead letter id")),
    responses((status = 200, body = RedriveOutcome), (status = 401), (status = 403), (status = 404)))]
pub async fn retry_dead_letter(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let response = async {
        if let Err(r) = caller.require(scope::DEAD_LETTERS_RETRY) {
            return r.into_response();
        }
        let dead = match queries::dead_letter(&state.db, &id).await {
            Ok(Some(dead)) => dead,
            Ok(None) => return error(StatusCode::NOT_FOUND, "no such dead letter"),
            Err(e) => return store_error(e),
        };
        match crate::redrive::redrive(
            &state.db,
            state.bus.as_ref(),
            &state.topics,
            &state.source,
            &state.whatsapp.opt_out_keywords,
            &dead,
        )
        .await
        {
            Ok(outcome) => Json(RedriveOutcome {
                id: id.clone(),
                resolved: outcome.is_ok(),
                error: outcome.err(),
            })
            .into_response(),
            Err(e) => store_error(e),
        }
    }
    .await;
    audited(
        &state,
        &caller,
        "dead_letters.retry",
        None,
        Some(&id),
        response,
    )
    .await
}

/// Filters of `GET /v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditFilter {
    /// Only this API key.
    pub key_id: Option<String>,
    /// Only this action (`messages.read`, `contacts.read`, `keys.create`, …).
    pub action: Option<String>,
    /// Only this contact.
    pub contact_id: Option<String>,
    /// Entries after this sequence number (the last `seq` of the previous page).
    pub after: Option<i64>,
    /// From this time (RFC 3339).
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Until this time (RFC 3339).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Most entries (default 100, at most 1000).
    pub limit: Option<u64>,
}

/// `GET /v1/audit`: the audit log in order, with filters (auditors and admins).
#[utoipa::path(get, path = "/v1/audit", tag = "operations", security(("api_key" = [])), params(AuditFilter),
    responses((status = 200, body = Vec<wacrm_store::audit::Entry>), (status = 401), (status = 403)))]
pub async fn audit_log(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(f): Query<AuditFilter>,
) -> Response {
    let response = async {
        if let Err(r) = caller.require(scope::AUDIT_READ) {
            return r.into_response();
        }
        let filter = wacrm_store::audit::Filter {
            key_id: f.key_id.clone(),
            action: f.action.clone(),
            contact_id: f.contact_id.clone(),
            after_seq: f.after,
            from: f.from,
            until: f.until,
            limit: f.limit.unwrap_or(100),
        };
        match wacrm_store::audit::page(&state.db, &filter).await {
            Ok(entries) => Json(entries).into_response(),
            Err(e) => store_error(e),
        }
    }
    .await;
    audited(
        &state,
        &caller,
        "audit.read",
        f.contact_id.as_deref(),
        None,
        response,
    )
    .await
}
