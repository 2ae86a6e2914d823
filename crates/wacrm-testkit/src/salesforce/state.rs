//! What the fake holds: objects (their fields, as describe shows them, and their records),
//! issued tokens, the API allocation, recorded requests and violations; Salesforce ids.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{FakeConfig, FakeRequest};

/// A field of an object, as `GET /sobjects/{object}/describe` lists it.
#[derive(Debug, Clone)]
pub(super) struct Field {
    pub name: String,
    pub label: String,
    /// Describe's `type`: `id`, `string`, `textarea`, `phone`, `email`, `datetime`,
    /// `reference`.
    pub kind: &'static str,
    pub length: usize,
    pub external_id: bool,
    pub unique: bool,
    pub case_sensitive: bool,
    pub createable: bool,
    pub updateable: bool,
    /// Required on create (`nillable: false` and no default, e.g. `Contact.LastName`).
    pub required: bool,
    pub auto_number: bool,
    /// The object a `reference` field points at.
    pub reference_to: Option<String>,
    pub custom: bool,
}

impl Field {
    pub(super) fn system(name: &str, kind: &'static str, length: usize) -> Field {
        Field {
            name: name.to_owned(),
            label: name.to_owned(),
            kind,
            length,
            external_id: false,
            unique: false,
            case_sensitive: false,
            createable: true,
            updateable: true,
            required: false,
            auto_number: false,
            reference_to: None,
            custom: false,
        }
    }

    fn read_only(mut self) -> Field {
        self.createable = false;
        self.updateable = false;
        self
    }

    /// Whether two values of this field are equal for matching (upsert keys, SOQL `=`):
    /// exact for a case-sensitive unique field, case-insensitive otherwise (SOQL reference,
    /// "Comparison Operators": string comparisons are case-insensitive except on
    /// case-sensitive unique fields — read from memory of that page, not re-read here).
    pub(super) fn same(&self, a: &str, b: &str) -> bool {
        if self.case_sensitive {
            a == b
        } else {
            a.to_lowercase() == b.to_lowercase()
        }
    }

    /// The field as describe answers it (the properties the REST API Developer Guide's
    /// describe example shows; the fake answers a subset of them).
    pub(super) fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.kind,
            "length": self.length,
            "externalId": self.external_id,
            "unique": self.unique,
            "caseSensitive": self.case_sensitive,
            "createable": self.createable,
            "updateable": self.updateable,
            "nillable": !self.required && self.kind != "id",
            "autoNumber": self.auto_number,
            "custom": self.custom,
            "idLookup": self.kind == "id" || self.external_id,
            "referenceTo": self.reference_to.iter().collect::<Vec<_>>(),
        })
    }
}

/// An object (`Contact`, or a custom object `setup` creates).
#[derive(Debug, Clone)]
pub(super) struct SObject {
    pub name: String,
    pub label: String,
    /// The id prefix of its records (`003` for Contact).
    pub prefix: String,
    pub custom: bool,
    pub fields: Vec<Field>,
    pub records: BTreeMap<String, Map<String, Value>>,
}

impl SObject {
    pub(super) fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// The fake's whole state, behind one mutex.
pub(super) struct State {
    pub config: FakeConfig,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    pub objects: BTreeMap<String, SObject>,
    next_id: u64,
    /// Access tokens issued and not expired.
    pub tokens: HashSet<String>,
    pub token_requests: usize,
    /// API requests counted against the allocation.
    pub api_used: u64,
    pub requests: Vec<FakeRequest>,
    /// The `Host` header of each recorded request, in the same order.
    pub hosts: Vec<String>,
    pub violations: Vec<String>,
    /// Query cursors: the rows a `nextRecordsUrl` still holds.
    pub cursors: BTreeMap<String, (String, Vec<Value>)>,
    /// The arrival time of each API request, for the busiest second.
    pub arrivals: Vec<std::time::Instant>,
    /// The 15-character ids of deleted records. Salesforce keeps deleted records in the
    /// Recycle Bin for 15 days (a delete of one answers `ENTITY_IS_DELETED`); the fake keeps
    /// only their ids, none of their values.
    pub deleted: HashSet<String>,
}

/// Salesforce's 18-character id: the 15-character id and a suffix of three characters that
/// encode which of its letters are upper case (so the id survives case-insensitive handling).
pub(super) fn id18(id15: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut suffix = String::new();
    for chunk in id15.as_bytes().chunks(5) {
        let mut bits = 0usize;
        for (i, c) in chunk.iter().enumerate() {
            if c.is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        suffix.push(ALPHABET[bits] as char);
    }
    format!("{id15}{suffix}")
}

/// Whether `text` has the shape of a Salesforce id (15 or 18 letters and digits).
pub(super) fn looks_like_id(text: &str) -> bool {
    (text.len() == 15 || text.len() == 18) && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Salesforce writes times as `2026-01-01T10:20:00.000+0000`.
pub(super) fn sf_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// A new random access token shaped like a Salesforce session id (`00D…!…`).
pub(super) fn new_access_token() -> String {
    format!(
        "00DFAKE0000000001!AQ{:032x}{:016x}",
        rand::random::<u128>(),
        rand::random::<u64>()
    )
}

impl State {
    pub(super) fn new(config: FakeConfig) -> State {
        let mut state = State {
            config,
            base_url: String::new(),
            objects: BTreeMap::new(),
            next_id: 0,
            tokens: HashSet::new(),
            token_requests: 0,
            api_used: 0,
            requests: Vec::new(),
            hosts: Vec::new(),
            violations: Vec::new(),
            cursors: BTreeMap::new(),
            arrivals: Vec::new(),
            deleted: HashSet::new(),
        };
        let mut last_name = Field::system("LastName", "string", 80);
        last_name.required = true;
        let mut fields = vec![
            Field::system("Id", "id", 18).read_only(),
            Field::system("FirstName", "string", 40),
            last_name,
            Field::system("Name", "string", 121).read_only(),
            Field::system("Phone", "phone", 40),
            Field::system("MobilePhone", "phone", 40),
            Field::system("Email", "email", 80),
            Field::system("Description", "textarea", 32_000),
            Field::system("CreatedDate", "datetime", 0).read_only(),
        ];
        fields.iter_mut().for_each(|f| f.label = f.name.clone());
        state.objects.insert(
            "Contact".into(),
            SObject {
                name: "Contact".into(),
                label: "Contact".into(),
                prefix: "003".into(),
                custom: false,
                fields,
                records: BTreeMap::new(),
            },
        );
        state
    }

    /// A fresh 18-character id with the object's prefix.
    pub(super) fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        // Base 36, upper case, so the checksum suffix is exercised.
        let mut n = self.next_id;
        let mut digits = Vec::new();
        while n > 0 {
            let d = (n % 36) as u8;
            digits.push(if d < 10 { b'0' + d } else { b'A' + d - 10 });
            n /= 36;
        }
        while digits.len() < 9 {
            digits.push(b'0');
        }
        digits.reverse();
        let body = String::from_utf8_lossy(&digits).into_owned();
        id18(&format!("{prefix}5g0{body}"))
    }

    /// The object of this name (API names are case-insensitive in Salesforce).
    pub(super) fn object(&self, name: &str) -> Option<&SObject> {
        self.objects
            .values()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    pub(super) fn object_mut(&mut self, name: &str) -> Option<&mut SObject> {
        self.objects
            .values_mut()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// Stores a record (no checks); returns its id.
    pub(super) fn insert(&mut self, object: &str, mut values: Map<String, Value>) -> String {
        let prefix = self
            .object(object)
            .map(|o| o.prefix.clone())
            .unwrap_or_else(|| "a00".into());
        let id = self.new_id(&prefix);
        values.insert("Id".into(), json!(id));
        values.insert("CreatedDate".into(), json!(sf_time(Utc::now())));
        if object.eq_ignore_ascii_case("Contact") {
            let name = ["FirstName", "LastName"]
                .iter()
                .filter_map(|f| values.get(*f).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            values.insert("Name".into(), json!(name));
        }
        if let Some(o) = self.object_mut(object) {
            if let Some(auto) = o.fields.iter().find(|f| f.auto_number) {
                let n = o.records.len() + 1;
                values.insert(auto.name.clone(), json!(format!("WA-{n:06}")));
            }
            o.records.insert(id.clone(), values);
        }
        id
    }

    /// The `Sforce-Limit-Info` value.
    pub(super) fn limit_info(&self) -> String {
        format!(
            "api-usage={}/{}",
            self.api_used, self.config.daily_api_requests
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_case_checksum() {
        // The documented example: 001A0000006Vm9r → 001A0000006Vm9rIAC.
        assert_eq!(id18("001A0000006Vm9r"), "001A0000006Vm9rIAC");
        let mut state = State::new(FakeConfig::default());
        let id = state.new_id("003");
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("003"));
        assert!(looks_like_id(&id));
        assert_ne!(state.new_id("003"), id);
    }
}
