//! Request bodies and answers of HubSpot's CRM APIs, as the official OpenAPI documents shape
//! them: every property value a string, `associations` on every create input, search bodies
//! with `filterGroups`, `sorts`, `properties`, `limit` and `after`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use wacrm_core::{DeliveryState, Direction, E164};
use wacrm_crm::{ContactSync, MessageSync, StatusSync};

/// Communication → contact (HubSpot-defined association type).
pub const COMMUNICATION_TO_CONTACT: i64 = 81;
/// The communications property holding the wamid.
pub const WAMID_PROPERTY: &str = "wacrm_wamid";
/// The communications property holding the delivery status.
pub const STATUS_PROPERTY: &str = "wacrm_status";
/// Contact properties read by searches.
pub const PHONE_PROPERTIES: [&str; 4] = [
    "phone",
    "mobilephone",
    "hs_searchable_calculated_phone_number",
    "hs_searchable_calculated_mobile_number",
];

/// Every spelling of a contact's number worth searching for, and the digit forms used to match
/// search results back to contacts.
pub fn phone_forms(phone: &E164) -> (Vec<String>, BTreeSet<String>) {
    let typed = phone.search_variants();
    let digits: BTreeSet<String> = typed
        .iter()
        .map(|v| v.chars().filter(char::is_ascii_digit).collect::<String>())
        .filter(|d| d.len() >= 8)
        .collect();
    (typed, digits)
}

/// A contact search for several contacts at once: one filter group per property (groups are
/// ORed), each an `IN` over every contact's spellings.
pub fn contact_search(
    contacts: &[ContactSync],
    whatsapp_property: &str,
    after: Option<&str>,
) -> Value {
    let mut typed: BTreeSet<String> = BTreeSet::new();
    let mut digits: BTreeSet<String> = BTreeSet::new();
    for c in contacts {
        if let Some(phone) = &c.phone {
            let (t, d) = phone_forms(phone);
            typed.extend(t);
            digits.extend(d);
        }
    }
    let ids: Vec<&str> = contacts.iter().map(|c| c.whatsapp_id.as_str()).collect();
    let in_filter = |property: &str, values: Vec<String>| json!({"filters": [{"propertyName": property, "operator": "IN", "values": values}]});
    let mut groups = vec![in_filter(
        whatsapp_property,
        ids.iter().map(|s| (*s).to_owned()).collect(),
    )];
    if !typed.is_empty() {
        let typed: Vec<String> = typed.into_iter().collect();
        let digits: Vec<String> = digits.into_iter().collect();
        groups.push(in_filter("phone", typed.clone()));
        groups.push(in_filter("mobilephone", typed));
        groups.push(in_filter(
            "hs_searchable_calculated_phone_number",
            digits.clone(),
        ));
        groups.push(in_filter("hs_searchable_calculated_mobile_number", digits));
    }
    let mut properties: Vec<&str> = vec![whatsapp_property, "firstname", "lastname", "createdate"];
    properties.extend(PHONE_PROPERTIES);
    json!({
        "filterGroups": groups,
        "sorts": ["createdate"],
        "properties": properties,
        "limit": 100,
        "after": after.unwrap_or("0"),
    })
}

/// A contact found by a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundContact {
    /// HubSpot's id.
    pub id: String,
    /// Its properties.
    pub properties: BTreeMap<String, String>,
}

/// The results and the next page cursor of a search answer.
pub fn search_results(answer: &Value) -> (Vec<FoundContact>, Option<String>) {
    let results = answer["results"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| {
                    let id = r["id"].as_str()?.to_owned();
                    let properties = r["properties"]
                        .as_object()
                        .map(|p| {
                            p.iter()
                                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                                .collect()
                        })
                        .unwrap_or_default();
                    Some(FoundContact { id, properties })
                })
                .collect()
        })
        .unwrap_or_default();
    let next = answer["paging"]["next"]["after"]
        .as_str()
        .map(str::to_owned);
    (results, next)
}

/// Whether a found contact is this person: same WhatsApp id, or a phone property whose digits
/// are one of the person's spellings (a typed `+55 (11) 98765-4321` matches `551187654321`).
pub fn matches(found: &FoundContact, contact: &ContactSync, whatsapp_property: &str) -> bool {
    if found.properties.get(whatsapp_property) == Some(&contact.whatsapp_id) {
        return true;
    }
    let Some(phone) = &contact.phone else {
        return false;
    };
    let (_, digits) = phone_forms(phone);
    PHONE_PROPERTIES.iter().any(|p| {
        found.properties.get(*p).is_some_and(|v| {
            let d: String = v.chars().filter(char::is_ascii_digit).collect();
            !d.is_empty() && digits.contains(&d)
        })
    })
}

/// First and last name from a WhatsApp profile name.
pub fn split_name(name: &str) -> (String, Option<String>) {
    let mut parts = name.trim().splitn(2, char::is_whitespace);
    let first = parts.next().unwrap_or_default().to_owned();
    let last = parts
        .next()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    (first, last)
}

/// A `batch/upsert` input that creates a contact keyed by its WhatsApp id.
pub fn contact_upsert_input(
    contact: &ContactSync,
    whatsapp_property: &str,
    owner: Option<&str>,
) -> Value {
    let mut properties = serde_json::Map::new();
    properties.insert(whatsapp_property.to_owned(), json!(contact.whatsapp_id));
    if let Some(phone) = &contact.phone {
        properties.insert("phone".into(), json!(phone.as_str()));
    }
    if let Some(name) = &contact.profile_name {
        let (first, last) = split_name(name);
        if !first.is_empty() {
            properties.insert("firstname".into(), json!(first));
        }
        if let Some(last) = last {
            properties.insert("lastname".into(), json!(last));
        }
    }
    if let Some(owner) = owner {
        properties.insert("hubspot_owner_id".into(), json!(owner));
    }
    json!({"idProperty": whatsapp_property, "id": contact.whatsapp_id, "properties": properties})
}

/// A communication `batch/create` input for a message.
pub fn communication_input(message: &MessageSync, owner: Option<&str>) -> Value {
    let mut properties = serde_json::Map::new();
    properties.insert("hs_communication_channel_type".into(), json!("WHATS_APP"));
    properties.insert("hs_communication_logged_from".into(), json!("CRM"));
    properties.insert("hs_communication_body".into(), json!(message.body));
    properties.insert(
        "hs_timestamp".into(),
        json!(message.timestamp.timestamp_millis().to_string()),
    );
    properties.insert(WAMID_PROPERTY.into(), json!(message.wamid));
    if message.direction == Direction::Outbound {
        let status = message.status.unwrap_or(DeliveryState::Accepted);
        properties.insert(STATUS_PROPERTY.into(), json!(status.as_str()));
    }
    if let Some(owner) = owner {
        properties.insert("hubspot_owner_id".into(), json!(owner));
    }
    json!({
        "properties": properties,
        "associations": [{
            "to": {"id": message.crm_contact_id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": COMMUNICATION_TO_CONTACT}]
        }]
    })
}

/// A communication `batch/update` input for a status.
pub fn status_input(status: &StatusSync) -> Value {
    let value = match &status.failure {
        Some(reason) => format!("{}: {reason}", status.state.as_str()),
        None => status.state.as_str().to_owned(),
    };
    json!({"id": status.crm_id, "properties": {STATUS_PROPERTY: value}})
}

/// A communications search for wamids.
pub fn communication_search(wamids: &[String], after: Option<&str>) -> Value {
    json!({
        "filterGroups": [{"filters": [{"propertyName": WAMID_PROPERTY, "operator": "IN", "values": wamids}]}],
        "sorts": ["hs_timestamp"],
        "properties": [WAMID_PROPERTY],
        "limit": 100,
        "after": after.unwrap_or("0"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maria() -> ContactSync {
        ContactSync {
            contact_key: "phone:+5511987654321".into(),
            whatsapp_id: "551187654321".into(),
            phone: E164::parse("551187654321").ok(),
            profile_name: Some("Maria da Silva".into()),
            phone_number_id: "1".into(),
        }
    }

    #[test]
    fn typed_phone_of_a_sales_contact_matches_the_whatsapp_number() {
        let found = FoundContact {
            id: "7".into(),
            properties: [("mobilephone".to_owned(), "+55 (11) 98765-4321".to_owned())].into(),
        };
        assert!(matches(&found, &maria(), "whatsapp_id"));
        let other = FoundContact {
            id: "8".into(),
            properties: [("phone".to_owned(), "+55 (11) 91111-2222".to_owned())].into(),
        };
        assert!(!matches(&other, &maria(), "whatsapp_id"));
    }

    #[test]
    fn names_are_split_once() {
        assert_eq!(
            split_name("Maria da Silva"),
            ("Maria".into(), Some("da Silva".into()))
        );
        assert_eq!(split_name("Zé"), ("Zé".into(), None));
    }

    #[test]
    fn every_property_value_is_a_string() {
        let input = contact_upsert_input(&maria(), "whatsapp_id", Some("42"));
        for (_, v) in input["properties"].as_object().unwrap() {
            assert!(v.is_string());
        }
    }
}
