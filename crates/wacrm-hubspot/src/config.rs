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
            sync: ConnectionConfig::default(),
        }
    }
}
