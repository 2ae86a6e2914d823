//! Bearer-key authentication for `/v1`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use wacrm_store::keys::{self, Principal};

use crate::AppState;

/// The caller of an API route, authenticated by `Authorization: Bearer <key>`.
pub struct Caller(pub Principal);

/// An API error body: `{"error": "..."}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
}

/// An error response with a status.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response()
}

impl Caller {
    /// Writes an audit entry for this caller. An audit failure fails the request: an action
    /// that cannot be audited is not performed (`Err` is the 503 to answer).
    pub async fn audit(
        &self,
        state: &AppState,
        action: &str,
        contact_id: Option<&str>,
        target: Option<&str>,
        outcome: &str,
    ) -> Result<(), Response> {
        append_audit(
            state,
            wacrm_store::audit::NewEntry {
                key_id: self.0.key_id.clone(),
                actor: self.0.name.clone(),
                action: action.to_owned(),
                contact_id: contact_id.map(str::to_owned),
                target: target.map(str::to_owned),
                outcome: outcome.to_owned(),
                phone_number_id: None,
                detail: None,
            },
        )
        .await
    }

    /// 403 unless the key carries the scope.
    pub fn require(&self, scope: &'static str) -> Result<(), MissingScope> {
        if self.0.has_scope(scope) {
            Ok(())
        } else {
            Err(MissingScope(scope))
        }
    }
}

/// Appends an audit entry; `Err` is the 503 to answer when the log cannot be written (an
/// action that cannot be audited is not performed).
pub async fn append_audit(
    state: &AppState,
    entry: wacrm_store::audit::NewEntry,
) -> Result<(), Response> {
    state.audit.append(entry).await.map(drop).map_err(|e| {
        tracing::error!(error = %e, "audit log unavailable");
        error(StatusCode::SERVICE_UNAVAILABLE, "audit log unavailable")
    })
}

/// The caller's key lacks a scope (403).
#[derive(Debug, Clone, Copy)]
pub struct MissingScope(pub &'static str);

impl IntoResponse for MissingScope {
    fn into_response(self) -> Response {
        error(
            StatusCode::FORBIDDEN,
            format!("this key lacks the {} scope", self.0),
        )
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                error(
                    StatusCode::UNAUTHORIZED,
                    "an API key is required (Authorization: Bearer …)",
                )
            })?;
        match keys::authenticate(&state.db, token).await {
            Ok(Some(principal)) => {
                let limiter = parts
                    .extensions
                    .get::<Arc<crate::key_limit::KeyLimiter>>()
                    .cloned();
                if let Some(Err(wait)) = limiter.map(|l| l.check(&principal.key_id)) {
                    metrics::counter!("wacrm_api_rate_limited_total").increment(1);
                    let mut response = error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "this key is over its request rate; retry after the time given",
                    );
                    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                    if let Ok(v) = axum::http::HeaderValue::from_str(&seconds.max(1).to_string()) {
                        response
                            .headers_mut()
                            .insert(axum::http::header::RETRY_AFTER, v);
                    }
                    return Err(response);
                }
                Ok(Caller(principal))
            }
            Ok(None) => Err(error(
                StatusCode::UNAUTHORIZED,
                "unknown, revoked or expired API key",
            )),
            Err(e) => {
                tracing::error!(error = %e, "key lookup failed");
                Err(error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable"))
            }
        }
    }
}
