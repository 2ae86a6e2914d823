//! Several instances on one rotating refresh-token chain (RD Station CRM, Kommo): the CRM
//! retires a refresh token when it is used, and refuses a retired one (`invalid_grant`, fatal).
//! Each "instance" is a `CrmHttp` with an `OAuth2` and a token cache of its own, as separate
//! processes have. Instances with token files of their own lose the chain; instances sharing a
//! store make one exchange per expiry between them, however many requests need a token at
//! once; a turn dropped mid-exchange still keeps the rotation; and `share_refresh_tokens` puts
//! a shared store in place of every per-process one, starting from what the file held.
//!
//! The shared store here is in memory: the same contract as the PostgreSQL one, whose suite
//! (`crates/wacrm-store/tests/oauth_tokens.rs`) runs these scenarios against a database.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use reqwest::Method;
use serde_json::{json, Value};
use wacrm_crm::http::{default_classifier, Auth, Budget, CrmHttp, HttpSettings, Retry, Window};
use wacrm_crm::oauth::{
    fingerprint, share_refresh_tokens, FileTokenStore, Grant, OAuth2, RefreshTokenStore, Renew,
    Renewal, SavedAccess, SavedTokens,
};
use wacrm_crm::CrmError;

/// `share_refresh_tokens` is process-wide: the tests of this file run one at a time, so that a
/// store one of them installs never reaches another's clients.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A CRM whose refresh tokens rotate on every use.
struct Crm {
    /// The one refresh token accepted now.
    live_refresh: String,
    /// Access tokens accepted by the API.
    access: HashSet<String>,
    /// `expires_in` of the answers.
    expires_in: u64,
    /// When each successful exchange arrived.
    exchanges: Vec<Instant>,
    /// Exchanges refused with `invalid_grant`.
    refused: usize,
    /// Token requests that arrived.
    arrived: usize,
    /// How long the answer to an exchange takes (the rotation is applied at once).
    answer_after: Duration,
}

type Shared = Arc<Mutex<Crm>>;

async fn token(
    State(crm): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let (answer, after) = {
        let mut crm = crm.lock().unwrap();
        crm.arrived += 1;
        if form.get("refresh_token") != Some(&crm.live_refresh) {
            crm.refused += 1;
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    json!({"error": "invalid_grant", "error_description": "refresh token retired"}),
                ),
            );
        }
        crm.exchanges.push(Instant::now());
        let n = crm.exchanges.len();
        crm.live_refresh = format!("refresh-{n}");
        crm.access.insert(format!("access-{n}"));
        let answer = json!({"access_token": format!("access-{n}"), "token_type": "Bearer",
                            "expires_in": crm.expires_in, "refresh_token": format!("refresh-{n}")});
        (answer, crm.answer_after)
    };
    tokio::time::sleep(after).await;
    (StatusCode::OK, Json(answer))
}

async fn api(State(crm): State<Shared>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let crm = crm.lock().unwrap();
    let sent = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if crm.access.contains(sent) {
        (StatusCode::OK, Json(json!({"ok": true})))
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "expired token"})),
        )
    }
}

/// A CRM whose live refresh token is `live`.
async fn crm(live: &str) -> (String, Shared) {
    let crm: Shared = Arc::new(Mutex::new(Crm {
        live_refresh: live.into(),
        access: HashSet::new(),
        expires_in: 3600,
        exchanges: Vec::new(),
        refused: 0,
        arrived: 0,
        answer_after: Duration::ZERO,
    }));
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/api", get(api))
        .with_state(crm.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, crm)
}

/// The access tokens the CRM issued stop working (revoked, or expired on its clock).
fn revoke(crm: &Shared) {
    crm.lock().unwrap().access.clear();
}

/// A chain's refresh token, and its access token with when that is due.
type Chain = (String, Option<(String, Instant)>);

/// A chain held in memory, one turn at a time: what the PostgreSQL store does for instances.
#[derive(Default)]
struct MemoryStore {
    chains: tokio::sync::Mutex<HashMap<String, Chain>>,
    turns: AtomicUsize,
}

#[async_trait]
impl RefreshTokenStore for MemoryStore {
    async fn rotate(
        &self,
        configured: &str,
        renew: Renew<'_>,
    ) -> Result<Option<SavedTokens>, CrmError> {
        self.turns.fetch_add(1, Ordering::SeqCst);
        let mut chains = self.chains.lock().await;
        let held = chains
            .get(&fingerprint(configured))
            .map(|(refresh, access)| SavedTokens {
                refresh_token: refresh.clone(),
                access: access.as_ref().map(|(token, due)| SavedAccess {
                    access_token: token.clone(),
                    instance_url: None,
                    renew_in: due.saturating_duration_since(Instant::now()),
                }),
            });
        match renew(held.clone()).await? {
            Renewal::Unchanged => Ok(held),
            Renewal::Renewed(tokens) => {
                let access = tokens
                    .access
                    .as_ref()
                    .map(|a| (a.access_token.clone(), Instant::now() + a.renew_in));
                chains.insert(
                    fingerprint(configured),
                    (tokens.refresh_token.clone(), access),
                );
                Ok(Some(tokens))
            }
        }
    }

    async fn current(&self, configured: &str) -> Result<Option<String>, CrmError> {
        Ok(self
            .chains
            .lock()
            .await
            .get(&fingerprint(configured))
            .map(|(refresh, _)| refresh.clone()))
    }
}

/// An instance of a connection configured with `refresh-0` and `store`.
fn instance(url: &str, store: Arc<dyn RefreshTokenStore>) -> CrmHttp {
    instance_configured(url, "refresh-0", store)
}

fn instance_configured(url: &str, configured: &str, store: Arc<dyn RefreshTokenStore>) -> CrmHttp {
    let oauth = OAuth2::new(
        format!("{url}/oauth/token"),
        "client-1",
        "very-secret",
        Grant::RefreshToken(configured.into()),
    )
    .with_refresh_token_store(store);
    let settings = HttpSettings {
        base_url: url.to_owned(),
        auth: Auth::OAuth2(Box::new(oauth)),
        limit: Window::new(100_000, Duration::from_secs(1)),
        search_limit: None,
        timeout: Duration::from_secs(5),
    };
    CrmHttp::new("rd", settings, Arc::new(default_classifier)).unwrap()
}

fn file(path: &Path) -> Arc<dyn RefreshTokenStore> {
    Arc::new(FileTokenStore::new(path))
}

async fn call(http: &CrmHttp) -> Result<Value, CrmError> {
    http.send(Method::GET, "/api", None, Budget::General, Retry::Safe)
        .await
}

#[tokio::test]
async fn instances_with_token_files_of_their_own_lose_the_chain() {
    let _serial = SERIAL.lock().await;
    let (url, crm) = crm("refresh-0").await;
    let dir = tempfile::tempdir().unwrap();
    let a = instance(&url, file(&dir.path().join("a.oauth.json")));
    let b = instance(&url, file(&dir.path().join("b.oauth.json")));
    call(&a).await.unwrap();
    // A retired refresh-0; B still holds it.
    let err = call(&b).await.unwrap_err();
    assert!(matches!(err, CrmError::Fatal(_)), "{err}");
    assert!(err.to_string().contains("refresh token retired"), "{err}");
    assert_eq!(crm.lock().unwrap().refused, 1);
}

#[tokio::test]
async fn instances_sharing_a_store_make_one_exchange_per_refusal() {
    let _serial = SERIAL.lock().await;
    let (url, crm) = crm("refresh-0").await;
    let store: Arc<dyn RefreshTokenStore> = Arc::new(MemoryStore::default());
    let a = instance(&url, store.clone());
    let b = instance(&url, store.clone());
    for round in 1..=3 {
        call(&a).await.unwrap();
        // B uses the access token A fetched: no second exchange.
        call(&b).await.unwrap();
        assert_eq!(crm.lock().unwrap().exchanges.len(), round, "round {round}");
        revoke(&crm);
    }
    assert_eq!(crm.lock().unwrap().refused, 0);
}

#[tokio::test]
async fn clients_of_one_process_sharing_a_token_file_take_turns() {
    let _serial = SERIAL.lock().await;
    let (url, crm) = crm("refresh-0").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rd.oauth.json");
    let a = instance(&url, file(&path));
    let b = instance(&url, file(&path));
    for round in 0..3 {
        call(&a)
            .await
            .unwrap_or_else(|e| panic!("round {round}, a: {e}"));
        call(&b)
            .await
            .unwrap_or_else(|e| panic!("round {round}, b: {e}"));
        revoke(&crm);
    }
    let crm = crm.lock().unwrap();
    assert_eq!(crm.refused, 0);
    // The file keeps no access token: each client exchanges, each with the file's newest.
    assert_eq!(crm.exchanges.len(), 6);
    assert_eq!(
        FileTokenStore::new(&path).load("refresh-0").unwrap(),
        Some(crm.live_refresh.clone())
    );
}

/// 3 instances × 4 tasks sending without pause while 1-second tokens expire: each expiry is
/// one exchange (the next comes no sooner than the token's renewal time, 0.9 s), and nothing
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_instances_make_one_exchange_per_expiry() {
    let _serial = SERIAL.lock().await;
    let (url, crm) = crm("refresh-0").await;
    crm.lock().unwrap().expires_in = 1;
    let store: Arc<dyn RefreshTokenStore> = Arc::new(MemoryStore::default());
    let until = Instant::now() + Duration::from_millis(2_700);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let http = Arc::new(instance(&url, store.clone()));
        for _ in 0..4 {
            let http = Arc::clone(&http);
            tasks.push(tokio::spawn(async move {
                let mut calls = 0;
                while Instant::now() < until {
                    call(&http).await?;
                    calls += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok::<usize, CrmError>(calls)
            }));
        }
    }
    let mut calls = 0;
    for task in tasks {
        calls += task.await.unwrap().unwrap();
    }
    let crm = crm.lock().unwrap();
    assert_eq!(crm.refused, 0);
    assert!(calls > 100, "{calls} calls");
    assert!(
        crm.exchanges.len() >= 3,
        "{} exchanges",
        crm.exchanges.len()
    );
    for pair in crm.exchanges.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(850),
            "two exchanges {gap:?} apart: one expiry was renewed twice ({:?})",
            crm.exchanges
        );
    }
}

/// After each revocation, 3 instances × 4 tasks send at once with the revoked token: all are
/// refused together, and the chain is exchanged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_together_renew_once() {
    let _serial = SERIAL.lock().await;
    let (url, crm) = crm("refresh-0").await;
    // Every refused request reaches its instance while the renewal is still under way.
    crm.lock().unwrap().answer_after = Duration::from_millis(100);
    let store: Arc<dyn RefreshTokenStore> = Arc::new(MemoryStore::default());
    let instances: Vec<Arc<CrmHttp>> = (0..3)
        .map(|_| Arc::new(instance(&url, store.clone())))
        .collect();
    for http in &instances {
        call(http).await.unwrap();
    }
    for round in 2..=4 {
        revoke(&crm);
        let start = Arc::new(tokio::sync::Barrier::new(12));
        let mut tasks = Vec::new();
        for http in &instances {
            for _ in 0..4 {
                let (http, start) = (Arc::clone(http), Arc::clone(&start));
                tasks.push(tokio::spawn(async move {
                    start.wait().await;
                    call(&http).await
                }));
            }
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let crm = crm.lock().unwrap();
        assert_eq!(crm.refused, 0);
        assert_eq!(crm.exchanges.len(), round, "round {round}");
    }
}

#[tokio::test]
async fn a_request_dropped_mid_exchange_keeps_the_rotation() {
    let _serial = SERIAL.lock().await;
    let (url, crm) = crm("refresh-0").await;
    crm.lock().unwrap().answer_after = Duration::from_millis(300);
    let store: Arc<dyn RefreshTokenStore> = Arc::new(MemoryStore::default());
    let a = Arc::new(instance(&url, store.clone()));
    let b = instance(&url, store.clone());
    let request = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { call(&a).await })
    };
    while crm.lock().unwrap().arrived == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The CRM retired refresh-0 and has not answered yet: the request is dropped.
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    // B waits for A's turn to end and uses what it stored.
    call(&b).await.unwrap();
    call(&a).await.unwrap();
    let held = store.current("refresh-0").await.unwrap();
    let crm = crm.lock().unwrap();
    assert_eq!((crm.exchanges.len(), crm.refused), (1, 0));
    assert_eq!(held, Some(crm.live_refresh.clone()));
}

#[tokio::test]
async fn a_request_dropped_mid_exchange_still_saves_the_rotation_in_its_file() {
    let _serial = SERIAL.lock().await;
    let (url, crm) = crm("refresh-0").await;
    crm.lock().unwrap().answer_after = Duration::from_millis(300);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rd.oauth.json");
    let a = Arc::new(instance(&url, file(&path)));
    let request = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { call(&a).await })
    };
    while crm.lock().unwrap().arrived == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    request.abort();
    let _ = request.await;
    // The next request's turn waits for the dropped one's, and starts from the file it wrote.
    call(&a).await.unwrap();
    let crm = crm.lock().unwrap();
    assert_eq!((crm.exchanges.len(), crm.refused), (2, 0));
    assert_eq!(
        FileTokenStore::new(&path).load("refresh-0").unwrap(),
        Some(crm.live_refresh.clone())
    );
}

#[tokio::test]
async fn an_installed_shared_store_replaces_token_files_and_starts_from_them() {
    let _serial = SERIAL.lock().await;
    // One process ran the connection and rotated the chain to refresh-5, in its file.
    let (url, crm) = crm("refresh-5").await;
    let dir = tempfile::tempdir().unwrap();
    let a_file = dir.path().join("a.oauth.json");
    FileTokenStore::new(&a_file)
        .save("refresh-0", "refresh-5")
        .unwrap();
    let before = std::fs::read(&a_file).unwrap();

    let shared = Arc::new(MemoryStore::default());
    share_refresh_tokens(Some(shared.clone()));
    let a = instance(&url, file(&a_file));
    let b = instance(&url, file(&dir.path().join("b.oauth.json")));
    // A store that is not per-process is the adapter's choice, and stays.
    let own = Arc::new(MemoryStore::default());
    let c = instance(&url, own.clone());
    share_refresh_tokens(None);

    call(&a).await.unwrap();
    call(&b).await.unwrap();
    revoke(&crm);
    call(&b).await.unwrap();
    call(&a).await.unwrap();
    let held = shared.current("refresh-0").await.unwrap();
    {
        let crm = crm.lock().unwrap();
        assert_eq!((crm.exchanges.len(), crm.refused), (2, 0));
        assert_eq!(held, Some(crm.live_refresh.clone()));
    }
    // The files are no longer written: the shared store holds the chain.
    assert_eq!(std::fs::read(&a_file).unwrap(), before);
    assert!(!dir.path().join("b.oauth.json").exists());
    // C's own store was used, not the installed one (C is configured with the old chain's
    // first token, which the CRM refuses).
    let turns = shared.turns.load(Ordering::SeqCst);
    assert!(call(&c).await.is_err());
    assert_eq!(own.turns.load(Ordering::SeqCst), 1);
    assert_eq!(shared.turns.load(Ordering::SeqCst), turns);

    // Clients made after the store was uninstalled use their files again.
    let live = crm.lock().unwrap().live_refresh.clone();
    let d_file = dir.path().join("d.oauth.json");
    let d = instance_configured(&url, &live, file(&d_file));
    call(&d).await.unwrap();
    assert_eq!(
        FileTokenStore::new(&d_file).load(&live).unwrap(),
        Some(crm.lock().unwrap().live_refresh.clone())
    );
}

#[test]
fn saved_tokens_never_reach_debug_output() {
    let tokens = SavedTokens {
        refresh_token: "refresh-secret".into(),
        access: Some(SavedAccess {
            access_token: "access-secret".into(),
            instance_url: Some("https://example.my.salesforce.com".into()),
            renew_in: Duration::from_secs(60),
        }),
    };
    let shown = format!("{tokens:?} {:?}", Renewal::Renewed(tokens.clone()));
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("example.my.salesforce.com"), "{shown}");
}
