//! The audit log's chain catches edits and deletions, on SQLite and PostgreSQL; keyed, with
//! anchors, it also catches a deleted tail and a chain recomputed without the key.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::databases;
use hmac::{Hmac, Mac};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait, IntoActiveModel,
    QueryOrder,
};
use sea_orm::{ConnectionTrait, Statement};
use sha2::{Digest, Sha256};
use wacrm_store::audit::{self, Anchor, AuditKey, AuditKeys, AuditLog, Filter, NewEntry};
use wacrm_store::entities::audit_log;

/// An unkeyed log, as before the log was keyed (explicitly: one test here installs a key for
/// the process, which `AuditLog::new` would pick up).
fn unkeyed(db: &sea_orm::DatabaseConnection) -> AuditLog {
    AuditLog::with_key(db.clone(), None)
}

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
        let log = unkeyed(&t.db);
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
        let log = unkeyed(&t.db);
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
        let log = std::sync::Arc::new(unkeyed(&t.db));
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
        let log = unkeyed(&t.db);
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

// ---------------------------------------------------------------------------------------------
// The keyed chain and its anchors.

/// A key of 32 bytes of `byte`.
fn key(byte: u8) -> AuditKey {
    AuditKey::from_bytes(&[byte; 32]).unwrap()
}

/// The link of a row as documented — written here from the format, not with the library's
/// code: the fields, each followed by 0x1f, then the tagged later fields; a plain SHA-256, or
/// an HMAC-SHA-256 under `secret`.
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

async fn rows(db: &DatabaseConnection) -> Vec<audit_log::Model> {
    audit_log::Entity::find()
        .order_by_asc(audit_log::Column::Seq)
        .all(db)
        .await
        .unwrap()
}

/// How an attacker who can write the database recomputes the chain after an edit.
#[derive(Clone, Copy)]
enum Recompute<'a> {
    /// Plain SHA-256 links, entries marked unkeyed.
    Plain,
    /// HMAC links under a key of their own, entries marked with `id`.
    Keyed { secret: &'a [u8], id: &'a str },
}

/// Edits entry `seq` (its outcome) and recomputes its link and every later one.
async fn edit_and_recompute(db: &DatabaseConnection, seq: i64, how: Recompute<'_>) {
    let mut prev: Option<String> = None;
    for mut row in rows(db).await.into_iter().filter(|r| r.seq >= seq) {
        if row.seq == seq {
            row.outcome = "denied".into();
        }
        if let Some(prev) = &prev {
            row.prev_hash = prev.clone();
        }
        let (hash, mac_key) = match how {
            Recompute::Plain => (link(&row, None), None),
            Recompute::Keyed { secret, id } => (link(&row, Some(secret)), Some(id.to_owned())),
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

/// Marks everything published and anchors the head, as the relay does; the anchor.
async fn anchor(db: &DatabaseConnection, keys: &AuditKeys, since: Option<&Anchor>) -> Anchor {
    let newest = audit::newest(db).await.unwrap().unwrap();
    audit::mark_published(db, newest.seq).await.unwrap();
    audit::anchor_head(db, keys.current().unwrap(), keys, since)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

/// An unkeyed log of `old` entries, then `new` entries under `key`.
async fn mixed_log(db: &DatabaseConnection, old: usize, new: usize, key: &AuditKey) {
    let before = unkeyed(db);
    for i in 0..old {
        before.append(entry(i)).await.unwrap();
    }
    let keyed = AuditLog::with_key(db.clone(), Some(key.clone()));
    for i in old..old + new {
        keyed.append(entry(i)).await.unwrap();
    }
}

#[tokio::test]
async fn old_unkeyed_and_new_keyed_entries_verify_as_one_chain() {
    let k = key(1);
    let keys = AuditKeys::new(Some(k.clone()), Vec::new());
    for t in databases().await {
        mixed_log(&t.db, 3, 4, &k).await;
        let all = rows(&t.db).await;
        // The first keyed entry chains from the last unkeyed one; each keyed link is the
        // HMAC of the same bytes an unkeyed one hashes.
        assert_eq!(all[3].prev_hash, all[2].hash, "{}", t.name);
        for row in &all {
            match &row.mac_key {
                None => assert_eq!(row.hash, link(row, None), "{}", t.name),
                Some(id) => {
                    assert_eq!(id, k.id(), "{}", t.name);
                    assert_eq!(row.hash, link(row, Some(&[1; 32])), "{}", t.name);
                }
            }
        }
        let v = audit::verify_with(&t.db, &keys, &[]).await.unwrap();
        assert_eq!(v.broken, None, "{}", t.name);
        assert_eq!((v.checked, v.keyed), (7, 4), "{}", t.name);
        let a = anchor(&t.db, &keys, None).await;
        assert_eq!((a.seq, a.keyed_from), (7, Some(4)), "{}", t.name);
        let v = audit::verify_with(&t.db, &keys, &[a]).await.unwrap();
        assert_eq!(v.broken, None, "{}", t.name);

        // Without the key the keyed entries cannot be checked: that is said, not passed.
        let broken = audit::verify(&t.db).await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 4, "{}: {broken:?}", t.name);
        assert!(broken.reason.contains(k.id()), "{}: {broken:?}", t.name);
        // An edit to a keyed entry (without recomputing anything) is named.
        exec(
            &t.db,
            "UPDATE audit_log SET actor = 'someone' WHERE seq = 5",
        )
        .await;
        let v = audit::verify_with(&t.db, &keys, &[]).await.unwrap();
        let broken = v.broken.unwrap();
        assert_eq!(broken.seq, 5, "{}: {broken:?}", t.name);
        assert!(broken.reason.contains("MAC"), "{}: {broken:?}", t.name);
        // Once keyed, an unkeyed writer is refused instead of breaking the chain.
        exec(
            &t.db,
            "UPDATE audit_log SET actor = 'Ana Souza' WHERE seq = 5",
        )
        .await;
        let refused = unkeyed(&t.db).append(entry(9)).await.unwrap_err();
        assert!(refused.to_string().contains("key"), "{}: {refused}", t.name);
        assert_eq!(
            audit::verify_with(&t.db, &keys, &[]).await.unwrap().broken,
            None,
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn deleting_the_last_five_entries_is_found_against_the_anchor() {
    let k = key(2);
    let keys = AuditKeys::new(Some(k.clone()), Vec::new());
    for t in databases().await {
        mixed_log(&t.db, 2, 10, &k).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit-anchors.jsonl");
        let a = anchor(&t.db, &keys, None).await;
        assert_eq!(a.seq, 12);
        audit::append_anchor(&file, &a).unwrap();
        let anchors = audit::read_anchor_file(&file).unwrap().unwrap().anchors;
        assert_eq!(anchors, vec![a.clone()], "{}", t.name);

        exec(&t.db, "DELETE FROM audit_log WHERE seq > 7").await;
        // The chain that is left is a valid chain: only the anchor shows the loss.
        assert_eq!(
            audit::verify_with(&t.db, &keys, &[]).await.unwrap().broken,
            None,
            "{}",
            t.name
        );
        let v = audit::verify_with(&t.db, &keys, &anchors).await.unwrap();
        let broken = v.broken.unwrap();
        assert_eq!(
            (broken.seq, broken.missing),
            (8, 5),
            "{}: {broken:?}",
            t.name
        );
        assert!(broken.reason.contains("8 to 12"), "{}: {broken:?}", t.name);
        // The relay does not anchor a log that lost its anchored tail.
        let refused = audit::anchor_head(&t.db, &k, &keys, Some(&a))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.seq, 8, "{}: {refused:?}", t.name);

        // The service goes on writing: entries 8 to 12 exist again, but 12 is not the one
        // anchored.
        let log = AuditLog::with_key(t.db.clone(), Some(k.clone()));
        for i in 20..25 {
            log.append(entry(i)).await.unwrap();
        }
        let broken = audit::verify_with(&t.db, &keys, &anchors)
            .await
            .unwrap()
            .broken
            .unwrap();
        assert_eq!(broken.seq, 12, "{}: {broken:?}", t.name);
        assert!(broken.reason.contains("anchored"), "{}: {broken:?}", t.name);
        assert!(
            audit::anchor_head(&t.db, &k, &keys, Some(&a))
                .await
                .unwrap()
                .is_err(),
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn a_chain_recomputed_without_the_key_is_found_and_named() {
    let k = key(3);
    let keys = AuditKeys::new(Some(k.clone()), Vec::new());
    let stranger = [9u8; 32];
    let stranger_id = AuditKey::from_bytes(&stranger).unwrap().id().to_owned();
    for (how, name) in [
        (Recompute::Plain, "a plain SHA-256 chain"),
        (
            Recompute::Keyed {
                secret: &stranger,
                id: k.id(),
            },
            "a MAC chain under another key, marked with the real key's id",
        ),
        (
            Recompute::Keyed {
                secret: &stranger,
                id: &stranger_id,
            },
            "a MAC chain under another key, marked with its own id",
        ),
    ] {
        for t in databases().await {
            mixed_log(&t.db, 2, 8, &k).await;
            let a = anchor(&t.db, &keys, None).await;
            edit_and_recompute(&t.db, 6, how).await;
            for anchors in [Vec::new(), vec![a.clone()]] {
                let v = audit::verify_with(&t.db, &keys, &anchors).await.unwrap();
                let broken = v.broken.unwrap();
                assert_eq!(broken.seq, 6, "{}, {name}: {broken:?}", t.name);
            }
        }
    }
    // A whole log recomputed as plain SHA-256 from its first keyed entry reads as an intact
    // unkeyed log — except against the anchor, which says from where it must be keyed.
    for t in databases().await {
        mixed_log(&t.db, 2, 8, &k).await;
        let a = anchor(&t.db, &keys, None).await;
        edit_and_recompute(&t.db, 3, Recompute::Plain).await;
        assert_eq!(
            audit::verify_with(&t.db, &keys, &[]).await.unwrap().broken,
            None,
            "{}: no key, no anchor: nothing to tell it by",
            t.name
        );
        let broken = audit::verify_with(&t.db, &keys, std::slice::from_ref(&a))
            .await
            .unwrap()
            .broken
            .unwrap();
        assert_eq!(broken.seq, 3, "{}: {broken:?}", t.name);
        assert!(broken.reason.contains("unkeyed"), "{}: {broken:?}", t.name);
    }
}

#[tokio::test]
async fn a_rotated_key_verifies_with_the_old_key_listed() {
    let (old, new) = (key(4), key(5));
    for t in databases().await {
        mixed_log(&t.db, 1, 3, &old).await;
        let before = AuditKeys::new(Some(old.clone()), Vec::new());
        let first = anchor(&t.db, &before, None).await;
        let log = AuditLog::with_key(t.db.clone(), Some(new.clone()));
        for i in 10..13 {
            log.append(entry(i)).await.unwrap();
        }
        let after = AuditKeys::new(Some(new.clone()), vec![old.clone()]);
        let second = anchor(&t.db, &after, Some(&first)).await;
        assert_eq!(second.key, new.id());
        let anchors = [first.clone(), second];
        let v = audit::verify_with(&t.db, &after, &anchors).await.unwrap();
        assert_eq!(v.broken, None, "{}", t.name);
        assert_eq!(v.anchors_authentic, 2, "{}", t.name);
        assert_eq!(
            v.keys_used,
            [old.id().to_owned(), new.id().to_owned()].into(),
            "{}",
            t.name
        );
        // Without the old key, its entries are named, with the id of the key they need.
        let only_new = AuditKeys::new(Some(new.clone()), Vec::new());
        let broken = audit::verify_with(&t.db, &only_new, &anchors)
            .await
            .unwrap()
            .broken
            .unwrap();
        assert_eq!(broken.seq, 2, "{}: {broken:?}", t.name);
        assert!(broken.reason.contains(old.id()), "{}: {broken:?}", t.name);
    }
}

#[tokio::test]
async fn anchors_no_configured_key_signed_are_ignored() {
    let k = key(6);
    let keys = AuditKeys::new(Some(k.clone()), Vec::new());
    let t = common::sqlite().await;
    mixed_log(&t.db, 0, 3, &k).await;
    let real = anchor(&t.db, &keys, None).await;
    // A forged anchor claiming a longer log, and one with its seq edited.
    let forged = Anchor::sign(40, &real.link, Utc::now(), None, &key(7));
    let mut edited = real.clone();
    edited.seq = 30;
    let v = audit::verify_with(&t.db, &keys, &[real.clone(), forged, edited])
        .await
        .unwrap();
    assert_eq!(v.broken, None);
    assert_eq!((v.anchors_authentic, v.anchors_rejected), (1, 2));
    assert_eq!(v.newest_anchor, Some(real));
}

/// `n` unkeyed entries written at `at`, inserted in bulk (a year of history without a year of
/// appends), chained from the genesis link.
async fn history(db: &DatabaseConnection, n: i64, at: DateTime<Utc>) {
    let mut prev = "0".repeat(64);
    let mut models = Vec::new();
    for seq in 1..=n {
        let mut row = audit_log::Model {
            seq,
            at,
            key_id: "key0".into(),
            actor: "Ana Souza".into(),
            action: "contacts.read".into(),
            contact_id: None,
            target: Some(format!("old-{seq}")),
            outcome: "ok".into(),
            prev_hash: prev.clone(),
            hash: String::new(),
            phone_number_id: None,
            detail: None,
            mac_key: None,
        };
        row.hash = link(&row, None);
        prev = row.hash.clone();
        models.push(row);
    }
    for chunk in models.chunks(100) {
        audit_log::Entity::insert_many(chunk.iter().map(|m| {
            let mut a = m.clone().into_active_model();
            a.seq = Set(m.seq);
            a.at = Set(m.at);
            a.key_id = Set(m.key_id.clone());
            a.actor = Set(m.actor.clone());
            a.action = Set(m.action.clone());
            a.contact_id = Set(None);
            a.target = Set(m.target.clone());
            a.outcome = Set(m.outcome.clone());
            a.prev_hash = Set(m.prev_hash.clone());
            a.hash = Set(m.hash.clone());
            a.phone_number_id = Set(None);
            a.detail = Set(None);
            a.mac_key = Set(None);
            a
        }))
        .exec_without_returning(db)
        .await
        .unwrap();
    }
}

/// Retention purges whole oldest entries only, never the newest 1,000, the anchored head or
/// what the bus has not got, and audits itself first; verification then starts from the
/// oldest entry kept and finds a prefix deleted by hand. (The only test here that installs a
/// process key: `purge_before` signs with it.)
#[tokio::test]
async fn purged_entries_are_whole_oldest_ones_and_the_purge_is_audited() {
    let k = key(8);
    audit::install_key(Some(k.clone()));
    let keys = AuditKeys::new(Some(k.clone()), Vec::new());
    let long_ago = Utc::now() - Duration::days(800);
    let cutoff = Utc::now() - Duration::days(365);
    for t in databases().await {
        history(&t.db, 1100, long_ago).await;
        let log = AuditLog::with_key(t.db.clone(), Some(k.clone()));
        for i in 0..3 {
            log.append(entry(i)).await.unwrap();
        }
        // Nothing published yet: nothing purged.
        assert_eq!(
            audit::purge_before(&t.db, cutoff).await.unwrap(),
            0,
            "{}",
            t.name
        );
        // Published and anchored up to 60: the anchored head stays.
        audit::mark_published(&t.db, 60).await.unwrap();
        let head = audit::anchor_head(&t.db, &k, &keys, None)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(head.seq, 60);
        // A dry run counts what the purge then deletes.
        assert_eq!(audit::purgeable_before(&t.db, cutoff).await.unwrap(), 59);
        assert_eq!(
            audit::purge_before(&t.db, cutoff).await.unwrap(),
            59,
            "{}",
            t.name
        );
        let v = audit::verify_with(&t.db, &keys, std::slice::from_ref(&head))
            .await
            .unwrap();
        assert_eq!(v.broken, None, "{}: {v:?}", t.name);
        assert_eq!(v.purged_before, Some(60), "{}", t.name);
        assert_eq!(v.purge_audited_at, Some(1104), "{}", t.name);

        // Everything published and anchored: the newest 1,000 stay (the head is 1,104 and
        // the second purge's own entry comes after it).
        let head = anchor(&t.db, &keys, Some(&head)).await;
        assert_eq!(head.seq, 1104);
        assert_eq!(
            audit::purge_before(&t.db, cutoff).await.unwrap(),
            45,
            "{}",
            t.name
        );
        let left = rows(&t.db).await;
        assert_eq!(left.first().map(|r| r.seq), Some(105), "{}", t.name);
        assert_eq!(left.last().map(|r| r.seq), Some(1105), "{}", t.name);
        assert_eq!(left.len(), 1001, "{}", t.name);
        let v = audit::verify_with(&t.db, &keys, std::slice::from_ref(&head))
            .await
            .unwrap();
        assert_eq!(v.broken, None, "{}: {v:?}", t.name);
        assert_eq!(
            (v.purged_before, v.purge_audited_at),
            (Some(105), Some(1105)),
            "{}",
            t.name
        );

        // Oldest entries deleted by hand: no purge audited them.
        exec(&t.db, "DELETE FROM audit_log WHERE seq < 150").await;
        let broken = audit::verify_with(&t.db, &keys, std::slice::from_ref(&head))
            .await
            .unwrap()
            .broken
            .unwrap();
        assert_eq!(
            (broken.seq, broken.missing),
            (1, 149),
            "{}: {broken:?}",
            t.name
        );
        assert!(broken.reason.contains("outside retention"), "{}", t.name);
    }
}
