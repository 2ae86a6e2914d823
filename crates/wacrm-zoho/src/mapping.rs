//! Contacts, notes, COQL and error answers as Zoho CRM v8 takes and gives them.

use reqwest::header::HeaderMap;
use serde_json::{json, Map, Value};
use wacrm_core::E164;
use wacrm_crm::http::retry_after;
use wacrm_crm::{ContactSync, CrmError};

/// Reads Zoho's error answers (`{"code", "details", "message", "status": "error"}`).
pub fn classify(status: u16, headers: &HeaderMap, body: &Value) -> CrmError {
    let message = match (body["code"].as_str(), body["message"].as_str()) {
        (Some(code), Some(m)) => format!("{code}: {m}"),
        (Some(code), None) => code.to_owned(),
        _ => format!("HTTP {status}"),
    };
    match status {
        429 => CrmError::RateLimited {
            retry_after: retry_after(headers),
        },
        // 401 reaches here only after CrmHttp fetched a new token once.
        401 | 403 => CrmError::Fatal(message),
        // INVALID_URL_PATTERN, INVALID_MODULE: the configuration points at the wrong place.
        404 => CrmError::Fatal(message),
        408 | 500..=599 => CrmError::Transient(message),
        _ => CrmError::Invalid(message),
    }
}

/// A per-record result of a write (`{"code": "SUCCESS", "details": {"id"}}` or an error).
pub fn record_result(item: &Value) -> Result<String, CrmError> {
    if item["code"] == "SUCCESS" {
        return item["details"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CrmError::Transient("Zoho answered SUCCESS without an id".into()));
    }
    let field = item["details"]["api_name"]
        .as_str()
        .map(|f| format!(" ({f})"))
        .unwrap_or_default();
    Err(CrmError::Invalid(format!(
        "{}{field}: {}",
        item["code"].as_str().unwrap_or("ERROR"),
        item["message"].as_str().unwrap_or("refused")
    )))
}

/// The usual ways a person types this WhatsApp id's phone into `Phone` or `Mobile`: the
/// spellings of [`E164::search_variants`] (E.164, digits, national format and digits, with and
/// without Brazil's 9th digit) and the international format (`+55 11 98765-4321`) of each. COQL
/// compares the stored text exactly, so a phone typed any other way is not found.
pub fn phone_spellings(whatsapp_id: &str) -> Vec<String> {
    let Ok(number) = E164::parse(whatsapp_id) else {
        return Vec::new();
    };
    let mut out = number.search_variants();
    let mut more = Vec::new();
    for variant in out.iter().filter(|v| v.starts_with('+')) {
        let digits = &variant[1..];
        if digits.len() == 12 && digits.starts_with("55") {
            // Brazil's 8-digit mobile (before the 9th digit) is no longer a valid number, so the
            // numbering plan does not format it: written as people wrote it.
            let (area, number) = (&digits[2..4], &digits[4..]);
            more.push(format!("+55 {area} {}-{}", &number[..4], &number[4..]));
            more.push(format!("({area}) {}-{}", &number[..4], &number[4..]));
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

/// A COQL text literal.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `select id, <field>, Phone, Mobile from Contacts where <field> in (…) or Phone in (…) or
/// Mobile in (…)`: the contacts holding these WhatsApp ids, or their phones in any spelling.
pub fn contacts_query(field: &str, whatsapp_ids: &[String], phones: &[String]) -> String {
    let list = |values: &[String]| {
        values
            .iter()
            .map(|v| literal(v))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut query = format!(
        "select id, {field}, Phone, Mobile from Contacts where {field} in ({})",
        list(whatsapp_ids)
    );
    if !phones.is_empty() {
        let phones = list(phones);
        query.push_str(&format!(" or Phone in ({phones}) or Mobile in ({phones})"));
    }
    query.push_str(" limit 200");
    query
}

/// A contact record for the upsert: `Last_Name` is required by Zoho, so a profile name fills
/// it (and `First_Name` when it has two words), else the phone, else the WhatsApp id.
pub fn contact_record(contact: &ContactSync, field: &str) -> Value {
    let mut record = Map::new();
    let name = contact
        .profile_name
        .clone()
        .filter(|n| !n.trim().is_empty());
    match name.as_deref().and_then(|n| n.trim().split_once(' ')) {
        Some((first, last)) => {
            record.insert("First_Name".into(), json!(first));
            record.insert("Last_Name".into(), json!(last.trim()));
        }
        None => {
            let last = name
                .or_else(|| contact.phone.as_ref().map(ToString::to_string))
                .unwrap_or_else(|| format!("WhatsApp {}", contact.whatsapp_id));
            record.insert("Last_Name".into(), json!(last));
        }
    }
    if let Some(phone) = &contact.phone {
        record.insert("Mobile".into(), json!(phone.to_string()));
    }
    record.insert(field.to_owned(), json!(contact.whatsapp_id));
    Value::Object(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_asks_for_every_spelling_quoted() {
        let q = contacts_query(
            "WhatsApp_ID",
            &["5511987654321".into()],
            &["+55 11 98765-4321".into(), "o'brien".into()],
        );
        assert_eq!(
            q,
            "select id, WhatsApp_ID, Phone, Mobile from Contacts where WhatsApp_ID in ('5511987654321') \
             or Phone in ('+55 11 98765-4321', 'o\\'brien') or Mobile in ('+55 11 98765-4321', 'o\\'brien') limit 200"
        );
        let spellings = phone_spellings("5511987654321");
        assert!(
            spellings.contains(&"+5511987654321".to_owned()),
            "{spellings:?}"
        );
        assert!(
            spellings.contains(&"551187654321".to_owned()),
            "{spellings:?}"
        );
        assert!(
            spellings.contains(&"+55 11 98765-4321".to_owned()),
            "{spellings:?}"
        );
        assert!(
            spellings.contains(&"+55 11 8765-4321".to_owned()),
            "{spellings:?}"
        );
        assert!(
            spellings.contains(&"(11) 8765-4321".to_owned()),
            "{spellings:?}"
        );
        assert!(spellings.len() <= 10, "{spellings:?}");
    }

    #[test]
    fn a_record_result_gives_the_id_or_says_why() {
        let ok =
            json!({"code": "SUCCESS", "details": {"id": "4150868000001"}, "status": "success"});
        assert_eq!(record_result(&ok), Ok("4150868000001".to_owned()));
        let bad = json!({"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Last_Name"},
                         "message": "required field not found", "status": "error"});
        assert!(
            matches!(record_result(&bad), Err(CrmError::Invalid(m)) if m.contains("Last_Name"))
        );
    }
}
