//! Work that one instance at a time must do (the audit relay), when several instances share
//! one PostgreSQL store.
//!
//! The work runs while a transaction holds a PostgreSQL advisory lock, taken with
//! `pg_try_advisory_xact_lock`: an instance that finds it held skips this turn instead of
//! waiting, and whoever comes next after the holder finishes, or dies (its connection closes
//! and the lock with it), takes it. On SQLite the store is one process's file: the work just
//! runs.

use std::future::Future;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use crate::StoreError;

/// The advisory lock of the audit relay ("wacrm-au" as a number).
pub const AUDIT_RELAY: i64 = 0x7761_6372_6d2d_6175;
/// The advisory lock of the erasure worker ("wacrm-er").
pub const ERASURE_WORKER: i64 = 0x7761_6372_6d2d_6572;

/// Runs `work` if no other instance is doing the work `lock` stands for; `None` when one is.
pub async fn exclusive<T, F, Fut>(
    db: &DatabaseConnection,
    lock: i64,
    work: F,
) -> Result<Option<T>, StoreError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    if db.get_database_backend() != DbBackend::Postgres {
        return work().await.map(Some);
    }
    let txn = db.begin().await?;
    let row = txn
        .query_one(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_try_advisory_xact_lock($1) AS taken",
            [lock.into()],
        ))
        .await?;
    let taken = match row {
        Some(row) => row.try_get::<bool>("", "taken")?,
        None => false,
    };
    if !taken {
        txn.rollback().await?;
        return Ok(None);
    }
    // The work uses the pool's other connections; this transaction only holds the lock, and
    // ending it (however the work went) lets the lock go.
    let outcome = work().await;
    txn.commit().await?;
    outcome.map(Some)
}
