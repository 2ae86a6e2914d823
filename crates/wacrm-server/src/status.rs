//! `GET /v1/status`: what runs in this process and whether it works — each consumer group, each
//! CRM connection, each business number's sending health — for any valid key (numbers limited
//! to the key's). Unauthenticated callers get 401 and nothing else; `/readyz` says only whether
//! ingest (bus and store) can take traffic.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use wacrm_bus::supervise::ConsumerStatus;

use crate::auth::Caller;
use crate::AppState;

/// A CRM connection this process syncs, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CrmConnectionInfo {
    /// The connection's name (`[crm.connections.<name>]`).
    pub name: String,
    /// The CRM (`hubspot`, …).
    pub kind: String,
    /// Its consumer group.
    pub group: String,
}

/// A CRM connection and its consumer's state.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CrmConnectionStatus {
    /// The connection.
    #[serde(flatten)]
    pub connection: CrmConnectionInfo,
    /// Its consumer, once started.
    pub consumer: Option<ConsumerStatus>,
}

/// A business number's sending health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NumberStatus {
    /// The phone number id.
    pub phone_number_id: String,
    /// `ok`, or `token_rejected` (nothing can be sent from it until the token is replaced).
    pub state: String,
    /// Since when it is failing.
    pub since: Option<DateTime<Utc>>,
    /// Why.
    pub reason: Option<String>,
}

/// Sending, as a whole and per number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SendingStatus {
    /// Whether an access token is configured at all.
    pub configured: bool,
    /// Configured numbers and numbers whose token WhatsApp rejected (limited to the key's).
    pub numbers: Vec<NumberStatus>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// Every consumer group of this process.
    pub consumers: Vec<ConsumerStatus>,
    /// Every CRM connection.
    pub crm_connections: Vec<CrmConnectionStatus>,
    /// Sending health.
    pub sending: SendingStatus,
}

/// `GET /v1/status`: consumers, CRM connections and business numbers of this process.
#[utoipa::path(get, path = "/v1/status", tag = "operations", security(("api_key" = [])),
    responses((status = 200, body = Status), (status = 401), (status = 503)))]
pub async fn status(State(state): State<Arc<AppState>>, caller: Caller) -> Response {
    let consumers = state.consumers.snapshot();
    let crm_connections = state
        .crm_connections
        .iter()
        .map(|c| CrmConnectionStatus {
            connection: c.clone(),
            consumer: consumers.iter().find(|s| s.group == c.group).cloned(),
        })
        .collect();
    let failing = state.send_health.failing();
    let mut numbers: BTreeSet<String> = state.whatsapp.numbers.keys().cloned().collect();
    numbers.extend(failing.iter().map(|(n, _, _)| n.clone()));
    let numbers = numbers
        .into_iter()
        .filter(|n| caller.0.may_use_number(n))
        .map(|n| match failing.iter().find(|(f, _, _)| *f == n) {
            Some((_, since, reason)) => NumberStatus {
                phone_number_id: n,
                state: "token_rejected".into(),
                since: Some(*since),
                reason: Some(reason.clone()),
            },
            None => NumberStatus {
                phone_number_id: n,
                state: "ok".into(),
                since: None,
                reason: None,
            },
        })
        .collect();
    let body = Status {
        consumers,
        crm_connections,
        sending: SendingStatus {
            configured: state.whatsapp.can_send(),
            numbers,
        },
    };
    crate::api::audited(
        &state,
        &caller,
        "status.read",
        None,
        None,
        Json(body).into_response(),
    )
    .await
}
