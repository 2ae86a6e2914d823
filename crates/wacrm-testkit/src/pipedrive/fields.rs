//! `GET /api/v1/users/me` and the person fields (`/api/v1/personFields`).

use serde_json::{json, Value};

use super::paging::offset_page;
use super::server::{Call, Reply};
use super::state::{State, COMPANY_DOMAIN, COMPANY_ID, USER_EMAIL, USER_NAME};

/// Field types that take options (`options` must be given).
const OPTION_TYPES: &[&str] = &["enum", "set"];

impl State {
    /// `GET /users/me`: the token's user, an admin of the `sales` app.
    pub(super) fn users_me(&self) -> Reply {
        Reply::success(
            json!({
                "id": self.config.user_id,
                "name": USER_NAME,
                "email": USER_EMAIL,
                "default_currency": "EUR",
                "locale": "en_US",
                "lang": 1,
                "activated": true,
                "active_flag": true,
                "is_you": true,
                "is_deleted": false,
                "has_created_company": true,
                "access": [{"app": "sales", "admin": true}],
                "timezone_name": "UTC",
                "timezone_offset": "+00:00",
                "company_id": COMPANY_ID,
                "company_name": "wacrm fake company",
                "company_domain": COMPANY_DOMAIN,
                "company_country": "EE",
            }),
            Value::Null,
        )
    }

    /// `GET /personFields`: system fields first, then custom ones, in creation order.
    pub(super) fn person_fields_list(&mut self, call: &Call<'_>) -> Reply {
        let start = match self.start(call) {
            Ok(start) => start,
            Err(reply) => return reply,
        };
        let limit = match self.limit(call) {
            Ok(limit) => limit,
            Err(reply) => return reply,
        };
        let items = self.fields.iter().map(|f| self.field_json(f)).collect();
        offset_page(items, start, limit)
    }

    /// `POST /personFields`: a custom field with a new 40-hex key.
    pub(super) fn person_field_create(&mut self, call: &Call<'_>) -> Reply {
        let name = call.str_field("name").unwrap_or("").trim().to_owned();
        if name.is_empty() {
            return self.violation(call, "name: a field needs a non-empty name");
        }
        let field_type = call.str_field("field_type").unwrap_or("").to_owned();
        if field_type.is_empty() {
            return self.violation(call, "field_type: required");
        }
        let options = match call.body.get("options") {
            Some(Value::Array(options)) => Some(
                options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| {
                        let label = o.get("label").cloned().unwrap_or(Value::Null);
                        json!({"id": i + 1, "label": label})
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        };
        if OPTION_TYPES.contains(&field_type.as_str()) && options.is_none() {
            return self.violation(
                call,
                format!("options: a field of type {field_type:?} must list its options"),
            );
        }
        let add_visible_flag = call
            .body
            .get("add_visible_flag")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let field = self
            .add_custom_field(
                &name,
                &field_type,
                add_visible_flag,
                options.map(Value::from),
            )
            .clone();
        Reply::success(self.field_json(&field), Value::Null)
    }

    /// `GET /personFields/{id}`.
    pub(super) fn person_field_get(&self, call: &Call<'_>) -> Reply {
        match self.fields.iter().find(|f| f.id == call.id()) {
            Some(field) => Reply::success(self.field_json(field), Value::Null),
            None => Reply::not_found(),
        }
    }
}
