//! The data-subject export (LGPD's right of access): everything the store holds on one contact,
//! as one JSON document.
//!
//! The document is written a page at a time into a [`Sink`] — an HTTP response body, a file —
//! never built whole: a contact with 100,000 messages is read 500 messages at a time (keyset
//! pages, with their statuses and CRM ledger rows), each page serialised and handed to the
//! sink, which applies backpressure (a slow reader slows the export down instead of letting it
//! pile up). Memory stays at a page and one 64 KiB buffer whatever the history's length.
//!
//! A key limited to business numbers gets those numbers' part (`"partial": true`, with the
//! numbers): their conversations, messages, requests, preferences, consent decisions limited to
//! them, dead letters and audit entries; the contact itself, its identities, its business-wide
//! consent and its CRM links are the contact's, shown as `GET /v1/contacts/{id}` shows them.
//!
//! The pages are separate reads, not one snapshot: a message stored while the export runs may
//! or may not be in it. The document ends with `"complete": true`; a document cut short (the
//! export failed midway) is not valid JSON.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
use wacrm_core::contact::IdentityKey;
use wacrm_core::ErrorClass;

use crate::entities::{
    audit_log, contact, contact_identity, conversation, crm_ledger, crm_link, dead_letter, message,
    message_status, outbound_request, preference,
};
use crate::queries::ContactView;
use crate::StoreError;

/// What the document says it is.
pub const FORMAT: &str = "wacrm.contact_export";
/// The version of the document's layout; a change that removes or renames a field gets a new
/// one.
pub const VERSION: u32 = 1;
/// Rows read per page.
const PAGE: u64 = 500;
/// Bytes gathered before they are handed to the sink.
const FLUSH_AT: usize = 64 * 1024;

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output could not be written (the client went away, the disk is full).
    #[error("export output: {0}")]
    Output(String),
}

impl From<sea_orm::DbErr> for ExportError {
    fn from(e: sea_orm::DbErr) -> Self {
        ExportError::Store(e.into())
    }
}

impl ExportError {
    /// What the caller should do: the store's class, or fatal for an output that is gone.
    pub fn class(&self) -> ErrorClass {
        match self {
            ExportError::Store(e) => e.class(),
            ExportError::Output(_) => ErrorClass::Fatal,
        }
    }
}

/// Where the document goes, a chunk at a time.
pub trait Sink: Send {
    /// Takes the next chunk of the document; waits while the reader is behind.
    fn write(
        &mut self,
        chunk: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(), ExportError>> + Send;
}

/// A [`Sink`] over a blocking writer (a command line writing a file or its standard output:
/// 64 KiB at a time, a local write).
pub struct WriterSink<W>(pub W);

impl<W: std::io::Write + Send> Sink for WriterSink<W> {
    async fn write(&mut self, chunk: Vec<u8>) -> Result<(), ExportError> {
        self.0
            .write_all(&chunk)
            .map_err(|e| ExportError::Output(e.to_string()))
    }
}

/// How much an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExportStats {
    /// Messages.
    pub messages: u64,
    /// Status reports of those messages.
    pub statuses: u64,
    /// Outbound requests.
    pub requests: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Audit entries (about the contact, and searches that found them).
    pub audit_entries: u64,
    /// Bytes of JSON.
    pub bytes: u64,
}

/// The document under construction: a buffer handed to the sink when it fills.
struct Doc<'s, S> {
    sink: &'s mut S,
    buf: Vec<u8>,
    stats: ExportStats,
}

impl<S: Sink> Doc<'_, S> {
    fn raw(&mut self, text: &str) {
        self.buf.extend_from_slice(text.as_bytes());
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ExportError> {
        serde_json::to_writer(&mut self.buf, value).map_err(|e| ExportError::Output(e.to_string()))
    }

    /// `,"name":value`.
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), ExportError> {
        self.raw(",");
        self.value(name)?;
        self.raw(":");
        self.value(value)
    }

    /// An element of the array being written.
    fn item<T: Serialize>(&mut self, first: &mut bool, value: &T) -> Result<(), ExportError> {
        if !std::mem::take(first) {
            self.raw(",");
        }
        self.value(value)
    }

    async fn flush(&mut self, force: bool) -> Result<(), ExportError> {
        if self.buf.is_empty() || (!force && self.buf.len() < FLUSH_AT) {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(FLUSH_AT + 4096));
        self.stats.bytes += chunk.len() as u64;
        self.sink.write(chunk).await
    }
}

/// The contact's own row(s): the current one and those merged into it.
#[derive(Serialize)]
struct ContactOut {
    id: String,
    created_at: DateTime<Utc>,
    updated_at: Option<DateTime<Utc>>,
    /// Earlier contact ids merged into this one (a number change, a BSUID seen with the phone).
    merged_from: Vec<String>,
}

#[derive(Serialize)]
struct Profile<'a> {
    display_name: Option<&'a str>,
    username: Option<&'a str>,
}

#[derive(Serialize)]
struct IdentityOut {
    kind: String,
    value: String,
    first_seen_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct StatusOut {
    status: String,
    timestamp: DateTime<Utc>,
    errors: Option<serde_json::Value>,
    pricing: Option<serde_json::Value>,
    conversation: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct LedgerOut {
    connection: String,
    key: String,
    state: String,
    crm_id: Option<String>,
    status: Option<String>,
    pending_since: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<crm_ledger::Model> for LedgerOut {
    fn from(r: crm_ledger::Model) -> Self {
        LedgerOut {
            connection: r.connection,
            key: r.wamid,
            state: r.state,
            crm_id: r.crm_id,
            status: r.status,
            pending_since: r.pending_since,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Serialize)]
struct MessageOut {
    wamid: String,
    direction: String,
    kind: String,
    phone_number_id: String,
    timestamp: DateTime<Utc>,
    /// Text, captions, media ids and links, locations, … as wacrm's core model writes them.
    content: serde_json::Value,
    context: Option<serde_json::Value>,
    referral: Option<serde_json::Value>,
    status: Option<String>,
    status_error: Option<serde_json::Value>,
    sent_by: Option<serde_json::Value>,
    stored_at: DateTime<Utc>,
    status_history: Vec<StatusOut>,
    /// What each CRM connection holds for this message.
    crm_ledger: Vec<LedgerOut>,
}

#[derive(Serialize)]
struct RequestOut {
    request_id: String,
    kind: String,
    key_id: String,
    phone_number_id: String,
    contact_id: Option<String>,
    state: String,
    wamid: Option<String>,
    errors: Option<serde_json::Value>,
    reason: Option<String>,
    attempts: i32,
    /// The command as published: what was to be sent, and to which identity.
    command: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct DeadLetterOut {
    id: String,
    source: String,
    error_class: String,
    reason: String,
    phone_number_id: Option<String>,
    /// The bytes, as text (lossy for non-UTF-8).
    payload: String,
    headers: serde_json::Value,
    created_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    attempts: i32,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct LinkOut {
    connection: String,
    contact_key: String,
    crm_id: String,
    linked_by: String,
    linked_at: DateTime<Utc>,
}

/// Writes the export of `contact` (as [`crate::queries::get_contact`] answered it: the current
/// contact, merges followed) into `sink`, only the part of business `numbers` when given
/// (`None`: everything). The caller has checked that the contact is visible to the key.
pub async fn export(
    db: &DatabaseConnection,
    contact: &ContactView,
    numbers: Option<&[String]>,
    sink: &mut impl Sink,
) -> Result<ExportStats, ExportError> {
    let mut doc = Doc {
        sink,
        buf: Vec::with_capacity(FLUSH_AT + 4096),
        stats: ExportStats::default(),
    };
    let family = crate::consent::family(db, &contact.id).await?;
    doc.raw("{");
    doc.value("format")?;
    doc.raw(":");
    doc.value(FORMAT)?;
    doc.field("version", &VERSION)?;
    doc.field("generated_at", &Utc::now())?;
    doc.field("contact_id", &contact.id)?;
    doc.field("partial", &numbers.is_some())?;
    doc.field("business_numbers", &numbers)?;
    if numbers.is_some() {
        doc.field(
            "excluded",
            "conversations, messages, requests, preferences, consent decisions, dead letters \
             and audit entries of other business numbers; dead letters of no known number; \
             searches in the audit log",
        )?;
    }
    contact_section(db, &mut doc, contact, &family).await?;
    preferences_section(db, &mut doc, &contact.id, numbers).await?;
    let consent = crate::consent::summary(db, &contact.id, numbers).await?;
    doc.field("consent", &consent)?;
    conversations_section(db, &mut doc, &contact.id, numbers).await?;
    let connections = ledger_connections(db).await?;
    messages_section(db, &mut doc, &contact.id, numbers, &connections).await?;
    requests_section(db, &mut doc, &family, numbers).await?;
    dead_letters_section(db, &mut doc, contact, numbers).await?;
    crm_section(db, &mut doc, contact, &connections).await?;
    audit_section(db, &mut doc, &family, numbers).await?;
    doc.field("complete", &true)?;
    doc.raw("}\n");
    doc.flush(true).await?;
    Ok(doc.stats)
}

async fn contact_section(
    db: &DatabaseConnection,
    doc: &mut Doc<'_, impl Sink>,
    view: &ContactView,
    family: &[String],
) -> Result<(), ExportError> {
    let own = contact::Entity::find_by_id(view.id.clone()).one(db).await?;
    let out = ContactOut {
        id: view.id.clone(),
        created_at: view.created_at,
        updated_at: own.map(|c| c.updated_at),
        merged_from: family.iter().skip(1).cloned().collect(),
    };
    doc.field("contact", &out)?;
    doc.field(
        "profile",
        &Profile {
            display_name: view.display_name.as_deref(),
            username: view.username.as_deref(),
        },
    )?;
    let identities: Vec<IdentityOut> = contact_identity::Entity::find()
        .filter(contact_identity::Column::ContactId.eq(view.id.clone()))
        .order_by_asc(contact_identity::Column::CreatedAt)
        .order_by_asc(contact_identity::Column::Kind)
        .order_by_asc(contact_identity::Column::Value)
        .all(db)
        .await?
        .into_iter()
        .map(|i| IdentityOut {
            kind: i.kind,
            value: i.value,
            first_seen_at: i.created_at,
        })
        .collect();
    doc.field("identities", &identities)
}

async fn preferences_section(
    db: &DatabaseConnection,
    doc: &mut Doc<'_, impl Sink>,
    contact_id: &str,
    numbers: Option<&[String]>,
) -> Result<(), ExportError> {
    #[derive(Serialize)]
    struct Out {
        phone_number_id: String,
        category: String,
        value: String,
        updated_at: DateTime<Utc>,
    }
    let mut q = preference::Entity::find().filter(preference::Column::ContactId.eq(contact_id));
    if let Some(numbers) = numbers {
        q = q.filter(preference::Column::PhoneNumberId.is_in(numbers.iter().cloned()));
    }
    let rows: Vec<Out> = q
        .order_by_asc(preference::Column::PhoneNumberId)
        .order_by_asc(preference::Column::Category)
        .all(db)
        .await?
        .into_iter()
        .map(|p| Out {
            phone_number_id: p.phone_number_id,
            category: p.category,
            value: p.value,
            updated_at: p.updated_at,
        })
        .collect();
    doc.field("preferences", &rows)
}

async fn conversations_section(
    db: &DatabaseConnection,
    doc: &mut Doc<'_, impl Sink>,
    contact_id: &str,
    numbers: Option<&[String]>,
) -> Result<(), ExportError> {
    #[derive(Serialize)]
    struct Out {
        phone_number_id: String,
        last_message_at: Option<DateTime<Utc>>,
        last_inbound_at: Option<DateTime<Utc>>,
    }
    let mut q = conversation::Entity::find().filter(conversation::Column::ContactId.eq(contact_id));
    if let Some(numbers) = numbers {
        q = q.filter(conversation::Column::PhoneNumberId.is_in(numbers.iter().cloned()));
    }
    let rows: Vec<Out> = q
        .order_by_asc(conversation::Column::PhoneNumberId)
        .all(db)
        .await?
        .into_iter()
        .map(|c| Out {
            phone_number_id: c.phone_number_id,
            last_message_at: c.last_message_at,
            last_inbound_at: c.last_inbound_at,
        })
        .collect();
    doc.field("conversations", &rows)
}

/// Every CRM connection with ledger rows (the ledger's key starts with the connection, so
/// rows are then read by key, not by scanning the ledger for each page).
async fn ledger_connections(db: &DatabaseConnection) -> Result<Vec<String>, ExportError> {
    let rows: Vec<String> = crm_ledger::Entity::find()
        .select_only()
        .column(crm_ledger::Column::Connection)
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    let links: Vec<String> = crm_link::Entity::find()
        .select_only()
        .column(crm_link::Column::Connection)
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    let all: BTreeSet<String> = rows.into_iter().chain(links).collect();
    Ok(all.into_iter().collect())
}

/// Ledger rows of these keys (wamids, or `contact:<key>`) on every connection.
async fn ledger_rows(
    db: &DatabaseConnection,
    connections: &[String],
    keys: &[String],
) -> Result<Vec<crm_ledger::Model>, ExportError> {
    let mut out = Vec::new();
    for chunk in crate::fixed_shape_chunks(keys) {
        for connection in connections {
            out.extend(
                crm_ledger::Entity::find()
                    .filter(crm_ledger::Column::Connection.eq(connection.clone()))
                    .filter(crm_ledger::Column::Wamid.is_in(chunk.iter().cloned()))
                    .all(db)
                    .await?,
            );
        }
    }
    Ok(out)
}

async fn messages_section(
    db: &DatabaseConnection,
    doc: &mut Doc<'_, impl Sink>,
    contact_id: &str,
    numbers: Option<&[String]>,
    connections: &[String],
) -> Result<(), ExportError> {
    doc.raw(",\"messages\":[");
    let mut first = true;
    // Messages move to the surviving contact when contacts merge: the current id holds them.
    let mut after: Option<(DateTime<Utc>, String)> = None;
    loop {
        let mut q = message::Entity::find().filter(message::Column::ContactId.eq(contact_id));
        if let Some(numbers) = numbers {
            q = q.filter(message::Column::PhoneNumberId.is_in(numbers.iter().cloned()));
        }
        if let Some((t, w)) = &after {
            q = q.filter(
                Condition::any().add(message::Column::Timestamp.gt(*t)).add(
                    Condition::all()
                        .add(message::Column::Timestamp.eq(*t))
                        .add(message::Column::Wamid.gt(w.clone())),
                ),
            );
        }
        let page = q
            .order_by_asc(message::Column::Timestamp)
            .order_by_asc(message::Column::Wamid)
            .limit(PAGE)
            .all(db)
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some((last.timestamp, last.wamid.clone()));
        let wamids: Vec<String> = page.iter().map(|m| m.wamid.clone()).collect();
        let mut statuses: std::collections::HashMap<String, Vec<StatusOut>> = Default::default();
        for chunk in crate::fixed_shape_chunks(&wamids) {
            for s in message_status::Entity::find()
                .filter(message_status::Column::Wamid.is_in(chunk.iter().cloned()))
                .order_by_asc(message_status::Column::Timestamp)
                .order_by_asc(message_status::Column::State)
                .all(db)
                .await?
            {
                statuses.entry(s.wamid).or_default().push(StatusOut {
                    status: s.state,
                    timestamp: s.timestamp,
                    errors: s.errors,
                    pricing: s.pricing,
                    conversation: s.conversation,
                });
            }
        }
        let mut ledger: std::collections::HashMap<String, Vec<LedgerOut>> = Default::default();
        for row in ledger_rows(db, connections, &wamids).await? {
            ledger
                .entry(row.wamid.clone())
                .or_default()
                .push(row.into());
        }
        let full = page.len() as u64 == PAGE;
        for m in page {
            let status_history = statuses.remove(&m.wamid).unwrap_or_default();
            doc.stats.messages += 1;
            doc.stats.statuses += status_history.len() as u64;
            let out = MessageOut {
                crm_ledger: ledger.remove(&m.wamid).unwrap_or_default(),
                status_history,
                wamid: m.wamid,
                direction: m.direction,
                kind: m.kind,
                phone_number_id: m.phone_number_id,
                timestamp: m.timestamp,
                content: m.content,
                context: m.context,
                referral: m.referral,
                status: m.status,
                status_error: m.status_error,
                sent_by: m.sent_by,
                stored_at: m.stored_at,
            };
            doc.item(&mut first, &out)?;
        }
        doc.flush(false).await?;
        if !full {
            break;
        }
    }
    doc.raw("]");
    Ok(())
}

async fn requests_section(
    db: &DatabaseConnection,
    doc: &mut Doc<'_, impl Sink>,
    family: &[String],
    numbers: Option<&[String]>,
) -> Result<(), ExportError> {
    doc.raw(",\"outbound_requests\":[");
    let mut first = true;
    let mut after: Option<(DateTime<Utc>, String)> = None;
    loop {
        let mut q = outbound_request::Entity::find()
            .filter(outbound_request::Column::ContactId.is_in(family.iter().cloned()));
        if let Some(numbers) = numbers {
            q = q.filter(outbound_request::Column::PhoneNumberId.is_in(numbers.iter().cloned()));
        }
        if let Some((t, id)) = &after {
            q = q.filter(
                Condition::any()
                    .add(outbound_request::Column::CreatedAt.gt(*t))
                    .add(
                        Condition::all()
                            .add(outbound_request::Column::CreatedAt.eq(*t))
                            .add(outbound_request::Column::RequestId.gt(id.clone())),
                    ),
            );
        }
        let page = q
            .order_by_asc(outbound_request::Column::CreatedAt)
            .order_by_asc(outbound_request::Column::RequestId)
            .limit(PAGE)
            .all(db)
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some((last.created_at, last.request_id.clone()));
        let full = page.len() as u64 == PAGE;
        for r in page {
            doc.stats.requests += 1;
            let out = RequestOut {
                request_id: r.request_id,
                kind: r.kind,
                key_id: r.key_id,
                phone_number_id: r.phone_number_id,
                contact_id: r.contact_id,
                state: r.state,
                wamid: r.wamid,
                errors: r.errors,
                reason: r.reason,
                attempts: r.attempts,
                command: r.command,
                created_at: r.created_at,
                updated_at: r.updated_at,
            };
            doc.item(&mut first, &out)?;
        }
        doc.flush(false).await?;
        if !full {
            break;
        }
    }
    doc.raw("]");
    Ok(())
}

/// The texts by which a dead letter's bytes name the contact: each identity's value, and for
/// a phone its digits (a `wa_id`) in both Brazilian spellings.
pub fn needles(identities: &[crate::queries::IdentityView]) -> Vec<String> {
    let keys: Vec<IdentityKey> = identities
        .iter()
        .filter_map(|i| IdentityKey::from_parts(&i.kind, &i.value))
        .collect();
    key_needles(&keys)
}

/// [`needles`] of identity keys: each phone's digits (with and without Brazil's 9th digit, the
/// `wa_id` spellings) and each BSUID or wa id, of five characters or more.
pub fn key_needles(keys: &[IdentityKey]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for key in keys {
        match key {
            IdentityKey::Phone(p) => {
                out.insert(p.digits().to_owned());
                if let Some(legacy) = p.brazil_legacy_form() {
                    out.insert(legacy.digits().to_owned());
                }
            }
            IdentityKey::Bsuid(v) | IdentityKey::WaId(v) => {
                out.insert(v.clone());
            }
        }
    }
    out.into_iter().filter(|n| n.len() >= 5).collect()
}

/// Whether `haystack` holds `needle` as a whole token (not inside a longer number or word).
fn contains_token(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() || haystack.len() < needle.len() {
        return false;
    }
    let boundary = |b: Option<&u8>| b.is_none_or(|b| !b.is_ascii_alphanumeric());
    haystack
        .windows(needle.len())
        .enumerate()
        .any(|(at, window)| {
            window == needle
                && boundary(at.checked_sub(1).and_then(|i| haystack.get(i)))
                && boundary(haystack.get(at + needle.len()))
        })
}

/// Whether a dead letter names the contact (in its bytes, reason or headers).
pub fn dead_letter_concerns(d: &dead_letter::Model, needles: &[String]) -> bool {
    let headers = d.headers.to_string();
    needles.iter().any(|n| {
        let n = n.as_bytes();
        contains_token(&d.payload, n)
            || contains_token(d.reason.as_bytes(), n)
            || contains_token(headers.as_bytes(), n)
            || d.last_error
                .as_deref()
                .is_some_and(|e| contains_token(e.as_bytes(), n))
    })
}

async fn dead_letters_section(
    db: &DatabaseConnection,
    doc: &mut Doc<'_, impl Sink>,
    contact: &ContactView,
    numbers: Option<&[String]>,
) -> Result<(), ExportError> {
    doc.raw(",\"dead_letters\":[");
    let mut first = true;
    let needles = needles(&contact.identities);
    // Dead letters are few by nature (what could not be processed) and name contacts only
    // inside their bytes: one pass over them, a page at a time.
    let mut after: Option<String> = None;
    while !needles.is_empty() {
        let mut q = dead_letter::Entity::find();
        if let Some(numbers) = numbers {
            q = q.filter(dead_letter::Column::PhoneNumberId.is_in(numbers.iter().cloned()));
        }
        if let Some(id) = &after {
            q = q.filter(dead_letter::Column::Id.gt(id.clone()));
        }
        let page = q
            .order_by_asc(dead_letter::Column::Id)
            .limit(PAGE)
            .all(db)
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id.clone());
        let full = page.len() as u64 == PAGE;
        for d in page
            .into_iter()
            .filter(|d| dead_letter_concerns(d, &needles))
        {
            doc.stats.dead_letters += 1;
            let out = DeadLetterOut {
                id: d.id,
                source: d.source,
                error_class: d.error_class,
                reason: d.reason,
                phone_number_id: d.phone_number_id,
                payload: String::from_utf8_lossy(&d.payload).into_owned(),
                headers: d.headers,
                created_at: d.created_at,
                resolved_at: d.resolved_at,
                attempts: d.attempts,
                last_error: d.last_error,
            };
            doc.item(&mut first, &out)?;
        }
        doc.flush(false).await?;
        if !full {
            break;
        }
    }
    doc.raw("]");
    Ok(())
}

async fn crm_section(
    db: &DatabaseConnection,
    doc: &mut Doc<'_, impl Sink>,
    contact: &ContactView,
    connections: &[String],
) -> Result<(), ExportError> {
    // Links and contact rows of the ledger are keyed by identity (`phone:+55…`).
    let keys: Vec<String> = contact
        .identities
        .iter()
        .map(|i| format!("{}:{}", i.kind, i.value))
        .collect();
    let links: Vec<LinkOut> = if keys.is_empty() {
        Vec::new()
    } else {
        crm_link::Entity::find()
            .filter(crm_link::Column::ContactKey.is_in(keys.iter().cloned()))
            .order_by_asc(crm_link::Column::Connection)
            .order_by_asc(crm_link::Column::ContactKey)
            .all(db)
            .await?
            .into_iter()
            .map(|l| LinkOut {
                connection: l.connection,
                contact_key: l.contact_key,
                crm_id: l.crm_id,
                linked_by: l.linked_by,
                linked_at: l.linked_at,
            })
            .collect()
    };
    let ledger_keys: Vec<String> = keys.iter().map(|k| format!("contact:{k}")).collect();
    let ledger: Vec<LedgerOut> = ledger_rows(db, connections, &ledger_keys)
        .await?
        .into_iter()
        .map(LedgerOut::from)
        .collect();
    #[derive(Serialize)]
    struct Crm {
        links: Vec<LinkOut>,
        ledger: Vec<LedgerOut>,
    }
    doc.field("crm", &Crm { links, ledger })
}

async fn audit_section(
    db: &DatabaseConnection,
    doc: &mut Doc<'_, impl Sink>,
    family: &[String],
    numbers: Option<&[String]>,
) -> Result<(), ExportError> {
    // Entries about the contact (who read or sent what, when).
    doc.raw(",\"audit\":[");
    let mut first = true;
    let mut after = 0i64;
    loop {
        let mut q = audit_log::Entity::find()
            .filter(audit_log::Column::ContactId.is_in(family.iter().cloned()))
            .filter(audit_log::Column::Seq.gt(after));
        if let Some(numbers) = numbers {
            // The contact is visible to the key: its entries of no number are too.
            q = q.filter(
                Condition::any()
                    .add(audit_log::Column::PhoneNumberId.is_null())
                    .add(audit_log::Column::PhoneNumberId.is_in(numbers.iter().cloned())),
            );
        }
        let page = q
            .order_by_asc(audit_log::Column::Seq)
            .limit(PAGE)
            .all(db)
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        let full = page.len() as u64 == PAGE;
        for e in page {
            doc.stats.audit_entries += 1;
            doc.item(&mut first, &audit_out(e))?;
        }
        doc.flush(false).await?;
        if !full {
            break;
        }
    }
    doc.raw("]");
    // Searches whose answer named the contact (their query is kept only as a hash). A key
    // limited to numbers does not read them in the audit log either: they name no number.
    doc.raw(",\"audit_searches\":[");
    let mut first = true;
    let mut after = 0i64;
    while numbers.is_none() {
        let named = family.iter().fold(Condition::any(), |any, id| {
            any.add(audit_log::Column::Detail.like(format!("%\"{id}\"%")))
        });
        let page = audit_log::Entity::find()
            .filter(audit_log::Column::ContactId.is_null())
            .filter(audit_log::Column::Action.eq("contacts.search"))
            .filter(named)
            .filter(audit_log::Column::Seq.gt(after))
            .order_by_asc(audit_log::Column::Seq)
            .limit(PAGE)
            .all(db)
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        let full = page.len() as u64 == PAGE;
        for e in page {
            doc.stats.audit_entries += 1;
            doc.item(&mut first, &audit_out(e))?;
        }
        doc.flush(false).await?;
        if !full {
            break;
        }
    }
    doc.raw("]");
    Ok(())
}

#[derive(Serialize)]
struct AuditOut {
    seq: i64,
    at: DateTime<Utc>,
    key_id: String,
    actor: String,
    action: String,
    contact_id: Option<String>,
    target: Option<String>,
    outcome: String,
    phone_number_id: Option<String>,
    detail: Option<serde_json::Value>,
}

fn audit_out(e: audit_log::Model) -> AuditOut {
    AuditOut {
        seq: e.seq,
        at: e.at,
        key_id: e.key_id,
        actor: e.actor,
        action: e.action,
        contact_id: e.contact_id,
        target: e.target,
        outcome: e.outcome,
        phone_number_id: e.phone_number_id,
        detail: e
            .detail
            .as_deref()
            .map(|d| serde_json::from_str(d).unwrap_or(serde_json::Value::String(d.to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_found_as_a_whole_token_only() {
        let payload = br#"{"wa_id":"5511987654321","other":"155119876543210"}"#;
        assert!(contains_token(payload, b"5511987654321"));
        assert!(!contains_token(
            br#"{"x":"155119876543210"}"#,
            b"5511987654321"
        ));
        assert!(!contains_token(b"", b"1"));
    }

    #[test]
    fn both_brazilian_spellings_are_looked_for() {
        let ids = [crate::queries::IdentityView {
            kind: "phone".into(),
            value: "+5511987654321".into(),
        }];
        let n = needles(&ids);
        assert!(n.contains(&"5511987654321".to_owned()), "{n:?}");
        assert!(n.contains(&"551187654321".to_owned()), "{n:?}");
    }
}
