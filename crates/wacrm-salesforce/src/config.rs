//! `[crm.connections.<name>]` with `kind = "salesforce"`.

use serde::{Deserialize, Serialize};
use wacrm_crm::ConnectionConfig;

/// A Salesforce connection's settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SalesforceConfig {
    /// The external client app's (or connected app's) consumer key.
    pub client_id: String,
    /// Its consumer secret (`WACRM_CRM__CONNECTIONS__<NAME>__CLIENT_SECRET`), for the
    /// client-credentials grant. Never logged.
    pub client_secret: String,
    /// The host of the token endpoint (`<login_url>/services/oauth2/token`): the org's My
    /// Domain (`https://MyDomainName.my.salesforce.com`) for the client-credentials grant;
    /// `https://login.salesforce.com` (or `https://test.salesforce.com`) also serves the JWT
    /// grant.
    pub login_url: String,
    /// The API host, when it must be fixed. Unset (the usual case), requests go to the
    /// `instance_url` of the token answer.
    pub instance_url: Option<String>,
    /// The username the JWT-bearer grant acts as. Set (with a private key), the JWT grant is
    /// used instead of the client-credentials grant.
    pub jwt_subject: Option<String>,
    /// The app's RSA private key, PEM (`…__JWT_PRIVATE_KEY_PEM`). Never logged.
    pub jwt_private_key_pem: Option<String>,
    /// A file holding that key, instead of `jwt_private_key_pem`.
    pub jwt_private_key_file: Option<String>,
    /// The JWT's audience: `https://login.salesforce.com`, or `https://test.salesforce.com`
    /// for a sandbox. Unset: `https://test.salesforce.com` when `login_url` is a sandbox's
    /// login host, else `https://login.salesforce.com`.
    pub jwt_audience: Option<String>,
    /// The REST API version, `vXX.X`, at least `v46.0` (upserts answer a body from 46.0).
    pub api_version: String,
    /// The contact field holding the WhatsApp id (Text, External ID, unique).
    pub whatsapp_field: String,
    /// The custom object each message is a record of.
    pub message_object: String,
    /// Requests per second this connection sends at most (Salesforce documents no
    /// per-second limit; this keeps one connection from spending the org's daily allocation
    /// in a burst).
    pub requests_per_s: u32,
    /// Requests in flight at once (Salesforce allows 25 concurrent requests lasting 20 s or
    /// more per org, 5 in a Developer Edition; the org's other integrations share them).
    pub max_concurrent_requests: usize,
    /// How long to wait after a `REQUEST_LIMIT_EXCEEDED` that is not the daily allocation
    /// (the concurrent-request limit), in milliseconds.
    pub limit_backoff_ms: u64,
    /// How long to park the connection once the daily allocation is spent, in seconds (the
    /// allocation is a rolling 24 h: calls age out and free room as time passes).
    pub quota_park_s: u64,
    /// What the engine needs: routing, minimisation, batching.
    #[serde(flatten)]
    pub sync: ConnectionConfig,
}

impl Default for SalesforceConfig {
    fn default() -> Self {
        SalesforceConfig {
            client_id: String::new(),
            client_secret: String::new(),
            login_url: "https://login.salesforce.com".into(),
            instance_url: None,
            jwt_subject: None,
            jwt_private_key_pem: None,
            jwt_private_key_file: None,
            jwt_audience: None,
            api_version: "v62.0".into(),
            whatsapp_field: "WhatsApp_Id__c".into(),
            message_object: "WhatsApp_Message__c".into(),
            requests_per_s: 10,
            max_concurrent_requests: 10,
            limit_backoff_ms: 5_000,
            quota_park_s: 3_600,
            sync: ConnectionConfig::default(),
        }
    }
}

impl std::fmt::Debug for SalesforceConfig {
    // Secrets are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &str| if s.is_empty() { "unset" } else { "set" };
        f.debug_struct("SalesforceConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &set(&self.client_secret))
            .field("login_url", &self.login_url)
            .field("instance_url", &self.instance_url)
            .field("jwt_subject", &self.jwt_subject)
            .field(
                "jwt_private_key_pem",
                &set(self.jwt_private_key_pem.as_deref().unwrap_or_default()),
            )
            .field("jwt_private_key_file", &self.jwt_private_key_file)
            .field("jwt_audience", &self.jwt_audience)
            .field("api_version", &self.api_version)
            .field("whatsapp_field", &self.whatsapp_field)
            .field("message_object", &self.message_object)
            .field("requests_per_s", &self.requests_per_s)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("limit_backoff_ms", &self.limit_backoff_ms)
            .field("quota_park_s", &self.quota_park_s)
            .field("sync", &self.sync)
            .finish()
    }
}
