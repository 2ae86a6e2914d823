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
use wacrm_store::queries::{self, ContactView, DeadLetterView, MessageDetail};

use crate::auth::{error, Caller};
use crate::AppState;

/// The `/v1` routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/contacts", get(list_contacts))
        .route("/v1/contacts/{id}", get(get_contact))
        .route("/v1/contacts/{id}/messages", get(contact_messages))
        .route(
            "/v1/contacts/{id}/consent",
            get(crate::privacy::contact_consent).post(crate::privacy::record_consent),
        )
        .route(
            "/v1/contacts/{id}/export",
            get(crate::privacy::export_contact),
        )
        .route(
            "/v1/contacts/{id}/erase",
            axum::routing::post(crate::erasure::erase_contact),
        )
        .route("/v1/erasures/{id}", get(crate::erasure::get_erasure))
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

/// What an audit entry records about a call besides who, what and the outcome.
#[derive(Debug, Clone, Default)]
pub struct AuditFacts<'a> {
    /// The contact concerned, when one.
    pub contact_id: Option<&'a str>,
    /// The object (a wamid, a request id, a dead letter id, …).
    pub target: Option<&'a str>,
    /// The business number concerned, when known: keys limited to numbers read only the
    /// entries of theirs.
    pub phone_number_id: Option<&'a str>,
    /// More about the call, as JSON (a search: its hashed query and the contacts returned).
    pub detail: Option<serde_json::Value>,
}

/// The outcome an entry written *before* a mutating action carries; the action's outcome
/// follows as a second entry.
pub const INTENT: &str = "intent";

impl Caller {
    /// Writes an audit entry for this caller with `facts`. `Err` is the 503 to answer: an
    /// action that cannot be audited is not performed.
    pub async fn audit_entry(
        &self,
        state: &AppState,
        action: &str,
        facts: &AuditFacts<'_>,
        outcome: &str,
    ) -> Result<(), Response> {
        let entry = wacrm_store::audit::NewEntry {
            key_id: self.0.key_id.clone(),
            actor: self.0.name.clone(),
            action: action.to_owned(),
            contact_id: facts.contact_id.map(str::to_owned),
            target: facts.target.map(str::to_owned),
            outcome: outcome.to_owned(),
            phone_number_id: facts.phone_number_id.map(str::to_owned),
            detail: facts.detail.clone(),
        };
        state.audit.append(entry).await.map(drop).map_err(|e| {
            tracing::error!(error = %e, "audit log unavailable");
            error(StatusCode::SERVICE_UNAVAILABLE, "audit log unavailable")
        })
    }

    /// Before a mutating action: records that this caller is about to do `action` (outcome
    /// [`INTENT`]). On `Err` (the 503 to answer) do nothing — the action fails closed; on `Ok`
    /// act, then answer through [`audited_with`] (same action and facts), which writes the
    /// outcome as a second entry.
    pub async fn audit_intent(
        &self,
        state: &AppState,
        action: &str,
        facts: &AuditFacts<'_>,
    ) -> Result<(), Response> {
        self.audit_entry(state, action, facts, INTENT).await
    }
}

/// The outcome an API response is audited with.
fn outcome_of(status: StatusCode) -> &'static str {
    match status {
        s if s.is_success() => "ok",
        StatusCode::FORBIDDEN => "denied",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::UNPROCESSABLE_ENTITY => "rejected",
        _ => "error",
    }
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
    let facts = AuditFacts {
        contact_id,
        target,
        ..AuditFacts::default()
    };
    audited_with(state, caller, action, &facts, response).await
}

/// [`audited`] with every fact of the entry: the business number and a detail too.
pub async fn audited_with(
    state: &AppState,
    caller: &Caller,
    action: &str,
    facts: &AuditFacts<'_>,
    response: Response,
) -> Response {
    let outcome = outcome_of(response.status());
    match caller.audit_entry(state, action, facts, outcome).await {
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
    /// Part of the contact's profile name or WhatsApp username (at least 2 characters, any
    /// case); at most 50 contacts, most recently active first. Not combined with the others.
    pub name: Option<String>,
}

/// The audit detail of a search: the SHA-256 (hex) of the normalised query — its identity
/// keys as `kind:value` (a phone in E.164), sorted, one per line — never the phone itself,
/// and the ids of the contacts returned.
fn search_detail(keys: &[IdentityKey], contacts: &[ContactView]) -> serde_json::Value {
    let mut normalised: Vec<String> = keys.iter().map(ToString::to_string).collect();
    normalised.sort();
    normalised.dedup();
    query_detail(&normalised.join("\n"), contacts)
}

/// The audit detail of a search by name: as [`search_detail`], the query being `name:` and the
/// lowered name.
fn name_search_detail(name: &str, contacts: &[ContactView]) -> serde_json::Value {
    query_detail(&format!("name:{}", name.trim().to_lowercase()), contacts)
}

fn query_detail(query: &str, contacts: &[ContactView]) -> serde_json::Value {
    use sha2::{Digest, Sha256};
    serde_json::json!({
        "query_sha256": hex::encode(Sha256::digest(query.as_bytes())),
        "contacts": contacts.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
    })
}

/// `GET /v1/contacts?wa_id=…|phone=…|bsuid=…|name=…`: a key limited to business numbers finds only
/// contacts with a conversation on one of them.
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", params(ContactFilter),
    security(("api_key" = [])),
    responses((status = 200, body = Vec<ContactView>), (status = 400), (status = 401), (status = 403)))]
pub async fn list_contacts(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(filter): Query<ContactFilter>,
) -> Response {
    let mut detail = None;
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
        if let Some(bsuid) = filter.bsuid.clone() {
            keys.push(IdentityKey::Bsuid(bsuid));
        }
        let numbers = caller.0.business_numbers.as_deref();
        if keys.is_empty() {
            let Some(name) = filter.name.as_deref() else {
                return error(StatusCode::BAD_REQUEST, "give wa_id, phone, bsuid or name");
            };
            return match queries::find_contacts_by_name(&state.db, name, numbers).await {
                Ok(contacts) => {
                    detail = Some(name_search_detail(name, &contacts));
                    Json(contacts).into_response()
                }
                Err(e) => store_error(e),
            };
        }
        match queries::find_contacts(&state.db, &keys, numbers).await {
            Ok(contacts) => {
                detail = Some(search_detail(&keys, &contacts));
                Json(contacts).into_response()
            }
            Err(e) => store_error(e),
        }
    }
    .await;
    let facts = AuditFacts {
        detail,
        ..AuditFacts::default()
    };
    audited_with(&state, &caller, "contacts.search", &facts, response).await
}

/// The contact `id` as a key limited to business numbers may see it: `Err` is the answer — 404
/// both for a contact that does not exist and for one the key may not see (its existence is
/// not revealed). Merges are followed (`queries::get_contact`).
pub(crate) async fn visible_contact(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<ContactView, Response> {
    let contact = match queries::get_contact(&state.db, id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(error(StatusCode::NOT_FOUND, "no such contact")),
        Err(e) => return Err(store_error(e)),
    };
    match queries::contact_visible(&state.db, &contact.id, caller.0.business_numbers.as_deref())
        .await
    {
        Ok(true) => Ok(contact),
        Ok(false) => Err(error(StatusCode::NOT_FOUND, "no such contact")),
        Err(e) => Err(store_error(e)),
    }
}

/// `GET /v1/contacts/{id}` with the consent in force (404 for a contact without a
/// conversation on the key's numbers).
#[utoipa::path(get, path = "/v1/contacts/{id}", tag = "contacts", security(("api_key" = [])),
    params(("id" = String, Path, description = "Contact id")),
    responses((status = 200, body = crate::privacy::ContactDetail), (status = 401), (status = 403), (status = 404)))]
pub async fn get_contact(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let response = async {
        if let Err(r) = caller.require(scope::CONVERSATIONS_READ) {
            return r.into_response();
        }
        match visible_contact(&state, &caller, &id).await {
            Ok(c) => crate::privacy::contact_detail(&state, &caller, c).await,
            Err(r) => r,
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

/// Paging of a contact's history.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct HistoryPage {
    /// Most messages (default 100, at most 1000).
    pub limit: Option<u64>,
    /// Only messages older than this cursor: the `next` of the previous page.
    pub before: Option<String>,
}

/// `GET /v1/contacts/{id}/messages?limit=N&before=CURSOR`: the contact's messages newest first
/// (by WhatsApp's time, then wamid), a page at a time; `next` is the cursor of the next (older)
/// page, `null` on the last. Messages known only from status reports are listed as outbound,
/// of kind `status_only`, with their status.
#[utoipa::path(get, path = "/v1/contacts/{id}/messages", tag = "contacts", security(("api_key" = [])),
    params(("id" = String, Path, description = "Contact id"), HistoryPage),
    responses((status = 200, body = queries::MessagePage), (status = 400, description = "malformed cursor"),
        (status = 401), (status = 403), (status = 404)))]
pub async fn contact_messages(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<HistoryPage>,
) -> Response {
    let response = async {
        if let Err(r) = caller.require(scope::CONVERSATIONS_READ) {
            return r.into_response();
        }
        let before = match page.before.as_deref().map(queries::HistoryCursor::decode) {
            None => None,
            Some(Some(cursor)) => Some(cursor),
            Some(None) => return error(StatusCode::BAD_REQUEST, "malformed cursor (before)"),
        };
        let contact = match visible_contact(&state, &caller, &id).await {
            Ok(c) => c,
            Err(r) => return r,
        };
        let numbers = caller.0.business_numbers.as_deref();
        let limit = Page { limit: page.limit }.limit();
        match queries::contact_messages(&state.db, &contact.id, numbers, limit, before.as_ref())
            .await
        {
            Ok(messages) => Json(messages).into_response(),
            Err(e) => store_error(e),
        }
    }
    .await;
    audited(&state, &caller, "messages.list", Some(&id), None, response).await
}

/// `GET /v1/messages/{wamid}`, with status history (404 for a message of a business number the
/// key may not use: its existence is not revealed).
#[utoipa::path(get, path = "/v1/messages/{wamid}", tag = "messages", security(("api_key" = [])),
    params(("wamid" = String, Path, description = "WhatsApp message id")),
    responses((status = 200, body = MessageDetail), (status = 401), (status = 403), (status = 404)))]
pub async fn get_message(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(wamid): Path<String>,
) -> Response {
    let mut number = None;
    let mut contact = None;
    let response = async {
        if let Err(r) = caller.require(scope::CONVERSATIONS_READ) {
            return r.into_response();
        }
        match queries::get_message(&state.db, &wamid).await {
            Ok(Some(m)) if !caller.0.may_use_number(&m.message.phone_number_id) => {
                error(StatusCode::NOT_FOUND, "no such message")
            }
            Ok(Some(m)) => {
                number = Some(m.message.phone_number_id.clone());
                contact = Some(m.message.contact_id.clone());
                Json(m).into_response()
            }
            Ok(None) => error(StatusCode::NOT_FOUND, "no such message"),
            Err(e) => store_error(e),
        }
    }
    .await;
    let facts = AuditFacts {
        contact_id: contact.as_deref(),
        target: Some(&wamid),
        phone_number_id: number.as_deref(),
        detail: None,
    };
    audited_with(&state, &caller, "messages.read", &facts, response).await
}

/// Filters of `GET /v1/dead-letters`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeadLetterFilter {
    /// Most items (default 100, at most 1000).
    pub limit: Option<u64>,
    /// Include dead letters already re-driven successfully.
    pub include_resolved: Option<bool>,
}

/// `GET /v1/dead-letters`, newest first; a key limited to business numbers sees only those of
/// its numbers (a dead letter whose number is unknown only keys of every number see).
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
            caller.0.business_numbers.as_deref(),
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

/// `POST /v1/dead-letters/{id}/retry`: re-drives one dead letter (404 for one the key may not
/// see). The intent is audited before anything is published: when the audit log cannot be
/// written the answer is 503 and nothing is re-driven; the outcome follows as a second entry.
#[utoipa::path(post, path = "/v1/dead-letters/{id}/retry", tag = "operations", security(("api_key" = [])),
    params(("id" = String, Path, description = "Dead letter id")),
    responses((status = 200, body = RedriveOutcome), (status = 401), (status = 403), (status = 404),
        (status = 503, description = "the audit log, the store or the bus is unavailable; nothing was re-driven")))]
pub async fn retry_dead_letter(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    const ACTION: &str = "dead_letters.retry";
    let mut number = None;
    // `Err`: the intent could not be audited — answered as is (503), nothing done.
    let response: Result<Response, Response> = async {
        if let Err(r) = caller.require(scope::DEAD_LETTERS_RETRY) {
            return Ok(r.into_response());
        }
        let dead = match queries::dead_letter(&state.db, &id).await {
            Ok(Some(dead))
                if queries::dead_letter_visible(&dead, caller.0.business_numbers.as_deref()) =>
            {
                dead
            }
            Ok(_) => return Ok(error(StatusCode::NOT_FOUND, "no such dead letter")),
            Err(e) => return Ok(store_error(e)),
        };
        number.clone_from(&dead.phone_number_id);
        let intent = AuditFacts {
            target: Some(&id),
            phone_number_id: dead.phone_number_id.as_deref(),
            ..AuditFacts::default()
        };
        caller.audit_intent(&state, ACTION, &intent).await?;
        Ok(
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
            },
        )
    }
    .await;
    match response {
        Ok(response) => {
            let facts = AuditFacts {
                target: Some(&id),
                phone_number_id: number.as_deref(),
                ..AuditFacts::default()
            };
            audited_with(&state, &caller, ACTION, &facts, response).await
        }
        Err(unavailable) => unavailable,
    }
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

/// `GET /v1/audit`: the audit log in order, with filters (auditors and admins). A key limited
/// to business numbers reads only the entries of its numbers, and those of no number about a
/// contact with a conversation on one of them; entries tied to no number (key management, dead
/// letters of unknown number, …) only keys of every number read.
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
            numbers: caller.0.business_numbers.clone(),
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
