//! HTTP configuration (`[server]`, `WACRM_SERVER__…`).

use serde::{Deserialize, Serialize};

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest webhook body accepted; larger ones get 413. Meta sends up to 3 MB.
    pub max_body_bytes: usize,
    /// The CloudEvents `source` of the events this instance publishes.
    pub event_source: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 4 * 1024 * 1024,
            event_source: "/wacrm".into(),
        }
    }
}
