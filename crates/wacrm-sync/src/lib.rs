//! wacrm's CRM sync engine.
//!
//! An adapter ([`CrmAdapter`], from the SDK crate `wacrm-crm`) only speaks to its CRM: upsert contacts, log messages on their
//! timelines, update statuses, find a message it may already hold. Everything else is written
//! once here: consuming the bus as one consumer group per connection, batching, grouping by
//! contact, the contact link table, the idempotency ledger (no duplicate timeline entries, even
//! across a crash between the CRM write and the ledger write), rate limiting within the CRM's
//! published limits ([`http::CrmHttp`]), retries with backoff, parking on daily quotas, dead
//! letters for genuinely bad input, data minimisation and routing. See docs/sync.md.

pub mod engine;
pub mod minimise;

// The adapter API lives in the SDK crate (`wacrm-crm`); re-exported so the engine's users
// need one import.
pub use engine::SyncEngine;
pub use wacrm_crm::connection as config;
pub use wacrm_crm::{adapter, http};
pub use wacrm_crm::{
    AdapterLimits, BodyPolicy, ConnectionConfig, ContactProtocol, ContactSync, CrmAdapter,
    CrmError, ItemResult, MessageSync, Minimisation, StatusSync,
};
