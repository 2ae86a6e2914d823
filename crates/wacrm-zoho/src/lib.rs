//! The Zoho CRM adapter.
//!
//! - [`config`]: `[crm.connections.<name>]` with `kind = "zoho"`.
//! - [`client`]: [`Zoho`], the [`wacrm_crm::CrmAdapter`] implementation (`setup`, `check`), and
//!   [`ZohoKind`], its entry in the registry.
//! - [`mapping`]: contacts, notes, COQL and Zoho's error answers.
//!
//! Zoho CRM v8, authorised with OAuth 2 (a refresh token; `Authorization: Zoho-oauthtoken`),
//! at the data centre's API domain. Contacts are upserted on a unique `WhatsApp ID` field
//! (created by `wacrm crm setup --connection NAME`), up to 100 a call; before that, contacts
//! people made by hand are found by COQL over every spelling of the phone in `Phone` and
//! `Mobile` (COQL reads what Zoho holds at once; the search API's index lags) and given the
//! WhatsApp id. A batch's messages are notes — one per contact, up to 100 notes a call — whose
//! text carries each message's direction, sender, time, wamid and status
//! ([`wacrm_crm::transcript`]): Zoho's notes have no custom fields.

pub mod client;
pub mod config;
pub mod mapping;

pub use client::{Zoho, ZohoKind};
pub use config::ZohoConfig;
