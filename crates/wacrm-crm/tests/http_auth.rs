//! `CrmHttp` puts the declared credentials where the CRM expects them, and never lets a secret
//! into an error text.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wacrm_crm::http::{default_classifier, Auth, Budget, CrmHttp, HttpSettings, Retry, Window};

fn settings(base_url: String, auth: Auth) -> HttpSettings {
    HttpSettings {
        base_url,
        auth,
        limit: Window::new(100, Duration::from_secs(2)),
        search_limit: None,
        timeout: Duration::from_secs(5),
    }
}

/// A one-request HTTP server on loopback: answers `{}` and returns the request's head.
async fn one_request() -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let head = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let mut read = 0;
        while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf[read..]).await.unwrap();
            assert!(n > 0, "the client closed before sending a head");
            read += n;
        }
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
            .await
            .unwrap();
        String::from_utf8_lossy(&buf[..read]).to_lowercase()
    });
    (url, head)
}

/// `GET /v1/persons`, safe to repeat.
async fn get_persons(http: &CrmHttp) -> Result<serde_json::Value, wacrm_crm::CrmError> {
    http.send(
        Method::GET,
        "/v1/persons",
        None,
        Budget::General,
        Retry::Safe,
    )
    .await
}

async fn head_of(auth: Auth) -> String {
    let (url, head) = one_request().await;
    let http = CrmHttp::new("t", settings(url, auth), Arc::new(default_classifier)).unwrap();
    get_persons(&http).await.unwrap();
    head.await.unwrap()
}

#[tokio::test]
async fn each_kind_of_credential_goes_where_the_crm_reads_it() {
    let bearer = head_of(Auth::Bearer("s3cret".into())).await;
    assert!(bearer.starts_with("get /v1/persons http/1.1"), "{bearer}");
    assert!(
        bearer.contains("\r\nauthorization: bearer s3cret\r\n"),
        "{bearer}"
    );

    let header = head_of(Auth::Header {
        name: "x-api-token".into(),
        value: "s3cret".into(),
    })
    .await;
    assert!(header.contains("\r\nx-api-token: s3cret\r\n"), "{header}");
    assert!(!header.contains("authorization"), "{header}");

    let query = head_of(Auth::Query {
        name: "api_token".into(),
        value: "s3cret".into(),
    })
    .await;
    assert!(
        query.starts_with("get /v1/persons?api_token=s3cret http/1.1"),
        "{query}"
    );

    let none = head_of(Auth::None).await;
    assert!(
        !none.contains("s3cret") && !none.contains("authorization"),
        "{none}"
    );
}

#[tokio::test]
async fn a_query_token_never_reaches_an_error_text_or_a_debug_print() {
    // Nothing listens on port 9 of loopback: the connection is refused.
    let auth = Auth::Query {
        name: "api_token".into(),
        value: "s3cret".into(),
    };
    assert!(!format!("{auth:?}").contains("s3cret"));
    let mut http = CrmHttp::new(
        "t",
        settings("http://127.0.0.1:9".into(), auth),
        Arc::new(default_classifier),
    )
    .unwrap();
    http.max_attempts = 1;
    let error = get_persons(&http).await.unwrap_err();
    assert!(!error.to_string().contains("s3cret"), "{error}");
    assert!(!format!("{error:?}").contains("s3cret"), "{error:?}");
}
