//! The pure domain of wacrm.
//!
//! Everything here is plain data and pure functions: contacts and their identities, messages and
//! their content, delivery statuses and how they merge, conversation keys, and the versioned
//! events that travel on the bus. This crate performs no IO and knows nothing about Kafka, SQL or
//! HTTP, so integrators can depend on it alone to read wacrm's events.

pub mod consent;
pub mod contact;
pub mod conversation;
pub mod error;
pub mod event;
pub mod message;
pub mod optout;
pub mod outbound;
pub mod phone;
pub mod rate;
pub mod redact;
pub mod status;

pub use contact::{ContactIdentity, ContactProfile, IdentityKey};
pub use conversation::{BusinessNumber, ConversationKey};
pub use error::ErrorClass;
pub use event::{Event, EventId, EventPayload};
pub use message::{Direction, Message, MessageContent};
pub use phone::{PhoneError, E164};
pub use status::{DeliveryState, MessageStatus, MetaError, StatusUpdate};
