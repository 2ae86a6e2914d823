//! wacrm's store: what the service knows, projected from the bus.
//!
//! - [`entities`] and [`migration`]: the schema, the same on SQLite (default) and PostgreSQL.
//! - [`projection`]: the consumer that maintains contacts, conversations, messages, statuses and
//!   dead letters from the bus, idempotently (replaying the bus twice gives the same store).
//! - [`queries`]: what the read API asks.
//! - [`keys`]: employees' API keys.
//! - [`outbound`]: send requests and their idempotency keys.

pub mod accounts;
pub mod audit;
pub mod consent;
pub mod console_sessions;
pub mod entities;
pub mod erasure;
pub mod export;
pub mod instances;
pub mod keys;
pub mod migration;
pub mod oauth_tokens;
pub mod outbound;
pub mod projection;
pub mod queries;
pub mod rate;
pub mod retention;
pub mod singleton;
pub mod sync;

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, Statement, TransactionTrait,
};

/// SQLite page cache per pooled store connection, in KiB (SQLite's default is 2,000): with the
/// default pool of 8 the store's caches stay under 8 MiB however large the database grows.
const SQLITE_CACHE_KIB: u32 = 1024;
use sea_orm_migration::MigratorTrait;
use serde::{Deserialize, Serialize};
use wacrm_core::ErrorClass;

pub use sea_orm::DatabaseConnection as Db;

/// `[store]`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Database URL: `sqlite://path?mode=rwc` or `postgres://user:pass@host/db`.
    pub url: String,
    /// Most pooled connections.
    pub max_connections: u32,
    /// How long the store projection lets events gather before it stores them as one batch,
    /// in milliseconds (see [`projection::Projection::runner_config`]). 0 stores each poll's
    /// events at once.
    pub projection_linger_ms: u64,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("projection_linger_ms", &self.projection_linger_ms)
            .finish()
    }
}

/// A database URL with its password replaced by `***`, for logs.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://data/wacrm.db?mode=rwc".into(),
            max_connections: 8,
            projection_linger_ms: 20,
        }
    }
}

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// The store projection's own SQLite connection failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Stored data is not what this version expects.
    #[error("stored data is invalid: {0}")]
    Invalid(String),
    /// Configuration is wrong (e.g. a directory cannot be created).
    #[error("store configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// What the caller should do. Database errors are treated as transient: a database that
    /// is down, locked or restarting recovers; bad data and configuration do not.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Db(_) | StoreError::Sqlite(_) => ErrorClass::Retry,
            StoreError::Invalid(_) => ErrorClass::DeadLetter,
            StoreError::Config(_) => ErrorClass::Fatal,
        }
    }

    /// Whether the database refused the data itself rather than failed: a data exception
    /// (SQLSTATE class 22 on PostgreSQL — a U+0000 in a text is 22021 —, SQLite's "too big"),
    /// or an integrity constraint (class 23; SQLite's constraint errors). Retrying the same
    /// data fails the same way, so a consumer isolates the record instead of retrying forever.
    pub fn is_data_error(&self) -> bool {
        match self {
            StoreError::Db(e) => db_err_is_data(e),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => matches!(
                f.code,
                rusqlite::ErrorCode::ConstraintViolation | rusqlite::ErrorCode::TooBig
            ),
            StoreError::Sqlite(
                rusqlite::Error::ToSqlConversionFailure(_)
                | rusqlite::Error::InvalidParameterCount(..),
            ) => true,
            _ => false,
        }
    }
}

fn db_err_is_data(e: &DbErr) -> bool {
    let sqlx_error = match e {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    let sea_orm::sqlx::Error::Database(database) = sqlx_error else {
        return false;
    };
    if !matches!(database.kind(), sea_orm::sqlx::error::ErrorKind::Other) {
        return true; // unique, foreign key, not null, check
    }
    let Some(code) = database.code() else {
        return false;
    };
    if code.len() == 5 {
        // PostgreSQL's SQLSTATE: classes 22 (data exception) and 23 (integrity constraint).
        return code.starts_with("22") || code.starts_with("23");
    }
    // SQLite's (extended) result code, at most four digits: the primary code is its low byte
    // (18 too big, 19 constraint, 20 datatype mismatch).
    matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(18..=20))
}

/// Connects to the configured database (creating the SQLite file and its directory if needed).
pub async fn connect(config: &StoreConfig) -> Result<DatabaseConnection, StoreError> {
    if let Some(path) = sqlite_path(&config.url) {
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    let mut options = ConnectOptions::new(config.url.clone());
    options
        .max_connections(config.max_connections.max(1))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        // Per connection, so every pooled connection gets them: WAL (readers never block the
        // writer), FULL (a commit survives power loss: the sync ledger's `pending` rows and the
        // audit chain rely on it; writes are batched, so it costs one fsync per batch), and a
        // bounded page cache, so memory does not grow with the database; `secure_delete`, so
        // erased and expired rows do not linger in the file's free space (pages are zeroed when
        // freed or rebuilt: CPU only, the pages are written anyway).
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
                .pragma("secure_delete", "ON")
        });
    Ok(Database::connect(options).await?)
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// Begins a transaction that will write, holding the write lock from its first statement.
///
/// SQLite starts transactions deferred: one that reads first takes a snapshot, and when it then
/// writes after another connection committed, SQLite refuses at once ("database is locked",
/// `SQLITE_BUSY_SNAPSHOT`, which the busy timeout does not wait out) and the whole batch has to
/// be retried. A write as the first statement (one that changes nothing) takes the lock up
/// front instead, waiting for other writers within the busy timeout. PostgreSQL locks rows, not
/// the database, and needs nothing.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let txn = db.begin().await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        let table = sea_orm::EntityName::table_name(&entities::contact::Entity);
        txn.execute_unprepared(&format!("UPDATE {table} SET id = id WHERE 0"))
            .await?;
    }
    Ok(txn)
}

/// Most rows (or keys) one multi-row statement names; a power of two (see
/// [`fixed_shape_chunks`]).
pub(crate) const MAX_ROWS_PER_STATEMENT: usize = 128;

/// Splits `items` into runs of 128, 64, …, 1 for multi-row statements. Each pooled connection
/// keeps a prepared statement per distinct SQL text: runs of any length left it hundreds of
/// large ones (RSS grew by 40 MiB in a minute under load); runs of these lengths make a few per
/// statement kind.
pub(crate) fn fixed_shape_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let len = items.len().min(MAX_ROWS_PER_STATEMENT);
        let run = 1usize << (usize::BITS - 1 - len.leading_zeros());
        let (head, rest) = items.split_at(run);
        items = rest;
        Some(head)
    })
}

/// The PostgreSQL advisory lock that serialises migrations ("wacrm-mi" as a number).
const MIGRATION_LOCK: i64 = 0x7761_6372_6d2d_6d69;

/// Applies every pending migration. On PostgreSQL, instances that start together take turns:
/// the migrations run in one transaction holding an advisory lock, so one instance applies
/// them while the others wait for it and then find nothing to do (without it they race to
/// create the same tables and all but one fail to start). A crash mid-way rolls the whole
/// run back. SQLite is one process's file.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), StoreError> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let txn = db.begin().await?;
            txn.execute(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [MIGRATION_LOCK.into()],
            ))
            .await?;
            migration::Migrator::up(&txn, None).await?;
            txn.commit().await?;
        }
        _ => migration::Migrator::up(db, None).await?,
    }
    Ok(())
}

/// Whether the database answers (for readiness checks).
pub async fn ping(db: &DatabaseConnection) -> Result<(), StoreError> {
    db.ping().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_statements_come_in_a_few_fixed_lengths_and_cover_everything() {
        for n in 0..600 {
            let items: Vec<usize> = (0..n).collect();
            let runs: Vec<&[usize]> = fixed_shape_chunks(&items).collect();
            assert!(runs
                .iter()
                .all(|r| r.len().is_power_of_two() && r.len() <= MAX_ROWS_PER_STATEMENT));
            assert_eq!(runs.concat(), items);
        }
    }

    #[test]
    fn passwords_never_reach_debug_output() {
        let c = StoreConfig {
            url: "postgres://wacrm:hunter2@db:5432/wacrm".into(),
            max_connections: 1,
            ..StoreConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("postgres://wacrm:***@db:5432/wacrm"));
    }

    #[test]
    fn sqlite_paths_are_found() {
        assert_eq!(
            sqlite_path("sqlite://data/wacrm.db?mode=rwc"),
            Some("data/wacrm.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x@y/z"), None);
    }
}
