//! OAuth 2 access tokens for [`crate::http::CrmHttp`]: fetched from the CRM's token endpoint
//! with the client-credentials, the refresh-token or the JWT-bearer grant, kept until shortly
//! before they expire, and fetched again when the CRM refuses one (a 401: revoked, or expired
//! early).
//!
//! Two things some CRMs put in the token answer are kept too:
//! - the API host of the account (Salesforce's `instance_url`): requests go there, with the path
//!   of the configured base URL ([`OAuth2::with_instance_url_from`]);
//! - a new refresh token that retires the old one (RD Station CRM, Kommo): saved in a
//!   [`RefreshTokenStore`] before the new access token is used, so a restart does not start from
//!   a refresh token the CRM no longer accepts ([`OAuth2::with_refresh_token_store`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::adapter::CrmError;

/// How an OAuth 2 access token is obtained and sent.
#[derive(Clone)]
pub struct OAuth2 {
    /// The token endpoint (`https://oauth.pipedrive.com/oauth/token`,
    /// `https://accounts.zoho.com/oauth/v2/token`, `https://login.salesforce.com/services/oauth2/token`).
    pub token_url: String,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret (unused by the JWT-bearer grant).
    pub client_secret: String,
    /// The grant.
    pub grant: Grant,
    /// Scopes to ask for (client credentials), space-separated; `None` asks for the app's.
    pub scope: Option<String>,
    /// The `Authorization` scheme: `Bearer` for most CRMs, `Zoho-oauthtoken` for Zoho.
    pub scheme: String,
    /// The field of the token answer that names the account's API host (Salesforce:
    /// `instance_url`). When the answer has it, requests go to that host.
    pub instance_url_from: Option<String>,
    /// Where a refresh token the CRM rotates is kept across restarts.
    pub refresh_token_store: Option<Arc<dyn RefreshTokenStore>>,
    /// More fields every token request carries (amoCRM/Kommo want the app's `redirect_uri`).
    pub extra_form: Vec<(String, String)>,
}

impl PartialEq for OAuth2 {
    fn eq(&self, other: &Self) -> bool {
        self.token_url == other.token_url
            && self.client_id == other.client_id
            && self.client_secret == other.client_secret
            && self.grant == other.grant
            && self.scope == other.scope
            && self.scheme == other.scheme
            && self.instance_url_from == other.instance_url_from
            && self.extra_form == other.extra_form
            && match (&self.refresh_token_store, &other.refresh_token_store) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for OAuth2 {}

impl OAuth2 {
    /// A token endpoint, the app's credentials and a grant; `Bearer` tokens, the app's scopes.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        grant: Grant,
    ) -> Self {
        OAuth2 {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            grant,
            scope: None,
            scheme: "Bearer".into(),
            instance_url_from: None,
            refresh_token_store: None,
            extra_form: Vec::new(),
        }
    }

    /// Another `Authorization` scheme (`Zoho-oauthtoken`).
    pub fn with_scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = scheme.into();
        self
    }

    /// Scopes to ask for with the client-credentials grant.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Requests go to the host the token answer names in `field` (`instance_url`), keeping the
    /// path of the configured base URL.
    pub fn with_instance_url_from(mut self, field: impl Into<String>) -> Self {
        self.instance_url_from = Some(field.into());
        self
    }

    /// Every token request also carries `name=value` (Kommo: `redirect_uri`).
    pub fn with_form_field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_form.push((name.into(), value.into()));
        self
    }

    /// A rotated refresh token is saved in `store`, and read from it at start.
    pub fn with_refresh_token_store(mut self, store: Arc<dyn RefreshTokenStore>) -> Self {
        self.refresh_token_store = Some(store);
        self
    }
}

/// An OAuth 2 grant.
#[derive(Clone, PartialEq, Eq)]
pub enum Grant {
    /// `grant_type=client_credentials`: a server-to-server app.
    ClientCredentials,
    /// `grant_type=refresh_token` with this refresh token, from an authorisation done once. A
    /// refresh token the CRM rotates (answers a new one) is used from then on; with a
    /// [`RefreshTokenStore`] also after a restart, otherwise only for the life of the process.
    RefreshToken(String),
    /// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523): an assertion
    /// signed with the app's private key, for a user the app is pre-authorised for.
    JwtBearer(JwtBearer),
}

/// The JWT-bearer grant's assertion: RS256-signed, issued by the client id, for `subject`, to
/// `audience`, valid for three minutes.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtBearer {
    /// The user the token acts as (Salesforce: the username).
    pub subject: String,
    /// The authorisation server the assertion is for (Salesforce:
    /// `https://login.salesforce.com`, or `https://test.salesforce.com` for a sandbox).
    pub audience: String,
    /// The app's RSA private key, PEM.
    pub private_key_pem: String,
}

impl std::fmt::Debug for OAuth2 {
    // Secrets never reach a log, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let grant = match self.grant {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
            Grant::JwtBearer(_) => "jwt_bearer",
        };
        write!(f, "OAuth2({grant} at {})", self.token_url)
    }
}

/// Where a connection's rotated refresh token is kept, so a restart uses the token the CRM
/// still accepts. A token is saved with the configured refresh token it descends from: when
/// the operator configures a new one (a new authorisation), the saved one is no longer used.
pub trait RefreshTokenStore: Send + Sync {
    /// The refresh token last saved for the `configured` one, if any.
    fn load(&self, configured: &str) -> Result<Option<String>, CrmError>;
    /// Saves `current`, descended from `configured`. Durable when it returns.
    fn save(&self, configured: &str, current: &str) -> Result<(), CrmError>;
}

/// A [`RefreshTokenStore`] in a file of its own (JSON; readable by its owner only; replaced
/// atomically and synced, so a crash leaves the old token or the new one, never half of one).
///
/// One process per file: two nodes refreshing one rotating token race each other whatever
/// they share, and one of them loses its token.
#[derive(Debug, Clone)]
pub struct FileTokenStore {
    path: PathBuf,
}

impl FileTokenStore {
    /// A store at `path` (created, with its directory, on the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileTokenStore { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> CrmError {
        CrmError::Fatal(format!(
            "the refresh-token file {} could not be {what}: {e}",
            self.path.display()
        ))
    }
}

/// A fingerprint of a configured token: the file never holds the configured token itself.
fn fingerprint(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl RefreshTokenStore for FileTokenStore {
    fn load(&self, configured: &str) -> Result<Option<String>, CrmError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.failed("read", e)),
        };
        let saved: Value = serde_json::from_str(&text).map_err(|e| self.failed("read", e))?;
        if saved["configured_sha256"].as_str() != Some(fingerprint(configured).as_str()) {
            // Saved for another authorisation: the configured token is the newer one.
            return Ok(None);
        }
        Ok(saved["refresh_token"].as_str().map(str::to_owned))
    }

    fn save(&self, configured: &str, current: &str) -> Result<(), CrmError> {
        let body = serde_json::json!({
            "configured_sha256": fingerprint(configured),
            "refresh_token": current,
        })
        .to_string();
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| self.failed("created", e))?;
        let mut temp = self.path.clone().into_os_string();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp).map_err(|e| self.failed("written", e))?;
        file.write_all(body.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| self.failed("written", e))?;
        std::fs::rename(&temp, &self.path).map_err(|e| self.failed("replaced", e))?;
        // The rename is durable once the directory is synced.
        if let Ok(dir) = std::fs::File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

struct Token {
    access: String,
    instance_url: Option<String>,
    renew_at: Instant,
}

/// An access token, and the API host its answer named.
pub(crate) struct AccessToken {
    pub(crate) access: String,
    pub(crate) instance_url: Option<String>,
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

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
}

impl JwtBearer {
    /// The signed assertion.
    fn assertion(&self, client_id: &str) -> Result<String, CrmError> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.private_key_pem.as_bytes())
            .map_err(|e| {
                CrmError::Fatal(format!("the JWT-bearer private key is not an RSA PEM: {e}"))
            })?;
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
            + 180;
        let claims = Claims {
            iss: client_id,
            sub: &self.subject,
            aud: &self.audience,
            exp,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .map_err(|e| CrmError::Fatal(format!("the JWT-bearer assertion could not be signed: {e}")))
    }
}

impl OAuth2 {
    /// The refresh token to send: the rotated one (from memory, or saved before a restart),
    /// else the configured one.
    async fn refresh_token(&self, configured: &str, cache: &TokenCache) -> String {
        let mut rotated = cache.rotated_refresh_token.lock().await;
        if rotated.is_none() {
            if let Some(store) = &self.refresh_token_store {
                match store.load(configured) {
                    Ok(saved) => *rotated = saved,
                    Err(e) => tracing::error!(error = %e, "using the configured refresh token"),
                }
            }
        }
        rotated.clone().unwrap_or_else(|| configured.to_owned())
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    pub(crate) async fn token(
        &self,
        client: &reqwest::Client,
        cache: &TokenCache,
    ) -> Result<AccessToken, CrmError> {
        // One fetch at a time: concurrent requests wait for it instead of each fetching.
        let mut current = cache.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(AccessToken {
                access: token.access.clone(),
                instance_url: token.instance_url.clone(),
            });
        }
        let mut form: Vec<(&str, String)> = vec![("client_id", self.client_id.clone())];
        match &self.grant {
            Grant::ClientCredentials => {
                form.push(("client_secret", self.client_secret.clone()));
                form.push(("grant_type", "client_credentials".into()));
                if let Some(scope) = &self.scope {
                    form.push(("scope", scope.clone()));
                }
            }
            Grant::RefreshToken(configured) => {
                form.push(("client_secret", self.client_secret.clone()));
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", self.refresh_token(configured, cache).await));
            }
            Grant::JwtBearer(jwt) => {
                // The assertion authenticates the app: no secret is sent.
                form.clear();
                form.push((
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                ));
                form.push(("assertion", jwt.assertion(&self.client_id)?));
            }
        }
        let form: Vec<(&str, String)> = form
            .into_iter()
            .chain(self.extra_form.iter().map(|(n, v)| (n.as_str(), v.clone())))
            .collect();
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
        if let (Grant::RefreshToken(configured), Some(rotated)) =
            (&self.grant, body["refresh_token"].as_str())
        {
            let mut kept = cache.rotated_refresh_token.lock().await;
            if kept.as_deref() != Some(rotated) {
                // The old refresh token is dead from now on: the new one is saved before the
                // access token is used. Should saving fail, the process still holds it (and
                // tries again at the next renewal); a restart before that needs a new
                // authorisation, which the error says.
                if let Some(store) = &self.refresh_token_store {
                    if let Err(e) = store.save(configured, rotated) {
                        tracing::error!(error = %e, "the rotated refresh token is kept in memory only");
                    }
                }
                *kept = Some(rotated.to_owned());
            }
        }
        let instance_url = match &self.instance_url_from {
            Some(field) => Some(self.instance_url(&body, field)?),
            None => None,
        };
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(3600));
        // Renewed a minute early (a tenth early for short-lived tokens).
        let margin = (lifetime / 10).min(Duration::from_secs(60));
        *current = Some(Token {
            access: access.clone(),
            instance_url: instance_url.clone(),
            renew_at: Instant::now() + lifetime - margin,
        });
        Ok(AccessToken {
            access,
            instance_url,
        })
    }

    /// The API host the token answer names: an `https` origin (or `http` when the token
    /// endpoint itself is plain `http`, as in a test on loopback), never a place the token
    /// would travel in clear.
    fn instance_url(&self, body: &Value, field: &str) -> Result<String, CrmError> {
        let Some(named) = body[field].as_str() else {
            return Err(CrmError::Fatal(format!(
                "the OAuth token endpoint answered without {field}"
            )));
        };
        let url = reqwest::Url::parse(named).map_err(|e| {
            CrmError::Fatal(format!("the token answer's {field} is not a URL: {e}"))
        })?;
        let clear_allowed = self.token_url.starts_with("http://");
        if url.scheme() != "https" && !(clear_allowed && url.scheme() == "http") {
            return Err(CrmError::Fatal(format!(
                "the token answer's {field} is not https"
            )));
        }
        Ok(url.origin().ascii_serialization())
    }
}
