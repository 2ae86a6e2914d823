//! The real binary under SIGKILL, on every bus backend: every webhook that got 200 is in the
//! store exactly once after a restart; SIGTERM shuts down cleanly.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{backends, contact_wa_id, text_webhook, Bus, Service};
use futures::stream::{self, StreamExt};

async fn sigkill_mid_stream(bus: Bus) {
    let mut service = Service::new(bus);
    let key = service.admin_key();
    service.start().await;
    let name = service.bus.name();

    let total = 600;
    let kill_after = 150;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let service = Arc::new(tokio::sync::Mutex::new(service));
    let (port, client) = {
        let s = service.lock().await;
        (s.port, s.client.clone())
    };
    let sender = {
        let acked = acked.clone();
        tokio::spawn(async move {
            stream::iter(0..total)
                .for_each_concurrent(16, |i| {
                    let acked = acked.clone();
                    let client = client.clone();
                    async move {
                        let (wamid, body) = text_webhook(i);
                        let sig = wacrm_whatsapp::signature::sign(common::SECRET.as_bytes(), &body);
                        let res = client
                            .post(format!("http://127.0.0.1:{port}/webhooks/whatsapp"))
                            .header("x-hub-signature-256", sig)
                            .body(body)
                            .send()
                            .await;
                        if res.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
                            acked.lock().unwrap().insert(wamid);
                        }
                    }
                })
                .await;
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < kill_after {
        assert!(
            Instant::now() < deadline,
            "{name}: webhooks were not acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    service.lock().await.kill(); // SIGKILL
    sender.await.unwrap();
    let acked: HashSet<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= kill_after && acked.len() < total,
        "{name}: killed mid-stream ({} acked of {total})",
        acked.len()
    );

    let mut service = Arc::try_unwrap(service).ok().unwrap().into_inner();
    service.start().await;
    service
        .wait_stored(&key, acked.iter().cloned(), Duration::from_secs(90))
        .await;

    // Exactly once: across every contact's timeline, each wamid appears once.
    let mut seen = Vec::new();
    for c in 0..25 {
        let (_, contacts) = service
            .get_json(&format!("/v1/contacts?wa_id={}", contact_wa_id(c)), &key)
            .await;
        for contact in contacts.as_array().unwrap() {
            let id = contact["id"].as_str().unwrap();
            let (_, messages) = service
                .get_json(&format!("/v1/contacts/{id}/messages?limit=1000"), &key)
                .await;
            assert!(messages["next"].is_null(), "one page holds them");
            seen.extend(
                messages["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["id"].as_str().unwrap().to_owned()),
            );
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "{name}: a message is stored twice"
    );
    assert!(acked.iter().all(|w| unique.contains(w)), "{name}");
    service.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_and_doubles_nothing_acknowledged() {
    for bus in backends() {
        sigkill_mid_stream(bus).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_serve_starts_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wacrm"))
        .current_dir(dir.path())
        .env("WACRM_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
    {
        assert!(
            Instant::now() < deadline,
            "zero-config wacrm did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dir.path().join("data/bus.db").exists() && dir.path().join("data/wacrm.db").exists());
    // No app secret configured: webhooks are refused, never accepted unsigned.
    let r = client
        .post(format!("http://127.0.0.1:{port}/webhooks/whatsapp"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(Instant::now() < deadline, "no exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
