//! The real binary under SIGKILL: every webhook that got 200 is in the store exactly once after
//! a restart; SIGTERM shuts down cleanly.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use wacrm_whatsapp::signature::sign;

const SECRET: &str = "durability-secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wacrm"));
    cmd.current_dir(dir)
        .env("WACRM_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "WACRM_STORE__URL",
            format!("sqlite://{}?mode=rwc", dir.join("store.db").display()),
        )
        .env("WACRM_BUS__EMBEDDED__PATH", dir.join("bus.db"))
        .env("WACRM_WHATSAPP__APP_SECRET", SECRET)
        .env("WACRM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

fn start(dir: &Path, port: u16) -> Child {
    command(dir, port).arg("serve").spawn().unwrap()
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "wacrm did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn webhook(i: usize) -> (String, Vec<u8>) {
    let wamid = format!("wamid.durability.{i:05}");
    let contact = format!("55119{:08}", 87_000_000 + i % 25);
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": format!("Cliente {}", i % 25)}, "wa_id": contact}],
            "messages": [{"from": contact, "id": wamid, "timestamp": (1_750_000_000 + i).to_string(),
                          "type": "text", "text": {"body": format!("mensagem {i}")}}]
        }}]}]
    });
    (wamid, serde_json::to_vec(&body).unwrap())
}

fn create_admin_key(dir: &Path) -> String {
    let out = command(dir, 0)
        .args(["keys", "create", "--name", "Durability", "--role", "admin"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_and_doubles_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_admin_key(dir.path());
    let port = free_port();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut child = start(dir.path(), port);
    wait_ready(&client, port).await;

    let total = 600;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(HashSet::new()));
    let kill_after = 150;
    let pid = child.id();
    let sender = {
        let acked = acked.clone();
        let client = client.clone();
        tokio::spawn(async move {
            stream::iter(0..total)
                .for_each_concurrent(16, |i| {
                    let acked = acked.clone();
                    let client = client.clone();
                    async move {
                        let (wamid, body) = webhook(i);
                        let sig = sign(SECRET.as_bytes(), &body);
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < kill_after {
        assert!(Instant::now() < deadline, "webhooks were not acknowledged");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    sender.await.unwrap();
    let acked: HashSet<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= kill_after && acked.len() < total,
        "killed mid-stream ({} acked of {total}, pid {pid})",
        acked.len()
    );

    let mut child = start(dir.path(), port);
    wait_ready(&client, port).await;
    let auth = format!("Bearer {key}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing: Vec<String> = acked.iter().cloned().collect();
    while !missing.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} acknowledged webhooks never reached the store",
            missing.len()
        );
        let mut still = Vec::new();
        for wamid in missing {
            let r = client
                .get(format!("http://127.0.0.1:{port}/v1/messages/{wamid}"))
                .header("authorization", &auth)
                .send()
                .await
                .unwrap();
            if r.status() != reqwest::StatusCode::OK {
                still.push(wamid);
            }
        }
        missing = still;
        if !missing.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Exactly once: across every contact's timeline, each wamid appears once.
    let mut seen = Vec::new();
    for c in 0..25 {
        let wa_id = format!("55119{:08}", 87_000_000 + c);
        let contacts: serde_json::Value = client
            .get(format!("http://127.0.0.1:{port}/v1/contacts?wa_id={wa_id}"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for contact in contacts.as_array().unwrap() {
            let id = contact["id"].as_str().unwrap();
            let messages: Vec<serde_json::Value> = client
                .get(format!(
                    "http://127.0.0.1:{port}/v1/contacts/{id}/messages?limit=1000"
                ))
                .header("authorization", &auth)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            seen.extend(
                messages
                    .iter()
                    .map(|m| m["id"].as_str().unwrap().to_owned()),
            );
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a message is stored twice");
    assert!(acked.iter().all(|w| unique.contains(w)));

    terminate(&mut child);
}

fn terminate(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "wacrm exited with {status} on SIGTERM");
            return;
        }
        assert!(Instant::now() < deadline, "wacrm did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_serve_starts_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wacrm"))
        .current_dir(dir.path())
        .env("WACRM_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    wait_ready(&client, port).await;
    assert!(dir.path().join("data/bus.db").exists() && dir.path().join("data/wacrm.db").exists());
    // No app secret configured: webhooks are refused, never accepted unsigned.
    let r = client
        .post(format!("http://127.0.0.1:{port}/webhooks/whatsapp"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    terminate(&mut child);
}
