//! Retention through the real binary: `wacrm purge --dry-run` counts per class and changes
//! nothing, `wacrm purge` removes exactly that (store and embedded log) and is audited, the
//! service starts again on the trimmed log; `serve`'s purge job does the same on its own and
//! logs counts only; on Kafka, `wacrm doctor` warns about a topic whose retention is not the
//! configured one.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::broker::Broker;
use common::{Bus, Service};
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement, Value};
use serde_json::json;

const NUMBER: &str = "106540352242922";
const FROM: &str = "5511987654321";
const DAY: i64 = 86_400;

fn text(wamid: &str, body: &str, at: DateTime<Utc>) -> Vec<u8> {
    wacrm_testkit::webhooks::text(NUMBER, FROM, wamid, body, at.timestamp())
}

fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::seconds(days * DAY)
}

async fn sqlite(path: &std::path::Path) -> DatabaseConnection {
    Database::connect(format!("sqlite://{}?mode=rw", path.display()))
        .await
        .unwrap()
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap()
}

/// `wacrm purge ARGS`: stdout, after asserting success.
fn purge(service: &Service, args: &[&str]) -> String {
    let out = service.command().arg("purge").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "wacrm purge {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The table's last column by class.
fn counts(table: &str) -> BTreeMap<String, String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut columns = line.split_whitespace();
            let class = columns.next()?;
            // class, "N", "days"/"forever"…, cutoff, then the outcome.
            let rest: Vec<&str> = columns.collect();
            let skip = if rest.first() == Some(&"forever") {
                2
            } else {
                3
            };
            Some((class.to_owned(), rest.get(skip..)?.join(" ")))
        })
        .collect()
}

async fn message(service: &Service, key: &str, wamid: &str) -> serde_json::Value {
    let (status, body) = service
        .get_json(&format!("/v1/messages/{wamid}"), key)
        .await;
    assert_eq!(status, 200, "{wamid}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_counts_then_removes_past_their_age_and_the_service_goes_on() {
    let mut service = Service::new(Bus::Embedded)
        .with_env(&[("WACRM_RETENTION__PURGE_EVERY_SECS", "0".to_owned())]);
    service.start().await;
    let key = service.admin_key();
    // A body past its year, one inside it; statuses past their 90 days and inside them.
    let old_body = "pedido antigo 4711 do cliente";
    let young_body = "pedido recente 4712 do cliente";
    assert_eq!(
        service
            .post_webhook(text("wamid.old", old_body, days_ago(400)))
            .await,
        200
    );
    assert_eq!(
        service
            .post_webhook(text("wamid.young", young_body, days_ago(10)))
            .await,
        200
    );
    for (state, at) in [("sent", days_ago(100)), ("delivered", days_ago(1))] {
        let body =
            wacrm_testkit::webhooks::status(NUMBER, FROM, "wamid.out", state, at.timestamp(), None);
        assert_eq!(service.post_webhook(body).await, 200);
    }
    // Signed but not a WhatsApp payload: a dead letter.
    assert_eq!(
        service
            .post_webhook(b"{\"not\": \"whatsapp\"}".to_vec())
            .await,
        200
    );
    service
        .wait_stored(
            &key,
            ["wamid.old", "wamid.young", "wamid.out"].map(String::from),
            Duration::from_secs(30),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let store = sqlite(&service.path().join("store.db")).await;
    while scalar(&store, "SELECT COUNT(*) AS n FROM dead_letters").await < 1 {
        assert!(
            Instant::now() < deadline,
            "no dead letter\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service.terminate();

    // A month and a half later, as far as the dead letters and the bus log know.
    let bus = sqlite(&service.path().join("bus.db")).await;
    let back =
        |days: i64| Value::from((Utc::now() - chrono::Duration::days(days)).timestamp_millis());
    bus.execute(Statement::from_sql_and_values(
        bus.get_database_backend(),
        "UPDATE records SET ts_ms = ?",
        [back(45)],
    ))
    .await
    .unwrap();
    store
        .execute(Statement::from_sql_and_values(
            store.get_database_backend(),
            "UPDATE dead_letters SET created_at = ?",
            [Value::from(Utc::now() - chrono::Duration::days(45))],
        ))
        .await
        .unwrap();
    let records = scalar(&bus, "SELECT COUNT(*) AS n FROM records").await;
    assert!(records >= 5, "{records}");

    // The dry run: what would go, per class; nothing changes.
    let before = (
        scalar(&bus, "SELECT COUNT(*) AS n FROM records").await,
        scalar(&store, "SELECT COUNT(*) AS n FROM message_statuses").await,
        scalar(
            &store,
            "SELECT COUNT(*) AS n FROM messages WHERE body_expired_at IS NULL",
        )
        .await,
        scalar(&store, "SELECT COUNT(*) AS n FROM dead_letters").await,
    );
    let table = purge(&service, &["--dry-run"]);
    let dry = counts(&table);
    assert_eq!(dry["message_bodies"], "1", "{table}");
    assert_eq!(dry["media_references"], "0", "{table}");
    assert_eq!(dry["statuses"], "1", "{table}");
    assert_eq!(dry["dead_letters"], "1", "{table}");
    assert_eq!(dry["bus_log"], records.to_string(), "{table}");
    assert_eq!(dry["audit"], "kept", "{table}");
    let after = (
        scalar(&bus, "SELECT COUNT(*) AS n FROM records").await,
        scalar(&store, "SELECT COUNT(*) AS n FROM message_statuses").await,
        scalar(
            &store,
            "SELECT COUNT(*) AS n FROM messages WHERE body_expired_at IS NULL",
        )
        .await,
        scalar(&store, "SELECT COUNT(*) AS n FROM dead_letters").await,
    );
    assert_eq!(before, after, "the dry run changed something");

    // The purge removes exactly that, and says so.
    let table = purge(&service, &[]);
    let purged = counts(&table);
    for class in ["message_bodies", "statuses", "dead_letters", "bus_log"] {
        assert_eq!(purged[class], dry[class], "{class}: {table}");
    }
    assert_eq!(scalar(&bus, "SELECT COUNT(*) AS n FROM records").await, 0);
    assert_eq!(
        scalar(&store, "SELECT COUNT(*) AS n FROM dead_letters").await,
        0
    );
    let again = counts(&purge(&service, &["--dry-run"]));
    for class in ["message_bodies", "statuses", "dead_letters", "bus_log"] {
        assert_eq!(again[class], "0", "{class} after the purge");
    }
    drop((bus, store));

    // The service comes back on the trimmed log: the old body is gone, the young one is there,
    // the statuses inside their age stay, and new webhooks flow (the log's offsets go on).
    service.start().await;
    let old = message(&service, &key, "wamid.old").await;
    assert_eq!(
        old["content"],
        json!({"kind": "text", "expired": true}),
        "{old}"
    );
    let young = message(&service, &key, "wamid.young").await;
    assert_eq!(young["content"]["body"], json!(young_body), "{young}");
    let out = message(&service, &key, "wamid.out").await;
    let history: Vec<&str> = out["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["delivered"], "{out}");
    assert_eq!(
        service
            .post_webhook(text("wamid.after", "depois da limpeza", days_ago(0)))
            .await,
        200
    );
    service
        .wait_stored(&key, ["wamid.after".to_owned()], Duration::from_secs(30))
        .await;
    // The purge was audited, with its counts.
    let (status, entries) = service
        .get_json("/v1/audit?action=retention.purge", &key)
        .await;
    assert_eq!(status, 200);
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["detail"]["purged"]["message_bodies"], json!(1));
    assert!(entries[0]["actor"].as_str().unwrap().starts_with("cli:"));
    service.terminate();
    assert!(!service.log().contains(old_body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_purge_job_expires_bodies_on_its_own_and_logs_counts_only() {
    let mut service = Service::new(Bus::Embedded).with_env(&[
        ("WACRM_RETENTION__PURGE_EVERY_SECS", "1".to_owned()),
        ("WACRM_LOG", "info".to_owned()),
    ]);
    service.start().await;
    let key = service.admin_key();
    let old_body = "endereço antigo rua das flores 12";
    assert_eq!(
        service
            .post_webhook(text("wamid.job-old", old_body, days_ago(366)))
            .await,
        200
    );
    assert_eq!(
        service
            .post_webhook(text("wamid.job-young", "ainda vale", days_ago(364)))
            .await,
        200
    );
    service
        .wait_stored(
            &key,
            ["wamid.job-old", "wamid.job-young"].map(String::from),
            Duration::from_secs(30),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let old = message(&service, &key, "wamid.job-old").await;
        if old["content"] == json!({"kind": "text", "expired": true}) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never purged: {old}\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let young = message(&service, &key, "wamid.job-young").await;
    assert_eq!(young["content"]["body"], json!("ainda vale"));
    let (status, metrics) = service.get_text("/metrics", Some(&key)).await;
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wacrm_retention_purged_total{class=\"message_bodies\"} 1")),
        "{metrics}"
    );
    let (_, entries) = service
        .get_json("/v1/audit?action=retention.purge", &key)
        .await;
    let entries = entries.as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["actor"] == json!("system")
            && e["detail"]["purged"]["message_bodies"] == json!(1)),
        "{entries:?}"
    );
    // SIGTERM while the job runs every second: a clean, prompt stop.
    service.terminate();
    let log = service.log();
    assert!(log.contains("retention purge"), "{log}");
    assert!(!log.contains(old_body), "a body reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_doctor_warns_about_a_topic_kept_for_another_time_and_purge_leaves_the_log_to_the_broker(
) {
    // Fails (rather than skips) when WACRM_REQUIRE_KAFKA or CI is set and tansu is missing.
    let Some(broker) = Broker::start() else {
        return;
    };
    let mut service = Service::new(Bus::Kafka(broker));
    // `serve` creates the topics with the default week.
    service.start().await;
    service.terminate();

    let doctor = |vars: &[(&str, &str)]| {
        let out = service
            .command()
            .arg("doctor")
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, report) = doctor(&[]);
    assert!(ok, "{report}");
    assert!(
        report.contains("ok   topic wacrm.conversations: 3 partitions, cleanup.policy=delete, retention.ms=604800000 (7 days)"),
        "{report}"
    );
    assert!(!report.contains("warn topic"), "{report}");

    // Three days configured: every topic is named, with what it keeps and what is expected —
    // a warning, not a failure.
    let (ok, report) = doctor(&[("WACRM_RETENTION__BUS_LOG_DAYS", "3")]);
    assert!(ok, "a retention warning fails nothing: {report}");
    assert!(
        report.contains("warn topic wacrm.conversations: retention.ms=604800000 (7 days), expected 259200000 (3 days)"),
        "{report}"
    );
    assert!(
        report.contains("warn topic wacrm.contacts: delete.retention.ms=604800000 (7 days), expected 259200000 (3 days)"),
        "{report}"
    );

    let table = purge(&service, &["--dry-run"]);
    let dry = counts(&table);
    assert!(dry["bus_log"].contains("retention.ms"), "{table}");
}
