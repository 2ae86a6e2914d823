//! The signed webhook sink: for n8n, Zapier, an in-house system, or a CRM nobody wrote an
//! adapter for.
//!
//! - [`config`]: `[crm.connections.<name>]` with `kind = "webhook"` (`url`, `secret`).
//! - [`client`]: [`WebhookSink`], the [`wacrm_crm::CrmAdapter`] implementation (`check`), and
//!   [`WebhookKind`], its entry in the registry.
//! - [`mapping`]: contacts, messages and statuses as events, the batch body, and the signature.
//!
//! Each engine call becomes one POST of a JSON batch of events, signed with HMAC-SHA256 over
//! `"{timestamp}.{body}"` in the `X-Wacrm-Signature: t=…,v1=…` header. Delivery is at least
//! once: a request whose answer is lost is sent again, and every event carries an id the
//! receiver uses to drop repeats. Retried with backoff; a batch the receiver still refuses after
//! the configured attempts is dead-lettered (and can be re-driven with `wacrm dead-letters
//! retry`). docs/adapters/webhook.md shows how to verify a delivery in Python and Node.
//!
//! An erasure (`wacrm erase`, LGPD/GDPR) is a signed `contact.erased` event naming the contact
//! and its messages' wamids. The receiver's duty: delete the contact, every message on it and
//! their statuses, and keep no copy of the erasure event itself; wacrm counts the contact
//! erased in this connection once the receiver answered 2xx.

pub mod client;
pub mod config;
pub mod mapping;

pub use client::{WebhookKind, WebhookSink};
pub use config::WebhookConfig;
