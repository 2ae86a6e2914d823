//! What the fake holds: persons, person fields, notes, the recorded requests and the rate-limit
//! accounting; and how its records look on the wire.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::specs::Specs;
use super::{FakeConfig, FakeNote, FakePerson, FakeRequest};

/// The company the fake's user belongs to.
pub(super) const COMPANY_ID: i64 = 7_000_123;
/// The fake company's subdomain (`https://<domain>.pipedrive.com`).
pub(super) const COMPANY_DOMAIN: &str = "wacrm-fake";
/// The fake's user's name and e-mail address.
pub(super) const USER_NAME: &str = "Fake User";
pub(super) const USER_EMAIL: &str = "fake.user@example.com";
/// `visible_to` of persons created without one ("owner's visibility group").
const DEFAULT_VISIBLE_TO: i64 = 3;
/// Pipedrive's default phone and e-mail label.
pub(super) const DEFAULT_LABEL: &str = "work";

/// A phone number or e-mail address of a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Contact {
    pub value: String,
    pub label: String,
    pub primary: bool,
}

impl Contact {
    fn to_json(&self) -> Value {
        json!({"value": self.value, "label": self.label, "primary": self.primary})
    }
}

#[derive(Debug, Clone)]
pub(super) struct Person {
    pub id: i64,
    pub name: String,
    pub phones: Vec<Contact>,
    pub emails: Vec<Contact>,
    /// Custom field values by key; a key absent here reads as `null`.
    pub custom_fields: Map<String, Value>,
    pub owner_id: i64,
    pub org_id: Option<i64>,
    pub visible_to: i64,
    pub label_ids: Vec<i64>,
    pub add_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(super) struct Field {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub field_type: String,
    /// `true` for custom fields, `false` for Pipedrive's system fields.
    pub edit_flag: bool,
    pub add_visible_flag: bool,
    pub options: Option<Value>,
    pub add_time: String,
}

#[derive(Debug, Clone)]
pub(super) struct Note {
    pub id: i64,
    pub content: String,
    pub person_id: Option<i64>,
    pub user_id: i64,
    pub add_time: String,
    pub update_time: String,
    pub pinned_to_person_flag: bool,
}

/// One recorded request and when it arrived.
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    pub at: Instant,
    pub request: FakeRequest,
}

/// The fake's whole state, behind one mutex.
pub(super) struct State {
    pub config: FakeConfig,
    pub specs: Option<Arc<Specs>>,
    pub persons: BTreeMap<i64, Person>,
    pub fields: Vec<Field>,
    pub notes: BTreeMap<i64, Note>,
    next_person_id: i64,
    next_field_id: i64,
    next_note_id: i64,
    last_time: DateTime<Utc>,
    pub requests: Vec<Recorded>,
    pub violations: Vec<String>,
    /// Arrival times of the requests admitted in the current 2-second window.
    pub window: VecDeque<Instant>,
    pub burst_violations: usize,
    pub tokens_spent: u64,
}

/// The system person fields every company has (`edit_flag: false`).
const SYSTEM_FIELDS: &[(&str, &str, &str)] = &[
    ("name", "Name", "varchar"),
    ("phone", "Phone", "phone"),
    ("email", "Email", "varchar"),
    ("owner_id", "Owner", "user"),
    ("org_id", "Organization", "org"),
];

/// `YYYY-MM-DD HH:MM:SS`, v1's time format (UTC).
pub(super) fn v1_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// RFC 3339 with whole seconds and `Z`, v2's time format.
pub(super) fn v2_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Whether `text` is a v1 time, `YYYY-MM-DD HH:MM:SS`.
pub(super) fn is_v1_time(text: &str) -> bool {
    text.len() == 19 && chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").is_ok()
}

/// A fresh 40-hex custom field key.
fn field_key() -> String {
    (0..20)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

impl State {
    pub(super) fn new(config: FakeConfig, specs: Option<Arc<Specs>>) -> State {
        let now = Utc::now();
        let mut state = State {
            config,
            specs,
            persons: BTreeMap::new(),
            fields: Vec::new(),
            notes: BTreeMap::new(),
            next_person_id: 1,
            next_field_id: 1,
            next_note_id: 1,
            last_time: now,
            requests: Vec::new(),
            violations: Vec::new(),
            window: VecDeque::new(),
            burst_violations: 0,
            tokens_spent: 0,
        };
        for (key, name, field_type) in SYSTEM_FIELDS {
            state.add_field((*key).to_owned(), name, field_type, false, true, None);
        }
        state
    }

    /// The current time, strictly later than every time handed out before (so each write
    /// moves `update_time` forward).
    pub(super) fn now(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        self.last_time = if now > self.last_time {
            now
        } else {
            self.last_time + chrono::Duration::microseconds(1)
        };
        self.last_time
    }

    pub(super) fn add_field(
        &mut self,
        key: String,
        name: &str,
        field_type: &str,
        edit_flag: bool,
        add_visible_flag: bool,
        options: Option<Value>,
    ) -> &Field {
        let id = self.next_field_id;
        self.next_field_id += 1;
        let add_time = v1_time(self.now());
        self.fields.push(Field {
            id,
            key,
            name: name.to_owned(),
            field_type: field_type.to_owned(),
            edit_flag,
            add_visible_flag,
            options,
            add_time,
        });
        &self.fields[self.fields.len() - 1]
    }

    /// Adds a custom person field with a new key.
    pub(super) fn add_custom_field(
        &mut self,
        name: &str,
        field_type: &str,
        add_visible_flag: bool,
        options: Option<Value>,
    ) -> &Field {
        let mut key = field_key();
        while self.fields.iter().any(|f| f.key == key) {
            key = field_key();
        }
        self.add_field(key, name, field_type, true, add_visible_flag, options)
    }

    /// The custom person field with this key.
    pub(super) fn custom_field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.edit_flag && f.key == key)
    }

    pub(super) fn new_person(&mut self, name: &str) -> &mut Person {
        let id = self.next_person_id;
        self.next_person_id += 1;
        let now = self.now();
        let owner_id = self.config.user_id;
        self.persons.entry(id).or_insert(Person {
            id,
            name: name.to_owned(),
            phones: Vec::new(),
            emails: Vec::new(),
            custom_fields: Map::new(),
            owner_id,
            org_id: None,
            visible_to: DEFAULT_VISIBLE_TO,
            label_ids: Vec::new(),
            add_time: now,
            update_time: now,
        })
    }

    pub(super) fn new_note(&mut self, content: String, person_id: Option<i64>) -> &mut Note {
        let id = self.next_note_id;
        self.next_note_id += 1;
        let now = v1_time(self.now());
        let user_id = self.config.user_id;
        self.notes.entry(id).or_insert(Note {
            id,
            content,
            person_id,
            user_id,
            add_time: now.clone(),
            update_time: now,
            pinned_to_person_flag: false,
        })
    }

    /// A person as v2 answers it; `only` restricts `custom_fields` to those keys (the
    /// `custom_fields` query parameter), otherwise every custom field is listed, `null` when
    /// the person has no value.
    pub(super) fn person_json(&self, person: &Person, only: Option<&[String]>) -> Value {
        let mut custom = Map::new();
        for field in self.fields.iter().filter(|f| f.edit_flag) {
            if only.is_some_and(|keys| !keys.contains(&field.key)) {
                continue;
            }
            let value = person
                .custom_fields
                .get(&field.key)
                .cloned()
                .unwrap_or(Value::Null);
            custom.insert(field.key.clone(), value);
        }
        let (first_name, last_name) = match person.name.split_once(' ') {
            Some((first, last)) => (Value::from(first), Value::from(last)),
            None => (Value::from(person.name.as_str()), Value::Null),
        };
        json!({
            "id": person.id,
            "name": person.name,
            "first_name": first_name,
            "last_name": last_name,
            "owner_id": person.owner_id,
            "org_id": person.org_id,
            "add_time": v2_time(person.add_time),
            "update_time": v2_time(person.update_time),
            "emails": person.emails.iter().map(Contact::to_json).collect::<Vec<_>>(),
            "phones": person.phones.iter().map(Contact::to_json).collect::<Vec<_>>(),
            "is_deleted": false,
            "visible_to": person.visible_to,
            "label_ids": person.label_ids,
            "picture_id": null,
            "custom_fields": custom,
        })
    }

    /// A person field as v1 answers it.
    pub(super) fn field_json(&self, field: &Field) -> Value {
        let order_nr = self
            .fields
            .iter()
            .position(|f| f.id == field.id)
            .unwrap_or(0);
        json!({
            "id": field.id,
            "key": field.key,
            "name": field.name,
            "order_nr": order_nr,
            "field_type": field.field_type,
            "add_time": field.add_time,
            "update_time": field.add_time,
            "last_updated_by_user_id": self.config.user_id,
            "created_by_user_id": self.config.user_id,
            "active_flag": true,
            "edit_flag": field.edit_flag,
            "index_visible_flag": true,
            "details_visible_flag": true,
            "add_visible_flag": field.add_visible_flag,
            "important_flag": false,
            "bulk_edit_allowed": field.edit_flag,
            "searchable_flag": false,
            "filtering_allowed": true,
            "sortable_flag": true,
            "options": field.options,
            "mandatory_flag": false,
        })
    }

    /// A note as v1 answers it.
    pub(super) fn note_json(&self, note: &Note) -> Value {
        let person = note
            .person_id
            .and_then(|id| self.persons.get(&id))
            .map(|p| json!({"name": p.name}));
        json!({
            "id": note.id,
            "content": note.content,
            "person_id": note.person_id,
            "deal_id": null,
            "org_id": null,
            "lead_id": null,
            "project_id": null,
            "user_id": note.user_id,
            "last_update_user_id": note.user_id,
            "add_time": note.add_time,
            "update_time": note.update_time,
            "active_flag": true,
            "pinned_to_person_flag": note.pinned_to_person_flag,
            "pinned_to_deal_flag": false,
            "pinned_to_organization_flag": false,
            "pinned_to_lead_flag": false,
            "pinned_to_project_flag": false,
            "person": person,
            "organization": null,
            "deal": null,
            "user": {
                "email": USER_EMAIL,
                "name": USER_NAME,
                "icon_url": null,
                "is_you": note.user_id == self.config.user_id,
            },
        })
    }

    /// The public view of the persons, by ascending id.
    pub(super) fn fake_persons(&self) -> Vec<FakePerson> {
        self.persons
            .values()
            .map(|p| FakePerson {
                id: p.id,
                name: p.name.clone(),
                phones: p.phones.iter().map(|c| c.value.clone()).collect(),
                custom_fields: p.custom_fields.clone(),
                update_time: p.update_time,
            })
            .collect()
    }

    /// The public view of the notes, by ascending id.
    pub(super) fn fake_notes(&self) -> Vec<FakeNote> {
        self.notes
            .values()
            .map(|n| FakeNote {
                id: n.id,
                person_id: n.person_id,
                user_id: n.user_id,
                content: n.content.clone(),
                add_time: n.add_time.clone(),
            })
            .collect()
    }
}
