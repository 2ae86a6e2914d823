//! The projection's statements on a SQLite connection of its own.
//!
//! Through sqlx, every statement is a hand-off to the connection's worker thread and every row
//! one back; a batch of a few hundred events made a few hundred of them, each a context switch
//! on both threads. This connection runs the whole batch on the projection's thread. It writes
//! the same text sqlx writes (RFC 3339 times with SQLite's `AutoSi` fractions, JSON as text), so
//! what it stores reads back through sea-orm unchanged, and it opens the file with the pool's
//! settings (WAL, `synchronous=FULL`, a bounded page cache, a busy timeout).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use wacrm_core::contact::IdentityKey;

use super::ops::{Ops, StoredStatus};
use crate::entities::{
    contact, contact_identity, conversation, dead_letter, message, message_status, platform_error,
    preference,
};
use crate::queries::STATUS_ONLY_KIND;
use crate::StoreError;

/// Statements between two yields of the projection's thread (about a quarter of a
/// millisecond of work). Without pauses a 500-event batch held a core for about 6 ms while
/// webhook handlers waited for it (p99 at 5,000 webhooks/s: 7.8 – 9.3 ms instead of 5.5 – 6.9);
/// a yield lets a waiting handler run. Every 8 and every 48 measured worse.
const YIELD_EVERY: u32 = 24;

/// Distinct statements the projection prepares (rusqlite keeps 16 by default).
const STATEMENT_CACHE: usize = 64;

/// A SQLite store file, opened for the projection.
pub(crate) struct LiteStore {
    /// Statements run since this thread last yielded (see [`LiteStore::pace`]).
    since_yield: std::sync::atomic::AtomicU32,
    /// Locked per statement, never across an await; a batch runs on one thread anyway.
    conn: Mutex<Connection>,
}

impl LiteStore {
    /// Opens the store file at `path` with the pool's settings.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON; PRAGMA cache_size=-{};",
            crate::SQLITE_CACHE_KIB
        ))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(LiteStore {
            since_yield: std::sync::atomic::AtomicU32::new(0),
            conn: Mutex::new(conn),
        })
    }

    /// Counts a statement, and every [`YIELD_EVERY`] lets the scheduler run another thread.
    fn pace(&self) {
        use std::sync::atomic::Ordering;
        if self.since_yield.fetch_add(1, Ordering::Relaxed) + 1 >= YIELD_EVERY {
            self.since_yield.store(0, Ordering::Relaxed);
            std::thread::yield_now();
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-statement leaves at worst an open transaction, which `begin` rolls back.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Begins a transaction holding the write lock from the start (see [`crate::begin_write`]),
    /// first rolling back one a failed batch left open.
    pub(crate) fn begin(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK")?;
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Commits the transaction [`LiteStore::begin`] opened.
    pub(crate) fn commit(&self) -> Result<(), StoreError> {
        self.conn().execute_batch("COMMIT")?;
        Ok(())
    }

    /// Rolls back the open transaction, if any.
    pub(crate) fn rollback(&self) {
        let conn = self.conn();
        if !conn.is_autocommit() {
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %e, "store projection: rollback failed");
            }
        }
    }
}

// Reading goes through rusqlite's own conversions (its `chrono` and `serde_json` features
// read what sqlx writes); writing does not, because rusqlite writes times with a space
// instead of `T` and JSON numbers as numbers, where sqlx writes text.

/// A time as sqlx writes it to SQLite.
fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn opt_time(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.as_ref().map(time)
}

fn json(v: &serde_json::Value) -> String {
    v.to_string()
}

fn opt_json(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(json)
}

fn contact_row(row: &Row<'_>) -> rusqlite::Result<contact::Model> {
    Ok(contact::Model {
        id: row.get(0)?,
        display_name: row.get(1)?,
        username: row.get(2)?,
        merged_into: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    })
}

fn conversation_row(row: &Row<'_>) -> rusqlite::Result<conversation::Model> {
    Ok(conversation::Model {
        phone_number_id: row.get(0)?,
        contact_id: row.get(1)?,
        last_message_at: row.get(2)?,
        last_inbound_at: row.get(3)?,
    })
}

fn preference_row(row: &Row<'_>) -> rusqlite::Result<preference::Model> {
    Ok(preference::Model {
        contact_id: row.get(0)?,
        phone_number_id: row.get(1)?,
        category: row.get(2)?,
        value: row.get(3)?,
        updated_at: row.get(4)?,
    })
}

const CONTACT_COLUMNS: &str = "id, display_name, username, merged_into, created_at, updated_at";
const CONVERSATION_COLUMNS: &str = "phone_number_id, contact_id, last_message_at, last_inbound_at";
const PREFERENCE_COLUMNS: &str = "contact_id, phone_number_id, category, value, updated_at";

#[async_trait]
impl Ops for LiteStore {
    async fn identity_owners(
        &self,
        keys: &[IdentityKey],
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT contact_id FROM contact_identities WHERE kind = ?1 AND value = ?2",
        )?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            self.pace();
            let owner: Option<String> = stmt
                .query_row(params![key.kind(), key.value()], |r| r.get(0))
                .optional()?;
            if let Some(owner) = owner {
                out.push((key.kind().to_owned(), key.value().to_owned(), owner));
            }
        }
        Ok(out)
    }

    async fn contacts(&self, ids: &[String]) -> Result<Vec<contact::Model>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = ?1"
        ))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            self.pace();
            if let Some(c) = stmt.query_row([id], contact_row).optional()? {
                out.push(c);
            }
        }
        Ok(out)
    }

    async fn insert_contact(&self, row: contact::Model) -> Result<u64, StoreError> {
        let conn = self.conn();
        let inserted = conn
            .prepare_cached(&format!(
                "INSERT INTO contacts ({CONTACT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO NOTHING"
            ))?
            .execute(params![
                row.id,
                row.display_name,
                row.username,
                row.merged_into,
                time(&row.created_at),
                time(&row.updated_at),
            ])?;
        Ok(inserted as u64)
    }

    async fn insert_identity(&self, row: contact_identity::Model) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO contact_identities (kind, value, contact_id, created_at)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (kind, value) DO NOTHING",
            )?
            .execute(params![
                row.kind,
                row.value,
                row.contact_id,
                time(&row.created_at)
            ])?;
        Ok(())
    }

    async fn update_profile(
        &self,
        contact_id: &str,
        name: Option<&str>,
        username: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // One statement for every combination: an absent report keeps the stored value and
        // does not count as a change.
        self.conn()
            .prepare_cached(
                "UPDATE contacts SET
                     updated_at = ?2,
                     display_name = COALESCE(?3, display_name),
                     username = COALESCE(?4, username)
                 WHERE id = ?1 AND updated_at <= ?2
                   AND ((?3 IS NOT NULL AND (display_name IS NULL OR display_name != ?3))
                     OR (?4 IS NOT NULL AND (username IS NULL OR username != ?4)))",
            )?
            .execute(params![contact_id, time(&at), name, username])?;
        Ok(())
    }

    async fn conversations(
        &self,
        keys: &[&(String, String)],
    ) -> Result<Vec<conversation::Model>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations
             WHERE phone_number_id = ?1 AND contact_id = ?2"
        ))?;
        let mut out = Vec::with_capacity(keys.len());
        for (phone_number_id, contact_id) in keys {
            self.pace();
            if let Some(c) = stmt
                .query_row([phone_number_id, contact_id], conversation_row)
                .optional()?
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    async fn upsert_conversations(&self, rows: &[conversation::Model]) -> Result<(), StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (phone_number_id, contact_id) DO UPDATE SET
                 last_message_at = excluded.last_message_at,
                 last_inbound_at = excluded.last_inbound_at"
        ))?;
        for row in rows {
            self.pace();
            stmt.execute(params![
                row.phone_number_id,
                row.contact_id,
                opt_time(&row.last_message_at),
                opt_time(&row.last_inbound_at),
            ])?;
        }
        Ok(())
    }

    async fn stored_wamids(&self, wamids: &[&str]) -> Result<HashMap<String, bool>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT kind FROM messages WHERE wamid = ?1")?;
        let mut out = HashMap::new();
        for wamid in wamids {
            self.pace();
            let kind: Option<String> = stmt.query_row([wamid], |r| r.get(0)).optional()?;
            if let Some(kind) = kind {
                out.insert((*wamid).to_owned(), kind == STATUS_ONLY_KIND);
            }
        }
        Ok(out)
    }

    async fn delete_placeholders(&self, wamids: &[&str]) -> Result<(), StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("DELETE FROM messages WHERE wamid = ?1 AND kind = ?2")?;
        for wamid in wamids {
            self.pace();
            stmt.execute(params![wamid, STATUS_ONLY_KIND])?;
        }
        Ok(())
    }

    async fn date_placeholder(&self, wamid: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        // Compared as the text both writers store (see `time`), as sea-orm's filter does.
        self.conn()
            .prepare_cached(
                "UPDATE messages SET timestamp = ?2
                 WHERE wamid = ?1 AND kind = ?3 AND timestamp > ?2",
            )?
            .execute(params![wamid, time(&at), STATUS_ONLY_KIND])?;
        Ok(())
    }

    async fn insert_messages(&self, rows: &[&message::Model]) -> Result<(), StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "INSERT INTO messages (wamid, event_id, phone_number_id, contact_id, direction, kind,
                 timestamp, preview, content, context, referral, status, status_error, sent_by,
                 stored_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT (wamid) DO NOTHING",
        )?;
        for m in rows {
            self.pace();
            stmt.execute(params![
                m.wamid,
                m.event_id,
                m.phone_number_id,
                m.contact_id,
                m.direction,
                m.kind,
                time(&m.timestamp),
                m.preview,
                json(&m.content),
                opt_json(&m.context),
                opt_json(&m.referral),
                m.status,
                opt_json(&m.status_error),
                opt_json(&m.sent_by),
                time(&m.stored_at),
            ])?;
        }
        Ok(())
    }

    async fn message_status(&self, wamid: &str) -> Result<Option<StoredStatus>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT status, status_error, kind FROM messages WHERE wamid = ?1")?
            .query_row([wamid], |r| {
                let kind: String = r.get(2)?;
                Ok((r.get(0)?, r.get(1)?, kind == STATUS_ONLY_KIND))
            })
            .optional()?)
    }

    async fn write_status(
        &self,
        wamid: &str,
        state: &str,
        error: Option<serde_json::Value>,
    ) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("UPDATE messages SET status = ?2, status_error = ?3 WHERE wamid = ?1")?
            .execute(params![wamid, state, opt_json(&error)])?;
        Ok(())
    }

    async fn status_histories(
        &self,
        wamids: &[String],
    ) -> Result<Vec<message_status::Model>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT wamid, state, timestamp, phone_number_id, errors, pricing, conversation
             FROM message_statuses WHERE wamid = ?1",
        )?;
        let mut out = Vec::new();
        for wamid in wamids {
            let rows = stmt.query_map([wamid], |r| {
                Ok(message_status::Model {
                    wamid: r.get(0)?,
                    state: r.get(1)?,
                    timestamp: r.get(2)?,
                    phone_number_id: r.get(3)?,
                    errors: r.get(4)?,
                    pricing: r.get(5)?,
                    conversation: r.get(6)?,
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    async fn insert_status(&self, row: message_status::Model) -> Result<u64, StoreError> {
        let inserted = self
            .conn()
            .prepare_cached(
                "INSERT INTO message_statuses (wamid, state, timestamp, phone_number_id, errors,
                     pricing, conversation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (wamid, state, timestamp) DO NOTHING",
            )?
            .execute(params![
                row.wamid,
                row.state,
                time(&row.timestamp),
                row.phone_number_id,
                opt_json(&row.errors),
                opt_json(&row.pricing),
                opt_json(&row.conversation),
            ])?;
        Ok(inserted as u64)
    }

    async fn preference(
        &self,
        contact_id: &str,
        phone_number_id: &str,
        category: &str,
    ) -> Result<Option<preference::Model>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {PREFERENCE_COLUMNS} FROM contact_preferences
                 WHERE contact_id = ?1 AND phone_number_id = ?2 AND category = ?3"
            ))?
            .query_row([contact_id, phone_number_id, category], preference_row)
            .optional()?)
    }

    async fn put_preference(&self, row: preference::Model, exists: bool) -> Result<(), StoreError> {
        let sql = if exists {
            "UPDATE contact_preferences SET value = ?4, updated_at = ?5
             WHERE contact_id = ?1 AND phone_number_id = ?2 AND category = ?3"
        } else {
            "INSERT INTO contact_preferences (contact_id, phone_number_id, category, value,
                 updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)"
        };
        self.conn().prepare_cached(sql)?.execute(params![
            row.contact_id,
            row.phone_number_id,
            row.category,
            row.value,
            time(&row.updated_at),
        ])?;
        Ok(())
    }

    async fn insert_consent(&self, row: crate::consent::ConsentRow) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO consent_records (id, contact_id, purpose, granted, channel, source,
                     recorded_by, key_id, phone_number_id, at, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                row.id,
                row.contact_id,
                row.purpose,
                row.granted,
                row.channel,
                row.source,
                row.recorded_by,
                row.key_id,
                row.phone_number_id,
                time(&row.at),
                time(&row.recorded_at),
            ])?;
        Ok(())
    }

    async fn insert_platform_error(&self, row: platform_error::Model) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO platform_errors (event_id, phone_number_id, errors, received_at)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (event_id) DO NOTHING",
            )?
            .execute(params![
                row.event_id,
                row.phone_number_id,
                json(&row.errors),
                time(&row.received_at),
            ])?;
        Ok(())
    }

    async fn insert_dead_letter(&self, row: dead_letter::Model) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO dead_letters (id, source, error_class, reason, headers, payload,
                     bus_offset, created_at, resolved_at, attempts, last_error, phone_number_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                row.id,
                row.source,
                row.error_class,
                row.reason,
                json(&row.headers),
                row.payload,
                row.bus_offset,
                time(&row.created_at),
                opt_time(&row.resolved_at),
                row.attempts,
                row.last_error,
                row.phone_number_id,
            ])?;
        Ok(())
    }

    async fn merge_contact(
        &self,
        from: &str,
        into: &str,
    ) -> Result<(Vec<conversation::Model>, Vec<preference::Model>), StoreError> {
        let conn = self.conn();
        conn.prepare_cached("UPDATE contact_identities SET contact_id = ?2 WHERE contact_id = ?1")?
            .execute([from, into])?;
        conn.prepare_cached("UPDATE messages SET contact_id = ?2 WHERE contact_id = ?1")?
            .execute([from, into])?;
        let conversations = conn
            .prepare_cached(&format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE contact_id = ?1"
            ))?
            .query_map([from], conversation_row)?
            .collect::<Result<Vec<_>, _>>()?;
        conn.prepare_cached("DELETE FROM conversations WHERE contact_id = ?1")?
            .execute([from])?;
        let preferences = conn
            .prepare_cached(&format!(
                "SELECT {PREFERENCE_COLUMNS} FROM contact_preferences WHERE contact_id = ?1"
            ))?
            .query_map([from], preference_row)?
            .collect::<Result<Vec<_>, _>>()?;
        conn.prepare_cached("DELETE FROM contact_preferences WHERE contact_id = ?1")?
            .execute([from])?;
        conn.prepare_cached("UPDATE contacts SET merged_into = ?2 WHERE id = ?1")?
            .execute([from, into])?;
        Ok((conversations, preferences))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(store: &LiteStore) -> i64 {
        store
            .conn()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    /// A batch abandoned midway (a panic between statements) leaves its transaction open; the
    /// next batch must not commit its writes along with its own.
    #[test]
    fn begin_rolls_back_a_transaction_left_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = LiteStore::open(&dir.path().join("store.db")).unwrap();
        store.conn().execute_batch("CREATE TABLE t (x)").unwrap();
        store.begin().unwrap();
        store
            .conn()
            .execute("INSERT INTO t VALUES (1)", [])
            .unwrap();
        // Abandoned: neither committed nor rolled back.
        store.begin().unwrap();
        store
            .conn()
            .execute("INSERT INTO t VALUES (2)", [])
            .unwrap();
        store.commit().unwrap();
        assert_eq!(count(&store), 1);
        store.begin().unwrap();
        store
            .conn()
            .execute("INSERT INTO t VALUES (3)", [])
            .unwrap();
        store.rollback();
        assert_eq!(count(&store), 1);
    }
}
