//! The OpenAPI document, served at `/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{api, auth, webhook};

struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// wacrm's API.
#[derive(OpenApi)]
#[openapi(
    info(title = "wacrm", description = "WhatsApp Business conversations into CRMs through an event bus"),
    paths(
        webhook::handshake, webhook::receive,
        api::list_contacts, api::get_contact, api::contact_messages, api::get_message,
        api::dead_letters, api::retry_dead_letter, api::audit_log, api::healthz, api::readyz,
    ),
    components(schemas(auth::ApiError, api::Readiness)),
    modifiers(&BearerKeys)
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
