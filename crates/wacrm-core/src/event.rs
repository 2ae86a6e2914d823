//! The events wacrm publishes: typed, versioned, with deterministic ids.
//!
//! Every event has a type name that carries its version (`wacrm.message.received.v1`); a
//! breaking change to a payload gets a new name, so consumers can read old and new side by side.
//! Ids are derived from what the event is about (a message's wamid, a status's wamid + state +
//! time, …), never from when it was processed: Meta delivering the same webhook three times
//! produces three events with the same id, and consumers drop the repeats.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::contact::{ContactIdentity, ContactProfile, IdentityKey};
use crate::conversation::{BusinessNumber, ConversationKey};
use crate::message::Message;
use crate::outbound::{ReadRequest, SendFailure, SendRequest};
use crate::status::{MetaError, StatusUpdate};

/// Namespace of wacrm's name-based (v5) event ids.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x5c1f_0b7e_7d4a_4f0e_9a51_7761_6372_6d01);

/// A deterministic event id (a UUID v5 of the event's type and identifying content).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    /// Derives the id from the type name and the parts that identify the event.
    pub fn derive(type_name: &str, parts: &[&str]) -> Self {
        let mut name = Vec::with_capacity(128);
        name.extend_from_slice(type_name.as_bytes());
        for part in parts {
            // A unit separator keeps ("ab","c") and ("a","bc") apart.
            name.push(0x1f);
            name.extend_from_slice(part.as_bytes());
        }
        EventId(Uuid::new_v5(&EVENT_NAMESPACE, &name))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A contact's profile as a webhook reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ContactUpdate {
    /// The business number the contact wrote to.
    pub business: BusinessNumber,
    /// The profile.
    pub profile: ContactProfile,
}

/// A contact moved to a new number (or other identity); their history stays one contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IdentityChange {
    /// The business number that was told.
    pub business: BusinessNumber,
    /// The identity before.
    pub old: ContactIdentity,
    /// The identity after.
    pub new: ContactIdentity,
    /// The wamid of the system message that reported it.
    pub wamid: String,
}

/// A contact's messaging preference (`user_preferences` webhooks: marketing stop / resume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PreferenceChange {
    /// The business number concerned.
    pub business: BusinessNumber,
    /// The contact.
    pub contact: ContactIdentity,
    /// What the preference is about (`marketing_messages`).
    pub category: String,
    /// `stop` or `resume`.
    pub value: String,
    /// WhatsApp's description, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Errors WhatsApp reported for a whole webhook change rather than for one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlatformError {
    /// The business number concerned.
    pub business: BusinessNumber,
    /// The errors.
    pub errors: Vec<MetaError>,
}

/// A WhatsApp voice call between a contact and a business number (Calling API `calls`
/// webhooks). A call the contact places opens the 24-hour window like a message does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Call {
    /// WhatsApp's call id (`wacid.…`).
    pub call_id: String,
    /// The business number.
    pub business: BusinessNumber,
    /// The contact.
    pub contact: ContactIdentity,
    /// `inbound` (the contact called) or `outbound` (the business called).
    pub direction: crate::message::Direction,
    /// The webhook's event: `connect`, `terminate`, …
    pub event: String,
    /// For `terminate`: `COMPLETED`, `FAILED`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// For `terminate`: the duration in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// When WhatsApp says it happened.
    pub timestamp: DateTime<Utc>,
}

/// One entry of the audit log, as published on the audit topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditRecord {
    /// Position in the log, from 1, without gaps.
    pub seq: i64,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// The API key used.
    pub key_id: String,
    /// The employee's name registered with the key.
    pub actor: String,
    /// What was done (`messages.send`, `contacts.read`, …).
    pub action: String,
    /// The contact concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    /// The object acted on (a wamid, a request id, …), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `ok`, `denied`, `rejected`, `not_found`, `invalid`, `error`.
    pub outcome: String,
    /// The entry's link (hex): an HMAC-SHA-256 under the audit key of the previous link and this
    /// entry's fields (entries written before the audit key: their SHA-256).
    pub hash: String,
    /// The previous entry's hash.
    pub prev_hash: String,
}

/// A contact was erased (LGPD art. 18, VI): every consumer must erase what it holds on them.
///
/// The person is named by contact ids, never by a phone number: a contact id is the UUID v5,
/// under the namespace [`crate::contact::CONTACT_ID_NAMESPACE`], of an identity written
/// `phone:+5511987654321`, `bsuid:…` or `wa:…` — a consumer holding a phone computes the id
/// and finds its records; a reader of the bus without the phone learns nothing it could call.
/// docs/events.md says what a consumer must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ContactErased {
    /// The erasure's id (`GET /v1/erasures/{id}`).
    pub erasure_id: String,
    /// The contact id wacrm used for the person.
    pub contact_id: String,
    /// The contact id of every identity the person had (each phone, BSUID, wa id), the
    /// contact's own included.
    pub identity_ids: Vec<String>,
    /// Events about the person that happened at or before this time are theirs to erase; a
    /// later message means the person wrote again.
    pub erased_at: DateTime<Utc>,
}

/// What happened. The serialized tag is the versioned type name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum EventPayload {
    /// A contact wrote to the business.
    #[serde(rename = "wacrm.message.received.v1")]
    MessageReceived(Message),
    /// The business sent a message.
    #[serde(rename = "wacrm.message.sent.v1")]
    MessageSent(Message),
    /// WhatsApp reported a delivery status of an outbound message.
    #[serde(rename = "wacrm.message.status.v1")]
    StatusChanged(StatusUpdate),
    /// A webhook told us a contact's profile.
    #[serde(rename = "wacrm.contact.updated.v1")]
    ContactUpdated(ContactUpdate),
    /// A contact changed number.
    #[serde(rename = "wacrm.contact.identity_changed.v1")]
    ContactIdentityChanged(IdentityChange),
    /// A contact stopped or resumed marketing messages.
    #[serde(rename = "wacrm.contact.preference_changed.v1")]
    PreferenceChanged(PreferenceChange),
    /// WhatsApp reported errors for a whole webhook change.
    #[serde(rename = "wacrm.whatsapp.error.v1")]
    PlatformError(PlatformError),
    /// A voice call started or ended.
    #[serde(rename = "wacrm.call.v1")]
    Call(Call),
    /// An employee asked for a message to be sent (commands topic).
    #[serde(rename = "wacrm.message.send_requested.v1")]
    SendRequested(SendRequest),
    /// An employee asked for a message to be marked as read (commands topic).
    #[serde(rename = "wacrm.message.read_requested.v1")]
    ReadRequested(ReadRequest),
    /// A send request ended without a message (refused, or its outcome unknown).
    #[serde(rename = "wacrm.message.send_failed.v1")]
    SendFailed(SendFailure),
    /// An entry was written to the audit log (audit topic).
    #[serde(rename = "wacrm.audit.recorded.v1")]
    AuditRecorded(AuditRecord),
    /// A contact was erased: consumers erase them too (contacts topic).
    #[serde(rename = "wacrm.contact.erased.v1")]
    ContactErased(ContactErased),
}

/// Every event type name wacrm publishes.
pub const EVENT_TYPES: [&str; 13] = [
    MESSAGE_RECEIVED,
    MESSAGE_SENT,
    STATUS_CHANGED,
    CONTACT_UPDATED,
    CONTACT_IDENTITY_CHANGED,
    PREFERENCE_CHANGED,
    PLATFORM_ERROR,
    CALL,
    SEND_REQUESTED,
    READ_REQUESTED,
    SEND_FAILED,
    AUDIT_RECORDED,
    CONTACT_ERASED,
];
/// Type name of [`EventPayload::MessageReceived`].
pub const MESSAGE_RECEIVED: &str = "wacrm.message.received.v1";
/// Type name of [`EventPayload::MessageSent`].
pub const MESSAGE_SENT: &str = "wacrm.message.sent.v1";
/// Type name of [`EventPayload::StatusChanged`].
pub const STATUS_CHANGED: &str = "wacrm.message.status.v1";
/// Type name of [`EventPayload::ContactUpdated`].
pub const CONTACT_UPDATED: &str = "wacrm.contact.updated.v1";
/// Type name of [`EventPayload::ContactIdentityChanged`].
pub const CONTACT_IDENTITY_CHANGED: &str = "wacrm.contact.identity_changed.v1";
/// Type name of [`EventPayload::PreferenceChanged`].
pub const PREFERENCE_CHANGED: &str = "wacrm.contact.preference_changed.v1";
/// Type name of [`EventPayload::PlatformError`].
pub const PLATFORM_ERROR: &str = "wacrm.whatsapp.error.v1";
/// Type name of [`EventPayload::Call`].
pub const CALL: &str = "wacrm.call.v1";
/// Type name of [`EventPayload::SendRequested`].
pub const SEND_REQUESTED: &str = "wacrm.message.send_requested.v1";
/// Type name of [`EventPayload::ReadRequested`].
pub const READ_REQUESTED: &str = "wacrm.message.read_requested.v1";
/// Type name of [`EventPayload::SendFailed`].
pub const SEND_FAILED: &str = "wacrm.message.send_failed.v1";
/// Type name of [`EventPayload::AuditRecorded`].
pub const AUDIT_RECORDED: &str = "wacrm.audit.recorded.v1";
/// Type name of [`EventPayload::ContactErased`].
pub const CONTACT_ERASED: &str = "wacrm.contact.erased.v1";

/// Why an event's data could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The type name is not one this version knows.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The data does not match the type.
    #[error("event data does not match {type_name}: {source}")]
    Data {
        /// The type name.
        type_name: String,
        /// The JSON error.
        source: serde_json::Error,
    },
}

impl EventPayload {
    /// The identity a contact event (profile, identity change, preference) is about: the
    /// contact's primary identity (for an identity change, the old one). `None` for other events.
    pub fn contact_identity(&self) -> Option<IdentityKey> {
        match self {
            EventPayload::ContactUpdated(c) => c.profile.identity.primary_key(),
            EventPayload::ContactIdentityChanged(c) => c.old.primary_key(),
            EventPayload::PreferenceChanged(p) => p.contact.primary_key(),
            _ => None,
        }
    }

    /// The versioned type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventPayload::MessageReceived(_) => MESSAGE_RECEIVED,
            EventPayload::MessageSent(_) => MESSAGE_SENT,
            EventPayload::StatusChanged(_) => STATUS_CHANGED,
            EventPayload::ContactUpdated(_) => CONTACT_UPDATED,
            EventPayload::ContactIdentityChanged(_) => CONTACT_IDENTITY_CHANGED,
            EventPayload::PreferenceChanged(_) => PREFERENCE_CHANGED,
            EventPayload::PlatformError(_) => PLATFORM_ERROR,
            EventPayload::Call(_) => CALL,
            EventPayload::SendRequested(_) => SEND_REQUESTED,
            EventPayload::ReadRequested(_) => READ_REQUESTED,
            EventPayload::SendFailed(_) => SEND_FAILED,
            EventPayload::AuditRecorded(_) => AUDIT_RECORDED,
            EventPayload::ContactErased(_) => CONTACT_ERASED,
        }
    }

    /// The payload's data alone as JSON (the CloudEvents `data`).
    pub fn data_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            EventPayload::MessageReceived(m) | EventPayload::MessageSent(m) => {
                serde_json::to_vec(m)
            }
            EventPayload::StatusChanged(s) => serde_json::to_vec(s),
            EventPayload::ContactUpdated(c) => serde_json::to_vec(c),
            EventPayload::ContactIdentityChanged(c) => serde_json::to_vec(c),
            EventPayload::PreferenceChanged(p) => serde_json::to_vec(p),
            EventPayload::PlatformError(e) => serde_json::to_vec(e),
            EventPayload::Call(c) => serde_json::to_vec(c),
            EventPayload::SendRequested(r) => serde_json::to_vec(r),
            EventPayload::ReadRequested(r) => serde_json::to_vec(r),
            EventPayload::SendFailed(f) => serde_json::to_vec(f),
            EventPayload::AuditRecorded(a) => serde_json::to_vec(a),
            EventPayload::ContactErased(e) => serde_json::to_vec(e),
        }
    }

    /// Reads a payload back from its type name and data.
    pub fn from_data(type_name: &str, data: &[u8]) -> Result<Self, DecodeError> {
        fn parse<T: serde::de::DeserializeOwned>(t: &str, d: &[u8]) -> Result<T, DecodeError> {
            serde_json::from_slice(d).map_err(|source| DecodeError::Data {
                type_name: t.to_owned(),
                source,
            })
        }
        Ok(match type_name {
            MESSAGE_RECEIVED => EventPayload::MessageReceived(parse(type_name, data)?),
            MESSAGE_SENT => EventPayload::MessageSent(parse(type_name, data)?),
            STATUS_CHANGED => EventPayload::StatusChanged(parse(type_name, data)?),
            CONTACT_UPDATED => EventPayload::ContactUpdated(parse(type_name, data)?),
            CONTACT_IDENTITY_CHANGED => {
                EventPayload::ContactIdentityChanged(parse(type_name, data)?)
            }
            PREFERENCE_CHANGED => EventPayload::PreferenceChanged(parse(type_name, data)?),
            PLATFORM_ERROR => EventPayload::PlatformError(parse(type_name, data)?),
            CALL => EventPayload::Call(parse(type_name, data)?),
            SEND_REQUESTED => EventPayload::SendRequested(parse(type_name, data)?),
            READ_REQUESTED => EventPayload::ReadRequested(parse(type_name, data)?),
            SEND_FAILED => EventPayload::SendFailed(parse(type_name, data)?),
            AUDIT_RECORDED => EventPayload::AuditRecorded(parse(type_name, data)?),
            CONTACT_ERASED => EventPayload::ContactErased(parse(type_name, data)?),
            other => return Err(DecodeError::UnknownType(other.to_owned())),
        })
    }
}

/// Which stream an event belongs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Messages, statuses and reactions, keyed by conversation.
    Conversations,
    /// Contact profiles and identities, keyed by contact.
    Contacts,
    /// Requests to send or mark as read, keyed by conversation.
    Commands,
    /// Audit entries, all under one key so they stay in log order.
    Audit,
}

/// One event: id, event time, key, and what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    /// Deterministic id: the same webhook content yields the same id.
    pub id: EventId,
    /// When it happened according to WhatsApp (for platform errors, when wacrm received them).
    pub time: DateTime<Utc>,
    /// The record key: a conversation key for conversation events, a contact key for contact
    /// events. Events with one key stay in order.
    pub key: String,
    /// What happened.
    #[serde(flatten)]
    pub payload: EventPayload,
}

impl Event {
    /// The stream the event goes to.
    pub fn stream(&self) -> Stream {
        match self.payload {
            EventPayload::ContactUpdated(_)
            | EventPayload::ContactIdentityChanged(_)
            | EventPayload::PreferenceChanged(_)
            | EventPayload::ContactErased(_) => Stream::Contacts,
            EventPayload::MessageReceived(_)
            | EventPayload::MessageSent(_)
            | EventPayload::StatusChanged(_)
            | EventPayload::SendFailed(_)
            | EventPayload::Call(_)
            | EventPayload::PlatformError(_) => Stream::Conversations,
            EventPayload::SendRequested(_) | EventPayload::ReadRequested(_) => Stream::Commands,
            EventPayload::AuditRecorded(_) => Stream::Audit,
        }
    }

    /// A call event, keyed by its conversation, with an id from the call id, event and time.
    pub fn call(call: Call) -> Option<Self> {
        let key = ConversationKey {
            phone_number_id: call.business.phone_number_id.clone(),
            contact: call.contact.primary_key()?,
        }
        .as_record_key();
        let ts = call.timestamp.timestamp().to_string();
        Some(Event {
            id: EventId::derive(CALL, &[&call.call_id, &call.event, &ts]),
            time: call.timestamp,
            key,
            payload: EventPayload::Call(call),
        })
    }

    /// A send request, keyed by its conversation, with an id from its request id.
    pub fn send_requested(request: SendRequest) -> Option<Self> {
        let key = request.conversation_key()?.as_record_key();
        Some(Event {
            id: EventId::derive(SEND_REQUESTED, &[&request.request_id]),
            time: request.requested_at,
            key,
            payload: EventPayload::SendRequested(request),
        })
    }

    /// A mark-as-read request, keyed by its conversation, with an id from its request id.
    pub fn read_requested(request: ReadRequest) -> Option<Self> {
        let key = ConversationKey {
            phone_number_id: request.business.phone_number_id.clone(),
            contact: request.contact.primary_key()?,
        }
        .as_record_key();
        Some(Event {
            id: EventId::derive(READ_REQUESTED, &[&request.request_id]),
            time: request.requested_at,
            key,
            payload: EventPayload::ReadRequested(request),
        })
    }

    /// A failed send, keyed by its conversation, with an id from its request id.
    pub fn send_failed(failure: SendFailure) -> Option<Self> {
        let key = ConversationKey {
            phone_number_id: failure.business.phone_number_id.clone(),
            contact: failure.contact.primary_key()?,
        }
        .as_record_key();
        Some(Event {
            id: EventId::derive(SEND_FAILED, &[&failure.request_id]),
            time: failure.failed_at,
            key,
            payload: EventPayload::SendFailed(failure),
        })
    }

    /// A contact's erasure, keyed by the contact id, with an id from the erasure's.
    pub fn contact_erased(erased: ContactErased) -> Self {
        Event {
            id: EventId::derive(CONTACT_ERASED, &[&erased.erasure_id]),
            time: erased.erased_at,
            key: erased.contact_id.clone(),
            payload: EventPayload::ContactErased(erased),
        }
    }

    /// An audit entry, keyed `audit` (one key: one partition, log order), with an id from its
    /// position and hash.
    pub fn audit(record: AuditRecord) -> Self {
        Event {
            id: EventId::derive(AUDIT_RECORDED, &[&record.seq.to_string(), &record.hash]),
            time: record.at,
            key: "audit".to_owned(),
            payload: EventPayload::AuditRecorded(record),
        }
    }

    /// A message event (received or sent), keyed by its conversation, with an id from its wamid.
    pub fn message(message: Message) -> Option<Self> {
        let key = message.conversation_key()?.as_record_key();
        let payload = match message.direction {
            crate::message::Direction::Inbound => EventPayload::MessageReceived(message),
            crate::message::Direction::Outbound => EventPayload::MessageSent(message),
        };
        let (wamid, time) = match &payload {
            EventPayload::MessageReceived(m) | EventPayload::MessageSent(m) => {
                (m.wamid.as_str(), m.timestamp)
            }
            _ => return None,
        };
        Some(Event {
            id: EventId::derive(payload.type_name(), &[wamid]),
            time,
            key,
            payload,
        })
    }

    /// A status event, keyed by the message's conversation, with an id from wamid, state, time
    /// and error codes.
    pub fn status(status: StatusUpdate) -> Option<Self> {
        let key = status.conversation_key()?.as_record_key();
        let ts = status.timestamp.timestamp().to_string();
        let codes: Vec<String> = status.errors.iter().map(|e| e.code.to_string()).collect();
        let codes = codes.join(",");
        let id = EventId::derive(
            STATUS_CHANGED,
            &[&status.wamid, status.state.as_str(), &ts, &codes],
        );
        Some(Event {
            id,
            time: status.timestamp,
            key,
            payload: EventPayload::StatusChanged(status),
        })
    }

    /// A contact event keyed by the contact id of the contact's primary identity
    /// ([`IdentityKey::contact_id`]): the compacted contacts topic keeps the latest record per
    /// key, and a key that is not the phone number leaves nothing of the person there once an
    /// erasure's records replace theirs. `time` is the time of the message that carried it;
    /// `id_parts` identify it (e.g. the wamid that carried a profile).
    pub fn contact(payload: EventPayload, time: DateTime<Utc>, id_parts: &[&str]) -> Option<Self> {
        let contact_key = payload.contact_identity()?;
        Some(Event {
            id: EventId::derive(payload.type_name(), id_parts),
            time,
            key: contact_key.contact_id(),
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Direction, MessageContent};

    fn message(wamid: &str) -> Message {
        Message {
            wamid: wamid.into(),
            direction: Direction::Inbound,
            business: BusinessNumber::new("106540352242922"),
            contact: ContactProfile {
                identity: ContactIdentity::from_webhook(Some("5511987654321"), None),
                name: Some("Maria".into()),
                username: None,
            },
            timestamp: DateTime::from_timestamp(1_749_416_383, 0).unwrap_or_default(),
            context: None,
            referral: None,
            content: MessageContent::Text {
                body: "oi".into(),
                preview_url: false,
            },
            sent_by: None,
        }
    }

    #[test]
    fn same_message_gives_same_id_and_key() {
        let a = Event::message(message("wamid.A")).unwrap();
        let b = Event::message(message("wamid.A")).unwrap();
        let c = Event::message(message("wamid.B")).unwrap();
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(a.key, "106540352242922/phone:+5511987654321");
    }

    #[test]
    fn data_round_trips_by_type_name() {
        let event = Event::message(message("wamid.A")).unwrap();
        let data = event.payload.data_json().unwrap();
        let back = EventPayload::from_data(event.payload.type_name(), &data).unwrap();
        assert_eq!(back, event.payload);
        assert!(matches!(
            EventPayload::from_data("wacrm.nope.v9", &data),
            Err(DecodeError::UnknownType(_))
        ));
    }

    #[test]
    fn derive_separates_parts() {
        assert_ne!(
            EventId::derive("t", &["ab", "c"]),
            EventId::derive("t", &["a", "bc"])
        );
    }

    #[test]
    fn full_event_json_carries_versioned_type() {
        let event = Event::message(message("wamid.A")).unwrap();
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "wacrm.message.received.v1");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
