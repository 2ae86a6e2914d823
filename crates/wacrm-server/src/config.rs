//! HTTP configuration (`[server]`, `WACRM_SERVER__…`).

use std::time::Duration;

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
    /// How long a connection may take to send a request's head, and how long an idle
    /// keep-alive connection is kept, in milliseconds; a connection that overruns it is closed,
    /// so silent or trickling clients do not hold connections (and their memory). 0 turns the
    /// deadline off.
    pub header_read_timeout_ms: u64,
    /// How long a webhook's body may take to arrive once its head has, in milliseconds; a body
    /// that overruns it gets 408 (Meta retries) and its connection is closed. 0 turns the
    /// deadline off.
    pub body_read_timeout_ms: u64,
    /// API calls one key may make per second, sustained; over it a call gets 429 with
    /// `Retry-After`. 0 turns the limit off.
    pub requests_per_key_per_second: u32,
    /// API calls one key may make at once before the rate applies.
    pub requests_per_key_burst: u32,
    /// The web console (`/console`).
    pub console: ConsoleConfig,
}

/// `[server.console]`: the web console's sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleConfig {
    /// Session cookies carry `Secure` (sent over HTTPS only). Turn off only for plain-HTTP
    /// development on localhost: a cookie sent in clear text can be stolen on the way.
    pub secure_cookies: bool,
    /// A session idle this long ends, in minutes.
    pub idle_timeout_minutes: u32,
    /// A session ends this long after sign-in however active, in hours.
    pub absolute_timeout_hours: u32,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            secure_cookies: true,
            idle_timeout_minutes: 30,
            absolute_timeout_hours: 12,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 4 * 1024 * 1024,
            event_source: "/wacrm".into(),
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 30_000,
            requests_per_key_per_second: 200,
            requests_per_key_burst: 400,
            console: ConsoleConfig::default(),
        }
    }
}

impl ServerConfig {
    /// [`ServerConfig::header_read_timeout_ms`]; `None` when it is off.
    pub fn header_read_timeout(&self) -> Option<Duration> {
        deadline(self.header_read_timeout_ms)
    }

    /// [`ServerConfig::body_read_timeout_ms`]; `None` when it is off.
    pub fn body_read_timeout(&self) -> Option<Duration> {
        deadline(self.body_read_timeout_ms)
    }
}

fn deadline(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}
