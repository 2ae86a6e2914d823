//! What instances sharing a PostgreSQL store share through it, installed before any CRM adapter
//! is built (docs/scaling.md): every CRM connection's rate limits, and every rotating OAuth
//! refresh token (one instance exchanges at a time, the others use its access token). Every
//! command that builds adapters installs them, so a `doctor` or a `replay` next to running
//! instances neither overruns a CRM's limit nor rotates a token behind their backs. On SQLite
//! nothing is installed: the store belongs to one process.

use std::sync::Arc;

use wacrm_store::Db;

/// Installs the store's shared limiter and token store, when the store is PostgreSQL.
pub fn install(db: &Db) {
    if let Some(limiter) = wacrm_store::rate::PgLimiter::new(db) {
        wacrm_crm::http::share_limits(Some(Arc::new(limiter)));
        tracing::info!("rate limits are shared through the PostgreSQL store");
    }
    if let Some(tokens) = wacrm_store::oauth_tokens::PgTokenStore::new(db) {
        wacrm_crm::oauth::share_refresh_tokens(Some(Arc::new(tokens)));
        tracing::info!("rotating OAuth refresh tokens are shared through the PostgreSQL store");
    }
}
