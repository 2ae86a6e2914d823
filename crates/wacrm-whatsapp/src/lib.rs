//! The WhatsApp Business Platform (Cloud API) side of wacrm.
//!
//! - [`signature`]: `X-Hub-Signature-256` verification, with a second secret during rotation.
//! - [`handshake`]: the GET subscription handshake.
//! - [`webhook`]: lenient types for Meta's `WebhookPayload`.
//! - [`normalise`]: every entry × change × message / status / error of a payload turned into
//!   core events, with anything unreadable kept as a rejected item instead of being dropped.
//! - [`graph`]: the Graph API's send endpoint: request bodies, the client, error classification.
//! - [`health`]: which business numbers cannot send (rejected access token).

pub mod config;
pub mod graph;
pub mod handshake;
pub mod health;
pub mod normalise;
pub mod signature;
pub mod webhook;

pub use config::WhatsAppConfig;
pub use graph::{GraphClient, GraphError};
pub use health::SendHealth;
pub use normalise::{normalise, Normalised, Rejected};
pub use signature::{SignatureError, WebhookSecrets};
