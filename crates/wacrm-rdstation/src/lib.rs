//! The RD Station CRM adapter (API v2).
//!
//! - [`config`]: `[crm.connections.<name>]` with `kind = "rdstation"`.
//! - [`client`]: [`RdStation`], the [`wacrm_crm::CrmAdapter`] implementation (`setup`,
//!   `check`), and [`RdStationKind`], its entry in the registry.
//! - [`mapping`]: contacts, the Portuguese text of the tasks, RDQL and RD's error answers.
//!
//! CRM v2 at `https://api.rd.services/crm/v2`, authorised with OAuth 2: a refresh token that
//! RD Station **rotates on every use** (the old one stops working), so the current one is kept
//! in a file of the connection's (`token_file`) and survives a restart; `Authorization:
//! Bearer`, access tokens of 7,200 s. 120 requests a minute.
//!
//! RD Station has no upsert, so contacts follow [`wacrm_crm::ContactProtocol::FindThenCreate`]:
//! a contact is found by a WhatsApp-id custom field (an admin creates it; the API documents no
//! way to) or, for contacts made by hand, by every spelling of the phone (Brazil's 9th digit
//! included; the WhatsApp id is then written on), in one RDQL request per ten contacts, and
//! created only when none is found, through the engine's ledger.
//!
//! v2 has no notes or activities: a batch's messages become one completed task of type
//! `whatsapp` per contact, on the contact's open deal (or a deal of its own, `log_to`),
//! with one line per message in Portuguese (direction, time, wamid, status) that statuses
//! rewrite and that `find_messages` reads back after a crash.

pub mod client;
pub mod config;
pub mod mapping;

pub use client::{RdStation, RdStationKind};
pub use config::{LogTo, RdStationConfig};
