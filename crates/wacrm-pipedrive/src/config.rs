//! `[crm.connections.<name>]` with `kind = "pipedrive"`.

use serde::{Deserialize, Serialize};
use wacrm_crm::ConnectionConfig;

/// A Pipedrive connection's settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PipedriveConfig {
    /// The API token of the user wacrm acts as (`WACRM_CRM__CONNECTIONS__<NAME>__TOKEN`), sent in
    /// the `x-api-token` header. Never logged.
    pub token: String,
    /// The company's API address, `https://<company>.pipedrive.com`.
    pub base_url: String,
    /// The name of the person field holding the WhatsApp id (`crm setup` creates it).
    pub whatsapp_field: String,
    /// Requests allowed per rolling 2 seconds for this token: Lite 20, Growth 40, Premium 100,
    /// Ultimate 120.
    pub requests_per_2s: u32,
    /// Most messages in one note (a contact's messages of one batch share notes).
    pub messages_per_note: usize,
    /// What the engine needs: routing, minimisation, batching.
    #[serde(flatten)]
    pub sync: ConnectionConfig,
}

impl Default for PipedriveConfig {
    fn default() -> Self {
        PipedriveConfig {
            token: String::new(),
            base_url: String::new(),
            whatsapp_field: "WhatsApp ID".into(),
            requests_per_2s: 20,
            messages_per_note: 50,
            sync: ConnectionConfig::default(),
        }
    }
}

impl std::fmt::Debug for PipedriveConfig {
    // The token is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipedriveConfig")
            .field(
                "token",
                &if self.token.is_empty() {
                    "unset"
                } else {
                    "set"
                },
            )
            .field("base_url", &self.base_url)
            .field("whatsapp_field", &self.whatsapp_field)
            .field("requests_per_2s", &self.requests_per_2s)
            .field("messages_per_note", &self.messages_per_note)
            .field("sync", &self.sync)
            .finish()
    }
}
