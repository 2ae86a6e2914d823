//! Contact writes: `POST /crm/v8/Contacts/upsert` and `PUT /crm/v8/Contacts`.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use super::server::{error_body, field_error, Call, Reply};
use super::state::{parse_id, State, CONTACTS, CONTACTS_MODULE_ID};

/// The system field Zoho checks for duplicates in `Contacts` besides the unique fields.
const SYSTEM_DUPLICATE_CHECK: &str = "Email";
/// The member of a write's body holding its records (and of the answer, its results).
const DATA: &str = "data";

/// A record's values after checking: `Some(value)` sets, `None` clears.
type Changes = Vec<(String, Option<String>)>;

fn mandatory(api_name: &str, json_path: &str) -> Value {
    field_error(
        "MANDATORY_NOT_FOUND",
        "required field not found",
        api_name,
        json_path,
    )
}

fn invalid(api_name: &str, json_path: &str) -> Value {
    field_error("INVALID_DATA", "invalid data", api_name, json_path)
}

impl State {
    /// Checks one record's members against the module's fields; `skip` names members the
    /// operation reads itself (`id` of an update).
    fn check_values(&self, index: usize, record: &Value, skip: &[&str]) -> Result<Changes, Value> {
        let Some(record) = record.as_object() else {
            return Err(invalid("data", &format!("$.data[{index}]")));
        };
        let mut changes = Vec::new();
        for (name, value) in record {
            if skip.contains(&name.as_str()) {
                continue;
            }
            let path = format!("$.data[{index}].{name}");
            let Some(field) = self.field(name).filter(|f| !f.read_only) else {
                return Err(invalid(name, &path));
            };
            let text = match value {
                Value::Null => None,
                Value::String(s) if s.is_empty() => None,
                Value::String(s) => Some(s.clone()),
                _ => {
                    return Err(error_body(
                        "INVALID_DATA",
                        "invalid data",
                        json!({
                            "expected_data_type": field.data_type,
                            "api_name": name,
                            "json_path": path,
                        }),
                    ))
                }
            };
            if let Some(text) = &text {
                if text.chars().count() > field.length {
                    return Err(error_body(
                        "INVALID_DATA",
                        "invalid data",
                        json!({
                            "maximum_length": field.length,
                            "api_name": name,
                            "json_path": path,
                        }),
                    ));
                }
                if field.data_type == "email" && !text.contains('@') {
                    return Err(invalid(name, &path));
                }
            }
            changes.push((name.clone(), text));
        }
        Ok(changes)
    }

    /// `DUPLICATE_DATA` when a unique field would take a value another contact holds.
    fn check_unique(&self, index: usize, changes: &Changes, own: Option<u64>) -> Result<(), Value> {
        for (name, value) in changes {
            let (Some(value), Some(field)) = (value, self.field(name)) else {
                continue;
            };
            if field.unique.is_none() {
                continue;
            }
            let holder = self.contacts.values().find(|c| {
                Some(c.id) != own
                    && c.fields
                        .get(name)
                        .and_then(Value::as_str)
                        .is_some_and(|v| field.same(v, value))
            });
            if let Some(holder) = holder {
                return Err(error_body(
                    "DUPLICATE_DATA",
                    "duplicate data",
                    json!({
                        "api_name": name,
                        "json_path": format!("$.data[{index}].{name}"),
                        "duplicate_record": {
                            "id": holder.id.to_string(),
                            "module": {"api_name": CONTACTS, "id": CONTACTS_MODULE_ID},
                        },
                        "more_records": false,
                    }),
                ));
            }
        }
        Ok(())
    }

    /// Applies checked changes to a stored contact; a cleared `Last_Name` is refused.
    fn apply(&mut self, index: usize, id: u64, changes: Changes) -> Result<(), Value> {
        if changes
            .iter()
            .any(|(name, value)| name == "Last_Name" && value.is_none())
        {
            return Err(mandatory(
                "Last_Name",
                &format!("$.data[{index}].Last_Name"),
            ));
        }
        self.check_unique(index, &changes, Some(id))?;
        let now = self.now();
        let Some(contact) = self.contacts.get_mut(&id) else {
            return Err(invalid("id", &format!("$.data[{index}].id")));
        };
        for (name, value) in changes {
            match value {
                Some(value) => contact.fields.insert(name, Value::from(value)),
                None => contact.fields.remove(&name),
            };
        }
        contact.modified = now;
        Ok(())
    }

    /// The fields upsert matches on: `duplicate_check_fields`, or `Email` then every unique
    /// field. Each must be `Email` or a unique field.
    fn duplicate_check_fields(&self, body: &Value) -> Result<Vec<String>, String> {
        let Some(given) = body.get("duplicate_check_fields").and_then(Value::as_array) else {
            let mut fields = vec![SYSTEM_DUPLICATE_CHECK.to_owned()];
            fields.extend(
                self.fields
                    .iter()
                    .filter(|f| f.unique.is_some())
                    .map(|f| f.api_name.clone()),
            );
            return Ok(fields);
        };
        let mut fields = Vec::new();
        for name in given.iter().filter_map(Value::as_str) {
            let checkable = name == SYSTEM_DUPLICATE_CHECK
                || self.field(name).is_some_and(|f| f.unique.is_some());
            if !checkable {
                return Err(format!(
                    "/duplicate_check_fields: {name:?} is neither a system duplicate-check field \
                     (Email) nor a field marked unique; Zoho checks duplicates on those only"
                ));
            }
            fields.push(name.to_owned());
        }
        Ok(fields)
    }

    /// The first stored contact a record matches on the duplicate-check fields, in order.
    fn find_duplicate(&self, changes: &Changes, check: &[String]) -> Option<(u64, String)> {
        for name in check {
            let Some(field) = self.field(name) else {
                continue;
            };
            let Some(Some(value)) = changes.iter().find(|(n, _)| n == name).map(|(_, v)| v) else {
                continue;
            };
            let found = self.contacts.values().find(|c| {
                c.fields
                    .get(name)
                    .and_then(Value::as_str)
                    .is_some_and(|v| field.same(v, value))
            });
            if let Some(contact) = found {
                return Some((contact.id, name.clone()));
            }
        }
        None
    }

    /// `POST /Contacts/upsert`.
    pub(super) fn upsert(&mut self, call: &Call<'_>) -> Reply {
        let check = match self.duplicate_check_fields(call.body) {
            Ok(check) => check,
            Err(line) => return self.violation(call, line),
        };
        let records = match self.batch_items(call, DATA) {
            Ok(records) => records,
            Err(reply) => return reply,
        };
        let results = records
            .iter()
            .enumerate()
            .map(|(i, record)| self.upsert_one(i, record, &check))
            .collect();
        Reply::batch(DATA, results, StatusCode::OK)
    }

    fn upsert_one(
        &mut self,
        index: usize,
        record: &Value,
        check: &[String],
    ) -> Result<Value, Value> {
        let changes = self.check_values(index, record, &[])?;
        if let Some((id, duplicate_field)) = self.find_duplicate(&changes, check) {
            self.apply(index, id, changes)?;
            return Ok(self.success(id, Some(&duplicate_field), "update"));
        }
        let has_last_name = changes
            .iter()
            .any(|(name, value)| name == "Last_Name" && value.is_some());
        if !has_last_name {
            return Err(mandatory(
                "Last_Name",
                &format!("$.data[{index}].Last_Name"),
            ));
        }
        self.check_unique(index, &changes, None)?;
        let values: Map<String, Value> = changes
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, Value::from(v))))
            .collect();
        let id = self.insert_contact(values);
        Ok(self.success(id, None, "insert"))
    }

    /// A record write's success item; `action` only for upsert.
    fn success(&self, id: u64, duplicate_field: Option<&str>, action: &str) -> Value {
        let (created, modified) = self
            .contacts
            .get(&id)
            .map(|c| (c.created, c.modified))
            .unwrap_or_default();
        let mut item = json!({
            "code": "SUCCESS",
            "details": State::write_details(id, created, modified),
            "message": if action == "insert" { "record added" } else { "record updated" },
            "status": "success",
        });
        if !action.is_empty() {
            item["duplicate_field"] = duplicate_field.map_or(Value::Null, Value::from);
            item["action"] = Value::from(action);
        }
        item
    }

    /// `PUT /Contacts`: updates by `id`.
    pub(super) fn update_records(&mut self, call: &Call<'_>) -> Reply {
        let records = match self.batch_items(call, DATA) {
            Ok(records) => records,
            Err(reply) => return reply,
        };
        let results = records
            .iter()
            .enumerate()
            .map(|(i, record)| self.update_one(i, record))
            .collect();
        Reply::batch(DATA, results, StatusCode::OK)
    }

    fn update_one(&mut self, index: usize, record: &Value) -> Result<Value, Value> {
        let path = format!("$.data[{index}].id");
        let Some(id) = record.get("id").and_then(Value::as_str) else {
            return Err(mandatory("id", &path));
        };
        let Some(id) = parse_id(id).filter(|id| self.contacts.contains_key(id)) else {
            return Err(field_error(
                "INVALID_DATA",
                "the id given seems to be invalid",
                "id",
                &path,
            ));
        };
        let changes = self.check_values(index, record, &["id"])?;
        self.apply(index, id, changes)?;
        Ok(self.success(id, None, ""))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::routes::Doc;
    use super::super::server::{error_body, field_error};
    use super::super::specs::shared_specs;
    use super::super::state::State;
    use super::super::FakeConfig;

    /// The fake's record answers against record.json's `Success_Response` and `API_Exception`
    /// (the `error-message-enums` entry): conformant, except where Zoho's answers themselves
    /// depart from the snapshot.
    #[test]
    fn answers_match_the_record_document() {
        let Some(specs) = shared_specs() else {
            return;
        };
        let record = specs.get(Doc::Record).unwrap();
        let mut state = State::new(FakeConfig::default(), None);
        let mut field = state.field("Phone").unwrap().clone();
        field.api_name = "WhatsApp_ID".to_owned();
        field.custom = true;
        field.unique = Some(json!({"casesensitive": "false"}));
        state.fields.push(field);
        let check = vec!["WhatsApp_ID".to_owned()];

        let inserted = state
            .upsert_one(0, &json!({"Last_Name": "A", "WhatsApp_ID": "1"}), &check)
            .unwrap();
        let updated = state
            .upsert_one(1, &json!({"WhatsApp_ID": "1", "Phone": "2"}), &check)
            .unwrap();
        assert_eq!(record.validate("Success_Response", &updated), Ok(()));
        // `duplicate_field: null` on insert, which the snapshot types `string`.
        let errors = record.validate("Success_Response", &inserted).unwrap_err();
        assert!(
            errors.iter().all(|e| e.starts_with("/duplicate_field")),
            "{errors:?}"
        );
        let id = inserted["details"]["id"].as_str().unwrap().to_owned();
        let put = state
            .update_one(0, &json!({"id": id, "First_Name": "B"}))
            .unwrap();
        assert_eq!(record.validate("Success_Response", &put), Ok(()));

        let email = vec!["Email".to_owned()];
        let failures = [
            state.upsert_one(0, &json!({"First_Name": "x"}), &check),
            state.upsert_one(0, &json!({"Last_Name": "x", "Nickname": "x"}), &check),
            state.upsert_one(0, &json!({"Last_Name": "x", "Phone": 1}), &check),
            state.upsert_one(0, &json!({"Last_Name": "x", "Email": "no-at"}), &check),
            state.upsert_one(
                0,
                &json!({"Last_Name": "x", "Email": "x@y", "WhatsApp_ID": "1"}),
                &email,
            ),
            state.update_one(0, &json!({"id": "7300111000999999999"})),
            state.update_one(0, &json!({"Phone": "1"})),
        ];
        for failure in failures {
            let item = failure.unwrap_err();
            assert_eq!(record.validate("API_Exception", &item), Ok(()), "{item}");
        }
        // `maximum_length` is a number, as Zoho's newer document types it; the snapshot
        // says `string`.
        let long = state
            .upsert_one(0, &json!({"Last_Name": "x".repeat(81)}), &check)
            .unwrap_err();
        let errors = record.validate("API_Exception", &long).unwrap_err();
        assert!(
            errors
                .iter()
                .all(|e| e.starts_with("/details/maximum_length")),
            "{errors:?}"
        );

        for body in [
            error_body("INVALID_DATA", "invalid data", json!({})),
            error_body("INVALID_TOKEN", "invalid oauth token", json!({})),
            error_body(
                "INVALID_URL_PATTERN",
                "Please check if the URL trying to access is a correct one",
                json!({}),
            ),
            field_error("INVALID_DATA", "invalid data", "x", "$.data[0].x"),
        ] {
            assert_eq!(record.validate("API_Exception", &body), Ok(()), "{body}");
        }
    }
}
