//! The refresh-token store that instances sharing one PostgreSQL store share
//! ([`wacrm_crm::oauth::RefreshTokenStore`]), for CRMs that rotate the refresh token on every
//! use (RD Station CRM, Kommo with OAuth).
//!
//! A chain is one row of `oauth_tokens`, named by the fingerprint of the configured refresh
//! token it descends from. A turn ([`RefreshTokenStore::rotate`]) is one transaction: the row is
//! created if missing and locked (`SELECT … FOR UPDATE`), so the turns of every instance at one
//! chain run one after another; the instance whose turn it is either finds an access token that
//! another one fetched since its own went stale and uses it, or exchanges the refresh token the
//! row holds and writes the answer before the commit releases the row. N instances therefore
//! make one exchange per expiry between them, and none sends a retired token.
//!
//! When an access token is due is counted on the database's clock (the row keeps the renewal
//! time; a turn reads how long is left), so no instance's clock takes part.
//!
//! A turn that ends half-way — the process dies, the connection drops — rolls back: the row
//! keeps the token it held, and the lock is released for the next instance. If the CRM had
//! already answered (and retired that token), the next exchange is refused (`invalid_grant`,
//! fatal) and the connection needs a new authorisation; the SDK runs a turn to its end when
//! only the request that started it is dropped, so this takes a crash between the CRM's answer
//! and the commit. A turn waits at most [`HOLD_WAIT`] for the one before it.
//!
//! The tokens are secrets kept as they are (the CRM needs them back), like the pseudonym
//! secrets in `crm_secrets`: never logged, never in an error text; the database and its backups
//! must be as private as the CRM credentials.

use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
    TransactionTrait, Value,
};
use wacrm_crm::oauth::{fingerprint, RefreshTokenStore, Renew, Renewal, SavedAccess, SavedTokens};
use wacrm_crm::CrmError;

/// The longest a turn waits for the turn before it (another instance's exchange, bounded by
/// its CRM request timeout) before giving up with a transient error.
pub const HOLD_WAIT: Duration = Duration::from_secs(60);

/// The database's clock in microseconds since the epoch.
const NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

const CLAIM: &str = "INSERT INTO oauth_tokens (configured_sha256, updated_at) \
    VALUES ($1, now()) ON CONFLICT (configured_sha256) DO NOTHING";

const LOCK: &str = "SELECT 1 AS held FROM oauth_tokens WHERE configured_sha256 = $1 FOR UPDATE";

/// A [`RefreshTokenStore`] on PostgreSQL, shared by every instance of the store.
#[derive(Clone)]
pub struct PgTokenStore {
    db: DatabaseConnection,
}

impl std::fmt::Debug for PgTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgTokenStore")
    }
}

impl PgTokenStore {
    /// The token store of a PostgreSQL store; `None` for SQLite, whose store belongs to one
    /// process (its connections keep their chains in their token files).
    pub fn new(db: &DatabaseConnection) -> Option<PgTokenStore> {
        (db.get_database_backend() == DbBackend::Postgres).then(|| PgTokenStore { db: db.clone() })
    }

    /// Begins a turn at `chain`: its row, created if missing, locked until the transaction
    /// ends.
    async fn hold(&self, chain: &str) -> Result<DatabaseTransaction, DbErr> {
        let txn = self.db.begin().await?;
        txn.execute_unprepared(&format!(
            "SET LOCAL lock_timeout = '{}ms'",
            HOLD_WAIT.as_millis()
        ))
        .await?;
        // The row exists before it is locked: two first turns at a new chain would otherwise
        // both find nothing to lock. A second claim waits for the first one's commit.
        txn.execute(statement(CLAIM, [chain.into()])).await?;
        txn.query_one(statement(LOCK, [chain.into()])).await?;
        Ok(txn)
    }
}

fn statement(sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

fn unavailable(e: DbErr) -> CrmError {
    // Texts of database errors carry no bound values: no token reaches the message.
    CrmError::Transient(format!("the shared refresh-token store: {e}"))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// What the row holds, read under the turn's lock.
async fn read(txn: &DatabaseTransaction, chain: &str) -> Result<Option<SavedTokens>, DbErr> {
    let sql = format!(
        "SELECT refresh_token, access_token, instance_url, \
         GREATEST(renew_at_us - {NOW_US}, 0) AS renew_in_us \
         FROM oauth_tokens WHERE configured_sha256 = $1"
    );
    let Some(row) = txn.query_one(statement(&sql, [chain.into()])).await? else {
        return Ok(None);
    };
    let Some(refresh_token) = row.try_get::<Option<String>>("", "refresh_token")? else {
        return Ok(None);
    };
    let access_token: Option<String> = row.try_get("", "access_token")?;
    let instance_url: Option<String> = row.try_get("", "instance_url")?;
    let renew_in_us: Option<i64> = row.try_get("", "renew_in_us")?;
    let access = access_token.map(|access_token| SavedAccess {
        access_token,
        instance_url,
        renew_in: Duration::from_micros(
            renew_in_us
                .and_then(|us| u64::try_from(us).ok())
                .unwrap_or(0),
        ),
    });
    Ok(Some(SavedTokens {
        refresh_token,
        access,
    }))
}

/// Writes a renewal's tokens into the locked row.
async fn write(txn: &DatabaseTransaction, chain: &str, tokens: &SavedTokens) -> Result<(), DbErr> {
    let sql = format!(
        "UPDATE oauth_tokens SET refresh_token = $2, access_token = $3, instance_url = $4, \
         renew_at_us = CASE WHEN $5::bigint IS NULL THEN NULL ELSE {NOW_US} + $5::bigint END, \
         updated_at = now() \
         WHERE configured_sha256 = $1"
    );
    let access = tokens.access.as_ref();
    txn.execute(statement(
        &sql,
        [
            chain.into(),
            tokens.refresh_token.clone().into(),
            access.map(|a| a.access_token.clone()).into(),
            access.and_then(|a| a.instance_url.clone()).into(),
            access.map(|a| micros(a.renew_in)).into(),
        ],
    ))
    .await?;
    Ok(())
}

#[async_trait]
impl RefreshTokenStore for PgTokenStore {
    async fn rotate(
        &self,
        configured: &str,
        renew: Renew<'_>,
    ) -> Result<Option<SavedTokens>, CrmError> {
        let chain = fingerprint(configured);
        let txn = self.hold(&chain).await.map_err(|e| {
            if lock_timed_out(&e) {
                CrmError::Transient(format!(
                    "another instance's OAuth token renewal took longer than {} s",
                    HOLD_WAIT.as_secs()
                ))
            } else {
                unavailable(e)
            }
        })?;
        let held = read(&txn, &chain).await.map_err(unavailable)?;
        // Dropping the transaction (an error of `renew`, or this future dropped) rolls it back
        // and releases the row.
        match renew(held.clone()).await? {
            Renewal::Unchanged => {
                txn.commit().await.map_err(unavailable)?;
                Ok(held)
            }
            Renewal::Renewed(tokens) => {
                write(&txn, &chain, &tokens).await.map_err(unavailable)?;
                txn.commit().await.map_err(unavailable)?;
                Ok(Some(tokens))
            }
        }
    }

    async fn current(&self, configured: &str) -> Result<Option<String>, CrmError> {
        let row = self
            .db
            .query_one(statement(
                "SELECT refresh_token FROM oauth_tokens WHERE configured_sha256 = $1",
                [fingerprint(configured).into()],
            ))
            .await
            .map_err(unavailable)?;
        match row {
            Some(row) => row
                .try_get::<Option<String>>("", "refresh_token")
                .map_err(unavailable),
            None => Ok(None),
        }
    }
}

/// Whether the database gave up waiting for the row (SQLSTATE 55P03, `lock_not_available`).
fn lock_timed_out(e: &DbErr) -> bool {
    let sqlx_error = match e {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    matches!(sqlx_error, sea_orm::sqlx::Error::Database(d) if d.code().as_deref() == Some("55P03"))
}
