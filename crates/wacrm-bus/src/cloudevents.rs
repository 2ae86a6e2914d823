//! Core events as bus records, in CloudEvents 1.0 binary mode, and dead-letter records.
//!
//! The record value is the event's data as JSON; the attributes travel as headers:
//! `ce_specversion`, `ce_id` (the deterministic event id), `ce_type` (the versioned type name),
//! `ce_source`, `ce_time` (WhatsApp's time, RFC 3339) and `content-type`. The record key is the
//! event's key (conversation or contact). A consumer in any language reads them without wacrm.

use chrono::{DateTime, SecondsFormat, Utc};
use wacrm_core::event::{DecodeError, Event, EventId, EventPayload};
use wacrm_core::ErrorClass;

use crate::{OutboundRecord, Record, Topics};

/// `ce_specversion`.
pub const SPECVERSION: &str = "ce_specversion";
/// `ce_id`.
pub const ID: &str = "ce_id";
/// `ce_type`.
pub const TYPE: &str = "ce_type";
/// `ce_source`.
pub const SOURCE: &str = "ce_source";
/// `ce_time`.
pub const TIME: &str = "ce_time";
/// `content-type`.
pub const CONTENT_TYPE: &str = "content-type";

/// Dead-letter header: why the record is here.
pub const DLQ_REASON: &str = "wacrm_dlq_reason";
/// Dead-letter header: `retry`, `dead_letter` or `fatal`.
pub const DLQ_CLASS: &str = "wacrm_dlq_error_class";
/// Dead-letter header: where it came from (`webhook`, or `consumer:<group>`).
pub const DLQ_SOURCE: &str = "wacrm_dlq_source";
/// Dead-letter header: original topic.
pub const DLQ_TOPIC: &str = "wacrm_dlq_original_topic";
/// Dead-letter header: original partition.
pub const DLQ_PARTITION: &str = "wacrm_dlq_original_partition";
/// Dead-letter header: original record key.
pub const DLQ_KEY: &str = "wacrm_dlq_original_key";
/// Dead-letter header: original offset.
pub const DLQ_OFFSET: &str = "wacrm_dlq_original_offset";
/// Dead-letter header: the consumer group that gave up.
pub const DLQ_GROUP: &str = "wacrm_dlq_group";
/// Dead-letter header: a deterministic id (same input and reason ⇒ same id).
pub const DLQ_ID: &str = "wacrm_dlq_id";
/// Dead-letter header: when it was dead-lettered.
pub const DLQ_TIME: &str = "wacrm_dlq_time";

/// Why a record is not a wacrm event.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A required CloudEvents header is missing.
    #[error("record has no {0} header")]
    MissingHeader(&'static str),
    /// A header holds something unreadable.
    #[error("record header {0} is invalid: {1}")]
    BadHeader(&'static str, String),
    /// The data does not match the type.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The event could not be written as JSON.
    #[error("event cannot be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The record for an event, on the topic of its stream.
pub fn event_record(
    topics: &Topics,
    source: &str,
    event: &Event,
) -> Result<OutboundRecord, RecordError> {
    Ok(OutboundRecord {
        topic: topics.for_stream(event.stream()).to_owned(),
        key: event.key.clone(),
        headers: vec![
            (SPECVERSION.into(), "1.0".into()),
            (ID.into(), event.id.to_string()),
            (TYPE.into(), event.payload.type_name().into()),
            (SOURCE.into(), source.into()),
            (
                TIME.into(),
                event.time.to_rfc3339_opts(SecondsFormat::Secs, true),
            ),
            (CONTENT_TYPE.into(), "application/json".into()),
        ],
        payload: event.payload.data_json()?,
    })
}

/// Reads an event back from a record.
pub fn decode_event(record: &Record) -> Result<Event, RecordError> {
    let id = record.header(ID).ok_or(RecordError::MissingHeader(ID))?;
    let id = uuid::Uuid::parse_str(id).map_err(|e| RecordError::BadHeader(ID, e.to_string()))?;
    let type_name = record
        .header(TYPE)
        .ok_or(RecordError::MissingHeader(TYPE))?;
    let time = record
        .header(TIME)
        .ok_or(RecordError::MissingHeader(TIME))?;
    let time = DateTime::parse_from_rfc3339(time)
        .map_err(|e| RecordError::BadHeader(TIME, e.to_string()))?
        .with_timezone(&Utc);
    Ok(Event {
        id: EventId(id),
        time,
        key: record.key.clone(),
        payload: EventPayload::from_data(type_name, &record.payload)?,
    })
}

/// Where a dead letter came from.
#[derive(Debug, Clone)]
pub enum DeadLetterOrigin<'a> {
    /// A webhook body (or part of one) that could not be understood.
    Webhook,
    /// A record a consumer group could not process.
    Consumer {
        /// The group.
        group: &'a str,
        /// The record.
        record: &'a Record,
    },
}

/// A dead-letter record: the original bytes with the reason and origin as headers.
pub fn dead_letter_record(
    topics: &Topics,
    origin: DeadLetterOrigin<'_>,
    class: ErrorClass,
    reason: &str,
    payload: Vec<u8>,
) -> OutboundRecord {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut headers = Vec::with_capacity(10);
    let (key, source, id_basis) = match &origin {
        DeadLetterOrigin::Webhook => (String::new(), "webhook".to_owned(), payload.clone()),
        DeadLetterOrigin::Consumer { group, record } => {
            headers.extend(record.headers.iter().cloned());
            headers.push((DLQ_TOPIC.into(), record.topic.clone()));
            headers.push((DLQ_PARTITION.into(), record.partition.to_string()));
            headers.push((DLQ_OFFSET.into(), record.offset.to_string()));
            headers.push((DLQ_KEY.into(), record.key.clone()));
            headers.push((DLQ_GROUP.into(), (*group).to_owned()));
            let basis = format!(
                "{}/{}/{}/{}",
                group, record.topic, record.partition, record.offset
            );
            (
                record.key.clone(),
                format!("consumer:{group}"),
                basis.into_bytes(),
            )
        }
    };
    let basis = String::from_utf8_lossy(&id_basis);
    let id = EventId::derive("wacrm.dead_letter", &[&source, reason, &basis]);
    headers.push((DLQ_ID.into(), id.to_string()));
    headers.push((DLQ_SOURCE.into(), source));
    headers.push((DLQ_CLASS.into(), class.as_str().into()));
    headers.push((DLQ_REASON.into(), reason.into()));
    headers.push((DLQ_TIME.into(), now));
    OutboundRecord {
        topic: topics.dead_letters.clone(),
        key,
        headers,
        payload,
    }
}

/// The record a consumer dead letter re-drives: the original topic, key, headers (without the
/// dead-letter ones) and bytes. `None` for webhook dead letters, which are re-driven through
/// normalisation instead.
pub fn redrive_record(headers: &[(String, String)], payload: &[u8]) -> Option<OutboundRecord> {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let topic = find(DLQ_TOPIC)?;
    Some(OutboundRecord {
        topic,
        key: find(DLQ_KEY).unwrap_or_default(),
        headers: headers
            .iter()
            .filter(|(k, _)| !k.starts_with("wacrm_dlq_"))
            .cloned()
            .collect(),
        payload: payload.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacrm_core::contact::{ContactIdentity, ContactProfile};
    use wacrm_core::conversation::BusinessNumber;
    use wacrm_core::message::{Direction, Message, MessageContent};

    #[test]
    fn event_round_trips_through_a_record() {
        let event = Event::message(Message {
            wamid: "wamid.X".into(),
            direction: Direction::Inbound,
            business: BusinessNumber::new("1"),
            contact: ContactProfile {
                identity: ContactIdentity::from_webhook(Some("5511987654321"), None),
                name: None,
                username: None,
            },
            timestamp: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            context: None,
            referral: None,
            content: MessageContent::Text {
                body: "oi".into(),
                preview_url: false,
            },
            sent_by: None,
        })
        .unwrap();
        let out = event_record(&Topics::default(), "/wacrm/test", &event).unwrap();
        assert_eq!(out.topic, "wacrm.conversations");
        let record = Record {
            topic: out.topic,
            partition: 0,
            offset: 0,
            key: out.key,
            headers: out.headers,
            payload: out.payload,
            timestamp_ms: 0,
        };
        assert_eq!(record.header(TIME), Some("2023-11-14T22:13:20Z"));
        assert_eq!(decode_event(&record).unwrap(), event);
    }

    #[test]
    fn same_webhook_garbage_gets_same_dead_letter_id() {
        let a = dead_letter_record(
            &Topics::default(),
            DeadLetterOrigin::Webhook,
            ErrorClass::DeadLetter,
            "not json",
            b"xx".to_vec(),
        );
        let b = dead_letter_record(
            &Topics::default(),
            DeadLetterOrigin::Webhook,
            ErrorClass::DeadLetter,
            "not json",
            b"xx".to_vec(),
        );
        let id = |r: &OutboundRecord| {
            r.headers
                .iter()
                .find(|(k, _)| k == DLQ_ID)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(id(&a), id(&b));
        assert_eq!(a.topic, "wacrm.dead-letters");
    }
}
