//! Test support for wacrm.
//!
//! This crate is only ever a `dev-dependency`. Its [`openapi`] module validates JSON payloads
//! against the third-party OpenAPI documents kept beside the project in `../shared/specs`
//! (Meta's WhatsApp Business Platform document, HubSpot's CRM documents), with every known defect
//! of those documents patched *explicitly* and by name, so a test says exactly where it departs
//! from the published schema.

pub mod openapi;
