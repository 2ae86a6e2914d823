//! wacrm's CRM adapter SDK: what an adapter for one CRM is written against, and nothing that
//! knows any CRM.
//!
//! - [`adapter`]: the [`CrmAdapter`] trait (upsert contacts, log messages on their timelines,
//!   update statuses, find a message the CRM may already hold, erase a contact), its DTOs, and
//!   [`CrmError`], whose variants are the engine's retry / dead-letter / fatal classes;
//! - [`http`]: [`http::CrmHttp`], the request helper that keeps to the CRM's published rate
//!   limits and never repeats a request that may have been applied unless the adapter declared it
//!   safe to repeat;
//! - [`oauth`]: OAuth 2 access tokens for it, and the [`oauth::RefreshTokenStore`]s that keep a
//!   rotating refresh token — a file per process, or a store every instance shares
//!   ([`oauth::share_refresh_tokens`]);
//! - [`connection`]: [`ConnectionConfig`], the settings every connection has whatever its CRM
//!   (name, business numbers, data minimisation, reconciliation delay);
//! - [`registry`]: [`registry::Registry`], the one list of adapter kinds a build knows;
//! - [`transcript`] and [`batch`]: messages as the lines of a CRM note, and a batch fanned out
//!   over one request per note and gathered back in order, for CRMs without batch writes.
//!
//! The sync engine (`wacrm-sync`) consumes the bus and drives an adapter through this API; an
//! adapter crate depends on this crate only, so it never compiles the bus, the store or a Kafka
//! client.

pub mod adapter;
pub mod batch;
pub mod connection;
pub mod http;
pub mod oauth;
pub mod registry;
pub mod transcript;

pub use adapter::{
    AdapterLimits, ContactErasure, ContactProtocol, ContactSync, CrmAdapter, CrmError, Erasure,
    ItemResult, MessageSync, StatusSync,
};
pub use connection::{BodyPolicy, ConnectionConfig, Minimisation};
pub use registry::{AdapterKind, Built, Registry};
