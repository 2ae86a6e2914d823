//! `[crm.connections.<name>]` with `kind = "rdstation"`.

use serde::{Deserialize, Serialize};
use wacrm_crm::ConnectionConfig;

/// Where a contact's WhatsApp messages are logged. RD Station CRM v2 has no notes or
/// activities, and a task needs a deal (`deal_id` is required by RD Station's own n8n node):
/// there is no place on the contact alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogTo {
    /// On the contact's open deal (`status: ongoing`, the most recently updated), where the
    /// salesperson already works; when it has none, a deal "WhatsApp — <name>" is created in
    /// the configured pipeline and stage.
    #[default]
    Deal,
    /// On a deal of the contact's own in the configured `pipeline_id` (a WhatsApp pipeline),
    /// whatever its status: the conversation stays in one place and never mixes with sales
    /// deals. Created when missing.
    WhatsappDeal,
}

/// An RD Station CRM connection's settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RdStationConfig {
    /// The RD Station App Store app's client id.
    pub client_id: String,
    /// The app's client secret (`WACRM_CRM__CONNECTIONS__<NAME>__CLIENT_SECRET`). Never logged.
    pub client_secret: String,
    /// The refresh token of the authorisation (`…__REFRESH_TOKEN`). Never logged. RD Station
    /// rotates it on every use: the current one is kept in `token_file`.
    pub refresh_token: String,
    /// Where the rotated refresh token is kept (0600, replaced atomically). Empty:
    /// `data/crm/<connection>.oauth.json`.
    pub token_file: String,
    /// The API's base URL: production `https://api.rd.services/crm/v2`, staging
    /// `https://api-staging.rd.services/crm/v2`.
    pub base_url: String,
    /// The token endpoint: production `https://api.rd.services/oauth2/token`, staging
    /// `https://api-staging.rd.services/oauth2/token`.
    pub token_url: String,
    /// The slug of the contact custom field holding the WhatsApp id (an admin creates it:
    /// the API documents no way to).
    pub whatsapp_field: String,
    /// The user wacrm acts as (creator of tasks, owner of the deals it creates), by id…
    pub user_id: String,
    /// …or by e-mail. With neither, the account's only user.
    pub user_email: String,
    /// Where messages go.
    pub log_to: LogTo,
    /// The pipeline of the deals wacrm creates (required with `log_to = "whatsapp_deal"`;
    /// otherwise empty means the account's default).
    pub pipeline_id: String,
    /// The stage of the deals wacrm creates (empty: the pipeline's first).
    pub stage_id: String,
    /// The name of the deals wacrm creates: `<deal_name> — <contact's name>`.
    pub deal_name: String,
    /// Mark each task `completed` after creating it (one more request per task; without it
    /// every batch leaves an open task in the salesperson's list).
    pub complete_tasks: bool,
    /// Requests per rolling minute (RD Station: 120 on Basic, Pro and Advanced). Lower it when
    /// other integrations share the account.
    pub requests_per_minute: u32,
    /// Most messages in one task.
    pub messages_per_task: usize,
    /// What the engine needs: routing, minimisation, batching.
    #[serde(flatten)]
    pub sync: ConnectionConfig,
}

impl Default for RdStationConfig {
    fn default() -> Self {
        RdStationConfig {
            client_id: String::new(),
            client_secret: String::new(),
            refresh_token: String::new(),
            token_file: String::new(),
            base_url: "https://api.rd.services/crm/v2".into(),
            token_url: "https://api.rd.services/oauth2/token".into(),
            whatsapp_field: "whatsapp_id".into(),
            user_id: String::new(),
            user_email: String::new(),
            log_to: LogTo::Deal,
            pipeline_id: String::new(),
            stage_id: String::new(),
            deal_name: "WhatsApp".into(),
            complete_tasks: true,
            requests_per_minute: 120,
            messages_per_task: 50,
            sync: ConnectionConfig::default(),
        }
    }
}

impl RdStationConfig {
    /// The refresh-token file: `token_file`, or `data/crm/<connection>.oauth.json`.
    pub fn token_path(&self) -> std::path::PathBuf {
        if self.token_file.is_empty() {
            std::path::Path::new("data/crm").join(format!("{}.oauth.json", self.sync.name))
        } else {
            self.token_file.clone().into()
        }
    }
}

impl std::fmt::Debug for RdStationConfig {
    // Secrets are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &str| if s.is_empty() { "unset" } else { "set" };
        f.debug_struct("RdStationConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &set(&self.client_secret))
            .field("refresh_token", &set(&self.refresh_token))
            .field("token_file", &self.token_path())
            .field("base_url", &self.base_url)
            .field("token_url", &self.token_url)
            .field("whatsapp_field", &self.whatsapp_field)
            .field("user_id", &self.user_id)
            .field("log_to", &self.log_to)
            .field("pipeline_id", &self.pipeline_id)
            .field("stage_id", &self.stage_id)
            .field("complete_tasks", &self.complete_tasks)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("messages_per_task", &self.messages_per_task)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}
