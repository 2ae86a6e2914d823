//! The OpenAPI document, served at `/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::auth::Caller;
use crate::{api, auth, erasure, metrics_endpoint, privacy, send, status, webhook};

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
        send::send_message, send::mark_read, send::get_request,
        privacy::record_consent, privacy::contact_consent, privacy::export_contact,
        erasure::erase_contact, erasure::get_erasure,
        metrics_endpoint::render, status::status, serve,
    ),
    components(schemas(auth::ApiError, api::Readiness, send::Refused, send::RequestDetail,
        privacy::RecordConsent, privacy::ConsentRecorded, privacy::ContactDetail,
        wacrm_store::erasure::Erasure, wacrm_store::erasure::StepState)),
    modifiers(&BearerKeys)
)]
pub struct ApiDoc;

/// The whole document as JSON: utoipa's paths and schemas, plus the send request's schema,
/// generated from the core types (schemars, JSON Schema 2020-12 as OpenAPI 3.1 uses).
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas/".into())
        .into_generator();
    let schema = generator.root_schema_for::<send::SendMessage>();
    let mut defs = generator.take_definitions(true);
    let mut root = schema.to_value();
    if let Some(o) = root.as_object_mut() {
        o.remove("$schema");
        o.remove("$defs");
    }
    defs.insert("SendMessage".into(), root);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    {
        for (name, schema) in defs {
            schemas.insert(name, schema);
        }
    }
    if let Some(content) =
        doc.pointer_mut("/paths/~1v1~1messages/post/requestBody/content/application~1json")
    {
        *content = serde_json::json!({"schema": {"$ref": "#/components/schemas/SendMessage"}});
    }
    doc
}

/// `GET /openapi.json`: for any valid key (the document describes the API, not its data).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "this document"),
        (status = 401, description = "no, an unknown, revoked or expired key", body = crate::auth::ApiError),
    )
)]
pub async fn serve(_caller: Caller) -> Json<serde_json::Value> {
    Json(document())
}
