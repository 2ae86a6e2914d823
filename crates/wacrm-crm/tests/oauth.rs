//! `CrmHttp` with OAuth 2: tokens fetched with the client-credentials and the refresh-token
//! grants, reused until they expire, fetched again when the CRM refuses one, a rotated refresh
//! token used from then on, and a refused grant fatal without a secret in its text.
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
use wacrm_crm::oauth::{Grant, OAuth2};
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
}

type Shared = Arc<Mutex<Server>>;

async fn token(
    State(s): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let mut s = s.lock().unwrap();
    s.token_requests.push(form);
    if s.refuse {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "refresh token revoked"})),
        );
    }
    let n = s.token_requests.len();
    let access = format!("access-{n}");
    s.valid = Some(access.clone());
    (
        StatusCode::OK,
        Json(
            json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                    "refresh_token": format!("refresh-{n}")}),
        ),
    )
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
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, shared)
}

fn client(url: &str, grant: Grant) -> CrmHttp {
    let auth = Auth::OAuth2(OAuth2 {
        token_url: format!("{url}/oauth/token"),
        client_id: "client-1".into(),
        client_secret: "very-secret".into(),
        grant,
        scope: Some("contacts:full".into()),
        scheme: "Bearer".into(),
    });
    let settings = HttpSettings {
        base_url: url.to_owned(),
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
