//! Retention: how long each class of personal data is kept, and the purge that removes what
//! is older.
//!
//! Each class has an age in days (`[retention]`, [`RetentionConfig`]); `0` keeps the class
//! forever. A purge removes, per class, what is older than `now - age`:
//!
//! | class | what goes | what stays |
//! |---|---|---|
//! | [`DataClass::MessageBodies`] | a message's content (text, captions, media, locations, cards, template parameters), its preview and its ad referral | the row: wamid, direction, kind, times, status, business number, contact, reply context, sender; `content` becomes `{"kind": …, "expired": true}` and `body_expired_at` is set |
//! | [`DataClass::MediaReferences`] | a media message's WhatsApp media id, link, file name and file hash | the rest of its content (caption and type until the body goes); `content.media_expired` is set, and `media_expired_at` |
//! | [`DataClass::Statuses`] | status reports (the history) | the message's current status |
//! | [`DataClass::DeadLetters`] | dead letters, re-driven or not | — |
//! | [`DataClass::Requests`] | finished send requests (`sent`, `failed`, `unknown`) and their idempotency keys | requests still `accepted` or `sending` |
//! | [`DataClass::PlatformErrors`] | errors WhatsApp reported for a webhook change | — |
//! | [`DataClass::Audit`] | audit entries (kept forever by default) | — |
//! | [`DataClass::BusLog`] | the embedded bus's records (the bus trims them: `wacrm_bus::EventBus::trim`) | — |
//!
//! Every purge works in bounded batches — one statement changes at most
//! [`RetentionConfig::batch_rows`] rows and commits on its own — so a first purge of years of
//! data holds no long transaction and no long lock, and a shutdown stops it between batches
//! ([`Batching::stop`]). [`count`] is the dry run: what a purge would change now, changing
//! nothing. SQLite and PostgreSQL run the same statements except for the JSON functions.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The PostgreSQL advisory lock of the purge job ("wacrm-pu" as a number): with several
/// instances on one store, one purges at a time (`crate::singleton::exclusive`).
pub const PURGE_LOCK: i64 = 0x7761_6372_6d2d_7075;

/// `[retention]`: the age, in days, after which each class of data is removed. `0` keeps a
/// class forever; a key left out takes its default. Unknown keys are refused (a misspelt key
/// would otherwise keep data forever without a word).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// How often `wacrm serve` purges, in seconds; `0` runs no purge job (`wacrm purge` only).
    pub purge_every_secs: u64,
    /// Most rows one purge statement changes (1–10,000).
    pub batch_rows: u32,
    /// Message bodies, captions and everything else a message's content carries.
    pub message_bodies_days: u32,
    /// WhatsApp media ids, links, file names and hashes.
    pub media_references_days: u32,
    /// Status history (sent, delivered, read… reports).
    pub statuses_days: u32,
    /// Dead letters.
    pub dead_letters_days: u32,
    /// The embedded bus's records (on Kafka: the topics' `retention.ms`).
    pub bus_log_days: u32,
    /// The embedded bus's hard limit: records older than this go even when a consumer group has
    /// not consumed them (a group that stopped for good must not keep the log forever).
    pub bus_log_max_days: u32,
    /// Finished send requests and their idempotency keys.
    pub requests_days: u32,
    /// Errors WhatsApp reported for whole webhook changes.
    pub platform_errors_days: u32,
    /// Audit entries.
    pub audit_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            purge_every_secs: 3_600,
            batch_rows: 1_000,
            message_bodies_days: 365,
            media_references_days: 30,
            statuses_days: 90,
            dead_letters_days: 30,
            bus_log_days: 7,
            bus_log_max_days: 30,
            requests_days: 30,
            platform_errors_days: 90,
            audit_days: 0,
        }
    }
}

/// A class of data with an age of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataClass {
    /// Message content (bodies, captions, locations, cards, …).
    MessageBodies,
    /// Media ids, links, file names, hashes.
    MediaReferences,
    /// Status history.
    Statuses,
    /// Dead letters.
    DeadLetters,
    /// The embedded bus's log.
    BusLog,
    /// Finished send requests.
    Requests,
    /// WhatsApp's errors for whole webhook changes.
    PlatformErrors,
    /// The audit log.
    Audit,
}

impl DataClass {
    /// Every class, in the order a purge takes them. Media references go before bodies: a
    /// body purge empties the whole content (references included), so in this order each
    /// class's purge removes exactly what its dry run counted, whatever the two ages.
    pub const ALL: [DataClass; 8] = [
        DataClass::MediaReferences,
        DataClass::MessageBodies,
        DataClass::Statuses,
        DataClass::DeadLetters,
        DataClass::Requests,
        DataClass::PlatformErrors,
        DataClass::BusLog,
        DataClass::Audit,
    ];

    /// The class's name in reports, metrics (`class` label) and the audit entry.
    pub fn name(self) -> &'static str {
        match self {
            DataClass::MessageBodies => "message_bodies",
            DataClass::MediaReferences => "media_references",
            DataClass::Statuses => "statuses",
            DataClass::DeadLetters => "dead_letters",
            DataClass::BusLog => "bus_log",
            DataClass::Requests => "requests",
            DataClass::PlatformErrors => "platform_errors",
            DataClass::Audit => "audit",
        }
    }

    /// Whether the store holds the class ([`purge`] and [`count`] take it); the bus log is the
    /// bus's.
    pub fn in_store(self) -> bool {
        self != DataClass::BusLog
    }
}

impl std::fmt::Display for DataClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const DAY: i64 = 86_400;

impl RetentionConfig {
    /// The configured days of a class (`0`: forever).
    pub fn days(&self, class: DataClass) -> u32 {
        match class {
            DataClass::MessageBodies => self.message_bodies_days,
            DataClass::MediaReferences => self.media_references_days,
            DataClass::Statuses => self.statuses_days,
            DataClass::DeadLetters => self.dead_letters_days,
            DataClass::BusLog => self.bus_log_days,
            DataClass::Requests => self.requests_days,
            DataClass::PlatformErrors => self.platform_errors_days,
            DataClass::Audit => self.audit_days,
        }
    }

    /// How long a class is kept; `None` when forever.
    pub fn age(&self, class: DataClass) -> Option<chrono::Duration> {
        days(self.days(class))
    }

    /// What a purge at `now` removes of a class: everything older than this; `None` when the
    /// class is kept forever.
    pub fn cutoff(&self, class: DataClass, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.age(class).map(|age| now - age)
    }

    /// The embedded bus's hard limit ([`RetentionConfig::bus_log_max_days`]); `None` when none.
    pub fn bus_log_max_age(&self) -> Option<chrono::Duration> {
        days(self.bus_log_max_days)
    }

    /// How long the bus keeps records, in milliseconds, as Kafka's `retention.ms` says it
    /// (`-1`: forever).
    pub fn bus_log_ms(&self) -> i64 {
        match self.bus_log_days {
            0 => -1,
            d => i64::from(d) * DAY * 1_000,
        }
    }

    /// How often the purge job runs; `None` when it does not.
    pub fn purge_every(&self) -> Option<Duration> {
        (self.purge_every_secs > 0).then(|| Duration::from_secs(self.purge_every_secs))
    }

    /// Refuses a configuration that would break a promise:
    ///
    /// - the hard limit of the embedded log must not be shorter than its retention;
    /// - a finished send request must outlive its command on the bus by two days (Kafka deletes
    ///   a segment up to a day — its `segment.ms` — after its newest record passed the
    ///   retention): a sender that read the command again (a group whose offsets Kafka expired)
    ///   and found no request would take it for a new one and send it a second time. The
    ///   request rows are also the idempotency window of the send API.
    pub fn validate(&self) -> Result<(), StoreError> {
        let invalid = |why: String| Err(StoreError::Config(format!("[retention] {why}")));
        if !(1..=10_000).contains(&self.batch_rows) {
            return invalid(format!(
                "batch_rows must be 1–10000, not {}",
                self.batch_rows
            ));
        }
        match (self.bus_log_days, self.bus_log_max_days) {
            (0, 0) | (_, 0) => {}
            (0, max) => {
                return invalid(format!(
                    "bus_log_max_days = {max} drops records that bus_log_days = 0 keeps forever; set both or neither"
                ))
            }
            (days, max) if max < days => {
                return invalid(format!(
                    "bus_log_max_days ({max}) is shorter than bus_log_days ({days})"
                ))
            }
            _ => {}
        }
        match (self.bus_log_days, self.requests_days) {
            (_, 0) => {}
            (0, requests) => {
                return invalid(format!(
                    "requests_days = {requests} with the bus log kept forever (bus_log_days = 0): a command read again after its request was purged would be sent twice; set requests_days = 0 too"
                ))
            }
            (bus, requests) if requests < bus + 2 => {
                return invalid(format!(
                    "requests_days ({requests}) must be at least bus_log_days + 2 ({}): a command read again after its request was purged would be sent twice",
                    bus + 2
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

fn days(days: u32) -> Option<chrono::Duration> {
    (days > 0).then(|| chrono::Duration::seconds(i64::from(days) * DAY))
}

/// Counts what a purge removed of a class (`wacrm_retention_purged_total{class}`).
pub fn record_purged(class: DataClass, rows: u64) {
    metrics::counter!("wacrm_retention_purged_total", "class" => class.name()).increment(rows);
}

/// Marks a purge pass that went through every class without an error or a stop
/// (`wacrm_retention_last_purge_timestamp_seconds`: alert when it stops moving).
pub fn record_pass_completed(at: DateTime<Utc>) {
    metrics::gauge!("wacrm_retention_last_purge_timestamp_seconds").set(at.timestamp() as f64);
}

/// How a purge goes through its batches.
pub struct Batching<'a> {
    /// Most rows per statement.
    pub rows: u32,
    /// Wait between two batches: other writers (the store projection on SQLite) get the write
    /// lock in between.
    pub pause: Duration,
    /// Asked before every batch; `true` stops the purge there (shutdown).
    pub stop: &'a (dyn Fn() -> bool + Sync),
}

/// What a purge of one class did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    /// Rows removed (or emptied, for message bodies and media references).
    pub rows: u64,
    /// `false` when [`Batching::stop`] stopped it before it was done.
    pub complete: bool,
}

/// Removes what is older than `cutoff` of a store class, batch after batch, until nothing is
/// left or `batching.stop` says so. The bus log is not the store's: asked for it, this
/// refuses.
pub async fn purge(
    db: &DatabaseConnection,
    class: DataClass,
    cutoff: DateTime<Utc>,
    batching: &Batching<'_>,
) -> Result<Purged, StoreError> {
    let now = Utc::now();
    let rows = i64::from(batching.rows.max(1));
    let (sql, values): (&str, Vec<Value>) = match class {
        DataClass::MessageBodies => (
            match db.get_database_backend() {
                DbBackend::Postgres => {
                    "UPDATE messages SET content = json_build_object('kind', kind, 'expired', true), \
                     preview = NULL, referral = NULL, body_expired_at = $1, \
                     media_expired_at = COALESCE(media_expired_at, $1) \
                     WHERE wamid IN (SELECT wamid FROM messages \
                     WHERE body_expired_at IS NULL AND \"timestamp\" < $2 ORDER BY \"timestamp\" LIMIT $3)"
                }
                _ => {
                    "UPDATE messages SET content = json_object('kind', kind, 'expired', json('true')), \
                     preview = NULL, referral = NULL, body_expired_at = $1, \
                     media_expired_at = COALESCE(media_expired_at, $1) \
                     WHERE wamid IN (SELECT wamid FROM messages \
                     WHERE body_expired_at IS NULL AND \"timestamp\" < $2 ORDER BY \"timestamp\" LIMIT $3)"
                }
            },
            vec![now.into(), cutoff.into(), rows.into()],
        ),
        DataClass::MediaReferences => (
            match db.get_database_backend() {
                DbBackend::Postgres => {
                    "UPDATE messages SET content = \
                     ((content::jsonb - 'id' - 'link' - 'filename' - 'sha256') \
                     || '{\"media_expired\": true}'::jsonb)::json, media_expired_at = $1 \
                     WHERE wamid IN (SELECT wamid FROM messages WHERE media_expired_at IS NULL \
                     AND kind IN ('image', 'audio', 'video', 'document', 'sticker') \
                     AND \"timestamp\" < $2 ORDER BY \"timestamp\" LIMIT $3)"
                }
                _ => {
                    "UPDATE messages SET content = json_set(\
                     json_remove(content, '$.id', '$.link', '$.filename', '$.sha256'), \
                     '$.media_expired', json('true')), media_expired_at = $1 \
                     WHERE wamid IN (SELECT wamid FROM messages WHERE media_expired_at IS NULL \
                     AND kind IN ('image', 'audio', 'video', 'document', 'sticker') \
                     AND \"timestamp\" < $2 ORDER BY \"timestamp\" LIMIT $3)"
                }
            },
            vec![now.into(), cutoff.into(), rows.into()],
        ),
        DataClass::Statuses => (
            "DELETE FROM message_statuses WHERE (wamid, state, \"timestamp\") IN \
             (SELECT wamid, state, \"timestamp\" FROM message_statuses \
             WHERE \"timestamp\" < $1 ORDER BY \"timestamp\" LIMIT $2)",
            vec![cutoff.into(), rows.into()],
        ),
        DataClass::DeadLetters => (
            "DELETE FROM dead_letters WHERE id IN \
             (SELECT id FROM dead_letters WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
            vec![cutoff.into(), rows.into()],
        ),
        DataClass::Requests => (
            "DELETE FROM outbound_requests WHERE request_id IN \
             (SELECT request_id FROM outbound_requests \
             WHERE state IN ('sent', 'failed', 'unknown') AND updated_at < $1 ORDER BY updated_at LIMIT $2)",
            vec![cutoff.into(), rows.into()],
        ),
        DataClass::PlatformErrors => (
            "DELETE FROM platform_errors WHERE event_id IN \
             (SELECT event_id FROM platform_errors WHERE received_at < $1 ORDER BY received_at LIMIT $2)",
            vec![cutoff.into(), rows.into()],
        ),
        DataClass::Audit => return purge_audit(db, cutoff).await,
        DataClass::BusLog => return Err(not_in_store(class)),
    };
    let statement = statement(db.get_database_backend(), sql, values);
    let mut purged = Purged::default();
    loop {
        if (batching.stop)() {
            return Ok(purged);
        }
        let changed = db.execute(statement.clone()).await?.rows_affected();
        purged.rows += changed;
        if changed < rows as u64 {
            purged.complete = true;
            return Ok(purged);
        }
        if !batching.pause.is_zero() {
            tokio::time::sleep(batching.pause).await;
        }
    }
}

/// How many rows of a store class a purge at `cutoff` would remove (or empty) now: the dry
/// run. Nothing changes.
pub async fn count(
    db: &DatabaseConnection,
    class: DataClass,
    cutoff: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let sql = match class {
        DataClass::MessageBodies => {
            "SELECT COUNT(*) AS n FROM messages \
             WHERE body_expired_at IS NULL AND \"timestamp\" < $1"
        }
        DataClass::MediaReferences => {
            "SELECT COUNT(*) AS n FROM messages WHERE media_expired_at IS NULL \
             AND kind IN ('image', 'audio', 'video', 'document', 'sticker') \
             AND \"timestamp\" < $1"
        }
        DataClass::Statuses => {
            "SELECT COUNT(*) AS n FROM message_statuses WHERE \"timestamp\" < $1"
        }
        DataClass::DeadLetters => "SELECT COUNT(*) AS n FROM dead_letters WHERE created_at < $1",
        DataClass::Requests => {
            "SELECT COUNT(*) AS n FROM outbound_requests \
             WHERE state IN ('sent', 'failed', 'unknown') AND updated_at < $1"
        }
        DataClass::PlatformErrors => {
            "SELECT COUNT(*) AS n FROM platform_errors WHERE received_at < $1"
        }
        DataClass::Audit => return count_audit(db, cutoff).await,
        DataClass::BusLog => return Err(not_in_store(class)),
    };
    count_rows(db, sql, vec![cutoff.into()]).await
}

async fn count_rows(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<Value>,
) -> Result<u64, StoreError> {
    let row = db
        .query_one(statement(db.get_database_backend(), sql, values))
        .await?;
    let n: i64 = match row {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or_default())
}

/// The audit log goes through [`crate::audit::purge_before`]: whole oldest entries, audited
/// first, keeping the newest [`crate::audit::PURGE_KEEPS_NEWEST`], the anchored head and what
/// is not yet relayed, so the chain still verifies from the oldest entry kept. It is bounded
/// (statements of 1,000 rows) but not stopped between its statements.
async fn purge_audit(db: &DatabaseConnection, cutoff: DateTime<Utc>) -> Result<Purged, StoreError> {
    let rows = crate::audit::purge_before(db, cutoff).await?;
    Ok(Purged {
        rows,
        complete: true,
    })
}

/// What [`purge_audit`] would delete: entries before the first one at or after the cutoff,
/// short of the newest [`crate::audit::PURGE_KEEPS_NEWEST`] and of what the relay has not
/// published. (The anchored head, which the purge also keeps, is normally among the newest.)
async fn count_audit(db: &DatabaseConnection, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
    let published = crate::audit::published_up_to(db).await?;
    let sql = "SELECT COUNT(*) AS n FROM audit_log WHERE at < $1 AND seq <= $2 \
               AND seq <= (SELECT MAX(seq) FROM audit_log) - $3 \
               AND seq < COALESCE((SELECT MIN(seq) FROM audit_log WHERE at >= $1), \
               (SELECT MAX(seq) FROM audit_log) + 1)";
    let values = vec![
        cutoff.into(),
        published.into(),
        crate::audit::PURGE_KEEPS_NEWEST.into(),
    ];
    count_rows(db, sql, values).await
}

fn not_in_store(class: DataClass) -> StoreError {
    StoreError::Invalid(format!(
        "{class} is not kept in the store (the bus trims its own log)"
    ))
}

/// A statement written with PostgreSQL's `$n` placeholders, for either database: SQLite takes
/// the same numbers as `?n`. Only a `$` followed by a digit is a placeholder (`'$.id'` is a
/// JSON path).
fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    if backend == DbBackend::Postgres {
        return Statement::from_sql_and_values(backend, sql, values);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Statement::from_sql_and_values(backend, out, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_keep_the_audit_log() {
        let config = RetentionConfig::default();
        config.validate().expect("defaults");
        assert_eq!(config.age(DataClass::Audit), None);
        assert_eq!(config.bus_log_ms(), 7 * 86_400_000);
        let now = Utc::now();
        assert_eq!(
            config.cutoff(DataClass::Statuses, now),
            Some(now - chrono::Duration::days(90))
        );
    }

    #[test]
    fn a_request_must_outlive_its_command_on_the_bus() {
        let mut config = RetentionConfig {
            bus_log_days: 14,
            requests_days: 15,
            ..RetentionConfig::default()
        };
        assert!(config.validate().is_err(), "15 < 14 + 2");
        config.requests_days = 16;
        config.validate().expect("16 = 14 + 2");
        config.requests_days = 0;
        config.validate().expect("kept forever");
        config.bus_log_days = 0;
        config.bus_log_max_days = 0;
        config.requests_days = 30;
        assert!(config.validate().is_err(), "a log kept forever");
    }

    #[test]
    fn the_hard_limit_is_not_shorter_than_the_retention() {
        let config = RetentionConfig {
            bus_log_days: 10,
            bus_log_max_days: 5,
            requests_days: 30,
            ..RetentionConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn placeholders_become_sqlites_and_json_paths_stay() {
        let s = statement(
            DbBackend::Sqlite,
            "SELECT json_remove(c, '$.id') WHERE a < $1 LIMIT $2",
            vec![],
        );
        assert_eq!(s.sql, "SELECT json_remove(c, '$.id') WHERE a < ?1 LIMIT ?2");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let parsed: Result<RetentionConfig, _> =
            serde_json::from_str(r#"{"message_body_days": 10}"#);
        assert!(parsed.is_err());
        let parsed: RetentionConfig =
            serde_json::from_str(r#"{"statuses_days": 10}"#).expect("one key");
        assert_eq!(parsed.statuses_days, 10);
        assert_eq!(parsed.message_bodies_days, 365);
    }
}
