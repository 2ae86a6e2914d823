//! `CrmHttp` with a shared limiter: every request reserves a slot of the connection's keys at
//! the connection's rates before it leaves; a limiter that cannot be asked lets nothing leave.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wacrm_core::rate::{LimiterUnavailable, Rate, Reservation, SharedLimiter};
use wacrm_crm::http::{default_classifier, Auth, Budget, CrmHttp, HttpSettings, Retry, Window};

/// Grants every slot at once and remembers what was asked.
#[derive(Default)]
struct Recording {
    asked: Mutex<Vec<(String, Rate)>>,
    down: bool,
}

impl SharedLimiter for Recording {
    fn reserve<'a>(&'a self, key: &'a str, rate: Rate) -> Reservation<'a> {
        Box::pin(async move {
            if self.down {
                return Err(LimiterUnavailable("store unreachable".into()));
            }
            self.asked.lock().unwrap().push((key.to_owned(), rate));
            Ok(Duration::ZERO)
        })
    }
}

/// An HTTP server on loopback answering `{}` to every request, counting them.
async fn server() -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(Mutex::new(0));
    let count = Arc::clone(&served);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf[read..]).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    read += n;
                }
                *count.lock().unwrap() += 1;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await;
            });
        }
    });
    (url, served)
}

fn client(url: String) -> CrmHttp {
    CrmHttp::new(
        "sales",
        HttpSettings {
            base_url: url,
            auth: Auth::None,
            limit: Window::new(100, Duration::from_secs(10)),
            search_limit: Some(Window::new(5, Duration::from_secs(1))),
            timeout: Duration::from_secs(5),
        },
        Arc::new(default_classifier),
    )
    .unwrap()
}

#[tokio::test]
async fn every_request_reserves_the_connections_slots() {
    let (url, served) = server().await;
    let limiter = Arc::new(Recording::default());
    let http = client(url).with_shared_limiter(Some(limiter.clone() as Arc<dyn SharedLimiter>));
    assert!(http.shares_limits());
    http.send(Method::GET, "/a", None, Budget::General, Retry::Safe)
        .await
        .unwrap();
    http.send(Method::POST, "/search", None, Budget::Search, Retry::Safe)
        .await
        .unwrap();
    let asked = limiter.asked.lock().unwrap().clone();
    let keys: Vec<&str> = asked.iter().map(|(k, _)| k.as_str()).collect();
    // A search counts against both budgets.
    assert_eq!(
        keys,
        ["crm:sales:general", "crm:sales:search", "crm:sales:general"]
    );
    // The same shape as the in-process limiter: 100 per 10 s less 5 % is 95, a burst of one
    // and 94 at the steady rate.
    let general = asked[0].1;
    assert_eq!(general.burst, 1);
    assert_eq!(general.interval, Duration::from_secs(10) / 94);
    assert_eq!(*served.lock().unwrap(), 2);
}

#[tokio::test]
async fn an_unreachable_limiter_lets_nothing_leave() {
    let (url, served) = server().await;
    let limiter = Arc::new(Recording {
        down: true,
        ..Default::default()
    });
    let http = client(url).with_shared_limiter(Some(limiter as Arc<dyn SharedLimiter>));
    let error = http
        .send(Method::POST, "/create", None, Budget::General, Retry::Once)
        .await
        .unwrap_err();
    assert!(
        matches!(error, wacrm_crm::CrmError::Transient(_)),
        "{error:?}"
    );
    assert_eq!(*served.lock().unwrap(), 0, "nothing was sent");
}

#[tokio::test]
async fn clients_made_after_share_limits_share_them() {
    let limiter = Arc::new(Recording::default());
    wacrm_crm::http::share_limits(Some(limiter as Arc<dyn SharedLimiter>));
    let shared = client("http://127.0.0.1:9".into());
    wacrm_crm::http::share_limits(None);
    let local = client("http://127.0.0.1:9".into());
    assert!(shared.shares_limits());
    assert!(!local.shares_limits());
}
