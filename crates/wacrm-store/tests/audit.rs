//! The audit log's chain catches edits and deletions, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::databases;
use sea_orm::{ConnectionTrait, Statement};
use wacrm_store::audit::{self, AuditLog, Filter, NewEntry};

fn entry(i: usize) -> NewEntry {
    NewEntry {
        key_id: format!("key{}", i % 2),
        actor: "Ana Souza".into(),
        action: if i.is_multiple_of(2) {
            "messages.read".into()
        } else {
            "contacts.read".into()
        },
        contact_id: Some(format!("contact-{i}")),
        target: Some(format!("wamid.{i}")),
        outcome: "ok".into(),
        phone_number_id: None,
        detail: None,
    }
}

async fn exec(db: &sea_orm::DatabaseConnection, sql: &str) {
    db.execute(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn an_edited_or_deleted_row_is_found_and_named() {
    for t in databases().await {
        let log = AuditLog::new(t.db.clone());
        for i in 0..6 {
            log.append(entry(i)).await.unwrap();
        }
        assert_eq!(audit::verify(&t.db).await.unwrap(), Ok(6), "{}", t.name);
        let page = audit::page(
            &t.db,
            &Filter {
                key_id: Some("key1".into()),
                limit: 100,
                ..Filter::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(page.len(), 3, "{}", t.name);
        assert!(page.windows(2).all(|w| w[0].seq < w[1].seq));

        exec(
            &t.db,
            "UPDATE audit_log SET outcome = 'denied' WHERE seq = 3",
        )
        .await;
        let broken = audit::verify(&t.db).await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 3, "{}: {broken:?}", t.name);
        assert!(broken.reason.contains("edited"));
        exec(&t.db, "UPDATE audit_log SET outcome = 'ok' WHERE seq = 3").await;
        assert_eq!(
            audit::verify(&t.db).await.unwrap(),
            Ok(6),
            "{}: restoring it heals it",
            t.name
        );

        exec(&t.db, "DELETE FROM audit_log WHERE seq = 4").await;
        let broken = audit::verify(&t.db).await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 4, "{}: {broken:?}", t.name);
        assert!(broken.reason.contains("missing"));
    }
}

#[tokio::test]
async fn a_rewritten_chain_tail_is_found_by_its_links() {
    for t in databases().await {
        let log = AuditLog::new(t.db.clone());
        for i in 0..4 {
            log.append(entry(i)).await.unwrap();
        }
        // Delete entry 2 and renumber 3 and 4 down: no gap, but the link breaks.
        exec(&t.db, "DELETE FROM audit_log WHERE seq = 2").await;
        exec(&t.db, "UPDATE audit_log SET seq = seq - 1 WHERE seq > 2").await;
        let broken = audit::verify(&t.db).await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 2, "{}: {broken:?}", t.name);
    }
}

#[tokio::test]
async fn concurrent_appends_keep_one_chain() {
    for t in databases().await {
        let log = std::sync::Arc::new(AuditLog::new(t.db.clone()));
        let mut tasks = Vec::new();
        for i in 0..40 {
            let log = log.clone();
            tasks.push(tokio::spawn(
                async move { log.append(entry(i)).await.unwrap() },
            ));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(audit::verify(&t.db).await.unwrap(), Ok(40), "{}", t.name);
    }
}

/// Entries written before the business number and the detail existed keep their hash (so the
/// old chain still verifies); a new entry's number and detail are covered by its hash.
#[tokio::test]
async fn old_and_new_entries_verify_and_edits_to_the_new_fields_are_found() {
    use sha2::{Digest, Sha256};
    for t in databases().await {
        let log = AuditLog::new(t.db.clone());
        let old = log.append(entry(0)).await.unwrap();
        // The hash as it was computed before the new fields.
        let mut h = Sha256::new();
        for part in [
            old.seq.to_string().as_str(),
            &old.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            &old.key_id,
            &old.actor,
            &old.action,
            old.contact_id.as_deref().unwrap_or(""),
            old.target.as_deref().unwrap_or(""),
            &old.outcome,
            &old.prev_hash,
        ] {
            h.update(part.as_bytes());
            h.update([0x1f]);
        }
        assert_eq!(hex::encode(h.finalize()), old.hash, "{}", t.name);

        let mut new = entry(1);
        new.phone_number_id = Some("106540352242922".into());
        new.detail = Some(serde_json::json!({"query_sha256": "ab", "contacts": ["c1"]}));
        let written = log.append(new.clone()).await.unwrap();
        assert_eq!(written.phone_number_id, new.phone_number_id);
        assert_eq!(written.detail, new.detail);
        assert_eq!(audit::verify(&t.db).await.unwrap(), Ok(2), "{}", t.name);

        for (edit, restore) in [
            (
                "UPDATE audit_log SET phone_number_id = '999' WHERE seq = 2",
                "UPDATE audit_log SET phone_number_id = '106540352242922' WHERE seq = 2",
            ),
            (
                "UPDATE audit_log SET phone_number_id = NULL WHERE seq = 2",
                "UPDATE audit_log SET phone_number_id = '106540352242922' WHERE seq = 2",
            ),
            (
                "UPDATE audit_log SET phone_number_id = '999' WHERE seq = 1",
                "UPDATE audit_log SET phone_number_id = NULL WHERE seq = 1",
            ),
        ] {
            exec(&t.db, edit).await;
            let broken = audit::verify(&t.db).await.unwrap().unwrap_err();
            assert!(broken.reason.contains("edited"), "{}: {edit}", t.name);
            exec(&t.db, restore).await;
            assert_eq!(audit::verify(&t.db).await.unwrap(), Ok(2), "{}", t.name);
        }
        exec(
            &t.db,
            r#"UPDATE audit_log SET detail = '{"contacts":[],"query_sha256":"ab"}' WHERE seq = 2"#,
        )
        .await;
        let broken = audit::verify(&t.db).await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 2, "{}: {broken:?}", t.name);
    }
}
