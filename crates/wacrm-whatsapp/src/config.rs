//! WhatsApp configuration (`[whatsapp]`, `WACRM_WHATSAPP__…`).

use serde::{Deserialize, Serialize};

/// `[whatsapp]`. Secrets come from the environment or the config file and are never logged.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WhatsAppConfig {
    /// The Meta app secret that signs webhooks (`WACRM_WHATSAPP__APP_SECRET`). Without it every
    /// webhook is rejected.
    pub app_secret: Option<String>,
    /// The next app secret, accepted too while rotating (`WACRM_WHATSAPP__APP_SECRET_NEXT`).
    pub app_secret_next: Option<String>,
    /// The token Meta's subscription handshake must present (`WACRM_WHATSAPP__VERIFY_TOKEN`).
    pub verify_token: Option<String>,
}

impl std::fmt::Debug for WhatsAppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| {
            if v.as_deref().is_some_and(|s| !s.is_empty()) {
                "set"
            } else {
                "unset"
            }
        };
        f.debug_struct("WhatsAppConfig")
            .field("app_secret", &set(&self.app_secret))
            .field("app_secret_next", &set(&self.app_secret_next))
            .field("verify_token", &set(&self.verify_token))
            .finish()
    }
}

impl WhatsAppConfig {
    /// The webhook secrets.
    pub fn secrets(&self) -> crate::WebhookSecrets {
        crate::WebhookSecrets::new(self.app_secret.as_deref(), self.app_secret_next.as_deref())
    }
}
