//! The generator's open loop against the baseline server: every scheduled request is sent
//! once — none dropped, none doubled — and a request over the in-flight budget is counted as
//! an overload instead of being delayed.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use wacrm_bench::driver::{drive, Pace, Pool, Report};
use wacrm_bench::payloads::{Generator, Mix};

fn pool() -> Arc<Pool> {
    let generator = Generator {
        updates: 1,
        contacts: 10,
        numbers: 1,
        mix: Mix::Text,
        secret: "s".into(),
        run: "driver-test".into(),
    };
    Arc::new(Pool::new(&generator, 100))
}

async fn baseline() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = ([127, 0, 0, 1], port).into();
    tokio::spawn(wacrm_bench::baseline::serve(addr));
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    format!("http://{addr}/")
}

/// Drives the baseline server open loop at 400 requests a second.
async fn at_400_a_second(duration: Duration, in_flight: usize) -> Report {
    let url = baseline().await;
    drive(
        reqwest::Client::new(),
        url,
        pool(),
        Pace::Rate(400.0),
        duration,
        in_flight,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_loop_sends_every_scheduled_request_once() {
    // 400 a second for 0.5 s: requests at 0, 2.5, …, 497.5 ms.
    let report = at_400_a_second(Duration::from_millis(500), 1000).await;
    assert_eq!(report.errors, Default::default());
    assert_eq!(report.ok, 200);
    assert_eq!(report.messages, 200);
    assert_eq!(report.latency.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_in_flight_budget_is_an_overload_not_a_delay() {
    let report = at_400_a_second(Duration::from_millis(250), 0).await;
    assert_eq!(report.ok, 0);
    assert_eq!(report.errors.get("overload"), Some(&100));
}
