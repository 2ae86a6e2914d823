//! Outbound requests: what the API accepted, what the sender did with it.
//!
//! A request moves `accepted` → `sending` → `sent` | `failed`, or to `unknown` when wacrm
//! stopped while it was with WhatsApp. The API writes the `accepted` row before it publishes the
//! command, so an `Idempotency-Key` finds it again; the sender claims a row (`accepted` →
//! `sending`) in one conditional update before calling WhatsApp, so a command delivered twice
//! is sent once; and after the call it records the wamid (or the errors) before it publishes
//! the outcome, so a redelivered command republishes the same outcome instead of sending again.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};
use serde::Serialize;
use wacrm_core::contact::IdentityKey;
use wacrm_core::optout::MARKETING;
use wacrm_core::outbound::SendContext;

use crate::entities::{contact_identity, conversation, outbound_request, preference};
use crate::StoreError;

pub use outbound_request::Model as OutboundRow;

/// Where a request stands.
pub mod state {
    /// Accepted by the API, not yet with WhatsApp.
    pub const ACCEPTED: &str = "accepted";
    /// With WhatsApp now.
    pub const SENDING: &str = "sending";
    /// WhatsApp accepted it (`wamid` set).
    pub const SENT: &str = "sent";
    /// WhatsApp refused it, or retries ran out; not sent.
    pub const FAILED: &str = "failed";
    /// wacrm stopped while it was with WhatsApp: it may or may not have been sent.
    pub const UNKNOWN: &str = "unknown";
}

/// A request the API accepted.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Its id.
    pub request_id: String,
    /// The API key that asked.
    pub key_id: String,
    /// The client's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the request as received (a reused key must come with the same request).
    pub request_hash: String,
    /// `send` or `read`.
    pub kind: &'static str,
    /// The business number.
    pub phone_number_id: String,
    /// The contact, when known.
    pub contact_id: Option<String>,
    /// The command's data, as published (to publish it again).
    pub command: serde_json::Value,
}

/// What [`create`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// A new row.
    New(OutboundRow),
    /// The key's `Idempotency-Key` was used before: that request's row.
    Existing(OutboundRow),
}

/// Writes an `accepted` request, or finds the one its idempotency key already names.
pub async fn create(db: &DatabaseConnection, new: NewRequest) -> Result<Created, StoreError> {
    let now = Utc::now();
    let row = outbound_request::ActiveModel {
        request_id: Set(new.request_id.clone()),
        key_id: Set(new.key_id.clone()),
        idempotency_key: Set(new.idempotency_key.clone()),
        request_hash: Set(new.request_hash),
        kind: Set(new.kind.to_owned()),
        phone_number_id: Set(new.phone_number_id),
        contact_id: Set(new.contact_id),
        state: Set(state::ACCEPTED.to_owned()),
        wamid: Set(None),
        errors: Set(None),
        reason: Set(None),
        attempts: Set(0),
        command: Set(new.command),
        created_at: Set(now),
        updated_at: Set(now),
        claimed_by: Set(None),
    };
    let inserted = outbound_request::Entity::insert(row)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    if inserted == 1 {
        return get(db, &new.request_id)
            .await?
            .map(Created::New)
            .ok_or_else(|| StoreError::Invalid("request vanished after insert".into()));
    }
    match &new.idempotency_key {
        Some(key) => find_by_idempotency_key(db, &new.key_id, key)
            .await?
            .map(Created::Existing)
            .ok_or_else(|| StoreError::Invalid("idempotency conflict without a row".into())),
        None => Err(StoreError::Invalid(format!(
            "request id {} already exists",
            new.request_id
        ))),
    }
}

/// A request by id.
pub async fn get(
    db: &DatabaseConnection,
    request_id: &str,
) -> Result<Option<OutboundRow>, StoreError> {
    Ok(outbound_request::Entity::find_by_id(request_id.to_owned())
        .one(db)
        .await?)
}

/// The request a key made with an idempotency key.
pub async fn find_by_idempotency_key(
    db: &DatabaseConnection,
    key_id: &str,
    idempotency_key: &str,
) -> Result<Option<OutboundRow>, StoreError> {
    Ok(outbound_request::Entity::find()
        .filter(outbound_request::Column::KeyId.eq(key_id))
        .filter(outbound_request::Column::IdempotencyKey.eq(idempotency_key))
        .one(db)
        .await?)
}

/// The send request that produced a message.
pub async fn find_by_wamid(
    db: &DatabaseConnection,
    wamid: &str,
) -> Result<Option<OutboundRow>, StoreError> {
    Ok(outbound_request::Entity::find()
        .filter(outbound_request::Column::Wamid.eq(wamid))
        .filter(outbound_request::Column::Kind.eq("send"))
        .one(db)
        .await?)
}

/// What [`claim`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The request is now `sending`, and the caller owns it.
    Claimed,
    /// There is no such request (a command published without the API): create it first.
    Missing,
    /// Another attempt had it `sending` and never finished: the instance that claimed it
    /// stopped mid-call (it is no longer alive), or it is the caller itself, which claims a
    /// request once and so left it behind (a store error after the call went out).
    Interrupted(OutboundRow),
    /// Another instance, alive, claimed it less than `held_at_most` ago and has it `sending`
    /// right now (a consumer that lost its partition while still working on it): wait, it
    /// finishes it.
    Busy {
        /// The instance that holds it.
        holder: String,
    },
    /// It is finished (`sent`, `failed`, `unknown`): publish its outcome again, send nothing.
    Finished(OutboundRow),
}

/// Claims an `accepted` request for sending, in one conditional update, for `instance` (an
/// id registered with [`crate::instances`]). `held_at_most` is the longest any instance works
/// on one claim: a claim older than that was left behind even if its instance lives on.
pub async fn claim(
    db: &DatabaseConnection,
    request_id: &str,
    instance: &str,
    held_at_most: std::time::Duration,
) -> Result<Claim, StoreError> {
    let updated = outbound_request::Entity::update_many()
        .col_expr(outbound_request::Column::State, Expr::value(state::SENDING))
        .col_expr(
            outbound_request::Column::Attempts,
            Expr::col(outbound_request::Column::Attempts).add(1),
        )
        .col_expr(outbound_request::Column::ClaimedBy, Expr::value(instance))
        .col_expr(outbound_request::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(outbound_request::Column::RequestId.eq(request_id))
        .filter(outbound_request::Column::State.eq(state::ACCEPTED))
        .exec(db)
        .await?;
    if updated.rows_affected == 1 {
        return Ok(Claim::Claimed);
    }
    let Some(row) = get(db, request_id).await? else {
        return Ok(Claim::Missing);
    };
    if row.state != state::SENDING {
        return Ok(Claim::Finished(row));
    }
    let recent = Utc::now() - row.updated_at
        < chrono::Duration::from_std(held_at_most).unwrap_or(chrono::Duration::MAX);
    match row.claimed_by.clone() {
        Some(holder)
            if holder != instance && recent && crate::instances::is_alive(db, &holder).await? =>
        {
            Ok(Claim::Busy { holder })
        }
        _ => Ok(Claim::Interrupted(row)),
    }
}

/// Hands a claimed request back (`sending` → `accepted`): WhatsApp certainly did not send it
/// and it will be tried again.
pub async fn release(db: &DatabaseConnection, request_id: &str) -> Result<(), StoreError> {
    set_state(db, request_id, state::ACCEPTED, None, None, None).await
}

/// Records that WhatsApp accepted the request as `wamid`.
pub async fn finish_sent(
    db: &DatabaseConnection,
    request_id: &str,
    wamid: &str,
) -> Result<(), StoreError> {
    set_state(db, request_id, state::SENT, Some(wamid), None, None).await
}

/// Records that the request ended without a message (`failed` or `unknown`).
pub async fn finish_failed(
    db: &DatabaseConnection,
    request_id: &str,
    final_state: &'static str,
    reason: &str,
    errors: Option<serde_json::Value>,
) -> Result<(), StoreError> {
    set_state(db, request_id, final_state, None, Some(reason), errors).await
}

async fn set_state(
    db: &DatabaseConnection,
    request_id: &str,
    new_state: &str,
    wamid: Option<&str>,
    reason: Option<&str>,
    errors: Option<serde_json::Value>,
) -> Result<(), StoreError> {
    let mut update = outbound_request::Entity::update_many()
        .col_expr(outbound_request::Column::State, Expr::value(new_state))
        .col_expr(outbound_request::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(outbound_request::Column::RequestId.eq(request_id));
    if let Some(wamid) = wamid {
        update = update.col_expr(outbound_request::Column::Wamid, Expr::value(wamid));
    }
    if let Some(reason) = reason {
        update = update.col_expr(outbound_request::Column::Reason, Expr::value(reason));
    }
    if errors.is_some() {
        update = update.col_expr(outbound_request::Column::Errors, Expr::value(errors));
    }
    update.exec(db).await?;
    Ok(())
}

/// A request as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    /// The request id.
    pub request_id: String,
    /// `send` or `read`.
    pub kind: String,
    /// `accepted`, `sending`, `sent`, `failed` or `unknown`.
    pub state: String,
    /// The business number.
    pub phone_number_id: String,
    /// The contact, when known.
    pub contact_id: Option<String>,
    /// The message's wamid: the sent message, or the message marked as read.
    pub wamid: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    /// WhatsApp's errors.
    #[schema(value_type = Option<Object>)]
    pub errors: Option<serde_json::Value>,
    /// Calls made to WhatsApp for it.
    pub attempts: i32,
    /// When the API accepted it.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<OutboundRow> for RequestView {
    fn from(r: OutboundRow) -> Self {
        RequestView {
            request_id: r.request_id,
            kind: r.kind,
            state: r.state,
            phone_number_id: r.phone_number_id,
            contact_id: r.contact_id,
            wamid: r.wamid,
            reason: r.reason,
            errors: r.errors,
            attempts: r.attempts,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A recipient as the store knows them on a business number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    /// The contact, if they ever wrote (or were written to).
    pub contact_id: Option<String>,
    /// Every identity the contact is known by, oldest first (the current one of each kind
    /// last).
    pub keys: Vec<IdentityKey>,
    /// Window and opt-out facts.
    pub context: SendContext,
}

/// Whether WhatsApp ever told this store about the business number (a conversation on it): the
/// numbers a webhook reached are the business's own.
pub async fn is_known_number<C: ConnectionTrait>(
    db: &C,
    phone_number_id: &str,
) -> Result<bool, StoreError> {
    use sea_orm::QuerySelect;
    Ok(conversation::Entity::find()
        .filter(conversation::Column::PhoneNumberId.eq(phone_number_id))
        .limit(1)
        .one(db)
        .await?
        .is_some())
}

/// Looks a recipient up by identity keys, with what decides whether a message may be sent.
pub async fn recipient<C: ConnectionTrait>(
    db: &C,
    phone_number_id: &str,
    keys: &[IdentityKey],
) -> Result<Recipient, StoreError> {
    let mut contact_id = None;
    for key in keys {
        if let Some(row) =
            contact_identity::Entity::find_by_id((key.kind().to_owned(), key.value().to_owned()))
                .one(db)
                .await?
        {
            contact_id = Some(current_contact(db, row.contact_id).await?);
            break;
        }
    }
    let Some(contact_id) = contact_id else {
        return Ok(Recipient::default());
    };
    recipient_by_contact(db, phone_number_id, &contact_id).await
}

/// As [`recipient`], for a known contact id.
pub async fn recipient_by_contact<C: ConnectionTrait>(
    db: &C,
    phone_number_id: &str,
    contact_id: &str,
) -> Result<Recipient, StoreError> {
    let contact_id = current_contact(db, contact_id.to_owned()).await?;
    // Oldest first, by when WhatsApp first showed each identity (the projection stores the
    // event's time, whatever order webhooks were stored in): the last of a kind is the
    // contact's current one — after a number change, the new number.
    let keys = contact_identity::Entity::find()
        .filter(contact_identity::Column::ContactId.eq(contact_id.clone()))
        .order_by_asc(contact_identity::Column::CreatedAt)
        .order_by_asc(contact_identity::Column::Value)
        .all(db)
        .await?
        .into_iter()
        .filter_map(|r| IdentityKey::from_parts(&r.kind, &r.value))
        .collect();
    let last_inbound_at =
        conversation::Entity::find_by_id((phone_number_id.to_owned(), contact_id.clone()))
            .one(db)
            .await?
            .and_then(|c| c.last_inbound_at);
    let marketing_opt_out = preference::Entity::find_by_id((
        contact_id.clone(),
        phone_number_id.to_owned(),
        MARKETING.to_owned(),
    ))
    .one(db)
    .await?
    .is_some_and(|p| p.value == "stop");
    Ok(Recipient {
        contact_id: Some(contact_id),
        keys,
        context: SendContext {
            last_inbound_at,
            marketing_opt_out,
        },
    })
}

/// Follows merges to the contact that holds the history now.
async fn current_contact<C: ConnectionTrait>(db: &C, mut id: String) -> Result<String, StoreError> {
    for _ in 0..8 {
        match crate::entities::contact::Entity::find_by_id(id.clone())
            .one(db)
            .await?
            .and_then(|c| c.merged_into)
        {
            Some(next) => id = next,
            None => return Ok(id),
        }
    }
    Err(StoreError::Invalid(format!(
        "contact {id} is merged in a loop"
    )))
}
