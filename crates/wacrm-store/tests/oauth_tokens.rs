//! Rotating refresh tokens shared through PostgreSQL: instances with pools, `CrmHttp` clients
//! and token caches of their own (as separate processes have) on one chain make one exchange
//! per expiry between them and never send a retired token, at the RD Station fake and at a
//! token endpoint whose tokens last a second; a turn that dies mid-exchange leaves the row as
//! it was and releases it. A SQLite store shares nothing: its connections keep their token
//! files, as before.
//!
//! The PostgreSQL tests run when `WACRM_TEST_POSTGRES_URL` names a server, and fail without
//! one when `CI` or `WACRM_REQUIRE_KAFKA` is set.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wacrm_crm::http::{default_classifier, Auth, Budget, CrmHttp, HttpSettings, Retry, Window};
use wacrm_crm::oauth::{
    fingerprint, FileTokenStore, Grant, OAuth2, RefreshTokenStore, Renewal, SavedTokens,
};
use wacrm_crm::CrmError;
use wacrm_store::oauth_tokens::PgTokenStore;
use wacrm_store::StoreConfig;
use wacrm_testkit::rdstation::{FakeConfig, RdStationFake};

/// A fresh PostgreSQL database, or `None` (skip) when no server is configured and none is
/// required.
async fn postgres() -> Option<String> {
    if let Some(url) = wacrm_testkit::postgres::fresh_database().await {
        return Some(url);
    }
    let required =
        std::env::var_os("CI").is_some() || std::env::var_os("WACRM_REQUIRE_KAFKA").is_some();
    assert!(
        !required,
        "WACRM_TEST_POSTGRES_URL is not set, and CI / WACRM_REQUIRE_KAFKA require this suite"
    );
    eprintln!("WACRM_TEST_POSTGRES_URL not set: skipped");
    None
}

/// A pool of its own, as a separate process has.
async fn pool(url: &str) -> DatabaseConnection {
    wacrm_store::connect(&StoreConfig {
        url: url.to_owned(),
        max_connections: 4,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// `n` instances' token stores on the database at `url` (migrated).
async fn stores(url: &str, n: usize) -> Vec<Arc<dyn RefreshTokenStore>> {
    let mut out: Vec<Arc<dyn RefreshTokenStore>> = Vec::new();
    for i in 0..n {
        let db = pool(url).await;
        if i == 0 {
            wacrm_store::migrate(&db).await.unwrap();
        }
        out.push(Arc::new(PgTokenStore::new(&db).unwrap()));
    }
    out
}

fn client(
    base_url: &str,
    token_url: &str,
    (id, secret): (&str, &str),
    configured: &str,
    store: Arc<dyn RefreshTokenStore>,
) -> CrmHttp {
    let oauth = OAuth2::new(
        token_url,
        id,
        secret,
        Grant::RefreshToken(configured.into()),
    )
    .with_refresh_token_store(store);
    let settings = HttpSettings {
        base_url: base_url.to_owned(),
        auth: Auth::OAuth2(Box::new(oauth)),
        limit: Window::new(100_000, Duration::from_secs(1)),
        search_limit: None,
        timeout: Duration::from_secs(5),
    };
    CrmHttp::new("rd", settings, Arc::new(default_classifier)).unwrap()
}

async fn call(http: &CrmHttp, path: &str) -> Result<Value, CrmError> {
    http.send(Method::GET, path, None, Budget::General, Retry::Safe)
        .await
}

/// A token endpoint (`POST /oauth/token`) whose refresh tokens rotate on every use and whose
/// access tokens last `expires_in`, and an API (`GET /api`) that takes them.
struct Crm {
    live_refresh: String,
    access: HashSet<String>,
    expires_in: u64,
    /// When each successful exchange arrived.
    exchanges: Vec<Instant>,
    /// Exchanges refused with `invalid_grant` (a retired refresh token).
    refused: usize,
    /// Token requests that arrived.
    arrived: usize,
    /// How long an exchange's answer takes (the rotation is applied at once).
    answer_after: Duration,
}

type Shared = Arc<Mutex<Crm>>;

impl Crm {
    fn token(&mut self, form: &str) -> (u16, Value, Duration) {
        self.arrived += 1;
        let sent = form
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == "refresh_token")
            .map(|(_, value)| value);
        if sent != Some(self.live_refresh.as_str()) {
            self.refused += 1;
            return (400, json!({"error": "invalid_grant"}), Duration::ZERO);
        }
        self.exchanges.push(Instant::now());
        let n = self.exchanges.len();
        self.live_refresh = format!("refresh-{n}");
        self.access.insert(format!("access-{n}"));
        let answer = json!({"access_token": format!("access-{n}"), "token_type": "Bearer",
                            "expires_in": self.expires_in, "refresh_token": format!("refresh-{n}")});
        (200, answer, self.answer_after)
    }

    fn api(&self, authorization: Option<&str>) -> (u16, Value, Duration) {
        match authorization.and_then(|v| v.strip_prefix("Bearer ")) {
            Some(token) if self.access.contains(token) => {
                (200, json!({"ok": true}), Duration::ZERO)
            }
            _ => (401, json!({"message": "expired token"}), Duration::ZERO),
        }
    }
}

/// Serves `crm` on loopback (one request per connection); its URL.
async fn serve(crm: Shared) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::spawn(answer(socket, Arc::clone(&crm)));
        }
    });
    url
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

async fn answer(mut socket: TcpStream, crm: Shared) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    let (status, json, after) = {
        let mut crm = crm.lock().unwrap();
        if head.starts_with("POST /oauth/token ") {
            crm.token(&body)
        } else {
            crm.api(header(&head, "authorization"))
        }
    };
    tokio::time::sleep(after).await;
    let text = json.to_string();
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
}

async fn crm(expires_in: u64, answer_after: Duration) -> (String, Shared) {
    let crm: Shared = Arc::new(Mutex::new(Crm {
        live_refresh: "refresh-0".into(),
        access: HashSet::new(),
        expires_in,
        exchanges: Vec::new(),
        refused: 0,
        arrived: 0,
        answer_after,
    }));
    (serve(Arc::clone(&crm)).await, crm)
}

fn instance(url: &str, store: Arc<dyn RefreshTokenStore>) -> CrmHttp {
    client(
        url,
        &format!("{url}/oauth/token"),
        ("client-1", "very-secret"),
        "refresh-0",
        store,
    )
}

/// What the chain's row holds: (refresh token, access token).
async fn row(url: &str, configured: &str) -> (Option<String>, Option<String>) {
    let db = pool(url).await;
    let row = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT refresh_token, access_token FROM oauth_tokens WHERE configured_sha256 = $1",
            [fingerprint(configured).into()],
        ))
        .await
        .unwrap()
        .unwrap();
    (
        row.try_get("", "refresh_token").unwrap(),
        row.try_get("", "access_token").unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_keep_rd_stations_rotating_chain() {
    let Some(url) = postgres().await else {
        return;
    };
    let fake = RdStationFake::start(FakeConfig {
        requests_per_minute: 10_000,
        ..FakeConfig::default()
    })
    .await;
    let config = fake.config();
    let stores = stores(&url, 2).await;
    let api = format!("{}/crm/v2", fake.base_url());
    let instances: Vec<CrmHttp> = stores
        .iter()
        .map(|store| {
            client(
                &api,
                &fake.token_url(),
                (&config.client_id, &config.client_secret),
                &config.refresh_token,
                Arc::clone(store),
            )
        })
        .collect();
    for round in 1..=3 {
        for (i, http) in instances.iter().enumerate() {
            call(http, "/users")
                .await
                .unwrap_or_else(|e| panic!("round {round}, instance {i}: {e}"));
        }
        // One exchange a round, and no retired token sent (a refusal is a token request too).
        assert_eq!(fake.token_requests(), round, "round {round}");
        // The access tokens expire (as after 7,200 s): every instance is refused, and renews.
        fake.expire_access_tokens();
    }
    // The row holds the live refresh token, never the configured one.
    let (refresh, access) = row(&url, &config.refresh_token).await;
    assert_eq!(refresh, Some(fake.current_refresh_token()));
    assert!(access.is_some());
    assert!(fake
        .retired_refresh_tokens()
        .contains(&config.refresh_token));
}

/// 3 instances × 4 tasks sending without pause while 1-second tokens expire: each expiry is
/// one exchange (the next no sooner than the renewal time, 0.9 s, after it), nothing refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_with_several_tasks_make_one_exchange_per_expiry() {
    let Some(url) = postgres().await else {
        return;
    };
    let (api, crm) = crm(1, Duration::ZERO).await;
    let until = Instant::now() + Duration::from_millis(3_700);
    let mut tasks = Vec::new();
    for store in stores(&url, 3).await {
        let http = Arc::new(instance(&api, store));
        for _ in 0..4 {
            let http = Arc::clone(&http);
            tasks.push(tokio::spawn(async move {
                let mut calls = 0;
                while Instant::now() < until {
                    call(&http, "/api").await?;
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
        crm.exchanges.len() >= 4,
        "{} exchanges",
        crm.exchanges.len()
    );
    for pair in crm.exchanges.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(850),
            "two exchanges {gap:?} apart: one expiry was renewed twice"
        );
    }
    eprintln!("{calls} calls, {} exchanges in 3.7 s", crm.exchanges.len());
}

/// After each revocation 3 instances × 4 tasks send at once with the revoked token: all are
/// refused together, and the chain is exchanged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_together_on_three_instances_renew_once() {
    let Some(url) = postgres().await else {
        return;
    };
    // Every refused request reaches its instance while the renewal is still under way.
    let (api, crm) = crm(3600, Duration::from_millis(100)).await;
    let instances: Vec<Arc<CrmHttp>> = stores(&url, 3)
        .await
        .into_iter()
        .map(|store| Arc::new(instance(&api, store)))
        .collect();
    for http in &instances {
        call(http, "/api").await.unwrap();
    }
    for round in 2..=4 {
        crm.lock().unwrap().access.clear();
        let start = Arc::new(tokio::sync::Barrier::new(12));
        let mut tasks = Vec::new();
        for http in &instances {
            for _ in 0..4 {
                let (http, start) = (Arc::clone(http), Arc::clone(&start));
                tasks.push(tokio::spawn(async move {
                    start.wait().await;
                    call(&http, "/api").await
                }));
            }
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let crm = crm.lock().unwrap();
        assert_eq!(
            (crm.exchanges.len(), crm.refused),
            (round, 0),
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_dropped_mid_exchange_still_stores_the_rotation() {
    let Some(url) = postgres().await else {
        return;
    };
    let (api, crm) = crm(3600, Duration::from_millis(300)).await;
    let stores = stores(&url, 2).await;
    let a = Arc::new(instance(&api, Arc::clone(&stores[0])));
    let b = instance(&api, Arc::clone(&stores[1]));
    let request = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { call(&a, "/api").await })
    };
    while crm.lock().unwrap().arrived == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The CRM retired refresh-0 and has not answered yet: the request is dropped.
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    // B's turn waits for A's, which ran to its end, and uses the access token it stored.
    call(&b, "/api").await.unwrap();
    let live = {
        let crm = crm.lock().unwrap();
        assert_eq!((crm.exchanges.len(), crm.refused), (1, 0));
        crm.live_refresh.clone()
    };
    assert_eq!(row(&url, "refresh-0").await.0, Some(live));
}

/// A turn that dies before it commits (a crash: here its future is dropped inside the store)
/// rolls back: the row holds the token it held, and the next turn does not wait for it. Had
/// the CRM answered the dead turn's exchange, that token is retired and the next exchange is
/// refused: the connection needs a new authorisation (what the docs say).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_dies_mid_exchange_leaves_the_row_and_releases_it() {
    let Some(url) = postgres().await else {
        return;
    };
    let (api, crm) = crm(3600, Duration::ZERO).await;
    let stores = stores(&url, 2).await;
    // The chain is at refresh-1.
    call(&instance(&api, Arc::clone(&stores[0])), "/api")
        .await
        .unwrap();
    assert_eq!(row(&url, "refresh-0").await.0.as_deref(), Some("refresh-1"));

    // A turn exchanges refresh-1 at the CRM (which retires it), then dies before its commit.
    let exchanged = Arc::new(tokio::sync::Notify::new());
    let dying = {
        let (store, exchanged, api) = (Arc::clone(&stores[0]), Arc::clone(&exchanged), api.clone());
        tokio::spawn(async move {
            store
                .rotate(
                    "refresh-0",
                    Box::new(move |held: Option<SavedTokens>| {
                        Box::pin(async move {
                            let held = held.unwrap();
                            let form = [
                                ("grant_type", "refresh_token"),
                                ("refresh_token", held.refresh_token.as_str()),
                            ];
                            let answer = reqwest::Client::new()
                                .post(format!("{api}/oauth/token"))
                                .form(&form)
                                .send()
                                .await
                                .unwrap();
                            assert_eq!(answer.status(), 200);
                            exchanged.notify_one();
                            std::future::pending::<()>().await;
                            Ok(Renewal::Unchanged)
                        })
                    }),
                )
                .await
        })
    };
    exchanged.notified().await;
    dying.abort();
    let _ = dying.await;

    // The next turn gets the row at once, as it was.
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        stores[1].rotate(
            "refresh-0",
            Box::new(|_held| Box::pin(async { Ok(Renewal::Unchanged) })),
        ),
    )
    .await
    .expect("the dead turn's hold was released");
    assert_eq!(next.unwrap().unwrap().refresh_token, "refresh-1");
    // The CRM retired refresh-1 with the lost answer: an exchange from the row is refused.
    let client = instance(&api, Arc::clone(&stores[1]));
    crm.lock().unwrap().access.clear();
    let err = call(&client, "/api").await.unwrap_err();
    assert!(matches!(err, CrmError::Fatal(_)), "{err}");
    assert_eq!(crm.lock().unwrap().refused, 1);
}

/// On SQLite nothing is shared: there is no PostgreSQL token store, the table exists so both
/// schemas stay alike, and a connection keeps its chain in its token file across restarts.
#[tokio::test]
async fn a_sqlite_store_leaves_connections_on_their_token_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = wacrm_store::connect(&StoreConfig {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("store.db").display()
        ),
        ..Default::default()
    })
    .await
    .unwrap();
    wacrm_store::migrate(&db).await.unwrap();
    assert!(PgTokenStore::new(&db).is_none());
    db.execute_unprepared("SELECT configured_sha256, refresh_token FROM oauth_tokens")
        .await
        .unwrap();

    let (api, crm) = crm(3600, Duration::ZERO).await;
    let path = dir.path().join("crm").join("rd.oauth.json");
    let file = || -> Arc<dyn RefreshTokenStore> { Arc::new(FileTokenStore::new(&path)) };
    call(&instance(&api, file()), "/api").await.unwrap();
    // A restart: the file's token, not the retired configured one.
    crm.lock().unwrap().access.clear();
    call(&instance(&api, file()), "/api").await.unwrap();
    let crm = crm.lock().unwrap();
    assert_eq!((crm.exchanges.len(), crm.refused), (2, 0));
    assert_eq!(
        FileTokenStore::new(&path).load("refresh-0").unwrap(),
        Some(crm.live_refresh.clone())
    );
}
