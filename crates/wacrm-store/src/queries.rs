//! What the read API asks of the store.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;
use wacrm_core::contact::IdentityKey;

use crate::entities::{
    contact, contact_identity, conversation, dead_letter, message, message_status,
};
use crate::StoreError;

/// The kind of a message known only from status reports (sent from the business number by
/// another tool): listed as outbound with its statuses until — if ever — the message itself
/// arrives and replaces it.
pub const STATUS_ONLY_KIND: &str = "status_only";

/// One identity of a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IdentityView {
    /// `phone`, `bsuid` or `wa`.
    pub kind: String,
    /// The value (a phone in E.164, a BSUID, a raw `wa_id`).
    pub value: String,
}

/// A contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ContactView {
    /// wacrm's contact id.
    pub id: String,
    /// The WhatsApp profile name last reported.
    pub display_name: Option<String>,
    /// The WhatsApp username, if any.
    pub username: Option<String>,
    /// Every identity the contact is known by.
    pub identities: Vec<IdentityView>,
    /// When wacrm first saw the contact (WhatsApp's time).
    pub created_at: DateTime<Utc>,
}

/// A message as listed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    /// The wamid.
    pub id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `text`, `image`, …
    pub kind: String,
    /// WhatsApp's timestamp.
    pub timestamp: DateTime<Utc>,
    /// Current status of an outbound message (`accepted`, `sent`, `delivered`, `read`, `played`, `failed`).
    pub status: Option<String>,
    /// The error of a failed message.
    #[schema(value_type = Option<Object>)]
    pub status_error: Option<serde_json::Value>,
    /// The business number's phone number id.
    pub phone_number_id: String,
    /// The contact id.
    pub contact_id: String,
    /// The content, as wacrm's core model writes it.
    #[schema(value_type = Object)]
    pub content: serde_json::Value,
    /// Reply / forward context.
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
    /// The employee who sent it through wacrm.
    #[schema(value_type = Option<Object>)]
    pub sent_by: Option<serde_json::Value>,
}

/// One status report.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StatusView {
    /// The state.
    pub status: String,
    /// WhatsApp's time.
    pub timestamp: DateTime<Utc>,
    /// Errors of a failure.
    #[schema(value_type = Option<Object>)]
    pub errors: Option<serde_json::Value>,
    /// Pricing.
    #[schema(value_type = Option<Object>)]
    pub pricing: Option<serde_json::Value>,
}

/// A message with its status history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MessageDetail {
    /// The message.
    #[serde(flatten)]
    pub message: MessageView,
    /// Every status report, oldest first.
    pub status_history: Vec<StatusView>,
}

/// A dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    /// Its id.
    pub id: String,
    /// `webhook` or `consumer:<group>`.
    pub source: String,
    /// `dead_letter`, `retry`, `fatal`.
    pub error_class: String,
    /// Why.
    pub reason: String,
    /// The bytes, as text (lossy for non-UTF-8).
    pub payload: String,
    /// Headers of the dead-letter record.
    #[schema(value_type = Object)]
    pub headers: serde_json::Value,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When a re-drive succeeded; absent while it is still dead.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Re-drive attempts.
    pub attempts: i32,
    /// Why the last re-drive failed.
    pub last_error: Option<String>,
    /// The business number the dead letter concerns, when its payload names one.
    pub phone_number_id: Option<String>,
}

async fn contact_view(
    db: &DatabaseConnection,
    row: contact::Model,
) -> Result<ContactView, StoreError> {
    let identities = contact_identity::Entity::find()
        .filter(contact_identity::Column::ContactId.eq(row.id.clone()))
        .order_by_asc(contact_identity::Column::Kind)
        .order_by_asc(contact_identity::Column::Value)
        .all(db)
        .await?
        .into_iter()
        .map(|i| IdentityView {
            kind: i.kind,
            value: i.value,
        })
        .collect();
    Ok(ContactView {
        id: row.id,
        display_name: row.display_name,
        username: row.username,
        identities,
        created_at: row.created_at,
    })
}

/// Identity rows holding any of these keys.
pub(crate) fn identity_condition(keys: &[IdentityKey]) -> Condition {
    keys.iter().fold(Condition::any(), |any, key| {
        any.add(
            Condition::all()
                .add(contact_identity::Column::Kind.eq(key.kind()))
                .add(contact_identity::Column::Value.eq(key.value())),
        )
    })
}

/// The contacts that have a conversation with one of these business numbers.
pub(crate) fn contacts_of_numbers(numbers: &[String]) -> sea_orm::sea_query::SelectStatement {
    sea_orm::sea_query::Query::select()
        .column(conversation::Column::ContactId)
        .from(conversation::Entity)
        .and_where(conversation::Column::PhoneNumberId.is_in(numbers.iter().cloned()))
        .to_owned()
}

/// Whether a key limited to `numbers` (`None`: every number) may see a contact: it has a
/// conversation with one of them. Give the id [`get_contact`] answered with (a merged
/// contact's conversations are its survivor's).
pub async fn contact_visible(
    db: &DatabaseConnection,
    contact_id: &str,
    numbers: Option<&[String]>,
) -> Result<bool, StoreError> {
    let Some(numbers) = numbers else {
        return Ok(true);
    };
    Ok(conversation::Entity::find()
        .filter(conversation::Column::ContactId.eq(contact_id))
        .filter(conversation::Column::PhoneNumberId.is_in(numbers.iter().cloned()))
        .count(db)
        .await?
        > 0)
}

/// Contacts known by any of these identity keys, only those visible to a key limited to
/// `numbers` (see [`contact_visible`]).
pub async fn find_contacts(
    db: &DatabaseConnection,
    keys: &[IdentityKey],
    numbers: Option<&[String]>,
) -> Result<Vec<ContactView>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<String> = contact_identity::Entity::find()
        .filter(identity_condition(keys))
        .all(db)
        .await?
        .into_iter()
        .map(|i| i.contact_id)
        .collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(c) = get_contact(db, &id).await? {
            if contact_visible(db, &c.id, numbers).await? && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// Most contacts a search by name returns.
pub const NAME_SEARCH_LIMIT: usize = 50;

/// Contacts whose profile name (or WhatsApp username) contains `name`, ignoring case, that a
/// key limited to `numbers` may see; at most [`NAME_SEARCH_LIMIT`], newest first. `%` and `_`
/// in `name` are literal.
pub async fn find_contacts_by_name(
    db: &DatabaseConnection,
    name: &str,
    numbers: Option<&[String]>,
) -> Result<Vec<ContactView>, StoreError> {
    use sea_orm::sea_query::{Expr, Func};
    let needle: String = name.trim().to_lowercase().chars().take(100).collect();
    if needle.chars().count() < 2 {
        return Ok(Vec::new());
    }
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let pattern = format!("%{escaped}%");
    let matches = |column: contact::Column| {
        Expr::expr(Func::lower(Expr::col(column)))
            .like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\'))
    };
    let rows = contact::Entity::find()
        .filter(contact::Column::MergedInto.is_null())
        .filter(
            Condition::any()
                .add(matches(contact::Column::DisplayName))
                .add(matches(contact::Column::Username)),
        )
        .order_by_desc(contact::Column::UpdatedAt)
        // Room for the ones a limited key may not see.
        .limit(u64::try_from(NAME_SEARCH_LIMIT * 4).unwrap_or(200))
        .all(db)
        .await?;
    let mut out = Vec::new();
    for row in rows {
        if out.len() >= NAME_SEARCH_LIMIT {
            break;
        }
        if contact_visible(db, &row.id, numbers).await? {
            out.push(contact_view(db, row).await?);
        }
    }
    Ok(out)
}

/// A contact by id; a merged contact answers with the one it was merged into.
pub async fn get_contact(
    db: &DatabaseConnection,
    id: &str,
) -> Result<Option<ContactView>, StoreError> {
    let mut id = id.to_owned();
    for _ in 0..8 {
        let Some(row) = contact::Entity::find_by_id(id.clone()).one(db).await? else {
            return Ok(None);
        };
        match row.merged_into.clone() {
            Some(next) => id = next,
            None => return contact_view(db, row).await.map(Some),
        }
    }
    Err(StoreError::Invalid(format!(
        "contact {id} is merged in a loop"
    )))
}

fn message_view(m: message::Model) -> MessageView {
    MessageView {
        id: m.wamid,
        direction: m.direction,
        kind: m.kind,
        timestamp: m.timestamp,
        status: m.status,
        status_error: m.status_error,
        phone_number_id: m.phone_number_id,
        contact_id: m.contact_id,
        content: m.content,
        context: m.context,
        sent_by: m.sent_by,
    }
}

/// Where a page of a contact's history ends: the (time, wamid) of its last (oldest) message.
/// Opaque to clients (hex of the time in RFC 3339 and the wamid); the next page starts right
/// after it, so messages stored meanwhile neither shift nor repeat what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCursor {
    /// WhatsApp's time of the last message returned.
    pub timestamp: DateTime<Utc>,
    /// Its wamid.
    pub wamid: String,
}

impl HistoryCursor {
    /// The cursor's text.
    pub fn encode(&self) -> String {
        let text = format!(
            "{}\u{1f}{}",
            self.timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            self.wamid
        );
        hex::encode(text.as_bytes())
    }

    /// Reads a cursor's text; `None` when it is not one.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (time, wamid) = text.split_once('\u{1f}')?;
        let timestamp = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
        (!wamid.is_empty()).then(|| HistoryCursor {
            timestamp,
            wamid: wamid.to_owned(),
        })
    }
}

/// One page of a contact's history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MessagePage {
    /// Newest first.
    pub messages: Vec<MessageView>,
    /// The cursor of the next (older) page (`before=`); `null` on the last page.
    pub next: Option<String>,
}

/// A page of a contact's messages, newest first by WhatsApp's time (then wamid), older than
/// `before` when given, optionally only the business numbers given.
pub async fn contact_messages(
    db: &DatabaseConnection,
    contact_id: &str,
    numbers: Option<&[String]>,
    limit: u64,
    before: Option<&HistoryCursor>,
) -> Result<MessagePage, StoreError> {
    let mut query = message::Entity::find().filter(message::Column::ContactId.eq(contact_id));
    if let Some(numbers) = numbers {
        query = query.filter(message::Column::PhoneNumberId.is_in(numbers.iter().cloned()));
    }
    if let Some(c) = before {
        query = query.filter(
            Condition::any()
                .add(message::Column::Timestamp.lt(c.timestamp))
                .add(
                    Condition::all()
                        .add(message::Column::Timestamp.eq(c.timestamp))
                        .add(message::Column::Wamid.lt(c.wamid.clone())),
                ),
        );
    }
    let limit = limit.max(1);
    // One more than the page tells whether there is a next one.
    let mut rows = query
        .order_by_desc(message::Column::Timestamp)
        .order_by_desc(message::Column::Wamid)
        .limit(limit + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|m| {
            HistoryCursor {
                timestamp: m.timestamp,
                wamid: m.wamid.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    Ok(MessagePage {
        messages: rows.into_iter().map(message_view).collect(),
        next,
    })
}

/// A message with its status history.
pub async fn get_message(
    db: &DatabaseConnection,
    wamid: &str,
) -> Result<Option<MessageDetail>, StoreError> {
    let Some(m) = message::Entity::find_by_id(wamid.to_owned())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let history = message_status::Entity::find()
        .filter(message_status::Column::Wamid.eq(wamid))
        .order_by_asc(message_status::Column::Timestamp)
        .all(db)
        .await?
        .into_iter()
        .map(|s| StatusView {
            status: s.state,
            timestamp: s.timestamp,
            errors: s.errors,
            pricing: s.pricing,
        })
        .collect();
    Ok(Some(MessageDetail {
        message: message_view(m),
        status_history: history,
    }))
}

fn dead_letter_view(d: dead_letter::Model) -> DeadLetterView {
    DeadLetterView {
        id: d.id,
        source: d.source,
        error_class: d.error_class,
        reason: d.reason,
        payload: String::from_utf8_lossy(&d.payload).into_owned(),
        headers: d.headers,
        created_at: d.created_at,
        resolved_at: d.resolved_at,
        attempts: d.attempts,
        last_error: d.last_error,
        phone_number_id: d.phone_number_id,
    }
}

/// One dead letter.
pub async fn dead_letter(
    db: &DatabaseConnection,
    id: &str,
) -> Result<Option<DeadLetterView>, StoreError> {
    Ok(dead_letter::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(dead_letter_view))
}

/// Whether a key limited to `numbers` (`None`: every number) may see a dead letter: one of
/// its numbers; one whose number is unknown only keys of every number see.
pub fn dead_letter_visible(dead: &DeadLetterView, numbers: Option<&[String]>) -> bool {
    match numbers {
        None => true,
        Some(numbers) => dead
            .phone_number_id
            .as_ref()
            .is_some_and(|n| numbers.contains(n)),
    }
}

/// Dead letters, newest first; only unresolved ones unless `include_resolved`; only those a
/// key limited to `numbers` may see (see [`dead_letter_visible`]).
pub async fn dead_letters(
    db: &DatabaseConnection,
    limit: u64,
    include_resolved: bool,
    numbers: Option<&[String]>,
) -> Result<Vec<DeadLetterView>, StoreError> {
    let mut query = dead_letter::Entity::find();
    if let Some(numbers) = numbers {
        query = query.filter(dead_letter::Column::PhoneNumberId.is_in(numbers.iter().cloned()));
    }
    if !include_resolved {
        query = query.filter(dead_letter::Column::ResolvedAt.is_null());
    }
    Ok(query
        .order_by_desc(dead_letter::Column::CreatedAt)
        .order_by_desc(dead_letter::Column::BusOffset)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(dead_letter_view)
        .collect())
}

/// Records the outcome of a re-drive: resolved, or still dead with the reason.
pub async fn record_redrive(
    db: &DatabaseConnection,
    id: &str,
    outcome: Result<(), String>,
) -> Result<(), StoreError> {
    let mut update = dead_letter::Entity::update_many()
        .col_expr(
            dead_letter::Column::Attempts,
            sea_orm::sea_query::Expr::col(dead_letter::Column::Attempts).add(1),
        )
        .filter(dead_letter::Column::Id.eq(id));
    update = match outcome {
        Ok(()) => update.col_expr(
            dead_letter::Column::ResolvedAt,
            sea_orm::sea_query::Expr::value(Some(Utc::now())),
        ),
        Err(reason) => update.col_expr(
            dead_letter::Column::LastError,
            sea_orm::sea_query::Expr::value(Some(reason)),
        ),
    };
    update.exec(db).await?;
    Ok(())
}

/// How many rows each table holds (for tests and `wacrm doctor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Contacts not merged into another.
    pub contacts: u64,
    /// Messages.
    pub messages: u64,
    /// Status reports.
    pub statuses: u64,
    /// Dead letters.
    pub dead_letters: u64,
}

/// Row counts.
pub async fn counts(db: &DatabaseConnection) -> Result<Counts, StoreError> {
    Ok(Counts {
        contacts: contact::Entity::find()
            .filter(contact::Column::MergedInto.is_null())
            .count(db)
            .await?,
        messages: message::Entity::find().count(db).await?,
        statuses: message_status::Entity::find().count(db).await?,
        dead_letters: dead_letter::Entity::find().count(db).await?,
    })
}
