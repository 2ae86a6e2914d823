//! The Pipedrive adapter.
//!
//! - [`config`]: `[crm.connections.<name>]` with `kind = "pipedrive"`.
//! - [`client`]: [`Pipedrive`], the [`wacrm_crm::CrmAdapter`] implementation (`setup`,
//!   `check`), and [`PipedriveKind`], its entry in the registry.
//! - [`mapping`]: persons, notes and the error answers as Pipedrive's v1 / v2 APIs take them.
//!
//! Pipedrive has no upsert on a unique field, so contacts follow
//! [`wacrm_crm::ContactProtocol::FindThenCreate`]: a person is found by a `WhatsApp ID` custom
//! field (created by `wacrm crm setup --connection NAME`) or, for persons made by hand, by every
//! spelling of the phone (Brazil's 9th digit included; the WhatsApp id is then written onto
//! them), and created only when none is found, through the engine's ledger. Persons are read
//! from Pipedrive's person list into an index kept fresh with `updated_since` — one call per
//! batch instead of a search per contact and spelling, and it sees a person the moment it is
//! created (a search index may lag). A batch's messages are notes: one per contact per batch
//! (up to `messages_per_note`), each message a line with its direction, sender, WhatsApp's time,
//! wamid and delivery status, so the engine can find them after a crash and statuses can
//! update them. API v2 where it exists (persons); v1 for notes, person fields and `users/me`,
//! which have no v2 and are not deprecated. The Channels API (gone since 2026-02) is not used.

pub mod client;
pub mod config;
pub mod mapping;

pub use client::{Pipedrive, PipedriveKind};
pub use config::PipedriveConfig;
