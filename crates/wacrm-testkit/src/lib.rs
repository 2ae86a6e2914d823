//! Test support for wacrm.
//!
//! This crate is only ever a `dev-dependency`. Its [`openapi`] module validates JSON payloads
//! against the third-party OpenAPI documents kept beside the project in `../shared/specs`
//! (Meta's WhatsApp Business Platform document, HubSpot's CRM documents), with every known defect
//! of those documents patched *explicitly* and by name, so a test says exactly where it departs
//! from the published schema.
//!
//! Its [`hubspot`] module is a stateful fake of HubSpot's CRM API (contacts, communications,
//! notes, associations, properties, owners) that validates every request against HubSpot's own
//! documents and plays HubSpot's rate limits and injected faults, for CRM adapter and end-to-end
//! tests.
//!
//! Its [`zoho`] module is a stateful fake of Zoho CRM's API (OAuth token endpoint, contact
//! fields, COQL, contact upserts and updates, notes) validating every request against Zoho's
//! v8 documents, with their defects patched by name, and counting API credits.

pub mod bus;
pub mod conformance;
pub mod graph;
pub mod hubspot;
pub mod kommo;
mod loopback;
pub mod memory;
pub mod openapi;
pub mod pipedrive;
pub mod postgres;
pub mod rdstation;
pub mod salesforce;
pub mod sink;
pub mod webhooks;
pub mod zoho;
