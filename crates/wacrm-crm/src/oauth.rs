//! OAuth 2 access tokens for [`crate::http::CrmHttp`]: fetched from the CRM's token endpoint
//! with the client-credentials, the refresh-token or the JWT-bearer grant, kept until shortly
//! before they expire, and fetched again when the CRM refuses one (a 401: revoked, or expired
//! early).
//!
//! Two things some CRMs put in the token answer are kept too:
//! - the API host of the account (Salesforce's `instance_url`): requests go there, with the path
//!   of the configured base URL ([`OAuth2::with_instance_url_from`]);
//! - a new refresh token that retires the old one (RD Station CRM, Kommo): kept in a
//!   [`RefreshTokenStore`] before the new access token is used, so a restart does not start from
//!   a refresh token the CRM no longer accepts ([`OAuth2::with_refresh_token_store`]).
//!
//! A rotating chain allows one exchange at a time: whoever sends a retired refresh token gets
//! `invalid_grant`, which is fatal. So a renewal with a store is one turn of
//! [`RefreshTokenStore::rotate`]: under the store's exclusive hold of the chain, the client reads
//! what the store holds, uses the access token there when another holder renewed it since
//! (else exchanges the refresh token held there), and the store keeps the answer before the hold
//! ends. [`FileTokenStore`] holds a chain for one process. Instances that share a PostgreSQL
//! store share their chains through it: the service installs the store's
//! ([`share_refresh_tokens`]), and every client made afterwards whose adapter asked for a
//! per-process store uses the shared one instead, starting from what the file holds when the
//! shared store holds nothing yet; N instances then make one exchange per expiry between them.
//!
//! A turn, once begun, runs to its end even when the request that needed the token is dropped
//! (cancelled, timed out): the CRM may have retired the old refresh token already, and only the
//! store's copy of the new one keeps the chain alive. What no store can help is a process that
//! dies between the CRM's answer and the store's write: the store still holds the retired token,
//! the next exchange is refused, and the connection needs a new authorisation (a new
//! `refresh_token` in its configuration).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::adapter::CrmError;

/// The store clients made from now on keep their chains in, instead of a per-process one (see
/// [`share_refresh_tokens`]).
static SHARED_STORE: RwLock<Option<Arc<dyn RefreshTokenStore>>> = RwLock::new(None);

/// Makes every [`crate::http::CrmHttp`] created from now on in this process keep a rotating
/// refresh token in `store` when its adapter asked for a per-process store
/// ([`RefreshTokenStore::per_process`]: a [`FileTokenStore`]); `None`: the adapters' own stores
/// again. The service installs its PostgreSQL store's before it builds the adapters, so instances
/// sharing that store share every rotating chain without the adapters doing anything. A store
/// an adapter chose that is not per-process is kept.
pub fn share_refresh_tokens(store: Option<Arc<dyn RefreshTokenStore>>) {
    *SHARED_STORE.write().unwrap_or_else(PoisonError::into_inner) = store;
}

fn installed_store() -> Option<Arc<dyn RefreshTokenStore>> {
    SHARED_STORE
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

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

    /// Every renewal of the refresh token is a turn of `store` ([`RefreshTokenStore::rotate`]):
    /// a rotated refresh token is kept there, and read from there after a restart.
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
    /// [`RefreshTokenStore`] also after a restart (and by every instance sharing the store),
    /// otherwise only for the life of the process.
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

/// What a [`RefreshTokenStore`] holds for one chain of refresh tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct SavedTokens {
    /// The refresh token the CRM accepts next.
    pub refresh_token: String,
    /// The access token issued with it, when the store keeps access tokens. A store shared by
    /// instances does, so that the others use the access token one of them fetched instead of
    /// each exchanging the refresh token again; [`FileTokenStore`] does not (one process has
    /// it in memory).
    pub access: Option<SavedAccess>,
}

/// An access token a store holds.
#[derive(Clone, PartialEq, Eq)]
pub struct SavedAccess {
    /// The token.
    pub access_token: String,
    /// The API host its answer named ([`OAuth2::with_instance_url_from`]), already checked.
    pub instance_url: Option<String>,
    /// How long from when the store hands it over until it is renewed (the renewal margin
    /// already taken off; zero: due now). Relative, so that the store may count it on a clock
    /// of its own (a database's) and no instance's clock decides when a shared token is due.
    pub renew_in: Duration,
}

impl std::fmt::Debug for SavedTokens {
    // Secrets never reach a log, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedTokens")
            .field("refresh_token", &"…")
            .field("access", &self.access)
            .finish()
    }
}

impl std::fmt::Debug for SavedAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedAccess")
            .field("access_token", &"…")
            .field("instance_url", &self.instance_url)
            .field("renew_in", &self.renew_in)
            .finish()
    }
}

/// What one turn of [`RefreshTokenStore::rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// What the store holds is good (another holder renewed it): nothing to write.
    Unchanged,
    /// The token endpoint answered: the store keeps these before the turn ends.
    Renewed(SavedTokens),
}

/// The work of one turn: given what the store holds for the chain (`None`: nothing yet), use it
/// or exchange its refresh token, and say which.
pub type Renew<'a> =
    Box<dyn FnOnce(Option<SavedTokens>) -> BoxFuture<'a, Result<Renewal, CrmError>> + Send + 'a>;

/// Where a connection's rotating refresh token is kept, so that a restart, and every instance
/// sharing the store, uses the token the CRM still accepts. A chain is named by the configured
/// refresh token it descends from (stores keep its [`fingerprint`], not the token): when the
/// operator configures a new one (a new authorisation), what was saved for the old one is no
/// longer used.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// One turn at the chain that descends from `configured`: runs `renew` with what the store
    /// holds while no other turn at the same chain runs — in this process, and in every process
    /// sharing the store —, keeps what it returns ([`Renewal::Renewed`]: durable before this
    /// returns), and returns what the store holds after the turn. An error of `renew` is
    /// returned as it is, and nothing is written. A turn that ends half-way (the future is
    /// dropped, the process dies) releases the hold and writes nothing.
    async fn rotate(
        &self,
        configured: &str,
        renew: Renew<'_>,
    ) -> Result<Option<SavedTokens>, CrmError>;

    /// The refresh token held for `configured`, read without a hold; `None` when nothing is.
    /// What a chain starts from when this store hands it over to a shared one.
    async fn current(&self, configured: &str) -> Result<Option<String>, CrmError>;

    /// Whether the store belongs to one process (a file on its volume). An [`OAuth2`] whose
    /// store is per-process uses the store [`share_refresh_tokens`] installed instead, starting
    /// from what this one holds ([`RefreshTokenStore::current`]) when the shared one holds
    /// nothing yet. `false` (the default): the store is kept whatever is installed.
    fn per_process(&self) -> bool {
        false
    }
}

/// A fingerprint of a configured refresh token (SHA-256, hex): how a store names the chain that
/// descends from it without holding the configured token itself.
pub fn fingerprint(configured: &str) -> String {
    Sha256::digest(configured.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A [`RefreshTokenStore`] in a file of its own (JSON; readable by its owner only; replaced
/// atomically and synced, so a crash leaves the old token or the new one, never half of one).
/// It keeps the refresh token only: the access token lives in the process's memory.
///
/// One process per file: turns at one file are taken one at a time within a process (clients
/// that name the same path), but two nodes refreshing one rotating token through a file race
/// each other, and one of them loses its token. Instances that share a PostgreSQL store share
/// the chain through it instead ([`share_refresh_tokens`]); until the shared store holds the
/// chain, it starts from this file.
#[derive(Debug, Clone)]
pub struct FileTokenStore {
    path: PathBuf,
}

/// One turn at a time per token file in this process.
static FILE_TURNS: std::sync::Mutex<BTreeMap<PathBuf, Arc<Mutex<()>>>> =
    std::sync::Mutex::new(BTreeMap::new());

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

    /// The hold of this file's turns.
    fn turns(&self) -> Arc<Mutex<()>> {
        Arc::clone(
            lock(&FILE_TURNS)
                .entry(self.path.clone())
                .or_insert_with(|| Arc::new(Mutex::new(()))),
        )
    }

    /// The refresh token last saved for the `configured` one, if any.
    pub fn load(&self, configured: &str) -> Result<Option<String>, CrmError> {
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

    /// Saves `current`, descended from `configured`. Durable when it returns.
    pub fn save(&self, configured: &str, current: &str) -> Result<(), CrmError> {
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

#[async_trait]
impl RefreshTokenStore for FileTokenStore {
    async fn rotate(
        &self,
        configured: &str,
        renew: Renew<'_>,
    ) -> Result<Option<SavedTokens>, CrmError> {
        let turns = self.turns();
        let _turn = turns.lock().await;
        let held = match self.load(configured) {
            Ok(held) => held,
            Err(e) => {
                // The configured token may still be the live one (nothing was ever saved).
                tracing::error!(error = %e, "using the configured refresh token");
                None
            }
        };
        let held = held.map(|refresh_token| SavedTokens {
            refresh_token,
            access: None,
        });
        match renew(held.clone()).await? {
            Renewal::Unchanged => Ok(held),
            Renewal::Renewed(tokens) => {
                let kept = held
                    .as_ref()
                    .map_or(configured, |h| h.refresh_token.as_str());
                // Written only when the CRM rotated: the file never holds the configured token.
                if tokens.refresh_token != kept {
                    self.save(configured, &tokens.refresh_token)?;
                }
                Ok(Some(tokens))
            }
        }
    }

    async fn current(&self, configured: &str) -> Result<Option<String>, CrmError> {
        self.load(configured)
    }

    fn per_process(&self) -> bool {
        true
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

/// What a renewal gave: an access token, where it goes, when to renew it, and the rotated
/// refresh token when the CRM answered one.
struct Fresh {
    access: String,
    instance_url: Option<String>,
    renew_in: Duration,
    refresh_token: Option<String>,
}

impl Fresh {
    fn saved_access(&self) -> SavedAccess {
        SavedAccess {
            access_token: self.access.clone(),
            instance_url: self.instance_url.clone(),
            renew_in: self.renew_in,
        }
    }
}

impl From<SavedAccess> for Fresh {
    fn from(saved: SavedAccess) -> Self {
        Fresh {
            access: saved.access_token,
            instance_url: saved.instance_url,
            renew_in: saved.renew_in,
            refresh_token: None,
        }
    }
}

/// Where a client's chain is kept.
struct ChainStore {
    /// The store whose turns renew it.
    store: Arc<dyn RefreshTokenStore>,
    /// The per-process store that `store`, a shared one, stands in for.
    replaces: Option<Arc<dyn RefreshTokenStore>>,
}

/// The current access token of a connection, and the refresh token in use.
pub(crate) struct TokenCache {
    current: Mutex<Option<Token>>,
    /// Moves on whenever `current` gets a new token, so that a refusal reported while a renewal
    /// was under way is not held against the renewal's token.
    generation: AtomicU64,
    /// The newest refresh token of the chain that no store holds: the whole chain when there is
    /// no store, or a rotation the store could not keep (used at the next renewal, whose answer
    /// the store is offered again).
    unsaved: Arc<std::sync::Mutex<Option<String>>>,
    /// The store [`share_refresh_tokens`] had installed when the client was made.
    shared: Option<Arc<dyn RefreshTokenStore>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            unsaved: Arc::default(),
            shared: installed_store(),
        }
    }
}

impl TokenCache {
    /// The CRM refused the access token: it is renewed before the next request. Unless a
    /// renewal ended while this waited for it: the refused token was the one before, and the
    /// new one is kept (requests that were in flight together, refused together, renew once).
    /// `refused` is the token the refused request carried: a refusal that arrives only after
    /// the renewal ended names the old token and leaves the new one alone (`None`: whatever
    /// is cached is renewed — one exchange more at worst, never a retired token sent).
    pub(crate) async fn invalidate(&self, refused: Option<&str>) {
        let seen = self.generation.load(Ordering::Acquire);
        let mut current = self.current.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return;
        }
        if let Some(token) = current
            .as_mut()
            .filter(|t| refused.is_none_or(|r| r == t.access))
        {
            // Kept as due rather than forgotten: a shared store must know which token was
            // refused, so as not to hand the same one back.
            token.renew_at = Instant::now();
        }
    }

    fn unsaved(&self) -> Option<String> {
        lock(&self.unsaved).clone()
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
    /// The store that holds this client's chain, and the per-process store it stands in for
    /// (whose chain it starts from).
    fn store_for(&self, cache: &TokenCache) -> Option<ChainStore> {
        let own = self.refresh_token_store.as_ref()?;
        Some(match &cache.shared {
            Some(shared) if own.per_process() => ChainStore {
                store: Arc::clone(shared),
                replaces: Some(Arc::clone(own)),
            },
            _ => ChainStore {
                store: Arc::clone(own),
                replaces: None,
            },
        })
    }

    /// A valid access token: the cached one, or a new one from the token endpoint (or from the
    /// store, when another holder of the chain renewed it).
    pub(crate) async fn token(
        &self,
        client: &reqwest::Client,
        cache: &TokenCache,
    ) -> Result<AccessToken, CrmError> {
        // One renewal at a time: concurrent requests wait for it instead of each renewing.
        let mut current = cache.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(AccessToken {
                access: token.access.clone(),
                instance_url: token.instance_url.clone(),
            });
        }
        // The token that is due or was refused: a store holding that one again is no help.
        let stale = current.as_ref().map(|t| t.access.clone());
        let fresh = match (&self.grant, self.store_for(cache)) {
            (Grant::RefreshToken(configured), Some(chain)) => {
                self.renew_in_store(client, cache, chain, configured, stale)
                    .await?
            }
            (Grant::RefreshToken(configured), None) => {
                let refresh = cache.unsaved().unwrap_or_else(|| configured.clone());
                let fresh = self.exchange(client, Some(&refresh)).await?;
                if let Some(rotated) = &fresh.refresh_token {
                    // Kept for the life of the process only: no store was given.
                    *lock(&cache.unsaved) = Some(rotated.clone());
                }
                fresh
            }
            _ => self.exchange(client, None).await?,
        };
        *current = Some(Token {
            access: fresh.access.clone(),
            instance_url: fresh.instance_url.clone(),
            renew_at: Instant::now() + fresh.renew_in,
        });
        cache.generation.fetch_add(1, Ordering::AcqRel);
        Ok(AccessToken {
            access: fresh.access,
            instance_url: fresh.instance_url,
        })
    }

    /// One turn at the chain in `store`: the access token another holder fetched since `stale`,
    /// or an exchange of the refresh token the store holds, kept there before it is used.
    async fn renew_in_store(
        &self,
        client: &reqwest::Client,
        cache: &TokenCache,
        chain: ChainStore,
        configured: &str,
        stale: Option<String>,
    ) -> Result<Fresh, CrmError> {
        let ChainStore { store, replaces } = chain;
        let oauth = self.clone();
        let client = client.clone();
        let unsaved = Arc::clone(&cache.unsaved);
        let configured = configured.to_owned();
        // What the token endpoint answered, kept even when the store then fails to keep it:
        // the CRM retired the old refresh token either way.
        let answered: Arc<std::sync::Mutex<Option<SavedTokens>>> = Arc::default();
        let turn = {
            let answered = Arc::clone(&answered);
            let unsaved = Arc::clone(&unsaved);
            let first = configured.clone();
            let renew: Renew<'static> = Box::new(move |held| {
                Box::pin(async move {
                    let pending = lock(&unsaved).clone();
                    if let (None, Some(access)) =
                        (&pending, held.as_ref().and_then(|h| h.access.as_ref()))
                    {
                        if stale.as_deref() != Some(access.access_token.as_str())
                            && !access.renew_in.is_zero()
                        {
                            return Ok(Renewal::Unchanged);
                        }
                    }
                    // The rotation the store failed to keep comes first; should the store
                    // have kept it after all (its answer lost) and another holder rotated on
                    // since, the CRM refuses it and the store's is tried.
                    let (refresh, fallback) = match (pending, held) {
                        (Some(pending), Some(held)) if held.refresh_token != pending => {
                            (pending, Some(held.refresh_token))
                        }
                        (Some(pending), _) => (pending, None),
                        (None, Some(held)) => (held.refresh_token, None),
                        (None, None) => (handed_over(replaces, &first).await, None),
                    };
                    let (refresh, fresh) = match oauth.exchange(&client, Some(&refresh)).await {
                        Err(CrmError::Fatal(_)) if fallback.is_some() => {
                            let refresh = fallback.unwrap_or_default();
                            let fresh = oauth.exchange(&client, Some(&refresh)).await?;
                            (refresh, fresh)
                        }
                        answer => (refresh, answer?),
                    };
                    let tokens = SavedTokens {
                        refresh_token: fresh.refresh_token.clone().unwrap_or(refresh),
                        access: Some(fresh.saved_access()),
                    };
                    if fresh.refresh_token.is_some() {
                        *lock(&unsaved) = Some(tokens.refresh_token.clone());
                    }
                    *lock(&answered) = Some(tokens.clone());
                    Ok(Renewal::Renewed(tokens))
                })
            });
            async move { store.rotate(&configured, renew).await }
        };
        // Detached: once begun, a turn runs to its end, and a rotation is stored even when the
        // request that started it is dropped.
        let outcome = tokio::spawn(async move {
            let outcome = turn.await;
            if let Ok(Some(held)) = &outcome {
                let mut pending = lock(&unsaved);
                if pending.as_deref() == Some(held.refresh_token.as_str()) {
                    *pending = None;
                }
            }
            outcome
        })
        .await
        .map_err(|e| CrmError::Transient(format!("the OAuth token renewal stopped: {e}")))?;
        let answer = lock(&answered).take().and_then(|tokens| tokens.access);
        match outcome {
            // What this turn fetched, else what another holder of the chain did.
            Ok(held) => answer
                .or_else(|| held.and_then(|h| h.access))
                .map(Fresh::from)
                .ok_or_else(|| {
                    CrmError::Fatal(
                        "the refresh-token store ended a turn without an access token".into(),
                    )
                }),
            Err(e) => match answer {
                Some(access) => {
                    tracing::error!(
                        error = %e,
                        "the renewed OAuth tokens could not be stored: a rotated refresh token \
                         is kept in memory and offered to the store again at the next renewal"
                    );
                    Ok(access.into())
                }
                None => Err(e),
            },
        }
    }

    /// A token from the token endpoint; `refresh_token` is the one to send with the
    /// refresh-token grant.
    async fn exchange(
        &self,
        client: &reqwest::Client,
        refresh_token: Option<&str>,
    ) -> Result<Fresh, CrmError> {
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
                form.push((
                    "refresh_token",
                    refresh_token.unwrap_or(configured).to_owned(),
                ));
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
        let instance_url = match &self.instance_url_from {
            Some(field) => Some(self.instance_url(&body, field)?),
            None => None,
        };
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(3600));
        // Renewed a minute early (a tenth early for short-lived tokens).
        let margin = (lifetime / 10).min(Duration::from_secs(60));
        let refresh_token = match &self.grant {
            Grant::RefreshToken(_) => body["refresh_token"].as_str().map(str::to_owned),
            _ => None,
        };
        Ok(Fresh {
            access,
            instance_url,
            renew_in: lifetime - margin,
            refresh_token,
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

/// The refresh token a chain starts from in a shared store that holds nothing yet: what the
/// per-process store it replaces holds (a connection moving from one process to several), else
/// the configured one.
async fn handed_over(own: Option<Arc<dyn RefreshTokenStore>>, configured: &str) -> String {
    if let Some(own) = own {
        match own.current(configured).await {
            Ok(Some(saved)) => return saved,
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "using the configured refresh token"),
        }
    }
    configured.to_owned()
}
