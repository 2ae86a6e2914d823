//! `CrmHttp` with OAuth 2: tokens fetched with the client-credentials and the refresh-token
//! grants, reused until they expire, fetched again when the CRM refuses one, a rotated refresh
//! token used from then on (and after a restart, through its file), the account's host taken
//! from the token answer, the JWT-bearer grant's signed assertion, and a refused grant fatal
//! without a secret in its text.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use reqwest::Method;
use serde_json::{json, Value};
use wacrm_crm::http::{default_classifier, Auth, Budget, CrmHttp, HttpSettings, Retry, Window};
use wacrm_crm::oauth::{FileTokenStore, Grant, JwtBearer, OAuth2};
use wacrm_crm::CrmError;

#[derive(Default)]
struct Server {
    /// Every token request's form.
    token_requests: Vec<HashMap<String, String>>,
    /// The access token the API accepts.
    valid: Option<String>,
    /// API calls answered 200.
    served: usize,
    /// Answer token requests 400 invalid_grant.
    refuse: bool,
    /// Refresh tokens are single-use: only the last one issued (or `refresh-0`) is accepted.
    rotating: bool,
    /// The refresh token a rotating server accepts next.
    live_refresh: Option<String>,
    /// Name this host in the answer's `instance_url`.
    instance_url: Option<String>,
}

type Shared = Arc<Mutex<Server>>;

async fn token(
    State(s): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let mut s = s.lock().unwrap();
    s.token_requests.push(form.clone());
    if s.refuse {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "refresh token revoked"})),
        );
    }
    if s.rotating {
        let live = s.live_refresh.clone().unwrap_or_else(|| "refresh-0".into());
        if form.get("refresh_token") != Some(&live) {
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    json!({"error": "invalid_grant", "error_description": "refresh token retired"}),
                ),
            );
        }
    }
    let n = s.token_requests.len();
    let access = format!("access-{n}");
    s.valid = Some(access.clone());
    s.live_refresh = Some(format!("refresh-{n}"));
    let mut answer = json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                            "refresh_token": format!("refresh-{n}")});
    if let Some(host) = &s.instance_url {
        answer["instance_url"] = json!(host);
    }
    (StatusCode::OK, Json(answer))
}

async fn api(State(s): State<Shared>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let mut s = s.lock().unwrap();
    let sent = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    match &s.valid {
        Some(valid) if sent == format!("Bearer {valid}") => {
            s.served += 1;
            (StatusCode::OK, Json(json!({"ok": true})))
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "expired token"})),
        ),
    }
}

async fn start() -> (String, Shared) {
    let shared: Shared = Arc::default();
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/v1/persons", get(api))
        .route("/services/data/v62.0/sobjects", get(api))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, shared)
}

fn client(url: &str, grant: Grant) -> CrmHttp {
    client_with(url, url, grant, |o| o.with_scope("contacts:full"))
}

fn client_with(
    url: &str,
    base_url: &str,
    grant: Grant,
    more: impl FnOnce(OAuth2) -> OAuth2,
) -> CrmHttp {
    let auth = Auth::OAuth2(Box::new(more(OAuth2::new(
        format!("{url}/oauth/token"),
        "client-1",
        "very-secret",
        grant,
    ))));
    let settings = HttpSettings {
        base_url: base_url.to_owned(),
        auth,
        limit: Window::new(100, Duration::from_secs(2)),
        search_limit: None,
        timeout: Duration::from_secs(5),
    };
    CrmHttp::new("t", settings, Arc::new(default_classifier)).unwrap()
}

async fn get_persons(http: &CrmHttp) -> Result<Value, CrmError> {
    http.send(
        Method::GET,
        "/v1/persons",
        None,
        Budget::General,
        Retry::Safe,
    )
    .await
}

#[tokio::test]
async fn client_credentials_fetch_one_token_and_reuse_it() {
    let (url, server) = start().await;
    let http = client(&url, Grant::ClientCredentials);
    for _ in 0..3 {
        get_persons(&http).await.unwrap();
    }
    let s = server.lock().unwrap();
    assert_eq!(s.served, 3);
    assert_eq!(
        s.token_requests.len(),
        1,
        "the token is reused until it expires"
    );
    let form = &s.token_requests[0];
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "client-1");
    assert_eq!(form["client_secret"], "very-secret");
    assert_eq!(form["scope"], "contacts:full");
}

#[tokio::test]
async fn extra_form_fields_ride_on_every_token_request() {
    let (url, server) = start().await;
    let http = client_with(&url, &url, Grant::RefreshToken("refresh-0".into()), |o| {
        o.with_form_field("redirect_uri", "https://example.com/back")
    });
    get_persons(&http).await.unwrap();
    let form = server.lock().unwrap().token_requests[0].clone();
    assert_eq!(form["redirect_uri"], "https://example.com/back");
    assert_eq!(form["grant_type"], "refresh_token");
}

#[tokio::test]
async fn a_refused_token_is_renewed_with_the_rotated_refresh_token() {
    let (url, server) = start().await;
    let http = client(&url, Grant::RefreshToken("refresh-0".into()));
    get_persons(&http).await.unwrap();
    // The CRM revokes the access token.
    server.lock().unwrap().valid = Some("something-else".into());
    get_persons(&http).await.unwrap();
    let s = server.lock().unwrap();
    assert_eq!(s.served, 2);
    let refresh: Vec<&str> = s
        .token_requests
        .iter()
        .map(|f| f["refresh_token"].as_str())
        .collect();
    assert_eq!(
        refresh,
        vec!["refresh-0", "refresh-1"],
        "the rotated one is used"
    );
    assert!(s
        .token_requests
        .iter()
        .all(|f| f["grant_type"] == "refresh_token"));
}

#[tokio::test]
async fn a_refused_grant_is_fatal_and_names_no_secret() {
    let (url, server) = start().await;
    server.lock().unwrap().refuse = true;
    let http = client(&url, Grant::RefreshToken("refresh-secret-0".into()));
    let err = get_persons(&http).await.unwrap_err();
    assert!(matches!(err, CrmError::Fatal(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("refresh token revoked"), "{text}");
    assert!(
        !text.contains("very-secret") && !text.contains("refresh-secret-0"),
        "{text}"
    );
}

#[tokio::test]
async fn a_rotated_refresh_token_survives_a_restart_through_its_file() {
    let (url, server) = start().await;
    server.lock().unwrap().rotating = true;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm").join("main.oauth.json");
    let with_file = |o: OAuth2| o.with_refresh_token_store(Arc::new(FileTokenStore::new(&path)));

    let first = client_with(
        &url,
        &url,
        Grant::RefreshToken("refresh-0".into()),
        with_file,
    );
    get_persons(&first).await.unwrap();
    drop(first);
    // refresh-0 is retired now; a restart must not send it.
    let restarted = client_with(
        &url,
        &url,
        Grant::RefreshToken("refresh-0".into()),
        with_file,
    );
    get_persons(&restarted).await.unwrap();
    let sent: Vec<String> = server
        .lock()
        .unwrap()
        .token_requests
        .iter()
        .map(|f| f["refresh_token"].clone())
        .collect();
    assert_eq!(sent, vec!["refresh-0", "refresh-1"]);

    // Without the file the restart would have been dead: the configured token is retired.
    let forgetful = client(&url, Grant::RefreshToken("refresh-0".into()));
    let err = get_persons(&forgetful).await.unwrap_err();
    assert!(matches!(err, CrmError::Fatal(_)), "{err}");

    // The file holds the current token, not the configured one, and only its owner reads it.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("refresh-2") && !text.contains("refresh-0"),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
}

#[test]
fn a_newly_configured_refresh_token_wins_over_the_saved_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileTokenStore::new(dir.path().join("t.json"));
    assert_eq!(store.load("configured-a").unwrap(), None);
    store.save("configured-a", "rotated-1").unwrap();
    assert_eq!(
        store.load("configured-a").unwrap().as_deref(),
        Some("rotated-1")
    );
    // The operator authorised again and configured the new token.
    assert_eq!(store.load("configured-b").unwrap(), None);
}

#[tokio::test]
async fn requests_go_to_the_host_the_token_answer_names() {
    let (url, server) = start().await;
    server.lock().unwrap().instance_url = Some(url.clone());
    // The configured host answers nothing: only its path is kept.
    let http = client_with(
        &url,
        "http://127.0.0.1:9/services/data/v62.0",
        Grant::ClientCredentials,
        |o| o.with_instance_url_from("instance_url"),
    );
    http.send(Method::GET, "/sobjects", None, Budget::General, Retry::Safe)
        .await
        .unwrap();
    assert_eq!(server.lock().unwrap().served, 1);
}

#[tokio::test]
async fn a_token_answer_naming_a_clear_text_host_is_refused() {
    let (url, server) = start().await;
    server.lock().unwrap().instance_url = Some("ftp://example.invalid".into());
    let http = client_with(&url, &url, Grant::ClientCredentials, |o| {
        o.with_instance_url_from("instance_url")
    });
    let err = get_persons(&http).await.unwrap_err();
    assert!(matches!(err, CrmError::Fatal(_)), "{err}");
}

#[tokio::test]
async fn the_jwt_bearer_grant_sends_a_signed_assertion_and_no_secret() {
    let (url, server) = start().await;
    let grant = Grant::JwtBearer(JwtBearer {
        subject: "integration@example.com".into(),
        audience: "https://login.salesforce.com".into(),
        private_key_pem: include_str!("data/test-jwt-key.pem").into(),
    });
    let http = client_with(&url, &url, grant, |o| o);
    get_persons(&http).await.unwrap();
    let form = server.lock().unwrap().token_requests[0].clone();
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert!(!form.contains_key("client_secret"));
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(include_bytes!("data/test-jwt-key.pub.pem"))
        .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["https://login.salesforce.com"]);
    let claims = jsonwebtoken::decode::<Value>(&form["assertion"], &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["iss"], "client-1");
    assert_eq!(claims["sub"], "integration@example.com");
}

#[tokio::test]
async fn a_response_observer_sees_every_answer_successes_included() {
    let (url, _server) = start().await;
    let seen: Arc<Mutex<Vec<u16>>> = Arc::default();
    let kept = seen.clone();
    let http = client(&url, Grant::ClientCredentials).with_response_observer(Arc::new(
        move |status, _headers: &reqwest::header::HeaderMap| kept.lock().unwrap().push(status),
    ));
    get_persons(&http).await.unwrap();
    get_persons(&http).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![200, 200]);
}
