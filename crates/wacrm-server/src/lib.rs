//! wacrm's HTTP surface (axum): the only crate that speaks HTTP to the outside.
//!
//! - `POST /webhooks/whatsapp`: signed webhooks → events on the bus; 200 only once durable.
//! - `GET /webhooks/whatsapp`: Meta's subscription handshake.
//! - `/v1/…`: the read and send API, every route behind an employee's API key.
//! - `/metrics` (keys with `metrics:read`) and `/openapi.json` (any key).
//! - `/v1/status` (any key): each consumer, CRM connection and business number's health.
//! - `/healthz`, `/readyz`: the only routes without a key or a signature; they reveal nothing
//!   but whether the service can take webhooks (readiness: the bus and the store answer).

pub mod api;
pub mod audit_relay;
pub mod auth;
pub mod body_deadline;
pub mod config;
pub mod console;
pub mod erasure;
pub mod key_limit;
pub mod listen;
pub mod metrics_endpoint;
pub mod openapi;
pub mod privacy;
pub mod redrive;
pub mod send;
pub mod status;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use wacrm_bus::{EventBus, Topics};
use wacrm_store::Db;
use wacrm_whatsapp::{SendHealth, WebhookSecrets, WhatsAppConfig};

pub use body_deadline::BodyDeadline;
pub use config::ServerConfig;
pub use listen::serve;

/// What every request handler shares.
pub struct AppState {
    /// The event bus.
    pub bus: Arc<dyn EventBus>,
    /// Topic names.
    pub topics: Topics,
    /// The store.
    pub db: Db,
    /// Webhook signature secrets.
    pub secrets: WebhookSecrets,
    /// The handshake's verify token.
    pub verify_token: Option<String>,
    /// CloudEvents `source` of published events.
    pub source: String,
    /// How long a publish may take before the webhook is answered 503.
    pub publish_timeout: Duration,
    /// The audit log every API call is written to.
    pub audit: Arc<wacrm_store::audit::AuditLog>,
    /// WhatsApp settings the send API checks requests against (tokens configured, template
    /// categories, opt-out keywords).
    pub whatsapp: Arc<WhatsAppConfig>,
    /// Business numbers that cannot send (reported by `/v1/status`).
    pub send_health: Arc<SendHealth>,
    /// This process's consumers (reported by `/v1/status`).
    pub consumers: Arc<wacrm_bus::supervise::ConsumerRegistry>,
    /// The CRM connections this process syncs.
    pub crm_connections: Vec<status::CrmConnectionInfo>,
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>, config: &ServerConfig) -> Router {
    let deadline = BodyDeadline::from_config(config);
    let key_limiter = Arc::new(key_limit::KeyLimiter::from_config(config));
    Router::new()
        .route(
            "/webhooks/whatsapp",
            get(webhook::handshake).post(webhook::receive),
        )
        .route_layer(middleware::from_fn(move |request, next| {
            deadline.enforce(request, next)
        }))
        // The deadline layer has read the body within `max_body_bytes`; a second limit on the
        // handler's copy (axum's default is 2 MiB) would refuse bodies the setting allows.
        .layer(DefaultBodyLimit::disable())
        .merge(api::routes())
        .merge(console::routes(&config.console))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/v1/status", get(status::status))
        .route("/metrics", get(metrics_endpoint::render))
        .route("/openapi.json", get(openapi::serve))
        .layer(axum::Extension(key_limiter))
        .with_state(state)
}
