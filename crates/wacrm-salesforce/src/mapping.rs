//! Contacts, message records, SOQL and error answers as Salesforce's REST API takes and gives
//! them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::header::HeaderMap;
use serde_json::{json, Map, Value};
use wacrm_core::{Direction, E164};
use wacrm_crm::http::retry_after;
use wacrm_crm::{ContactSync, CrmError, MessageSync};

/// The message object's External ID field: the wamid (Text 255, unique, case-sensitive).
pub const WAMID: &str = "Wamid__c";
/// The message object's lookup to the contact.
pub const CONTACT: &str = "Contact__c";
/// `Inbound` or `Outbound`.
pub const DIRECTION: &str = "Direction__c";
/// The text (direction and sender included), after minimisation.
pub const BODY: &str = "Body__c";
/// WhatsApp's time of the message.
pub const SENT_AT: &str = "Sent_At__c";
/// The delivery status of an outbound message (`sent`, `delivered`, `read`, `failed`).
pub const STATUS: &str = "Status__c";
/// Why it failed, for `failed`.
pub const STATUS_DETAIL: &str = "Status_Detail__c";
/// The content kind (`text`, `image`, …).
pub const KIND: &str = "Kind__c";
/// The business number's id.
pub const BUSINESS_NUMBER: &str = "Business_Number__c";

/// The longest `Body__c` wacrm writes (the field is created 32,768 long).
pub const BODY_LENGTH: usize = 32_768;

/// The org's API use as the last `Sforce-Limit-Info: api-usage=used/allowed` (or `/limits`)
/// said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUsage {
    /// Requests counted in the rolling 24 hours.
    pub used: u64,
    /// The org's allocation.
    pub allowed: u64,
}

impl ApiUsage {
    /// Reads `api-usage=18/5000` out of a `Sforce-Limit-Info` value (which may also carry
    /// `api-bursts=…` and `per-app-api-usage=…`, separated by `;`).
    pub fn parse(header: &str) -> Option<ApiUsage> {
        header.split(';').find_map(|part| {
            let (used, allowed) = part.trim().strip_prefix("api-usage=")?.split_once('/')?;
            Some(ApiUsage {
                used: used.trim().parse().ok()?,
                allowed: allowed.trim().parse().ok()?,
            })
        })
    }

    /// Whether the allocation is spent.
    pub fn spent(&self) -> bool {
        self.allowed > 0 && self.used >= self.allowed
    }
}

/// The last reading of the org's API use, shared by the adapter and its classifier.
#[derive(Debug, Clone, Default)]
pub struct UsageCell(Arc<Mutex<Option<ApiUsage>>>);

impl UsageCell {
    /// The last reading.
    pub fn get(&self) -> Option<ApiUsage> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a reading (and shows it as gauges).
    pub fn set(&self, usage: ApiUsage, connection: &str) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(usage);
        metrics::gauge!("wacrm_salesforce_api_used", "connection" => connection.to_owned())
            .set(usage.used as f64);
        metrics::gauge!("wacrm_salesforce_api_allowed", "connection" => connection.to_owned())
            .set(usage.allowed as f64);
    }

    /// Keeps the reading of a response's `Sforce-Limit-Info`, if it has one.
    pub fn read(&self, headers: &HeaderMap, connection: &str) -> Option<ApiUsage> {
        let usage = headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(ApiUsage::parse)?;
        self.set(usage, connection);
        Some(usage)
    }
}

/// Text safe for logs: runs of eight digits or more standing alone (a phone number or a
/// WhatsApp id that Salesforce echoes in a message, e.g. `Duplicate external id specified`)
/// become `…`.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_alone = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if chars[i].is_ascii_digit() && starts_alone {
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let ends_alone = j == chars.len() || !chars[j].is_ascii_alphanumeric();
            if j - i >= 8 && ends_alone {
                out.push('…');
            } else {
                out.extend(&chars[i..j]);
            }
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// `CODE: message` of Salesforce's error array (`[{"message", "errorCode", "fields"}]`), the
/// first entry; scrubbed.
pub fn error_text(status: u16, body: &Value) -> String {
    let first = body.as_array().and_then(|a| a.first()).unwrap_or(body);
    match (first["errorCode"].as_str(), first["message"].as_str()) {
        (Some(code), Some(message)) => format!("{code}: {}", scrub(message)),
        (Some(code), None) => code.to_owned(),
        _ => format!("HTTP {status}"),
    }
}

/// The record ids a `300 Multiple Choices` answer lists (an array of record URLs, or of
/// objects with one).
pub fn ids_of_choices(body: &Value) -> Vec<String> {
    body.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().or_else(|| v["url"].as_str()))
                .filter_map(|url| url.rsplit('/').next())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// How the classifier decides between the daily allocation and a short limit.
#[derive(Debug, Clone)]
pub struct LimitPolicy {
    /// The connection's name (gauges).
    pub connection: String,
    /// The last reading of the org's API use.
    pub usage: UsageCell,
    /// The wait after a short-limit `REQUEST_LIMIT_EXCEEDED`.
    pub backoff: Duration,
    /// How long the connection parks once the allocation is spent.
    pub park: Duration,
}

/// Reads Salesforce's error answers (a JSON array of `{"message", "errorCode", "fields"}`;
/// REST API Developer Guide, "Status Codes and Error Responses").
///
/// `403 REQUEST_LIMIT_EXCEEDED` is the daily allocation or the concurrent-request limit — the
/// same code for both. The heuristic (unverified against an org): the allocation is spent
/// when the answer's own `Sforce-Limit-Info` (or, without one, the last reading) shows
/// `used ≥ allowed`, or the message names `TotalRequests`; then the connection parks for
/// `park`. Otherwise it is the short limit, waited out for `backoff`. With neither a reading
/// nor a telling message, the allocation is assumed spent (a short park): wacrm's own
/// requests are short and bounded below the concurrent limit, so its 403s are far likelier
/// the daily allocation.
pub fn classify(policy: &LimitPolicy, status: u16, headers: &HeaderMap, body: &Value) -> CrmError {
    let reading = policy
        .usage
        .read(headers, &policy.connection)
        .or_else(|| policy.usage.get());
    let first = body.as_array().and_then(|a| a.first()).unwrap_or(body);
    let code = first["errorCode"].as_str().unwrap_or_default();
    let message = error_text(status, body);
    match status {
        300 => CrmError::Invalid(format!(
            "several records hold this External ID: [{}]; merge them in Salesforce",
            ids_of_choices(body).join(", ")
        )),
        429 => CrmError::RateLimited {
            retry_after: retry_after(headers).or(Some(policy.backoff)),
        },
        403 if code == "REQUEST_LIMIT_EXCEEDED" => {
            let text = first["message"].as_str().unwrap_or_default();
            let spent = reading.is_some_and(|u| u.spent()) || text.contains("TotalRequests");
            let short = text.contains("Concurrent") || reading.is_some_and(|u| !u.spent());
            if spent || !short {
                let park = if spent {
                    policy.park
                } else {
                    policy.park.min(Duration::from_secs(900))
                };
                CrmError::QuotaExhausted {
                    until: Utc::now() + chrono::Duration::from_std(park).unwrap_or_default(),
                }
            } else {
                CrmError::RateLimited {
                    retry_after: Some(policy.backoff),
                }
            }
        }
        // 401 arrives here only after CrmHttp fetched a new token once: the app's access is
        // gone. Other 403s: the user lacks a permission (INSUFFICIENT_ACCESS…, API_DISABLED…).
        401 | 403 => CrmError::Fatal(message),
        // A 404 on an object or field means the org lacks what `setup` creates.
        404 => CrmError::Fatal(format!(
            "{message} (an object or field is missing or not visible to the integration user: \
             run wacrm crm setup, and check field-level security)"
        )),
        408 | 500..=599 => CrmError::Transient(message),
        _ => CrmError::Invalid(message),
    }
}

/// One result of an sObject Collections answer (`{"id", "success", "errors", "created"}`).
/// A row lock held by another transaction is worth another try; the rest is the input's fault.
pub fn record_result(item: &Value) -> Result<String, CrmError> {
    if item["success"] == true {
        return item["id"].as_str().map(str::to_owned).ok_or_else(|| {
            CrmError::Transient("Salesforce answered success without an id".into())
        });
    }
    let error = item["errors"]
        .as_array()
        .and_then(|e| e.first())
        .unwrap_or(&Value::Null);
    let code = error["statusCode"].as_str().unwrap_or("ERROR");
    let message = scrub(error["message"].as_str().unwrap_or("refused"));
    let fields = error["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|f| !f.is_empty())
        .map(|f| format!(" ({f})"))
        .unwrap_or_default();
    match code {
        "UNABLE_TO_LOCK_ROW" | "ALL_OR_NONE_OPERATION_ROLLED_BACK" => {
            Err(CrmError::Transient(format!("{code}{fields}: {message}")))
        }
        "DUPLICATE_EXTERNAL_ID" => Err(CrmError::Invalid(format!(
            "{code}{fields}: several records hold this External ID ({message}); merge them in \
             Salesforce"
        ))),
        _ => Err(CrmError::Invalid(format!("{code}{fields}: {message}"))),
    }
}

/// A SOQL string literal: quoted, with `\` and `'` escaped (SOQL and SOSL Reference, "Quoted
/// String Escape Sequences").
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `'a', 'b', …`.
pub fn literals(values: &[String]) -> String {
    values
        .iter()
        .map(|v| literal(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The usual ways a person types this WhatsApp id's phone into `Phone` or `MobilePhone`: the
/// spellings of [`E164::search_variants`] (E.164, digits, national format and digits, with and
/// without Brazil's 9th digit) and the international format of each
/// (`+55 11 98765-4321`, `+55 11 8765-4321`). SOQL compares the stored text, so a phone typed
/// any other way is not found.
pub fn phone_spellings(whatsapp_id: &str) -> Vec<String> {
    let Ok(number) = E164::parse(whatsapp_id) else {
        return Vec::new();
    };
    let mut out = number.search_variants();
    let mut more = Vec::new();
    for variant in out.iter().filter(|v| v.starts_with('+')) {
        let digits = &variant[1..];
        if digits.len() == 12 && digits.starts_with("55") {
            // A Brazilian mobile without the 9th digit is no longer a valid number, so the
            // numbering plan does not format it: written as people wrote it.
            let (area, local) = (&digits[2..4], &digits[4..]);
            more.push(format!("+55 {area} {}-{}", &local[..4], &local[4..]));
            more.push(format!("({area}) {}-{}", &local[..4], &local[4..]));
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

/// A new contact: `LastName` is required, so the profile name fills it (and `FirstName`
/// when it has two words), else the phone, else `WhatsApp <id>`; the phone in `MobilePhone`
/// only when the policy sends it.
pub fn contact_record(contact: &ContactSync, field: &str) -> Value {
    let mut record = Map::new();
    record.insert("attributes".into(), json!({"type": "Contact"}));
    let name = contact
        .profile_name
        .clone()
        .filter(|n| !n.trim().is_empty());
    match name.as_deref().and_then(|n| n.trim().split_once(' ')) {
        Some((first, last)) => {
            record.insert("FirstName".into(), json!(truncate(first, 40)));
            record.insert("LastName".into(), json!(truncate(last.trim(), 80)));
        }
        None => {
            let last = name
                .or_else(|| contact.phone.as_ref().map(ToString::to_string))
                .unwrap_or_else(|| format!("WhatsApp {}", contact.whatsapp_id));
            record.insert("LastName".into(), json!(truncate(&last, 80)));
        }
    }
    if let Some(phone) = &contact.phone {
        record.insert("MobilePhone".into(), json!(phone.to_string()));
    }
    record.insert(field.to_owned(), json!(contact.whatsapp_id));
    Value::Object(record)
}

/// The first `max` characters.
pub fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A message as a record of the message object, keyed by its wamid. The status is written
/// only when the message has one (an inbound message's upsert never clears it).
pub fn message_record(message: &MessageSync, object: &str) -> Value {
    let mut record = Map::new();
    record.insert("attributes".into(), json!({"type": object}));
    record.insert(WAMID.into(), json!(message.wamid));
    record.insert(CONTACT.into(), json!(message.crm_contact_id));
    let direction = match message.direction {
        Direction::Inbound => "Inbound",
        Direction::Outbound => "Outbound",
    };
    record.insert(DIRECTION.into(), json!(direction));
    record.insert(BODY.into(), json!(truncate(&message.body, BODY_LENGTH)));
    record.insert(
        SENT_AT.into(),
        json!(message.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true)),
    );
    record.insert(KIND.into(), json!(truncate(&message.kind, 40)));
    record.insert(
        BUSINESS_NUMBER.into(),
        json!(truncate(&message.phone_number_id, 40)),
    );
    if let Some(status) = message.status {
        record.insert(STATUS.into(), json!(status.as_str()));
    }
    Value::Object(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_the_header() {
        assert_eq!(
            ApiUsage::parse("api-usage=18/5000"),
            Some(ApiUsage {
                used: 18,
                allowed: 5000
            })
        );
        let bursting = ApiUsage::parse("api-usage=110018/100000; api-bursts=1/750").unwrap();
        assert!(bursting.spent());
        assert_eq!(ApiUsage::parse("per-app-api-usage=17/250(appName=x)"), None);
    }

    fn policy() -> LimitPolicy {
        LimitPolicy {
            connection: "t".into(),
            usage: UsageCell::default(),
            backoff: Duration::from_secs(5),
            park: Duration::from_secs(3600),
        }
    }

    fn limit_answer() -> Value {
        json!([{"message": "limit", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    }

    #[test]
    fn request_limit_is_quota_or_backoff_by_the_usage_header() {
        let policy = policy();
        let mut headers = HeaderMap::new();
        headers.insert(
            "sforce-limit-info",
            "api-usage=100000/100000".parse().unwrap(),
        );
        assert!(matches!(
            classify(&policy, 403, &headers, &limit_answer()),
            CrmError::QuotaExhausted { .. }
        ));
        headers.insert("sforce-limit-info", "api-usage=100/100000".parse().unwrap());
        assert!(matches!(
            classify(&policy, 403, &headers, &limit_answer()),
            CrmError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(5)
        ));
        // No header on the answer: the last reading decides.
        assert!(matches!(
            classify(&policy, 403, &HeaderMap::new(), &limit_answer()),
            CrmError::RateLimited { .. }
        ));
        let daily = json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]);
        assert!(matches!(
            classify(&policy, 403, &HeaderMap::new(), &daily),
            CrmError::QuotaExhausted { .. }
        ));
        // Nothing to go by: assumed the allocation.
        assert!(matches!(
            classify(&self::policy(), 403, &HeaderMap::new(), &limit_answer()),
            CrmError::QuotaExhausted { .. }
        ));
    }

    #[test]
    fn errors_are_classified_and_scrubbed() {
        let policy = policy();
        let h = HeaderMap::new();
        let session =
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]);
        assert!(
            matches!(classify(&policy, 401, &h, &session), CrmError::Fatal(m) if m.contains("INVALID_SESSION_ID"))
        );
        let access = json!([{"message": "no", "errorCode": "INSUFFICIENT_ACCESS"}]);
        assert!(matches!(
            classify(&policy, 403, &h, &access),
            CrmError::Fatal(_)
        ));
        assert!(matches!(
            classify(
                &policy,
                400,
                &h,
                &json!([{"message": "x", "errorCode": "INVALID_FIELD"}])
            ),
            CrmError::Invalid(_)
        ));
        assert!(matches!(
            classify(&policy, 503, &h, &Value::Null),
            CrmError::Transient(_)
        ));
        let choices = json!([
            "/services/data/v62.0/sobjects/Contact/003A",
            "/services/data/v62.0/sobjects/Contact/003B"
        ]);
        assert!(
            matches!(classify(&policy, 300, &h, &choices), CrmError::Invalid(m) if m.contains("[003A, 003B]"))
        );
        let dup = json!([{"message": "Duplicate external id specified: 5511987654321", "errorCode": "DUPLICATE_VALUE"}]);
        let text = classify(&policy, 400, &h, &dup).to_string();
        assert!(!text.contains("5511987654321"), "{text}");
        assert_eq!(
            scrub("ids 0035g0000000001AAA and +5511987654321"),
            "ids 0035g0000000001AAA and +…"
        );
    }

    #[test]
    fn record_results() {
        assert_eq!(
            record_result(&json!({"id": "a01", "success": true, "errors": [], "created": true})),
            Ok("a01".into())
        );
        let dup = json!({"success": false, "errors": [{"statusCode": "DUPLICATE_EXTERNAL_ID",
            "message": "WhatsApp ID: more than one record found for external id field: [003A, 003B]", "fields": []}]});
        assert!(
            matches!(record_result(&dup), Err(CrmError::Invalid(m)) if m.contains("[003A, 003B]"))
        );
        let lock = json!({"success": false, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "x", "fields": []}]});
        assert!(matches!(record_result(&lock), Err(CrmError::Transient(_))));
    }

    #[test]
    fn spellings_and_literals() {
        let spellings = phone_spellings("5511987654321");
        for s in [
            "+5511987654321",
            "551187654321",
            "+55 11 98765-4321",
            "+55 11 8765-4321",
            "(11) 8765-4321",
        ] {
            assert!(spellings.contains(&s.to_owned()), "{s} in {spellings:?}");
        }
        assert!(spellings.len() <= 12, "{spellings:?}");
        assert_eq!(literal("o'b\\"), "'o\\'b\\\\'");
    }
}
