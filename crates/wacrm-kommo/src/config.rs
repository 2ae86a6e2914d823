//! `[crm.connections.<name>]` with `kind = "kommo"`.

use serde::{Deserialize, Serialize};
use wacrm_crm::ConnectionConfig;

/// A Kommo (amoCRM) connection's settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KommoConfig {
    /// The account's subdomain: `acme` for `https://acme.kommo.com` (the API is
    /// `https://acme.kommo.com/api/v4`). Ignored when `base_url` is set.
    pub subdomain: String,
    /// The account's address, overriding `subdomain`: an amoCRM domain
    /// (`https://acme.amocrm.ru`, `https://acme.amocrm.com`) or a test server. Without `/api/v4`.
    pub base_url: String,
    /// A private integration's long-lived token (`WACRM_CRM__CONNECTIONS__<NAME>__TOKEN`), sent
    /// as `Authorization: Bearer …`: the recommended credential, which never needs renewing.
    /// Never logged.
    pub token: String,
    /// OAuth 2 instead of the long-lived token: the integration's client id (with
    /// `client_secret` and `refresh_token`). Empty: not used.
    pub client_id: String,
    /// The integration's secret key (`…__CLIENT_SECRET`). Never logged.
    pub client_secret: String,
    /// The refresh token of the authorisation, done once (`…__REFRESH_TOKEN`). Kommo rotates
    /// refresh tokens: the newest is kept in `token_file`. Never logged.
    pub refresh_token: String,
    /// Where the rotated refresh token is kept across restarts (a file of its own, one process
    /// per file). Empty: `data/crm/<connection>.oauth.json` (as every connection that keeps a token).
    pub token_file: String,
    /// The OAuth token endpoint; empty means `<account address>/oauth2/access_token`
    /// (unverified against a live account).
    pub token_url: String,
    /// The integration's redirect URI, sent with every token request as amoCRM's OAuth page
    /// asks (`…__REDIRECT_URI`). Empty: not sent.
    pub redirect_uri: String,
    /// The name of the contact custom field holding the WhatsApp id (`crm setup` creates it).
    pub whatsapp_field: String,
    /// The code of that field (`crm setup` gives it; it is looked up by code first, by name
    /// second).
    pub whatsapp_field_code: String,
    /// Requests per second: Kommo documents at most 7 (the SDK's window keeps a margin below).
    pub requests_per_second: u32,
    /// Most entities in one add or update call (Kommo takes arrays; its maximum is not
    /// documented where we looked — 50 is what it documents for complex leads).
    pub writes_per_request: usize,
    /// Most messages in one note (a contact's messages of one batch share notes).
    pub messages_per_note: usize,
    /// What the engine needs: routing, minimisation, batching.
    #[serde(flatten)]
    pub sync: ConnectionConfig,
}

impl Default for KommoConfig {
    fn default() -> Self {
        KommoConfig {
            subdomain: String::new(),
            base_url: String::new(),
            token: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            refresh_token: String::new(),
            token_file: String::new(),
            token_url: String::new(),
            redirect_uri: String::new(),
            whatsapp_field: "WhatsApp ID".into(),
            whatsapp_field_code: "WHATSAPP_ID".into(),
            requests_per_second: 7,
            writes_per_request: 50,
            messages_per_note: 50,
            sync: ConnectionConfig::default(),
        }
    }
}

impl KommoConfig {
    /// The account's address: `base_url`, else `https://<subdomain>.kommo.com`; `None` when
    /// neither is set.
    pub fn account_url(&self) -> Option<String> {
        if !self.base_url.trim().is_empty() {
            return Some(self.base_url.trim().trim_end_matches('/').to_owned());
        }
        let sub = self.subdomain.trim();
        (!sub.is_empty()).then(|| format!("https://{sub}.kommo.com"))
    }

    /// Whether the connection authenticates with OAuth 2 rather than a long-lived token.
    pub fn uses_oauth(&self) -> bool {
        !self.client_id.is_empty()
    }
}

impl std::fmt::Debug for KommoConfig {
    // Secrets are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &str| if s.is_empty() { "unset" } else { "set" };
        f.debug_struct("KommoConfig")
            .field("subdomain", &self.subdomain)
            .field("base_url", &self.base_url)
            .field("token", &set(&self.token))
            .field("client_id", &self.client_id)
            .field("client_secret", &set(&self.client_secret))
            .field("refresh_token", &set(&self.refresh_token))
            .field("token_file", &self.token_file)
            .field("token_url", &self.token_url)
            .field("redirect_uri", &self.redirect_uri)
            .field("whatsapp_field", &self.whatsapp_field)
            .field("whatsapp_field_code", &self.whatsapp_field_code)
            .field("requests_per_second", &self.requests_per_second)
            .field("writes_per_request", &self.writes_per_request)
            .field("messages_per_note", &self.messages_per_note)
            .field("sync", &self.sync)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subdomain_makes_the_address_and_base_url_overrides_it() {
        let mut c = KommoConfig {
            subdomain: "acme".into(),
            ..KommoConfig::default()
        };
        assert_eq!(c.account_url().as_deref(), Some("https://acme.kommo.com"));
        c.base_url = "https://acme.amocrm.ru/".into();
        assert_eq!(c.account_url().as_deref(), Some("https://acme.amocrm.ru"));
        assert_eq!(KommoConfig::default().account_url(), None);
        c.token = "tok-Xq7-private".into();
        assert!(!format!("{c:?}").contains("tok-Xq7"));
    }
}
