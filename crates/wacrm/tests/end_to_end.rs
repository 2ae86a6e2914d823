//! Webhooks → bus → store → API through the real binary, on every bus backend.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{backends, fixture, text_webhook, Bus, Service};

fn wamids(body: &[u8]) -> Vec<String> {
    let raw: serde_json::Value = serde_json::from_slice(body).unwrap();
    raw["entry"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["changes"].as_array().unwrap().iter())
        .flat_map(|c| {
            c["value"]["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn fixtures_reach_the_store(bus: Bus) {
    let mut service = Service::new(bus);
    let key = service.admin_key();
    service.start().await;
    let mut expected = Vec::new();
    for name in [
        "batch_3x2.json",
        "number_9th_digit_pair.json",
        "system_user_changed_number.json",
        "bsuid_only.json",
        "unknown_future_type.json",
        "interactive_nfm_reply.json",
        "order.json",
    ] {
        let body = fixture(name);
        for _ in 0..3 {
            assert_eq!(
                service.post_webhook(body.clone()).await,
                200,
                "{name} on {}",
                service.bus.name()
            );
        }
        expected.extend(wamids(&body));
    }
    service
        .wait_stored(&key, expected.clone(), Duration::from_secs(60))
        .await;
    // The harness's bounded look returns the wamids it did not ask about as missing: 30
    // unknown, then a stored one, then 10 unknown — it stops at the 20th unknown.
    let probe: Vec<String> = (0..30)
        .map(|i| format!("wamid.none.{i}"))
        .chain([expected[0].clone()])
        .chain((30..40).map(|i| format!("wamid.none.{i}")))
        .collect();
    let bounded = service.not_stored(&key, probe.clone()).await;
    assert_eq!(bounded, probe, "nothing it did not ask about is dropped");
    let exact = service.not_stored_exactly(&key, probe.clone()).await;
    assert_eq!(exact.len(), 40);
    assert!(!exact.contains(&expected[0]));
    // Out-of-order statuses for a batch message that the business sent are folded in.
    let (_, dead) = service.get_json("/v1/dead-letters", &key).await;
    assert_eq!(
        dead.as_array().unwrap().len(),
        0,
        "{}: {dead}",
        service.bus.name()
    );
    // The Brazilian pair is one contact with both messages.
    let (_, contacts) = service
        .get_json("/v1/contacts?wa_id=551187654321", &key)
        .await;
    let contacts = contacts.as_array().unwrap().clone();
    assert_eq!(contacts.len(), 1, "{}", service.bus.name());
    let id = contacts[0]["id"].as_str().unwrap();
    let (_, messages) = service
        .get_json(&format!("/v1/contacts/{id}/messages"), &key)
        .await;
    assert!(messages["messages"].as_array().unwrap().len() >= 2);
    service.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_reach_the_store_once_on_every_backend() {
    for bus in backends() {
        fixtures_reach_the_store(bus).await;
    }
}

async fn dead_letters_are_kept_and_re_driven(bus: Bus) {
    let mut service = Service::new(bus);
    let key = service.admin_key();
    service.start().await;
    assert_eq!(
        service
            .post_webhook(b"{\"not\":\"whatsapp\"".to_vec())
            .await,
        200
    );
    let odd = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
        "messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"106540352242922"},
        "statuses":[{"id":"wamid.x","status":"deleted","timestamp":"1750000000","recipient_id":"5511987654321"}]}}]}]}"#;
    assert_eq!(service.post_webhook(odd.to_vec()).await, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let (_, dead) = service.get_json("/v1/dead-letters", &key).await;
        if dead.as_array().unwrap().len() == 2 {
            break dead;
        }
        assert!(
            Instant::now() < deadline,
            "{}: dead letters not stored: {dead}",
            service.bus.name()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reasons: HashSet<String> = dead
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("not a WhatsApp webhook")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("unknown status")),
        "{reasons:?}"
    );
    // Re-driving cannot fix them (the cause is still there): they stay, with the attempt counted.
    for d in dead.as_array().unwrap() {
        let id = d["id"].as_str().unwrap();
        let r = service
            .client
            .post(service.url(&format!("/v1/dead-letters/{id}/retry")))
            .header("authorization", format!("Bearer {key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let outcome: serde_json::Value = r.json().await.unwrap();
        assert_eq!(outcome["resolved"], false, "{outcome}");
    }
    let (_, dead) = service.get_json("/v1/dead-letters", &key).await;
    assert!(
        dead.as_array().unwrap().iter().all(|d| d["attempts"] == 1),
        "{dead}"
    );
    service.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_kept_and_re_driven_on_every_backend() {
    for bus in backends() {
        dead_letters_are_kept_and_re_driven(bus).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_gives_503_and_loses_nothing_acknowledged() {
    let Some(Bus::Kafka(broker)) = backends().into_iter().find(|b| matches!(b, Bus::Kafka(_)))
    else {
        return;
    };
    let mut service = Service::new(Bus::Kafka(broker));
    let key = service.admin_key();
    service.start().await;
    let mut acked = Vec::new();
    let mut unavailable = 0;
    let mut i = 0;
    let started = Instant::now();
    let mut stopped = false;
    let mut restarted = false;
    while started.elapsed() < Duration::from_secs(20) || !restarted {
        let elapsed = started.elapsed();
        if !stopped && elapsed > Duration::from_secs(2) {
            if let Bus::Kafka(b) = &mut service.bus {
                b.stop();
            }
            stopped = true;
        }
        if stopped && !restarted && elapsed > Duration::from_secs(8) {
            if let Bus::Kafka(b) = &mut service.bus {
                b.restart();
            }
            restarted = true;
        }
        let (wamid, body) = text_webhook(i);
        i += 1;
        match service.post_webhook(body).await {
            200 => acked.push(wamid),
            503 => unavailable += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(unavailable > 0, "the outage was noticed");
    assert!(
        acked.len() > 10,
        "traffic flowed before and after the outage"
    );
    let last_acked_after_restart = acked.last().cloned();
    assert!(last_acked_after_restart.is_some());
    service
        .wait_stored(&key, acked.clone(), Duration::from_secs(90))
        .await;
    service.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_carry_phone_numbers_or_message_bodies() {
    let mut service = Service::new(Bus::Embedded).with_env(&[("WACRM_LOG", "trace".into())]);
    service.start().await;
    let body = fixture("text.json");
    assert_eq!(service.post_webhook(body.clone()).await, 200);
    assert_eq!(service.post_webhook(b"garbage".to_vec()).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    service.terminate();
    let log = service.log();
    assert!(log.contains("wacrm"), "the log was captured");
    let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let from = raw["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
        .as_str()
        .unwrap();
    let text = raw["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"]
        .as_str()
        .unwrap();
    assert!(!log.contains(from), "a phone number reached the log");
    assert!(!log.contains(text), "a message body reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_health_goes_without_a_key_and_a_monitoring_key_reads_only_metrics() {
    let mut service = Service::new(Bus::Embedded);
    service.start().await;
    assert_eq!(service.post_webhook(fixture("text.json")).await, 200);
    for open in ["/healthz", "/readyz"] {
        assert_eq!(service.get_text(open, None).await.0, 200, "{open}");
    }
    for closed in ["/metrics", "/openapi.json", "/v1/contacts", "/v1/audit"] {
        assert_eq!(service.get_text(closed, None).await.0, 401, "{closed}");
    }

    let monitoring = service
        .create_key(&[
            "--name",
            "Prometheus",
            "--role",
            "auditor",
            "--scope",
            "metrics:read",
            "--all-numbers",
        ])
        .unwrap();
    let (status, metrics) = service.get_text("/metrics", Some(&monitoring)).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("wacrm_webhooks_total"), "{metrics}");
    for data in ["/v1/contacts", "/v1/audit", "/v1/dead-letters"] {
        assert_eq!(
            service.get_text(data, Some(&monitoring)).await.0,
            403,
            "{data}"
        );
    }

    let agent = service
        .create_key(&["--name", "Ana", "--role", "agent", "--all-numbers"])
        .unwrap();
    assert_eq!(service.get_text("/metrics", Some(&agent)).await.0, 403);
    assert_eq!(service.get_text("/openapi.json", Some(&agent)).await.0, 200);
    let admin = service.admin_key();
    assert_eq!(service.get_text("/metrics", Some(&admin)).await.0, 200);

    let refused = service
        .create_key(&[
            "--name",
            "X",
            "--role",
            "agent",
            "--scope",
            "metrics:write",
            "--all-numbers",
        ])
        .unwrap_err();
    assert!(refused.contains("unknown scope metrics:write"), "{refused}");
    service.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_and_creates_the_kafka_topics() {
    let Some(Bus::Kafka(broker)) = backends().into_iter().find(|b| matches!(b, Bus::Kafka(_)))
    else {
        return;
    };
    let service = Service::new(Bus::Kafka(broker)).with_env(&[
        ("WACRM_BUS__KAFKA__CREATE_TOPICS", "false".into()),
        ("WACRM_BUS__TOPIC_PREFIX", "doctor.".into()),
    ]);
    assert!(service
        .command()
        .arg("migrate")
        .output()
        .unwrap()
        .status
        .success());
    let before = service.command().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&before.stdout).into_owned();
    assert!(
        !before.status.success(),
        "missing topics fail the doctor: {text}"
    );
    assert!(
        text.contains("FAIL topic doctor.conversations: missing"),
        "{text}"
    );
    let created = service
        .command()
        .args(["doctor", "--create-topics"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&created.stdout).into_owned();
    assert!(
        created.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&created.stderr)
    );
    for topic in [
        "conversations",
        "contacts",
        "commands",
        "audit",
        "dead-letters",
    ] {
        assert!(
            text.contains(&format!("ok   topic doctor.{topic}")),
            "{topic}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_an_edited_row() {
    let service = Service::new(Bus::Embedded);
    let _ = service.admin_key();
    let _ = service.admin_key();
    let ok = service
        .command()
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Each creation: its intent, then its outcome.
    assert!(String::from_utf8_lossy(&ok.stdout).contains("4 entries verified"));
    let db = service.path().join("store.db");
    let status = std::process::Command::new("python3")
        .args(["-c", &format!("import sqlite3; c=sqlite3.connect('{}'); c.execute(\"UPDATE audit_log SET actor='someone else' WHERE seq=2\"); c.commit()", db.display())])
        .status()
        .unwrap();
    assert!(status.success());
    let broken = service
        .command()
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(!broken.status.success());
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(err.contains("entry 2"), "{err}");
}

/// Runs SQL on the service's SQLite store (python3's sqlite3, as the audit test above).
fn sql(service: &Service, statement: &str) -> String {
    let db = service.path().join("store.db");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             r=c.execute(sys.argv[2]).fetchall(); c.commit(); print(r)",
            &db.display().to_string(),
            statement,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_name_their_numbers_and_are_audited_before_they_exist() {
    let service = Service::new(Bus::Embedded);
    let neither = service
        .create_key(&["--name", "Ana", "--role", "agent"])
        .unwrap_err();
    assert!(
        neither.contains("--number") && neither.contains("--all-numbers"),
        "{neither}"
    );
    let both = service
        .create_key(&[
            "--name",
            "Ana",
            "--role",
            "agent",
            "--number",
            "1",
            "--all-numbers",
        ])
        .unwrap_err();
    assert!(both.contains("not both"), "{both}");
    service
        .create_key(&["--name", "Ana", "--role", "agent", "--number", "1"])
        .unwrap();
    service
        .create_key(&["--name", "Bia", "--role", "admin", "--all-numbers"])
        .unwrap();
    assert_eq!(sql(&service, "SELECT COUNT(*) FROM api_keys"), "[(2,)]");
    assert_eq!(
        sql(
            &service,
            "SELECT outcome FROM audit_log WHERE action = 'keys.create' ORDER BY seq"
        ),
        "[('intent',), ('ok',), ('intent',), ('ok',)]"
    );

    // An audit log that refuses writes: nothing is created, and the command fails.
    sql(
        &service,
        "CREATE TRIGGER audit_read_only BEFORE INSERT ON audit_log \
         BEGIN SELECT RAISE(ABORT, 'read-only'); END",
    );
    let refused = service
        .create_key(&["--name", "Caio", "--role", "admin", "--all-numbers"])
        .unwrap_err();
    assert!(refused.contains("audit"), "{refused}");
    assert_eq!(sql(&service, "SELECT COUNT(*) FROM api_keys"), "[(2,)]");
    let id = sql(&service, "SELECT id FROM api_keys WHERE name = 'Ana'");
    let id = id
        .trim_start_matches("[('")
        .trim_end_matches("',)]")
        .to_owned();
    let revoke = service
        .command()
        .args(["keys", "revoke", &id])
        .output()
        .unwrap();
    assert!(!revoke.status.success());
    assert_eq!(
        sql(
            &service,
            "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NOT NULL"
        ),
        "[(0,)]",
        "a revocation that cannot be audited is not done"
    );
}

/// `wacrm health` (the container's HEALTHCHECK) passes against a ready service and fails once
/// it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_command_tells_a_ready_service_from_a_stopped_one() {
    let mut service = Service::new(Bus::Embedded);
    service.start().await;
    let ready = service.command().arg("health").output().unwrap();
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    service.terminate();
    let gone = service.command().arg("health").output().unwrap();
    assert!(!gone.status.success(), "health passed with no service");
}
