//! Console sessions, kept server-side: the browser holds a random 256-bit token in a cookie; the
//! store keeps its SHA-256 (a stolen database holds no usable session), the account, whether the
//! second factor was passed, the CSRF token of its forms, and its times.
//!
//! A session is good until it has been idle for the idle timeout or has lived for the absolute
//! one, whichever comes first; logging out deletes it. A session that has not passed the
//! second factor grants nothing but the second-factor step.

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};

use crate::entities::console_session;
use crate::StoreError;

/// A session as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The SHA-256 (hex) of the cookie's token.
    pub id: String,
    /// The account.
    pub account_id: String,
    /// Whether the second factor was passed.
    pub mfa_passed: bool,
    /// The CSRF token every form of the session carries.
    pub csrf: String,
    /// A TOTP secret shown for enrolment and not confirmed yet.
    pub pending_totp_secret: Option<String>,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it ends at the latest.
    pub expires_at: DateTime<Utc>,
}

/// A random 256-bit token, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn id_of(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Starts a session for `account_id` (second factor not passed yet). Returns the cookie's
/// token, shown to nobody else. Sessions past their absolute end are removed first: one nobody
/// comes back to is never found again, so this is what keeps the table to the sessions of the
/// last `absolute` hours.
pub async fn start(
    db: &DatabaseConnection,
    account_id: &str,
    now: DateTime<Utc>,
    absolute: Duration,
) -> Result<String, StoreError> {
    console_session::Entity::delete_many()
        .filter(console_session::Column::ExpiresAt.lte(now))
        .exec(db)
        .await?;
    let token = random_token();
    console_session::Entity::insert(console_session::ActiveModel {
        id: Set(id_of(&token)),
        account_id: Set(account_id.to_owned()),
        mfa_passed: Set(false),
        csrf: Set(random_token()),
        pending_totp_secret: Set(None),
        created_at: Set(now),
        last_seen_at: Set(now),
        expires_at: Set(now + absolute),
    })
    .exec_without_returning(db)
    .await?;
    Ok(token)
}

/// The session of `token`, if it is still good (not idle for `idle`, not past its absolute
/// end); marks it seen. An expired session is deleted.
pub async fn find(
    db: &DatabaseConnection,
    token: &str,
    now: DateTime<Utc>,
    idle: Duration,
) -> Result<Option<Session>, StoreError> {
    if token.len() != 64 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let id = id_of(token);
    let Some(row) = console_session::Entity::find_by_id(id.clone())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if row.expires_at <= now || row.last_seen_at + idle <= now {
        console_session::Entity::delete_by_id(id).exec(db).await?;
        return Ok(None);
    }
    console_session::Entity::update_many()
        .col_expr(console_session::Column::LastSeenAt, Expr::value(now))
        .filter(console_session::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(Some(Session {
        id: row.id,
        account_id: row.account_id,
        mfa_passed: row.mfa_passed,
        csrf: row.csrf,
        pending_totp_secret: row.pending_totp_secret,
        created_at: row.created_at,
        expires_at: row.expires_at,
    }))
}

/// Remembers the TOTP secret shown for enrolment (until it is confirmed).
pub async fn set_pending_secret(
    db: &DatabaseConnection,
    session: &Session,
    secret: &str,
) -> Result<(), StoreError> {
    console_session::Entity::update_many()
        .col_expr(
            console_session::Column::PendingTotpSecret,
            Expr::value(Some(secret.to_owned())),
        )
        .filter(console_session::Column::Id.eq(session.id.clone()))
        .exec(db)
        .await?;
    Ok(())
}

/// The second factor was passed: the session is replaced by a new one (new token, new CSRF
/// token) that grants the account's access, so a token seen before the second factor (a
/// fixated or sniffed one) is worth nothing after it. Returns the new token.
pub async fn pass_mfa(
    db: &DatabaseConnection,
    session: &Session,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let token = random_token();
    console_session::Entity::insert(console_session::ActiveModel {
        id: Set(id_of(&token)),
        account_id: Set(session.account_id.clone()),
        mfa_passed: Set(true),
        csrf: Set(random_token()),
        pending_totp_secret: Set(None),
        created_at: Set(session.created_at),
        last_seen_at: Set(now),
        expires_at: Set(session.expires_at),
    })
    .exec_without_returning(db)
    .await?;
    console_session::Entity::delete_by_id(session.id.clone())
        .exec(db)
        .await?;
    Ok(token)
}

/// Ends one session (logout).
pub async fn end(db: &DatabaseConnection, session: &Session) -> Result<(), StoreError> {
    console_session::Entity::delete_by_id(session.id.clone())
        .exec(db)
        .await?;
    Ok(())
}

/// Ends every session of an account (disabled, MFA reset). The number ended.
pub async fn end_all_for(db: &DatabaseConnection, account_id: &str) -> Result<u64, StoreError> {
    Ok(console_session::Entity::delete_many()
        .filter(console_session::Column::AccountId.eq(account_id))
        .exec(db)
        .await?
        .rows_affected)
}
