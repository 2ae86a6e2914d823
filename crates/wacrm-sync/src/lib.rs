//! wacrm's CRM sync engine.
//!
//! An adapter ([`CrmAdapter`]) only speaks to its CRM: upsert contacts, log messages on their
//! timelines, update statuses, find a message it may already hold. Everything else is written
//! once here: consuming the bus as one consumer group per connection, batching, grouping by
//! contact, the contact link table, the idempotency ledger (no duplicate timeline entries, even
//! across a crash between the CRM write and the ledger write), rate limiting within the CRM's
//! published limits ([`http::CrmHttp`]), retries with backoff, parking on daily quotas, dead
//! letters for genuinely bad input, data minimisation and routing. See docs/sync.md.

pub mod adapter;
pub mod config;
pub mod engine;
pub mod http;
pub mod minimise;

pub use adapter::{
    AdapterLimits, ContactSync, CrmAdapter, CrmError, ItemResult, MessageSync, StatusSync,
};
pub use config::{BodyPolicy, ConnectionConfig, Minimisation};
pub use engine::SyncEngine;
