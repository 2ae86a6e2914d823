//! WhatsApp configuration (`[whatsapp]`, `WACRM_WHATSAPP__…`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wacrm_core::optout::OptOutKeywords;
use wacrm_core::outbound::TemplateCategory;

/// The Graph API version used unless configured.
pub const DEFAULT_GRAPH_VERSION: &str = "v23.0";
/// Meta's default throughput per business number, messages per second.
pub const DEFAULT_MESSAGES_PER_SECOND: u32 = 80;
/// The most a business number can be upgraded to, messages per second.
pub const MAX_MESSAGES_PER_SECOND: u32 = 1000;

/// `[whatsapp]`. Secrets come from the environment or the config file and are never logged.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WhatsAppConfig {
    /// The Meta app secret that signs webhooks (`WACRM_WHATSAPP__APP_SECRET`). Without it every
    /// webhook is rejected.
    pub app_secret: Option<String>,
    /// The next app secret, accepted too while rotating (`WACRM_WHATSAPP__APP_SECRET_NEXT`).
    pub app_secret_next: Option<String>,
    /// The token Meta's subscription handshake must present (`WACRM_WHATSAPP__VERIFY_TOKEN`).
    pub verify_token: Option<String>,
    /// The business (system user) access token for sending (`WACRM_WHATSAPP__ACCESS_TOKEN`).
    /// Without it (and without per-number tokens) the send API answers 503.
    pub access_token: Option<String>,
    /// The Graph API base URL (`WACRM_WHATSAPP__GRAPH_BASE_URL`).
    pub graph_base_url: String,
    /// The Graph API version (`WACRM_WHATSAPP__GRAPH_VERSION`).
    pub graph_version: String,
    /// How long one Graph API call may take, in milliseconds.
    pub request_timeout_ms: u64,
    /// Messages per second per business number (Meta: 80 by default, up to 1,000 after an
    /// upgrade).
    pub messages_per_second: u32,
    /// Messages to one recipient from one number: one per `pair_period_ms` sustained…
    pub pair_period_ms: u64,
    /// …with bursts of up to this many (Meta allows up to 45, borrowed from later).
    pub pair_burst: u32,
    /// How long the sender keeps retrying a message that meets rate limits or transient errors
    /// before reporting it failed, in milliseconds.
    pub max_retry_ms: u64,
    /// The first retry's wait, in milliseconds (doubling for rate limits and transient errors,
    /// ×4 for the pair limit, as Meta advises for 131056).
    pub retry_base_ms: u64,
    /// Per business number (phone number id) settings.
    pub numbers: BTreeMap<String, NumberConfig>,
    /// Keywords that opt a contact out of (or back into) marketing messages.
    pub opt_out_keywords: OptOutKeywords,
    /// Approved templates' categories by name. A template not listed counts as marketing when
    /// deciding whether an opted-out contact may receive it.
    pub templates: BTreeMap<String, TemplateCategory>,
    /// A marketing template needs the contact's current opt-in for `marketing` (a consent
    /// record), not merely the absence of an opt-out. Off by default.
    pub marketing_requires_opt_in: bool,
}

/// `[whatsapp.numbers.<phone_number_id>]`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NumberConfig {
    /// An access token for this number only (another business account's, say).
    pub access_token: Option<String>,
    /// This number's throughput, if upgraded.
    pub messages_per_second: Option<u32>,
}

impl Default for WhatsAppConfig {
    fn default() -> Self {
        WhatsAppConfig {
            app_secret: None,
            app_secret_next: None,
            verify_token: None,
            access_token: None,
            graph_base_url: "https://graph.facebook.com".into(),
            graph_version: DEFAULT_GRAPH_VERSION.into(),
            request_timeout_ms: 15_000,
            messages_per_second: DEFAULT_MESSAGES_PER_SECOND,
            pair_period_ms: 6_000,
            pair_burst: 5,
            max_retry_ms: 600_000,
            retry_base_ms: 1_000,
            numbers: BTreeMap::new(),
            opt_out_keywords: OptOutKeywords::default(),
            templates: BTreeMap::new(),
            marketing_requires_opt_in: false,
        }
    }
}

fn set(v: &Option<String>) -> &'static str {
    if v.as_deref().is_some_and(|s| !s.is_empty()) {
        "set"
    } else {
        "unset"
    }
}

impl std::fmt::Debug for WhatsAppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppConfig")
            .field("app_secret", &set(&self.app_secret))
            .field("app_secret_next", &set(&self.app_secret_next))
            .field("verify_token", &set(&self.verify_token))
            .field("access_token", &set(&self.access_token))
            .field("graph_base_url", &self.graph_base_url)
            .field("graph_version", &self.graph_version)
            .field("messages_per_second", &self.messages_per_second)
            .field("pair_period_ms", &self.pair_period_ms)
            .field("pair_burst", &self.pair_burst)
            .field("numbers", &self.numbers.keys().collect::<Vec<_>>())
            .field("templates", &self.templates)
            .field("marketing_requires_opt_in", &self.marketing_requires_opt_in)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NumberConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumberConfig")
            .field("access_token", &set(&self.access_token))
            .field("messages_per_second", &self.messages_per_second)
            .finish()
    }
}

impl WhatsAppConfig {
    /// The webhook secrets.
    pub fn secrets(&self) -> crate::WebhookSecrets {
        crate::WebhookSecrets::new(self.app_secret.as_deref(), self.app_secret_next.as_deref())
    }

    /// The access token for a business number: its own, else the business token.
    pub fn access_token_for(&self, phone_number_id: &str) -> Option<&str> {
        self.numbers
            .get(phone_number_id)
            .and_then(|n| n.access_token.as_deref())
            .or(self.access_token.as_deref())
            .filter(|t| !t.is_empty())
    }

    /// Whether any access token is configured (sending is possible at all).
    pub fn can_send(&self) -> bool {
        self.access_token.as_deref().is_some_and(|t| !t.is_empty())
            || self
                .numbers
                .values()
                .any(|n| n.access_token.as_deref().is_some_and(|t| !t.is_empty()))
    }

    /// A number's throughput, messages per second, within Meta's bounds (1 to 1,000).
    pub fn messages_per_second_for(&self, phone_number_id: &str) -> u32 {
        self.numbers
            .get(phone_number_id)
            .and_then(|n| n.messages_per_second)
            .unwrap_or(self.messages_per_second)
            .clamp(1, MAX_MESSAGES_PER_SECOND)
    }

    /// A template's category, when configured.
    pub fn template_category(&self, name: &str) -> Option<TemplateCategory> {
        self.templates.get(name).copied()
    }
}
