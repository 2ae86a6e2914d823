//! The HubSpot adapter.
//!
//! - [`config`]: `[crm.connections.<name>]` with `kind = "hubspot"`.
//! - [`client`]: [`HubSpot`], the [`wacrm_crm::CrmAdapter`] implementation (`setup`, `check`),
//!   and [`HubSpotKind`], its entry in the registry.
//! - [`mapping`]: contacts, communications and searches as HubSpot's CRM v3 / v4 APIs take them.
//!
//! Contacts are keyed by a unique contact property holding the WhatsApp id (`whatsapp_id`,
//! created by `wacrm crm setup --connection NAME`); before creating one, contacts that people created by
//! hand are found by phone (typed and calculated phone properties, every spelling, with and
//! without Brazil's 9th digit) and linked instead. Messages are Communications with channel
//! `WHATS_APP`, associated to the contact (type 81), carrying the wamid in a `wacrm_wamid`
//! property so the engine can reconcile after a crash and statuses can find them.

pub mod client;
pub mod config;
pub mod mapping;

pub use client::{HubSpot, HubSpotKind};
pub use config::HubSpotConfig;
