//! The generator's open loop against the baseline server: every scheduled request is sent
//! once — none dropped, none doubled — and a request over the in-flight budget is counted as
//! an overload instead of being delayed. And `wacrm-load e2e`, small, through the real
//! `wacrm serve` to the Salesforce, RD Station, Zoho and Kommo fakes: every message held
//! once, the CRM's limit never exceeded, no request off the spec.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
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

/// The `wacrm` binary of this build, beside `wacrm-load`. Cargo builds only this package's
/// binaries for its tests, so the workspace's test build is asked for here, once for all the
/// tests: after `cargo test --workspace` (CI, the README's command) it is a no-op that builds
/// nothing, and the binary it names is the one that command built, with the same features. (A
/// `cargo build -p wacrm` would resolve features for `wacrm` alone and rebuild some 70 crates.)
fn wacrm_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_BIN_EXE_wacrm-load"))
                .parent()
                .unwrap()
                .to_owned();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["test", "--workspace", "--no-run"]);
            // Cargo gives this test its package's variables (`CARGO_PKG_NAME`, …); build
            // scripts that read them (ring's) would see another package and build again.
            for (name, _) in std::env::vars() {
                if name.starts_with("CARGO_") && name != "CARGO_HOME" && name != "CARGO_TARGET_DIR"
                {
                    build.env_remove(name);
                }
            }
            match dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") | None => {}
                Some("release") => {
                    build.arg("--release");
                }
                Some(other) => {
                    build.args(["--profile", other]);
                }
            }
            let status = build.status().unwrap();
            assert!(status.success(), "building wacrm failed");
            dir.join("wacrm")
        })
        .clone()
}

/// Runs `wacrm-load e2e --crm CRM` with `args` and returns its `crm:` line, after asserting
/// that it holds all `messages` once, never exceeded the limit and sent nothing off the spec.
fn e2e(crm: &str, messages: usize, contacts: usize, args: &[&str]) -> String {
    let wacrm = wacrm_binary();
    let (messages_arg, contacts_arg) = (messages.to_string(), contacts.to_string());
    let out = Command::new(env!("CARGO_BIN_EXE_wacrm-load"))
        .args(["e2e", "--crm", crm, "--rate", "200", "--timeout", "120"])
        .args(["--messages", &messages_arg, "--contacts", &contacts_arg])
        .arg("--wacrm")
        .arg(&wacrm)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("crm: "))
        .unwrap_or_else(|| panic!("no crm: line in {stdout}"))
        .to_owned();
    assert!(
        line.starts_with(&format!("crm: {messages} messages held ")),
        "{line}"
    );
    assert!(line.contains("(0 held twice)"), "{line}");
    assert!(line.contains(": never exceeded)"), "{line}");
    assert!(line.ends_with("requests off the spec: 0"), "{line}");
    println!("{line}");
    line
}

#[test]
fn e2e_salesforce_holds_every_message_once_within_the_limits() {
    e2e("salesforce", 200, 20, &[]);
}

#[test]
fn e2e_rdstation_holds_every_message_once_within_the_limits() {
    // RD Station's real 120 a minute would make this a minute long; the fake enforces the
    // higher limit all the same, and the connection is configured with it.
    e2e("rdstation", 100, 10, &["--crm-limit", "1200"]);
}

#[test]
fn e2e_zoho_holds_every_message_once_within_the_limits() {
    e2e("zoho", 200, 20, &[]);
}

#[test]
fn e2e_kommo_holds_every_message_once_within_the_limits() {
    e2e("kommo", 200, 20, &[]);
}
