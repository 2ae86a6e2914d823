//! The fake's store: records, properties, associations, owners, and the request log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::phone::{calculated_phone_properties, is_calculated};
use super::specs::Specs;
use super::{FakeAssociation, FakeConfig, FakeObject, FakeRequest, Fault};

/// The object types the fake stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Kind {
    Contact,
    Communication,
    Note,
}

impl Kind {
    /// Accepts what HubSpot accepts in paths: plural or singular name, or the type id.
    pub(super) fn parse(text: &str) -> Option<Kind> {
        match text.to_ascii_lowercase().as_str() {
            "contacts" | "contact" | "0-1" => Some(Kind::Contact),
            "communications" | "communication" | "0-18" => Some(Kind::Communication),
            "notes" | "note" | "0-46" => Some(Kind::Note),
            _ => None,
        }
    }

    pub(super) fn plural(self) -> &'static str {
        match self {
            Kind::Contact => "contacts",
            Kind::Communication => "communications",
            Kind::Note => "notes",
        }
    }

    /// Singular and lower case, for messages (`contact`).
    pub(super) fn singular(self) -> &'static str {
        match self {
            Kind::Contact => "contact",
            Kind::Communication => "communication",
            Kind::Note => "note",
        }
    }

    pub(super) fn type_id(self) -> &'static str {
        match self {
            Kind::Contact => "0-1",
            Kind::Communication => "0-18",
            Kind::Note => "0-46",
        }
    }

    /// As HubSpot names the type in messages (`CONTACT`).
    pub(super) fn upper(self) -> &'static str {
        match self {
            Kind::Contact => "CONTACT",
            Kind::Communication => "COMMUNICATION",
            Kind::Note => "NOTE",
        }
    }

    pub(super) fn created_property(self) -> &'static str {
        match self {
            Kind::Contact => "createdate",
            Kind::Communication | Kind::Note => "hs_createdate",
        }
    }

    pub(super) fn modified_property(self) -> &'static str {
        match self {
            Kind::Contact => "lastmodifieddate",
            Kind::Communication | Kind::Note => "hs_lastmodifieddate",
        }
    }

    /// Properties only HubSpot writes.
    pub(super) fn is_read_only(self, name: &str) -> bool {
        name == "hs_object_id"
            || name == self.created_property()
            || name == self.modified_property()
            || (self == Kind::Contact && is_calculated(name))
    }
}

/// `(forward, inverse)` HubSpot-defined association type ids between two kinds.
pub(super) fn association_types(from: Kind, to: Kind) -> Option<(i64, i64)> {
    use super::{
        COMMUNICATION_TO_CONTACT, CONTACT_TO_COMMUNICATION, CONTACT_TO_NOTE, NOTE_TO_CONTACT,
    };
    match (from, to) {
        (Kind::Communication, Kind::Contact) => {
            Some((COMMUNICATION_TO_CONTACT, CONTACT_TO_COMMUNICATION))
        }
        (Kind::Contact, Kind::Communication) => {
            Some((CONTACT_TO_COMMUNICATION, COMMUNICATION_TO_CONTACT))
        }
        (Kind::Note, Kind::Contact) => Some((NOTE_TO_CONTACT, CONTACT_TO_NOTE)),
        (Kind::Contact, Kind::Note) => Some((CONTACT_TO_NOTE, NOTE_TO_CONTACT)),
        _ => None,
    }
}

/// ISO 8601 with milliseconds, as HubSpot writes timestamps.
pub(super) fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One value a property had.
#[derive(Debug, Clone)]
pub(super) struct HistoryEntry {
    pub value: String,
    pub timestamp: DateTime<Utc>,
    pub source_type: &'static str,
}

/// One stored record.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub props: BTreeMap<String, String>,
    pub history: BTreeMap<String, Vec<HistoryEntry>>,
}

impl Record {
    pub(super) fn new(kind: Kind, id: u64, now: DateTime<Utc>) -> Record {
        let mut record = Record {
            created_at: now,
            updated_at: now,
            props: BTreeMap::new(),
            history: BTreeMap::new(),
        };
        record.put("hs_object_id", &id.to_string(), now, "CALCULATED");
        record.put(kind.created_property(), &iso(now), now, "CALCULATED");
        record.put(kind.modified_property(), &iso(now), now, "CALCULATED");
        record
    }

    /// Sets one property; an empty value clears it, as HubSpot does.
    fn put(&mut self, name: &str, value: &str, now: DateTime<Utc>, source: &'static str) {
        if value.is_empty() {
            if self.props.remove(name).is_none() {
                return;
            }
        } else if self.props.get(name).map(String::as_str) == Some(value) {
            return;
        } else {
            self.props.insert(name.to_owned(), value.to_owned());
        }
        self.history
            .entry(name.to_owned())
            .or_default()
            .push(HistoryEntry {
                value: value.to_owned(),
                timestamp: now,
                source_type: source,
            });
    }

    /// Applies client-written properties, then recomputes what HubSpot derives.
    pub(super) fn write(
        &mut self,
        kind: Kind,
        props: &BTreeMap<String, String>,
        now: DateTime<Utc>,
        source: &'static str,
    ) {
        for (name, value) in props {
            self.put(name, value, now, source);
        }
        if kind == Kind::Contact {
            let calculated = calculated_phone_properties(
                self.props.get("phone").map(String::as_str),
                self.props.get("mobilephone").map(String::as_str),
            );
            for (_, name) in super::CALCULATED_PHONE_PROPERTIES {
                let value = calculated.get(*name).map_or("", String::as_str);
                self.put(name, value, now, "CALCULATED");
            }
        }
        self.updated_at = now;
        self.put(kind.modified_property(), &iso(now), now, "CALCULATED");
    }

    /// HubSpot's `SimplePublicObject`: the requested properties (`null` when a defined property
    /// has no value, as HubSpot answers), or the type's defaults when none are requested.
    pub(super) fn to_json(
        &self,
        id: u64,
        requested: &[String],
        defaults: &[&str],
        defined: &dyn Fn(&str) -> bool,
    ) -> Value {
        let mut properties = Map::new();
        if requested.is_empty() {
            for name in defaults {
                if let Some(value) = self.props.get(*name) {
                    properties.insert((*name).to_owned(), Value::from(value.as_str()));
                }
            }
        } else {
            for name in requested {
                match self.props.get(name) {
                    Some(value) => {
                        properties.insert(name.clone(), Value::from(value.as_str()));
                    }
                    None if defined(name) => {
                        properties.insert(name.clone(), Value::Null);
                    }
                    None => {}
                }
            }
        }
        for always in ["hs_object_id"] {
            if let Some(value) = self.props.get(always) {
                properties
                    .entry(always.to_owned())
                    .or_insert_with(|| Value::from(value.as_str()));
            }
        }
        json!({
            "id": id.to_string(),
            "properties": properties,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "archived": false,
        })
    }

    /// `propertiesWithHistory` for the named properties, newest value first.
    pub(super) fn history_json(&self, names: &[String]) -> Value {
        let mut out = Map::new();
        for name in names {
            let entries: Vec<Value> = self
                .history
                .get(name)
                .map(|h| {
                    h.iter()
                        .rev()
                        .map(|e| {
                            json!({
                                "value": e.value,
                                "timestamp": iso(e.timestamp),
                                "sourceType": e.source_type,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.insert(name.clone(), Value::Array(entries));
        }
        Value::Object(out)
    }
}

/// A property definition of contacts or communications (notes keep no definitions: their
/// writes are checked field by field).
#[derive(Debug, Clone)]
pub(super) struct PropertyDef {
    pub name: String,
    pub label: String,
    pub type_: String,
    pub field_type: String,
    pub group_name: String,
    pub description: String,
    pub has_unique_value: bool,
    pub hubspot_defined: bool,
    pub read_only: bool,
    pub calculated: bool,
    /// Allowed values of an enumeration (empty: any value).
    pub options: Vec<(String, String)>,
    /// Extra fields of a created property, echoed back as given.
    pub extra: Map<String, Value>,
    pub created_at: DateTime<Utc>,
}

impl PropertyDef {
    pub(super) fn builtin(
        name: &str,
        label: &str,
        type_: &str,
        field_type: &str,
        now: DateTime<Utc>,
    ) -> Self {
        PropertyDef {
            name: name.to_owned(),
            label: label.to_owned(),
            type_: type_.to_owned(),
            field_type: field_type.to_owned(),
            group_name: "contactinformation".to_owned(),
            description: String::new(),
            has_unique_value: false,
            hubspot_defined: true,
            read_only: false,
            calculated: false,
            options: Vec::new(),
            extra: Map::new(),
            created_at: now,
        }
    }

    /// HubSpot's `Property`.
    pub(super) fn to_json(&self) -> Value {
        let mut out = self.extra.clone();
        let options: Vec<Value> = self
            .options
            .iter()
            .enumerate()
            .map(|(i, (label, value))| {
                json!({"label": label, "value": value, "hidden": false, "displayOrder": i})
            })
            .collect();
        for (key, value) in [
            ("name", json!(self.name)),
            ("label", json!(self.label)),
            ("type", json!(self.type_)),
            ("fieldType", json!(self.field_type)),
            ("groupName", json!(self.group_name)),
            ("description", json!(self.description)),
            ("options", json!(options)),
            ("hasUniqueValue", json!(self.has_unique_value)),
            ("hubspotDefined", json!(self.hubspot_defined)),
            ("calculated", json!(self.calculated)),
            ("archived", json!(false)),
            ("createdAt", json!(iso(self.created_at))),
            ("updatedAt", json!(iso(self.created_at))),
            (
                "modificationMetadata",
                json!({
                    "archivable": !self.hubspot_defined,
                    "readOnlyDefinition": self.hubspot_defined,
                    "readOnlyValue": self.read_only,
                }),
            ),
        ] {
            out.insert(key.to_owned(), value);
        }
        out.entry("hidden").or_insert(json!(false));
        out.entry("formField").or_insert(json!(false));
        out.entry("displayOrder").or_insert(json!(-1));
        Value::Object(out)
    }
}

fn builtin_contact_properties(now: DateTime<Utc>) -> BTreeMap<String, PropertyDef> {
    let mut defs = Vec::new();
    for (name, label, field_type) in [
        ("email", "Email", "text"),
        ("firstname", "First Name", "text"),
        ("lastname", "Last Name", "text"),
        ("phone", "Phone Number", "phonenumber"),
        ("mobilephone", "Mobile Phone Number", "phonenumber"),
        (
            "hs_whatsapp_phone_number",
            "WhatsApp Phone Number",
            "phonenumber",
        ),
        ("company", "Company Name", "text"),
        ("jobtitle", "Job Title", "text"),
        ("website", "Website URL", "text"),
        ("address", "Street Address", "text"),
        ("city", "City", "text"),
        ("state", "State/Region", "text"),
        ("zip", "Postal Code", "text"),
        ("country", "Country/Region", "text"),
        ("hs_language", "Preferred language", "select"),
    ] {
        defs.push(PropertyDef::builtin(name, label, "string", field_type, now));
    }
    let mut lifecycle = PropertyDef::builtin(
        "lifecyclestage",
        "Lifecycle Stage",
        "enumeration",
        "radio",
        now,
    );
    lifecycle.options = [
        ("Subscriber", "subscriber"),
        ("Lead", "lead"),
        ("Marketing Qualified Lead", "marketingqualifiedlead"),
        ("Sales Qualified Lead", "salesqualifiedlead"),
        ("Opportunity", "opportunity"),
        ("Customer", "customer"),
        ("Evangelist", "evangelist"),
        ("Other", "other"),
    ]
    .iter()
    .map(|(l, v)| ((*l).to_owned(), (*v).to_owned()))
    .collect();
    defs.push(lifecycle);
    let mut lead_status =
        PropertyDef::builtin("hs_lead_status", "Lead Status", "enumeration", "radio", now);
    lead_status.options = [
        ("New", "NEW"),
        ("Open", "OPEN"),
        ("In Progress", "IN_PROGRESS"),
        ("Open Deal", "OPEN_DEAL"),
        ("Unqualified", "UNQUALIFIED"),
        ("Attempted to Contact", "ATTEMPTED_TO_CONTACT"),
        ("Connected", "CONNECTED"),
        ("Bad Timing", "BAD_TIMING"),
    ]
    .iter()
    .map(|(l, v)| ((*l).to_owned(), (*v).to_owned()))
    .collect();
    defs.push(lead_status);
    // Owner ids are checked against the owners, not against options.
    defs.push(PropertyDef::builtin(
        "hubspot_owner_id",
        "Contact owner",
        "enumeration",
        "select",
        now,
    ));
    let mut object_id = PropertyDef::builtin("hs_object_id", "Record ID", "number", "number", now);
    object_id.read_only = true;
    defs.push(object_id);
    for (name, label) in [
        ("createdate", "Create Date"),
        ("lastmodifieddate", "Last Modified Date"),
    ] {
        let mut def = PropertyDef::builtin(name, label, "datetime", "date", now);
        def.read_only = true;
        defs.push(def);
    }
    for (typed, name) in super::CALCULATED_PHONE_PROPERTIES {
        let label = match *name {
            "hs_searchable_calculated_phone_number" => {
                "Calculated Phone Number without country code"
            }
            "hs_searchable_calculated_international_phone_number" => {
                "Calculated Phone Number with country code"
            }
            "hs_calculated_phone_number" => "Calculated Phone Number in International Format",
            "hs_searchable_calculated_mobile_number" => {
                "Calculated Mobile Number without country code"
            }
            "hs_searchable_calculated_international_mobile_number" => {
                "Calculated Mobile Number with country code"
            }
            _ => "Calculated Mobile Number in International Format",
        };
        let mut def = PropertyDef::builtin(name, label, "phone_number", "phonenumber", now);
        def.read_only = true;
        def.calculated = true;
        def.description = format!("Derived by HubSpot from `{typed}`");
        defs.push(def);
    }
    defs.into_iter().map(|d| (d.name.clone(), d)).collect()
}

/// HubSpot's communications properties the fake defines: the writable ones of HubSpot's
/// "Engagements | Communications" guide, the system ones every record has, and the calculated
/// body preview.
fn builtin_communication_properties(now: DateTime<Utc>) -> BTreeMap<String, PropertyDef> {
    let group = "communicationinformation";
    let options = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(l, v)| ((*l).to_owned(), (*v).to_owned()))
            .collect()
    };
    let mut defs = Vec::new();
    let mut channel = PropertyDef::builtin(
        "hs_communication_channel_type",
        "Channel type",
        "enumeration",
        "select",
        now,
    );
    channel.options = options(&[
        ("WhatsApp", "WHATS_APP"),
        ("LinkedIn", "LINKEDIN_MESSAGE"),
        ("SMS", "SMS"),
    ]);
    defs.push(channel);
    let mut logged_from = PropertyDef::builtin(
        "hs_communication_logged_from",
        "Logged from",
        "enumeration",
        "select",
        now,
    );
    logged_from.options = options(&[("CRM", "CRM")]);
    defs.push(logged_from);
    defs.push(PropertyDef::builtin(
        "hs_communication_body",
        "Body",
        "string",
        "textarea",
        now,
    ));
    defs.push(PropertyDef::builtin(
        "hs_timestamp",
        "Activity date",
        "datetime",
        "date",
        now,
    ));
    // Owner ids are checked against the owners, not against options.
    defs.push(PropertyDef::builtin(
        "hubspot_owner_id",
        "Activity assigned to",
        "enumeration",
        "select",
        now,
    ));
    let mut preview =
        PropertyDef::builtin("hs_body_preview", "Body preview", "string", "textarea", now);
    preview.read_only = true;
    preview.calculated = true;
    defs.push(preview);
    let mut object_id = PropertyDef::builtin("hs_object_id", "Record ID", "number", "number", now);
    object_id.read_only = true;
    defs.push(object_id);
    for (name, label) in [
        ("hs_createdate", "Create date"),
        ("hs_lastmodifieddate", "Last modified date"),
    ] {
        let mut def = PropertyDef::builtin(name, label, "datetime", "date", now);
        def.read_only = true;
        defs.push(def);
    }
    defs.into_iter()
        .map(|mut d| {
            d.group_name = group.to_owned();
            (d.name.clone(), d)
        })
        .collect()
}

/// A HubSpot user who can own records.
#[derive(Debug, Clone)]
pub(super) struct Owner {
    pub id: String,
    pub user_id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub created_at: DateTime<Utc>,
}

impl Owner {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "userId": self.user_id,
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "type": "PERSON",
            "archived": false,
            "teams": [],
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.created_at),
        })
    }
}

/// One directed association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Assoc {
    pub from: (Kind, u64),
    pub to: (Kind, u64),
    pub type_id: i64,
    pub category: String,
}

/// A counted fault still to be played.
#[derive(Debug, Clone)]
pub(super) enum Counted {
    ServerErrors(u32),
    /// Handle the next request normally, then hold its answer this long.
    AppliedThenDelay(Duration),
    RateLimited {
        count: u32,
        retry_after_secs: u64,
        policy: &'static str,
    },
}

/// Everything the fake knows.
pub(super) struct State {
    pub config: FakeConfig,
    pub specs: Option<Arc<Specs>>,
    next_id: u64,
    next_owner: u64,
    pub records: BTreeMap<Kind, BTreeMap<u64, Record>>,
    pub associations: Vec<Assoc>,
    /// Property definitions per object type that keeps them (contacts, communications).
    pub properties: BTreeMap<Kind, BTreeMap<String, PropertyDef>>,
    pub owners: Vec<Owner>,
    pub requests: Vec<FakeRequest>,
    pub violations: Vec<String>,
    pub counted_faults: VecDeque<Counted>,
    pub server_errors_played: usize,
    /// Percent of requests answered with a server error ([`super::Fault::ServerErrorRate`]).
    pub server_error_rate: u8,
    /// Percent of successful requests whose answer is replaced by a server error after they
    /// were applied ([`super::Fault::AppliedThenServerErrorRate`]).
    pub applied_then_error_rate: u8,
    /// Answers replaced so ([`super::HubSpotFake::lost_answers`]).
    pub lost_answers: usize,
    /// How long to hold the answer of the request being processed
    /// ([`super::Fault::AppliedThenDelay`]); taken by the handler once the lock is released.
    pub hold_answer: Option<Duration>,
    pub extra_latency: Duration,
    pub validation_triggers: Vec<String>,
    /// Arrival times of admitted requests that count for the ten-second window.
    pub ten_second_window: VecDeque<Instant>,
    /// Arrival times of admitted search requests.
    pub search_window: VecDeque<Instant>,
    /// Admitted requests, for the daily limit.
    pub daily_used: u64,
}

impl State {
    pub(super) fn new(config: FakeConfig, specs: Option<Arc<Specs>>) -> State {
        let now = Utc::now();
        let mut state = State {
            config,
            specs,
            next_id: 1001,
            next_owner: 0,
            records: [Kind::Contact, Kind::Communication, Kind::Note]
                .into_iter()
                .map(|k| (k, BTreeMap::new()))
                .collect(),
            associations: Vec::new(),
            properties: [
                (Kind::Contact, builtin_contact_properties(now)),
                (Kind::Communication, builtin_communication_properties(now)),
            ]
            .into_iter()
            .collect(),
            owners: Vec::new(),
            requests: Vec::new(),
            violations: Vec::new(),
            counted_faults: VecDeque::new(),
            server_errors_played: 0,
            server_error_rate: 0,
            applied_then_error_rate: 0,
            lost_answers: 0,
            hold_answer: None,
            extra_latency: Duration::ZERO,
            validation_triggers: Vec::new(),
            ten_second_window: VecDeque::new(),
            search_window: VecDeque::new(),
            daily_used: 0,
        };
        state.insert_owner("owner@example.com", "Fake", "Owner");
        state
    }

    /// A fresh record id; ids are unique across object types, so a note id is never a contact id.
    pub(super) fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(super) fn table(&self, kind: Kind) -> &BTreeMap<u64, Record> {
        static EMPTY: BTreeMap<u64, Record> = BTreeMap::new();
        self.records.get(&kind).unwrap_or(&EMPTY)
    }

    pub(super) fn table_mut(&mut self, kind: Kind) -> &mut BTreeMap<u64, Record> {
        self.records.entry(kind).or_default()
    }

    /// Creates a record with client-written properties.
    pub(super) fn create(
        &mut self,
        kind: Kind,
        props: &BTreeMap<String, String>,
        now: DateTime<Utc>,
        source: &'static str,
    ) -> u64 {
        let id = self.fresh_id();
        let mut record = Record::new(kind, id, now);
        record.write(kind, props, now, source);
        self.table_mut(kind).insert(id, record);
        id
    }

    pub(super) fn count(&self, kind: Kind) -> usize {
        self.table(kind).len()
    }

    pub(super) fn objects(&self, kind: Kind) -> Vec<FakeObject> {
        self.table(kind)
            .iter()
            .map(|(id, r)| FakeObject {
                id: id.to_string(),
                properties: r.props.clone(),
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
            .collect()
    }

    pub(super) fn exists(&self, kind: Kind, id: &str) -> Option<u64> {
        let id: u64 = id.parse().ok()?;
        self.table(kind).contains_key(&id).then_some(id)
    }

    /// Adds an association and its inverse (idempotent).
    pub(super) fn associate(
        &mut self,
        from: (Kind, u64),
        to: (Kind, u64),
        type_id: i64,
        category: &str,
    ) {
        let inverse = association_types(from.0, to.0)
            .filter(|(forward, _)| *forward == type_id)
            .map_or(type_id, |(_, inverse)| inverse);
        for assoc in [
            Assoc {
                from,
                to,
                type_id,
                category: category.to_owned(),
            },
            Assoc {
                from: to,
                to: from,
                type_id: inverse,
                category: category.to_owned(),
            },
        ] {
            if !self.associations.contains(&assoc) {
                self.associations.push(assoc);
            }
        }
    }

    /// Whether any record holds `text` in a property value, now or in its history.
    pub(super) fn holds(&self, text: &str) -> bool {
        self.records.values().flat_map(BTreeMap::values).any(|r| {
            r.props.values().any(|v| v.contains(text))
                || r.history.values().flatten().any(|h| h.value.contains(text))
        })
    }

    /// Removes a record and every association from or to it.
    pub(super) fn remove(&mut self, kind: Kind, id: u64) {
        self.table_mut(kind).remove(&id);
        self.associations
            .retain(|a| a.from != (kind, id) && a.to != (kind, id));
    }

    pub(super) fn associations_of(&self, object_type: &str, id: &str) -> Vec<FakeAssociation> {
        let (Some(kind), Ok(id)) = (Kind::parse(object_type), id.parse::<u64>()) else {
            return Vec::new();
        };
        let mut out: Vec<FakeAssociation> = self
            .associations
            .iter()
            .filter(|a| a.from == (kind, id))
            .map(|a| FakeAssociation {
                to_type: a.to.0.plural().to_owned(),
                to_id: a.to.1.to_string(),
                type_id: a.type_id,
                category: a.category.clone(),
            })
            .collect();
        out.sort();
        out
    }

    /// The property definitions of `kind`; `None` for a type whose properties are not kept.
    pub(super) fn defs(&self, kind: Kind) -> Option<&BTreeMap<String, PropertyDef>> {
        self.properties.get(&kind)
    }

    /// Whether `kind` defines the property `name` (always `false` when it keeps none).
    pub(super) fn is_defined(&self, kind: Kind, name: &str) -> bool {
        self.defs(kind).is_some_and(|d| d.contains_key(name))
    }

    /// A contact property definition.
    pub(super) fn contact_property(&self, name: &str) -> Option<&PropertyDef> {
        self.defs(Kind::Contact).and_then(|d| d.get(name))
    }

    /// Whether `name` can identify a contact in upsert/read (`email`, or a unique property).
    pub(super) fn is_unique_contact_property(&self, name: &str) -> bool {
        name == "email"
            || self
                .contact_property(name)
                .is_some_and(|p| p.has_unique_value)
    }

    /// The contact holding `value` in the unique property `name` (`email` case-insensitively).
    pub(super) fn contact_by_unique(
        contacts: &BTreeMap<u64, Record>,
        name: &str,
        value: &str,
    ) -> Option<u64> {
        contacts
            .iter()
            .find(|(_, r)| {
                r.props.get(name).is_some_and(|v| {
                    if name == "email" {
                        v.eq_ignore_ascii_case(value)
                    } else {
                        v == value
                    }
                })
            })
            .map(|(id, _)| *id)
    }

    /// The unique property names of contacts, `email` first.
    pub(super) fn unique_contact_properties(&self) -> Vec<String> {
        let mut names = vec!["email".to_owned()];
        names.extend(
            self.defs(Kind::Contact)
                .into_iter()
                .flat_map(BTreeMap::values)
                .filter(|p| p.has_unique_value && p.name != "email")
                .map(|p| p.name.clone()),
        );
        names
    }

    pub(super) fn insert_contact(&mut self, properties: &[(&str, &str)]) -> Result<String, String> {
        let props: BTreeMap<String, String> = properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        for name in self.unique_contact_properties() {
            if let Some(value) = props.get(&name).filter(|v| !v.is_empty()) {
                if let Some(existing) =
                    Self::contact_by_unique(self.table(Kind::Contact), &name, value)
                {
                    return Err(format!(
                        "{name} {value:?} is already taken by contact {existing}"
                    ));
                }
            }
        }
        let id = self.create(Kind::Contact, &props, Utc::now(), "CRM_UI");
        Ok(id.to_string())
    }

    /// Defines a custom text property of `kind` (no request); nothing when it exists.
    pub(super) fn insert_property(&mut self, kind: Kind, name: &str, has_unique_value: bool) {
        let group = match kind {
            Kind::Contact => "contactinformation",
            Kind::Communication => "communicationinformation",
            Kind::Note => "noteinformation",
        };
        let defs = self.properties.entry(kind).or_default();
        if defs.contains_key(name) {
            return;
        }
        let mut def = PropertyDef::builtin(name, name, "string", "text", Utc::now());
        def.group_name = group.to_owned();
        def.hubspot_defined = false;
        def.has_unique_value = has_unique_value;
        defs.insert(name.to_owned(), def);
    }

    pub(super) fn insert_owner(
        &mut self,
        email: &str,
        first_name: &str,
        last_name: &str,
    ) -> String {
        self.next_owner += 1;
        let owner = Owner {
            id: (100_000_000 + self.next_owner).to_string(),
            user_id: 9_000_000 + self.next_owner,
            email: email.to_owned(),
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            created_at: Utc::now(),
        };
        let id = owner.id.clone();
        self.owners.push(owner);
        id
    }

    pub(super) fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::ServerErrors(n) => {
                if n > 0 {
                    self.counted_faults.push_back(Counted::ServerErrors(n));
                }
            }
            Fault::RateLimited {
                count,
                retry_after_secs,
                policy,
            } => {
                if count > 0 {
                    self.counted_faults.push_back(Counted::RateLimited {
                        count,
                        retry_after_secs,
                        policy,
                    });
                }
            }
            Fault::ServerErrorRate(percent) => self.server_error_rate = percent.min(100),
            Fault::AppliedThenServerErrorRate(percent) => {
                self.applied_then_error_rate = percent.min(100);
            }
            Fault::AppliedThenDelay(hold) => {
                self.counted_faults
                    .push_back(Counted::AppliedThenDelay(hold));
            }
            Fault::Latency(extra) => self.extra_latency += extra,
            Fault::ValidationErrorFor(text) => self.validation_triggers.push(text),
        }
    }

    pub(super) fn reset_faults(&mut self) {
        self.counted_faults.clear();
        self.server_error_rate = 0;
        self.applied_then_error_rate = 0;
        self.hold_answer = None;
        self.extra_latency = Duration::ZERO;
        self.validation_triggers.clear();
    }

    pub(super) fn latency(&self) -> Duration {
        self.config.latency + self.extra_latency
    }
}
