//! Cloud API webhook bodies for tests, in the shape of Meta's `WebhookPayload` (the fixtures in
//! `crates/wacrm-whatsapp/tests/fixtures/` are the reference; these are built to order).

use serde_json::{json, Value};

fn envelope(phone_number_id: &str, value: Value) -> Value {
    envelope_for("messages", phone_number_id, value)
}

fn envelope_for(field: &str, phone_number_id: &str, value: Value) -> Value {
    let mut value = value;
    if let Some(o) = value.as_object_mut() {
        o.insert("messaging_product".into(), json!("whatsapp"));
        o.insert(
            "metadata".into(),
            json!({"display_phone_number": "15550783881", "phone_number_id": phone_number_id}),
        );
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": field}]}]
    })
}

/// An inbound text from `from` (digits) to `phone_number_id`, sent at `timestamp` (Unix
/// seconds).
pub fn text(phone_number_id: &str, from: &str, wamid: &str, body: &str, timestamp: i64) -> Vec<u8> {
    envelope(
        phone_number_id,
        json!({
            "contacts": [{"profile": {"name": "Cliente"}, "wa_id": from}],
            "messages": [{
                "from": from, "id": wamid, "timestamp": timestamp.to_string(),
                "type": "text", "text": {"body": body}
            }]
        }),
    )
    .to_string()
    .into_bytes()
}

/// A status report for an outbound message; `error_code` makes it a failure with that code.
pub fn status(
    phone_number_id: &str,
    recipient: &str,
    wamid: &str,
    state: &str,
    timestamp: i64,
    error_code: Option<i64>,
) -> Vec<u8> {
    let mut status = json!({
        "id": wamid, "status": state, "timestamp": timestamp.to_string(),
        "recipient_id": recipient
    });
    if let (Some(code), Some(o)) = (error_code, status.as_object_mut()) {
        o.insert(
            "errors".into(),
            json!([{"code": code, "title": "error", "message": "error",
                    "error_data": {"details": "reported by the test"}}]),
        );
    }
    envelope(phone_number_id, json!({"statuses": [status]}))
        .to_string()
        .into_bytes()
}

/// A call the contact `from` placed to `phone_number_id` (Calling API `calls` webhook, in the
/// shape of Meta's "User-initiated calls" page), with `event` `connect` or `terminate`.
pub fn user_call(
    phone_number_id: &str,
    from: &str,
    call_id: &str,
    event: &str,
    timestamp: i64,
) -> Vec<u8> {
    envelope_for(
        "calls",
        phone_number_id,
        json!({
            "contacts": [{"profile": {"name": "Cliente"}, "wa_id": from}],
            "calls": [{
                "id": call_id, "from": from, "to": "15550783881", "event": event,
                "timestamp": timestamp.to_string(), "direction": "USER_INITIATED"
            }]
        }),
    )
    .to_string()
    .into_bytes()
}
