//! Contacts, notes and error answers as Kommo's API v4 takes and gives them.
//!
//! Notes are Kommo `common` notes, whose `params.text` is shown as plain text (HTML is not
//! rendered there, unverified): the transcript of a batch is therefore written here as plain
//! text lines rather than with the SDK's HTML `transcript::content`, in the same spirit — each
//! message a line with its direction and text, then a bracketed line with WhatsApp's time, the
//! wamid and the delivery status, which `find_messages` and status updates read back.

use std::time::Duration;

use chrono::Utc;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use wacrm_core::{DeliveryState, Direction, E164};
use wacrm_crm::http::retry_after;
use wacrm_crm::{ContactSync, CrmError, MessageSync};

/// How long an account Kommo blocked (a non-JSON 403) is left alone before wacrm tries again.
pub const BLOCK_BACKOFF_MINUTES: i64 = 15;

/// The marker before the request ids a validation error names, in [`CrmError::Invalid`]'s
/// text (request ids are wacrm's own numbers, never personal data).
const REQUEST_IDS: &str = "request_id ";

/// Reads Kommo's error answers: `application/problem+json` with `title`, `type`, `status`,
/// `detail` and, for a refused batch, `validation-errors: [{request_id, errors: [{code, path,
/// detail}]}]` (field list unverified; the official PHP SDK reads `detail` and
/// `validation-errors` of a 400). Texts carry the status, titles, codes and paths — never the
/// values sent, nor `detail`, which may quote them.
///
/// - 429: too many requests (more than 7 a second): wait (`Retry-After` when given, else a
///   second) and send again.
/// - 403 without a JSON body: Kommo has blocked the account or the address for abusive traffic
///   (users report an HTML page): park the connection for a quarter of an hour rather than
///   stop it for good or keep sending. A JSON 403 is a refusal of rights (the token's user may
///   not do this): fatal.
/// - 401: the token was refused (OAuth: after one renewal): fatal. 402: the account's
///   subscription has lapsed (unverified): fatal.
/// - 400 with validation errors: the input is invalid; the request ids it names are kept in
///   the text so the adapter can refuse those items alone.
/// - 408, 5xx: transient (ambiguous for creates, `CrmHttp` decides).
pub fn classify(status: u16, headers: &HeaderMap, body: &Value) -> CrmError {
    let title = body["title"].as_str().unwrap_or("");
    let message = if title.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status} {title}")
    };
    match status {
        429 => CrmError::RateLimited {
            retry_after: retry_after(headers).or(Some(Duration::from_secs(1))),
        },
        403 if !body.is_object() => CrmError::QuotaExhausted {
            until: Utc::now() + chrono::Duration::minutes(BLOCK_BACKOFF_MINUTES),
        },
        401 => CrmError::Fatal(format!(
            "{message}: Kommo refused the token (a long-lived token revoked or expired, or an \
             OAuth authorisation withdrawn)"
        )),
        402 | 403 => CrmError::Fatal(format!(
            "{message}: the token's user may not do this, or the account is not active"
        )),
        408 | 500..=599 => CrmError::Transient(message),
        _ => CrmError::Invalid(validation_text(&message, body)),
    }
}

/// `message`, then each validation error as `request_id N: code at path`.
fn validation_text(message: &str, body: &Value) -> String {
    let mut parts = Vec::new();
    for item in body["validation-errors"].as_array().into_iter().flatten() {
        let id = match &item["request_id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => continue,
        };
        let errors: Vec<String> = item["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{} at {}",
                    e["code"].as_str().unwrap_or("invalid"),
                    e["path"].as_str().unwrap_or("?")
                )
            })
            .collect();
        parts.push(format!("{REQUEST_IDS}{id}: {}", errors.join(", ")));
    }
    if parts.is_empty() {
        message.to_owned()
    } else {
        format!("{message}: {}", parts.join("; "))
    }
}

/// The request ids a validation error ([`classify`]'s [`CrmError::Invalid`]) names.
pub fn refused_request_ids(error: &CrmError) -> Vec<String> {
    let CrmError::Invalid(text) = error else {
        return Vec::new();
    };
    text.split(REQUEST_IDS)
        .skip(1)
        .filter_map(|rest| rest.split(':').next())
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .collect()
}

/// The digits of a phone as someone typed it.
pub fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// Every digit string a person's phone may have been typed as for this WhatsApp id: the
/// spellings of [`E164::search_variants`] (international and national, and for Brazilian
/// mobiles without the 9th digit), as digits. A WhatsApp id that is not a phone (a BSUID, a
/// pseudonym) has none.
pub fn spellings(whatsapp_id: &str) -> Vec<String> {
    let Ok(number) = E164::parse(whatsapp_id) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for variant in number.search_variants() {
        let d = digits(&variant);
        if !d.is_empty() && !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// A contact's WhatsApp id (the value of the custom field `field_id`) and its phones (the
/// values of the `PHONE` field, as digits), from a contact as Kommo lists it
/// (`custom_fields_values: [{field_id, field_code, values: [{value, enum_code}]}]`, or `null`).
pub fn contact_keys(contact: &Value, field_id: i64) -> (Option<String>, Vec<String>) {
    let mut whatsapp_id = None;
    let mut phones = Vec::new();
    for field in contact["custom_fields_values"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let values = field["values"].as_array().into_iter().flatten();
        if field["field_id"].as_i64() == Some(field_id) {
            whatsapp_id = values
                .filter_map(|v| value_text(&v["value"]))
                .find(|v| !v.is_empty());
        } else if field["field_code"].as_str() == Some("PHONE") {
            phones.extend(
                values
                    .filter_map(|v| value_text(&v["value"]))
                    .map(|v| digits(&v))
                    .filter(|d| !d.is_empty()),
            );
        }
    }
    (whatsapp_id, phones)
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One contact of `POST /api/v4/contacts`: the name (WhatsApp's profile name when the policy
/// sends it, else the phone, else `WhatsApp <id>`), the phone in the system `PHONE` field as a
/// mobile (`enum_code: "MOB"`, only when the policy sends it), the WhatsApp id in its custom
/// field, and `request_id`, echoed back to match the answer to the input.
pub fn contact_body(contact: &ContactSync, field_id: i64, request_id: &str) -> Value {
    let name = contact
        .profile_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| contact.phone.as_ref().map(ToString::to_string))
        .unwrap_or_else(|| format!("WhatsApp {}", contact.whatsapp_id));
    let mut fields = vec![whatsapp_field(field_id, &contact.whatsapp_id)];
    if let Some(phone) = &contact.phone {
        fields.insert(
            0,
            json!({"field_code": "PHONE", "values": [{"value": phone.to_string(), "enum_code": "MOB"}]}),
        );
    }
    json!({
        "name": name,
        "custom_fields_values": fields,
        "request_id": request_id,
    })
}

/// The WhatsApp-id custom field with its value, as `custom_fields_values` takes it.
pub fn whatsapp_field(field_id: i64, whatsapp_id: &str) -> Value {
    json!({"field_id": field_id, "values": [{"value": whatsapp_id}]})
}

/// The first line of every note wacrm writes.
const HEADER: &str = "WhatsApp (wacrm)";
/// Separates the parts of a message's bracketed line.
const SEP: &str = " · ";
/// Marks the delivery status in a message's bracketed line.
const STATUS: &str = "status: ";

/// Keeps a free text on its own line(s): continuation lines are indented, so no line of it
/// starts with `[` (only wacrm's bracketed lines do).
fn indented(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\n  ")
}

/// A status or failure text inside a bracketed line: no brackets, separators or breaks.
fn inline(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '[' | ']' | '\n' | '\r' | '·' => ' ',
            c => c,
        })
        .collect()
}

/// The text a note of wacrm's holds once its contact was erased: no message, no wamid.
pub const ERASED_NOTE: &str = "WhatsApp (wacrm): messages erased at the person's request (LGPD)";

/// The text of a note holding these messages (one contact's, of one batch), in order: per
/// message a line `← text` (inbound) or `→ text` (outbound), then `[YYYY-MM-DD HH:MM:SS UTC ·
/// wamid]`, with ` · status: sent` for an outbound message's delivery status.
pub fn note_text(messages: &[&MessageSync]) -> String {
    let mut text = String::from(HEADER);
    for m in messages {
        let arrow = match m.direction {
            Direction::Inbound => "←",
            Direction::Outbound => "→",
        };
        let status = m
            .status
            .map(|s| format!("{SEP}{STATUS}{}", s.as_str()))
            .unwrap_or_default();
        text.push_str(&format!(
            "\n{arrow} {}\n[{} UTC{SEP}{}{status}]",
            indented(&m.body),
            m.timestamp.format("%Y-%m-%d %H:%M:%S"),
            inline(&m.wamid),
        ));
    }
    text
}

/// The parts of a bracketed line: time, wamid, and the status part if any.
fn bracketed(line: &str) -> Option<Vec<&str>> {
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let parts: Vec<&str> = inner.split(SEP).collect();
    (parts.len() >= 2 && parts[0].ends_with(" UTC")).then_some(parts)
}

/// The wamids of the messages of a note's text.
pub fn wamids_in(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(bracketed)
        .map(|parts| parts[1].to_owned())
        .collect()
}

/// The status written on `wamid`'s line, if any.
pub fn status_in(text: &str, wamid: &str) -> Option<String> {
    text.lines()
        .filter_map(bracketed)
        .find(|parts| parts[1] == wamid)
        .and_then(|parts| parts.get(2).and_then(|p| p.strip_prefix(STATUS)))
        .map(|s| s.split(' ').next().unwrap_or_default().to_owned())
}

/// The note's text with the status of `wamid`'s line set to `state` (and `failure`), or `None`
/// when the note has no line of that wamid.
pub fn with_status(
    text: &str,
    wamid: &str,
    state: DeliveryState,
    failure: Option<&str>,
) -> Option<String> {
    let mut found = false;
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| match bracketed(line) {
            Some(parts) if parts[1] == wamid => {
                found = true;
                let status = match failure {
                    Some(reason) => format!("{STATUS}{} ({})", state.as_str(), inline(reason)),
                    None => format!("{STATUS}{}", state.as_str()),
                };
                format!("[{}{SEP}{}{SEP}{status}]", parts[0], parts[1])
            }
            _ => line.to_owned(),
        })
        .collect();
    found.then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn message(wamid: &str, direction: Direction, status: Option<DeliveryState>) -> MessageSync {
        MessageSync {
            wamid: wamid.into(),
            crm_contact_id: "7".into(),
            direction,
            timestamp: DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default(),
            body: "WhatsApp from Maria: oi\n[2026-01-01 00:00:00 UTC · wamid.FAKE]".into(),
            kind: "text".into(),
            phone_number_id: "106540352242922".into(),
            status,
        }
    }

    #[test]
    fn a_note_carries_each_line_and_its_status_can_be_rewritten() {
        let a = message("wamid.A=", Direction::Inbound, None);
        let b = message("wamid.B=", Direction::Outbound, Some(DeliveryState::Sent));
        let text = note_text(&[&a, &b]);
        assert!(text.starts_with("WhatsApp (wacrm)\n← WhatsApp from Maria: oi\n  [2026"));
        assert!(
            text.contains("[2026-05-28 20:26:40 UTC · wamid.A=]"),
            "{text}"
        );
        // A message body that imitates a line is indented, so it is not read as one.
        assert_eq!(wamids_in(&text), vec!["wamid.A=", "wamid.B="]);
        assert_eq!(status_in(&text, "wamid.B=").as_deref(), Some("sent"));
        assert_eq!(status_in(&text, "wamid.A="), None);
        let read = with_status(&text, "wamid.B=", DeliveryState::Read, None).unwrap_or_default();
        assert_eq!(status_in(&read, "wamid.B=").as_deref(), Some("read"));
        let failed = with_status(&read, "wamid.A=", DeliveryState::Failed, Some("131026 [x]"))
            .unwrap_or_default();
        assert_eq!(status_in(&failed, "wamid.A=").as_deref(), Some("failed"));
        assert_eq!(status_in(&failed, "wamid.B=").as_deref(), Some("read"));
        assert_eq!(wamids_in(&failed).len(), 2);
        assert_eq!(
            with_status(&text, "wamid.C", DeliveryState::Read, None),
            None
        );
    }

    #[test]
    fn brazilian_numbers_are_found_with_and_without_the_ninth_digit() {
        let mut all = spellings("551187654321");
        all.sort();
        assert_eq!(
            all,
            vec!["1187654321", "11987654321", "551187654321", "5511987654321"]
        );
        assert!(spellings("bsuid.AbC").is_empty());
    }

    #[test]
    fn contacts_are_read_by_field_id_and_phone_code() {
        let contact = json!({"id": 1, "custom_fields_values": [
            {"field_id": 3, "field_code": "PHONE", "values": [{"value": "+55 (11) 8765-4321", "enum_code": "MOB"}]},
            {"field_id": 9, "field_code": "WHATSAPP_ID", "values": [{"value": "5511987654321"}]}
        ]});
        assert_eq!(
            contact_keys(&contact, 9),
            (
                Some("5511987654321".to_owned()),
                vec!["551187654321".to_owned()]
            )
        );
        assert_eq!(
            contact_keys(&json!({"id": 2, "custom_fields_values": null}), 9),
            (None, vec![])
        );
    }

    #[test]
    fn errors_are_classified_and_validation_names_the_refused_items() {
        let h = HeaderMap::new();
        let body = json!({"title": "Bad Request", "type": "https://httpstatus.es/400",
            "status": 400, "detail": "Request validation failed",
            "validation-errors": [{"request_id": "3", "errors": [
                {"code": "NotSupportedChoice", "path": "custom_fields_values.0.values.0.enum_code", "detail": "+5511…"}]},
                {"request_id": 5, "errors": []}]});
        let e = classify(400, &h, &body);
        assert_eq!(refused_request_ids(&e), vec!["3", "5"]);
        assert!(!e.to_string().contains("+5511"), "{e}");
        assert!(matches!(
            classify(429, &h, &Value::Null),
            CrmError::RateLimited { .. }
        ));
        assert!(matches!(
            classify(403, &h, &Value::String("<html>403 Forbidden</html>".into())),
            CrmError::QuotaExhausted { .. }
        ));
        assert!(matches!(
            classify(403, &h, &json!({"title": "Forbidden", "status": 403})),
            CrmError::Fatal(_)
        ));
        assert!(matches!(
            classify(401, &h, &Value::Null),
            CrmError::Fatal(_)
        ));
        assert!(matches!(
            classify(502, &h, &Value::Null),
            CrmError::Transient(_)
        ));
        assert!(refused_request_ids(&classify(404, &h, &Value::Null)).is_empty());
    }
}
