//! The embedded bus: a durable single-node log in a local SQLite file.
//!
//! One writer thread owns the write connection. Publishes and offset commits are queued to it;
//! it takes everything queued, writes it in one transaction and commits once — one fsync for
//! many concurrent publishers (group commit) — then answers each of them. SQLite runs in WAL
//! mode with `synchronous=FULL`, so a confirmed publish survives a crash or power loss.
//! Readers use their own connections and never block the writer.
//!
//! Each topic is one partition, so every key's records stay in order. A consumer group has one
//! member at a time (a second subscription of the same group is refused), and one process owns
//! the log (a lock file beside it): the embedded bus is for one node; run Kafka for more.
//!
//! The log is trimmed from its old end ([`EventBus::trim`], by the purge job): a topic's oldest
//! records go once they are older than the retention and every group that committed on the
//! topic has consumed them, or once they are older than the hard limit whatever the groups
//! did. Trimming only ever takes a topic's oldest records, up to the first that must stay;
//! where the topic's log now starts is kept in `log_starts`, so a topic trimmed to nothing
//! still continues its offsets.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::EmbeddedConfig;
use crate::{
    BusErased, BusErasure, BusError, EventBus, OutboundRecord, Record, Subscription, TrimPolicy,
    Trimmed,
};

/// The log's layout version, kept in SQLite's `user_version`.
const SCHEMA_VERSION: i64 = 2;

/// Records live in a rowid table: appends go to its right edge, and its interior pages hold
/// only rowids, so a commit rewrites a handful of pages. (Version 1 kept them in a WITHOUT
/// ROWID table keyed by topic and offset; its interior pages held whole records of about
/// 600 bytes, six to a page, and every group commit rewrote about fifteen pages.) The index
/// finds a topic's records by offset.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    seq       INTEGER PRIMARY KEY,
    topic     TEXT    NOT NULL,
    offset    INTEGER NOT NULL,
    key       TEXT    NOT NULL,
    headers   TEXT    NOT NULL,
    payload   BLOB    NOT NULL,
    ts_ms     INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS records_topic_offset ON records (topic, offset);
CREATE TABLE IF NOT EXISTS group_offsets (
    grp         TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_starts (
    topic        TEXT    NOT NULL PRIMARY KEY,
    start_offset INTEGER NOT NULL
) WITHOUT ROWID;
";

enum WriteOp {
    Append {
        records: Vec<OutboundRecord>,
        done: oneshot::Sender<Result<(), BusError>>,
    },
    Commit {
        group: String,
        positions: Vec<(String, i64)>,
        done: oneshot::Sender<Result<(), BusError>>,
    },
    /// Trims in a transaction of its own, after the group commit it was queued with.
    Trim {
        policy: TrimPolicy,
        max_records: usize,
        done: oneshot::Sender<Result<Trimmed, BusError>>,
    },
}

/// Next offset of every topic: the log's head.
type Heads = Arc<RwLock<HashMap<String, i64>>>;

/// The embedded single-node bus.
pub struct EmbeddedBus {
    /// Held for the bus's lifetime: one process owns the log.
    _lock: std::fs::File,
    writer: mpsc::Sender<WriteOp>,
    path: PathBuf,
    heads: Heads,
    appended: watch::Receiver<u64>,
    active_groups: Arc<Mutex<HashSet<String>>>,
}

impl EmbeddedBus {
    /// Opens (creating if needed) the log at the configured path and starts its writer.
    pub fn open(config: &EmbeddedConfig) -> Result<Self, BusError> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| BusError::Fatal(format!("cannot create {}: {e}", dir.display())))?;
        }
        let lock_path = config.path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| BusError::Fatal(format!("cannot open {}: {e}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            return Err(BusError::Unavailable(format!(
                "the embedded bus {} is in use by another wacrm process; stop it or use its API",
                config.path.display()
            )));
        }
        let mut conn = Connection::open(&config.path).map_err(fatal)?;
        conn.execute_batch(
            // `secure_delete`: trimmed and erased records do not linger in free space.
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON; PRAGMA busy_timeout=5000; PRAGMA cache_size=-2048;",
        )
        .map_err(fatal)?;
        migrate(&mut conn)?;
        let heads = load_heads(&conn)?;
        let heads: Heads = Arc::new(RwLock::new(heads));
        let (tx, rx) = mpsc::channel(config.max_batch.max(1) * 4);
        let (appended_tx, appended_rx) = watch::channel(0u64);
        let writer_heads = heads.clone();
        let max_batch = config.max_batch.max(1);
        std::thread::Builder::new()
            .name("wacrm-bus-writer".into())
            .spawn(move || writer_loop(conn, rx, writer_heads, appended_tx, max_batch))
            .map_err(|e| BusError::Fatal(format!("cannot start bus writer: {e}")))?;
        Ok(EmbeddedBus {
            _lock: lock,
            writer: tx,
            path: config.path.clone(),
            heads,
            appended: appended_rx,
            active_groups: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    async fn send(
        &self,
        op: WriteOp,
        done: oneshot::Receiver<Result<(), BusError>>,
    ) -> Result<(), BusError> {
        self.writer
            .send(op)
            .await
            .map_err(|_| BusError::Unavailable("bus writer stopped".into()))?;
        done.await
            .map_err(|_| BusError::Unavailable("bus writer stopped".into()))?
    }
}

fn fatal(e: rusqlite::Error) -> BusError {
    BusError::Fatal(e.to_string())
}

fn unavailable(e: rusqlite::Error) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// Creates the log's tables, or brings a log written by an older version to the current
/// layout, in one transaction: a crash midway leaves the old layout, and the next start
/// migrates again. Version 1 → 2 copies the records (400,000 of 600 bytes: about 3 s here) and
/// needs the log's size again in free disk meanwhile; the old pages are reused by new records.
fn migrate(conn: &mut Connection) -> Result<(), BusError> {
    let tx = conn.transaction().map_err(fatal)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(fatal)?;
    if version > SCHEMA_VERSION {
        return Err(BusError::Fatal(format!(
            "the embedded bus was written by a newer wacrm (layout {version}, this one knows {SCHEMA_VERSION})"
        )));
    }
    let has_records: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records')",
            [],
            |r| r.get(0),
        )
        .map_err(fatal)?;
    let from_v1 = version < 2 && has_records;
    if from_v1 {
        tx.execute_batch("ALTER TABLE records RENAME TO records_v1;")
            .map_err(fatal)?;
    }
    tx.execute_batch(SCHEMA).map_err(fatal)?;
    if from_v1 {
        tx.execute_batch(
            "INSERT INTO records (topic, offset, key, headers, payload, ts_ms)
                 SELECT topic, offset, key, headers, payload, ts_ms FROM records_v1;
             DROP TABLE records_v1;",
        )
        .map_err(fatal)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
        .map_err(fatal)?;
    tx.commit().map_err(fatal)
}

/// Every topic's next offset: after its newest record, or where its trimmed log starts when
/// nothing is left of it (a trimmed topic must not hand out its offsets again).
fn load_heads(conn: &Connection) -> Result<HashMap<String, i64>, BusError> {
    let mut heads = HashMap::new();
    for sql in [
        "SELECT topic, MAX(offset) + 1 FROM records GROUP BY topic",
        "SELECT topic, start_offset FROM log_starts",
        // An erasure may delete a topic's newest records (`crate::erase`): the offsets groups
        // committed past them keep the head from going back, so no offset is handed out twice.
        "SELECT topic, MAX(next_offset) FROM group_offsets GROUP BY topic",
    ] {
        let mut stmt = conn.prepare(sql).map_err(fatal)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(fatal)?;
        for row in rows {
            let (topic, next) = row.map_err(fatal)?;
            let head = heads.entry(topic).or_insert(next);
            *head = (*head).max(next);
        }
    }
    Ok(heads)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<WriteOp>,
    heads: Heads,
    appended: watch::Sender<u64>,
    max_batch: usize,
) {
    let mut generation = 0u64;
    while let Some(first) = rx.blocking_recv() {
        let mut ops = Vec::new();
        let mut trims = Vec::new();
        let mut queued = 0;
        let mut next = Some(first);
        while let Some(op) = next.take() {
            match op {
                WriteOp::Trim {
                    policy,
                    max_records,
                    done,
                } => trims.push((policy, max_records, done)),
                op => {
                    queued += op_size(&op);
                    ops.push(op);
                }
            }
            if queued >= max_batch {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !ops.is_empty() {
            write_and_reply(&mut conn, ops, queued, &heads, &appended, &mut generation);
        }
        // A trim step is a transaction of its own, after the group commit it was queued with:
        // publishers wait behind at most one bounded step.
        for (policy, max_records, done) in trims {
            let result = trim_step(&mut conn, &heads, policy, max_records);
            if let Err(e) = &result {
                tracing::error!(error = %e, "embedded bus trim failed");
            }
            let _ = done.send(result);
        }
    }
}

/// Writes a group of appends and commits in one transaction and answers each of them.
fn write_and_reply(
    conn: &mut Connection,
    ops: Vec<WriteOp>,
    queued: usize,
    heads: &Heads,
    appended: &watch::Sender<u64>,
    generation: &mut u64,
) {
    let started = Instant::now();
    let result = write_group(conn, &ops, heads);
    metrics::histogram!("wacrm_bus_group_commit_seconds").record(started.elapsed());
    metrics::histogram!("wacrm_bus_group_commit_records").record(queued as f64);
    let appended_any = ops.iter().any(|op| matches!(op, WriteOp::Append { .. }));
    match result {
        Ok(new_heads) => {
            if let Ok(mut h) = heads.write() {
                h.extend(new_heads);
            }
            if appended_any {
                *generation += 1;
                appended.send_replace(*generation);
            }
            for op in ops {
                reply(op, Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "embedded bus write failed");
            for op in ops {
                reply(op, Err(e.clone()));
            }
        }
    }
}

fn op_size(op: &WriteOp) -> usize {
    match op {
        WriteOp::Append { records, .. } => records.len().max(1),
        WriteOp::Commit { .. } | WriteOp::Trim { .. } => 1,
    }
}

fn reply(op: WriteOp, result: Result<(), BusError>) {
    // The publisher may have given up waiting; it then treats the publish as failed.
    match op {
        WriteOp::Append { done, .. } | WriteOp::Commit { done, .. } => {
            let _ = done.send(result);
        }
        WriteOp::Trim { done, .. } => {
            let _ = done.send(result.map(|()| Trimmed::default()));
        }
    }
}

/// How far a topic's oldest records may be trimmed, looked at from `from` on, at most `limit`
/// records: (the first offset that stays, the last record looked at was deletable).
/// `consumed` is the lowest next offset any group committed on the topic (`None`: no group
/// committed on it).
fn trimmable(
    conn: &Connection,
    topic: &str,
    from: i64,
    limit: usize,
    consumed: Option<i64>,
    policy: TrimPolicy,
) -> rusqlite::Result<(i64, bool)> {
    let mut stmt = conn.prepare_cached(
        "SELECT offset, ts_ms FROM records WHERE topic = ?1 AND offset >= ?2 ORDER BY offset LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![topic, from, limit as i64], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut upto = from;
    let mut seen = 0usize;
    for row in rows {
        let (offset, ts_ms) = row?;
        let consumed_by_all = consumed.is_none_or(|next| offset < next);
        let past_hard_limit = policy
            .unconsumed_older_than_ms
            .is_some_and(|limit| ts_ms < limit);
        if ts_ms >= policy.older_than_ms || !(consumed_by_all || past_hard_limit) {
            return Ok((upto, false));
        }
        upto = offset + 1;
        seen += 1;
    }
    Ok((upto, seen == limit))
}

/// The committed next offsets on `topic`, by group.
fn group_positions(conn: &Connection, topic: &str) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT grp, next_offset FROM group_offsets WHERE topic = ?1 AND grp <> ''",
    )?;
    let rows = stmt.query_map(params![topic], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// The topic's oldest offset still in the log.
fn log_start(conn: &Connection, topic: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT MIN(offset) FROM records WHERE topic = ?1")?
        .query_row(params![topic], |r| r.get(0))
}

/// Adds to `trimmed` the records of `[start, upto)` that each group had not consumed.
fn count_unconsumed(trimmed: &mut Trimmed, positions: &[(String, i64)], start: i64, upto: i64) {
    for (group, next) in positions {
        let missed = upto - (*next).max(start);
        if missed > 0 {
            *trimmed.unconsumed.entry(group.clone()).or_default() += missed as u64;
        }
    }
}

/// What trimming every topic would remove now, without removing anything (a reader's
/// connection).
fn trim_dry_run(
    conn: &Connection,
    topics: &[String],
    policy: TrimPolicy,
) -> Result<Trimmed, BusError> {
    /// Records looked at per query.
    const PAGE: usize = 10_000;
    let mut out = Trimmed {
        done: true,
        ..Trimmed::default()
    };
    for topic in topics {
        let Some(start) = log_start(conn, topic).map_err(unavailable)? else {
            continue;
        };
        let positions = group_positions(conn, topic).map_err(unavailable)?;
        let consumed = positions.iter().map(|(_, next)| *next).min();
        let mut upto = start;
        loop {
            let (to, more) =
                trimmable(conn, topic, upto, PAGE, consumed, policy).map_err(unavailable)?;
            upto = to;
            if !more {
                break;
            }
        }
        out.records += (upto - start) as u64;
        count_unconsumed(&mut out, &positions, start, upto);
    }
    Ok(out)
}

/// Trims up to about `max_records` of the oldest records, topic by topic, in one transaction.
fn trim_step(
    conn: &mut Connection,
    heads: &Heads,
    policy: TrimPolicy,
    max_records: usize,
) -> Result<Trimmed, BusError> {
    let mut topics: Vec<String> = heads
        .read()
        .map_err(|_| BusError::Fatal("heads poisoned".into()))?
        .keys()
        .cloned()
        .collect();
    topics.sort();
    let mut out = Trimmed {
        done: true,
        ..Trimmed::default()
    };
    let mut budget = max_records.max(1);
    let tx = conn.transaction().map_err(unavailable)?;
    for topic in &topics {
        if budget == 0 {
            out.done = false;
            break;
        }
        let Some(start) = log_start(&tx, topic).map_err(unavailable)? else {
            continue;
        };
        let positions = group_positions(&tx, topic).map_err(unavailable)?;
        let consumed = positions.iter().map(|(_, next)| *next).min();
        let (upto, more) =
            trimmable(&tx, topic, start, budget, consumed, policy).map_err(unavailable)?;
        if more {
            out.done = false;
        }
        if upto <= start {
            continue;
        }
        let removed = tx
            .prepare_cached("DELETE FROM records WHERE topic = ?1 AND offset < ?2")
            .and_then(|mut s| s.execute(params![topic, upto]))
            .map_err(unavailable)?;
        tx.prepare_cached(
            "INSERT INTO log_starts (topic, start_offset) VALUES (?1, ?2)
             ON CONFLICT (topic) DO UPDATE SET start_offset = MAX(start_offset, excluded.start_offset)",
        )
        .and_then(|mut s| s.execute(params![topic, upto]))
        .map_err(unavailable)?;
        out.records += removed as u64;
        budget = budget.saturating_sub(removed);
        count_unconsumed(&mut out, &positions, start, upto);
    }
    tx.commit().map_err(unavailable)?;
    Ok(out)
}

/// Writes all queued operations in one transaction. Returns the heads it moved.
fn write_group(
    conn: &mut Connection,
    ops: &[WriteOp],
    heads: &Heads,
) -> Result<HashMap<String, i64>, BusError> {
    let mut new_heads: HashMap<String, i64> = HashMap::new();
    let tx = conn.transaction().map_err(unavailable)?;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO records (topic, offset, key, headers, payload, ts_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(unavailable)?;
        let mut commit = tx
            .prepare_cached(
                "INSERT INTO group_offsets (grp, topic, next_offset) VALUES (?1, ?2, ?3)
                 ON CONFLICT (grp, topic) DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)",
            )
            .map_err(unavailable)?;
        let ts = now_ms();
        for op in ops {
            match op {
                WriteOp::Append { records, .. } => {
                    for record in records {
                        let next = match new_heads.get(&record.topic) {
                            Some(n) => *n,
                            None => heads
                                .read()
                                .ok()
                                .and_then(|h| h.get(&record.topic).copied())
                                .unwrap_or(0),
                        };
                        let headers = serde_json::to_string(&record.headers)
                            .map_err(|e| BusError::Rejected(e.to_string()))?;
                        insert
                            .execute(params![
                                record.topic,
                                next,
                                record.key,
                                headers,
                                record.payload,
                                ts
                            ])
                            .map_err(unavailable)?;
                        new_heads.insert(record.topic.clone(), next + 1);
                    }
                }
                WriteOp::Commit {
                    group, positions, ..
                } => {
                    for (topic, next_offset) in positions {
                        commit
                            .execute(params![group, topic, next_offset])
                            .map_err(unavailable)?;
                    }
                }
                // Trims never reach a group commit (`writer_loop` runs them on their own).
                WriteOp::Trim { .. } => {}
            }
        }
    }
    tx.commit().map_err(unavailable)?;
    Ok(new_heads)
}

#[async_trait]
impl EventBus for EmbeddedBus {
    async fn publish(&self, records: Vec<OutboundRecord>) -> Result<(), BusError> {
        if records.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.send(WriteOp::Append { records, done }, wait).await
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError> {
        {
            let mut active = self
                .active_groups
                .lock()
                .map_err(|_| BusError::Fatal("group registry poisoned".into()))?;
            if !active.insert(group.to_owned()) {
                return Err(BusError::Rejected(format!(
                    "consumer group {group} already has a member; the embedded bus allows one per group"
                )));
            }
        }
        let path = self.path.clone();
        let group_owned = group.to_owned();
        let topics_owned = topics.to_vec();
        let opened = tokio::task::spawn_blocking(move || -> Result<_, BusError> {
            let conn = open_reader(&path)?;
            let positions = committed_positions(&conn, &group_owned, &topics_owned)?;
            Ok((conn, positions))
        })
        .await
        .map_err(|e| BusError::Fatal(e.to_string()));
        let (conn, positions) = match opened.and_then(|r| r) {
            Ok(v) => v,
            Err(e) => {
                if let Ok(mut active) = self.active_groups.lock() {
                    active.remove(group);
                }
                return Err(e);
            }
        };
        Ok(Box::new(EmbeddedSubscription {
            group: group.to_owned(),
            topics: topics.to_vec(),
            reader: Arc::new(Mutex::new(conn)),
            committed: positions.clone(),
            positions,
            paused: false,
            bus: SubscriptionBus {
                writer: self.writer.clone(),
                heads: self.heads.clone(),
                appended: self.appended.clone(),
                active_groups: self.active_groups.clone(),
            },
        }))
    }

    async fn check(&self) -> Result<(), BusError> {
        if self.writer.is_closed() {
            return Err(BusError::Unavailable("bus writer stopped".into()));
        }
        let (done, wait) = oneshot::channel();
        // An empty commit is a round trip through the writer: it proves the file is writable.
        self.send(
            WriteOp::Commit {
                group: String::new(),
                positions: Vec::new(),
                done,
            },
            wait,
        )
        .await
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn erase(&self, request: &BusErasure) -> Result<BusErased, BusError> {
        let path = self.path.clone();
        let request = request.clone();
        let removed = tokio::task::spawn_blocking(move || crate::erase::erase_log(&path, &request))
            .await
            .map_err(|e| BusError::Fatal(e.to_string()))??;
        Ok(BusErased {
            removed,
            tombstones: 0,
        })
    }

    async fn trim(
        &self,
        policy: TrimPolicy,
        max_records: usize,
        dry_run: bool,
    ) -> Result<Option<Trimmed>, BusError> {
        if dry_run {
            let path = self.path.clone();
            let topics: Vec<String> = self
                .heads
                .read()
                .map_err(|_| BusError::Fatal("heads poisoned".into()))?
                .keys()
                .cloned()
                .collect();
            return tokio::task::spawn_blocking(move || {
                trim_dry_run(&open_reader(&path)?, &topics, policy)
            })
            .await
            .map_err(|e| BusError::Fatal(e.to_string()))?
            .map(Some);
        }
        let (done, wait) = oneshot::channel();
        self.writer
            .send(WriteOp::Trim {
                policy,
                max_records,
                done,
            })
            .await
            .map_err(|_| BusError::Unavailable("bus writer stopped".into()))?;
        wait.await
            .map_err(|_| BusError::Unavailable("bus writer stopped".into()))?
            .map(Some)
    }
}

fn open_reader(path: &Path) -> Result<Connection, BusError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fatal)?;
    // Consumers read the log's tail, which the OS page cache holds anyway: a small page cache
    // per reader keeps memory flat however long the log grows.
    conn.execute_batch("PRAGMA busy_timeout=5000; PRAGMA cache_size=-512;")
        .map_err(fatal)?;
    Ok(conn)
}

fn committed_positions(
    conn: &Connection,
    group: &str,
    topics: &[String],
) -> Result<HashMap<String, i64>, BusError> {
    let mut positions = HashMap::new();
    for topic in topics {
        let next: Option<i64> = conn
            .query_row(
                "SELECT next_offset FROM group_offsets WHERE grp = ?1 AND topic = ?2",
                params![group, topic],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)?;
        positions.insert(topic.clone(), next.unwrap_or(0));
    }
    Ok(positions)
}

struct SubscriptionBus {
    writer: mpsc::Sender<WriteOp>,
    heads: Heads,
    appended: watch::Receiver<u64>,
    active_groups: Arc<Mutex<HashSet<String>>>,
}

struct EmbeddedSubscription {
    group: String,
    topics: Vec<String>,
    reader: Arc<Mutex<Connection>>,
    /// Next offset to read, per topic.
    positions: HashMap<String, i64>,
    /// Last committed next-offset, per topic.
    committed: HashMap<String, i64>,
    /// Whether [`Subscription::pause`] holds deliveries back.
    paused: bool,
    bus: SubscriptionBus,
}

impl EmbeddedSubscription {
    fn has_unread(&self) -> bool {
        let Ok(heads) = self.bus.heads.read() else {
            return true;
        };
        self.topics.iter().any(|t| {
            heads.get(t).copied().unwrap_or(0) > self.positions.get(t).copied().unwrap_or(0)
        })
    }

    async fn read(&mut self, max: usize) -> Result<Vec<Record>, BusError> {
        let reader = self.reader.clone();
        let wanted: Vec<(String, i64)> = self
            .topics
            .iter()
            .map(|t| (t.clone(), self.positions.get(t).copied().unwrap_or(0)))
            .collect();
        let records = tokio::task::spawn_blocking(move || -> Result<Vec<Record>, BusError> {
            let conn = reader
                .lock()
                .map_err(|_| BusError::Fatal("reader poisoned".into()))?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT offset, key, headers, payload, ts_ms FROM records
                     WHERE topic = ?1 AND offset >= ?2 ORDER BY offset LIMIT ?3",
                )
                .map_err(unavailable)?;
            let mut out = Vec::new();
            for (topic, from) in wanted {
                let remaining = max.saturating_sub(out.len());
                if remaining == 0 {
                    break;
                }
                let rows = stmt
                    .query_map(params![topic, from, remaining as i64], |r| {
                        let headers: String = r.get(2)?;
                        Ok(Record {
                            topic: topic.clone(),
                            partition: 0,
                            offset: r.get(0)?,
                            key: r.get(1)?,
                            headers: serde_json::from_str(&headers).unwrap_or_default(),
                            payload: r.get(3)?,
                            timestamp_ms: r.get(4)?,
                        })
                    })
                    .map_err(unavailable)?;
                for row in rows {
                    out.push(row.map_err(unavailable)?);
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| BusError::Fatal(e.to_string()))??;
        for r in &records {
            self.positions.insert(r.topic.clone(), r.offset + 1);
        }
        Ok(records)
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        if self.paused {
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Mark the current generation seen before checking, so an append that lands between
            // the check and the wait still wakes us.
            self.bus.appended.borrow_and_update();
            if self.has_unread() {
                let records = self.read(max.max(1)).await?;
                if !records.is_empty() {
                    return Ok(records);
                }
            }
            match tokio::time::timeout_at(deadline, self.bus.appended.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(BusError::Unavailable("bus writer stopped".into())),
                Err(_) => return Ok(Vec::new()),
            }
        }
    }

    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        let mut next: HashMap<String, i64> = HashMap::new();
        for r in records {
            let entry = next.entry(r.topic.clone()).or_insert(r.offset + 1);
            *entry = (*entry).max(r.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let positions: Vec<(String, i64)> = next.clone().into_iter().collect();
        let (done, wait) = oneshot::channel();
        self.bus
            .writer
            .send(WriteOp::Commit {
                group: self.group.clone(),
                positions,
                done,
            })
            .await
            .map_err(|_| BusError::Unavailable("bus writer stopped".into()))?;
        wait.await
            .map_err(|_| BusError::Unavailable("bus writer stopped".into()))??;
        self.committed.extend(next);
        Ok(())
    }

    async fn rewind(&mut self) -> Result<(), BusError> {
        let reader = self.reader.clone();
        let group = self.group.clone();
        let topics = self.topics.clone();
        let positions = tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .map_err(|_| BusError::Fatal("reader poisoned".into()))?;
            committed_positions(&conn, &group, &topics)
        })
        .await
        .map_err(|e| BusError::Fatal(e.to_string()))??;
        self.positions = positions;
        Ok(())
    }

    async fn lag(&mut self) -> Result<i64, BusError> {
        let heads = self
            .bus
            .heads
            .read()
            .map_err(|_| BusError::Fatal("heads poisoned".into()))?;
        Ok(self
            .topics
            .iter()
            .map(|t| {
                let head = heads.get(t).copied().unwrap_or(0);
                let done = self.committed.get(t).copied().unwrap_or(0);
                (head - done).max(0)
            })
            .sum())
    }

    async fn pause(&mut self) -> Result<(), BusError> {
        self.paused = true;
        Ok(())
    }

    async fn resume(&mut self) -> Result<(), BusError> {
        self.paused = false;
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }
}

impl Drop for EmbeddedSubscription {
    fn drop(&mut self) {
        if let Ok(mut active) = self.bus.active_groups.lock() {
            active.remove(&self.group);
        }
    }
}
