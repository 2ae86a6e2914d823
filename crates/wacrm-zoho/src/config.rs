//! `[crm.connections.<name>]` with `kind = "zoho"`.

use serde::{Deserialize, Serialize};
use wacrm_crm::ConnectionConfig;

/// A Zoho CRM connection's settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ZohoConfig {
    /// The OAuth client's id (a "self client" or server-based client in Zoho's API console).
    pub client_id: String,
    /// The OAuth client's secret (`WACRM_CRM__CONNECTIONS__<NAME>__CLIENT_SECRET`). Never logged.
    pub client_secret: String,
    /// The refresh token of the authorisation (`…__REFRESH_TOKEN`). Never logged. Zoho does not
    /// rotate it.
    pub refresh_token: String,
    /// The accounts server of the org's data centre (`https://accounts.zoho.com`, `.eu`, `.in`,
    /// `.com.au`, `.jp`, `.com.cn`, `.sa`, or `https://accounts.zohocloud.ca`).
    pub accounts_url: String,
    /// The API domain of the org's data centre (`https://www.zohoapis.com`, `.eu`, …).
    pub api_domain: String,
    /// The label of the contact field holding the WhatsApp id (`crm setup` creates it, unique).
    pub whatsapp_field: String,
    /// Requests per second (Zoho limits concurrency and daily credits, not a rate: this keeps
    /// a connection from using the org's concurrency alone).
    pub requests_per_s: u32,
    /// Most messages in one note.
    pub messages_per_note: usize,
    /// What the engine needs: routing, minimisation, batching.
    #[serde(flatten)]
    pub sync: ConnectionConfig,
}

impl Default for ZohoConfig {
    fn default() -> Self {
        ZohoConfig {
            client_id: String::new(),
            client_secret: String::new(),
            refresh_token: String::new(),
            accounts_url: "https://accounts.zoho.com".into(),
            api_domain: "https://www.zohoapis.com".into(),
            whatsapp_field: "WhatsApp ID".into(),
            requests_per_s: 5,
            messages_per_note: 50,
            sync: ConnectionConfig::default(),
        }
    }
}

impl std::fmt::Debug for ZohoConfig {
    // Secrets are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &str| if s.is_empty() { "unset" } else { "set" };
        f.debug_struct("ZohoConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &set(&self.client_secret))
            .field("refresh_token", &set(&self.refresh_token))
            .field("accounts_url", &self.accounts_url)
            .field("api_domain", &self.api_domain)
            .field("whatsapp_field", &self.whatsapp_field)
            .field("requests_per_s", &self.requests_per_s)
            .field("messages_per_note", &self.messages_per_note)
            .field("sync", &self.sync)
            .finish()
    }
}
