//! Persons, notes and error answers as Pipedrive's APIs take and give them.

use std::time::Duration;

use chrono::{DateTime, Days, Utc};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use wacrm_core::E164;
use wacrm_crm::http::retry_after;
use wacrm_crm::{ContactSync, CrmError};

/// Reads Pipedrive's error answers (documented shape `{"success": false, "error", "error_info"}`;
/// the status code decides, as the documents model errors hardly at all).
///
/// A 429 is either the rolling 2-second limit (wait `Retry-After` or `x-ratelimit-reset`, in
/// seconds) or the company's daily token budget, which Pipedrive tells by
/// `x-daily-ratelimit-token-remaining: 0`: that parks the connection until the budget resets at
/// midnight (Pipedrive's server midnight, whose zone it does not name: the next UTC midnight
/// plus an hour is never early in the Americas or Europe, and the engine probes again then).
/// A 403 that is not JSON is the block Pipedrive puts on clients that kept sending after 429s:
/// park a quarter of an hour rather than send more.
pub fn classify(status: u16, headers: &HeaderMap, body: &Value) -> CrmError {
    let message = match (body["error"].as_str(), body["error_info"].as_str()) {
        (Some(e), Some(info)) => format!("{e} ({info})"),
        (Some(e), None) => e.to_owned(),
        _ => format!("HTTP {status}"),
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    match status {
        429 if header("x-daily-ratelimit-token-remaining") == Some(0) => CrmError::QuotaExhausted {
            until: next_utc_midnight(Utc::now()) + chrono::Duration::hours(1),
        },
        429 => CrmError::RateLimited {
            retry_after: retry_after(headers)
                .or_else(|| header("x-ratelimit-reset").map(Duration::from_secs))
                .or(Some(Duration::from_secs(2))),
        },
        403 if !body.is_object() => CrmError::QuotaExhausted {
            until: Utc::now() + chrono::Duration::minutes(15),
        },
        401..=403 => CrmError::Fatal(message),
        408 | 500..=599 => CrmError::Transient(message),
        _ => CrmError::Invalid(message),
    }
}

fn next_utc_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive()
        .checked_add_days(Days::new(1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(now + chrono::Duration::hours(24))
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

/// The body of `POST /api/v2/persons`: the name, the phone (when the policy sends it) and the
/// WhatsApp id in its custom field. Labels are strings (the document types them boolean, a
/// known defect).
pub fn person_body(contact: &ContactSync, field_key: &str) -> Value {
    let name = contact
        .profile_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| contact.phone.as_ref().map(ToString::to_string))
        .unwrap_or_else(|| format!("WhatsApp {}", contact.whatsapp_id));
    let mut body = json!({
        "name": name,
        "custom_fields": { field_key: contact.whatsapp_id },
    });
    if let Some(phone) = &contact.phone {
        body["phones"] = json!([{"value": phone.to_string(), "label": "mobile", "primary": true}]);
    }
    body
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, as v1 notes take times.
pub fn v1_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brazilian_numbers_are_found_with_and_without_the_ninth_digit() {
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let expected = vec!["1187654321", "11987654321", "551187654321", "5511987654321"];
        assert_eq!(sorted(spellings("5511987654321")), expected);
        assert_eq!(sorted(spellings("551187654321")), expected);
        assert!(spellings("4915112345678").contains(&"4915112345678".to_owned()));
        assert!(spellings("bsuid.AbC").is_empty());
        assert_eq!(digits("+55 (11) 98765-4321"), "5511987654321");
    }

    #[test]
    fn a_daily_budget_429_parks_and_a_burst_429_waits() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ratelimit-reset",
            "1".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(
            classify(429, &headers, &Value::Null),
            CrmError::RateLimited {
                retry_after: Some(Duration::from_secs(1))
            }
        );
        headers.insert(
            "x-daily-ratelimit-token-remaining",
            "0".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(matches!(
            classify(429, &headers, &Value::Null),
            CrmError::QuotaExhausted { .. }
        ));
        assert!(matches!(
            classify(403, &HeaderMap::new(), &Value::String("<html>".into())),
            CrmError::QuotaExhausted { .. }
        ));
        assert!(matches!(
            classify(
                401,
                &HeaderMap::new(),
                &json!({"success": false, "error": "unauthorized access"})
            ),
            CrmError::Fatal(_)
        ));
    }
}
