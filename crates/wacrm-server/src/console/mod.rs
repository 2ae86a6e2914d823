//! The web console at `/console`: server-rendered pages for people, behind a password and a
//! mandatory second factor (TOTP), with sessions kept server-side (`wacrm_store::accounts`,
//! `wacrm_store::console_sessions`). No script runs on its pages; its stylesheet is embedded in
//! the binary. docs/console.md describes it.

mod admin;
mod audit;
mod conversations;
mod operations;
mod page;
mod session;
mod sign_in;

use std::sync::Arc;

use axum::extract::Extension;
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;

use crate::config::ConsoleConfig;
use crate::AppState;

/// The console's routes.
pub fn routes(config: &ConsoleConfig) -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/conversations") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/conversations") }),
        )
        .route("/console/assets/app.css", get(page::stylesheet))
        .route(
            "/console/login",
            get(sign_in::login_page).post(sign_in::login),
        )
        .route("/console/mfa", get(sign_in::mfa_page).post(sign_in::mfa))
        .route("/console/logout", post(sign_in::logout))
        .route("/console/conversations", get(conversations::search))
        .route("/console/contacts/{id}", get(conversations::contact))
        .route("/console/contacts/{id}/send", post(conversations::send))
        .route("/console/audit", get(audit::screen))
        .route("/console/audit.csv", get(audit::export))
        .route("/console/operations", get(operations::screen))
        .route("/console/dead-letters/{id}/retry", post(operations::retry))
        .route("/console/admin", get(admin::screen))
        .route("/console/admin/accounts", post(admin::create_account))
        .route(
            "/console/admin/accounts/{id}/disable",
            post(admin::disable_account),
        )
        .route(
            "/console/admin/accounts/{id}/reset-mfa",
            post(admin::reset_mfa),
        )
        .route("/console/admin/keys", post(admin::create_key))
        .route("/console/admin/keys/{id}/revoke", post(admin::revoke_key))
        .layer(Extension(Arc::new(config.clone())))
}
