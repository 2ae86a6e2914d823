//! The audit log: append-only and tamper-evident.
//!
//! Every entry stores the SHA-256 of its own content and of the previous entry's hash, and the
//! sequence numbers have no gaps, so [`verify`] finds an edited row (its hash no longer
//! matches), a deleted one (a gap, or a broken link) and a reordered one (a broken link).
//!
//! The business number and the detail of an entry came later: they are hashed only when
//! present, so the entries written before them still verify.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::entities::audit_log;
use crate::StoreError;

/// The hash before the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
    /// The business number the entry concerns, when one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    /// More about the call (JSON), when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

/// The hash of an entry's fields up to its business number; the detail is added by the caller
/// (as the text stored).
fn hash_parts(seq: i64, at: DateTime<Utc>, e: &NewEntry, prev: &str) -> Sha256 {
    let mut h = Sha256::new();
    for part in [
        seq.to_string().as_str(),
        &at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        &e.key_id,
        &e.actor,
        &e.action,
        e.contact_id.as_deref().unwrap_or(""),
        e.target.as_deref().unwrap_or(""),
        &e.outcome,
        prev,
    ] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    // The later fields are hashed only when present (each behind a tag of its own, after the
    // link), so an entry written before they existed hashes as it did, and adding or removing
    // one breaks the hash.
    if let Some(number) = &e.phone_number_id {
        h.update(b"phone_number_id=");
        h.update(number.as_bytes());
        h.update([0x1f]);
    }
    h
}

fn hash_detail(h: &mut Sha256, detail: Option<&str>) {
    if let Some(detail) = detail {
        h.update(b"detail=");
        h.update(detail.as_bytes());
        h.update([0x1f]);
    }
}

fn hash(seq: i64, at: DateTime<Utc>, e: &NewEntry, prev: &str) -> String {
    let mut h = hash_parts(seq, at, e, prev);
    hash_detail(&mut h, detail_text(e).as_deref());
    hex::encode(h.finalize())
}

/// The detail as stored (and hashed): compact JSON text.
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
    }
}

/// The audit log of a store. Appends are serialised in this process; concurrent writers in
/// other processes are resolved by the sequence's primary key (the loser retries).
pub struct AuditLog {
    db: DatabaseConnection,
    lock: Mutex<()>,
}

impl AuditLog {
    /// The audit log of a database.
    pub fn new(db: DatabaseConnection) -> Self {
        AuditLog {
            db,
            lock: Mutex::new(()),
        }
    }

    /// Appends an entry.
    pub async fn append(&self, new: NewEntry) -> Result<Entry, StoreError> {
        let _guard = self.lock.lock().await;
        let mut last_error = None;
        for _ in 0..10 {
            let last = audit_log::Entity::find()
                .order_by_desc(audit_log::Column::Seq)
                .one(&self.db)
                .await?;
            let (seq, prev) = match &last {
                Some(l) => (l.seq + 1, l.hash.clone()),
                None => (1, GENESIS.to_owned()),
            };
            // Stored timestamps keep microseconds on both databases.
            let at = Utc::now().trunc_subsecs(6);
            let digest = hash(seq, at, &new, &prev);
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
                hash: Set(digest),
                phone_number_id: Set(new.phone_number_id.clone()),
                detail: Set(detail_text(&new)),
            };
            match audit_log::Entity::insert(row.clone())
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

/// The last entry published on the bus (0 when none).
pub async fn published_up_to(db: &DatabaseConnection) -> Result<i64, StoreError> {
    Ok(
        crate::entities::relay_cursor::Entity::find_by_id(RELAY.to_owned())
            .one(db)
            .await?
            .map_or(0, |c| c.position),
    )
}

/// Records that entries up to `seq` are published on the bus.
pub async fn mark_published(db: &DatabaseConnection, seq: i64) -> Result<(), StoreError> {
    use crate::entities::relay_cursor;
    use sea_orm::sea_query::OnConflict;
    let row = relay_cursor::ActiveModel {
        name: sea_orm::ActiveValue::Set(RELAY.to_owned()),
        position: sea_orm::ActiveValue::Set(seq),
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

/// The hash a stored row should carry. The detail is hashed as stored (its text), so a detail
/// edited in place — even to other JSON meaning the same — breaks it.
fn stored_hash(row: &audit_log::Model) -> String {
    let new = NewEntry {
        key_id: row.key_id.clone(),
        actor: row.actor.clone(),
        action: row.action.clone(),
        contact_id: row.contact_id.clone(),
        target: row.target.clone(),
        outcome: row.outcome.clone(),
        phone_number_id: row.phone_number_id.clone(),
        detail: None,
    };
    let mut h = hash_parts(row.seq, row.at, &new, &row.prev_hash);
    hash_detail(&mut h, row.detail.as_deref());
    hex::encode(h.finalize())
}

/// The first problem [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The entry (or the missing one's sequence number).
    pub seq: i64,
    /// What is wrong.
    pub reason: String,
}

/// Checks the whole chain: contiguous sequence numbers, each entry's hash, each link.
/// Returns how many entries were checked, or the first broken one.
pub async fn verify(db: &DatabaseConnection) -> Result<Result<u64, Broken>, StoreError> {
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_owned();
    let mut after = 0i64;
    loop {
        let rows = audit_log::Entity::find()
            .filter(audit_log::Column::Seq.gt(after))
            .order_by_asc(audit_log::Column::Seq)
            .limit(1000)
            .all(db)
            .await?;
        if rows.is_empty() {
            return Ok(Ok((expected_seq - 1) as u64));
        }
        for row in rows {
            if row.seq != expected_seq {
                return Ok(Err(Broken {
                    seq: expected_seq,
                    reason: format!("entry {expected_seq} is missing (next is {})", row.seq),
                }));
            }
            if row.prev_hash != prev {
                return Ok(Err(Broken {
                    seq: row.seq,
                    reason: "its link to the previous entry is broken".into(),
                }));
            }
            if stored_hash(&row) != row.hash {
                return Ok(Err(Broken {
                    seq: row.seq,
                    reason: "its content does not match its hash (edited)".into(),
                }));
            }
            prev = row.hash.clone();
            after = row.seq;
            expected_seq += 1;
        }
    }
}
