//! `[crm.connections.<name>]` with `kind = "webhook"`.

use serde::{Deserialize, Serialize};
use wacrm_crm::ConnectionConfig;

/// A webhook sink's settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    /// Where batches are POSTed (`https://…`; `http://` only to loopback).
    pub url: String,
    /// The shared secret of the HMAC-SHA256 signature (`WACRM_CRM__CONNECTIONS__<NAME>__SECRET`),
    /// at least 16 bytes. Never logged.
    pub secret: String,
    /// Most events per POST.
    pub events_per_request: usize,
    /// Most POSTs per second.
    pub requests_per_s: u32,
    /// Attempts per batch (5xx, timeouts, refused connections) before it is dead-lettered; a
    /// 429 is waited out, never dead-lettered.
    pub attempts: u32,
    /// First delay between attempts, in milliseconds (doubling, with jitter).
    pub retry_backoff_ms: u64,
    /// Longest delay between attempts, in milliseconds.
    pub max_retry_backoff_ms: u64,
    /// What the engine needs: routing, minimisation, batching.
    #[serde(flatten)]
    pub sync: ConnectionConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            secret: String::new(),
            events_per_request: 100,
            requests_per_s: 20,
            attempts: 8,
            retry_backoff_ms: 500,
            max_retry_backoff_ms: 30_000,
            sync: ConnectionConfig::default(),
        }
    }
}

impl std::fmt::Debug for WebhookConfig {
    // The secret is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field(
                "secret",
                &if self.secret.is_empty() {
                    "unset"
                } else {
                    "set"
                },
            )
            .field("events_per_request", &self.events_per_request)
            .field("requests_per_s", &self.requests_per_s)
            .field("attempts", &self.attempts)
            .field("sync", &self.sync)
            .finish()
    }
}

impl WebhookConfig {
    /// What is wrong with the settings, if anything.
    pub fn problem(&self) -> Option<String> {
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
        if self.url.is_empty() {
            Some("url is missing".into())
        } else if !self.url.starts_with("https://")
            && !loopback.iter().any(|l| self.url.starts_with(l))
        {
            Some(
                "url must be https:// (http:// only to loopback): the body is personal data".into(),
            )
        } else if self.secret.len() < 16 {
            Some("secret must be at least 16 bytes".into())
        } else if self.events_per_request == 0 || self.requests_per_s == 0 || self.attempts == 0 {
            Some("events_per_request, requests_per_s and attempts must be at least 1".into())
        } else {
            None
        }
    }
}
