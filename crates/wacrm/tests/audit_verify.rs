//! `wacrm audit verify` through the real binary, on SQLite (embedded bus and Kafka) and (when
//! `WACRM_TEST_POSTGRES_URL` is set) PostgreSQL: a log begun unkeyed by the command line and keyed by `serve` (which
//! creates the key on its first start and anchors the head to a file and the bus) verifies;
//! its last 5 entries deleted, or one entry edited and every later link recomputed — as plain
//! SHA-256 or as MACs under another key — it does not, and the command names the entry; a
//! rotated key verifies with the old one listed.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{Bus, Service};
use hmac::{Hmac, Mac};
use sea_orm_migration::sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait, IntoActiveModel,
    QueryOrder,
};
use sha2::{Digest, Sha256};
use wacrm_store::entities::audit_log;
use wacrm_store::StoreConfig;

/// A service under test, its store and its data directory (where `serve` puts the key and the
/// anchors when none are configured).
struct Case {
    name: &'static str,
    service: Service,
    url: String,
    data: PathBuf,
}

async fn cases() -> Vec<Case> {
    let every = ("WACRM_AUDIT__ANCHOR_EVERY_SECS", "1".to_owned());
    let sqlite = Service::new(Bus::Embedded).with_env(std::slice::from_ref(&every));
    let mut out = vec![Case {
        name: "sqlite",
        url: format!(
            "sqlite://{}?mode=rwc",
            sqlite.path().join("store.db").display()
        ),
        data: sqlite.path(),
        service: sqlite,
    }];
    // On Kafka the anchors on the audit topic are read by a group of verify's own.
    if let Some(broker) = common::broker::Broker::start() {
        let kafka = Service::new(Bus::Kafka(broker)).with_env(std::slice::from_ref(&every));
        out.push(Case {
            name: "sqlite, kafka",
            url: format!(
                "sqlite://{}?mode=rwc",
                kafka.path().join("store.db").display()
            ),
            data: kafka.path(),
            service: kafka,
        });
    }
    match wacrm_testkit::postgres::fresh_database().await {
        Some(url) => {
            let service =
                Service::new(Bus::Embedded).with_env(&[("WACRM_STORE__URL", url.clone()), every]);
            out.push(Case {
                name: "postgres",
                data: service.path().join("data"),
                url,
                service,
            });
        }
        None => eprintln!("WACRM_TEST_POSTGRES_URL not set: SQLite only"),
    }
    out
}

async fn store(url: &str) -> DatabaseConnection {
    wacrm_store::connect(&StoreConfig {
        url: url.to_owned(),
        max_connections: 2,
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn rows(db: &DatabaseConnection) -> Vec<audit_log::Model> {
    audit_log::Entity::find()
        .order_by_asc(audit_log::Column::Seq)
        .all(db)
        .await
        .unwrap()
}

/// Puts the table back as it was.
async fn restore(db: &DatabaseConnection, snapshot: &[audit_log::Model]) {
    audit_log::Entity::delete_many().exec(db).await.unwrap();
    for row in snapshot {
        let mut active = row.clone().into_active_model();
        active.seq = Set(row.seq);
        active.at = Set(row.at);
        active.key_id = Set(row.key_id.clone());
        active.actor = Set(row.actor.clone());
        active.action = Set(row.action.clone());
        active.contact_id = Set(row.contact_id.clone());
        active.target = Set(row.target.clone());
        active.outcome = Set(row.outcome.clone());
        active.prev_hash = Set(row.prev_hash.clone());
        active.hash = Set(row.hash.clone());
        active.phone_number_id = Set(row.phone_number_id.clone());
        active.detail = Set(row.detail.clone());
        active.mac_key = Set(row.mac_key.clone());
        active.insert(db).await.unwrap();
    }
}

/// A row's link as the format says (not through wacrm's code): plain SHA-256, or HMAC-SHA-256
/// under `secret`.
fn link(row: &audit_log::Model, secret: Option<&[u8]>) -> String {
    let mut bytes = Vec::new();
    for part in [
        row.seq.to_string().as_str(),
        &row.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        &row.key_id,
        &row.actor,
        &row.action,
        row.contact_id.as_deref().unwrap_or(""),
        row.target.as_deref().unwrap_or(""),
        &row.outcome,
        &row.prev_hash,
    ] {
        bytes.extend_from_slice(part.as_bytes());
        bytes.push(0x1f);
    }
    if let Some(number) = &row.phone_number_id {
        bytes.extend_from_slice(b"phone_number_id=");
        bytes.extend_from_slice(number.as_bytes());
        bytes.push(0x1f);
    }
    if let Some(detail) = &row.detail {
        bytes.extend_from_slice(b"detail=");
        bytes.extend_from_slice(detail.as_bytes());
        bytes.push(0x1f);
    }
    match secret {
        None => hex::encode(Sha256::digest(&bytes)),
        Some(secret) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            mac.update(&bytes);
            hex::encode(mac.finalize().into_bytes())
        }
    }
}

/// Edits entry `seq` and recomputes its link and every later one: as plain SHA-256 (entries
/// marked unkeyed), or as MACs under `secret` marked with the key id `id`.
async fn edit_and_recompute(db: &DatabaseConnection, seq: i64, keyed: Option<(&[u8], &str)>) {
    let mut prev: Option<String> = None;
    for mut row in rows(db).await.into_iter().filter(|r| r.seq >= seq) {
        if row.seq == seq {
            row.outcome = "not_found".into();
        }
        if let Some(prev) = &prev {
            row.prev_hash = prev.clone();
        }
        let (hash, mac_key) = match keyed {
            None => (link(&row, None), None),
            Some((secret, id)) => (link(&row, Some(secret)), Some(id.to_owned())),
        };
        prev = Some(hash.clone());
        let mut active = row.clone().into_active_model();
        active.outcome = Set(row.outcome.clone());
        active.prev_hash = Set(row.prev_hash.clone());
        active.hash = Set(hash);
        active.mac_key = Set(mac_key);
        active.update(db).await.unwrap();
    }
}

fn verify(service: &Service, args: &[&str], env: &[(&str, String)]) -> Output {
    service
        .command()
        .args(["audit", "verify"])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.clone())))
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The newest anchored seq in the anchor file.
fn anchored(file: &std::path::Path) -> Option<i64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["seq"].as_i64())
        .max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_finds_a_deleted_tail_and_a_recomputed_chain() {
    for mut case in cases().await {
        let name = case.name;
        let service = &mut case.service;
        // Before the first `serve` there is no key: the command line writes unkeyed entries.
        let admin = service.admin_key();
        service.start().await;
        let key_file = case.data.join("audit.key");
        let key_hex = std::fs::read_to_string(&key_file).unwrap();
        let key_hex = key_hex.trim();
        assert_eq!(key_hex.len(), 64, "{name}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        for _ in 0..8 {
            let (status, _) = service.get_json("/v1/audit?limit=1", &admin).await;
            assert_eq!(status, 200, "{name}");
        }
        let db = store(&case.url).await;
        let head = rows(&db).await.last().unwrap().seq;
        assert_eq!(head, 10, "{name}: two CLI entries, eight API calls");
        let anchors = case.data.join("audit-anchors.jsonl");
        let deadline = Instant::now() + Duration::from_secs(30);
        while anchored(&anchors) != Some(head) {
            assert!(
                Instant::now() < deadline,
                "{name}: never anchored at {head}:\n{}",
                service.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        service.terminate();
        let log = service.log();
        assert!(log.contains("created the audit key"), "{name}: {log}");
        assert!(!log.contains(key_hex), "{name}: the key was logged");

        let ok = verify(service, &[], &[]);
        assert!(ok.status.success(), "{name}: {}", text(&ok));
        let out = String::from_utf8_lossy(&ok.stdout).into_owned();
        assert!(out.contains("8 keyed"), "{name}: {out}");
        assert!(out.contains("2 unkeyed"), "{name}: {out}");
        assert!(out.contains("newest anchor: seq 10"), "{name}: {out}");
        assert!(out.contains("10 entries verified"), "{name}: {out}");
        let snapshot = rows(&db).await;

        // The last 5 entries deleted: the chain left is whole, the anchor says what is gone.
        sea_orm_migration::sea_orm::ConnectionTrait::execute_unprepared(
            &db,
            "DELETE FROM audit_log WHERE seq > 5",
        )
        .await
        .unwrap();
        let broken = verify(service, &[], &[]);
        assert!(!broken.status.success(), "{name}: {}", text(&broken));
        let err = String::from_utf8_lossy(&broken.stderr).into_owned();
        assert!(err.contains("broken at entry 6"), "{name}: {err}");
        assert!(err.contains("5 entries missing"), "{name}: {err}");
        // The bus holds the anchors too: without the file, they tell the same.
        let elsewhere = service.path().join("moved-anchors.jsonl");
        std::fs::rename(&anchors, &elsewhere).unwrap();
        let from_bus = verify(service, &["--anchors-from-bus"], &[]);
        assert!(!from_bus.status.success(), "{name}: {}", text(&from_bus));
        let err = String::from_utf8_lossy(&from_bus.stderr).into_owned();
        assert!(
            err.contains("5 entries missing"),
            "{name}: {}",
            text(&from_bus)
        );
        std::fs::rename(&elsewhere, &anchors).unwrap();
        restore(&db, &snapshot).await;
        assert!(verify(service, &[], &[]).status.success(), "{name}");

        // One entry edited and every later link recomputed without the key.
        let stranger = [0x5a_u8; 32];
        let real_id = hex::encode(&Sha256::digest(hex::decode(key_hex).unwrap())[..8]);
        for (keyed, how) in [
            (None, "plain SHA-256"),
            (
                Some((&stranger[..], real_id.as_str())),
                "MACs under another key",
            ),
        ] {
            edit_and_recompute(&db, 7, keyed).await;
            let broken = verify(service, &[], &[]);
            assert!(!broken.status.success(), "{name}, {how}: {}", text(&broken));
            let err = String::from_utf8_lossy(&broken.stderr).into_owned();
            assert!(err.contains("broken at entry 7"), "{name}, {how}: {err}");
            restore(&db, &snapshot).await;
        }

        // Key rotation: a new key signs from now on; the old one, listed, still verifies.
        let new_key = case.data.join("audit-2.key");
        std::fs::write(&new_key, format!("{}\n", "ab".repeat(32))).unwrap();
        let rotated = [
            ("WACRM_AUDIT__KEY_FILE", new_key.display().to_string()),
            (
                "WACRM_AUDIT__PREVIOUS_KEY_FILES",
                key_file.display().to_string(),
            ),
        ];
        let created = service
            .command()
            .args([
                "keys",
                "create",
                "--name",
                "Dora",
                "--role",
                "auditor",
                "--all-numbers",
            ])
            .envs(rotated.iter().map(|(k, v)| (*k, v.clone())))
            .output()
            .unwrap();
        assert!(created.status.success(), "{name}: {}", text(&created));
        let ok = verify(service, &[], &rotated);
        assert!(ok.status.success(), "{name}: {}", text(&ok));
        let out = String::from_utf8_lossy(&ok.stdout).into_owned();
        assert!(out.contains(&real_id), "{name}: {out}");
        assert!(out.contains("12 entries verified"), "{name}: {out}");
        let without_old = verify(service, &[], &rotated[..1]);
        assert!(!without_old.status.success(), "{name}");
        let err = String::from_utf8_lossy(&without_old.stderr).into_owned();
        assert!(
            err.contains("broken at entry 3") && err.contains(&real_id),
            "{name}: {err}"
        );
    }
}
