//! The audit log: append-only, tamper-evident, and keyed so that its admin cannot quietly
//! rewrite it.
//!
//! Every entry stores a link: a digest of its own content and of the previous entry's link,
//! and the sequence numbers have no gaps, so [`verify_with`] finds an edited row (its link no
//! longer matches), a deleted one (a gap, or a broken link) and a reordered one (a broken link).
//!
//! - **Keyed chain.** With an [`AuditKey`], a new entry's link is an HMAC-SHA-256 under that
//!   key, and the entry records the key's id (`mac_key`). Someone who can write the database
//!   but not read the key cannot recompute the chain after an edit. Entries written before the
//!   log was keyed keep their plain SHA-256 and verify as before; the first keyed entry chains
//!   from the last unkeyed one, and an unkeyed entry after a keyed one is a rewrite. Several
//!   keys verify one log ([`AuditKeys`]: the current one and those it replaced).
//! - **Anchors.** A keyed chain still cannot show that its newest entries were deleted. The
//!   audit relay writes the chain head ([`Anchor`]: seq, link, time, itself MACed) outside the
//!   database — a file and the bus — and [`verify_with`] compares the table with the anchors: a
//!   table that ends before the newest anchored seq lost its tail, and an anchored seq whose link
//!   differs was replaced.
//! - **Retention.** [`purge_before`] deletes whole oldest entries (audited first); the chain
//!   then starts from the oldest remaining entry's stored link, and verification says so.
//!
//! The business number and the detail of an entry came later than the first entries: they are
//! digested only when present, so the entries written before them still verify.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use chrono::{DateTime, SubsecRound, Utc};
use hmac::{Hmac, Mac};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use crate::entities::audit_log;
use crate::StoreError;

/// The link before the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

type HmacSha256 = Hmac<Sha256>;

/// The fewest bytes an audit key may have.
pub const MIN_KEY_BYTES: usize = 32;

/// The action of the entry [`purge_before`] writes before it deletes.
pub const PURGE_ACTION: &str = "audit.purge";

/// The newest entries [`purge_before`] always keeps, whatever their age.
pub const PURGE_KEEPS_NEWEST: i64 = 1000;

/// The `ce_type` of an anchor published on the audit topic.
pub const ANCHOR_TYPE: &str = "wacrm.audit.anchored.v1";

/// What is being audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The API key used (`cli` for the command line).
    pub key_id: String,
    /// The employee's name.
    pub actor: String,
    /// What was done (`contacts.read`, `messages.read`, `keys.create`, …).
    pub action: String,
    /// Which contact, when one.
    pub contact_id: Option<String>,
    /// The object (a wamid, a key id, a filter).
    pub target: Option<String>,
    /// `ok`, `denied`, `not_found`, `error`.
    pub outcome: String,
    /// The business number (phone number id) the call concerned, when one: a key limited to
    /// numbers reads only the entries of its numbers.
    pub phone_number_id: Option<String>,
    /// More about the call, as JSON (a search: `{"query_sha256": …, "contacts": […]}`).
    pub detail: Option<serde_json::Value>,
}

impl NewEntry {
    /// An entry without a contact, target, number or detail.
    pub fn new(
        key_id: impl Into<String>,
        actor: impl Into<String>,
        action: impl Into<String>,
        outcome: impl Into<String>,
    ) -> Self {
        NewEntry {
            key_id: key_id.into(),
            actor: actor.into(),
            action: action.into(),
            contact_id: None,
            target: None,
            outcome: outcome.into(),
            phone_number_id: None,
            detail: None,
        }
    }
}

/// An audit entry as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Entry {
    /// Position in the log (no gaps).
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The API key used.
    pub key_id: String,
    /// The employee.
    pub actor: String,
    /// What.
    pub action: String,
    /// Which contact.
    pub contact_id: Option<String>,
    /// The object.
    pub target: Option<String>,
    /// Outcome.
    pub outcome: String,
    /// The previous entry's link.
    pub prev_hash: String,
    /// This entry's link: an HMAC-SHA-256 under the audit key `mac_key`, or a plain SHA-256
    /// for entries written before the log was keyed.
    pub hash: String,
    /// The business number the entry concerns, when one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    /// More about the call (JSON), when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
    /// The id of the audit key `hash` is an HMAC under (absent: a plain SHA-256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_key: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Keys

/// A secret key of the audit chain. Its id (the first 8 bytes of its SHA-256, hex) is stored
/// with each entry and anchor it signs; the key itself is never shown (`Debug` prints the id).
#[derive(Clone)]
pub struct AuditKey {
    id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("id", &self.id)
            .field("secret", &"set")
            .finish()
    }
}

impl AuditKey {
    /// A key of these bytes (at least [`MIN_KEY_BYTES`]).
    pub fn from_bytes(secret: &[u8]) -> Result<Self, StoreError> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(StoreError::Config(format!(
                "an audit key needs at least {MIN_KEY_BYTES} bytes; this one has {}",
                secret.len()
            )));
        }
        let digest = Sha256::digest(secret);
        Ok(AuditKey {
            id: hex::encode(&digest[..8]),
            secret: secret.to_vec(),
        })
    }

    /// A key written in hex (`WACRM_AUDIT__KEY`).
    pub fn from_hex(text: &str) -> Result<Self, StoreError> {
        let bytes = hex::decode(text.trim()).map_err(|_| {
            StoreError::Config("the audit key is not hex (64 or more hex digits)".into())
        })?;
        Self::from_bytes(&bytes)
    }

    /// A key from a key file's contents: hex (64 or more hex digits, surrounding whitespace
    /// ignored) or, otherwise, the raw bytes.
    pub fn from_file_contents(contents: &[u8]) -> Result<Self, StoreError> {
        let trimmed = contents.trim_ascii();
        if trimmed.len() >= 2 * MIN_KEY_BYTES && trimmed.iter().all(u8::is_ascii_hexdigit) {
            if let Ok(bytes) = hex::decode(trimmed) {
                return Self::from_bytes(&bytes);
            }
        }
        Self::from_bytes(contents)
    }

    /// The key in a file.
    pub fn read(path: &Path) -> Result<Self, StoreError> {
        let contents = std::fs::read(path).map_err(|e| {
            StoreError::Config(format!("reading the audit key {}: {e}", path.display()))
        })?;
        Self::from_file_contents(&contents)
            .map_err(|e| StoreError::Config(format!("{}: {e}", path.display())))
    }

    /// A new random key of 32 bytes from the operating system.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut secret = [0u8; MIN_KEY_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let digest = Sha256::digest(secret);
        AuditKey {
            id: hex::encode(&digest[..8]),
            secret: secret.to_vec(),
        }
    }

    /// Creates a key file with a new random key, in hex, readable by its owner only (0600),
    /// and makes it durable. Fails if the file exists (two processes starting together do not
    /// both write one: the loser reads the winner's).
    pub fn create_file(path: &Path) -> Result<Self, StoreError> {
        let key = Self::generate();
        let fail = |e: std::io::Error| {
            StoreError::Config(format!("creating the audit key {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(fail)?;
        file.write_all(format!("{}\n", hex::encode(&key.secret)).as_bytes())
            .map_err(fail)?;
        file.sync_all().map_err(fail)?;
        Ok(key)
    }

    /// The key's id: the first 8 bytes of its SHA-256, in hex.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
        match HmacSha256::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        }
    }
}

/// The keys that verify a log: the current one (which signs) and those it replaced.
#[derive(Debug, Clone, Default)]
pub struct AuditKeys {
    current: Option<AuditKey>,
    previous: Vec<AuditKey>,
}

impl AuditKeys {
    /// These keys.
    pub fn new(current: Option<AuditKey>, previous: Vec<AuditKey>) -> Self {
        AuditKeys { current, previous }
    }

    /// The key new entries and anchors are signed with.
    pub fn current(&self) -> Option<&AuditKey> {
        self.current.as_ref()
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&AuditKey> {
        self.current
            .iter()
            .chain(&self.previous)
            .find(|k| k.id == id)
    }

    /// The ids of every key, current first.
    pub fn ids(&self) -> Vec<String> {
        self.current
            .iter()
            .chain(&self.previous)
            .map(|k| k.id.clone())
            .collect()
    }
}

/// `[audit]`: the key of the chain and its anchors.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    /// A file holding the key: 32 or more random bytes, as hex or raw. Keep it where the
    /// database's admin cannot read it.
    pub key_file: Option<PathBuf>,
    /// The key in hex (`WACRM_AUDIT__KEY`), instead of `key_file`.
    pub key: Option<String>,
    /// Files of keys used before the current one, so entries they signed still verify.
    #[serde(deserialize_with = "paths")]
    pub previous_key_files: Vec<PathBuf>,
    /// The append-only file of anchors (default: `audit-anchors.jsonl` in the data directory).
    pub anchor_file: Option<PathBuf>,
    /// How often the chain head is anchored, in seconds (and on shutdown).
    pub anchor_every_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            key_file: None,
            key: None,
            previous_key_files: Vec::new(),
            anchor_file: None,
            anchor_every_secs: 60,
        }
    }
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("key_file", &self.key_file)
            .field("key", &if self.key.is_some() { "set" } else { "unset" })
            .field("previous_key_files", &self.previous_key_files)
            .field("anchor_file", &self.anchor_file)
            .field("anchor_every_secs", &self.anchor_every_secs)
            .finish()
    }
}

/// A list of paths, or one string of them separated by commas (an environment variable).
fn paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Paths {
        List(Vec<PathBuf>),
        Text(String),
    }
    Ok(match Paths::deserialize(d)? {
        Paths::List(list) => list,
        Paths::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect(),
    })
}

impl AuditConfig {
    /// The configured current key (`key` or `key_file`; `None` when neither is set).
    pub fn configured_key(&self) -> Result<Option<AuditKey>, StoreError> {
        match (&self.key, &self.key_file) {
            (Some(_), Some(_)) => Err(StoreError::Config(
                "set one of [audit] key (WACRM_AUDIT__KEY) and key_file, not both".into(),
            )),
            (Some(hex), None) => AuditKey::from_hex(hex)
                .map(Some)
                .map_err(|e| StoreError::Config(format!("WACRM_AUDIT__KEY: {e}"))),
            (None, Some(path)) => AuditKey::read(path).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The keys of `previous_key_files`.
    pub fn previous_keys(&self) -> Result<Vec<AuditKey>, StoreError> {
        self.previous_key_files
            .iter()
            .map(|p| AuditKey::read(p))
            .collect()
    }
}

/// The key every [`AuditLog::new`] of this process signs with (see [`install_key`]).
static INSTALLED: RwLock<Option<AuditKey>> = RwLock::new(None);

/// Makes `key` the key of every [`AuditLog::new`] made afterwards in this process: the service
/// and the command line install theirs once, so every caller's entries are keyed.
pub fn install_key(key: Option<AuditKey>) {
    match INSTALLED.write() {
        Ok(mut slot) => *slot = key,
        Err(poisoned) => *poisoned.into_inner() = key,
    }
}

/// The key [`install_key`] installed.
pub fn installed_key() -> Option<AuditKey> {
    match INSTALLED.read() {
        Ok(slot) => slot.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Links

/// A link being computed: a plain SHA-256 (unkeyed entries) or an HMAC-SHA-256.
enum Digester {
    Plain(Sha256),
    Keyed(Box<HmacSha256>),
}

impl Digester {
    fn new(key: Option<&AuditKey>) -> Self {
        match key {
            Some(key) => Digester::Keyed(Box::new(key.mac())),
            None => Digester::Plain(Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Digester::Plain(h) => Digest::update(h, bytes),
            Digester::Keyed(m) => Mac::update(m.as_mut(), bytes),
        }
    }

    fn finish(self) -> String {
        match self {
            Digester::Plain(h) => hex::encode(h.finalize()),
            Digester::Keyed(m) => hex::encode((*m).finalize().into_bytes()),
        }
    }
}

/// What a link covers, as stored (the detail as its text).
struct Content<'a> {
    seq: i64,
    at: DateTime<Utc>,
    key_id: &'a str,
    actor: &'a str,
    action: &'a str,
    contact_id: Option<&'a str>,
    target: Option<&'a str>,
    outcome: &'a str,
    prev: &'a str,
    phone_number_id: Option<&'a str>,
    detail: Option<&'a str>,
}

impl<'a> Content<'a> {
    fn of_row(row: &'a audit_log::Model) -> Self {
        Content {
            seq: row.seq,
            at: row.at,
            key_id: &row.key_id,
            actor: &row.actor,
            action: &row.action,
            contact_id: row.contact_id.as_deref(),
            target: row.target.as_deref(),
            outcome: &row.outcome,
            prev: &row.prev_hash,
            phone_number_id: row.phone_number_id.as_deref(),
            detail: row.detail.as_deref(),
        }
    }

    /// The link: the same bytes whether keyed or not, so a keyed entry covers exactly what an
    /// unkeyed one did.
    fn link(&self, key: Option<&AuditKey>) -> String {
        let mut h = Digester::new(key);
        for part in [
            self.seq.to_string().as_str(),
            &self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            self.key_id,
            self.actor,
            self.action,
            self.contact_id.unwrap_or(""),
            self.target.unwrap_or(""),
            self.outcome,
            self.prev,
        ] {
            h.update(part.as_bytes());
            h.update(&[0x1f]);
        }
        // The later fields are digested only when present (each behind a tag of its own, after
        // the link), so an entry written before they existed digests as it did, and adding or
        // removing one breaks the link.
        if let Some(number) = self.phone_number_id {
            h.update(b"phone_number_id=");
            h.update(number.as_bytes());
            h.update(&[0x1f]);
        }
        if let Some(detail) = self.detail {
            h.update(b"detail=");
            h.update(detail.as_bytes());
            h.update(&[0x1f]);
        }
        h.finish()
    }
}

/// Equal texts, compared in constant time (a MAC).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The detail as stored (and digested): compact JSON text.
fn detail_text(e: &NewEntry) -> Option<String> {
    e.detail.as_ref().map(serde_json::Value::to_string)
}

/// The stored detail text as JSON (a text that is not JSON is shown as a string).
fn detail_value(text: Option<&str>) -> Option<serde_json::Value> {
    text.map(|t| {
        serde_json::from_str(t).unwrap_or_else(|_| serde_json::Value::String(t.to_owned()))
    })
}

fn entry(m: audit_log::Model) -> Entry {
    let detail = detail_value(m.detail.as_deref());
    Entry {
        seq: m.seq,
        at: m.at,
        key_id: m.key_id,
        actor: m.actor,
        action: m.action,
        contact_id: m.contact_id,
        target: m.target,
        outcome: m.outcome,
        prev_hash: m.prev_hash,
        hash: m.hash,
        phone_number_id: m.phone_number_id,
        detail,
        mac_key: m.mac_key,
    }
}

// ---------------------------------------------------------------------------------------------
// Appending

/// The audit log of a store. Appends are serialised in this process; concurrent writers in
/// other processes are resolved by the sequence's primary key (the loser retries).
pub struct AuditLog {
    db: DatabaseConnection,
    key: Option<AuditKey>,
    lock: Mutex<()>,
}

impl AuditLog {
    /// The audit log of a database, signing with the key installed for this process
    /// ([`install_key`]), if any.
    pub fn new(db: DatabaseConnection) -> Self {
        Self::with_key(db, installed_key())
    }

    /// The audit log of a database, signing new entries with `key` (`None`: unkeyed, which
    /// only a log that was never keyed accepts).
    pub fn with_key(db: DatabaseConnection, key: Option<AuditKey>) -> Self {
        AuditLog {
            db,
            key,
            lock: Mutex::new(()),
        }
    }

    /// The id of the key new entries are signed with.
    pub fn key_id(&self) -> Option<&str> {
        self.key.as_ref().map(AuditKey::id)
    }

    /// Appends an entry.
    pub async fn append(&self, new: NewEntry) -> Result<Entry, StoreError> {
        let _guard = self.lock.lock().await;
        let detail = detail_text(&new);
        let mut last_error = None;
        for _ in 0..10 {
            let last = audit_log::Entity::find()
                .order_by_desc(audit_log::Column::Seq)
                .one(&self.db)
                .await?;
            if let (Some(last), None) = (&last, &self.key) {
                if let Some(id) = &last.mac_key {
                    // An unkeyed entry after keyed ones would read as a rewrite: refuse, so the
                    // caller fails closed instead of breaking the chain.
                    return Err(StoreError::Config(format!(
                        "the audit log is keyed (its newest entry with key {id}) and no audit \
                         key is configured here: set [audit] key_file or WACRM_AUDIT__KEY"
                    )));
                }
            }
            let (seq, prev) = match &last {
                Some(l) => (l.seq + 1, l.hash.clone()),
                None => (1, GENESIS.to_owned()),
            };
            // Stored timestamps keep microseconds on both databases.
            let at = Utc::now().trunc_subsecs(6);
            let link = Content {
                seq,
                at,
                key_id: &new.key_id,
                actor: &new.actor,
                action: &new.action,
                contact_id: new.contact_id.as_deref(),
                target: new.target.as_deref(),
                outcome: &new.outcome,
                prev: &prev,
                phone_number_id: new.phone_number_id.as_deref(),
                detail: detail.as_deref(),
            }
            .link(self.key.as_ref());
            let row = audit_log::ActiveModel {
                seq: Set(seq),
                at: Set(at),
                key_id: Set(new.key_id.clone()),
                actor: Set(new.actor.clone()),
                action: Set(new.action.clone()),
                contact_id: Set(new.contact_id.clone()),
                target: Set(new.target.clone()),
                outcome: Set(new.outcome.clone()),
                prev_hash: Set(prev),
                hash: Set(link),
                phone_number_id: Set(new.phone_number_id.clone()),
                detail: Set(detail.clone()),
                mac_key: Set(self.key.as_ref().map(|k| k.id.clone())),
            };
            match audit_log::Entity::insert(row)
                .exec_without_returning(&self.db)
                .await
            {
                Ok(_) => {
                    metrics::counter!("wacrm_audit_entries_total").increment(1);
                    return audit_log::Entity::find_by_id(seq)
                        .one(&self.db)
                        .await?
                        .map(entry)
                        .ok_or_else(|| StoreError::Invalid("audit entry vanished".into()));
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error
            .map(StoreError::Db)
            .unwrap_or_else(|| StoreError::Invalid("audit append failed".into())))
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Filters of [`page`].
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this key.
    pub key_id: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this contact.
    pub contact_id: Option<String>,
    /// Entries after this sequence number (paging).
    pub after_seq: Option<i64>,
    /// From this time.
    pub from: Option<DateTime<Utc>>,
    /// Until this time.
    pub until: Option<DateTime<Utc>>,
    /// Most entries.
    pub limit: u64,
    /// Only what a key limited to these business numbers may see (`None`: every entry): an
    /// entry of one of them, or one of no number about a contact that has a conversation with
    /// one of them. Entries tied to neither a number nor a contact are left out.
    pub numbers: Option<Vec<String>>,
}

/// The newest entry.
pub async fn newest(db: &DatabaseConnection) -> Result<Option<Entry>, StoreError> {
    Ok(audit_log::Entity::find()
        .order_by_desc(audit_log::Column::Seq)
        .one(db)
        .await?
        .map(entry))
}

/// Entries in log order.
pub async fn page(db: &DatabaseConnection, f: &Filter) -> Result<Vec<Entry>, StoreError> {
    let mut q = audit_log::Entity::find();
    if let Some(k) = &f.key_id {
        q = q.filter(audit_log::Column::KeyId.eq(k.clone()));
    }
    if let Some(a) = &f.action {
        q = q.filter(audit_log::Column::Action.eq(a.clone()));
    }
    if let Some(c) = &f.contact_id {
        q = q.filter(audit_log::Column::ContactId.eq(c.clone()));
    }
    if let Some(s) = f.after_seq {
        q = q.filter(audit_log::Column::Seq.gt(s));
    }
    if let Some(t) = f.from {
        q = q.filter(audit_log::Column::At.gte(t));
    }
    if let Some(t) = f.until {
        q = q.filter(audit_log::Column::At.lt(t));
    }
    if let Some(numbers) = &f.numbers {
        q = q.filter(
            Condition::any()
                .add(audit_log::Column::PhoneNumberId.is_in(numbers.iter().cloned()))
                .add(
                    Condition::all()
                        .add(audit_log::Column::PhoneNumberId.is_null())
                        .add(
                            audit_log::Column::ContactId
                                .in_subquery(crate::queries::contacts_of_numbers(numbers)),
                        ),
                ),
        );
    }
    Ok(q.order_by_asc(audit_log::Column::Seq)
        .limit(f.limit.clamp(1, 1000))
        .all(db)
        .await?
        .into_iter()
        .map(entry)
        .collect())
}

/// The name of the audit log's relay cursor (entries published on the bus up to it).
const RELAY: &str = "audit";

/// The relay cursor row holding the newest anchored seq: a hint for [`purge_before`], which
/// never deletes the anchored head (the anchors themselves live outside the database).
const ANCHORED: &str = "audit-anchor";

async fn cursor(db: &DatabaseConnection, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        crate::entities::relay_cursor::Entity::find_by_id(name.to_owned())
            .one(db)
            .await?
            .map(|c| c.position),
    )
}

async fn set_cursor(db: &DatabaseConnection, name: &str, position: i64) -> Result<(), StoreError> {
    use crate::entities::relay_cursor;
    use sea_orm::sea_query::OnConflict;
    let row = relay_cursor::ActiveModel {
        name: Set(name.to_owned()),
        position: Set(position),
    };
    relay_cursor::Entity::insert(row)
        .on_conflict(
            OnConflict::column(relay_cursor::Column::Name)
                .update_column(relay_cursor::Column::Position)
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The last entry published on the bus (0 when none).
pub async fn published_up_to(db: &DatabaseConnection) -> Result<i64, StoreError> {
    Ok(cursor(db, RELAY).await?.unwrap_or(0))
}

/// Records that entries up to `seq` are published on the bus.
pub async fn mark_published(db: &DatabaseConnection, seq: i64) -> Result<(), StoreError> {
    set_cursor(db, RELAY, seq).await
}

/// The oldest and newest sequence numbers in the table.
async fn bounds(db: &DatabaseConnection) -> Result<Option<(i64, i64)>, StoreError> {
    let oldest = audit_log::Entity::find()
        .order_by_asc(audit_log::Column::Seq)
        .one(db)
        .await?;
    let newest = audit_log::Entity::find()
        .order_by_desc(audit_log::Column::Seq)
        .one(db)
        .await?;
    Ok(oldest.zip(newest).map(|(o, n)| (o.seq, n.seq)))
}

// ---------------------------------------------------------------------------------------------
// Retention

/// The entries [`purge_before`] would delete now (a dry run), without writing anything.
pub async fn purgeable_before(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
) -> Result<u64, StoreError> {
    Ok(purge_range(db, cutoff).await?.map_or(0, |(oldest, last)| {
        u64::try_from(last - oldest + 1).unwrap_or(0)
    }))
}

/// The oldest entry and the newest one a purge before `cutoff` may delete, if any.
async fn purge_range(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
) -> Result<Option<(i64, i64)>, StoreError> {
    let Some((oldest, newest)) = bounds(db).await? else {
        return Ok(None);
    };
    // The newest entry purged: just before the first entry at or after the cutoff (so a clock
    // that went back never takes a younger entry with it).
    let first_young = audit_log::Entity::find()
        .filter(audit_log::Column::At.gte(cutoff))
        .order_by_asc(audit_log::Column::Seq)
        .one(db)
        .await?
        .map(|r| r.seq);
    let mut last = first_young.map_or(newest, |s| s - 1);
    last = last.min(newest - PURGE_KEEPS_NEWEST);
    last = last.min(published_up_to(db).await?);
    if let Some(anchored) = cursor(db, ANCHORED).await? {
        last = last.min(anchored - 1);
    }
    Ok((last >= oldest).then_some((oldest, last)))
}

/// Deletes the oldest entries written before `cutoff` — whole entries from the oldest on, in
/// statements of at most 1,000 rows — and returns how many. It keeps, whatever their age, the
/// newest [`PURGE_KEEPS_NEWEST`] entries, the anchored head and everything after it, and
/// whatever the relay has not yet published on the bus. Before deleting it appends an
/// [`PURGE_ACTION`] entry (actor `retention`, target `seq<N`: N is the oldest entry kept),
/// signed with the key installed for this process; if that entry cannot be written nothing is
/// deleted. Verification then starts from entry N's stored link and checks that the purge was
/// audited.
pub async fn purge_before(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let Some((oldest, last)) = purge_range(db, cutoff).await? else {
        return Ok(0);
    };
    let mut record = NewEntry::new("system", "retention", PURGE_ACTION, "ok");
    record.target = Some(format!("seq<{}", last + 1));
    record.detail = Some(serde_json::json!({
        "before_seq": last + 1,
        "entries": last - oldest + 1,
        "cutoff": cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }));
    AuditLog::new(db.clone()).append(record).await?;
    let mut deleted = 0;
    let mut upto = oldest - 1;
    while upto < last {
        upto = (upto + 1000).min(last);
        deleted += audit_log::Entity::delete_many()
            .filter(audit_log::Column::Seq.lte(upto))
            .exec(db)
            .await?
            .rows_affected;
    }
    Ok(deleted)
}

// ---------------------------------------------------------------------------------------------
// Anchors

/// The chain head, written outside the database (a file, the bus) and MACed itself, so that a
/// deleted or replaced tail shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The newest entry anchored.
    pub seq: i64,
    /// Its link.
    pub link: String,
    /// When it was anchored.
    pub at: DateTime<Utc>,
    /// The oldest keyed entry: every entry from it on must be keyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyed_from: Option<i64>,
    /// The id of the key of `mac`.
    pub key: String,
    /// HMAC-SHA-256 of the fields above under that key (hex).
    pub mac: String,
}

impl Anchor {
    /// An anchor of the entry `seq` whose link is `link`, signed with `key`.
    pub fn sign(
        seq: i64,
        link: &str,
        at: DateTime<Utc>,
        keyed_from: Option<i64>,
        key: &AuditKey,
    ) -> Self {
        let at = at.trunc_subsecs(6);
        let mut anchor = Anchor {
            seq,
            link: link.to_owned(),
            at,
            keyed_from,
            key: key.id.clone(),
            mac: String::new(),
        };
        anchor.mac = anchor.compute(key);
        anchor
    }

    fn compute(&self, key: &AuditKey) -> String {
        let mut m = Digester::new(Some(key));
        for part in [
            ANCHOR_TYPE,
            &self.seq.to_string(),
            &self.link,
            &self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            &self.keyed_from.map(|k| k.to_string()).unwrap_or_default(),
            &self.key,
        ] {
            m.update(part.as_bytes());
            m.update(&[0x1f]);
        }
        m.finish()
    }

    /// Whether one of `keys` signed it.
    pub fn authentic(&self, keys: &AuditKeys) -> bool {
        keys.get(&self.key)
            .is_some_and(|key| same(&self.compute(key), &self.mac))
    }

    /// One line of an anchor file (JSON, no newline).
    pub fn to_line(&self) -> String {
        // Serialising a struct of strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The anchors read from a file.
#[derive(Debug, Clone, Default)]
pub struct AnchorFile {
    /// The anchors, in file order.
    pub anchors: Vec<Anchor>,
    /// Line numbers (from 1) that are not an anchor (a line torn by a crash, or not ours).
    pub unreadable: Vec<usize>,
}

/// Reads an anchor file (`Ok(None)` when it does not exist).
pub fn read_anchor_file(path: &Path) -> Result<Option<AnchorFile>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StoreError::Config(format!(
                "reading the audit anchors {}: {e}",
                path.display()
            )))
        }
    };
    let mut out = AnchorFile::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Anchor>(line) {
            Ok(anchor) => out.anchors.push(anchor),
            Err(_) => out.unreadable.push(i + 1),
        }
    }
    Ok(Some(out))
}

/// Appends an anchor to its file (created if missing) and makes it durable. Blocking.
pub fn append_anchor(path: &Path, anchor: &Anchor) -> Result<(), StoreError> {
    let fail = |e: std::io::Error| {
        StoreError::Config(format!("writing the audit anchors {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    // One write per line: with O_APPEND a line is never interleaved with another writer's.
    file.write_all(format!("{}\n", anchor.to_line()).as_bytes())
        .map_err(fail)?;
    file.sync_data().map_err(fail)
}

/// The newest of these anchors that one of `keys` signed.
pub fn newest_authentic<'a>(anchors: &'a [Anchor], keys: &AuditKeys) -> Option<&'a Anchor> {
    anchors
        .iter()
        .filter(|a| a.authentic(keys))
        .max_by_key(|a| (a.seq, a.at))
}

/// The anchor to write now: the newest entry the relay published (so that on the bus the anchor
/// follows the entries it covers), signed with `key`, after checking every entry since `since`
/// (the last anchor this process knows) — its MAC, its link, and that the anchored entry is
/// still the one anchored. `Ok(Err(_))` when that check fails: a log that no longer matches its
/// anchor is not anchored again (that would vouch for the rewrite). `Ok(Ok(None))` when nothing
/// was written since `since`. Records the anchored seq as a hint for [`purge_before`].
pub async fn anchor_head(
    db: &DatabaseConnection,
    key: &AuditKey,
    keys: &AuditKeys,
    since: Option<&Anchor>,
) -> Result<Result<Option<Anchor>, Broken>, StoreError> {
    let head = published_up_to(db).await?;
    let Some((oldest, newest)) = bounds(db).await? else {
        return Ok(match since {
            Some(a) => Err(tail_missing(0, a)),
            None => Ok(None),
        });
    };
    let head = head.min(newest);
    if head < oldest {
        return Ok(Ok(None));
    }
    let keyed_from = match since.and_then(|a| a.keyed_from) {
        Some(k) => Some(k),
        None => audit_log::Entity::find()
            .filter(audit_log::Column::MacKey.is_not_null())
            .order_by_asc(audit_log::Column::Seq)
            .one(db)
            .await?
            .map(|r| r.seq),
    };
    let mut walk = Walk::new(keys, keyed_from);
    let mut after;
    match since.filter(|a| a.seq >= oldest) {
        Some(anchor) => {
            if anchor.seq > newest {
                return Ok(Err(tail_missing(newest, anchor)));
            }
            let Some(row) = audit_log::Entity::find_by_id(anchor.seq).one(db).await? else {
                return Ok(Err(Broken {
                    seq: anchor.seq,
                    reason: format!("entry {} (anchored) is missing", anchor.seq),
                    missing: 1,
                }));
            };
            if !same(&row.hash, &anchor.link) {
                return Ok(Err(replaced(anchor, None)));
            }
            if anchor.seq >= head {
                return Ok(Ok(None));
            }
            walk.start_after(&row);
            after = anchor.seq;
        }
        None => {
            // No anchor to start from: the newest entries up to 1,000, from their stored link.
            after = (head - 1000).max(oldest - 1);
        }
    }
    loop {
        let rows = audit_log::Entity::find()
            .filter(audit_log::Column::Seq.gt(after))
            .filter(audit_log::Column::Seq.lte(head))
            .order_by_asc(audit_log::Column::Seq)
            .limit(1000)
            .all(db)
            .await?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            break;
        };
        for row in &rows {
            if walk.expected.is_none() {
                walk.start_at(row);
            }
            if let Err(broken) = walk.check(row) {
                return Ok(Err(broken));
            }
        }
        after = last;
    }
    let Some(link) = walk
        .prev
        .clone()
        .filter(|_| walk.expected == Some(head + 1))
    else {
        return Ok(Err(Broken {
            seq: walk.expected.unwrap_or(head),
            reason: format!("entries up to {head} are missing"),
            missing: 1,
        }));
    };
    let anchor = Anchor::sign(head, &link, Utc::now(), keyed_from, key);
    set_cursor(db, ANCHORED, head).await?;
    Ok(Ok(Some(anchor)))
}

// ---------------------------------------------------------------------------------------------
// Verifying

/// The first problem verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first bad entry (or the first missing one's sequence number).
    pub seq: i64,
    /// What is wrong.
    pub reason: String,
    /// How many entries are missing (a gap or a deleted tail; 0 otherwise).
    pub missing: u64,
}

/// What [`verify_with`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Entries checked.
    pub checked: u64,
    /// The oldest entry in the table.
    pub first_seq: Option<i64>,
    /// The newest entry in the table.
    pub last_seq: Option<i64>,
    /// How many of the checked entries are keyed.
    pub keyed: u64,
    /// The ids of the keys the checked entries were signed with.
    pub keys_used: BTreeSet<String>,
    /// When entries before this seq were purged by retention: the chain starts from this
    /// entry's stored link.
    pub purged_before: Option<i64>,
    /// The entry that audited that purge.
    pub purge_audited_at: Option<i64>,
    /// Anchors given that one of the keys signed.
    pub anchors_authentic: usize,
    /// Anchors given that none of the keys signed (forged, or of a key not configured).
    pub anchors_rejected: usize,
    /// The newest authentic anchor, which the table was checked against.
    pub newest_anchor: Option<Anchor>,
    /// The first problem; `None`: intact.
    pub broken: Option<Broken>,
}

/// The checks of a walk along the chain, one entry at a time.
struct Walk<'a> {
    keys: &'a AuditKeys,
    keyed_from: Option<i64>,
    /// The next seq expected (`None` before the first entry).
    expected: Option<i64>,
    /// The link the next entry must carry as its previous.
    prev: Option<String>,
    /// A keyed entry was seen: no unkeyed one may follow.
    seen_keyed: bool,
    checked: u64,
    keyed: u64,
    keys_used: BTreeSet<String>,
}

impl<'a> Walk<'a> {
    fn new(keys: &'a AuditKeys, keyed_from: Option<i64>) -> Self {
        Walk {
            keys,
            keyed_from,
            expected: None,
            prev: None,
            seen_keyed: false,
            checked: 0,
            keyed: 0,
            keys_used: BTreeSet::new(),
        }
    }

    /// Starts at `row`, trusting its stored previous link (seq 1: the genesis link).
    fn start_at(&mut self, row: &audit_log::Model) {
        self.expected = Some(row.seq);
        self.prev = Some(if row.seq == 1 {
            GENESIS.to_owned()
        } else {
            row.prev_hash.clone()
        });
    }

    /// Starts after `row`, already checked (an anchored entry).
    fn start_after(&mut self, row: &audit_log::Model) {
        self.expected = Some(row.seq + 1);
        self.prev = Some(row.hash.clone());
        self.seen_keyed = row.mac_key.is_some();
    }

    fn check(&mut self, row: &audit_log::Model) -> Result<(), Broken> {
        let expected = self.expected.unwrap_or(row.seq);
        if row.seq != expected {
            return Err(Broken {
                seq: expected,
                reason: format!("entry {expected} is missing (next is {})", row.seq),
                missing: u64::try_from(row.seq - expected).unwrap_or(0),
            });
        }
        let broken = |reason: String| Broken {
            seq: row.seq,
            reason,
            missing: 0,
        };
        if self.prev.as_deref() != Some(row.prev_hash.as_str()) {
            return Err(broken(
                "its link to the previous entry is broken (an entry before it was deleted, \
                 replaced or renumbered)"
                    .into(),
            ));
        }
        let content = Content::of_row(row);
        match &row.mac_key {
            Some(id) => {
                let Some(key) = self.keys.get(id) else {
                    return Err(broken(format!(
                        "it was signed with audit key {id}, which is not configured here \
                         (configured: {}); add it to [audit] previous_key_files, or it was \
                         forged",
                        describe_ids(&self.keys.ids())
                    )));
                };
                if !same(&content.link(Some(key)), &row.hash) {
                    return Err(broken(
                        "its content does not match its MAC (edited, or the chain was \
                         recomputed without the key)"
                            .into(),
                    ));
                }
                self.seen_keyed = true;
                self.keyed += 1;
                self.keys_used.insert(id.clone());
            }
            None => {
                if self.seen_keyed || self.keyed_from.is_some_and(|k| row.seq >= k) {
                    return Err(broken(
                        "it is unkeyed where the log is keyed: the chain was rewritten from \
                         here without the key"
                            .into(),
                    ));
                }
                if content.link(None) != row.hash {
                    return Err(broken(
                        "its content does not match its hash (edited)".into(),
                    ));
                }
            }
        }
        self.prev = Some(row.hash.clone());
        self.expected = Some(row.seq + 1);
        self.checked += 1;
        Ok(())
    }
}

fn describe_ids(ids: &[String]) -> String {
    if ids.is_empty() {
        "none".into()
    } else {
        ids.join(", ")
    }
}

fn tail_missing(last: i64, anchor: &Anchor) -> Broken {
    let missing = u64::try_from(anchor.seq - last).unwrap_or(0);
    Broken {
        seq: last + 1,
        reason: format!(
            "the newest {missing} entries are missing (seq {} to {}): the log ends at {last} \
             but its head was anchored at seq {} on {}",
            last + 1,
            anchor.seq,
            anchor.seq,
            anchor.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        missing,
    }
}

/// The anchored entry `anchor.seq` is there but another: the entries after the last anchor that
/// matched (`last_good`), up to it, were deleted and written again.
fn replaced(anchor: &Anchor, last_good: Option<i64>) -> Broken {
    let range = match last_good {
        Some(good) => format!("some of entries {} to {}", good + 1, anchor.seq),
        None => format!("entries up to {}", anchor.seq),
    };
    Broken {
        seq: anchor.seq,
        reason: format!(
            "entry {} is not the entry anchored on {}: {range} were deleted and written again",
            anchor.seq,
            anchor.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
        missing: 0,
    }
}

/// Checks the whole chain without keys or anchors: contiguous sequence numbers, each entry's
/// hash, each link. Returns how many entries were checked, or the first broken one. A keyed
/// entry cannot be checked without its key and reads as broken: use [`verify_with`].
pub async fn verify(db: &DatabaseConnection) -> Result<Result<u64, Broken>, StoreError> {
    let v = verify_with(db, &AuditKeys::default(), &[]).await?;
    Ok(match v.broken {
        Some(broken) => Err(broken),
        None => Ok(v.checked),
    })
}

/// Checks the chain with these keys against these anchors (from a file, the bus, or both):
/// every entry's link and MAC, that no unkeyed entry follows a keyed one, that the table still
/// holds every anchored entry unchanged and reaches the newest anchor, and — when the oldest
/// entries are gone — that their purge was audited. Safe while [`purge_before`] runs.
pub async fn verify_with(
    db: &DatabaseConnection,
    keys: &AuditKeys,
    anchors: &[Anchor],
) -> Result<Verification, StoreError> {
    let mut v = Verification::default();
    let mut anchored: BTreeMap<i64, &Anchor> = BTreeMap::new();
    for anchor in anchors {
        if anchor.authentic(keys) {
            v.anchors_authentic += 1;
            anchored.insert(anchor.seq, anchor);
        } else {
            v.anchors_rejected += 1;
        }
    }
    let newest = newest_authentic(anchors, keys);
    v.newest_anchor = newest.cloned();
    let keyed_from = newest.and_then(|a| a.keyed_from);
    let mut walk = Walk::new(keys, keyed_from);
    let mut last_good_anchor: Option<i64> = None;
    let mut after = i64::MIN;
    'pages: loop {
        let rows = audit_log::Entity::find()
            .filter(audit_log::Column::Seq.gt(after))
            .order_by_asc(audit_log::Column::Seq)
            .limit(1000)
            .all(db)
            .await?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            break;
        };
        for row in &rows {
            if walk.expected.is_none() {
                walk.start_at(row);
                v.first_seq = Some(row.seq);
                v.purged_before = (row.seq > 1).then_some(row.seq);
            } else if walk.expected != Some(row.seq)
                && bounds(db)
                    .await?
                    .is_some_and(|(oldest, _)| oldest == row.seq)
            {
                // Everything before this entry went while we walked: a purge ran meanwhile.
                // The chain now starts here.
                walk.start_at(row);
                v.first_seq = Some(row.seq);
                v.purged_before = Some(row.seq);
                v.purge_audited_at = None;
            }
            if let Err(broken) = walk.check(row) {
                v.broken = Some(broken);
                break 'pages;
            }
            if let Some(anchor) = anchored.get(&row.seq) {
                if !same(&anchor.link, &row.hash) {
                    v.broken = Some(replaced(anchor, last_good_anchor));
                    break 'pages;
                }
                last_good_anchor = Some(row.seq);
            }
            if row.action == PURGE_ACTION
                && v.purged_before
                    .is_some_and(|n| row.target.as_deref() == Some(&format!("seq<{n}")))
            {
                v.purge_audited_at = Some(row.seq);
            }
            v.last_seq = Some(row.seq);
        }
        after = last;
    }
    v.checked = walk.checked;
    v.keyed = walk.keyed;
    v.keys_used = std::mem::take(&mut walk.keys_used);
    if v.broken.is_some() {
        return Ok(v);
    }
    if let (Some(n), None) = (v.purged_before, v.purge_audited_at) {
        v.broken = Some(Broken {
            seq: 1,
            reason: format!(
                "the entries before seq {n} are gone and no audited purge of them follows \
                 (an `{PURGE_ACTION}` entry for seq<{n}): they were deleted outside retention"
            ),
            missing: u64::try_from(n - 1).unwrap_or(0),
        });
        return Ok(v);
    }
    if let Some(anchor) = newest {
        let last = v.last_seq.unwrap_or(0);
        if anchor.seq > last {
            v.broken = Some(tail_missing(last, anchor));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_key_file_is_hex_or_raw_and_never_shown() {
        let raw = [0x41u8; 40];
        let hex_text = format!("  {}\n", hex::encode([7u8; 32]));
        let from_hex = AuditKey::from_file_contents(hex_text.as_bytes()).unwrap();
        assert_eq!(
            from_hex.id(),
            AuditKey::from_bytes(&[7u8; 32]).unwrap().id()
        );
        assert_eq!(from_hex.id().len(), 16);
        // 40 raw bytes that happen to be hex digits ('A') but fewer than 64 of them: raw.
        let from_raw = AuditKey::from_file_contents(&raw).unwrap();
        assert_eq!(from_raw.secret, raw.to_vec());
        assert!(AuditKey::from_file_contents(b"short").is_err());
        assert!(AuditKey::from_hex(&hex::encode([1u8; 16])).is_err());
        let shown = format!("{from_hex:?}");
        assert!(!shown.contains(&hex::encode([7u8; 32])), "{shown}");
    }

    #[test]
    fn the_configuration_hides_the_key_and_takes_a_list_of_old_keys_as_text() {
        let config: AuditConfig = serde_json::from_value(serde_json::json!({
            "key": hex::encode([3u8; 32]),
            "previous_key_files": "/keys/a.key, /keys/b.key",
        }))
        .unwrap();
        assert_eq!(
            config.previous_key_files,
            vec![PathBuf::from("/keys/a.key"), PathBuf::from("/keys/b.key")]
        );
        assert_eq!(config.anchor_every_secs, 60);
        assert!(!format!("{config:?}").contains(&hex::encode([3u8; 32])));
        let key = config.configured_key().unwrap().unwrap();
        assert_eq!(key.id(), AuditKey::from_bytes(&[3u8; 32]).unwrap().id());
        let both = AuditConfig {
            key_file: Some("/keys/a.key".into()),
            ..config
        };
        assert!(both.configured_key().is_err());
    }

    #[test]
    fn an_anchor_authenticates_under_its_key_only() {
        let key = AuditKey::from_bytes(&[5u8; 32]).unwrap();
        let other = AuditKey::from_bytes(&[6u8; 32]).unwrap();
        let anchor = Anchor::sign(12, &"ab".repeat(32), Utc::now(), Some(3), &key);
        let line = anchor.to_line();
        let back: Anchor = serde_json::from_str(&line).unwrap();
        assert_eq!(back, anchor);
        assert!(back.authentic(&AuditKeys::new(Some(other.clone()), vec![key.clone()])));
        assert!(!back.authentic(&AuditKeys::new(Some(other), Vec::new())));
        for edit in [
            |a: &mut Anchor| a.seq += 1,
            |a: &mut Anchor| a.keyed_from = None,
            |a: &mut Anchor| a.link = "cd".repeat(32),
        ] {
            let mut forged = anchor.clone();
            edit(&mut forged);
            assert!(!forged.authentic(&AuditKeys::new(Some(key.clone()), Vec::new())));
        }
    }
}
