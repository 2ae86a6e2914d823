//! Contacts, tasks' text, RDQL and error answers as RD Station CRM v2 takes and gives them.
//!
//! A task's `description` is plain text in Portuguese: what salespeople in Brazil read. One
//! message is one header line — direction, WhatsApp's time, wamid and (outbound) status in
//! brackets, then who wrote and the text — and the text's further lines indented, so a line
//! of a message never passes for another message:
//!
//! ```text
//! Mensagens do WhatsApp (registradas pelo wacrm)
//! ← [28/05/2026 20:26:40 UTC · wamid.HBgN…] Recebida de Maria: Oi, tudo bem?
//! → [28/05/2026 20:27:05 UTC · wamid.HBgM… · lida] Enviada por João: Tudo ótimo!
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use wacrm_core::{DeliveryState, Direction, E164};
use wacrm_crm::http::retry_after;
use wacrm_crm::{ContactSync, CrmError, MessageSync};

/// Reads v2's error answers (`{"errors": [...]}`, crm-v2-introduction; the elements' fields
/// are not documented, so the first string among `code`, `title` is named, never `detail` or
/// values that may echo what was sent).
///
/// - 429 → wait `Retry-After` (seconds; RD documents it on every 429), else 5 s;
/// - 401 (after `CrmHttp` fetched a new access token once) and 403 (permission or plan) →
///   `Fatal`;
/// - 400, 404, 422 → `Invalid` (this input is refused: dead-letter it);
/// - 408, 5xx → `Transient` (`CrmHttp` makes it `Ambiguous` for a create).
pub fn classify(status: u16, headers: &HeaderMap, body: &Value) -> CrmError {
    let code = body["errors"]
        .as_array()
        .and_then(|e| e.first())
        .and_then(|e| e["code"].as_str().or_else(|| e["title"].as_str()))
        .map(|c| c.chars().take(80).collect::<String>());
    let message = match code {
        Some(code) => format!("HTTP {status} ({code})"),
        None => format!("HTTP {status}"),
    };
    match status {
        429 => CrmError::RateLimited {
            retry_after: retry_after(headers).or(Some(Duration::from_secs(5))),
        },
        401 => CrmError::Fatal(format!(
            "RD Station refused the access token: {message} (authorise the app again and \
             configure the new refresh_token)"
        )),
        403 => CrmError::Fatal(format!(
            "RD Station refused the request: {message} (the user lacks permission or the \
             plan has no API v2: Basic, Pro or Advanced)"
        )),
        408 | 500..=599 => CrmError::Transient(message),
        _ => CrmError::Invalid(message),
    }
}

/// Every way a person's phone may have been typed for this WhatsApp id: the spellings of
/// [`E164::search_variants`] (international and national, digits only or formatted, and for
/// Brazilian mobiles without the 9th digit), plus the international format with spaces
/// (`+55 11 98765-4321`, and `+55 11 8765-4321` for the old 8-digit mobile, which no
/// numbering plan formats any more). RD Station documents no phone normalisation in RDQL,
/// so each is asked for as typed. A WhatsApp id that is not a phone has none.
pub fn phone_spellings(whatsapp_id: &str) -> Vec<String> {
    let Ok(number) = E164::parse(whatsapp_id) else {
        return Vec::new();
    };
    let mut out = number.search_variants();
    let mut more = Vec::new();
    for variant in out.iter().filter(|v| v.starts_with('+')) {
        let digits = &variant[1..];
        if digits.len() == 12 && digits.starts_with("55") {
            let (area, n) = (&digits[2..4], &digits[4..]);
            more.push(format!("+55 {area} {}-{}", &n[..4], &n[4..]));
            more.push(format!("({area}) {}-{}", &n[..4], &n[4..]));
        } else if let Ok(n) = E164::parse(variant) {
            more.push(n.international_format());
        }
    }
    for form in more {
        if !out.contains(&form) {
            out.push(form);
        }
    }
    out
}

/// The digits of a phone as someone typed it.
pub fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// An RDQL value: bare when it is only letters, digits and `+-._@`, else in double quotes with
/// `\` and `"` escaped (the RDQL page quotes "strings with spaces"; RD's n8n node escapes so).
pub fn rdql_value(value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | '@'));
    if bare {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// RDQL's "in": `field:(a,b,…)`.
pub fn rdql_in(field: &str, values: &[String]) -> String {
    let list: Vec<String> = values.iter().map(|v| rdql_value(v)).collect();
    format!("{field}:({})", list.join(","))
}

/// Percent-encodes a query component (RDQL carries `:`, `(`, `"`, `+` and spaces).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The name of a contact wacrm creates: the WhatsApp profile name, else the phone, else a
/// neutral label (the data policy may send neither).
pub fn contact_name(contact: &ContactSync) -> String {
    contact
        .profile_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| contact.phone.as_ref().map(|p| p.international_format()))
        .unwrap_or_else(|| "Contato do WhatsApp".into())
}

/// `POST /contacts`: `{"data": {name, phones: [{phone, type: "mobile"}], custom_fields:
/// {<slug>: wa_id}}}` (ContactsResource.ts builds this shape); no phone when the data policy
/// keeps it out.
pub fn contact_body(contact: &ContactSync, slug: &str) -> Value {
    let mut data = json!({
        "name": contact_name(contact),
        "custom_fields": { slug: contact.whatsapp_id },
    });
    if let Some(phone) = &contact.phone {
        data["phones"] = json!([{"phone": phone.to_string(), "type": "mobile"}]);
    }
    json!({ "data": data })
}

/// `PUT /contacts/{id}` writing the WhatsApp id onto a contact as it is: the update replaces
/// the `phones`, `emails` (and, for all the documents say, `custom_fields`) it is sent, so the
/// contact's own are sent back with the WhatsApp id added.
pub fn link_body(contact: &Value, slug: &str, whatsapp_id: &str) -> Value {
    let mut custom = contact["custom_fields"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    custom.retain(|_, v| !v.is_null());
    custom.insert(slug.to_owned(), json!(whatsapp_id));
    let mut data = json!({ "custom_fields": custom });
    if let Some(phones) = contact["phones"].as_array() {
        let phones: Vec<Value> = phones
            .iter()
            .filter_map(|p| {
                let number = p["phone"].as_str()?;
                let kind = p["type"].as_str().unwrap_or("mobile");
                Some(json!({"phone": number, "type": kind}))
            })
            .collect();
        data["phones"] = json!(phones);
    }
    if let Some(emails) = contact["emails"].as_array() {
        let emails: Vec<Value> = emails
            .iter()
            .filter_map(|e| e["email"].as_str().map(|m| json!({"email": m})))
            .collect();
        data["emails"] = json!(emails);
    }
    json!({ "data": data })
}

/// A task's description once its contact was erased: no message, no wamid.
pub const ERASED_TASK: &str =
    "Mensagens do WhatsApp apagadas a pedido do titular (LGPD), registradas pelo wacrm";

/// The title line of a task's description.
pub const TITLE: &str = "Mensagens do WhatsApp (registradas pelo wacrm)";
/// The separator inside a message's brackets.
const SEP: &str = " · ";

/// A task's name: "Mensagem do WhatsApp" or "Mensagens do WhatsApp (N)".
pub fn task_name(count: usize) -> String {
    if count == 1 {
        "Mensagem do WhatsApp".into()
    } else {
        format!("Mensagens do WhatsApp ({count})")
    }
}

/// A delivery status as salespeople read it.
pub fn status_pt(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Accepted => "aceita",
        DeliveryState::Sent => "enviada",
        DeliveryState::Delivered => "entregue",
        DeliveryState::Read => "lida",
        DeliveryState::Played => "reproduzida",
        DeliveryState::Failed => "falhou",
    }
}

/// The state a Portuguese status word stands for.
pub fn status_from_pt(word: &str) -> Option<DeliveryState> {
    [
        DeliveryState::Accepted,
        DeliveryState::Sent,
        DeliveryState::Delivered,
        DeliveryState::Read,
        DeliveryState::Played,
        DeliveryState::Failed,
    ]
    .into_iter()
    .find(|s| status_pt(*s) == word)
}

/// The engine's timeline text (`WhatsApp from Maria: …`, `WhatsApp sent by João: …`, media as
/// `[image]`…) in Portuguese. The engine writes it in English for every CRM; text the
/// contact wrote is never touched, only the labels around it.
pub fn body_pt(body: &str) -> String {
    let (who, rest) = if let Some(rest) = body.strip_prefix("WhatsApp from ") {
        let (name, text) = rest.split_once(": ").unwrap_or((rest, ""));
        let name = if name == "contact" { "contato" } else { name };
        (format!("Recebida de {name}"), text)
    } else if let Some(rest) = body.strip_prefix("WhatsApp sent by ") {
        let (name, text) = rest.split_once(": ").unwrap_or((rest, ""));
        let name = if name == "the business" {
            "a empresa"
        } else {
            name
        };
        (format!("Enviada por {name}"), text)
    } else {
        return body.to_owned();
    };
    const LABELS: [(&str, &str); 13] = [
        ("[message]", "[mensagem]"),
        ("[image]", "[imagem]"),
        ("[video]", "[vídeo]"),
        ("[voice message]", "[mensagem de voz]"),
        ("[audio]", "[áudio]"),
        ("[document]", "[documento]"),
        ("[sticker]", "[figurinha]"),
        ("[location]", "[localização]"),
        ("[reaction removed]", "[reação removida]"),
        ("[unsupported message]", "[mensagem não suportada]"),
        ("[reaction ", "[reação "),
        ("[template ", "[modelo "),
        ("[order of ", "[pedido de "),
    ];
    let text = LABELS
        .iter()
        .find(|(en, _)| rest.starts_with(en))
        .map(|(en, pt)| format!("{pt}{}", &rest[en.len()..]))
        .unwrap_or_else(|| rest.to_owned());
    format!("{who}: {text}")
}

/// `dd/mm/aaaa hh:mm:ss UTC`, as Brazil writes dates.
fn time_pt(time: DateTime<Utc>) -> String {
    time.format("%d/%m/%Y %H:%M:%S UTC").to_string()
}

/// One message's lines.
pub fn line(message: &MessageSync) -> String {
    let arrow = match message.direction {
        Direction::Inbound => "←",
        Direction::Outbound => "→",
    };
    let status = message
        .status
        .map(|s| format!("{SEP}{}", status_pt(s)))
        .unwrap_or_default();
    let text = body_pt(&message.body);
    let mut lines = text.lines();
    let mut out = format!(
        "{arrow} [{}{SEP}{}{status}] {}",
        time_pt(message.timestamp),
        message.wamid,
        lines.next().unwrap_or_default()
    );
    for more in lines {
        out.push_str("\n    ");
        out.push_str(more);
    }
    out
}

/// A task's description holding these messages.
pub fn description(messages: &[&MessageSync]) -> String {
    let mut out = String::from(TITLE);
    for m in messages {
        out.push('\n');
        out.push_str(&line(m));
    }
    out
}

/// The header lines of a description: `(line index, wamid, status word)`.
fn headers(description: &str) -> Vec<(usize, String, Option<String>)> {
    description
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let inner = l.strip_prefix("← [").or_else(|| l.strip_prefix("→ ["))?;
            let meta = &inner[..inner.find(']')?];
            let mut parts = meta.split(SEP);
            let _time = parts.next()?;
            let wamid = parts.next()?.to_owned();
            let status = parts.next().map(str::to_owned);
            Some((i, wamid, status))
        })
        .collect()
}

/// The wamids of a description's messages.
pub fn wamids_in(description: &str) -> Vec<String> {
    headers(description)
        .into_iter()
        .map(|(_, w, _)| w)
        .collect()
}

/// The status on `wamid`'s line (as the engine names it: `read`, `delivered`…), if any.
pub fn status_in(description: &str, wamid: &str) -> Option<String> {
    headers(description)
        .into_iter()
        .find(|(_, w, _)| w == wamid)
        .and_then(|(_, _, s)| s)
        .and_then(|s| {
            let word = s.split(' ').next().unwrap_or_default().to_owned();
            status_from_pt(&word).map(|st| st.as_str().to_owned())
        })
}

/// The description with `wamid`'s status set (and the failure's reason), or `None` when it
/// has no line of that wamid.
pub fn with_status(
    description: &str,
    wamid: &str,
    state: DeliveryState,
    failure: Option<&str>,
) -> Option<String> {
    let (index, _, _) = headers(description)
        .into_iter()
        .find(|(_, w, _)| w == wamid)?;
    let status = match failure {
        Some(reason) => format!(
            "{} ({})",
            status_pt(state),
            reason.replace([']', '\n'], " ")
        ),
        None => status_pt(state).to_owned(),
    };
    let lines: Vec<String> = description
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i != index {
                return l.to_owned();
            }
            let (open, rest) = l.split_at(l.find('[').unwrap_or(0) + 1);
            let close = rest.find(']').unwrap_or(rest.len());
            let meta = &rest[..close];
            let mut parts: Vec<&str> = meta.split(SEP).take(2).collect();
            parts.push(&status);
            format!("{open}{}{}", parts.join(SEP), &rest[close..])
        })
        .collect();
    Some(lines.join("\n"))
}

/// `YYYY-MM-DDTHH:MM:SSZ`: RD's DateTime, ISO 8601 in UTC (crm-v2-introduction).
pub fn iso_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(wamid: &str, direction: Direction, body: &str) -> MessageSync {
        MessageSync {
            wamid: wamid.into(),
            crm_contact_id: "c".into(),
            direction,
            timestamp: DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default(),
            body: body.into(),
            kind: "text".into(),
            phone_number_id: "1".into(),
            status: (direction == Direction::Outbound).then_some(DeliveryState::Sent),
        }
    }

    #[test]
    fn a_task_reads_in_portuguese_and_its_statuses_are_rewritten() {
        let a = message(
            "wamid.A=",
            Direction::Inbound,
            "WhatsApp from Maria: oi\ntudo bem?",
        );
        let b = message(
            "wamid.B=",
            Direction::Outbound,
            "WhatsApp sent by João: [image]",
        );
        let text = description(&[&a, &b]);
        assert!(
            text.contains(
                "← [28/05/2026 20:26:40 UTC · wamid.A=] Recebida de Maria: oi\n    tudo bem?"
            ),
            "{text}"
        );
        assert!(
            text.contains("· enviada] Enviada por João: [imagem]"),
            "{text}"
        );
        assert_eq!(wamids_in(&text), vec!["wamid.A=", "wamid.B="]);
        assert_eq!(status_in(&text, "wamid.B=").as_deref(), Some("sent"));
        assert_eq!(status_in(&text, "wamid.A="), None);
        let read = with_status(&text, "wamid.B=", DeliveryState::Read, None).unwrap_or_default();
        assert!(read.contains("· lida] Enviada"), "{read}");
        assert_eq!(status_in(&read, "wamid.B=").as_deref(), Some("read"));
        let failed = with_status(&read, "wamid.A=", DeliveryState::Failed, Some("131026"))
            .unwrap_or_default();
        assert_eq!(status_in(&failed, "wamid.A=").as_deref(), Some("failed"));
        assert_eq!(status_in(&failed, "wamid.B=").as_deref(), Some("read"));
        assert!(with_status(&text, "wamid.C", DeliveryState::Read, None).is_none());
        // A message's own text that looks like a header never passes for one.
        let c = message(
            "wamid.C",
            Direction::Inbound,
            "WhatsApp from X: a\n← [x · wamid.Z] y",
        );
        assert_eq!(wamids_in(&description(&[&c])), vec!["wamid.C"]);
    }

    #[test]
    fn brazilian_numbers_are_asked_for_in_every_spelling() {
        let s = phone_spellings("5511987654321");
        for expected in [
            "+5511987654321",
            "5511987654321",
            "11987654321",
            "+551187654321",
            "1187654321",
            "+55 11 8765-4321",
            "+55 11 98765-4321",
        ] {
            assert!(
                s.iter().any(|v| v == expected),
                "{expected} missing from {s:?}"
            );
        }
        assert!(phone_spellings("bsuid.AbC").is_empty());
        assert_eq!(rdql_value("+5511"), "+5511");
        assert_eq!(rdql_value("+55 11 8765-4321"), "\"+55 11 8765-4321\"");
        assert_eq!(rdql_value("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn errors_are_classified() {
        let h = HeaderMap::new();
        let body = json!({"errors": [{"code": "INVALID", "detail": "phone 5511 …"}]});
        assert!(matches!(classify(422, &h, &body), CrmError::Invalid(m) if !m.contains("5511")));
        assert!(matches!(classify(400, &h, &body), CrmError::Invalid(_)));
        assert!(matches!(
            classify(401, &h, &Value::Null),
            CrmError::Fatal(_)
        ));
        assert!(matches!(
            classify(403, &h, &Value::Null),
            CrmError::Fatal(_)
        ));
        assert!(matches!(
            classify(503, &h, &Value::Null),
            CrmError::Transient(_)
        ));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "7".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(
            classify(429, &h, &Value::Null),
            CrmError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
    }
}
