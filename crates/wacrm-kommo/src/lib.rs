//! The Kommo (amoCRM) adapter, API v4.
//!
//! - [`config`]: `[crm.connections.<name>]` with `kind = "kommo"`.
//! - [`client`]: [`Kommo`], the [`wacrm_crm::CrmAdapter`] implementation (`setup`, `check`),
//!   and [`KommoKind`], its entry in the registry.
//! - [`mapping`]: contacts, notes and the error answers as Kommo's API v4 takes them.
//!
//! Kommo has no upsert on a unique field, so contacts follow
//! [`wacrm_crm::ContactProtocol::FindThenCreate`]: a contact is found by a `WhatsApp ID` custom
//! field (created by `wacrm crm setup --connection NAME`) or, for contacts made by hand, by
//! every spelling of the phone in Kommo's `PHONE` field (Brazil's 9th digit included; the
//! WhatsApp id is then written onto them), and created only when none is found, through the
//! engine's ledger. Contacts are read from Kommo's contact list into an index kept fresh with
//! `filter[updated_at][from]` — one call per batch instead of a search per contact and
//! spelling, whose matching rules Kommo does not document. Writes go in arrays (contacts,
//! notes, note edits), matched to their inputs by `request_id`; a call Kommo refuses whole for
//! one invalid item is sent again without it. A batch's messages are `common` notes on the
//! contact: one per contact per batch (up to `messages_per_note`), each message a line with
//! its direction, text, WhatsApp's time, wamid and delivery status, so the engine can find them
//! after a crash and statuses can update them. Requests keep to Kommo's 7 a second.
//!
//! Authentication: a private integration's long-lived token (`Authorization: Bearer`), or
//! OAuth 2 with a refresh token that Kommo rotates, kept in a file across restarts.

pub mod client;
pub mod config;
pub mod mapping;

pub use client::{Kommo, KommoKind};
pub use config::KommoConfig;
