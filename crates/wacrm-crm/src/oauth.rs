//! OAuth 2 access tokens for [`crate::http::CrmHttp`]: fetched from the CRM's token endpoint
//! with the client-credentials or the refresh-token grant, kept until shortly before they
//! expire, and fetched again when the CRM refuses one (a 401: revoked, or expired early).

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::adapter::CrmError;

/// How an OAuth 2 access token is obtained and sent.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuth2 {
    /// The token endpoint (`https://oauth.pipedrive.com/oauth/token`,
    /// `https://accounts.zoho.com/oauth/v2/token`, `https://login.salesforce.com/services/oauth2/token`).
    pub token_url: String,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
    /// The grant.
    pub grant: Grant,
    /// Scopes to ask for (client credentials), space-separated; `None` asks for the app's.
    pub scope: Option<String>,
    /// The `Authorization` scheme: `Bearer` for most CRMs, `Zoho-oauthtoken` for Zoho.
    pub scheme: String,
}

/// An OAuth 2 grant.
#[derive(Clone, PartialEq, Eq)]
pub enum Grant {
    /// `grant_type=client_credentials`: a server-to-server app.
    ClientCredentials,
    /// `grant_type=refresh_token` with this refresh token, from an authorisation done once. A
    /// refresh token the CRM rotates (answers a new one) is used from then on, for the life of
    /// the process; the configured one is used again after a restart.
    RefreshToken(String),
}

impl std::fmt::Debug for OAuth2 {
    // Secrets never reach a log, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let grant = match self.grant {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
        };
        write!(f, "OAuth2({grant} at {})", self.token_url)
    }
}

struct Token {
    access: String,
    renew_at: Instant,
}

/// The current access token of a connection, and the refresh token in use.
#[derive(Default)]
pub(crate) struct TokenCache {
    current: Mutex<Option<Token>>,
    rotated_refresh_token: Mutex<Option<String>>,
}

impl TokenCache {
    /// Forgets the access token (the CRM refused it).
    pub(crate) async fn invalidate(&self) {
        *self.current.lock().await = None;
    }
}

impl OAuth2 {
    /// A valid access token: the cached one, or a new one from the token endpoint.
    pub(crate) async fn token(
        &self,
        client: &reqwest::Client,
        cache: &TokenCache,
    ) -> Result<String, CrmError> {
        // One fetch at a time: concurrent requests wait for it instead of each fetching.
        let mut current = cache.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(token.access.clone());
        }
        let mut form: Vec<(&str, String)> = vec![
            ("client_id", self.client_id.clone()),
            ("client_secret", self.client_secret.clone()),
        ];
        match &self.grant {
            Grant::ClientCredentials => {
                form.push(("grant_type", "client_credentials".into()));
                if let Some(scope) = &self.scope {
                    form.push(("scope", scope.clone()));
                }
            }
            Grant::RefreshToken(configured) => {
                let refresh = cache
                    .rotated_refresh_token
                    .lock()
                    .await
                    .clone()
                    .unwrap_or_else(|| configured.clone());
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", refresh));
            }
        }
        let response = client
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                CrmError::Transient(format!("OAuth token endpoint: {}", e.without_url()))
            })?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let reason = body["error_description"]
            .as_str()
            .or_else(|| body["error"].as_str())
            .unwrap_or("no reason given")
            .to_owned();
        match status {
            200..=299 => {}
            429 => return Err(CrmError::RateLimited { retry_after: None }),
            500..=599 => {
                return Err(CrmError::Transient(format!(
                    "OAuth token endpoint: HTTP {status}"
                )))
            }
            _ => {
                return Err(CrmError::Fatal(format!(
                    "the OAuth token endpoint refused the credentials (HTTP {status}: {reason})"
                )))
            }
        }
        let Some(access) = body["access_token"].as_str().map(str::to_owned) else {
            return Err(CrmError::Fatal(
                "the OAuth token endpoint answered without an access_token".into(),
            ));
        };
        if let (Grant::RefreshToken(_), Some(rotated)) =
            (&self.grant, body["refresh_token"].as_str())
        {
            *cache.rotated_refresh_token.lock().await = Some(rotated.to_owned());
        }
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(3600));
        // Renewed a minute early (a tenth early for short-lived tokens).
        let margin = (lifetime / 10).min(Duration::from_secs(60));
        *current = Some(Token {
            access: access.clone(),
            renew_at: Instant::now() + lifetime - margin,
        });
        Ok(access)
    }
}
