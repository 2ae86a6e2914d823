//! The operations, against the store. Requests reaching here passed authentication, faults,
//! rate limits and (when the documents are present) spec validation; the checks below are
//! HubSpot's own business rules, plus the shape checks the documents make, for runs without
//! them.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};

use super::routes::{Op, Route};
use super::server::Reply;
use super::state::{association_types, iso, Kind, PropertyDef, Record, State};
use super::{ASSOCIATION_BATCH_LIMIT, BATCH_LIMIT, BATCH_READ_WITH_HISTORY_LIMIT, PORTAL_ID};

/// Properties a contact read returns when none are requested (HubSpot's CRM search guide).
pub(super) const CONTACT_DEFAULT_PROPERTIES: &[&str] = &[
    "createdate",
    "email",
    "firstname",
    "hs_object_id",
    "lastmodifieddate",
    "lastname",
];

/// Properties a communication search returns when none are requested (HubSpot answers the
/// system properties of an engagement).
pub(super) const COMMUNICATION_DEFAULT_PROPERTIES: &[&str] =
    &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"];

/// HubSpot's allowed `hs_communication_channel_type` values (Communications API guide).
pub(super) const CHANNEL_TYPES: &[&str] = &["WHATS_APP", "LINKEDIN_MESSAGE", "SMS"];

/// The `inputs` array of a batch body.
fn inputs(body: &Value) -> Result<&Vec<Value>, Reply> {
    body.get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| Reply::validation("Invalid input JSON: `inputs` (an array) is required"))
}

fn too_many(limit: usize) -> Reply {
    Reply::validation(format!(
        "The maximum number of inputs supported in a batch is {limit}. Please reduce the number \
         of items and try again"
    ))
}

/// An array of strings (`properties`, `propertiesWithHistory`); absent is empty.
fn strings(value: Option<&Value>) -> Result<Vec<String>, Reply> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Reply::validation("Invalid input JSON: expected strings"))
            })
            .collect(),
        Some(_) => Err(Reply::validation("Invalid input JSON: expected an array")),
    }
}

/// An input's `properties`, every value a string (HubSpot's documents require it).
fn string_props(input: &Value) -> Result<BTreeMap<String, String>, Reply> {
    match input.get("properties") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(props)) => props
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(Reply::validation(format!(
                    "Invalid input JSON: property {k:?} must be a string, not {other}"
                ))),
            })
            .collect(),
        Some(_) => Err(Reply::validation(
            "Invalid input JSON: `properties` must be an object",
        )),
    }
}

/// One entry of HubSpot's "Property values were not valid" list.
fn invalid(name: &str, error: &str, message: String) -> Value {
    json!({
        "isValid": false,
        "message": message,
        "error": error,
        "name": name,
        "localizedErrorMessage": message,
    })
}

fn invalid_properties(entries: Vec<Value>) -> Reply {
    let errors = entries
        .iter()
        .map(|e| {
            json!({
                "message": e.get("message").cloned().unwrap_or(Value::Null),
                "code": e.get("error").cloned().unwrap_or(Value::Null),
                "context": {"propertyName": [e.get("name").cloned().unwrap_or(Value::Null)]},
            })
        })
        .collect();
    Reply::validation(format!(
        "Property values were not valid: {}",
        Value::Array(entries)
    ))
    .with_errors(errors)
}

fn non_unique(kind: Kind, property: &str) -> Reply {
    Reply::validation(format!(
        "Unable to perform update/upsert by non-unique {} property {property} in portal ID \
         {PORTAL_ID}",
        kind.type_id()
    ))
}

fn duplicate_ids(ids: Vec<String>) -> Reply {
    Reply::validation(format!(
        "Duplicate IDs found in batch input: [{}]. IDs must be unique",
        ids.join(", ")
    ))
    .with_context("ids", ids)
}

/// HubSpot accepts timestamps as epoch milliseconds or ISO 8601.
fn is_timestamp(value: &str) -> bool {
    (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
        || DateTime::parse_from_rfc3339(value).is_ok()
}

fn is_email(value: &str) -> bool {
    match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !value.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn batch_response(status: StatusCode, results: Vec<Value>, errors: Vec<Value>) -> Reply {
    let now = iso(Utc::now());
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": now,
        "completedAt": now,
    });
    if !errors.is_empty() {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
        return Reply::json(StatusCode::MULTI_STATUS, body);
    }
    Reply::json(status, body)
}

/// `409 CONFLICT` when `props` give a unique contact property a value another contact than
/// `target` holds.
fn unique_conflict(
    contacts: &BTreeMap<u64, Record>,
    unique: &[String],
    props: &BTreeMap<String, String>,
    target: Option<u64>,
) -> Result<(), Reply> {
    for name in unique {
        let Some(value) = props.get(name).filter(|v| !v.is_empty()) else {
            continue;
        };
        if let Some(other) = State::contact_by_unique(contacts, name, value) {
            if Some(other) != target {
                return Err(Reply::error(
                    StatusCode::CONFLICT,
                    "CONFLICT",
                    format!("Contact already exists. Existing ID: {other}"),
                ));
            }
        }
    }
    Ok(())
}

/// HubSpot's `StandardError` for records that were not found.
fn not_found_error(kind: Kind, verb: &str, ids: Vec<String>) -> Value {
    json!({
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": format!(
            "Could not {verb} some {} objects, they may be deleted or not exist. Check that ids \
             are valid.",
            kind.upper()
        ),
        "context": {"ids": ids},
        "errors": [],
        "links": {},
    })
}

impl State {
    pub(super) fn dispatch(
        &mut self,
        route: &Route,
        body: &Value,
        query: &[(String, String)],
    ) -> Reply {
        let result = match route.op {
            Op::ContactsUpsert => self.contacts_upsert(body),
            Op::ContactsBatchUpdate => self.contacts_batch_update(body),
            Op::ContactsSearch => self.search(Kind::Contact, body),
            Op::ContactsBatchRead => self.contacts_batch_read(body),
            Op::ContactsGdprDelete => self.contacts_gdpr_delete(body),
            Op::CommunicationsBatchArchive => self.batch_archive(Kind::Communication, body),
            Op::CommunicationsBatchCreate => self.engagements_create(Kind::Communication, body),
            Op::CommunicationsBatchUpdate => self.engagements_update(Kind::Communication, body),
            Op::CommunicationsSearch => self.search(Kind::Communication, body),
            Op::NotesBatchCreate => self.engagements_create(Kind::Note, body),
            Op::AssociationPut => self.association_put(route, body),
            Op::AssociationPutDefault => self.association_put_default(route),
            Op::AssociationBatchCreate => self.association_batch_create(route, body),
            Op::AssociationList => self.association_list(route, query),
            Op::PropertiesList => self.properties_list(route),
            Op::PropertyCreate => self.property_create(route, body),
            Op::PropertyGet => self.property_get(route),
            Op::OwnersList => Ok(self.owners_list(query)),
        };
        result.unwrap_or_else(|reply| reply)
    }

    /// HubSpot's per-property checks for a contact write.
    fn check_contact_props(&self, props: &BTreeMap<String, String>) -> Vec<Value> {
        let mut bad = Vec::new();
        for (name, value) in props {
            let Some(def) = self.contact_property(name) else {
                bad.push(invalid(
                    name,
                    "PROPERTY_DOESNT_EXIST",
                    format!("Property \"{name}\" does not exist"),
                ));
                continue;
            };
            if def.read_only || Kind::Contact.is_read_only(name) {
                bad.push(invalid(
                    name,
                    "READ_ONLY_VALUE",
                    format!("\"{name}\" is a read only property; its value cannot be set."),
                ));
                continue;
            }
            if value.is_empty() {
                continue;
            }
            if let Some(entry) = self.check_value(def, value) {
                bad.push(entry);
            }
        }
        bad
    }

    fn check_value(&self, def: &PropertyDef, value: &str) -> Option<Value> {
        let name = def.name.as_str();
        // HubSpot's own `email` (of contacts), not a custom property of that name elsewhere.
        if name == "email" && def.hubspot_defined && !is_email(value) {
            return Some(invalid(
                name,
                "INVALID_EMAIL",
                format!("Email address {value} is invalid"),
            ));
        }
        if name == "hubspot_owner_id" {
            return (!self.owners.iter().any(|o| o.id == value)).then(|| {
                invalid(
                    name,
                    "INVALID_OWNER_ID",
                    format!("{value} is not a valid owner id"),
                )
            });
        }
        if !def.options.is_empty() {
            let allowed: Vec<&str> = def.options.iter().map(|(_, v)| v.as_str()).collect();
            if let Some(wrong) = value.split(';').find(|v| !allowed.contains(v)) {
                return Some(invalid(
                    name,
                    "INVALID_OPTION",
                    format!("{wrong} was not one of the allowed options: {allowed:?}"),
                ));
            }
        }
        let ok = match def.type_.as_str() {
            "number" => value.parse::<f64>().is_ok(),
            "bool" => matches!(value, "true" | "false"),
            "datetime" => is_timestamp(value),
            "date" => is_timestamp(value) || NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok(),
            _ => true,
        };
        (!ok).then(|| {
            invalid(
                name,
                "INVALID_VALUE",
                format!("{value} is not a valid {} value", def.type_),
            )
        })
    }

    /// `POST /crm/v3/objects/contacts/batch/upsert`: create or update by a unique property.
    /// The batch is all-or-nothing.
    fn contacts_upsert(&mut self, body: &Value) -> Result<Reply, Reply> {
        struct Plan {
            id_property: String,
            id_value: String,
            props: BTreeMap<String, String>,
        }
        let inputs = inputs(body)?;
        if inputs.len() > BATCH_LIMIT {
            return Err(too_many(BATCH_LIMIT));
        }
        let mut plans = Vec::new();
        let mut seen = Vec::new();
        let mut duplicates = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let id_value = input
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| Reply::validation(format!("inputs[{i}].id is required")))?;
            let id_property = input
                .get("idProperty")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    Reply::validation(format!(
                        "inputs[{i}].idProperty is required: upsert identifies contacts by a \
                         unique property"
                    ))
                })?;
            if !self.is_defined(Kind::Contact, id_property) {
                return Err(invalid_properties(vec![invalid(
                    id_property,
                    "PROPERTY_DOESNT_EXIST",
                    format!("Property \"{id_property}\" does not exist"),
                )]));
            }
            if !self.is_unique_contact_property(id_property) {
                return Err(non_unique(Kind::Contact, id_property));
            }
            if id_value.is_empty() {
                return Err(Reply::validation(format!(
                    "inputs[{i}].id must not be empty"
                )));
            }
            let props = string_props(input)?;
            if let Some(given) = props.get(id_property) {
                let same = if id_property == "email" {
                    given.eq_ignore_ascii_case(id_value)
                } else {
                    given == id_value
                };
                if !same {
                    return Err(Reply::validation(format!(
                        "inputs[{i}]: properties.{id_property} ({given:?}) differs from id \
                         ({id_value:?})"
                    )));
                }
            }
            let key = if id_property == "email" {
                (id_property.to_owned(), id_value.to_ascii_lowercase())
            } else {
                (id_property.to_owned(), id_value.to_owned())
            };
            if seen.contains(&key) {
                if !duplicates.contains(&id_value.to_owned()) {
                    duplicates.push(id_value.to_owned());
                }
            } else {
                seen.push(key);
            }
            plans.push(Plan {
                id_property: id_property.to_owned(),
                id_value: id_value.to_owned(),
                props,
            });
        }
        if !duplicates.is_empty() {
            return Err(duplicate_ids(duplicates));
        }
        // The id is checked as a value of its property (an upsert by email needs an email).
        let bad: Vec<Value> = plans
            .iter()
            .flat_map(|p| {
                let mut checked = p.props.clone();
                checked
                    .entry(p.id_property.clone())
                    .or_insert_with(|| p.id_value.clone());
                self.check_contact_props(&checked)
            })
            .collect();
        if !bad.is_empty() {
            return Err(invalid_properties(bad));
        }

        let now = Utc::now();
        let unique = self.unique_contact_properties();
        let mut contacts = self.table(Kind::Contact).clone();
        let mut results = Vec::new();
        for plan in &plans {
            let existing = State::contact_by_unique(&contacts, &plan.id_property, &plan.id_value);
            unique_conflict(&contacts, &unique, &plan.props, existing)?;
            // A new contact takes the id as its value; an existing one keeps the value it has
            // (it matched), unless the input sets the property explicitly.
            let mut written = plan.props.clone();
            let (id, is_new) = match existing {
                Some(id) => (id, false),
                None => {
                    let id = self.fresh_id();
                    contacts.insert(id, Record::new(Kind::Contact, id, now));
                    written
                        .entry(plan.id_property.clone())
                        .or_insert_with(|| plan.id_value.clone());
                    (id, true)
                }
            };
            let Some(record) = contacts.get_mut(&id) else {
                continue;
            };
            record.write(Kind::Contact, &written, now, "API");
            let mut properties = serde_json::Map::new();
            for name in written.keys().map(String::as_str).chain([
                plan.id_property.as_str(),
                "hs_object_id",
                "createdate",
                "lastmodifieddate",
            ]) {
                if let Some(value) = record.props.get(name) {
                    properties.insert(name.to_owned(), json!(value));
                }
            }
            results.push(json!({
                "id": id.to_string(),
                "properties": properties,
                "createdAt": iso(record.created_at),
                "updatedAt": iso(record.updated_at),
                "archived": false,
                "new": is_new,
            }));
        }
        self.records.insert(Kind::Contact, contacts);
        Ok(batch_response(StatusCode::OK, results, Vec::new()))
    }

    /// `POST /crm/v3/objects/contacts/batch/update`, by record id or (with `idProperty`) by a
    /// unique property value. Properties are checked as for upsert, all-or-nothing; inputs whose
    /// contact does not exist are reported in a `207` while the others are updated, as for
    /// communications.
    fn contacts_batch_update(&mut self, body: &Value) -> Result<Reply, Reply> {
        struct Plan {
            id: String,
            id_property: Option<String>,
            props: BTreeMap<String, String>,
        }
        let inputs = inputs(body)?;
        if inputs.len() > BATCH_LIMIT {
            return Err(too_many(BATCH_LIMIT));
        }
        let mut plans = Vec::new();
        let mut seen = Vec::new();
        let mut duplicates = Vec::new();
        let mut bad = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let id = input
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| Reply::validation(format!("inputs[{i}].id is required")))?;
            let id_property = input
                .get("idProperty")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty());
            if let Some(p) = id_property {
                if !self.is_defined(Kind::Contact, p) {
                    return Err(invalid_properties(vec![invalid(
                        p,
                        "PROPERTY_DOESNT_EXIST",
                        format!("Property \"{p}\" does not exist"),
                    )]));
                }
                if !self.is_unique_contact_property(p) {
                    return Err(non_unique(Kind::Contact, p));
                }
            }
            let key = match id_property {
                Some("email") => ("email".to_owned(), id.to_ascii_lowercase()),
                Some(p) => (p.to_owned(), id.to_owned()),
                None => ("hs_object_id".to_owned(), id.to_owned()),
            };
            if seen.contains(&key) {
                if !duplicates.contains(&id.to_owned()) {
                    duplicates.push(id.to_owned());
                }
            } else {
                seen.push(key);
            }
            let props = string_props(input)?;
            bad.extend(self.check_contact_props(&props));
            plans.push(Plan {
                id: id.to_owned(),
                id_property: id_property.map(str::to_owned),
                props,
            });
        }
        if !duplicates.is_empty() {
            return Err(duplicate_ids(duplicates));
        }
        if !bad.is_empty() {
            return Err(invalid_properties(bad));
        }

        let now = Utc::now();
        let unique = self.unique_contact_properties();
        let mut contacts = self.table(Kind::Contact).clone();
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for plan in &plans {
            let target = match &plan.id_property {
                Some(p) => State::contact_by_unique(&contacts, p, &plan.id),
                None => plan
                    .id
                    .parse::<u64>()
                    .ok()
                    .filter(|id| contacts.contains_key(id)),
            };
            let Some(id) = target else {
                missing.push(plan.id.clone());
                continue;
            };
            unique_conflict(&contacts, &unique, &plan.props, Some(id))?;
            let Some(record) = contacts.get_mut(&id) else {
                continue;
            };
            record.write(Kind::Contact, &plan.props, now, "API");
            let mut properties = serde_json::Map::new();
            for name in plan
                .props
                .keys()
                .map(String::as_str)
                .chain(plan.id_property.as_deref())
                .chain(["hs_object_id", "createdate", "lastmodifieddate"])
            {
                if let Some(value) = record.props.get(name) {
                    properties.insert(name.to_owned(), json!(value));
                }
            }
            results.push(json!({
                "id": id.to_string(),
                "properties": properties,
                "createdAt": iso(record.created_at),
                "updatedAt": iso(record.updated_at),
                "archived": false,
            }));
        }
        self.records.insert(Kind::Contact, contacts);
        let errors = if missing.is_empty() {
            Vec::new()
        } else {
            vec![not_found_error(Kind::Contact, "update", missing)]
        };
        Ok(batch_response(StatusCode::OK, results, errors))
    }

    /// `POST /crm/v3/objects/contacts/batch/read`, by record id or by a unique property.
    fn contacts_batch_read(&mut self, body: &Value) -> Result<Reply, Reply> {
        let inputs = inputs(body)?;
        if inputs.len() > BATCH_LIMIT {
            return Err(too_many(BATCH_LIMIT));
        }
        let properties = strings(body.get("properties"))?;
        let history = strings(body.get("propertiesWithHistory"))?;
        if !history.is_empty() && inputs.len() > BATCH_READ_WITH_HISTORY_LIMIT {
            return Err(Reply::validation(format!(
                "The maximum number of inputs supported in a batch request for property \
                 histories is {BATCH_READ_WITH_HISTORY_LIMIT}. Please reduce the number of items \
                 and try again"
            )));
        }
        let id_property = body
            .get("idProperty")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty());
        if let Some(p) = id_property {
            if !self.is_unique_contact_property(p) {
                return Err(non_unique(Kind::Contact, p));
            }
        }
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for input in inputs {
            let Some(id) = input.get("id").and_then(Value::as_str) else {
                return Err(Reply::validation("inputs[].id is required"));
            };
            let hit = match id_property {
                Some(p) => State::contact_by_unique(self.table(Kind::Contact), p, id),
                None => self.exists(Kind::Contact, id),
            };
            match hit {
                Some(hit) => {
                    if !found.contains(&hit) {
                        found.push(hit);
                    }
                }
                None => missing.push(id.to_owned()),
            }
        }
        let defined = |name: &str| self.is_defined(Kind::Contact, name);
        let results = found
            .iter()
            .filter_map(|id| self.table(Kind::Contact).get(id).map(|r| (id, r)))
            .map(|(id, record)| {
                let mut object =
                    record.to_json(*id, &properties, CONTACT_DEFAULT_PROPERTIES, &defined);
                if !history.is_empty() {
                    object["propertiesWithHistory"] = record.history_json(&history);
                }
                object
            })
            .collect();
        let errors = if missing.is_empty() {
            Vec::new()
        } else {
            vec![not_found_error(Kind::Contact, "get", missing)]
        };
        Ok(batch_response(StatusCode::OK, results, errors))
    }

    /// `POST /crm/v3/objects/contacts/gdpr-delete`: the contact (by id, or by a unique property
    /// named in `idProperty`) and its associations are gone at once — HubSpot purges within 30
    /// days, and nothing can restore it meanwhile. `404` when there is no such contact (HubSpot
    /// blocklists an unknown e-mail address; the fake keeps no blocklist).
    fn contacts_gdpr_delete(&mut self, body: &Value) -> Result<Reply, Reply> {
        let object_id = body
            .get("objectId")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Reply::validation("Invalid input JSON: `objectId` is required"))?;
        let id_property = body
            .get("idProperty")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty());
        if let Some(p) = id_property {
            if !self.is_unique_contact_property(p) {
                return Err(non_unique(Kind::Contact, p));
            }
        }
        let hit = match id_property {
            Some(p) => State::contact_by_unique(self.table(Kind::Contact), p, object_id),
            None => self.exists(Kind::Contact, object_id),
        };
        let Some(id) = hit else {
            return Err(Reply::error(
                StatusCode::NOT_FOUND,
                "OBJECT_NOT_FOUND",
                format!("No CONTACT with id {object_id} exists"),
            ));
        };
        self.remove(Kind::Contact, id);
        Ok(Reply::no_content())
    }

    /// `POST /crm/v3/objects/{communications}/batch/archive`: the records and their
    /// associations are gone (HubSpot keeps them restorable for 90 days; the fake forgets them).
    /// Ids that do not exist are skipped: HubSpot answers `204` all the same.
    fn batch_archive(&mut self, kind: Kind, body: &Value) -> Result<Reply, Reply> {
        let inputs = inputs(body)?;
        if inputs.len() > BATCH_LIMIT {
            return Err(too_many(BATCH_LIMIT));
        }
        let mut ids = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let id = input
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| Reply::validation(format!("inputs[{i}].id is required")))?;
            ids.push(id.to_owned());
        }
        for id in ids {
            if let Some(id) = self.exists(kind, &id) {
                self.remove(kind, id);
            }
        }
        Ok(Reply::no_content())
    }

    /// HubSpot's checks for a communication or note write.
    fn check_engagement_props(
        &self,
        kind: Kind,
        props: &BTreeMap<String, String>,
        creating: bool,
    ) -> Vec<Value> {
        let mut bad = Vec::new();
        let mut required = vec!["hs_timestamp"];
        if kind == Kind::Communication {
            required.extend([
                "hs_communication_channel_type",
                "hs_communication_logged_from",
            ]);
        }
        if creating {
            for name in required {
                if props.get(name).is_none_or(|v| v.is_empty()) {
                    bad.push(invalid(
                        name,
                        "REQUIRED_FIELD",
                        format!("{name} is required to create a {}", kind.upper()),
                    ));
                }
            }
        }
        let defs = self.defs(kind);
        for (name, value) in props {
            // Types that keep definitions accept only defined properties.
            let def = defs.and_then(|d| d.get(name));
            if defs.is_some() && def.is_none() {
                bad.push(invalid(
                    name,
                    "PROPERTY_DOESNT_EXIST",
                    format!("Property \"{name}\" does not exist"),
                ));
                continue;
            }
            if kind.is_read_only(name) || def.is_some_and(|d| d.read_only) {
                bad.push(invalid(
                    name,
                    "READ_ONLY_VALUE",
                    format!("\"{name}\" is a read only property; its value cannot be set."),
                ));
                continue;
            }
            if value.is_empty() {
                continue;
            }
            let entry = match name.as_str() {
                "hs_timestamp" if !is_timestamp(value) => Some(invalid(
                    name,
                    "INVALID_DATE",
                    format!(
                        "{value} is not a valid timestamp (epoch milliseconds or ISO 8601 UTC)"
                    ),
                )),
                "hs_communication_channel_type"
                    if kind == Kind::Communication && !CHANNEL_TYPES.contains(&value.as_str()) =>
                {
                    Some(invalid(
                        name,
                        "INVALID_OPTION",
                        format!("{value} was not one of the allowed options: {CHANNEL_TYPES:?}"),
                    ))
                }
                "hs_communication_logged_from" if kind == Kind::Communication && value != "CRM" => {
                    Some(invalid(
                        name,
                        "INVALID_OPTION",
                        format!("{value} was not one of the allowed options: [\"CRM\"]"),
                    ))
                }
                "hubspot_owner_id" if !self.owners.iter().any(|o| &o.id == value) => Some(invalid(
                    name,
                    "INVALID_OWNER_ID",
                    format!("{value} is not a valid owner id"),
                )),
                // Custom properties (and the built-ins above, once their own checks passed)
                // are checked against their definition.
                _ => def.and_then(|d| self.check_value(d, value)),
            };
            bad.extend(entry);
        }
        bad
    }

    /// The contacts an engagement input associates with, checked.
    fn engagement_associations(
        &self,
        kind: Kind,
        index: usize,
        input: &Value,
        bad: &mut Vec<String>,
    ) -> Vec<(u64, i64, String)> {
        let expected = association_types(kind, Kind::Contact).map(|(forward, _)| forward);
        let mut out = Vec::new();
        let Some(associations) = input.get("associations").and_then(Value::as_array) else {
            return out;
        };
        for (j, association) in associations.iter().enumerate() {
            let to = association
                .pointer("/to/id")
                .and_then(Value::as_str)
                .unwrap_or("");
            let Some(contact) = self.exists(Kind::Contact, to) else {
                bad.push(format!(
                    "inputs[{index}].associations[{j}]: no CONTACT with id {to:?} exists"
                ));
                continue;
            };
            let types = association
                .get("types")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if types.is_empty() {
                bad.push(format!(
                    "inputs[{index}].associations[{j}]: at least one association type is required"
                ));
            }
            for spec in types {
                let category = spec
                    .get("associationCategory")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let type_id = spec.get("associationTypeId").and_then(Value::as_i64);
                if category == "HUBSPOT_DEFINED" && type_id.is_some() && type_id == expected {
                    out.push((contact, type_id.unwrap_or_default(), category.to_owned()));
                } else {
                    bad.push(format!(
                        "inputs[{index}].associations[{j}]: {category} {} is not an association \
                         type from {} to CONTACT (expected HUBSPOT_DEFINED {})",
                        type_id.map_or_else(|| "?".to_owned(), |t| t.to_string()),
                        kind.upper(),
                        expected.map_or_else(|| "?".to_owned(), |t| t.to_string()),
                    ));
                }
            }
        }
        out
    }

    /// `POST /crm/v3/objects/{communications,notes}/batch/create`; all-or-nothing.
    fn engagements_create(&mut self, kind: Kind, body: &Value) -> Result<Reply, Reply> {
        let inputs = inputs(body)?;
        if inputs.len() > BATCH_LIMIT {
            return Err(too_many(BATCH_LIMIT));
        }
        let mut planned = Vec::new();
        let mut bad_props = Vec::new();
        let mut bad_associations = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let props = string_props(input)?;
            bad_props.extend(self.check_engagement_props(kind, &props, true));
            let associations = self.engagement_associations(kind, i, input, &mut bad_associations);
            planned.push((props, associations));
        }
        if !bad_props.is_empty() {
            return Err(invalid_properties(bad_props));
        }
        if !bad_associations.is_empty() {
            return Err(Reply::validation(format!(
                "One or more associations are invalid: {}",
                bad_associations.join("; ")
            ))
            .with_errors(
                bad_associations
                    .iter()
                    .map(|m| json!({"message": m, "code": "INVALID_ASSOCIATION"}))
                    .collect(),
            ));
        }
        let now = Utc::now();
        let mut results = Vec::new();
        for (props, associations) in planned {
            let id = self.create(kind, &props, now, "API");
            for (contact, type_id, category) in associations {
                self.associate((kind, id), (Kind::Contact, contact), type_id, &category);
            }
            if let Some(record) = self.table(kind).get(&id) {
                let all: Vec<String> = record.props.keys().cloned().collect();
                results.push(record.to_json(id, &all, &[], &|_| false));
            }
        }
        Ok(batch_response(StatusCode::CREATED, results, Vec::new()))
    }

    /// `POST /crm/v3/objects/communications/batch/update`, by record id.
    fn engagements_update(&mut self, kind: Kind, body: &Value) -> Result<Reply, Reply> {
        let inputs = inputs(body)?;
        if inputs.len() > BATCH_LIMIT {
            return Err(too_many(BATCH_LIMIT));
        }
        let mut planned = Vec::new();
        let mut seen = Vec::new();
        let mut duplicates = Vec::new();
        let mut bad = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let id = input
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| Reply::validation(format!("inputs[{i}].id is required")))?;
            if let Some(p) = input.get("idProperty").and_then(Value::as_str) {
                return Err(non_unique(kind, p));
            }
            if seen.contains(&id) {
                if !duplicates.contains(&id.to_owned()) {
                    duplicates.push(id.to_owned());
                }
            } else {
                seen.push(id);
            }
            let props = string_props(input)?;
            bad.extend(self.check_engagement_props(kind, &props, false));
            planned.push((id.to_owned(), props));
        }
        if !duplicates.is_empty() {
            return Err(duplicate_ids(duplicates));
        }
        if !bad.is_empty() {
            return Err(invalid_properties(bad));
        }
        let now = Utc::now();
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for (id, props) in planned {
            let Some(id) = self.exists(kind, &id) else {
                missing.push(id);
                continue;
            };
            if let Some(record) = self.table_mut(kind).get_mut(&id) {
                record.write(kind, &props, now, "API");
                let all: Vec<String> = record.props.keys().cloned().collect();
                results.push(record.to_json(id, &all, &[], &|_| false));
            }
        }
        let errors = if missing.is_empty() {
            Vec::new()
        } else {
            vec![not_found_error(kind, "update", missing)]
        };
        Ok(batch_response(StatusCode::OK, results, errors))
    }

    fn kind_of(text: &str) -> Result<Kind, Reply> {
        Kind::parse(text).ok_or_else(|| {
            Reply::validation(format!(
                "Unable to infer object type from: {text} (the fake knows contacts, \
                 communications and notes)"
            ))
        })
    }

    fn existing(&self, kind: Kind, id: &str) -> Result<u64, Reply> {
        self.exists(kind, id).ok_or_else(|| {
            Reply::error(
                StatusCode::NOT_FOUND,
                "OBJECT_NOT_FOUND",
                format!("No {} with id {id} exists", kind.upper()),
            )
        })
    }

    /// Checks association specs between two kinds; returns the accepted `(type id, category)`.
    fn check_specs(from: Kind, to: Kind, specs: &[Value]) -> Result<Vec<(i64, String)>, String> {
        let Some((forward, _)) = association_types(from, to) else {
            return Err(format!(
                "{} and {} cannot be associated in the fake",
                from.upper(),
                to.upper()
            ));
        };
        if specs.is_empty() {
            return Err("at least one association type is required".to_owned());
        }
        specs
            .iter()
            .map(|spec| {
                let category = spec
                    .get("associationCategory")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let type_id = spec.get("associationTypeId").and_then(Value::as_i64);
                match type_id {
                    Some(t) if t == forward && category == "HUBSPOT_DEFINED" => {
                        Ok((t, category.to_owned()))
                    }
                    _ => Err(format!(
                        "{category} {} is not a valid association type from {} to {} \
                         (HUBSPOT_DEFINED {forward})",
                        type_id.map_or_else(|| "?".to_owned(), |t| t.to_string()),
                        from.upper(),
                        to.upper()
                    )),
                }
            })
            .collect()
    }

    fn labels_between(from: Kind, from_id: u64, to: Kind, to_id: u64) -> Value {
        json!({
            "fromObjectTypeId": from.type_id(),
            "fromObjectId": from_id.to_string(),
            "toObjectTypeId": to.type_id(),
            "toObjectId": to_id.to_string(),
            "labels": [],
        })
    }

    /// `PUT /crm/v4/objects/{objectType}/{objectId}/associations/{toObjectType}/{toObjectId}`.
    fn association_put(&mut self, route: &Route, body: &Value) -> Result<Reply, Reply> {
        let from = Self::kind_of(route.param("objectType"))?;
        let to = Self::kind_of(route.param("toObjectType"))?;
        let from_id = self.existing(from, route.param("objectId"))?;
        let to_id = self.existing(to, route.param("toObjectId"))?;
        let specs = body.as_array().cloned().unwrap_or_default();
        let accepted = Self::check_specs(from, to, &specs).map_err(Reply::validation)?;
        for (type_id, category) in accepted {
            self.associate((from, from_id), (to, to_id), type_id, &category);
        }
        Ok(Reply::json(
            StatusCode::CREATED,
            Self::labels_between(from, from_id, to, to_id),
        ))
    }

    /// `PUT /crm/v4/objects/{fromObjectType}/{fromObjectId}/associations/default/…`.
    fn association_put_default(&mut self, route: &Route) -> Result<Reply, Reply> {
        let from = Self::kind_of(route.param("fromObjectType"))?;
        let to = Self::kind_of(route.param("toObjectType"))?;
        let from_id = self.existing(from, route.param("fromObjectId"))?;
        let to_id = self.existing(to, route.param("toObjectId"))?;
        let Some((forward, _)) = association_types(from, to) else {
            return Err(Reply::validation(format!(
                "{} and {} cannot be associated in the fake",
                from.upper(),
                to.upper()
            )));
        };
        self.associate((from, from_id), (to, to_id), forward, "HUBSPOT_DEFINED");
        Ok(batch_response(
            StatusCode::OK,
            vec![json!({
                "from": {"id": from_id.to_string()},
                "to": {"id": to_id.to_string()},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": forward,
                },
            })],
            Vec::new(),
        ))
    }

    /// `POST /crm/v4/associations/{fromObjectType}/{toObjectType}/batch/create`; all-or-nothing.
    fn association_batch_create(&mut self, route: &Route, body: &Value) -> Result<Reply, Reply> {
        let from = Self::kind_of(route.param("fromObjectType"))?;
        let to = Self::kind_of(route.param("toObjectType"))?;
        let inputs = inputs(body)?;
        if inputs.len() > ASSOCIATION_BATCH_LIMIT {
            return Err(too_many(ASSOCIATION_BATCH_LIMIT));
        }
        let mut planned = Vec::new();
        let mut bad = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let from_id = input
                .pointer("/from/id")
                .and_then(Value::as_str)
                .unwrap_or("");
            let to_id = input
                .pointer("/to/id")
                .and_then(Value::as_str)
                .unwrap_or("");
            let (Some(from_id), Some(to_id)) = (self.exists(from, from_id), self.exists(to, to_id))
            else {
                bad.push(format!(
                    "inputs[{i}]: {} {from_id:?} or {} {to_id:?} does not exist",
                    from.upper(),
                    to.upper()
                ));
                continue;
            };
            let specs = input
                .get("types")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            match Self::check_specs(from, to, &specs) {
                Ok(accepted) => planned.push((from_id, to_id, accepted)),
                Err(e) => bad.push(format!("inputs[{i}]: {e}")),
            }
        }
        if !bad.is_empty() {
            return Err(Reply::validation(format!(
                "One or more associations are invalid: {}",
                bad.join("; ")
            )));
        }
        let mut results = Vec::new();
        for (from_id, to_id, accepted) in planned {
            for (type_id, category) in accepted {
                self.associate((from, from_id), (to, to_id), type_id, &category);
            }
            results.push(Self::labels_between(from, from_id, to, to_id));
        }
        Ok(batch_response(StatusCode::CREATED, results, Vec::new()))
    }

    /// `GET /crm/v4/objects/{objectType}/{objectId}/associations/{toObjectType}`.
    fn association_list(
        &mut self,
        route: &Route,
        query: &[(String, String)],
    ) -> Result<Reply, Reply> {
        let from = Self::kind_of(route.param("objectType"))?;
        let to = Self::kind_of(route.param("toObjectType"))?;
        let from_id = self.existing(from, route.param("objectId"))?;
        let mut grouped: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
        for assoc in self
            .associations
            .iter()
            .filter(|a| a.from == (from, from_id) && a.to.0 == to)
        {
            grouped.entry(assoc.to.1).or_default().push(json!({
                "category": assoc.category,
                "typeId": assoc.type_id,
            }));
        }
        let all: Vec<Value> = grouped
            .into_iter()
            .map(|(to_id, types)| json!({"toObjectId": to_id.to_string(), "associationTypes": types}))
            .collect();
        Ok(Reply::json(StatusCode::OK, page(all, query, 500)))
    }

    /// The object type of a properties request, if it keeps properties (contacts,
    /// communications); `501` otherwise.
    fn property_kind(&self, route: &Route) -> Result<Kind, Reply> {
        match Kind::parse(route.param("objectType")) {
            Some(kind) if self.defs(kind).is_some() => Ok(kind),
            _ => Err(Reply::error(
                StatusCode::NOT_IMPLEMENTED,
                "NOT_IMPLEMENTED",
                format!(
                    "wacrm HubSpot fake: properties of {:?} are not kept (contacts and \
                     communications only)",
                    route.param("objectType")
                ),
            )),
        }
    }

    /// `GET /crm/v3/properties/{contacts,communications}`.
    fn properties_list(&mut self, route: &Route) -> Result<Reply, Reply> {
        let kind = self.property_kind(route)?;
        let results: Vec<Value> = self
            .defs(kind)
            .into_iter()
            .flat_map(|d| d.values())
            .map(PropertyDef::to_json)
            .collect();
        Ok(Reply::json(StatusCode::OK, json!({"results": results})))
    }

    /// `GET /crm/v3/properties/{contacts,communications}/{propertyName}`.
    fn property_get(&mut self, route: &Route) -> Result<Reply, Reply> {
        let kind = self.property_kind(route)?;
        let name = route.param("propertyName");
        match self.defs(kind).and_then(|d| d.get(name)) {
            Some(def) => Ok(Reply::json(StatusCode::OK, def.to_json())),
            None => Err(Reply::error(
                StatusCode::NOT_FOUND,
                "OBJECT_NOT_FOUND",
                format!(
                    "Unable to find property {name} for object type {}",
                    kind.type_id()
                ),
            )),
        }
    }

    /// `POST /crm/v3/properties/{contacts,communications}`. `hasUniqueValue` is kept and
    /// echoed for both, but enforced on contacts only.
    fn property_create(&mut self, route: &Route, body: &Value) -> Result<Reply, Reply> {
        let kind = self.property_kind(route)?;
        let field = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or("");
        let name = field("name");
        for required in ["name", "label", "type", "fieldType", "groupName"] {
            if field(required).is_empty() {
                return Err(Reply::validation(format!("{required} is required")));
            }
        }
        let mut chars = name.chars();
        let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !well_formed {
            return Err(Reply::validation(format!(
                "Property name {name:?} is invalid: use lower case letters, digits and \
                 underscores, starting with a letter"
            )));
        }
        if self.is_defined(kind, name) {
            return Err(Reply::error(
                StatusCode::CONFLICT,
                "OBJECT_ALREADY_EXISTS",
                format!("Property named '{name}' already exists."),
            ));
        }
        let options: Vec<(String, String)> = body
            .get("options")
            .and_then(Value::as_array)
            .map(|os| {
                os.iter()
                    .filter_map(|o| {
                        Some((
                            o.get("label")?.as_str()?.to_owned(),
                            o.get("value")?.as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if field("type") == "enumeration" && options.is_empty() && field("fieldType") != "select" {
            return Err(Reply::validation(format!(
                "Property {name:?} of type enumeration needs options"
            )));
        }
        let mut extra = serde_json::Map::new();
        if let Value::Object(given) = body {
            for key in [
                "hidden",
                "formField",
                "displayOrder",
                "textDisplayHint",
                "numberDisplayHint",
            ] {
                if let Some(v) = given.get(key) {
                    extra.insert(key.to_owned(), v.clone());
                }
            }
        }
        let def = PropertyDef {
            name: name.to_owned(),
            label: field("label").to_owned(),
            type_: field("type").to_owned(),
            field_type: field("fieldType").to_owned(),
            group_name: field("groupName").to_owned(),
            description: field("description").to_owned(),
            has_unique_value: body
                .get("hasUniqueValue")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            hubspot_defined: false,
            read_only: false,
            calculated: false,
            options,
            extra,
            created_at: Utc::now(),
        };
        let out = def.to_json();
        self.properties
            .entry(kind)
            .or_default()
            .insert(name.to_owned(), def);
        Ok(Reply::json(StatusCode::CREATED, out))
    }

    /// `GET /crm/v3/owners`.
    fn owners_list(&mut self, query: &[(String, String)]) -> Reply {
        let email = query.iter().find(|(k, _)| k == "email").map(|(_, v)| v);
        let all: Vec<Value> = self
            .owners
            .iter()
            .filter(|o| email.is_none_or(|e| o.email.eq_ignore_ascii_case(e)))
            .map(super::state::Owner::to_json)
            .collect();
        Reply::json(StatusCode::OK, page(all, query, 100))
    }
}

/// `{"results": …, "paging": {"next": {"after": …}}}` from `limit` and `after` (an offset).
fn page(all: Vec<Value>, query: &[(String, String)], default_limit: usize) -> Value {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let limit = get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(default_limit);
    let after = get("after")
        .and_then(|a| a.parse::<usize>().ok())
        .unwrap_or(0);
    let total = all.len();
    let results: Vec<Value> = all.into_iter().skip(after).take(limit).collect();
    let mut body = json!({"results": results});
    if after + limit < total {
        let next = (after + limit).to_string();
        body["paging"] = json!({"next": {"after": next, "link": format!("?after={next}")}});
    }
    body
}
