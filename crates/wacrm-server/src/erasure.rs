//! Erasure through the API (LGPD art. 18, VI; docs/privacy.md).
//!
//! - `POST /v1/contacts/{id}/erase` (`contacts:erase`, a key for every business number: an
//!   erasure reaches all of them): files the erasure and answers 202 with it; the service's
//!   erasure worker runs its steps (store, dead letters, bus, each CRM) within seconds, and
//!   resumes it after a crash. A second request for the same person answers the running one.
//! - `GET /v1/erasures/{id}` (`contacts:erase`): where it stands, step by step.
//!
//! Both are audited; the person appears in the audit log by the erasure's keyed hash only.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use wacrm_store::erasure::{self, Erasure, SubjectRef};
use wacrm_store::keys::scope;

use crate::api::{audited, audited_with, AuditFacts};
use crate::auth::{error, Caller};
use crate::AppState;

fn store_error(e: wacrm_store::StoreError) -> Response {
    tracing::error!(error = %e, "store failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
}

/// Why the caller may not erase, if it may not: the scope, and every business number.
fn refusal(caller: &Caller) -> Option<Response> {
    if let Err(missing) = caller.require(scope::CONTACTS_ERASE) {
        return Some(missing.into_response());
    }
    caller.0.business_numbers.is_some().then(|| {
        error(
            StatusCode::FORBIDDEN,
            "an erasure reaches every business number: it needs a key for all numbers",
        )
    })
}

/// `POST /v1/contacts/{id}/erase`.
#[utoipa::path(
    post,
    path = "/v1/contacts/{id}/erase",
    params(("id" = String, Path, description = "The contact id")),
    responses(
        (status = 202, description = "The erasure, filed; its steps run in the background", body = Erasure),
        (status = 403, description = "Missing `contacts:erase`, or a key limited to business numbers"),
        (status = 404, description = "No such contact"),
        (status = 503, description = "The audit log or the store cannot be written; nothing was erased"),
    ),
    security(("bearer" = []))
)]
pub async fn erase_contact(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    const ACTION: &str = "contacts.erase";
    if let Some(refused) = refusal(&caller) {
        return audited(&state, &caller, ACTION, None, Some("refused"), refused).await;
    }
    let connections: Vec<String> = state
        .crm_connections
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let prepared = match erasure::prepare(&state.db, &SubjectRef::Contact(id)).await {
        Ok(Some(prepared)) => prepared,
        Ok(None) => {
            let missing = error(StatusCode::NOT_FOUND, "no such contact");
            return audited(&state, &caller, ACTION, None, None, missing).await;
        }
        Err(e) => return store_error(e),
    };
    // Audited before anything is filed or erased, naming the person by keyed hash only.
    let subject = format!("subject {}", prepared.hash);
    let intent = AuditFacts {
        target: Some(&subject),
        ..AuditFacts::default()
    };
    if let Err(unavailable) = caller.audit_intent(&state, ACTION, &intent).await {
        return unavailable;
    }
    let response = match erasure::file(
        &state.db,
        prepared,
        &connections,
        &format!("key:{}", caller.0.key_id),
    )
    .await
    {
        Ok(filed) => (StatusCode::ACCEPTED, Json(filed)).into_response(),
        Err(e) => store_error(e),
    };
    audited_with(&state, &caller, ACTION, &intent, response).await
}

/// `GET /v1/erasures/{id}`.
#[utoipa::path(
    get,
    path = "/v1/erasures/{id}",
    params(("id" = String, Path, description = "The erasure id")),
    responses(
        (status = 200, description = "The erasure, step by step", body = Erasure),
        (status = 403, description = "Missing `contacts:erase`, or a key limited to business numbers"),
        (status = 404, description = "No such erasure"),
    ),
    security(("bearer" = []))
)]
pub async fn get_erasure(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    const ACTION: &str = "erasures.read";
    let response = match refusal(&caller) {
        Some(refused) => refused,
        None => match erasure::get(&state.db, &id).await {
            Ok(Some(found)) => Json(found).into_response(),
            Ok(None) => error(StatusCode::NOT_FOUND, "no such erasure"),
            Err(e) => store_error(e),
        },
    };
    audited(&state, &caller, ACTION, None, Some(&id), response).await
}
