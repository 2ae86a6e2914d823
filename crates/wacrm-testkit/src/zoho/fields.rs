//! Contact fields: `GET` and `POST /crm/v8/settings/fields?module=Contacts`.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::server::{field_error, Call, Reply};
use super::state::{zoho_time, Field, State};

/// The data types a custom field may be created with, and the default and largest `length`
/// of each.
const CUSTOM_TYPES: &[(&str, usize, usize)] = &[
    ("text", 255, 255),
    ("phone", 30, 30),
    ("email", 100, 100),
    ("textarea", 2000, 32_000),
];

/// The API name Zoho derives from a field label: each run of characters other than ASCII
/// letters and digits becomes one `_`, and none leads or trails (`"WhatsApp ID"` →
/// `WhatsApp_ID`).
pub(super) fn api_name_of(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

impl State {
    /// `GET /settings/fields`: every field, system ones first.
    pub(super) fn fields_list(&self) -> Reply {
        let fields: Vec<Value> = self.fields.iter().map(Field::to_json).collect();
        Reply::json(StatusCode::OK, json!({ "fields": fields }))
    }

    /// `POST /settings/fields`: one result per field, under `fields`.
    pub(super) fn field_create(&mut self, call: &Call<'_>) -> Reply {
        let items = match self.batch_items(call, "fields") {
            Ok(items) => items,
            Err(reply) => return reply,
        };
        let results = items
            .iter()
            .enumerate()
            .map(|(i, item)| self.create_one(i, item))
            .collect();
        Reply::batch("fields", results, StatusCode::CREATED)
    }

    fn create_one(&mut self, index: usize, item: &Value) -> Result<Value, Value> {
        let path = |name: &str| format!("$.fields[{index}].{name}");
        let invalid = |name: &str| field_error("INVALID_DATA", "invalid data", name, &path(name));
        let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::trim);
        let Some(label) = text("field_label").filter(|l| !l.is_empty()) else {
            return Err(field_error(
                "MANDATORY_NOT_FOUND",
                "required field not found",
                "field_label",
                &path("field_label"),
            ));
        };
        let Some(data_type) = text("data_type") else {
            return Err(field_error(
                "MANDATORY_NOT_FOUND",
                "required field not found",
                "data_type",
                &path("data_type"),
            ));
        };
        let Some((_, default_length, max_length)) =
            CUSTOM_TYPES.iter().find(|(t, ..)| *t == data_type)
        else {
            return Err(invalid("data_type"));
        };
        let length = match item.get("length") {
            None | Some(Value::Null) => *default_length,
            Some(value) => match value.as_u64().and_then(|l| usize::try_from(l).ok()) {
                Some(l) if (1..=*max_length).contains(&l) => l,
                _ => return Err(invalid("length")),
            },
        };
        let unique = match item.get("unique") {
            None | Some(Value::Null) => None,
            Some(Value::Object(u)) if u.is_empty() => None,
            Some(Value::Object(u)) => {
                let known = match u.get("casesensitive") {
                    None | Some(Value::Null) => true,
                    Some(Value::String(s)) => s == "true" || s == "false",
                    Some(_) => false,
                };
                if !known {
                    return Err(invalid("unique"));
                }
                Some(Value::Object(u.clone()))
            }
            Some(_) => return Err(invalid("unique")),
        };
        let api_name = api_name_of(label);
        if api_name.is_empty() {
            return Err(invalid("field_label"));
        }
        let taken = self.fields.iter().any(|f| {
            f.label.eq_ignore_ascii_case(label) || f.api_name.eq_ignore_ascii_case(&api_name)
        });
        if taken {
            return Err(field_error(
                "DUPLICATE_DATA",
                "duplicate data",
                "field_label",
                &path("field_label"),
            ));
        }
        let id = self.new_id();
        let custom = self.fields.iter().filter(|f| f.custom).count() + 1;
        let created = zoho_time(self.now());
        self.fields.push(Field {
            id: id.to_string(),
            api_name,
            label: label.to_owned(),
            data_type: data_type.to_owned(),
            length,
            custom: true,
            mandatory: false,
            read_only: false,
            unique,
            column_name: format!("CONTACTCF{custom}"),
            created_time: Some(created),
        });
        Ok(json!({
            "code": "SUCCESS",
            "details": {"id": id.to_string()},
            "message": "field created",
            "status": "success",
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_come_from_labels() {
        assert_eq!(api_name_of("WhatsApp ID"), "WhatsApp_ID");
        assert_eq!(api_name_of("  WhatsApp  -  ID (wa) "), "WhatsApp_ID_wa");
        assert_eq!(api_name_of("Número"), "N_mero");
        assert_eq!(api_name_of("!!"), "");
    }
}
