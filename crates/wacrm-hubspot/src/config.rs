//! HubSpot connection configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wacrm_crm::ConnectionConfig;

/// `[crm.connections.<name>]` with `kind = "hubspot"`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HubSpotConfig {
    /// Private-app access token (`WACRM_CRM__CONNECTIONS__<NAME>__TOKEN`). Scopes:
    /// `crm.objects.contacts.read`, `crm.objects.contacts.write`, `crm.schemas.contacts.write`
    /// (setup), and the communications scopes of your account.
    pub token: String,
    /// API base URL.
    pub base_url: String,
    /// The unique contact property holding the WhatsApp id.
    pub whatsapp_property: String,
    /// Business number (phone number id) → `hubspot_owner_id` of contacts and messages.
    pub owners: BTreeMap<String, String>,
    /// Requests allowed per rolling 10 seconds (100, or 190 on Professional / Enterprise).
    pub requests_per_10s: u32,
    /// Search requests allowed per second (the search API's own limit: 5).
    pub search_requests_per_s: u32,
    /// What the engine needs: routing, minimisation, rate limits, batching.
    #[serde(flatten)]
    pub sync: ConnectionConfig,
}

impl std::fmt::Debug for HubSpotConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpotConfig")
            .field(
                "token",
                &if self.token.is_empty() {
                    "unset"
                } else {
                    "set"
                },
            )
            .field("base_url", &self.base_url)
            .field("whatsapp_property", &self.whatsapp_property)
            .field("owners", &self.owners)
            .field("requests_per_10s", &self.requests_per_10s)
            .field("search_requests_per_s", &self.search_requests_per_s)
            .field("sync", &self.sync)
            .finish()
    }
}

impl Default for HubSpotConfig {
    fn default() -> Self {
        HubSpotConfig {
            token: String::new(),
            base_url: "https://api.hubapi.com".into(),
            whatsapp_property: "whatsapp_id".into(),
            owners: BTreeMap::new(),
            requests_per_10s: 100,
            search_requests_per_s: 5,
            sync: ConnectionConfig::default(),
        }
    }
}
