//! Employees' API keys: roles, scopes, business numbers, expiry, revocation.
//!
//! A key is shown once, at creation: `wacrm_<id>_<secret>`. Only the SHA-256 of the secret is
//! stored. The secret is 256 random bits, so a fast hash is as safe as a slow one here (slow
//! hashes protect low-entropy passwords) and keeps authentication off the hot path's budget.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait, QueryOrder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::entities::api_key;
use crate::StoreError;

/// What a key's holder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages keys, configuration and erasure; reads everything.
    Admin,
    /// Sends messages and reads conversations of its business numbers.
    Agent,
    /// Reads conversations and the audit log; never sends.
    Auditor,
    /// The data-protection officer (LGPD's *encarregado*): answers data subjects — exports a
    /// contact's data, records consent, erases — and reads the audit log; never sends.
    Dpo,
}

impl Role {
    /// `admin`, `agent`, `auditor` or `dpo`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Auditor => "auditor",
            Role::Dpo => "dpo",
        }
    }

    /// Reads a role name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "admin" => Some(Role::Admin),
            "agent" => Some(Role::Agent),
            "auditor" => Some(Role::Auditor),
            "dpo" => Some(Role::Dpo),
            _ => None,
        }
    }

    /// The scopes a key of this role gets unless told otherwise.
    pub fn default_scopes(self) -> Vec<String> {
        let scopes: &[&str] = match self {
            Role::Admin => &[
                scope::CONVERSATIONS_READ,
                scope::MESSAGES_SEND,
                scope::AUDIT_READ,
                scope::DEAD_LETTERS_READ,
                scope::DEAD_LETTERS_RETRY,
                scope::KEYS_MANAGE,
                scope::METRICS_READ,
                scope::CONTACTS_EXPORT,
                scope::CONTACTS_ERASE,
                scope::CONSENT_WRITE,
            ],
            Role::Agent => &[scope::CONVERSATIONS_READ, scope::MESSAGES_SEND],
            Role::Auditor => &[
                scope::CONVERSATIONS_READ,
                scope::AUDIT_READ,
                scope::DEAD_LETTERS_READ,
            ],
            Role::Dpo => &[
                scope::CONVERSATIONS_READ,
                scope::AUDIT_READ,
                scope::CONTACTS_EXPORT,
                scope::CONTACTS_ERASE,
                scope::CONSENT_WRITE,
            ],
        };
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }
}

/// Scope names.
pub mod scope {
    /// Read contacts, conversations and messages.
    pub const CONVERSATIONS_READ: &str = "conversations:read";
    /// Send messages.
    pub const MESSAGES_SEND: &str = "messages:send";
    /// Read the audit log.
    pub const AUDIT_READ: &str = "audit:read";
    /// Read dead letters.
    pub const DEAD_LETTERS_READ: &str = "dead_letters:read";
    /// Re-drive dead letters.
    pub const DEAD_LETTERS_RETRY: &str = "dead_letters:retry";
    /// Create, list and revoke keys.
    pub const KEYS_MANAGE: &str = "keys:manage";
    /// Scrape the service's Prometheus metrics (`/metrics`); on its own, the scope for a
    /// monitoring system's key, which then reads no customer data.
    pub const METRICS_READ: &str = "metrics:read";
    /// Export everything wacrm holds on a contact (LGPD's right of access).
    pub const CONTACTS_EXPORT: &str = "contacts:export";
    /// Erase a contact everywhere their data went (LGPD's right to erasure).
    pub const CONTACTS_ERASE: &str = "contacts:erase";
    /// Record a contact's opt-in or opt-out for a purpose.
    pub const CONSENT_WRITE: &str = "consent:write";

    /// Every scope there is.
    pub const ALL: &[&str] = &[
        CONVERSATIONS_READ,
        MESSAGES_SEND,
        AUDIT_READ,
        DEAD_LETTERS_READ,
        DEAD_LETTERS_RETRY,
        KEYS_MANAGE,
        METRICS_READ,
        CONTACTS_EXPORT,
        CONTACTS_ERASE,
        CONSENT_WRITE,
    ];
}

/// Why the business numbers given for a key or an account do not say which numbers it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberLimitError {
    /// Neither numbers nor "every number".
    #[error("give the business numbers it may use, or every number")]
    Neither,
    /// Both numbers and "every number".
    #[error("give the business numbers or every number, not both")]
    Both,
}

/// The business numbers a key or a console account may use: the `numbers` listed, or every
/// number (`None`) when `all`. Which numbers a principal reads is a decision, never a default:
/// neither, or both, is refused.
pub fn number_limit(
    numbers: Vec<String>,
    all: bool,
) -> Result<Option<Vec<String>>, NumberLimitError> {
    match (numbers.is_empty(), all) {
        (false, false) => Ok(Some(numbers)),
        (true, true) => Ok(None),
        (false, true) => Err(NumberLimitError::Both),
        (true, false) => Err(NumberLimitError::Neither),
    }
}

/// Who is calling, once their key checked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The key id.
    pub key_id: String,
    /// The employee's name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// The scopes.
    pub scopes: Vec<String>,
    /// The business numbers (phone number ids) the key may use; `None` means all.
    pub business_numbers: Option<Vec<String>>,
}

impl Principal {
    /// Whether the key carries a scope.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the key may use a business number.
    pub fn may_use_number(&self, phone_number_id: &str) -> bool {
        self.business_numbers
            .as_ref()
            .is_none_or(|numbers| numbers.iter().any(|n| n == phone_number_id))
    }
}

/// A key as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// The key id.
    pub id: String,
    /// The employee's name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// The scopes.
    pub scopes: Vec<String>,
    /// The business numbers it may use; absent means all.
    pub business_numbers: Option<Vec<String>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The employee's name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// Scopes; `None` gives the role's defaults. Each must be one of [`scope::ALL`].
    pub scopes: Option<Vec<String>>,
    /// Business numbers; `None` means all.
    pub business_numbers: Option<Vec<String>>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

const PREFIX: &str = "wacrm_";

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn info(row: api_key::Model) -> Result<KeyInfo, StoreError> {
    Ok(KeyInfo {
        role: Role::parse(&row.role)
            .ok_or_else(|| StoreError::Invalid(format!("unknown role {}", row.role)))?,
        scopes: serde_json::from_value(row.scopes)
            .map_err(|e| StoreError::Invalid(e.to_string()))?,
        business_numbers: row
            .business_numbers
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StoreError::Invalid(e.to_string()))?,
        id: row.id,
        name: row.name,
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    })
}

/// Creates a key; returns it with the token, which is shown this once. A scope given twice is
/// stored once. An unknown scope is refused ([`StoreError::Invalid`]) rather than stored where
/// no route would ever honour it.
pub async fn create(db: &DatabaseConnection, new: NewKey) -> Result<(KeyInfo, String), StoreError> {
    if let Some(unknown) = new
        .scopes
        .iter()
        .flatten()
        .find(|s| !scope::ALL.contains(&s.as_str()))
    {
        return Err(StoreError::Invalid(format!(
            "unknown scope {unknown} (scopes: {})",
            scope::ALL.join(", ")
        )));
    }
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    {
        // The thread's generator is not `Send`: dropped before any await, so the future is.
        let mut rng = rand::thread_rng();
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut secret);
    }
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    let mut scopes = new.scopes.unwrap_or_else(|| new.role.default_scopes());
    // `--scope metrics:read --scope metrics:read` means the scope once.
    let mut seen = std::collections::HashSet::new();
    scopes.retain(|s| seen.insert(s.clone()));
    let row = api_key::ActiveModel {
        id: Set(id.clone()),
        name: Set(new.name),
        role: Set(new.role.as_str().to_owned()),
        secret_sha256: Set(hash(&secret)),
        scopes: Set(serde_json::json!(scopes)),
        business_numbers: Set(new.business_numbers.map(|n| serde_json::json!(n))),
        created_at: Set(Utc::now()),
        expires_at: Set(new.expires_at),
        revoked_at: Set(None),
    };
    let row = row.insert(db).await?;
    Ok((info(row)?, format!("{PREFIX}{id}_{secret}")))
}

/// Every key, newest first.
pub async fn list(db: &DatabaseConnection) -> Result<Vec<KeyInfo>, StoreError> {
    api_key::Entity::find()
        .order_by_desc(api_key::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(info)
        .collect()
}

/// Revokes a key. False when there is no such key.
pub async fn revoke(db: &DatabaseConnection, id: &str) -> Result<bool, StoreError> {
    let Some(row) = api_key::Entity::find_by_id(id.to_owned()).one(db).await? else {
        return Ok(false);
    };
    if row.revoked_at.is_none() {
        let mut active: api_key::ActiveModel = row.into();
        active.revoked_at = Set(Some(Utc::now()));
        active.update(db).await?;
    }
    Ok(true)
}

/// The principal behind a bearer token, if the key exists, matches, is not revoked and has not
/// expired.
pub async fn authenticate(
    db: &DatabaseConnection,
    token: &str,
) -> Result<Option<Principal>, StoreError> {
    let Some(rest) = token.strip_prefix(PREFIX) else {
        return Ok(None);
    };
    let Some((id, secret)) = rest.split_once('_') else {
        return Ok(None);
    };
    let Some(row) = api_key::Entity::find_by_id(id.to_owned()).one(db).await? else {
        return Ok(None);
    };
    let matches: bool = hash(secret)
        .as_bytes()
        .ct_eq(row.secret_sha256.as_bytes())
        .into();
    let now = Utc::now();
    if !matches || row.revoked_at.is_some() || row.expires_at.is_some_and(|e| e <= now) {
        return Ok(None);
    }
    let key = info(row)?;
    Ok(Some(Principal {
        key_id: key.id,
        name: key.name,
        role: key.role,
        scopes: key.scopes,
        business_numbers: key.business_numbers,
    }))
}
