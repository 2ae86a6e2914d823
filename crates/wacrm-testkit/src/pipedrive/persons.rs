//! v2 persons: `GET /api/v2/persons` (cursor pagination and filters), `POST /api/v2/persons`,
//! `PATCH /api/v2/persons/{id}`.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::server::{Call, Reply};
use super::state::{Contact, Person, State, DEFAULT_LABEL};

/// At most this many ids in `ids`.
const MAX_IDS: usize = 100;
/// At most this many keys in `custom_fields`.
const MAX_CUSTOM_FIELD_KEYS: usize = 15;
/// The longest value of a `varchar`, `varchar_auto` or `phone` field.
const MAX_VARCHAR: usize = 255;

/// The fields of a `POST`/`PATCH` body the fake stores, checked before anything is written.
#[derive(Default)]
struct PersonWrite {
    name: Option<String>,
    phones: Option<Vec<Contact>>,
    emails: Option<Vec<Contact>>,
    custom_fields: Map<String, Value>,
    owner_id: Option<i64>,
    org_id: Option<i64>,
    visible_to: Option<i64>,
    label_ids: Option<Vec<i64>>,
}

/// Where a page of `GET /persons` ends; opaque to clients (hex of this JSON).
#[derive(Debug, PartialEq)]
struct Cursor {
    sort_by: String,
    direction: String,
    value: i64,
    id: i64,
}

impl Cursor {
    fn encode(&self) -> String {
        json!({"field": self.sort_by, "dir": self.direction, "value": self.value, "id": self.id})
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn decode(text: &str) -> Option<Cursor> {
        if !text.len().is_multiple_of(2) || !text.is_ascii() {
            return None;
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        Some(Cursor {
            sort_by: value.get("field")?.as_str()?.to_owned(),
            direction: value.get("dir")?.as_str()?.to_owned(),
            value: value.get("value")?.as_i64()?,
            id: value.get("id")?.as_i64()?,
        })
    }
}

/// The value `sort_by` orders a person by.
fn sort_value(person: &Person, sort_by: &str) -> i64 {
    match sort_by {
        "update_time" => person.update_time.timestamp_micros(),
        "add_time" => person.add_time.timestamp_micros(),
        _ => person.id,
    }
}

fn rfc3339(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl State {
    /// `GET /persons`.
    pub(super) fn persons_list(&mut self, call: &Call<'_>) -> Reply {
        match self.list_persons(call) {
            Ok(reply) | Err(reply) => reply,
        }
    }

    fn list_persons(&mut self, call: &Call<'_>) -> Result<Reply, Reply> {
        let limit = self.limit(call)?;
        if call.query("filter_id").is_some() {
            return Err(self.violation(call, "?filter_id: the fake does not implement filters"));
        }
        let ids = match call.query("ids") {
            None => None,
            Some(text) => {
                let ids: Option<Vec<i64>> = text
                    .split(',')
                    .map(|id| id.trim().parse::<i64>().ok())
                    .collect();
                match ids {
                    Some(ids) if ids.len() <= MAX_IDS => Some(ids),
                    Some(ids) => {
                        let line = format!("?ids: {} ids, at most {MAX_IDS} allowed", ids.len());
                        return Err(self.violation(call, line));
                    }
                    None => {
                        let line = format!("?ids: {text:?} is not a comma-separated list of ids");
                        return Err(self.violation(call, line));
                    }
                }
            }
        };
        let mut bounds = [None, None];
        for (slot, name) in bounds.iter_mut().zip(["updated_since", "updated_until"]) {
            if let Some(text) = call.query(name) {
                match rfc3339(text) {
                    Some(time) => *slot = Some(time),
                    None => {
                        let line = format!("?{name}: {text:?} is not an RFC 3339 time");
                        return Err(self.violation(call, line));
                    }
                }
            }
        }
        let [since, until] = bounds;
        let sort_by = call.query("sort_by").unwrap_or("id").to_owned();
        let direction = call.query("sort_direction").unwrap_or("asc").to_owned();
        if !["id", "update_time", "add_time"].contains(&sort_by.as_str())
            || !["asc", "desc"].contains(&direction.as_str())
        {
            let line = format!("?sort_by/sort_direction: {sort_by:?} {direction:?} not supported");
            return Err(self.violation(call, line));
        }
        let only: Option<Vec<String>> = call.query("custom_fields").map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect()
        });
        if let Some(keys) = &only {
            if keys.len() > MAX_CUSTOM_FIELD_KEYS {
                let line = format!(
                    "?custom_fields: {} keys, at most {MAX_CUSTOM_FIELD_KEYS} allowed",
                    keys.len()
                );
                return Err(self.violation(call, line));
            }
        }
        let owner_id = call.query("owner_id").and_then(|t| t.parse::<i64>().ok());
        let org_id = call.query("org_id").and_then(|t| t.parse::<i64>().ok());
        let cursor = match call.query("cursor") {
            None => None,
            Some(text) => match Cursor::decode(text) {
                Some(c) if c.sort_by == sort_by && c.direction == direction => Some(c),
                Some(_) => {
                    let line = "?cursor: the cursor belongs to another sort_by/sort_direction";
                    return Err(self.violation(call, line));
                }
                None => {
                    let line = format!("?cursor: {text:?} is not a cursor the fake handed out");
                    return Err(self.violation(call, line));
                }
            },
        };

        let mut keyed: Vec<(i64, &Person)> = self
            .persons
            .values()
            .filter(|p| ids.as_ref().is_none_or(|ids| ids.contains(&p.id)))
            .filter(|p| since.is_none_or(|t| p.update_time >= t))
            .filter(|p| until.is_none_or(|t| p.update_time < t))
            .filter(|p| owner_id.is_none_or(|o| p.owner_id == o))
            .filter(|p| org_id.is_none_or(|o| p.org_id == Some(o)))
            .map(|p| (sort_value(p, &sort_by), p))
            .collect();
        keyed.sort_by_key(|(value, p)| (*value, p.id));
        if direction == "desc" {
            keyed.reverse();
        }
        if let Some(cursor) = &cursor {
            let at = (cursor.value, cursor.id);
            keyed.retain(|(value, p)| {
                if direction == "desc" {
                    (*value, p.id) < at
                } else {
                    (*value, p.id) > at
                }
            });
        }
        let more = keyed.len() > limit;
        keyed.truncate(limit);
        let next_cursor = match keyed.last() {
            Some((value, p)) if more => Value::from(
                Cursor {
                    sort_by,
                    direction,
                    value: *value,
                    id: p.id,
                }
                .encode(),
            ),
            _ => Value::Null,
        };
        let data: Vec<Value> = keyed
            .iter()
            .map(|(_, p)| self.person_json(p, only.as_deref()))
            .collect();
        Ok(Reply::success(
            Value::Array(data),
            json!({ "next_cursor": next_cursor }),
        ))
    }

    /// `POST /persons`.
    pub(super) fn person_create(&mut self, call: &Call<'_>) -> Reply {
        let write = match self.person_write(call) {
            Ok(write) => write,
            Err(reply) => return reply,
        };
        let Some(name) = write.name.clone() else {
            return self.violation(call, "name: required (the person's name)");
        };
        let id = self.new_person(&name).id;
        self.apply(id, write);
        self.person_reply(id)
    }

    /// `PATCH /persons/{id}`: `phones`/`emails` replace the lists, `custom_fields` merges
    /// (a `null` value clears the field).
    pub(super) fn person_patch(&mut self, call: &Call<'_>) -> Reply {
        let id = call.id();
        if !self.persons.contains_key(&id) {
            return Reply::not_found();
        }
        let write = match self.person_write(call) {
            Ok(write) => write,
            Err(reply) => return reply,
        };
        self.apply(id, write);
        self.person_reply(id)
    }

    /// `DELETE /persons/{id}`: Pipedrive marks the person deleted and purges it after 30 days;
    /// the fake forgets it at once (a later read, update or delete of it is a 404). The person's
    /// notes stay, as nothing in Pipedrive's documents says they go with it: a client that
    /// erases must delete them itself.
    pub(super) fn person_delete(&mut self, call: &Call<'_>) -> Reply {
        let id = call.id();
        if self.persons.remove(&id).is_none() {
            return Reply::not_found();
        }
        Reply::success(json!({ "id": id }), Value::Null)
    }

    fn person_reply(&self, id: i64) -> Reply {
        match self.persons.get(&id) {
            Some(person) => Reply::success(self.person_json(person, None), Value::Null),
            None => Reply::not_found(),
        }
    }

    /// Writes `write` to the person and moves its `update_time`.
    fn apply(&mut self, id: i64, write: PersonWrite) {
        let now = self.now();
        let Some(person) = self.persons.get_mut(&id) else {
            return;
        };
        if let Some(name) = write.name {
            person.name = name;
        }
        if let Some(phones) = write.phones {
            person.phones = phones;
        }
        if let Some(emails) = write.emails {
            person.emails = emails;
        }
        for (key, value) in write.custom_fields {
            if value.is_null() {
                person.custom_fields.remove(&key);
            } else {
                person.custom_fields.insert(key, value);
            }
        }
        if let Some(owner_id) = write.owner_id {
            person.owner_id = owner_id;
        }
        if let Some(org_id) = write.org_id {
            person.org_id = Some(org_id);
        }
        if let Some(visible_to) = write.visible_to {
            person.visible_to = visible_to;
        }
        if let Some(label_ids) = write.label_ids {
            person.label_ids = label_ids;
        }
        person.update_time = now;
    }

    /// Reads and checks a person body (beyond the schema, which the pipeline checked).
    fn person_write(&mut self, call: &Call<'_>) -> Result<PersonWrite, Reply> {
        let body = call.body;
        let mut write = PersonWrite::default();
        if let Some(name) = body.get("name") {
            match name.as_str().map(str::trim) {
                Some(name) if !name.is_empty() => write.name = Some(name.to_owned()),
                _ => return Err(self.violation(call, "name: must be a non-empty string")),
            }
        }
        write.phones = self.contacts(call, "phones")?;
        write.emails = self.contacts(call, "emails")?;
        match body.get("custom_fields") {
            None => {}
            Some(Value::Object(values)) => {
                for (key, value) in values {
                    if let Err(line) = self.check_custom_value(key, value) {
                        return Err(self.violation(call, format!("custom_fields.{key}: {line}")));
                    }
                }
                write.custom_fields = values.clone();
            }
            Some(_) => return Err(self.violation(call, "custom_fields: must be an object")),
        }
        let integer = |name: &str| body.get(name).and_then(Value::as_i64);
        write.owner_id = integer("owner_id");
        write.org_id = integer("org_id");
        write.visible_to = integer("visible_to");
        write.label_ids = body
            .get("label_ids")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_i64).collect());
        Ok(write)
    }

    /// `phones` or `emails`: `value` required, `label` a string (default `work`), at most one
    /// `primary` (the first one is primary when none is).
    fn contacts(&mut self, call: &Call<'_>, list: &str) -> Result<Option<Vec<Contact>>, Reply> {
        let Some(items) = call.body.get(list) else {
            return Ok(None);
        };
        let Some(items) = items.as_array() else {
            return Err(self.violation(call, format!("{list}: must be an array")));
        };
        let mut contacts = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Some(value) = item.get("value").and_then(Value::as_str) else {
                return Err(self.violation(call, format!("{list}[{i}].value: required")));
            };
            let label = match item.get("label") {
                None | Some(Value::Null) => DEFAULT_LABEL.to_owned(),
                Some(Value::String(label)) => label.clone(),
                Some(_) => {
                    return Err(self.violation(call, format!("{list}[{i}].label: not a string")))
                }
            };
            let primary = item
                .get("primary")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            contacts.push(Contact {
                value: value.to_owned(),
                label,
                primary,
            });
        }
        match contacts.iter().filter(|c| c.primary).count() {
            0 => {
                if let Some(first) = contacts.first_mut() {
                    first.primary = true;
                }
            }
            1 => {}
            n => {
                let line = format!("{list}: {n} entries are primary, at most one may be");
                return Err(self.violation(call, line));
            }
        }
        Ok(Some(contacts))
    }

    /// A custom field value: the key must be a custom person field of the company, and text
    /// fields take strings (`varchar`, `varchar_auto`, `phone` at most 255 characters).
    fn check_custom_value(&self, key: &str, value: &Value) -> Result<(), String> {
        let Some(field) = self.custom_field(key) else {
            return Err("not the key of a custom person field of this company".to_owned());
        };
        if value.is_null() {
            return Ok(());
        }
        match field.field_type.as_str() {
            "varchar" | "varchar_auto" | "phone" | "text" => {
                let Some(text) = value.as_str() else {
                    return Err(format!(
                        "a {} field takes a string, not {value}",
                        field.field_type
                    ));
                };
                if field.field_type != "text" && text.chars().count() > MAX_VARCHAR {
                    return Err(format!("longer than {MAX_VARCHAR} characters"));
                }
                Ok(())
            }
            "double" if !value.is_number() => {
                Err(format!("a double field takes a number, not {value}"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            sort_by: "update_time".to_owned(),
            direction: "desc".to_owned(),
            value: 1_700_000_000_123_456,
            id: 42,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("zz"), None);
        assert_eq!(Cursor::decode("abc"), None);
        assert_eq!(Cursor::decode("7b7d"), None);
    }
}
