//! The embedded log's on-disk layout: what a commit costs, and logs written by older versions.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use rusqlite::{params, Connection};
use support::embedded::{config, drain};
use wacrm_bus::embedded::EmbeddedBus;
use wacrm_bus::{EventBus, OutboundRecord};

/// A record about the size of a real event (600 bytes), whose size is what makes the layout
/// matter.
fn record(topic: &str, n: usize) -> OutboundRecord {
    OutboundRecord {
        topic: topic.into(),
        key: format!("key-{}", n % 97),
        headers: vec![("n".into(), n.to_string())],
        payload: format!("{n:0>600}").into_bytes(),
    }
}

/// `PRAGMA wal_checkpoint` on a connection of its own: (frames in the WAL, frames copied).
fn checkpoint(conn: &Connection, mode: &str) -> (i64, i64) {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
    .unwrap()
}

#[tokio::test]
async fn a_group_commit_rewrites_a_handful_of_pages_however_long_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(&config(&dir)).unwrap();
    // Two topics written side by side, as a webhook's contact and message events are.
    for chunk in 0..200 {
        let records = (chunk * 50..(chunk + 1) * 50)
            .flat_map(|n| [record("contacts", n), record("conversations", n)])
            .collect();
        bus.publish(records).await.unwrap();
    }
    let observer = Connection::open(dir.path().join("bus.db")).unwrap();
    observer.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut frames = Vec::new();
    for n in (10_000..10_400).step_by(4) {
        checkpoint(&observer, "TRUNCATE");
        let records = (n..n + 4)
            .flat_map(|n| [record("contacts", n), record("conversations", n)])
            .collect();
        bus.publish(records).await.unwrap();
        frames.push(checkpoint(&observer, "PASSIVE").0);
    }
    frames.sort_unstable();
    let median = frames[frames.len() / 2];
    // Eight records of 600 bytes fill more than a leaf: two or three record leaves, an index
    // leaf per topic, the header page as the file grows, and a parent now and then (6 – 12
    // pages here, median 6). The first layout kept whole records in its interior pages and
    // rewrote 7 – 21 (median 13).
    assert!(
        median <= 8,
        "pages written per commit of eight records: {frames:?}"
    );
}

/// A record as a consumer sees it: topic, offset, key, header `n`, payload, time.
type Seen = (String, i64, String, Option<String>, Vec<u8>, i64);

/// The layout of wacrm's first versions: records in a WITHOUT ROWID table.
fn write_v1_log(path: &std::path::Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE records (
             topic TEXT NOT NULL, offset INTEGER NOT NULL, key TEXT NOT NULL,
             headers TEXT NOT NULL, payload BLOB NOT NULL, ts_ms INTEGER NOT NULL,
             PRIMARY KEY (topic, offset)
         ) WITHOUT ROWID;
         CREATE TABLE group_offsets (
             grp TEXT NOT NULL, topic TEXT NOT NULL, next_offset INTEGER NOT NULL,
             PRIMARY KEY (grp, topic)
         ) WITHOUT ROWID;",
    )
    .unwrap();
    for (topic, count) in [("a", 7), ("b", 5)] {
        for offset in 0..count {
            conn.execute(
                "INSERT INTO records VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    topic,
                    offset,
                    format!("k{offset}"),
                    format!(r#"[["n","{topic}{offset}"]]"#),
                    format!("{topic}-{offset}").into_bytes(),
                    1_700_000_000_000i64 + offset,
                ],
            )
            .unwrap();
        }
    }
    conn.execute(
        "INSERT INTO group_offsets VALUES ('g', 'a', 3), ('g', 'b', 5)",
        [],
    )
    .unwrap();
}

#[tokio::test]
async fn a_log_written_by_the_first_layout_is_migrated_with_offsets_and_commits_intact() {
    let dir = tempfile::tempdir().unwrap();
    write_v1_log(&dir.path().join("bus.db"));
    let bus = EmbeddedBus::open(&config(&dir)).unwrap();

    // The group resumes where it committed, with every record as it was written.
    let mut sub = bus.subscribe("g", &["a".into(), "b".into()]).await.unwrap();
    assert_eq!(sub.lag().await.unwrap(), 4);
    let rest = drain(&mut sub, 4).await;
    let got: Vec<Seen> = rest
        .iter()
        .map(|r| {
            (
                r.topic.clone(),
                r.offset,
                r.key.clone(),
                r.header("n").map(str::to_owned),
                r.payload.clone(),
                r.timestamp_ms,
            )
        })
        .collect();
    let want: Vec<_> = (3..7)
        .map(|o| {
            (
                "a".to_owned(),
                o,
                format!("k{o}"),
                Some(format!("a{o}")),
                format!("a-{o}").into_bytes(),
                1_700_000_000_000 + o,
            )
        })
        .collect();
    assert_eq!(got, want);

    // New records continue each topic's offsets.
    bus.publish(vec![record("a", 0), record("b", 0)])
        .await
        .unwrap();
    let next = drain(&mut sub, 2).await;
    let offsets: Vec<(&str, i64)> = next.iter().map(|r| (r.topic.as_str(), r.offset)).collect();
    assert_eq!(offsets, [("a", 7), ("b", 5)]);

    // Another group reads the whole migrated log from the start.
    let mut other = bus.subscribe("h", &["b".into()]).await.unwrap();
    let all = drain(&mut other, 6).await;
    assert_eq!(
        all.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..6).collect::<Vec<i64>>()
    );
    drop((sub, other, bus));

    // Opening the migrated log again copies nothing twice: the same 14 records.
    let bus = EmbeddedBus::open(&config(&dir)).unwrap();
    let mut again = bus
        .subscribe("fresh", &["a".into(), "b".into()])
        .await
        .unwrap();
    assert_eq!(again.lag().await.unwrap(), 14);
    assert_eq!(drain(&mut again, 14).await.len(), 14);
    drop((again, bus));

    let conn = Connection::open(dir.path().join("bus.db")).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let old_tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'records_v1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old_tables, 0);
}

#[tokio::test]
async fn a_log_written_by_a_newer_layout_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let Err(e) = EmbeddedBus::open(&config(&dir)) else {
        panic!("a newer layout was opened");
    };
    assert!(matches!(e, wacrm_bus::BusError::Fatal(_)), "{e}");
    assert!(e.to_string().contains("newer"), "{e}");
    let tables: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 0);
}
