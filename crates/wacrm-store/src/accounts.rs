//! The console's people: accounts with a password, mandatory TOTP (RFC 6238), one-time recovery
//! codes, a role with its scopes and business-number limits like an API key's, and lockout.
//!
//! - Passwords are hashed with argon2id (the crate's defaults: 19 MiB, 2 passes), in PHC form, so
//!   parameters can be raised later without invalidating old hashes.
//! - TOTP: SHA-1, 6 digits, 30 s steps, one step of clock skew either way, as authenticator apps
//!   expect. A code is accepted once: the step it matched is kept and a code of that step or an
//!   earlier one is refused (a replayed code).
//! - Recovery codes: ten random codes of 50 bits, shown once at enrolment; only their SHA-256 is
//!   kept (high-entropy secrets, as API keys), each removed when used.
//! - Lockout: five failures in a row (a wrong password or a wrong code) lock the account for a
//!   minute, doubling with each further failure up to an hour. While locked even the right
//!   password is refused, so guessing gains nothing. A successful sign-in (password and code)
//!   clears the count; a right password alone does not.
//!
//! The TOTP secret is stored as the verifier needs it: whoever reads the database reads it.
//! Signing in also needs the password, which is never stored.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::entities::account;
use crate::keys::{Principal, Role};
use crate::StoreError;

/// Failures in a row that lock an account.
pub const MAX_FAILURES: i32 = 5;
/// The first lock's length; each further failure doubles it, up to [`MAX_LOCK`].
pub const FIRST_LOCK: Duration = Duration::minutes(1);
/// The longest lock.
pub const MAX_LOCK: Duration = Duration::hours(1);
/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted (an argon2 input is bounded like every other input).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// The issuer authenticator apps show next to the account.
pub const TOTP_ISSUER: &str = "wacrm";
/// The console's languages; the first is the default.
pub const LOCALES: &[&str] = &["pt-BR", "en"];

const TOTP_DIGITS: usize = 6;
const TOTP_STEP: u64 = 30;
const TOTP_SKEW: u64 = 1;

/// Why an account could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The input is not acceptable (the message says why, in words for the person).
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for AccountError {
    fn from(e: sea_orm::DbErr) -> Self {
        AccountError::Store(StoreError::Db(e))
    }
}

/// An account as the console and the CLI show it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// The account id (a UUID).
    pub id: String,
    /// The sign-in name (lowercase).
    pub username: String,
    /// The person's name, as the audit log shows it.
    pub name: String,
    /// The role.
    pub role: Role,
    /// The scopes.
    pub scopes: Vec<String>,
    /// The business numbers it may use; `None`: all.
    pub business_numbers: Option<Vec<String>>,
    /// `pt-BR` or `en`.
    pub locale: String,
    /// Whether TOTP is enrolled.
    pub mfa_enrolled: bool,
    /// Recovery codes not used yet.
    pub recovery_codes_left: usize,
    /// Until when it is locked, if it is.
    pub locked_until: Option<DateTime<Utc>>,
    /// When it was disabled, if it was.
    pub disabled_at: Option<DateTime<Utc>>,
    /// When it was created, and by whom.
    pub created_at: DateTime<Utc>,
    /// Who created it (an account, a key, or `cli`).
    pub created_by: String,
    /// The last complete sign-in.
    pub last_login_at: Option<DateTime<Utc>>,
}

impl Account {
    /// The account as the API's principal: the same scopes and number limits a key of its
    /// role has, under the id `account:<username>` in the audit log.
    pub fn principal(&self) -> Principal {
        Principal {
            key_id: format!("account:{}", self.username),
            name: self.name.clone(),
            role: self.role,
            scopes: self.scopes.clone(),
            business_numbers: self.business_numbers.clone(),
        }
    }

    fn from_model(m: &account::Model) -> Result<Self, StoreError> {
        let role = Role::parse(&m.role)
            .ok_or_else(|| StoreError::Invalid(format!("account role {}", m.role)))?;
        let scopes: Vec<String> = serde_json::from_str(&m.scopes)
            .map_err(|e| StoreError::Invalid(format!("account scopes: {e}")))?;
        let business_numbers = match &m.business_numbers {
            Some(n) => Some(
                serde_json::from_str(n)
                    .map_err(|e| StoreError::Invalid(format!("account numbers: {e}")))?,
            ),
            None => None,
        };
        Ok(Account {
            id: m.id.clone(),
            username: m.username.clone(),
            name: m.name.clone(),
            role,
            scopes,
            business_numbers,
            locale: m.locale.clone(),
            mfa_enrolled: m.totp_secret.is_some() && m.totp_enrolled_at.is_some(),
            recovery_codes_left: recovery_hashes(m).len(),
            locked_until: m.locked_until,
            disabled_at: m.disabled_at,
            created_at: m.created_at,
            created_by: m.created_by.clone(),
            last_login_at: m.last_login_at,
        })
    }
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// The sign-in name: 3 to 64 of `a-z 0-9 . _ -` (upper case is lowered).
    pub username: String,
    /// The person's name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// Scopes; `None`: the role's.
    pub scopes: Option<Vec<String>>,
    /// Business numbers; `None`: all.
    pub business_numbers: Option<Vec<String>>,
    /// `pt-BR` (default) or `en`.
    pub locale: Option<String>,
    /// The first password (at least [`MIN_PASSWORD_CHARS`] characters).
    pub password: String,
    /// Who creates it.
    pub created_by: String,
}

/// Lowers and checks a sign-in name.
pub fn normalise_username(username: &str) -> Result<String, AccountError> {
    let lowered = username.trim().to_lowercase();
    let ok = (3..=64).contains(&lowered.len())
        && lowered
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(lowered)
    } else {
        Err(AccountError::Invalid(
            "a username is 3 to 64 letters, digits, dots, dashes or underscores".into(),
        ))
    }
}

/// Checks a new password against the policy.
pub fn check_password_policy(password: &str) -> Result<(), AccountError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Invalid(format!(
            "a password is at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::Invalid(format!(
            "a password has at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Invalid(format!("hashing the password: {e}")))
}

fn password_matches(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A first password for an account made without one: 20 letters and digits (about 117 bits),
/// without the look-alikes (0/O, 1/l/I).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut bytes);
    // 256 is not a multiple of 57: the bias toward the first letters is under 0.5 bit in all.
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// A hash to verify against when the username is unknown, so an unknown name takes as long to
/// refuse as a wrong password (no timing oracle for which names exist).
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("wacrm-decoy-password").unwrap_or_default())
}

/// Creates an account. Its TOTP is enrolled at its first sign-in.
pub async fn create(db: &DatabaseConnection, new: NewAccount) -> Result<Account, AccountError> {
    let username = normalise_username(&new.username)?;
    check_password_policy(&new.password)?;
    if new.name.trim().is_empty() || new.name.len() > 200 {
        return Err(AccountError::Invalid(
            "a name is 1 to 200 characters".into(),
        ));
    }
    let locale = new.locale.unwrap_or_else(|| LOCALES[0].to_owned());
    if !LOCALES.contains(&locale.as_str()) {
        return Err(AccountError::Invalid(format!(
            "the language is one of {}",
            LOCALES.join(", ")
        )));
    }
    let scopes = new.scopes.unwrap_or_else(|| new.role.default_scopes());
    if let Some(bad) = scopes
        .iter()
        .find(|s| !crate::keys::scope::ALL.contains(&s.as_str()))
    {
        return Err(AccountError::Invalid(format!("no such scope: {bad}")));
    }
    if find_by_username(db, &username).await?.is_some() {
        return Err(AccountError::Invalid(format!(
            "the username {username} is taken"
        )));
    }
    let now = Utc::now();
    let model = account::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        username: Set(username),
        name: Set(new.name.trim().to_owned()),
        role: Set(new.role.as_str().to_owned()),
        scopes: Set(to_json(&scopes)?),
        business_numbers: Set(match &new.business_numbers {
            Some(n) => Some(to_json(n)?),
            None => None,
        }),
        locale: Set(locale),
        password_hash: Set(hash_password(&new.password)?),
        totp_secret: Set(None),
        totp_enrolled_at: Set(None),
        totp_last_step: Set(None),
        recovery_codes: Set("[]".to_owned()),
        failed_attempts: Set(0),
        locked_until: Set(None),
        disabled_at: Set(None),
        created_at: Set(now),
        created_by: Set(new.created_by),
        last_login_at: Set(None),
    };
    let id = model.id.clone().unwrap();
    account::Entity::insert(model)
        .exec_without_returning(db)
        .await?;
    get(db, &id)
        .await?
        .ok_or_else(|| AccountError::Store(StoreError::Invalid("account vanished".into())))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

async fn model_by_id(
    db: &DatabaseConnection,
    id: &str,
) -> Result<Option<account::Model>, StoreError> {
    Ok(account::Entity::find_by_id(id.to_owned()).one(db).await?)
}

async fn model_by_username(
    db: &DatabaseConnection,
    username: &str,
) -> Result<Option<account::Model>, StoreError> {
    let Ok(username) = normalise_username(username) else {
        return Ok(None);
    };
    Ok(account::Entity::find()
        .filter(account::Column::Username.eq(username))
        .one(db)
        .await?)
}

/// An account by id.
pub async fn get(db: &DatabaseConnection, id: &str) -> Result<Option<Account>, StoreError> {
    model_by_id(db, id)
        .await?
        .as_ref()
        .map(Account::from_model)
        .transpose()
}

/// An account by sign-in name (any case).
pub async fn find_by_username(
    db: &DatabaseConnection,
    username: &str,
) -> Result<Option<Account>, StoreError> {
    model_by_username(db, username)
        .await?
        .as_ref()
        .map(Account::from_model)
        .transpose()
}

/// Every account, by username.
pub async fn list(db: &DatabaseConnection) -> Result<Vec<Account>, StoreError> {
    account::Entity::find()
        .order_by_asc(account::Column::Username)
        .all(db)
        .await?
        .iter()
        .map(Account::from_model)
        .collect()
}

/// Disables an account: it can no longer sign in. `false` when there is no such account.
/// End its sessions too ([`crate::console_sessions::end_all_for`]).
pub async fn disable(db: &DatabaseConnection, id: &str) -> Result<bool, StoreError> {
    let updated = account::Entity::update_many()
        .col_expr(account::Column::DisabledAt, Expr::value(Some(Utc::now())))
        .filter(account::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// Removes an account's TOTP and recovery codes and clears its lock: its next sign-in enrols
/// again (a lost phone). `false` when there is no such account.
pub async fn reset_mfa(db: &DatabaseConnection, id: &str) -> Result<bool, StoreError> {
    let updated = account::Entity::update_many()
        .col_expr(
            account::Column::TotpSecret,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            account::Column::TotpEnrolledAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            account::Column::TotpLastStep,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(account::Column::RecoveryCodes, Expr::value("[]"))
        .col_expr(account::Column::FailedAttempts, Expr::value(0))
        .col_expr(
            account::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(account::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// Sets a new password (policy checked).
pub async fn set_password(
    db: &DatabaseConnection,
    id: &str,
    password: &str,
) -> Result<bool, AccountError> {
    check_password_policy(password)?;
    let updated = account::Entity::update_many()
        .col_expr(
            account::Column::PasswordHash,
            Expr::value(hash_password(password)?),
        )
        .filter(account::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// How a sign-in step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted.
    Accepted(Box<Account>),
    /// Wrong (a wrong password, an unknown username, a wrong or replayed code). Counted.
    Refused,
    /// Locked until then, whatever was given.
    Locked(DateTime<Utc>),
    /// The account is disabled.
    Disabled,
}

/// The first step: a username and password. A right password does not clear the failure count
/// (only a complete sign-in does); a wrong one adds to it.
pub async fn check_password(
    db: &DatabaseConnection,
    username: &str,
    password: &str,
    now: DateTime<Utc>,
) -> Result<Verdict, StoreError> {
    let Some(model) = model_by_username(db, username).await? else {
        // Same work as a wrong password.
        let _ = password_matches(password, decoy_hash());
        return Ok(Verdict::Refused);
    };
    if let Some(verdict) = barred(&model, now) {
        return Ok(verdict);
    }
    if password_matches(password, &model.password_hash) {
        return Ok(Verdict::Accepted(Box::new(Account::from_model(&model)?)));
    }
    record_failure(db, &model, now).await
}

/// Locked or disabled: the verdict that stops any step.
fn barred(model: &account::Model, now: DateTime<Utc>) -> Option<Verdict> {
    if model.disabled_at.is_some() {
        return Some(Verdict::Disabled);
    }
    match model.locked_until {
        Some(until) if until > now => Some(Verdict::Locked(until)),
        _ => None,
    }
}

/// Counts a failure, locking the account from the [`MAX_FAILURES`]th on.
async fn record_failure(
    db: &DatabaseConnection,
    model: &account::Model,
    now: DateTime<Utc>,
) -> Result<Verdict, StoreError> {
    let failures = model.failed_attempts.saturating_add(1);
    let locked_until = (failures >= MAX_FAILURES).then(|| now + lock_length(failures));
    account::Entity::update_many()
        .col_expr(
            account::Column::FailedAttempts,
            Expr::col(account::Column::FailedAttempts).add(1),
        )
        .col_expr(account::Column::LockedUntil, Expr::value(locked_until))
        .filter(account::Column::Id.eq(model.id.clone()))
        .exec(db)
        .await?;
    Ok(match locked_until {
        Some(until) => Verdict::Locked(until),
        None => Verdict::Refused,
    })
}

/// How long the `failures`th failure in a row locks the account.
pub fn lock_length(failures: i32) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(MAX_FAILURES)).unwrap_or(0);
    let factor = 2i32.checked_pow(doublings.min(10)).unwrap_or(i32::MAX);
    let length = FIRST_LOCK * factor;
    if length > MAX_LOCK {
        MAX_LOCK
    } else {
        length
    }
}

/// A fresh TOTP secret (160 bits, base32), to show once at enrolment.
pub fn new_totp_secret() -> String {
    match Secret::generate_secret().to_encoded() {
        Secret::Encoded(s) => s,
        Secret::Raw(raw) => totp_rs::Secret::Raw(raw).to_string(),
    }
}

fn totp(secret_base32: &str, username: &str) -> Result<TOTP, StoreError> {
    let bytes = Secret::Encoded(secret_base32.to_owned())
        .to_bytes()
        .map_err(|e| StoreError::Invalid(format!("TOTP secret: {e:?}")))?;
    TOTP::new(
        Algorithm::SHA1,
        TOTP_DIGITS,
        u8::try_from(TOTP_SKEW).unwrap_or(1),
        TOTP_STEP,
        bytes,
        Some(TOTP_ISSUER.to_owned()),
        username.to_owned(),
    )
    .map_err(|e| StoreError::Invalid(format!("TOTP: {e}")))
}

/// The `otpauth://` URL an authenticator app scans (as a QR code) to add the account.
pub fn otpauth_url(secret_base32: &str, username: &str) -> Result<String, StoreError> {
    Ok(totp(secret_base32, username)?.get_url())
}

/// The code of `secret_base32` at `now` (what an authenticator app shows; for tests and tools).
pub fn totp_code(secret_base32: &str, now: DateTime<Utc>) -> Result<String, StoreError> {
    Ok(totp(secret_base32, "code")?.generate(unix(now)))
}

fn unix(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0)
}

/// The time step `code` is valid for at `now` (one step of skew either way), if any.
fn matching_step(totp: &TOTP, code: &str, now: DateTime<Utc>) -> Option<i64> {
    let code = code.trim().replace(' ', "");
    if code.len() != TOTP_DIGITS || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let current = unix(now) / TOTP_STEP;
    let first = current.saturating_sub(TOTP_SKEW);
    let mut found = None;
    // Every candidate is computed and compared in constant time, whichever matches.
    for step in first..=current + TOTP_SKEW {
        let expected = totp.generate(step * TOTP_STEP);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = i64::try_from(step).ok();
        }
    }
    found
}

/// Confirms enrolment: `code` must be valid for `secret_base32`, which becomes the account's.
/// Returns the recovery codes, to show once. Refused codes count as failures.
pub async fn enrol_totp(
    db: &DatabaseConnection,
    account_id: &str,
    secret_base32: &str,
    code: &str,
    now: DateTime<Utc>,
) -> Result<Result<Vec<String>, Verdict>, StoreError> {
    let Some(model) = model_by_id(db, account_id).await? else {
        return Ok(Err(Verdict::Refused));
    };
    if let Some(verdict) = barred(&model, now) {
        return Ok(Err(verdict));
    }
    let Some(step) = matching_step(&totp(secret_base32, &model.username)?, code, now) else {
        return Ok(Err(record_failure(db, &model, now).await?));
    };
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(c)).collect();
    account::Entity::update_many()
        .col_expr(
            account::Column::TotpSecret,
            Expr::value(Some(secret_base32.to_owned())),
        )
        .col_expr(account::Column::TotpEnrolledAt, Expr::value(Some(now)))
        .col_expr(account::Column::TotpLastStep, Expr::value(Some(step)))
        .col_expr(
            account::Column::RecoveryCodes,
            Expr::value(to_json(&hashes)?),
        )
        .filter(account::Column::Id.eq(account_id))
        .exec(db)
        .await?;
    Ok(Ok(codes))
}

/// The second step of a sign-in: a TOTP code, or a recovery code (used up). Accepted: the
/// failure count is cleared and the sign-in time recorded.
pub async fn check_second_factor(
    db: &DatabaseConnection,
    account_id: &str,
    code: &str,
    now: DateTime<Utc>,
) -> Result<Verdict, StoreError> {
    let Some(model) = model_by_id(db, account_id).await? else {
        return Ok(Verdict::Refused);
    };
    if let Some(verdict) = barred(&model, now) {
        return Ok(verdict);
    }
    let Some(secret) = &model.totp_secret else {
        return Ok(Verdict::Refused);
    };
    let accepted = match matching_step(&totp(secret, &model.username)?, code, now) {
        // A code is good once: not its step again, nor an earlier one.
        Some(step) if model.totp_last_step.is_none_or(|last| step > last) => {
            // Conditional on the step still being new, so two sign-ins racing with one code
            // (a replay sent alongside the real one) accept it once.
            let used = account::Entity::update_many()
                .col_expr(account::Column::TotpLastStep, Expr::value(Some(step)))
                .filter(account::Column::Id.eq(account_id))
                .filter(
                    sea_orm::Condition::any()
                        .add(account::Column::TotpLastStep.is_null())
                        .add(account::Column::TotpLastStep.lt(step)),
                )
                .exec(db)
                .await?;
            used.rows_affected == 1
        }
        Some(_) => false,
        None => use_recovery_code(db, &model, code).await?,
    };
    if !accepted {
        return record_failure(db, &model, now).await;
    }
    account::Entity::update_many()
        .col_expr(account::Column::FailedAttempts, Expr::value(0))
        .col_expr(
            account::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(account::Column::LastLoginAt, Expr::value(Some(now)))
        .filter(account::Column::Id.eq(account_id))
        .exec(db)
        .await?;
    let model = model_by_id(db, account_id)
        .await?
        .ok_or_else(|| StoreError::Invalid("account vanished".into()))?;
    Ok(Verdict::Accepted(Box::new(Account::from_model(&model)?)))
}

fn recovery_hashes(model: &account::Model) -> Vec<String> {
    serde_json::from_str(&model.recovery_codes).unwrap_or_default()
}

fn normalise_recovery(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn recovery_hash(code: &str) -> String {
    hex::encode(Sha256::digest(normalise_recovery(code).as_bytes()))
}

/// A recovery code: ten characters of the base32 alphabet (50 bits), as `xxxxx-xxxxx`.
fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut bytes);
    let chars: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// Uses up a recovery code if it is one of the account's.
async fn use_recovery_code(
    db: &DatabaseConnection,
    model: &account::Model,
    code: &str,
) -> Result<bool, StoreError> {
    if normalise_recovery(code).len() != 10 {
        return Ok(false);
    }
    let hash = recovery_hash(code);
    let mut hashes = recovery_hashes(model);
    let Some(index) = hashes
        .iter()
        .position(|h| bool::from(h.as_bytes().ct_eq(hash.as_bytes())))
    else {
        return Ok(false);
    };
    hashes.remove(index);
    // Conditional on the list read, so two sign-ins racing with one code use it once.
    let updated = account::Entity::update_many()
        .col_expr(
            account::Column::RecoveryCodes,
            Expr::value(to_json(&hashes)?),
        )
        .filter(account::Column::Id.eq(model.id.clone()))
        .filter(account::Column::RecoveryCodes.eq(model.recovery_codes.clone()))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_from_the_fifth_failure_up_to_an_hour() {
        assert_eq!(lock_length(5), Duration::minutes(1));
        assert_eq!(lock_length(6), Duration::minutes(2));
        assert_eq!(lock_length(8), Duration::minutes(8));
        assert_eq!(lock_length(12), MAX_LOCK);
        assert_eq!(lock_length(500), MAX_LOCK);
    }

    #[test]
    fn usernames_and_passwords_are_checked() {
        assert_eq!(normalise_username(" Ana.Souza ").unwrap(), "ana.souza");
        assert!(normalise_username("ab").is_err());
        assert!(normalise_username("ana souza").is_err());
        assert!(check_password_policy("curta").is_err());
        assert!(check_password_policy("uma senha longa o bastante").is_ok());
        assert!(check_password_policy(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }

    #[test]
    fn a_code_matches_its_step_and_its_neighbours_only() {
        let secret = new_totp_secret();
        let t = totp(&secret, "ana").unwrap();
        let now = Utc::now();
        let code = totp_code(&secret, now).unwrap();
        let step = i64::try_from(unix(now) / TOTP_STEP).unwrap();
        assert_eq!(matching_step(&t, &code, now), Some(step));
        assert!(matching_step(&t, &code, now + Duration::seconds(30)).is_some());
        assert_eq!(matching_step(&t, &code, now + Duration::seconds(95)), None);
        assert_eq!(matching_step(&t, "12345", now), None);
        assert_eq!(matching_step(&t, "abcdef", now), None);
    }

    #[test]
    fn recovery_codes_are_50_bits_and_read_in_any_case_or_spacing() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 11);
        assert_eq!(
            recovery_hash(&code),
            recovery_hash(&code.to_uppercase().replace('-', " "))
        );
    }
}
