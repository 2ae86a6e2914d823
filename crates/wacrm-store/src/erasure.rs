//! Erasing a contact from the store (LGPD art. 18, VI; docs/privacy.md).
//!
//! An erasure is a row in `erasures` that lives through its steps (the store, the dead letters,
//! the bus, each CRM connection) so that a crash in the middle resumes where it stopped. While it
//! runs, the row's plan holds what the later steps need (the contact's identities and the CRM
//! objects written for them); when it finishes the plan is cleared and only a keyed hash of the
//! person remains — here and in `erased_subjects`, which tells the projection and the sync
//! engine to drop events from before the erasure that arrive late (Meta retries a webhook for up
//! to days). A message the person sends after the erasure is a new contact.
//!
//! The hashes are HMAC-SHA-256 under a random secret the store generates once (kept like the
//! connections' pseudonym secrets in `crm_secrets`): without it a hash cannot be recomputed from
//! a phone number, so the list of erased people is not a list of phone numbers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sea_orm::sea_query::{Alias, Expr, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use wacrm_core::contact::IdentityKey;
use wacrm_core::E164;

use crate::entities::{
    contact, contact_identity, conversation, crm_ledger, crm_link, dead_letter, message,
    message_status, outbound_request, preference,
};
use crate::StoreError;

/// The name of the erasure secret among the store's pseudonym secrets (a connection name cannot
/// start with `@`).
const SECRET_NAME: &str = "@erasure";

/// Keyed hashes of identities: how erased people are named once their data is gone.
#[derive(Clone)]
pub struct Pseudonymiser {
    key: Vec<u8>,
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymiser(..)")
    }
}

impl Pseudonymiser {
    /// The store's erasure secret, created on first use (instances racing to create it all end
    /// with the one stored first).
    pub async fn load(db: &DatabaseConnection) -> Result<Self, StoreError> {
        Ok(Pseudonymiser {
            key: crate::sync::connection_secret(db, SECRET_NAME).await?,
        })
    }

    /// A pseudonymiser with a given key (tests).
    pub fn with_key(key: &[u8]) -> Self {
        Pseudonymiser { key: key.to_vec() }
    }

    /// The keyed hash of an identity (`phone:+55…`, `bsuid:…`), 32 hex digits.
    pub fn subject(&self, key: &IdentityKey) -> String {
        self.hash(&key.to_string())
    }

    /// The keyed hash of any text, 32 hex digits (128 bits: collisions are not a concern at
    /// the scale of a business's contacts).
    pub fn hash(&self, text: &str) -> String {
        // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable_hmac(),
        };
        mac.update(text.as_bytes());
        let digest = mac.finalize().into_bytes();
        hex::encode(&digest[..16])
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC-SHA-256 accepts keys of every length (RFC 2104 hashes long ones).
    panic!("HMAC-SHA-256 refused a key")
}

/// How the person to erase is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectRef {
    /// wacrm's contact id.
    Contact(String),
    /// A phone number (any spelling that parses).
    Phone(E164),
    /// WhatsApp's business-scoped user id.
    Bsuid(String),
}

/// A contact as the erasure finds it: every contact row that is theirs (the contact, and the
/// contacts merged into it after a number change) and every identity they had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The contact id.
    pub contact_id: String,
    /// Every contact row of the person (the contact and the ones merged into it).
    pub contact_ids: Vec<String>,
    /// Every identity (phones, BSUIDs, wa ids).
    pub keys: Vec<IdentityKey>,
}

impl Subject {
    /// The identity the erasure is filed under (the first phone, else the first identity).
    pub fn primary(&self) -> Option<&IdentityKey> {
        self.keys
            .iter()
            .find(|k| matches!(k, IdentityKey::Phone(_)))
            .or_else(|| self.keys.first())
    }

    /// Every spelling of every identity as it may appear in a stored payload (a webhook's
    /// `wa_id` is digits without `+`; Brazilian mobiles may come without the 9th digit): the
    /// export's [`crate::export::key_needles`].
    pub fn needles(&self) -> Vec<String> {
        crate::export::key_needles(&self.keys)
    }
}

/// Finds the contact an erasure names, with every identity and merged row. `None`: the store
/// holds no such contact (it may still be in a CRM or on the bus: the erasure goes on with the
/// identity it was given).
pub async fn find_subject(
    db: &DatabaseConnection,
    by: &SubjectRef,
) -> Result<Option<Subject>, StoreError> {
    let contact_id = match by {
        SubjectRef::Contact(id) => contact::Entity::find_by_id(id.clone())
            .one(db)
            .await?
            .map(|c| c.merged_into.unwrap_or(c.id)),
        SubjectRef::Phone(phone) => {
            let mut values = vec![phone.as_str().to_owned()];
            values.extend(phone.brazil_legacy_form().map(|p| p.as_str().to_owned()));
            owner_of(db, "phone", &values).await?
        }
        SubjectRef::Bsuid(id) => owner_of(db, "bsuid", std::slice::from_ref(id)).await?,
    };
    let Some(contact_id) = contact_id else {
        return Ok(None);
    };
    let mut contact_ids = vec![contact_id.clone()];
    contact_ids.extend(
        contact::Entity::find()
            .filter(contact::Column::MergedInto.eq(contact_id.clone()))
            .all(db)
            .await?
            .into_iter()
            .map(|c| c.id),
    );
    let keys = contact_identity::Entity::find()
        .filter(contact_identity::Column::ContactId.is_in(contact_ids.clone()))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|i| IdentityKey::from_parts(&i.kind, &i.value))
        .collect();
    Ok(Some(Subject {
        contact_id,
        contact_ids,
        keys,
    }))
}

async fn owner_of(
    db: &DatabaseConnection,
    kind: &str,
    values: &[String],
) -> Result<Option<String>, StoreError> {
    let Some(identity) = contact_identity::Entity::find()
        .filter(contact_identity::Column::Kind.eq(kind))
        .filter(contact_identity::Column::Value.is_in(values.to_vec()))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let owner = contact::Entity::find_by_id(identity.contact_id.clone())
        .one(db)
        .await?
        .and_then(|c| c.merged_into)
        .unwrap_or(identity.contact_id);
    Ok(Some(owner))
}

/// What wacrm wrote to one CRM connection about the person: the erasure asks the CRM to delete
/// it after the store has forgotten the links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmTrace {
    /// The connection.
    pub connection: String,
    /// wacrm's contact key the link is filed under.
    pub contact_key: String,
    /// The CRM contact, when linked.
    pub crm_contact_id: Option<String>,
    /// The CRM objects of the person's messages.
    pub message_crm_ids: Vec<String>,
}

/// The CRM objects the store links to the person, per connection and contact key.
pub async fn crm_traces(
    db: &DatabaseConnection,
    subject: &Subject,
) -> Result<Vec<CrmTrace>, StoreError> {
    let keys: Vec<String> = subject.keys.iter().map(ToString::to_string).collect();
    let links = crm_link::Entity::find()
        .filter(crm_link::Column::ContactKey.is_in(keys))
        .all(db)
        .await?;
    let wamids = message_wamids(db, &subject.contact_ids).await?;
    let mut objects: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for chunk in crate::fixed_shape_chunks(&wamids) {
        for row in crm_ledger::Entity::find()
            .filter(crm_ledger::Column::Wamid.is_in(chunk.to_vec()))
            .all(db)
            .await?
        {
            if let Some(id) = row.crm_id {
                objects.entry(row.connection).or_default().push(id);
            }
        }
    }
    let mut traces: Vec<CrmTrace> = links
        .into_iter()
        .map(|l| CrmTrace {
            message_crm_ids: objects.remove(&l.connection).unwrap_or_default(),
            connection: l.connection,
            contact_key: l.contact_key,
            crm_contact_id: Some(l.crm_id),
        })
        .collect();
    // Messages logged on a connection without a link (a CRM contact found by a person's own
    // search): still erased.
    let primary = subject
        .primary()
        .map(ToString::to_string)
        .unwrap_or_default();
    for (connection, ids) in objects {
        traces.push(CrmTrace {
            connection,
            contact_key: primary.clone(),
            crm_contact_id: None,
            message_crm_ids: ids,
        });
    }
    Ok(traces)
}

async fn message_wamids(
    db: &impl ConnectionTrait,
    contact_ids: &[String],
) -> Result<Vec<String>, StoreError> {
    Ok(message::Entity::find()
        .select_only()
        .column(message::Column::Wamid)
        .filter(message::Column::ContactId.is_in(contact_ids.to_vec()))
        .into_tuple::<String>()
        .all(db)
        .await?)
}

/// Rows the store step removed, by table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scrubbed {
    /// Messages (bodies, media references, context).
    pub messages: u64,
    /// Their delivery statuses.
    pub statuses: u64,
    /// Conversations (window state).
    pub conversations: u64,
    /// Messaging preferences.
    pub preferences: u64,
    /// Send requests (their commands hold the phone and the text).
    pub requests: u64,
    /// CRM ledger rows and links.
    pub crm_rows: u64,
    /// Identities.
    pub identities: u64,
    /// Contact rows (profile name, username).
    pub contacts: u64,
    /// Consent records.
    pub consent: u64,
}

/// Removes everything the store holds on the person in one transaction, and files each of their
/// identities in `erased_subjects` at `erased_at`. Idempotent: a second run finds nothing more
/// (and catches a message the projection stored while the erasure ran).
pub async fn scrub_store(
    db: &DatabaseConnection,
    subject: &Subject,
    pseudonymiser: &Pseudonymiser,
    erased_at: DateTime<Utc>,
) -> Result<Scrubbed, StoreError> {
    let sqlite = db.get_database_backend() == sea_orm::DbBackend::Sqlite;
    let txn = crate::begin_write(db).await?;
    if sqlite {
        // Freed pages are overwritten with zeros, so the deleted rows do not linger in the
        // file's free pages (this connection only; the pool's others keep SQLite's default).
        txn.execute_unprepared("PRAGMA secure_delete = ON").await?;
    }
    let ids = subject.contact_ids.clone();
    let keys: Vec<String> = subject.keys.iter().map(ToString::to_string).collect();
    let wamids = message_wamids(&txn, &ids).await?;
    let mut out = Scrubbed::default();
    for chunk in crate::fixed_shape_chunks(&wamids) {
        out.statuses += message_status::Entity::delete_many()
            .filter(message_status::Column::Wamid.is_in(chunk.to_vec()))
            .exec(&txn)
            .await?
            .rows_affected;
        out.crm_rows += crm_ledger::Entity::delete_many()
            .filter(crm_ledger::Column::Wamid.is_in(chunk.to_vec()))
            .exec(&txn)
            .await?
            .rows_affected;
    }
    out.messages = message::Entity::delete_many()
        .filter(message::Column::ContactId.is_in(ids.clone()))
        .exec(&txn)
        .await?
        .rows_affected;
    out.conversations = conversation::Entity::delete_many()
        .filter(conversation::Column::ContactId.is_in(ids.clone()))
        .exec(&txn)
        .await?
        .rows_affected;
    out.preferences = preference::Entity::delete_many()
        .filter(preference::Column::ContactId.is_in(ids.clone()))
        .exec(&txn)
        .await?
        .rows_affected;
    out.requests = outbound_request::Entity::delete_many()
        .filter(outbound_request::Column::ContactId.is_in(ids.clone()))
        .exec(&txn)
        .await?
        .rows_affected;
    out.crm_rows += crm_link::Entity::delete_many()
        .filter(crm_link::Column::ContactKey.is_in(keys))
        .exec(&txn)
        .await?
        .rows_affected;
    out.consent = delete_consent(&txn, &ids).await?;
    out.identities = contact_identity::Entity::delete_many()
        .filter(contact_identity::Column::ContactId.is_in(ids.clone()))
        .exec(&txn)
        .await?
        .rows_affected;
    out.contacts = contact::Entity::delete_many()
        .filter(contact::Column::Id.is_in(ids))
        .exec(&txn)
        .await?
        .rows_affected;
    for key in &subject.keys {
        let insert = Query::insert()
            .into_table(Alias::new("erased_subjects"))
            .columns([Alias::new("subject"), Alias::new("erased_at")])
            .values([pseudonymiser.subject(key).into(), erased_at.into()])
            .map_err(|e| StoreError::Invalid(format!("erased_subjects insert: {e}")))?
            .on_conflict(
                OnConflict::column(Alias::new("subject"))
                    .update_column(Alias::new("erased_at"))
                    .to_owned(),
            )
            .to_owned();
        let backend = txn.get_database_backend();
        txn.execute(backend.build(&insert)).await?;
    }
    if sqlite {
        txn.execute_unprepared("PRAGMA secure_delete = OFF").await?;
    }
    txn.commit().await?;
    if sqlite {
        // The write-ahead log still holds the pages as they were: copy it back now. With
        // readers active the checkpoint may stop short; SQLite's next checkpoints finish it.
        let _ = db
            .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
            .await;
    }
    Ok(out)
}

/// The contacts' consent records (`consent_records`).
async fn delete_consent(txn: &impl ConnectionTrait, ids: &[String]) -> Result<u64, StoreError> {
    let backend = txn.get_database_backend();
    let delete = Query::delete()
        .from_table(Alias::new("consent_records"))
        .and_where(Expr::col(Alias::new("contact_id")).is_in(ids.to_vec()))
        .to_owned();
    Ok(txn.execute(backend.build(&delete)).await?.rows_affected())
}

/// Empties the dead letters that mention the person (their payload, headers and reasons may
/// hold the phone and a body): the row stays, resolved, as a record that something failed, with
/// nothing of the person in it. Returns how many.
pub async fn scrub_dead_letters(
    db: &DatabaseConnection,
    subject: &Subject,
    erased_at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let needles = subject.needles();
    if needles.is_empty() {
        return Ok(0);
    }
    let mut scrubbed = 0;
    let mut after = String::new();
    loop {
        let page = dead_letter::Entity::find()
            .filter(dead_letter::Column::Id.gt(after.clone()))
            .order_by_asc(dead_letter::Column::Id)
            .limit(500)
            .all(db)
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id.clone();
        for row in page {
            // The export's rule: an identity as a whole token, never inside a longer number.
            if !crate::export::dead_letter_concerns(&row, &needles) {
                continue;
            }
            dead_letter::ActiveModel {
                id: Set(row.id.clone()),
                payload: Set(Vec::new()),
                headers: Set(serde_json::json!({})),
                reason: Set("erased (LGPD): the content was removed".into()),
                last_error: Set(None),
                resolved_at: Set(Some(row.resolved_at.unwrap_or(erased_at))),
                ..Default::default()
            }
            .update(db)
            .await?;
            scrubbed += 1;
        }
    }
    Ok(scrubbed)
}

/// Erased identities, for dropping late events: loaded whole (erasures are rare; a business
/// erasing a thousand people holds a few tens of kilobytes) and reloaded when the table grows.
pub struct ErasedSubjects {
    pseudonymiser: Pseudonymiser,
    cache: Mutex<(u64, HashMap<String, DateTime<Utc>>)>,
}

impl ErasedSubjects {
    /// The lookup over the store's erased subjects.
    pub async fn load(db: &DatabaseConnection) -> Result<Self, StoreError> {
        Ok(ErasedSubjects {
            pseudonymiser: Pseudonymiser::load(db).await?,
            cache: Mutex::new((0, HashMap::new())),
        })
    }

    /// Re-reads the erased subjects when their number changed since the last call (one
    /// `COUNT(*)` per call otherwise). Call once per batch, then ask [`ErasedSubjects::erased_at`].
    pub async fn refresh(&self, db: &impl ConnectionTrait) -> Result<(), StoreError> {
        let backend = db.get_database_backend();
        let count_row = db
            .query_one(
                backend.build(
                    &Query::select()
                        .expr(Expr::col(Alias::new("subject")).count())
                        .from(Alias::new("erased_subjects"))
                        .to_owned(),
                ),
            )
            .await?;
        let count: i64 = match count_row {
            Some(row) => row.try_get_by_index(0)?,
            None => 0,
        };
        let count = count.max(0) as u64;
        let known = self.cache.lock().map(|c| c.0).unwrap_or(u64::MAX);
        if count == known {
            return Ok(());
        }
        let rows = db
            .query_all(
                backend.build(
                    &Query::select()
                        .columns([Alias::new("subject"), Alias::new("erased_at")])
                        .from(Alias::new("erased_subjects"))
                        .to_owned(),
                ),
            )
            .await?;
        let mut map = HashMap::with_capacity(rows.len());
        for row in rows {
            let subject: String = row.try_get("", "subject")?;
            let at: DateTime<Utc> = row.try_get("", "erased_at")?;
            map.insert(subject, at);
        }
        if let Ok(mut cache) = self.cache.lock() {
            *cache = (map.len() as u64, map);
        }
        Ok(())
    }

    /// Whether `event` is about an erased person and happened at or before their erasure: a
    /// late delivery of their past, which must not bring their data back. The person is read
    /// from a contact event's payload (its key is a contact id) and from a conversation
    /// event's key (`<number>/<identity>`).
    pub fn is_event_erased(&self, event: &wacrm_core::event::Event) -> bool {
        event
            .payload
            .contact_identity()
            .or_else(|| event_subject(&event.key))
            .is_some_and(|key| self.is_erased(&key, event.time))
    }

    /// Whether an event about `key` that happened at `at` belongs to an erased past: the
    /// identity was erased at or after `at`. Later events (the person wrote again) are not.
    pub fn is_erased(&self, key: &IdentityKey, at: DateTime<Utc>) -> bool {
        let Ok(cache) = self.cache.lock() else {
            return false;
        };
        if cache.1.is_empty() {
            return false;
        }
        cache
            .1
            .get(&self.pseudonymiser.subject(key))
            .is_some_and(|erased_at| at <= *erased_at)
    }
}

/// The identity a record key names: `<phone number id>/<kind>:<value>` (conversations,
/// commands), or `<kind>:<value>`.
pub fn event_subject(record_key: &str) -> Option<IdentityKey> {
    let identity = record_key
        .split_once('/')
        .map_or(record_key, |(_, identity)| identity);
    let (kind, value) = identity.split_once(':')?;
    IdentityKey::from_parts(kind, value)
}

/// One step of an erasure and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StepState {
    /// Not done yet (or failed and to be tried again).
    Pending {
        /// Attempts so far.
        attempts: u32,
        /// The last failure, if any (never personal data).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_error: Option<String>,
    },
    /// Done.
    Done {
        /// When.
        at: DateTime<Utc>,
        /// What it did, in words (counts).
        detail: String,
    },
    /// A person must finish it (a CRM without an erasure API): what to do.
    Manual {
        /// The instruction.
        instruction: String,
    },
}

impl StepState {
    /// Whether the erasure needs nothing more from wacrm for this step.
    pub fn is_settled(&self) -> bool {
        !matches!(self, StepState::Pending { .. })
    }
}

/// What an unfinished erasure still needs: cleared when it finishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The person, as the store knew them when the erasure began.
    pub subject: Subject,
    /// What each CRM connection holds.
    pub crm: Vec<CrmTrace>,
    /// The time the erasure counts from (events at or before it are dropped).
    pub erased_at: DateTime<Utc>,
}

/// An erasure as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    /// Its id.
    pub id: String,
    /// The keyed hash of the person's primary identity.
    pub subject: String,
    /// `running` or `finished` (every step settled; some may be manual).
    pub state: String,
    /// Each step by name (`store`, `dead_letters`, `bus`, `crm:<connection>`).
    #[schema(value_type = Object)]
    pub steps: BTreeMap<String, StepState>,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// When every step settled.
    pub finished_at: Option<DateTime<Utc>>,
    /// The plan, while running.
    #[serde(skip)]
    pub plan: Option<Plan>,
}

/// The erasure's state while steps remain.
pub const RUNNING: &str = "running";
/// The erasure's state once every step is settled.
pub const FINISHED: &str = "finished";

/// The step names: the store, the dead letters, the bus, then one per CRM connection.
pub mod step {
    /// The store.
    pub const STORE: &str = "store";
    /// The dead letters.
    pub const DEAD_LETTERS: &str = "dead_letters";
    /// The bus.
    pub const BUS: &str = "bus";
    /// The prefix of a CRM connection's step (`crm:<connection>`).
    pub const CRM_PREFIX: &str = "crm:";
}

/// The person an erasure will reach, and the keyed hash it is filed (and audited) under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The person.
    pub subject: Subject,
    /// The keyed hash of their primary identity.
    pub hash: String,
}

/// Finds the person `by` names, for [`file`]: `None` for a contact id the store does not know
/// (a phone or BSUID is erased even when the store holds nothing: a CRM or the bus may).
/// Changes nothing, so the request can be audited, naming the hash, before anything is filed.
pub async fn prepare(
    db: &DatabaseConnection,
    by: &SubjectRef,
) -> Result<Option<Prepared>, StoreError> {
    let subject = match find_subject(db, by).await? {
        Some(subject) => subject,
        None => {
            let key = match by {
                SubjectRef::Contact(_) => return Ok(None),
                SubjectRef::Phone(phone) => IdentityKey::Phone(phone.clone()),
                SubjectRef::Bsuid(id) => IdentityKey::Bsuid(id.clone()),
            };
            Subject {
                contact_id: key.contact_id(),
                contact_ids: vec![key.contact_id()],
                keys: vec![key],
            }
        }
    };
    let Some(primary) = subject.primary().cloned() else {
        return Err(StoreError::Invalid(
            "the contact has no identity to erase".into(),
        ));
    };
    let hash = Pseudonymiser::load(db).await?.subject(&primary);
    Ok(Some(Prepared { subject, hash }))
}

/// Files the erasure of a prepared person with a step per connection in `connections`, or
/// returns the one already running for them.
pub async fn file(
    db: &DatabaseConnection,
    prepared: Prepared,
    connections: &[String],
    requested_by: &str,
) -> Result<Erasure, StoreError> {
    let Prepared { subject, hash } = prepared;
    let crm = crm_traces(db, &subject).await?;
    let mut steps = vec![
        step::STORE.to_owned(),
        step::DEAD_LETTERS.to_owned(),
        step::BUS.to_owned(),
    ];
    steps.extend(
        connections
            .iter()
            .map(|c| format!("{}{c}", step::CRM_PREFIX)),
    );
    // A connection removed from the configuration since it synced the person is asked too:
    // the step waits until it is configured again.
    for trace in &crm {
        let name = format!("{}{}", step::CRM_PREFIX, trace.connection);
        if !steps.contains(&name) {
            steps.push(name);
        }
    }
    let plan = Plan {
        subject,
        crm,
        erased_at: Utc::now(),
    };
    begin(db, &hash, plan, steps, requested_by).await
}

/// Starts an erasure, or returns the one already running for the same person (so a second
/// request, or a retry after a crash, resumes it rather than starting over).
pub async fn begin(
    db: &DatabaseConnection,
    subject_hash: &str,
    plan: Plan,
    steps: Vec<String>,
    requested_by: &str,
) -> Result<Erasure, StoreError> {
    if let Some(running) = running_for(db, subject_hash).await? {
        return Ok(running);
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = Utc::now();
    let steps: BTreeMap<String, StepState> = steps
        .into_iter()
        .map(|s| {
            (
                s,
                StepState::Pending {
                    attempts: 0,
                    last_error: None,
                },
            )
        })
        .collect();
    let insert = Query::insert()
        .into_table(Alias::new("erasures"))
        .columns(
            [
                "id",
                "subject",
                "state",
                "plan",
                "steps",
                "requested_by",
                "requested_at",
                "updated_at",
            ]
            .map(Alias::new),
        )
        .values([
            id.clone().into(),
            subject_hash.into(),
            RUNNING.into(),
            json(&plan)?.into(),
            json(&steps)?.into(),
            requested_by.into(),
            now.into(),
            now.into(),
        ])
        .map_err(|e| StoreError::Invalid(format!("erasures insert: {e}")))?
        .to_owned();
    let backend = db.get_database_backend();
    db.execute(backend.build(&insert)).await?;
    get(db, &id)
        .await?
        .ok_or_else(|| StoreError::Invalid("erasures: the row was not stored".into()))
}

fn json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(format!("erasures: {e}")))
}

const COLUMNS: [&str; 9] = [
    "id",
    "subject",
    "state",
    "plan",
    "steps",
    "requested_by",
    "requested_at",
    "updated_at",
    "finished_at",
];

fn from_row(row: sea_orm::QueryResult) -> Result<Erasure, StoreError> {
    let plan: Option<String> = row.try_get("", "plan")?;
    let steps: String = row.try_get("", "steps")?;
    Ok(Erasure {
        id: row.try_get("", "id")?,
        subject: row.try_get("", "subject")?,
        state: row.try_get("", "state")?,
        steps: serde_json::from_str(&steps)
            .map_err(|e| StoreError::Invalid(format!("erasures.steps: {e}")))?,
        requested_by: row.try_get("", "requested_by")?,
        requested_at: row.try_get("", "requested_at")?,
        finished_at: row.try_get("", "finished_at")?,
        plan: plan
            .map(|p| serde_json::from_str(&p))
            .transpose()
            .map_err(|e| StoreError::Invalid(format!("erasures.plan: {e}")))?,
    })
}

async fn select(
    db: &impl ConnectionTrait,
    filter: impl FnOnce(&mut sea_orm::sea_query::SelectStatement),
) -> Result<Vec<Erasure>, StoreError> {
    let mut query = Query::select();
    query
        .columns(COLUMNS.map(Alias::new))
        .from(Alias::new("erasures"));
    filter(&mut query);
    let backend = db.get_database_backend();
    db.query_all(backend.build(&query))
        .await?
        .into_iter()
        .map(from_row)
        .collect()
}

/// An erasure by id.
pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<Option<Erasure>, StoreError> {
    Ok(select(db, |q| {
        q.and_where(Expr::col(Alias::new("id")).eq(id));
    })
    .await?
    .into_iter()
    .next())
}

/// The running erasure of a person, if any.
pub async fn running_for(
    db: &impl ConnectionTrait,
    subject_hash: &str,
) -> Result<Option<Erasure>, StoreError> {
    Ok(select(db, |q| {
        q.and_where(Expr::col(Alias::new("subject")).eq(subject_hash))
            .and_where(Expr::col(Alias::new("state")).eq(RUNNING));
    })
    .await?
    .into_iter()
    .next())
}

/// Every erasure still running (for the worker that resumes them).
pub async fn running(db: &impl ConnectionTrait) -> Result<Vec<Erasure>, StoreError> {
    select(db, |q| {
        q.and_where(Expr::col(Alias::new("state")).eq(RUNNING));
    })
    .await
}

/// Records a step's new state; when every step is settled the erasure finishes and its plan
/// (the identities and CRM ids) is cleared.
pub async fn set_step(
    db: &DatabaseConnection,
    id: &str,
    step: &str,
    state: StepState,
) -> Result<Erasure, StoreError> {
    let txn = crate::begin_write(db).await?;
    let mut erasure = get(&txn, id)
        .await?
        .ok_or_else(|| StoreError::Invalid(format!("erasure {id} not found")))?;
    erasure.steps.insert(step.to_owned(), state);
    let now = Utc::now();
    let finished = erasure.steps.values().all(StepState::is_settled);
    let mut update = Query::update();
    update
        .table(Alias::new("erasures"))
        .value(Alias::new("steps"), json(&erasure.steps)?)
        .value(Alias::new("updated_at"), now)
        .and_where(Expr::col(Alias::new("id")).eq(id));
    if finished {
        update
            .value(Alias::new("state"), FINISHED)
            .value(Alias::new("plan"), Option::<String>::None)
            .value(Alias::new("finished_at"), now);
        erasure.state = FINISHED.to_owned();
        erasure.plan = None;
        erasure.finished_at = Some(now);
    }
    let backend = txn.get_database_backend();
    txn.execute(backend.build(&update)).await?;
    txn.commit().await?;
    Ok(erasure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(p: &str) -> IdentityKey {
        IdentityKey::Phone(E164::parse(p).unwrap())
    }

    #[test]
    fn record_keys_name_their_person() {
        assert_eq!(
            event_subject("106540352242922/phone:+5511987654321"),
            Some(phone("+5511987654321"))
        );
        assert_eq!(
            event_subject("bsuid:BR.abc123"),
            Some(IdentityKey::Bsuid("BR.abc123".into()))
        );
        assert_eq!(event_subject("audit"), None);
    }

    #[test]
    fn needles_cover_the_webhook_spellings() {
        let subject = Subject {
            contact_id: "c".into(),
            contact_ids: vec!["c".into()],
            keys: vec![
                phone("+5511987654321"),
                IdentityKey::Bsuid("BR.abc123".into()),
            ],
        };
        let needles = subject.needles();
        // `wa_id` is digits; Brazilian mobiles also come without the 9th digit.
        for n in ["5511987654321", "551187654321", "BR.abc123"] {
            assert!(needles.contains(&n.to_owned()), "{n} in {needles:?}");
        }
    }

    #[test]
    fn only_the_erased_past_is_dropped() {
        let erased = ErasedSubjects {
            pseudonymiser: Pseudonymiser::with_key(b"k"),
            cache: Mutex::new((0, HashMap::new())),
        };
        let key = phone("+5511987654321");
        let at = Utc::now();
        erased
            .cache
            .lock()
            .unwrap()
            .1
            .insert(erased.pseudonymiser.subject(&key), at);
        assert!(erased.is_erased(&key, at - chrono::Duration::days(3)));
        assert!(erased.is_erased(&key, at));
        assert!(!erased.is_erased(&key, at + chrono::Duration::seconds(1)));
        assert!(!erased.is_erased(&phone("+5511987654322"), at));
    }

    #[test]
    fn hashes_depend_on_the_key() {
        let key = phone("+5511987654321");
        let a = Pseudonymiser::with_key(b"one").subject(&key);
        assert_eq!(a.len(), 32);
        assert_ne!(a, Pseudonymiser::with_key(b"two").subject(&key));
        assert!(!a.contains("5511987654321"));
    }
}
