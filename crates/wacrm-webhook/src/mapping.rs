//! Contacts, messages and statuses as webhook events; the batch body; the signature.
//!
//! A batch:
//!
//! ```json
//! {"connection": "hook", "events": [
//!   {"id": "contact:5511987654321", "type": "contact", "data": {"whatsapp_id": "5511987654321",
//!    "phone": "+5511987654321", "name": "Maria", "business_number": "106540352242922"}},
//!   {"id": "wamid.HBgM…", "type": "message", "data": {"wamid": "wamid.HBgM…",
//!    "contact": "5511987654321", "direction": "inbound", "time": "2026-12-02T10:00:00Z",
//!    "kind": "text", "body": "Quero um orçamento", "business_number": "106540352242922",
//!    "status": null}},
//!   {"id": "wamid.HBgM…:read", "type": "status", "data": {"wamid": "wamid.HBgM…",
//!    "state": "read", "failure": null}}
//! ]}
//! ```
//!
//! An erasure (LGPD/GDPR) comes alone in a batch of its own:
//!
//! ```json
//! {"connection": "hook", "events": [
//!   {"id": "contact.erased:5511987654321", "type": "contact.erased", "data": {
//!    "contact": "5511987654321", "whatsapp_id": "5511987654321",
//!    "messages": ["wamid.HBgM…", "wamid.HBgN…"]}}
//! ]}
//! ```
//!
//! The receiver must then delete the contact, every message whose `contact` it is (and those
//! listed), and their statuses — and keep no copy of the erasure event beyond applying it.
//!
//! An event's `id` is the same every time the event is sent, so a receiver drops repeats by it.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use wacrm_crm::{ContactErasure, ContactSync, MessageSync, StatusSync};

/// The header carrying the timestamp and the signature: `t=<unix seconds>,v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-wacrm-signature";

/// How far a receiver should let a delivery's timestamp be from its clock, in seconds. Every
/// attempt is signed afresh, so a retry is never older than this.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// The CRM id of a contact in a sink: its WhatsApp id.
pub fn contact_event(contact: &ContactSync) -> Value {
    json!({
        "id": format!("contact:{}", contact.whatsapp_id),
        "type": "contact",
        "data": {
            "whatsapp_id": contact.whatsapp_id,
            "phone": contact.phone.as_ref().map(ToString::to_string),
            "name": contact.profile_name,
            "business_number": contact.phone_number_id,
        }
    })
}

/// A message, on the contact whose WhatsApp id is its `crm_contact_id`.
pub fn message_event(message: &MessageSync) -> Value {
    json!({
        "id": message.wamid,
        "type": "message",
        "data": {
            "wamid": message.wamid,
            "contact": message.crm_contact_id,
            "direction": message.direction,
            "time": message.timestamp,
            "kind": message.kind,
            "body": message.body,
            "business_number": message.phone_number_id,
            "status": message.status,
        }
    })
}

/// A status change of a message.
pub fn status_event(status: &StatusSync) -> Value {
    let state = serde_json::to_value(status.state).unwrap_or(Value::Null);
    let id = format!("{}:{}", status.wamid, state.as_str().unwrap_or("unknown"));
    json!({
        "id": id,
        "type": "status",
        "data": {
            "wamid": status.wamid,
            "state": state,
            "failure": status.failure,
        }
    })
}

/// An erasure: the receiver deletes the contact (`contact`: its id in the sink, the WhatsApp
/// id), every message on it and those listed by wamid, and their statuses. Its id is the same
/// every time it is sent; applying it twice is harmless.
pub fn erased_event(contact: &ContactErasure) -> Value {
    let id = contact
        .crm_contact_id
        .clone()
        .unwrap_or_else(|| contact.whatsapp_id.clone());
    let mut messages: Vec<&String> = Vec::new();
    for wamid in &contact.message_crm_ids {
        if !messages.contains(&wamid) {
            messages.push(wamid);
        }
    }
    json!({
        "id": format!("contact.erased:{id}"),
        "type": "contact.erased",
        "data": {
            "contact": id,
            "whatsapp_id": contact.whatsapp_id,
            "messages": messages,
        }
    })
}

/// The body of one POST.
pub fn batch(connection: &str, events: Vec<Value>) -> Vec<u8> {
    // A `Value` always serialises.
    serde_json::to_vec(&json!({"connection": connection, "events": events})).unwrap_or_default()
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The [`SIGNATURE_HEADER`] value for `body` sent at `timestamp` (unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Why a delivery does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unverified {
    /// The header is not `t=…,v1=…`.
    Malformed,
    /// The timestamp is further than [`REPLAY_WINDOW_SECS`] from `now`.
    Stale,
    /// The signature does not match.
    Mismatch,
}

/// Verifies a delivery as a receiver would (in constant time): for receivers written in Rust.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64) -> Result<(), Unverified> {
    let mut timestamp = None;
    let mut tag = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => tag = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(tag)) = (timestamp, tag) else {
        return Err(Unverified::Malformed);
    };
    if (now - timestamp).abs() > REPLAY_WINDOW_SECS {
        return Err(Unverified::Stale);
    }
    mac(secret, timestamp, body)
        .verify_slice(&tag)
        .map_err(|_| Unverified::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_or_age_does_not() {
        let body = batch("hook", vec![json!({"id": "wamid.1"})]);
        let header = signature(b"0123456789abcdef", 1_800_000_000, &body);
        assert!(header.starts_with("t=1800000000,v1="));
        assert_eq!(
            verify(b"0123456789abcdef", &header, &body, 1_800_000_100),
            Ok(())
        );
        assert_eq!(
            verify(b"0123456789abcdeX", &header, &body, 1_800_000_100),
            Err(Unverified::Mismatch)
        );
        let mut changed = body.clone();
        changed[3] ^= 1;
        assert_eq!(
            verify(b"0123456789abcdef", &header, &changed, 1_800_000_100),
            Err(Unverified::Mismatch)
        );
        assert_eq!(
            verify(b"0123456789abcdef", &header, &body, 1_800_000_301),
            Err(Unverified::Stale)
        );
        assert_eq!(
            verify(b"0123456789abcdef", "v1=00", &body, 1_800_000_000),
            Err(Unverified::Malformed)
        );
    }
}
