//! The store projection: a consumer group that keeps the store in step with the bus.
//!
//! Each batch is applied in one database transaction and committed on the bus only after the
//! transaction committed. Every write is idempotent (keyed by wamid, by wamid + state + time,
//! by dead-letter id, …), so a batch delivered again after a crash changes nothing, and
//! replaying the whole bus gives the same store. Contact ids are derived from the first
//! identity seen and contact creation times from WhatsApp's times, so a replay into an empty
//! database gives the same ids too.

mod lite;
mod ops;
mod sea;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection};
use wacrm_bus::cloudevents::{self, decode_event};
use wacrm_bus::runner::{Handled, Handler, HandlerError, LingerMode, RunnerConfig};
use wacrm_bus::{Record, Topics};
use wacrm_core::contact::{ContactIdentity, IdentityKey};
use wacrm_core::event::{Event, EventPayload};
use wacrm_core::message::{Direction, Message};
use wacrm_core::status::{DeliveryState, MessageStatus, MetaError, StatusUpdate};

use self::lite::LiteStore;
use self::ops::Ops;
use self::sea::SeaOps;
use crate::entities::{
    contact, contact_identity, conversation, dead_letter, message, message_status, platform_error,
    preference,
};
use crate::StoreError;

/// The projection's consumer group.
pub const GROUP: &str = "wacrm-store";

/// The contact id a new contact gets from its first identity ([`IdentityKey::contact_id`]).
pub fn contact_id_for(key: &IdentityKey) -> String {
    key.contact_id()
}

/// The store projection handler.
pub struct Projection {
    db: DatabaseConnection,
    /// The SQLite store file on a connection of the projection's own (see [`lite`]); `None` on
    /// PostgreSQL and in-memory SQLite, which go through `db`.
    lite: Option<LiteStore>,
    topics: Topics,
    /// Erased people, whose late events are dropped (loaded with the first batch).
    erased: Option<crate::erasure::ErasedSubjects>,
}

impl Projection {
    /// A projection writing to `db`: on a SQLite file through a connection of its own, which
    /// runs each batch on the projection's thread, otherwise through `db`.
    pub fn new(db: DatabaseConnection, topics: Topics) -> Self {
        let lite = sqlite_file(&db).and_then(|path| match LiteStore::open(&path) {
            Ok(lite) => Some(lite),
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(),
                    "store projection: cannot open its own SQLite connection; writing through the pool");
                None
            }
        });
        Projection {
            db,
            lite,
            topics,
            erased: None,
        }
    }

    /// A projection writing through `db`'s pool even on a SQLite file, as it does on
    /// PostgreSQL (the tests run the projection both ways).
    pub fn through_pool(db: DatabaseConnection, topics: Topics) -> Self {
        Projection {
            db,
            lite: None,
            topics,
            erased: None,
        }
    }

    /// Whether batches go through a SQLite connection of the projection's own.
    pub fn has_own_connection(&self) -> bool {
        self.lite.is_some()
    }

    /// How the projection's runner batches: records wait up to `linger` (counted from when the
    /// bus stored them) so that a moderate flow is stored in a few large batches a second. The
    /// projection's cost is mostly per batch (its reads ahead, one statement per chunk, the
    /// commit and the hand-offs to the database), so one batch per append at 1,000 webhooks/s
    /// cost more than half a core. A consumer that is behind gets full batches at once.
    pub fn runner_config(linger: std::time::Duration) -> RunnerConfig {
        let mut config = RunnerConfig::new(GROUP);
        config.linger = linger;
        config.linger_mode = LingerMode::Sleep;
        config
    }

    /// The topics the projection consumes.
    pub fn topics(topics: &Topics) -> Vec<String> {
        vec![
            topics.conversations.clone(),
            topics.contacts.clone(),
            topics.dead_letters.clone(),
        ]
    }

    /// Applies decoded items in one transaction.
    async fn apply_all(&self, items: &[Item<'_>]) -> Result<(), (usize, StoreError)> {
        if let Some(lite) = &self.lite {
            lite.begin().map_err(|e| (items.len(), e))?;
            let result = apply_items(lite, items)
                .await
                .and_then(|()| lite.commit().map_err(|e| (items.len(), e)));
            if result.is_err() {
                lite.rollback();
            }
            return result;
        }
        let txn = crate::begin_write(&self.db)
            .await
            .map_err(|e| (items.len(), e.into()))?;
        apply_items(&SeaOps::new(&txn), items).await?;
        txn.commit().await.map_err(|e| (items.len(), e.into()))?;
        Ok(())
    }
}

/// The file of a SQLite store on disk (`None`: PostgreSQL, or SQLite in memory).
fn sqlite_file(db: &DatabaseConnection) -> Option<std::path::PathBuf> {
    if db.get_database_backend() != DatabaseBackend::Sqlite {
        return None;
    }
    let options = db.get_sqlite_connection_pool().connect_options();
    let path = options.get_filename();
    // sqlx names in-memory databases `file:sqlx-in-memory-…` (or `:memory:`).
    let text = path.to_string_lossy();
    (path.is_file() && !text.starts_with("file:") && text != ":memory:").then(|| path.to_owned())
}

/// Applies decoded items inside the caller's transaction; on failure, the index of the item to
/// blame (`items.len()`: none of them, retry).
async fn apply_items<O: Ops>(ops: &O, items: &[Item<'_>]) -> Result<(), (usize, StoreError)> {
    let mut writer = BatchWriter::new(ops);
    let events: Vec<&Event> = items
        .iter()
        .filter_map(|item| match item {
            Item::Event(event) => Some(event.as_ref()),
            Item::DeadLetter(_) => None,
        })
        .collect();
    // Not one event's fault: `items.len()` makes the runner retry, never dead-letter.
    writer
        .read_ahead(&events)
        .await
        .map_err(|e| (items.len(), e))?;
    for (index, item) in items.iter().enumerate() {
        let result = match item {
            Item::Event(event) => writer.apply_event(event).await,
            Item::DeadLetter(record) => ops.insert_dead_letter(dead_letter_row(record)).await,
        };
        result.map_err(|e| (index, e))?;
    }
    writer.flush().await.map_err(|e| (items.len(), e))
}

enum Item<'a> {
    Event(Box<Event>),
    DeadLetter(&'a Record),
}

#[async_trait]
impl Handler for Projection {
    async fn handle(&mut self, records: &[Record]) -> Result<Handled, HandlerError> {
        let erased = match self.erased.take() {
            Some(erased) => erased,
            None => crate::erasure::ErasedSubjects::load(&self.db)
                .await
                .map_err(|e| HandlerError::Retryable(e.to_string()))?,
        };
        let refreshed = erased.refresh(&self.db).await;
        let erased = &*self.erased.insert(erased);
        refreshed.map_err(|e| HandlerError::Retryable(e.to_string()))?;
        let mut items = Vec::with_capacity(records.len());
        // The record each item came from (dropped records have none).
        let mut origin = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            if record.topic == self.topics.dead_letters {
                items.push(Item::DeadLetter(record));
                origin.push(index);
                continue;
            }
            match decode_event(record) {
                // A late delivery of an erased person's past (docs/privacy.md).
                Ok(event) if erased.is_event_erased(&event) => {
                    metrics::counter!("wacrm_erased_events_dropped_total", "consumer" => "store")
                        .increment(1);
                }
                Ok(event) => {
                    items.push(Item::Event(Box::new(event)));
                    origin.push(index);
                }
                Err(e) => {
                    return Err(HandlerError::Permanent {
                        index,
                        reason: e.to_string(),
                    })
                }
            }
        }
        let result = self.apply_all(&items).await.map_err(|(index, e)| {
            // An item's fault is its record's (`records.len()`: none of them).
            (origin.get(index).copied().unwrap_or(records.len()), e)
        });
        match result {
            Ok(()) => Ok(Handled::default()),
            Err((index, e)) => match e.class() {
                wacrm_core::ErrorClass::DeadLetter if index < records.len() => {
                    Err(HandlerError::Permanent {
                        index,
                        reason: e.to_string(),
                    })
                }
                wacrm_core::ErrorClass::Fatal => Err(HandlerError::Fatal(e.to_string())),
                // The database refused something in the batch: the runner isolates it.
                _ if e.is_data_error() => Err(HandlerError::Data(e.to_string())),
                _ => Err(HandlerError::Retryable(e.to_string())),
            },
        }
    }
}

/// Applies one event to the store (inside the caller's transaction).
pub async fn apply_event<C: ConnectionTrait>(db: &C, event: &Event) -> Result<(), StoreError> {
    let ops = SeaOps::new(db);
    let mut writer = BatchWriter::new(&ops);
    writer.apply_event(event).await?;
    writer.flush().await
}

/// Conversation times a batch moves forward, written once per conversation at its end.
type Touches = BTreeMap<(String, String), (Option<DateTime<Utc>>, Option<DateTime<Utc>>)>;

/// Applies a batch of events inside one transaction, doing per batch what need not be done per
/// event: the owners of the batch's identities and their profiles are read ahead in a few
/// queries, messages are inserted a chunk per statement when the batch is flushed (or before a
/// merge), and each conversation's last-message times are written once, at the end. The store
/// it leaves is the one applying the events one by one leaves.
struct BatchWriter<'o, O> {
    ops: &'o O,
    /// Identity keys (sorted) → the contact that owns all of them, as resolved in this batch.
    contacts: HashMap<Vec<IdentityKey>, String>,
    /// Messages not inserted yet, in event order (see [`BatchWriter::flush_messages`]).
    messages: Vec<message::Model>,
    touches: Touches,
    /// Identity keys whose owner this batch knows ([`BatchWriter::read_ahead`], then every
    /// link and merge it writes) → the owning contact, `None` for a key not stored.
    owners: HashMap<IdentityKey, Option<String>>,
    /// Profiles of the contacts this batch touched, kept in step with the profile updates it
    /// writes, so an update that would change nothing is not sent.
    stored_profiles: HashMap<String, StoredProfile>,
}

/// A contact's profile as stored.
struct StoredProfile {
    name: Option<String>,
    username: Option<String>,
    updated_at: DateTime<Utc>,
}

impl From<contact::Model> for StoredProfile {
    fn from(c: contact::Model) -> Self {
        StoredProfile {
            name: c.display_name,
            username: c.username,
            updated_at: c.updated_at,
        }
    }
}

impl StoredProfile {
    /// Whether [`Ops::update_profile`] with this report changes the row (its conditions, in
    /// memory).
    fn changed_by(&self, name: Option<&str>, username: Option<&str>, at: DateTime<Utc>) -> bool {
        self.updated_at <= at
            && (name.is_some_and(|n| self.name.as_deref() != Some(n))
                || username.is_some_and(|u| self.username.as_deref() != Some(u)))
    }

    fn apply(&mut self, name: Option<&str>, username: Option<&str>, at: DateTime<Utc>) {
        if let Some(n) = name {
            self.name = Some(n.to_owned());
        }
        if let Some(u) = username {
            self.username = Some(u.to_owned());
        }
        self.updated_at = at;
    }
}

impl<'o, O: Ops> BatchWriter<'o, O> {
    /// A writer over a transaction's statements.
    fn new(ops: &'o O) -> Self {
        BatchWriter {
            ops,
            contacts: HashMap::new(),
            messages: Vec::new(),
            touches: Touches::new(),
            owners: HashMap::new(),
            stored_profiles: HashMap::new(),
        }
    }

    /// Reads, a few queries for the whole batch, the owners of the identities its messages and
    /// contact updates name and those contacts' profiles, which the events would otherwise look
    /// up one statement each.
    async fn read_ahead(&mut self, events: &[&Event]) -> Result<(), StoreError> {
        let keys: BTreeSet<IdentityKey> = events
            .iter()
            .flat_map(|event| match &event.payload {
                EventPayload::MessageReceived(m) | EventPayload::MessageSent(m) => {
                    m.contact.identity.keys()
                }
                EventPayload::ContactUpdated(c) => c.profile.identity.keys(),
                _ => Vec::new(),
            })
            .filter(|key| !self.owners.contains_key(key))
            .collect();
        let keys: Vec<IdentityKey> = keys.into_iter().collect();
        for chunk in crate::fixed_shape_chunks(&keys) {
            let stored: HashMap<(String, String), String> = self
                .ops
                .identity_owners(chunk)
                .await?
                .into_iter()
                .map(|(kind, value, owner)| ((kind, value), owner))
                .collect();
            for key in chunk {
                let owner = stored
                    .get(&(key.kind().to_owned(), key.value().to_owned()))
                    .cloned();
                self.owners.insert(key.clone(), owner);
            }
        }
        let contact_ids: Vec<String> = self
            .owners
            .values()
            .flatten()
            .filter(|id| !self.stored_profiles.contains_key(*id))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in crate::fixed_shape_chunks(&contact_ids) {
            for c in self.ops.contacts(chunk).await? {
                self.stored_profiles.insert(c.id.clone(), c.into());
            }
        }
        Ok(())
    }

    /// Writes what the batch deferred. Call it before committing.
    async fn flush(&mut self) -> Result<(), StoreError> {
        self.flush_messages().await?;
        let touches: Vec<_> = std::mem::take(&mut self.touches).into_iter().collect();
        for chunk in crate::fixed_shape_chunks(&touches) {
            let keys: Vec<&(String, String)> = chunk.iter().map(|(key, _)| key).collect();
            let current: HashMap<(String, String), conversation::Model> = self
                .ops
                .conversations(&keys)
                .await?
                .into_iter()
                .map(|c| ((c.phone_number_id.clone(), c.contact_id.clone()), c))
                .collect();
            let moved: Vec<conversation::Model> = chunk
                .iter()
                .filter_map(|(key, times)| moved_forward(key, current.get(key), *times))
                .collect();
            // The times were computed from the rows just read, inside this transaction.
            for rows in crate::fixed_shape_chunks(&moved) {
                self.ops.upsert_conversations(rows).await?;
            }
        }
        Ok(())
    }

    /// Moves a conversation's last-message times forward (at the end of the batch: taking the
    /// latest of several times gives what touching once per event would).
    fn touch(
        &mut self,
        phone_number_id: &str,
        contact_id: &str,
        message_at: Option<DateTime<Utc>>,
        inbound_at: Option<DateTime<Utc>>,
    ) {
        let entry = self
            .touches
            .entry((phone_number_id.to_owned(), contact_id.to_owned()))
            .or_default();
        entry.0 = entry.0.max(message_at);
        entry.1 = entry.1.max(inbound_at);
    }

    /// Applies one event.
    async fn apply_event(&mut self, event: &Event) -> Result<(), StoreError> {
        let ops = self.ops;
        match &event.payload {
            EventPayload::MessageReceived(m) | EventPayload::MessageSent(m) => {
                self.apply_message(&event.id.to_string(), m).await
            }
            // A status of a message still buffered finds no row and stays in the history,
            // which the message takes when it is inserted (as for a status that came first).
            EventPayload::StatusChanged(s) => self.apply_status(s).await,
            EventPayload::ContactUpdated(c) => self
                .resolve_contact(
                    &c.profile.identity.keys(),
                    c.profile.name.as_deref(),
                    c.profile.username.as_deref(),
                    event.time,
                )
                .await
                .map(drop),
            EventPayload::ContactIdentityChanged(change) => {
                let mut keys = change.old.keys();
                keys.extend(change.new.keys());
                self.resolve_contact(&keys, None, None, event.time)
                    .await
                    .map(drop)
            }
            EventPayload::PreferenceChanged(p) => {
                let contact_id = self
                    .resolve_contact(&p.contact.keys(), None, None, event.time)
                    .await?;
                // A marketing stop / resume made in WhatsApp is also a consent decision, limited
                // to the number it was made on; keyed by the event, so a replay adds nothing.
                if let Some(c) = wacrm_core::optout::consent_of(p) {
                    ops.insert_consent(crate::consent::ConsentRow {
                        id: event.id.to_string(),
                        contact_id: contact_id.clone(),
                        purpose: wacrm_core::consent::Purpose::Marketing.as_string(),
                        granted: c.granted,
                        channel: "whatsapp".to_owned(),
                        source: c.source.to_owned(),
                        recorded_by: c.recorded_by.to_owned(),
                        key_id: None,
                        phone_number_id: Some(p.business.phone_number_id.clone()),
                        at: event.time,
                        recorded_at: event.time,
                    })
                    .await?;
                }
                apply_preference(
                    ops,
                    preference::Model {
                        contact_id,
                        phone_number_id: p.business.phone_number_id.clone(),
                        category: p.category.clone(),
                        value: p.value.clone(),
                        updated_at: event.time,
                    },
                )
                .await
            }
            EventPayload::Call(call) => {
                let contact_id = self
                    .resolve_contact(&call.contact.keys(), None, None, call.timestamp)
                    .await?;
                // A call the contact places opens the service window like a message.
                let inbound_at = (call.direction == Direction::Inbound && call.event == "connect")
                    .then_some(call.timestamp);
                self.touch(
                    &call.business.phone_number_id,
                    &contact_id,
                    Some(call.timestamp),
                    inbound_at,
                );
                Ok(())
            }
            // Requests and their failures are the sender's state (`outbound_requests`); audit
            // entries are the audit log's own. Neither is on the topics the projection reads.
            EventPayload::SendRequested(_)
            | EventPayload::ReadRequested(_)
            | EventPayload::SendFailed(_)
            | EventPayload::AuditRecorded(_)
            // The erasure itself removed the rows; its event is for other consumers.
            | EventPayload::ContactErased(_) => Ok(()),
            EventPayload::PlatformError(e) => {
                ops.insert_platform_error(platform_error::Model {
                    event_id: event.id.to_string(),
                    phone_number_id: e.business.phone_number_id.clone(),
                    errors: json(&e.errors)?,
                    received_at: event.time,
                })
                .await
            }
        }
    }

    /// Finds the contact of these identity keys, creating it or linking new keys as needed. When
    /// the keys belong to several contacts (a number change, a Brazilian number seen in both forms
    /// before this version), they are merged into the oldest one.
    async fn resolve_contact(
        &mut self,
        keys: &[IdentityKey],
        name: Option<&str>,
        username: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let ops = self.ops;
        let first = keys
            .first()
            .ok_or_else(|| StoreError::Invalid("contact without any identity".into()))?;
        let mut cache_key = keys.to_vec();
        cache_key.sort();
        let contact_id = match self.contacts.get(&cache_key) {
            // Every key already belongs to this contact: nothing to look up or link.
            Some(id) => id.clone(),
            None => {
                let id = self
                    .link_identities(keys, first, name, username, at)
                    .await?;
                self.contacts.insert(cache_key, id.clone());
                id
            }
        };
        if name.is_some() || username.is_some() {
            if !self.stored_profiles.contains_key(&contact_id) {
                if let Some(c) = ops
                    .contacts(std::slice::from_ref(&contact_id))
                    .await?
                    .into_iter()
                    .next()
                {
                    self.stored_profiles.insert(contact_id.clone(), c.into());
                }
            }
            let stored = self.stored_profiles.get_mut(&contact_id);
            if stored
                .as_ref()
                .is_none_or(|s| s.changed_by(name, username, at))
            {
                // Only a report at least as new as the last one changes the profile (a late,
                // older message does not bring back an old name), and only when something
                // differs (no write per message on the hot path).
                ops.update_profile(&contact_id, name, username, at).await?;
                if let Some(stored) = stored {
                    stored.apply(name, username, at);
                }
            }
        }
        Ok(contact_id)
    }

    /// Finds or creates the contact of these keys and links the keys it does not hold yet.
    async fn link_identities(
        &mut self,
        keys: &[IdentityKey],
        first: &IdentityKey,
        name: Option<&str>,
        username: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let ops = self.ops;
        // (kind, value, contact) of the keys already stored.
        let known: Option<Vec<&Option<String>>> = keys.iter().map(|k| self.owners.get(k)).collect();
        let found: Vec<(String, String, String)> = if let Some(known) = known {
            keys.iter()
                .zip(known)
                .filter_map(|(k, owner)| {
                    Some((k.kind().to_owned(), k.value().to_owned(), owner.clone()?))
                })
                .collect()
        } else {
            ops.identity_owners(keys).await?
        };
        let owners: BTreeSet<String> = found.iter().map(|f| f.2.clone()).collect();
        let contact_id = match owners.len() {
            0 => {
                let id = contact_id_for(first);
                let row = contact::Model {
                    id: id.clone(),
                    display_name: name.map(str::to_owned),
                    username: username.map(str::to_owned),
                    merged_into: None,
                    created_at: at,
                    updated_at: at,
                };
                if ops.insert_contact(row).await? == 1 {
                    self.stored_profiles.insert(
                        id.clone(),
                        StoredProfile {
                            name: name.map(str::to_owned),
                            username: username.map(str::to_owned),
                            updated_at: at,
                        },
                    );
                }
                id
            }
            1 => owners.into_iter().next().unwrap_or_default(),
            _ => self.merge_contacts(&owners).await?,
        };
        for key in keys {
            let known = found
                .iter()
                .any(|f| f.0 == key.kind() && f.1 == key.value());
            if !known {
                ops.insert_identity(contact_identity::Model {
                    kind: key.kind().to_owned(),
                    value: key.value().to_owned(),
                    contact_id: contact_id.clone(),
                    created_at: at,
                })
                .await?;
                self.owners.insert(key.clone(), Some(contact_id.clone()));
            }
        }
        Ok(contact_id)
    }

    /// Merges contacts into the oldest of them; returns the survivor.
    async fn merge_contacts(&mut self, ids: &BTreeSet<String>) -> Result<String, StoreError> {
        // A merge reads and moves conversations and re-owns identities: write the deferred times
        // first, and forget what this batch resolved.
        self.flush().await?;
        self.contacts.clear();
        let ops = self.ops;
        let ids_vec: Vec<String> = ids.iter().cloned().collect();
        let mut contacts = ops.contacts(&ids_vec).await?;
        contacts.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let survivor = contacts
            .first()
            .map(|c| c.id.clone())
            .or_else(|| ids.iter().next().cloned())
            .unwrap_or_default();
        for other in ids.iter().filter(|id| **id != survivor) {
            for owner in self.owners.values_mut().flatten() {
                if owner == other {
                    owner.clone_from(&survivor);
                }
            }
            let (conversations, preferences) = ops.merge_contact(other, &survivor).await?;
            for c in conversations {
                // Written with the batch's other conversation times.
                self.touch(
                    &c.phone_number_id,
                    &survivor,
                    c.last_message_at,
                    c.last_inbound_at,
                );
            }
            for p in preferences {
                apply_preference(
                    ops,
                    preference::Model {
                        contact_id: survivor.clone(),
                        ..p
                    },
                )
                .await?;
            }
        }
        Ok(survivor)
    }

    /// Stores a status report and moves its message's status forward. A report on a message
    /// the store does not hold (sent from the number by another tool, or not arrived yet) makes
    /// a placeholder of it — outbound, of kind [`crate::queries::STATUS_ONLY_KIND`], dated by its
    /// earliest report, with the status of every report — so the history shows it; the message
    /// itself replaces the placeholder if it ever arrives ([`BatchWriter::flush_messages`]).
    async fn apply_status(&mut self, s: &StatusUpdate) -> Result<(), StoreError> {
        let ops = self.ops;
        let row = message_status::Model {
            wamid: s.wamid.clone(),
            state: s.state.as_str().to_owned(),
            timestamp: s.timestamp,
            phone_number_id: s.business.phone_number_id.clone(),
            errors: (!s.errors.is_empty())
                .then(|| json(&s.errors))
                .transpose()?,
            pricing: s.pricing.as_ref().map(json).transpose()?,
            conversation: s.conversation.as_ref().map(json).transpose()?,
        };
        if ops.insert_status(row).await? == 0 {
            return Ok(());
        }
        let Some((status, status_error, placeholder)) = ops.message_status(&s.wamid).await? else {
            return self.add_placeholder(s).await;
        };
        if placeholder {
            ops.date_placeholder(&s.wamid, s.timestamp).await?;
        }
        let current_status = match status.as_deref().and_then(DeliveryState::parse) {
            Some(state) => MessageStatus {
                state,
                error: status_error.and_then(|v| serde_json::from_value(v).ok()),
            },
            None => MessageStatus::from_report(DeliveryState::Accepted, &[]),
        };
        let merged = current_status.merge(&MessageStatus::from_report(s.state, &s.errors));
        if Some(merged.state.as_str()) != status.as_deref() || merged.state == DeliveryState::Failed
        {
            write_status(ops, &s.wamid, &merged).await?;
        }
        Ok(())
    }

    /// The placeholder of a message known only from its status reports (see
    /// [`BatchWriter::apply_status`]), built from every report stored so that the same reports
    /// in any order give the same row.
    async fn add_placeholder(&mut self, s: &StatusUpdate) -> Result<(), StoreError> {
        let keys = s.recipient.keys();
        // A message buffered in this batch takes the history when it is inserted; a report
        // naming no recipient cannot be placed in any contact's history.
        if keys.is_empty() || self.messages.iter().any(|m| m.wamid == s.wamid) {
            return Ok(());
        }
        let ops = self.ops;
        let contact_id = self.resolve_contact(&keys, None, None, s.timestamp).await?;
        let history = ops.status_histories(std::slice::from_ref(&s.wamid)).await?;
        let mut status = MessageStatus::from_report(DeliveryState::Accepted, &[]);
        let mut first = s.timestamp;
        for h in &history {
            status = status.merge(&stored_status(h)?);
            first = first.min(h.timestamp);
        }
        let row = message::Model {
            // Derived from the wamid, not from whichever report came first.
            event_id: format!("status-only:{}", s.wamid),
            wamid: s.wamid.clone(),
            phone_number_id: s.business.phone_number_id.clone(),
            contact_id: contact_id.clone(),
            direction: Direction::Outbound.as_str().to_owned(),
            kind: crate::queries::STATUS_ONLY_KIND.to_owned(),
            timestamp: first,
            preview: None,
            content: serde_json::json!({ "type": crate::queries::STATUS_ONLY_KIND }),
            context: None,
            referral: None,
            status: Some(status.state.as_str().to_owned()),
            status_error: status.error.as_ref().map(json).transpose()?,
            sent_by: None,
            stored_at: Utc::now(),
        };
        ops.insert_messages(&[&row]).await?;
        // The business wrote to the contact on that number: a conversation exists, though
        // its times are the messages' (a placeholder's date is only its first report's).
        self.touch(&s.business.phone_number_id, &contact_id, None, None);
        Ok(())
    }

    async fn apply_message(&mut self, event_id: &str, m: &Message) -> Result<(), StoreError> {
        let contact_id = self
            .resolve_contact(
                &m.contact.identity.keys(),
                m.contact
                    .name
                    .as_deref()
                    .filter(|_| m.direction == Direction::Inbound),
                m.contact
                    .username
                    .as_deref()
                    .filter(|_| m.direction == Direction::Inbound),
                m.timestamp,
            )
            .await?;
        let initial = match m.direction {
            Direction::Inbound => None,
            Direction::Outbound => Some(MessageStatus::from_report(DeliveryState::Accepted, &[])),
        };
        self.messages.push(message::Model {
            wamid: m.wamid.clone(),
            event_id: event_id.to_owned(),
            phone_number_id: m.business.phone_number_id.clone(),
            contact_id,
            direction: m.direction.as_str().to_owned(),
            kind: m.content.kind().to_owned(),
            timestamp: m.timestamp,
            preview: m.content.preview_text(),
            content: json(&m.content)?,
            context: m.context.as_ref().map(json).transpose()?,
            referral: m.referral.as_ref().map(json).transpose()?,
            status: initial.as_ref().map(|s| s.state.as_str().to_owned()),
            status_error: None,
            sent_by: m.sent_by.as_ref().map(json).transpose()?,
            stored_at: Utc::now(),
        });
        Ok(())
    }

    /// Inserts the buffered messages, a chunk per statement: the ones already stored (or met
    /// earlier in the buffer) are left alone, as inserting them one by one would; the new ones
    /// move their conversations' times, and a new outbound message takes the statuses that
    /// arrived before it.
    async fn flush_messages(&mut self) -> Result<(), StoreError> {
        let ops = self.ops;
        let pending = std::mem::take(&mut self.messages);
        let mut seen: HashSet<String> = HashSet::new();
        for chunk in crate::fixed_shape_chunks(&pending) {
            let wamids: Vec<&str> = chunk.iter().map(|p| p.wamid.as_str()).collect();
            // wamid → whether the stored row is a placeholder, which the message replaces.
            let stored = ops.stored_wamids(&wamids).await?;
            let new: Vec<&message::Model> = chunk
                .iter()
                .filter(|p| stored.get(&p.wamid) != Some(&false) && seen.insert(p.wamid.clone()))
                .collect();
            if new.is_empty() {
                continue;
            }
            let replaced: Vec<&str> = new
                .iter()
                .filter(|p| stored.get(&p.wamid) == Some(&true))
                .map(|p| p.wamid.as_str())
                .collect();
            for wamids in crate::fixed_shape_chunks(&replaced) {
                ops.delete_placeholders(wamids).await?;
            }
            for rows in crate::fixed_shape_chunks(&new) {
                ops.insert_messages(rows).await?;
            }
            for p in &new {
                let inbound = p.direction == Direction::Inbound.as_str();
                let inbound_at = inbound.then_some(p.timestamp);
                self.touch(
                    &p.phone_number_id,
                    &p.contact_id,
                    Some(p.timestamp),
                    inbound_at,
                );
            }
            // Statuses are reports on what the business sent; an inbound message has none.
            let outbound: Vec<String> = new
                .iter()
                .filter(|p| p.direction == Direction::Outbound.as_str())
                .map(|p| p.wamid.clone())
                .collect();
            if outbound.is_empty() {
                continue;
            }
            let mut histories: BTreeMap<String, Vec<message_status::Model>> = BTreeMap::new();
            for wamids in crate::fixed_shape_chunks(&outbound) {
                for h in ops.status_histories(wamids).await? {
                    histories.entry(h.wamid.clone()).or_default().push(h);
                }
            }
            for (wamid, history) in histories {
                let mut status = MessageStatus::from_report(DeliveryState::Accepted, &[]);
                for h in &history {
                    status = status.merge(&stored_status(h)?);
                }
                write_status(ops, &wamid, &status).await?;
            }
        }
        Ok(())
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// The row a conversation becomes when `times` (last message, last inbound) reach it, given
/// its `current` row (`None`: there is none yet); `None` when nothing moves forward.
fn moved_forward(
    (phone_number_id, contact_id): &(String, String),
    current: Option<&conversation::Model>,
    (message_at, inbound_at): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> Option<conversation::Model> {
    let (message_at, inbound_at) = match current {
        None => (message_at, inbound_at),
        Some(c) => {
            let moved = (
                c.last_message_at.max(message_at),
                c.last_inbound_at.max(inbound_at),
            );
            if moved == (c.last_message_at, c.last_inbound_at) {
                return None;
            }
            moved
        }
    };
    Some(conversation::Model {
        phone_number_id: phone_number_id.clone(),
        contact_id: contact_id.clone(),
        last_message_at: message_at,
        last_inbound_at: inbound_at,
    })
}

fn stored_status(row: &message_status::Model) -> Result<MessageStatus, StoreError> {
    let state = DeliveryState::parse(&row.state)
        .ok_or_else(|| StoreError::Invalid(format!("unknown stored state {}", row.state)))?;
    let errors: Vec<MetaError> = match &row.errors {
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| StoreError::Invalid(e.to_string()))?
        }
        None => Vec::new(),
    };
    Ok(MessageStatus::from_report(state, &errors))
}

async fn write_status<O: Ops>(
    ops: &O,
    wamid: &str,
    status: &MessageStatus,
) -> Result<(), StoreError> {
    let error = status.error.as_ref().map(json).transpose()?;
    ops.write_status(wamid, status.state.as_str(), error).await
}

/// Stores a preference report unless a later one is stored.
async fn apply_preference<O: Ops>(ops: &O, row: preference::Model) -> Result<(), StoreError> {
    let current = ops
        .preference(&row.contact_id, &row.phone_number_id, &row.category)
        .await?;
    match current {
        None => ops.put_preference(row, false).await,
        // The latest report wins; at equal times "stop" wins, so order does not matter.
        Some(c) if (row.updated_at, row.value == "stop") > (c.updated_at, c.value == "stop") => {
            ops.put_preference(row, true).await
        }
        Some(_) => Ok(()),
    }
}

/// The row a dead-letter record is stored as.
fn dead_letter_row(record: &Record) -> dead_letter::Model {
    let id = record
        .header(cloudevents::DLQ_ID)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}/{}/{}", record.topic, record.partition, record.offset));
    let created_at = record
        .header(cloudevents::DLQ_TIME)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| DateTime::from_timestamp_millis(record.timestamp_ms))
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = record
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    dead_letter::Model {
        id,
        source: record
            .header(cloudevents::DLQ_SOURCE)
            .unwrap_or("unknown")
            .to_owned(),
        error_class: record
            .header(cloudevents::DLQ_CLASS)
            .unwrap_or("dead_letter")
            .to_owned(),
        reason: record
            .header(cloudevents::DLQ_REASON)
            .unwrap_or_default()
            .to_owned(),
        headers: serde_json::Value::Object(headers),
        payload: record.payload.clone(),
        bus_offset: record.offset,
        created_at,
        resolved_at: None,
        attempts: 0,
        last_error: None,
        phone_number_id: business_number_of(&record.payload),
    }
}

/// The business number a dead letter's payload concerns, when it names exactly one: a webhook
/// body's `entry[].changes[].value.metadata.phone_number_id`, or an event's
/// `business.phone_number_id`. A payload naming several numbers (or none, or not JSON) gives
/// `None`: only keys of every number see it.
fn business_number_of(payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let mut numbers = BTreeSet::new();
    for entry in value
        .get("entry")
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten()
    {
        for change in entry
            .get("changes")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(n) = change
                .pointer("/value/metadata/phone_number_id")
                .and_then(|n| n.as_str())
            {
                numbers.insert(n.to_owned());
            }
        }
    }
    for pointer in [
        "/business/phone_number_id",
        "/data/business/phone_number_id",
    ] {
        if let Some(n) = value.pointer(pointer).and_then(|n| n.as_str()) {
            numbers.insert(n.to_owned());
        }
    }
    if numbers.len() == 1 {
        numbers.into_iter().next()
    } else {
        None
    }
}

/// The identities of a contact as core keys.
pub fn identity_of(rows: &[contact_identity::Model]) -> ContactIdentity {
    let mut identity = ContactIdentity::default();
    for row in rows {
        match IdentityKey::from_parts(&row.kind, &row.value) {
            Some(IdentityKey::Phone(p)) => identity.phone = identity.phone.or(Some(p)),
            Some(IdentityKey::Bsuid(b)) => identity.bsuid = identity.bsuid.or(Some(b)),
            Some(IdentityKey::WaId(w)) => identity.wa_id = identity.wa_id.or(Some(w)),
            None => {}
        }
    }
    identity
}
