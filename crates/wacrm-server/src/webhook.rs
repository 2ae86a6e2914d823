//! The WhatsApp webhook endpoint.
//!
//! What happens to a request, and when it is answered:
//! - bad or missing signature → 401, nothing stored (an attacker's body is not ours to keep);
//! - body over the limit → 413; body not arrived within its deadline → 408; body stream broken
//!   → 400; nothing stored in any of them (all from [`crate::body_deadline`]);
//! - signed and understood → every event published; 200 only after the bus confirmed them
//!   durable. Parts that cannot be understood are published as dead letters in the same batch;
//! - signed but not a WhatsApp payload → published as a dead letter with the reason, 200 (Meta
//!   would otherwise retry the same bytes for days);
//! - bus unavailable or too slow → 503, so Meta retries; nothing was acknowledged.
//!
//! A retry of a webhook already acknowledged yields the same event ids and the same
//! dead-letter ids, so consumers drop the repeats.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use wacrm_bus::cloudevents::{dead_letter_record, event_record, DeadLetterOrigin};
use wacrm_bus::OutboundRecord;
use wacrm_core::ErrorClass;
use wacrm_whatsapp::handshake;
use wacrm_whatsapp::normalise::parse_and_normalise;

use crate::AppState;

/// Query parameters of the subscription handshake.
#[derive(Debug, Deserialize)]
pub struct HandshakeQuery {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// `GET /webhooks/whatsapp`: echoes `hub.challenge` when the verify token matches; 403 otherwise.
#[utoipa::path(get, path = "/webhooks/whatsapp", tag = "webhooks",
    params(("hub.mode" = String, Query), ("hub.verify_token" = String, Query), ("hub.challenge" = String, Query)),
    responses((status = 200, description = "The challenge, echoed"), (status = 403, description = "Wrong token or mode")))]
pub async fn handshake(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HandshakeQuery>,
) -> Response {
    match handshake::answer(
        state.verify_token.as_deref(),
        q.mode.as_deref(),
        q.token.as_deref(),
        q.challenge.as_deref(),
    ) {
        Ok(challenge) => (StatusCode::OK, challenge).into_response(),
        Err(e) => {
            tracing::warn!(reason = %e, "webhook handshake refused");
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

fn outcome(outcome: &'static str) {
    metrics::counter!("wacrm_webhooks_total", "outcome" => outcome).increment(1);
}

/// `POST /webhooks/whatsapp`.
#[utoipa::path(post, path = "/webhooks/whatsapp", tag = "webhooks",
    request_body(content = String, description = "Meta's WebhookPayload, signed with X-Hub-Signature-256", content_type = "application/json"),
    responses(
        (status = 200, description = "Durably accepted (or kept as a dead letter)"),
        (status = 401, description = "Missing or wrong signature; nothing stored"),
        (status = 408, description = "The body did not arrive in time (`server.body_read_timeout_ms`); nothing stored, retry"),
        (status = 413, description = "Body too large"),
        (status = 503, description = "Event bus unavailable; retry later")))]
pub async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = state.secrets.verify(&body, signature) {
        outcome("unauthorized");
        tracing::warn!(reason = %e, "webhook rejected");
        return (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
    }
    let records = match to_records(&state, &body) {
        Ok(records) => records,
        Err(e) => {
            outcome("error");
            tracing::error!(error = %e, "webhook could not be encoded");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let count = records.len();
    match tokio::time::timeout(state.publish_timeout, state.bus.publish(records)).await {
        Ok(Ok(())) => {
            outcome("accepted");
            metrics::counter!("wacrm_events_published_total").increment(count as u64);
            StatusCode::OK.into_response()
        }
        Ok(Err(e)) => {
            outcome("unavailable");
            tracing::error!(error = %e, "webhook not acknowledged: bus failed");
            (StatusCode::SERVICE_UNAVAILABLE, "event bus unavailable").into_response()
        }
        Err(_) => {
            outcome("unavailable");
            tracing::error!(timeout = ?state.publish_timeout, "webhook not acknowledged: bus too slow");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "event bus did not confirm in time",
            )
                .into_response()
        }
    }
}

/// Normalises a webhook body and adds the opt-outs its messages and statuses imply (stop
/// keywords, error 131050).
pub fn webhook_events(
    body: &[u8],
    keywords: &wacrm_core::optout::OptOutKeywords,
) -> Result<wacrm_whatsapp::Normalised, wacrm_whatsapp::normalise::PayloadError> {
    let mut normalised = parse_and_normalise(body, Utc::now())?;
    let derived = keywords.derive(&normalised.events);
    normalised.events.extend(derived);
    Ok(normalised)
}

/// The records a signed body becomes: its events and, for what cannot be understood, dead
/// letters.
fn to_records(
    state: &AppState,
    body: &[u8],
) -> Result<Vec<OutboundRecord>, wacrm_bus::cloudevents::RecordError> {
    match webhook_events(body, &state.whatsapp.opt_out_keywords) {
        Ok(normalised) => {
            let mut records =
                Vec::with_capacity(normalised.events.len() + normalised.rejected.len());
            for event in &normalised.events {
                records.push(event_record(&state.topics, &state.source, event)?);
            }
            for rejected in normalised.rejected {
                metrics::counter!("wacrm_webhook_parts_rejected_total").increment(1);
                records.push(dead_letter_record(
                    &state.topics,
                    DeadLetterOrigin::Webhook,
                    ErrorClass::DeadLetter,
                    &rejected.reason,
                    rejected.raw.into_bytes(),
                ));
            }
            Ok(records)
        }
        Err(e) => {
            outcome("dead_letter");
            tracing::warn!(reason = %e, "signed webhook is not a WhatsApp payload; dead-lettered");
            Ok(vec![dead_letter_record(
                &state.topics,
                DeadLetterOrigin::Webhook,
                ErrorClass::DeadLetter,
                &e.to_string(),
                body.to_vec(),
            )])
        }
    }
}
