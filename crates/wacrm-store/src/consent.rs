//! Consent records: a contact's opt-ins and opt-outs per purpose, append-only.
//!
//! Rows are only ever inserted: the history is the evidence (LGPD asks the controller to prove
//! consent), and the current state of a purpose is derived from it by
//! [`wacrm_core::consent::effective`] — the newest decision that applies, an opt-out winning a
//! tie. Employees record decisions through the API ([`record`]); decisions the contact makes in
//! WhatsApp (a stop or start keyword, WhatsApp's preference switch) and error 131050 are
//! recorded by the store projection from the `preference_changed` events, under the event's
//! id, so a replay records nothing twice.
//!
//! A decision may be limited to one business number (the keyword ones are: they were made in
//! that number's conversation) or hold for every number of the business. A contact merged into
//! another (a number change) keeps its rows under its old id; reads gather the whole family.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde::Serialize;
use wacrm_core::consent::{self as rule, ConsentState, Decision};

use crate::entities::{consent_record, contact};
use crate::StoreError;

pub use consent_record::Model as ConsentRow;

/// A decision to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent {
    /// The contact (its current id).
    pub contact_id: String,
    /// The purpose, as written (validated by [`wacrm_core::consent::Purpose::parse`]).
    pub purpose: String,
    /// An opt-in or an opt-out.
    pub granted: bool,
    /// The channel, as written.
    pub channel: String,
    /// Where: a form's URL, a campaign.
    pub source: String,
    /// Who recorded it: the employee's name.
    pub recorded_by: String,
    /// The API key used.
    pub key_id: Option<String>,
    /// The business number it is limited to (`None`: every number).
    pub phone_number_id: Option<String>,
    /// When the contact decided.
    pub at: DateTime<Utc>,
}

/// A consent decision as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConsentView {
    /// Its id.
    pub id: String,
    /// The contact it was recorded for (an earlier id of a merged contact keeps its own).
    pub contact_id: String,
    /// `marketing`, `service`, `surveys`, `data_sharing` or `custom:<slug>`.
    pub purpose: String,
    /// An opt-in (`true`) or an opt-out.
    pub granted: bool,
    /// `whatsapp`, `web_form`, `in_person`, `phone`, `email`, `sms`, `paper` or `other`.
    pub channel: String,
    /// Where: a form's URL, a campaign; `keyword`, `whatsapp_preferences` or
    /// `whatsapp_error_131050` for decisions made in WhatsApp.
    pub source: String,
    /// The employee who recorded it, `contact` (the contact did, in WhatsApp) or `whatsapp`.
    pub recorded_by: String,
    /// The API key used, when an employee recorded it.
    pub key_id: Option<String>,
    /// The business number it is limited to; absent: every number of the business.
    pub phone_number_id: Option<String>,
    /// When the contact decided.
    pub at: DateTime<Utc>,
    /// When wacrm recorded it.
    pub recorded_at: DateTime<Utc>,
}

impl From<ConsentRow> for ConsentView {
    fn from(r: ConsentRow) -> Self {
        ConsentView {
            id: r.id,
            contact_id: r.contact_id,
            purpose: r.purpose,
            granted: r.granted,
            channel: r.channel,
            source: r.source,
            recorded_by: r.recorded_by,
            key_id: r.key_id,
            phone_number_id: r.phone_number_id,
            at: r.at,
            recorded_at: r.recorded_at,
        }
    }
}

impl Decision for ConsentView {
    fn id(&self) -> &str {
        &self.id
    }
    fn purpose(&self) -> &str {
        &self.purpose
    }
    fn granted(&self) -> bool {
        self.granted
    }
    fn at(&self) -> DateTime<Utc> {
        self.at
    }
    fn phone_number_id(&self) -> Option<&str> {
        self.phone_number_id.as_deref()
    }
}

/// A contact's consent: what is in force and the whole history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConsentSummary {
    /// The decision in force per purpose and business number (the business-wide one, without
    /// `phone_number_id`, first).
    pub current: Vec<ConsentView>,
    /// Every decision, oldest first (by when the contact decided).
    pub history: Vec<ConsentView>,
}

/// Records a decision (a new row; nothing is ever updated).
pub async fn record<C: ConnectionTrait>(
    db: &C,
    new: NewConsent,
) -> Result<ConsentView, StoreError> {
    // Stored times keep microseconds on both databases: the row reads back as answered.
    let row = consent_record::Model {
        id: uuid::Uuid::new_v4().to_string(),
        contact_id: new.contact_id,
        purpose: new.purpose,
        granted: new.granted,
        channel: new.channel,
        source: new.source,
        recorded_by: new.recorded_by,
        key_id: new.key_id,
        phone_number_id: new.phone_number_id,
        at: new.at.trunc_subsecs(6),
        recorded_at: Utc::now().trunc_subsecs(6),
    };
    consent_record::Entity::insert(active(row.clone()))
        .exec_without_returning(db)
        .await?;
    Ok(row.into())
}

fn active(r: ConsentRow) -> consent_record::ActiveModel {
    consent_record::ActiveModel {
        id: Set(r.id),
        contact_id: Set(r.contact_id),
        purpose: Set(r.purpose),
        granted: Set(r.granted),
        channel: Set(r.channel),
        source: Set(r.source),
        recorded_by: Set(r.recorded_by),
        key_id: Set(r.key_id),
        phone_number_id: Set(r.phone_number_id),
        at: Set(r.at),
        recorded_at: Set(r.recorded_at),
    }
}

/// A contact's id and the ids of every contact merged into it (at any depth): rows written
/// before a merge keep the old id.
pub async fn family<C: ConnectionTrait>(
    db: &C,
    contact_id: &str,
) -> Result<Vec<String>, StoreError> {
    let mut ids = vec![contact_id.to_owned()];
    let mut frontier = vec![contact_id.to_owned()];
    // Merges chain a few deep at most; the bound keeps a corrupt loop from spinning.
    for _ in 0..8 {
        if frontier.is_empty() {
            break;
        }
        let merged: Vec<String> = contact::Entity::find()
            .filter(contact::Column::MergedInto.is_in(frontier.clone()))
            .all(db)
            .await?
            .into_iter()
            .map(|c| c.id)
            .filter(|id| !ids.contains(id))
            .collect();
        ids.extend(merged.iter().cloned());
        frontier = merged;
    }
    Ok(ids)
}

/// Rows a key limited to `numbers` may see: business-wide ones and those of its numbers.
pub(crate) fn visible_to(numbers: Option<&[String]>) -> Condition {
    match numbers {
        None => Condition::all(),
        Some(numbers) => Condition::any()
            .add(consent_record::Column::PhoneNumberId.is_null())
            .add(consent_record::Column::PhoneNumberId.is_in(numbers.iter().cloned())),
    }
}

/// Every decision recorded for a contact (and the contacts merged into it), oldest first, only
/// those a key limited to `numbers` may see.
pub async fn history<C: ConnectionTrait>(
    db: &C,
    contact_id: &str,
    numbers: Option<&[String]>,
) -> Result<Vec<ConsentView>, StoreError> {
    let ids = family(db, contact_id).await?;
    Ok(consent_record::Entity::find()
        .filter(consent_record::Column::ContactId.is_in(ids))
        .filter(visible_to(numbers))
        .order_by_asc(consent_record::Column::At)
        .order_by_asc(consent_record::Column::RecordedAt)
        .order_by_asc(consent_record::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(ConsentView::from)
        .collect())
}

/// A contact's consent as a key limited to `numbers` may see it: what is in force and the
/// history.
pub async fn summary<C: ConnectionTrait>(
    db: &C,
    contact_id: &str,
    numbers: Option<&[String]>,
) -> Result<ConsentSummary, StoreError> {
    let history = history(db, contact_id, numbers).await?;
    let current = rule::current(&history).into_iter().cloned().collect();
    Ok(ConsentSummary { current, history })
}

/// The decision in force for `purpose` when sending from `phone_number_id` to the contact.
pub async fn in_force<C: ConnectionTrait>(
    db: &C,
    contact_id: &str,
    phone_number_id: &str,
    purpose: &str,
) -> Result<Option<ConsentState>, StoreError> {
    let ids = family(db, contact_id).await?;
    let rows: Vec<ConsentView> = consent_record::Entity::find()
        .filter(consent_record::Column::ContactId.is_in(ids))
        .filter(consent_record::Column::Purpose.eq(purpose))
        .filter(visible_to(Some(&[phone_number_id.to_owned()])))
        .all(db)
        .await?
        .into_iter()
        .map(ConsentView::from)
        .collect();
    Ok(
        rule::effective(&rows, purpose, phone_number_id).map(|d| ConsentState {
            granted: d.granted,
            at: d.at,
            channel: d.channel.clone(),
        }),
    )
}
