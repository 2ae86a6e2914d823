//! wacrm's HTTP surface (axum): the only crate that speaks HTTP to the outside.
//!
//! - `POST /webhooks/whatsapp`: signed webhooks → events on the bus; 200 only once durable.
//! - `GET /webhooks/whatsapp`: Meta's subscription handshake.
//! - `/v1/…`: the read and send API, every route behind an employee's API key.
//! - `/metrics` (keys with `metrics:read`) and `/openapi.json` (any key).
//! - `/healthz`, `/readyz`: the only routes without a key or a signature; they reveal nothing
//!   but whether the service can take traffic.

pub mod api;
pub mod audit_relay;
pub mod auth;
pub mod config;
pub mod metrics_endpoint;
pub mod openapi;
pub mod redrive;
pub mod send;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;
use wacrm_bus::{EventBus, Topics};
use wacrm_store::Db;
use wacrm_whatsapp::{SendHealth, WebhookSecrets, WhatsAppConfig};

pub use config::ServerConfig;

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
    /// Business numbers that cannot send (reported by `/readyz`).
    pub send_health: Arc<SendHealth>,
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>, config: &ServerConfig) -> Router {
    Router::new()
        .route(
            "/webhooks/whatsapp",
            get(webhook::handshake).post(webhook::receive),
        )
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .merge(api::routes())
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(metrics_endpoint::render))
        .route("/openapi.json", get(openapi::serve))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled, then stops accepting and finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
