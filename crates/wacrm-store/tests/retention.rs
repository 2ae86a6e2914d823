//! Retention on SQLite (through the projection's own connection and through the pool) and on
//! PostgreSQL when `WACRM_TEST_POSTGRES_URL` is set: per class, what is past its age is gone
//! (or emptied) and nothing younger is — rows sit on both sides of every cutoff and on it —;
//! the dry run counts exactly that and changes nothing; a purge goes in bounded batches and
//! stops between them when asked.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use common::{projection_databases, records, TestDb};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryOrder, Statement};
use serde_json::{json, Value};
use wacrm_bus::runner::Handler;
use wacrm_core::event::Event;
use wacrm_store::entities::{
    dead_letter, message, message_status, outbound_request, platform_error,
};
use wacrm_store::retention::{self, Batching, DataClass, Purged, RetentionConfig};

const NUMBER: &str = "106540352242922";
const FROM: &str = "5511987654321";

fn envelope(value: Value) -> Vec<u8> {
    let mut value = value;
    let o = value.as_object_mut().unwrap();
    o.insert("messaging_product".into(), json!("whatsapp"));
    o.insert(
        "metadata".into(),
        json!({"display_phone_number": "15550783881", "phone_number_id": NUMBER}),
    );
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]
    })
    .to_string()
    .into_bytes()
}

fn events(body: &[u8]) -> Vec<Event> {
    let n = wacrm_whatsapp::normalise::parse_and_normalise(body, Utc::now()).unwrap();
    assert!(n.rejected.is_empty(), "{:?}", n.rejected);
    n.events
}

/// An inbound message of `kind` with its `type` object, sent at `at`.
fn inbound(wamid: &str, at: DateTime<Utc>, kind: &str, object: Value) -> Vec<Event> {
    events(&envelope(json!({
        "contacts": [{"profile": {"name": "Cliente"}, "wa_id": FROM}],
        "messages": [{
            "from": FROM, "id": wamid, "timestamp": at.timestamp().to_string(),
            "type": kind, kind: object
        }]
    })))
}

fn text(wamid: &str, at: DateTime<Utc>) -> Vec<Event> {
    inbound(
        wamid,
        at,
        "text",
        json!({"body": format!("corpo secreto de {wamid}")}),
    )
}

fn image(wamid: &str, at: DateTime<Utc>) -> Vec<Event> {
    inbound(
        wamid,
        at,
        "image",
        json!({"caption": "legenda", "mime_type": "image/jpeg", "sha256": "aGFzaA==", "id": "7001"}),
    )
}

fn document(wamid: &str, at: DateTime<Utc>) -> Vec<Event> {
    inbound(
        wamid,
        at,
        "document",
        json!({"caption": "comprovante", "filename": "rg_joao.pdf", "mime_type": "application/pdf",
               "sha256": "aGFzaA==", "id": "7002"}),
    )
}

fn status(wamid: &str, state: &str, at: DateTime<Utc>) -> Vec<Event> {
    events(&wacrm_testkit::webhooks::status(
        NUMBER,
        FROM,
        wamid,
        state,
        at.timestamp(),
        None,
    ))
}

async fn project(t: &TestDb, events: Vec<Event>) {
    t.projection().handle(&records(&events)).await.unwrap();
}

async fn content(t: &TestDb, wamid: &str) -> Value {
    message::Entity::find_by_id(wamid.to_owned())
        .one(&t.db)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{}: {wamid} is gone", t.name))
        .content
}

async fn scalar(t: &TestDb, sql: &str) -> i64 {
    let row =
        t.db.query_one(Statement::from_string(t.db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
    row.try_get("", "n").unwrap()
}

/// Everything the purge may touch, to compare before and after a dry run.
async fn snapshot(t: &TestDb) -> String {
    let messages = message::Entity::find()
        .order_by_asc(message::Column::Wamid)
        .all(&t.db)
        .await
        .unwrap();
    let statuses = message_status::Entity::find()
        .order_by_asc(message_status::Column::Wamid)
        .order_by_asc(message_status::Column::Timestamp)
        .all(&t.db)
        .await
        .unwrap();
    let dead = dead_letter::Entity::find().all(&t.db).await.unwrap();
    let requests = outbound_request::Entity::find().all(&t.db).await.unwrap();
    let errors = platform_error::Entity::find().all(&t.db).await.unwrap();
    format!("{messages:?}{statuses:?}{dead:?}{requests:?}{errors:?}")
}

async fn dead_letter_at(t: &TestDb, id: &str, at: DateTime<Utc>, resolved: bool) {
    dead_letter::Entity::insert(dead_letter::ActiveModel {
        id: Set(id.into()),
        source: Set("webhook".into()),
        error_class: Set("dead_letter".into()),
        reason: Set("test".into()),
        headers: Set(json!({})),
        payload: Set(format!("{{\"from\": \"{FROM}\"}}").into_bytes()),
        bus_offset: Set(0),
        created_at: Set(at),
        resolved_at: Set(resolved.then_some(at)),
        attempts: Set(0),
        last_error: Set(None),
        phone_number_id: Set(Some(NUMBER.into())),
    })
    .exec_without_returning(&t.db)
    .await
    .unwrap();
}

async fn request_at(t: &TestDb, id: &str, state: &str, at: DateTime<Utc>) {
    outbound_request::Entity::insert(outbound_request::ActiveModel {
        request_id: Set(id.into()),
        key_id: Set("k1".into()),
        idempotency_key: Set(Some(format!("idem-{id}"))),
        request_hash: Set("h".into()),
        kind: Set("send".into()),
        phone_number_id: Set(NUMBER.into()),
        contact_id: Set(None),
        state: Set(state.into()),
        wamid: Set(None),
        errors: Set(None),
        reason: Set(None),
        attempts: Set(1),
        command: Set(json!({"to": FROM, "text": {"body": "olá"}})),
        created_at: Set(at),
        updated_at: Set(at),
        claimed_by: Set(None),
    })
    .exec_without_returning(&t.db)
    .await
    .unwrap();
}

async fn platform_error_at(t: &TestDb, id: &str, at: DateTime<Utc>) {
    platform_error::Entity::insert(platform_error::ActiveModel {
        event_id: Set(id.into()),
        phone_number_id: Set(NUMBER.into()),
        errors: Set(json!([{"code": 131000}])),
        received_at: Set(at),
    })
    .exec_without_returning(&t.db)
    .await
    .unwrap();
}

fn never() -> bool {
    false
}

const STORE_CLASSES: [DataClass; 6] = [
    DataClass::MessageBodies,
    DataClass::MediaReferences,
    DataClass::Statuses,
    DataClass::DeadLetters,
    DataClass::Requests,
    DataClass::PlatformErrors,
];

/// One database's whole run: rows on both sides of every cutoff, a dry run, a purge.
async fn purges_what_is_past_its_age_and_nothing_younger(t: &TestDb) {
    let config = RetentionConfig::default();
    let now = Utc::now().trunc_subsecs(0);
    let cutoff = |class| config.cutoff(class, now).unwrap();
    let second = chrono::Duration::seconds(1);
    let bodies = cutoff(DataClass::MessageBodies);
    let media = cutoff(DataClass::MediaReferences);
    let statuses = cutoff(DataClass::Statuses);

    // Message bodies (365 days): one a second past the age, one on it, one inside it.
    project(t, text("wamid.old", bodies - second)).await;
    project(t, text("wamid.edge", bodies)).await;
    project(t, text("wamid.young", bodies + second)).await;
    // Media references (30 days), and a document past both ages.
    project(t, image("wamid.old-image", media - second)).await;
    project(t, image("wamid.young-image", media + second)).await;
    project(t, document("wamid.ancient-document", bodies - second * 60)).await;
    // Statuses (90 days) of an outbound message: one report past the age, two not.
    let mut reports = status("wamid.out", "sent", statuses - second);
    reports.extend(status("wamid.out", "delivered", statuses));
    reports.extend(status("wamid.out", "read", statuses + second));
    project(t, reports).await;
    // Dead letters (30 days), re-driven or not.
    let dead = cutoff(DataClass::DeadLetters);
    dead_letter_at(t, "dl-old", dead - second, false).await;
    dead_letter_at(t, "dl-old-resolved", dead - second, true).await;
    dead_letter_at(t, "dl-edge", dead, false).await;
    dead_letter_at(t, "dl-young", dead + second, false).await;
    // Requests (30 days): only finished ones go.
    let requests = cutoff(DataClass::Requests);
    request_at(t, "req-old-sent", "sent", requests - second).await;
    request_at(t, "req-old-failed", "failed", requests - second).await;
    request_at(t, "req-old-unknown", "unknown", requests - second).await;
    request_at(t, "req-old-accepted", "accepted", requests - second).await;
    request_at(t, "req-old-sending", "sending", requests - second).await;
    request_at(t, "req-young-sent", "sent", requests + second).await;
    // Platform errors (90 days).
    let errors = cutoff(DataClass::PlatformErrors);
    platform_error_at(t, "pe-old", errors - second).await;
    platform_error_at(t, "pe-edge", errors).await;

    // In the purge's order (`DataClass::ALL`): media references before bodies.
    let expected = [
        (DataClass::MediaReferences, 2),
        (DataClass::MessageBodies, 2),
        (DataClass::Statuses, 1),
        (DataClass::DeadLetters, 2),
        (DataClass::Requests, 3),
        (DataClass::PlatformErrors, 1),
    ];
    // The dry run counts exactly that, and changes nothing.
    let before = snapshot(t).await;
    for (class, n) in expected {
        assert_eq!(
            retention::count(&t.db, class, cutoff(class)).await.unwrap(),
            n,
            "{}: dry run of {class}",
            t.name
        );
    }
    assert_eq!(
        snapshot(t).await,
        before,
        "{}: the dry run changed something",
        t.name
    );

    // The purge, one row per statement so every class takes several batches.
    let one_by_one = Batching {
        rows: 1,
        pause: Duration::ZERO,
        stop: &never,
    };
    for (class, n) in expected {
        let purged = retention::purge(&t.db, class, cutoff(class), &one_by_one)
            .await
            .unwrap();
        assert_eq!(
            purged,
            Purged {
                rows: n,
                complete: true
            },
            "{}: {class}",
            t.name
        );
    }
    for class in STORE_CLASSES {
        assert_eq!(
            retention::count(&t.db, class, cutoff(class)).await.unwrap(),
            0,
            "{}: {class} left behind",
            t.name
        );
    }

    // Bodies: the old text is an expired row; the one on the cutoff and the younger keep theirs.
    assert_eq!(
        content(t, "wamid.old").await,
        json!({"kind": "text", "expired": true}),
        "{}",
        t.name
    );
    let old = message::Entity::find_by_id("wamid.old".to_owned())
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.preview, None);
    assert_eq!(old.timestamp, bodies - second, "the row and its time stay");
    assert_eq!(old.direction, "inbound");
    for wamid in ["wamid.edge", "wamid.young"] {
        assert_eq!(
            content(t, wamid).await["body"],
            json!(format!("corpo secreto de {wamid}")),
            "{}: {wamid}",
            t.name
        );
    }
    // Media: the old image lost its media id and hash, kept its caption; the younger kept all.
    let old_image = content(t, "wamid.old-image").await;
    assert_eq!(
        old_image["media_expired"],
        json!(true),
        "{}: {old_image}",
        t.name
    );
    assert_eq!(old_image["caption"], json!("legenda"));
    assert_eq!(old_image["mime_type"], json!("image/jpeg"));
    for gone in ["id", "link", "sha256"] {
        assert!(old_image.get(gone).is_none(), "{}: {old_image}", t.name);
    }
    let young_image = content(t, "wamid.young-image").await;
    assert_eq!(
        young_image["id"],
        json!("7001"),
        "{}: {young_image}",
        t.name
    );
    assert!(young_image.get("media_expired").is_none());
    // The document past both ages: nothing of its content is left, no file name either.
    assert_eq!(
        content(t, "wamid.ancient-document").await,
        json!({"kind": "document", "expired": true}),
        "{}",
        t.name
    );
    assert_eq!(
        scalar(
            t,
            "SELECT COUNT(*) AS n FROM messages WHERE body_expired_at IS NOT NULL"
        )
        .await,
        2
    );
    assert_eq!(
        scalar(
            t,
            "SELECT COUNT(*) AS n FROM messages WHERE media_expired_at IS NOT NULL"
        )
        .await,
        3,
        "the image, and the two expired bodies"
    );

    // Statuses: the history keeps the two on and after the cutoff; the message keeps its status.
    let detail = wacrm_store::queries::get_message(&t.db, "wamid.out")
        .await
        .unwrap()
        .unwrap();
    let history: Vec<&str> = detail
        .status_history
        .iter()
        .map(|s| s.status.as_str())
        .collect();
    assert_eq!(history, ["delivered", "read"], "{}", t.name);
    assert_eq!(detail.message.status.as_deref(), Some("read"));

    // Dead letters, requests, platform errors: what is left.
    let mut left: Vec<String> = dead_letter::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    left.sort();
    assert_eq!(left, ["dl-edge", "dl-young"], "{}", t.name);
    let mut left: Vec<String> = outbound_request::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["req-old-accepted", "req-old-sending", "req-young-sent"],
        "{}",
        t.name
    );
    let left: Vec<String> = platform_error::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(left, ["pe-edge"], "{}", t.name);

    // The same webhook again (Meta retries, a replay of the bus) does not bring a body back.
    project(t, text("wamid.old", bodies - second)).await;
    assert_eq!(
        content(t, "wamid.old").await,
        json!({"kind": "text", "expired": true}),
        "{}",
        t.name
    );
    // A second purge finds nothing.
    for class in STORE_CLASSES {
        let purged = retention::purge(&t.db, class, cutoff(class), &one_by_one)
            .await
            .unwrap();
        assert_eq!(purged.rows, 0, "{}: {class}", t.name);
    }
    // The audit log's dry run runs on both databases (its purge is the audit log's own).
    let audit = retention::count(&t.db, DataClass::Audit, now)
        .await
        .unwrap();
    assert_eq!(audit, 0, "the newest entries are always kept");
}

#[tokio::test]
async fn each_class_loses_what_is_past_its_age_and_nothing_younger() {
    for t in projection_databases().await {
        purges_what_is_past_its_age_and_nothing_younger(&t).await;
    }
}

#[tokio::test]
async fn a_purge_stops_between_batches_when_asked_and_the_next_one_finishes() {
    for t in projection_databases().await {
        let config = RetentionConfig::default();
        let now = Utc::now().trunc_subsecs(0);
        let cutoff = config.cutoff(DataClass::DeadLetters, now).unwrap();
        for n in 0..25 {
            dead_letter_at(
                &t,
                &format!("dl-{n:02}"),
                cutoff - chrono::Duration::hours(n + 1),
                false,
            )
            .await;
        }
        // Shutdown comes after the second batch.
        let asked = AtomicUsize::new(0);
        let stop_after_two = || asked.fetch_add(1, Ordering::SeqCst) >= 2;
        let batching = Batching {
            rows: 10,
            pause: Duration::ZERO,
            stop: &stop_after_two,
        };
        let purged = retention::purge(&t.db, DataClass::DeadLetters, cutoff, &batching)
            .await
            .unwrap();
        assert_eq!(
            purged,
            Purged {
                rows: 20,
                complete: false
            },
            "{}",
            t.name
        );
        assert_eq!(
            retention::count(&t.db, DataClass::DeadLetters, cutoff)
                .await
                .unwrap(),
            5
        );
        let rest = Batching {
            rows: 10,
            pause: Duration::ZERO,
            stop: &never,
        };
        let purged = retention::purge(&t.db, DataClass::DeadLetters, cutoff, &rest)
            .await
            .unwrap();
        assert_eq!(
            purged,
            Purged {
                rows: 5,
                complete: true
            },
            "{}",
            t.name
        );
    }
}
