//! What the fake holds: contact fields, contacts, notes, issued tokens, the recorded requests
//! and the credit count; ids, times and the shapes every operation shares.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Timelike, Utc};
use serde_json::{json, Map, Value};

use super::specs::Specs;
use super::{FakeConfig, FakeContact, FakeNote, FakeRequest};

/// The first id the fake hands out, minus one: ids are 19 digits, like Zoho's.
const ID_BASE: u64 = 7_300_111_000_000_100_000;
/// The `Contacts` module's id (`Parent_Id.module.id`).
pub(super) const CONTACTS_MODULE_ID: &str = "7300111000000002179";
/// The token's user: the owner and author of everything written through the API.
pub(super) const USER_NAME: &str = "Fake Admin";
/// The user's id.
pub(super) const USER_ID: &str = "7300111000000045001";
/// The module the fake holds records of.
pub(super) const CONTACTS: &str = "Contacts";

/// A field of the `Contacts` module.
#[derive(Debug, Clone)]
pub(super) struct Field {
    pub id: String,
    pub api_name: String,
    pub label: String,
    /// `text`, `phone`, `email`, `textarea` or (read-only system fields) `datetime`.
    pub data_type: String,
    /// The longest value, in characters.
    pub length: usize,
    /// `false` for Zoho's system fields.
    pub custom: bool,
    pub mandatory: bool,
    pub read_only: bool,
    /// The `unique` object a field was created with (`{"casesensitive": "false"}`); `None`
    /// for a field that allows duplicates (answered `"unique": {}`).
    pub unique: Option<Value>,
    pub column_name: String,
    pub created_time: Option<String>,
}

impl Field {
    /// Whether two values of this field are the same for duplicate checks: exact, or
    /// ASCII-case-insensitive for `Email` and for unique fields not marked case-sensitive.
    pub(super) fn same(&self, a: &str, b: &str) -> bool {
        let case_sensitive = match &self.unique {
            Some(unique) => unique.get("casesensitive").and_then(Value::as_str) == Some("true"),
            None => self.data_type != "email",
        };
        if case_sensitive {
            a == b
        } else {
            a.eq_ignore_ascii_case(b)
        }
    }

    /// The field as `GET /settings/fields` answers it.
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "api_name": self.api_name,
            "field_label": self.label,
            "display_label": self.label,
            "data_type": self.data_type,
            "json_type": "string",
            "length": self.length,
            "custom_field": self.custom,
            "system_mandatory": self.mandatory,
            "read_only": self.read_only,
            "field_read_only": self.read_only,
            "visible": true,
            "type": "used",
            "unique": self.unique.clone().unwrap_or_else(|| json!({})),
            "external": null,
            "column_name": self.column_name,
            "created_source": if self.custom { "crm" } else { "default" },
            "created_time": self.created_time,
            "modified_time": self.created_time,
        })
    }
}

/// A contact.
#[derive(Debug, Clone)]
pub(super) struct Contact {
    pub id: u64,
    /// Values by field API name; only fields that have a value.
    pub fields: Map<String, Value>,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
}

/// A note on a contact.
#[derive(Debug, Clone)]
pub(super) struct Note {
    pub id: u64,
    pub parent_id: u64,
    pub title: Option<String>,
    pub content: Option<String>,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
}

/// The fake's whole state, behind one mutex.
pub(super) struct State {
    pub config: FakeConfig,
    pub specs: Option<Arc<Specs>>,
    /// `http://127.0.0.1:PORT`, the `api_domain` the token endpoint answers.
    pub base_url: String,
    pub fields: Vec<Field>,
    pub contacts: BTreeMap<u64, Contact>,
    pub notes: BTreeMap<u64, Note>,
    next_id: u64,
    last_time: DateTime<Utc>,
    /// Access tokens issued and not expired.
    pub tokens: HashSet<String>,
    pub token_requests: usize,
    pub requests: Vec<FakeRequest>,
    pub violations: Vec<String>,
    pub credits: u64,
}

/// The system fields of `Contacts`: `(api_name, label, data_type, length, mandatory,
/// read_only)`.
const SYSTEM_FIELDS: &[(&str, &str, &str, usize, bool, bool)] = &[
    ("Last_Name", "Last Name", "text", 80, true, false),
    ("First_Name", "First Name", "text", 40, false, false),
    ("Email", "Email", "email", 100, false, false),
    (
        "Secondary_Email",
        "Secondary Email",
        "email",
        100,
        false,
        false,
    ),
    ("Phone", "Phone", "phone", 30, false, false),
    ("Mobile", "Mobile", "phone", 30, false, false),
    ("Home_Phone", "Home Phone", "phone", 30, false, false),
    ("Other_Phone", "Other Phone", "phone", 30, false, false),
    (
        "Description",
        "Description",
        "textarea",
        32_000,
        false,
        false,
    ),
    ("Created_Time", "Created Time", "datetime", 120, false, true),
    (
        "Modified_Time",
        "Modified Time",
        "datetime",
        120,
        false,
        true,
    ),
];

/// ISO 8601 in whole seconds with the offset written out, as Zoho writes times.
pub(super) fn zoho_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// `{"name", "id"}` of the token's user (`Minified_User`).
pub(super) fn user() -> Value {
    json!({"name": USER_NAME, "id": USER_ID})
}

/// A new random access token shaped like Zoho's (`1000.<32 hex>.<32 hex>`).
pub(super) fn new_access_token() -> String {
    format!(
        "1000.{:032x}.{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

/// A numeric id from the text of a request; `None` when it is not one.
pub(super) fn parse_id(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl State {
    pub(super) fn new(config: FakeConfig, specs: Option<Arc<Specs>>) -> State {
        let now = Utc::now();
        let now = now.with_nanosecond(0).unwrap_or(now);
        let mut state = State {
            config,
            specs,
            base_url: String::new(),
            fields: Vec::new(),
            contacts: BTreeMap::new(),
            notes: BTreeMap::new(),
            next_id: ID_BASE,
            last_time: now,
            tokens: HashSet::new(),
            token_requests: 0,
            requests: Vec::new(),
            violations: Vec::new(),
            credits: 0,
        };
        for (n, (api_name, label, data_type, length, mandatory, read_only)) in
            SYSTEM_FIELDS.iter().enumerate()
        {
            let id = state.new_id().to_string();
            state.fields.push(Field {
                id,
                api_name: (*api_name).to_owned(),
                label: (*label).to_owned(),
                data_type: (*data_type).to_owned(),
                length: *length,
                custom: false,
                mandatory: *mandatory,
                read_only: *read_only,
                unique: None,
                column_name: format!("CONTACTSYS{}", n + 1),
                created_time: None,
            });
        }
        state
    }

    /// A fresh id, shared by fields, contacts and notes.
    pub(super) fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The current time in whole seconds, never earlier than a time handed out before.
    pub(super) fn now(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        let now = now.with_nanosecond(0).unwrap_or(now);
        if now > self.last_time {
            self.last_time = now;
        }
        self.last_time
    }

    /// The field with this API name (exactly, as Zoho's API names are written).
    pub(super) fn field(&self, api_name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.api_name == api_name)
    }

    /// Stores a new contact with these values; returns its id.
    pub(super) fn insert_contact(&mut self, fields: Map<String, Value>) -> u64 {
        let id = self.new_id();
        let now = self.now();
        self.contacts.insert(
            id,
            Contact {
                id,
                fields,
                created: now,
                modified: now,
            },
        );
        id
    }

    /// A contact's value of a field (`id` and the system times included); `None` when empty.
    pub(super) fn contact_value(contact: &Contact, api_name: &str) -> Option<Value> {
        match api_name {
            "id" => Some(Value::from(contact.id.to_string())),
            "Created_Time" => Some(Value::from(zoho_time(contact.created))),
            "Modified_Time" => Some(Value::from(zoho_time(contact.modified))),
            _ => contact.fields.get(api_name).cloned(),
        }
    }

    /// `First_Name Last_Name`, the contact's name as `Parent_Id.name` shows it.
    pub(super) fn contact_name(&self, id: u64) -> String {
        let Some(contact) = self.contacts.get(&id) else {
            return String::new();
        };
        ["First_Name", "Last_Name"]
            .iter()
            .filter_map(|f| contact.fields.get(*f).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `details` of a write's success: the record's id, times and authors.
    pub(super) fn write_details(id: u64, created: DateTime<Utc>, modified: DateTime<Utc>) -> Value {
        json!({
            "Modified_Time": zoho_time(modified),
            "Modified_By": user(),
            "Created_Time": zoho_time(created),
            "id": id.to_string(),
            "Created_By": user(),
        })
    }

    pub(super) fn fake_contacts(&self) -> Vec<FakeContact> {
        self.contacts
            .values()
            .map(|c| FakeContact {
                id: c.id.to_string(),
                fields: c.fields.clone(),
            })
            .collect()
    }

    pub(super) fn fake_notes(&self) -> Vec<FakeNote> {
        self.notes
            .values()
            .map(|n| FakeNote {
                id: n.id.to_string(),
                parent_id: n.parent_id.to_string(),
                title: n.title.clone().unwrap_or_default(),
                content: n.content.clone().unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_whole_seconds_with_an_offset() {
        let time = DateTime::parse_from_rfc3339("2025-01-01T10:20:00.750Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(zoho_time(time), "2025-01-01T10:20:00+00:00");
        let mut state = State::new(FakeConfig::default(), None);
        let a = state.now();
        assert_eq!(a.nanosecond(), 0);
        assert!(state.now() >= a);
    }

    #[test]
    fn ids_are_19_digits_and_parsed_strictly() {
        let mut state = State::new(FakeConfig::default(), None);
        let id = state.new_id().to_string();
        assert_eq!(id.len(), 19);
        assert_eq!(parse_id(&id).map(|i| i.to_string()), Some(id));
        assert_eq!(parse_id("+1"), None);
        assert_eq!(parse_id(""), None);
        assert_eq!(parse_id("12a"), None);
        assert!(new_access_token().starts_with("1000."));
        assert_ne!(new_access_token(), new_access_token());
    }

    #[test]
    fn duplicate_checks_follow_case_sensitivity() {
        let state = State::new(FakeConfig::default(), None);
        let email = state.field("Email").unwrap();
        assert!(email.same("A@x.com", "a@X.com"));
        let phone = state.field("Phone").unwrap();
        assert!(!phone.same("A", "a"));
        let mut unique = phone.clone();
        unique.unique = Some(json!({"casesensitive": "false"}));
        assert!(unique.same("Ab", "aB"));
        unique.unique = Some(json!({"casesensitive": "true"}));
        assert!(!unique.same("Ab", "aB"));
    }
}
