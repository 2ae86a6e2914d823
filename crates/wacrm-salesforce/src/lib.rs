//! The Salesforce adapter.
//!
//! - [`config`]: `[crm.connections.<name>]` with `kind = "salesforce"`.
//! - [`client`]: [`Salesforce`], the [`wacrm_crm::CrmAdapter`] implementation (`setup`,
//!   `check`), and [`SalesforceKind`], its entry in the registry.
//! - [`mapping`]: contacts, message records, SOQL and Salesforce's error answers.
//!
//! Salesforce's REST API (`/services/data/vXX.X`, pinned at v46.0 or later), authorised with
//! OAuth 2 — the client-credentials grant, or the JWT bearer grant — at the org's
//! `instance_url`. Contacts are found by a WhatsApp-id field marked External ID (SOQL), then,
//! for contacts people made by hand, by every spelling of the phone in `Phone` and
//! `MobilePhone` (SOQL, which reads what the org holds at once), and the rest are upserted on
//! the External ID, 200 a call (sObject Collections). Each message is a record of a custom
//! object, `WhatsApp_Message__c`, upserted on its wamid (an External ID): sending it again is
//! harmless, and `find_messages` is a query. `setup` creates the field and the object through
//! the Tooling API.

pub mod client;
pub mod config;
pub mod mapping;

pub use client::{Salesforce, SalesforceKind};
pub use config::SalesforceConfig;
