//! What the fake holds (contact fields, contacts, notes, the recorded requests and the rate
//! window) and the operations on it, each validating its query and body against the documented
//! shapes first.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde_json::{json, Map, Value};

use super::server::{Call, Reply};
use super::{FakeConfig, FakeContact, FakeNote, FakeRequest};

/// The fake account's id and subdomain.
const ACCOUNT_ID: i64 = 30_000_123;
const SUBDOMAIN: &str = "wacrmfake";
/// The user the token acts as (the author and responsible user of what it writes).
const USER_ID: i64 = 8_375_357;
/// Kommo's largest page, and its default (contacts page: "limit – 250"; SDK
/// `PagesFilterTrait`: 50).
const MAX_LIMIT: usize = 250;
const DEFAULT_LIMIT: usize = 50;
/// The `PHONE` field's enum codes (CRMS §5: "such as WORK/MOB", the rest unverified).
const PHONE_ENUMS: &[&str] = &["WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"];
/// The `EMAIL` field's enum codes (unverified).
const EMAIL_ENUMS: &[&str] = &["WORK", "PRIV", "OTHER"];
/// Custom field types Kommo lists (contacts custom fields reference; unverified list).
const FIELD_TYPES: &[&str] = &[
    "text",
    "numeric",
    "checkbox",
    "select",
    "multiselect",
    "multitext",
    "date",
    "url",
    "textarea",
    "radiobutton",
    "streetaddress",
    "smart_address",
    "birthday",
    "legal_entity",
    "date_time",
    "price",
    "category",
    "items",
    "tracking_data",
    "linked_entity",
    "chained_list",
    "monetary",
    "file",
];

#[derive(Debug, Clone)]
pub(super) struct Field {
    pub id: i64,
    pub name: String,
    pub field_type: String,
    pub code: Option<String>,
    /// `(enum_id, enum_code)` of a multitext system field.
    pub enums: Vec<(i64, &'static str)>,
}

impl Field {
    fn to_json(&self) -> Value {
        let enums: Vec<Value> = self
            .enums
            .iter()
            .enumerate()
            .map(|(sort, (id, code))| json!({"id": id, "value": code, "sort": sort + 1}))
            .collect();
        json!({
            "id": self.id,
            "name": self.name,
            "type": self.field_type,
            "code": self.code,
            "sort": self.id,
            "is_api_only": false,
            "entity_type": "contacts",
            "enums": if enums.is_empty() { Value::Null } else { Value::Array(enums) },
        })
    }
}

#[derive(Debug, Clone)]
pub(super) struct Contact {
    pub id: i64,
    pub name: String,
    /// `custom_fields_values` as Kommo lists them.
    pub fields: Vec<Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub(super) struct Note {
    pub id: i64,
    pub entity_id: i64,
    pub note_type: String,
    pub text: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Everything the fake holds.
pub(super) struct State {
    pub config: FakeConfig,
    pub fields: Vec<Field>,
    pub contacts: BTreeMap<i64, Contact>,
    pub notes: BTreeMap<i64, Note>,
    next_id: i64,
    pub requests: Vec<(Instant, FakeRequest)>,
    pub violations: Vec<String>,
    pub rate_violations: usize,
    pub window: VecDeque<Instant>,
    pub blocked: bool,
    pub reject_text: Option<String>,
    /// The refresh token the token endpoint accepts now (each use retires it).
    pub refresh_token: String,
    /// Access tokens issued and not expired.
    pub access_tokens: Vec<String>,
    /// Calls to the token endpoint.
    pub token_calls: usize,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A page of a list (`limit`/`page`): `204` when empty, else `_page`, `_links.self`,
/// `_links.next` when more follow, `_embedded.<key>` (contacts page response example).
fn page(call: &Call<'_>, key: &str, items: Vec<Value>, limit: usize, page: usize) -> Reply {
    let total = items.len();
    let start = (page - 1).saturating_mul(limit);
    let shown: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    if shown.is_empty() {
        return Reply::empty();
    }
    let mut links =
        json!({"self": {"href": format!("{}{}?page={page}&limit={limit}", call.base, call.path)}});
    if start + limit < total {
        links["next"] =
            json!({"href": format!("{}{}?page={}&limit={limit}", call.base, call.path, page + 1)});
    }
    Reply::hal(json!({"_page": page, "_links": links, "_embedded": {key: shown}}))
}

/// What one validated write item refuses, if anything, as a `validation-errors` entry.
fn refusal(request_id: &Value, code: &str, path: &str, detail: &str) -> Value {
    json!({"request_id": request_id, "errors": [{"code": code, "path": path, "detail": detail}]})
}

impl State {
    pub(super) fn new(config: FakeConfig) -> State {
        let config_refresh = config.refresh_token.clone();
        let phone_enums = PHONE_ENUMS
            .iter()
            .enumerate()
            .map(|(i, c)| (100 + i as i64, *c))
            .collect();
        let email_enums = EMAIL_ENUMS
            .iter()
            .enumerate()
            .map(|(i, c)| (200 + i as i64, *c))
            .collect();
        State {
            config,
            fields: vec![
                Field {
                    id: 1001,
                    name: "Phone".into(),
                    field_type: "multitext".into(),
                    code: Some("PHONE".into()),
                    enums: phone_enums,
                },
                Field {
                    id: 1002,
                    name: "Email".into(),
                    field_type: "multitext".into(),
                    code: Some("EMAIL".into()),
                    enums: email_enums,
                },
                Field {
                    id: 1003,
                    name: "Position".into(),
                    field_type: "text".into(),
                    code: Some("POSITION".into()),
                    enums: Vec::new(),
                },
            ],
            contacts: BTreeMap::new(),
            notes: BTreeMap::new(),
            next_id: 500_000,
            requests: Vec::new(),
            violations: Vec::new(),
            rate_violations: 0,
            window: VecDeque::new(),
            blocked: false,
            reject_text: None,
            refresh_token: config_refresh.clone(),
            access_tokens: Vec::new(),
            token_calls: 0,
        }
    }

    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn fake_contacts(&self) -> Vec<FakeContact> {
        self.contacts
            .values()
            .map(|c| FakeContact {
                id: c.id,
                name: c.name.clone(),
                phones: c
                    .fields
                    .iter()
                    .filter(|f| f["field_code"] == "PHONE")
                    .flat_map(|f| f["values"].as_array().cloned().unwrap_or_default())
                    .filter_map(|v| v["value"].as_str().map(str::to_owned))
                    .collect(),
                custom_fields_values: c.fields.clone(),
            })
            .collect()
    }

    pub(super) fn fake_notes(&self) -> Vec<FakeNote> {
        self.notes
            .values()
            .map(|n| FakeNote {
                id: n.id,
                entity_id: n.entity_id,
                note_type: n.note_type.clone(),
                text: n.text.clone(),
                created_at: n.created_at,
            })
            .collect()
    }

    pub(super) fn insert_contact(&mut self, name: &str, phone: &str) -> i64 {
        let id = self.id();
        let mut fields = Vec::new();
        if !phone.is_empty() {
            fields.push(json!({"field_id": 1001, "field_name": "Phone", "field_code": "PHONE",
                "field_type": "multitext", "values": [{"value": phone, "enum_id": 100, "enum_code": "WORK"}]}));
        }
        let t = now();
        self.contacts.insert(
            id,
            Contact {
                id,
                name: name.to_owned(),
                fields,
                created_at: t,
                updated_at: t,
            },
        );
        id
    }

    /// Checks the query keys (each must be one the operation documents) and reads `limit`
    /// (1..=250) and `page` (≥ 1).
    fn paging(&mut self, call: &Call<'_>, allowed: &[&str]) -> Result<(usize, usize), Reply> {
        for (key, _) in call.query {
            if !allowed.contains(&key.as_str()) && key != "limit" && key != "page" {
                return Err(self.violation(
                    call.method,
                    call.path,
                    format!("query parameter {key:?} is not documented for this list"),
                ));
            }
        }
        let limit = match call.query("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(l) if (1..=MAX_LIMIT).contains(&l) => l,
                _ => {
                    return Err(self.violation(
                        call.method,
                        call.path,
                        format!(
                            "limit {text:?} is not 1 to {MAX_LIMIT} (contacts page: limit – 250)"
                        ),
                    ))
                }
            },
        };
        let page = match call.query("page") {
            None => 1,
            Some(text) => match text.parse::<usize>() {
                Ok(p) if p >= 1 => p,
                _ => {
                    return Err(self.violation(
                        call.method,
                        call.path,
                        format!("page {text:?} is not a page number"),
                    ))
                }
            },
        };
        Ok((limit, page))
    }

    /// An integer query parameter, if present.
    fn int_param(&mut self, call: &Call<'_>, name: &str) -> Result<Option<i64>, Reply> {
        match call.query(name) {
            None => Ok(None),
            Some(text) => text.parse::<i64>().map(Some).map_err(|_| {
                self.violation(
                    call.method,
                    call.path,
                    format!("{name} {text:?} is not a timestamp"),
                )
            }),
        }
    }

    /// `order[<field>]=asc|desc` (contacts page: fields created_at, updated_at, id).
    fn order(&mut self, call: &Call<'_>) -> Result<Option<(String, bool)>, Reply> {
        let Some((key, value)) = call.query.iter().find(|(k, _)| k.starts_with("order[")) else {
            return Ok(None);
        };
        let field = key
            .trim_start_matches("order[")
            .trim_end_matches(']')
            .to_owned();
        match value.as_str() {
            "asc" => Ok(Some((field, true))),
            "desc" => Ok(Some((field, false))),
            other => Err(self.violation(
                call.method,
                call.path,
                format!("{key}={other:?}: the values are asc and desc"),
            )),
        }
    }

    /// The body of an add or edit call: a JSON array of 1..=`max_batch` objects (contacts page:
    /// "a JSON array"; the maximum is the fake's choice, unverified).
    fn items(&mut self, call: &Call<'_>) -> Result<Vec<Map<String, Value>>, Reply> {
        let Some(items) = call.body.as_array() else {
            return Err(self.violation(call.method, call.path, "the body is not a JSON array"));
        };
        if items.is_empty() || items.len() > self.config.max_batch {
            return Err(self.violation(
                call.method,
                call.path,
                format!(
                    "{} entities in one call (1 to {} allowed)",
                    items.len(),
                    self.config.max_batch
                ),
            ));
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_object() {
                Some(o) => out.push(o.clone()),
                None => {
                    return Err(self.violation(
                        call.method,
                        call.path,
                        format!("[{i}] is not an object"),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// Each item's keys must be documented for the operation, `request_id` a string (contacts
    /// page: "request_id string — returned unchanged in the response and not saved").
    fn keys(
        &mut self,
        call: &Call<'_>,
        items: &[Map<String, Value>],
        allowed: &[&str],
    ) -> Result<(), Reply> {
        for (i, item) in items.iter().enumerate() {
            for key in item.keys() {
                if !allowed.contains(&key.as_str()) {
                    return Err(self.violation(
                        call.method,
                        call.path,
                        format!("[{i}].{key} is not a documented field"),
                    ));
                }
            }
            if let Some(r) = item.get("request_id") {
                if !r.is_string() {
                    return Err(self.violation(
                        call.method,
                        call.path,
                        format!("[{i}].request_id is not a string"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The refusal of an item containing [`super::KommoFake::reject_text`]'s text.
    fn rejected(&self, item: &Map<String, Value>, i: usize) -> Option<Value> {
        let text = self.reject_text.as_deref()?;
        Value::Object(item.clone())
            .to_string()
            .contains(text)
            .then(|| {
                refusal(
                    &request_id(item, i),
                    "InvalidValue",
                    "",
                    "the value is not accepted",
                )
            })
    }

    pub(super) fn account(&mut self, call: &Call<'_>) -> Reply {
        if let Err(r) = self.paging(call, &["with"]) {
            return r;
        }
        Reply::hal(json!({
            "id": ACCOUNT_ID,
            "name": "wacrm fake",
            "subdomain": SUBDOMAIN,
            "current_user_id": USER_ID,
            "country": "BR",
            "currency": "BRL",
            "_links": {"self": {"href": format!("{}/api/v4/account", call.base)}},
        }))
    }

    pub(super) fn fields_list(&mut self, call: &Call<'_>) -> Reply {
        let (limit, p) = match self.paging(call, &[]) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let items = self.fields.iter().map(Field::to_json).collect();
        page(call, "custom_fields", items, limit, p)
    }

    /// `[{name, type, code, request_id}]` (CRMS §5 / research §4.2, unverified). A code already
    /// taken is refused (the fake's choice: codes identify fields).
    pub(super) fn fields_add(&mut self, call: &Call<'_>) -> Reply {
        let items = match self.items(call) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let allowed = [
            "name",
            "type",
            "code",
            "sort",
            "is_api_only",
            "enums",
            "group_id",
            "request_id",
        ];
        if let Err(r) = self.keys(call, &items, &allowed) {
            return r;
        }
        let mut refused = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let name = item.get("name").and_then(Value::as_str).unwrap_or("");
            let ty = item.get("type").and_then(Value::as_str).unwrap_or("");
            if name.trim().is_empty() || !FIELD_TYPES.contains(&ty) {
                return self.violation(
                    call.method,
                    call.path,
                    format!("[{i}] needs a name and a type of {FIELD_TYPES:?}"),
                );
            }
            if let Some(code) = item.get("code") {
                let Some(code) = code.as_str() else {
                    return self.violation(
                        call.method,
                        call.path,
                        format!("[{i}].code is not a string"),
                    );
                };
                if self.fields.iter().any(|f| {
                    f.code
                        .as_deref()
                        .is_some_and(|c| c.eq_ignore_ascii_case(code))
                }) {
                    refused.push(refusal(
                        &request_id(item, i),
                        "NotUnique",
                        "code",
                        "the code is taken",
                    ));
                }
            }
        }
        if !refused.is_empty() {
            return Reply::refused(refused);
        }
        let mut created = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let field = Field {
                id: self.id(),
                name: item
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                field_type: item
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                code: item.get("code").and_then(Value::as_str).map(str::to_owned),
                enums: Vec::new(),
            };
            let mut json = field.to_json();
            json["request_id"] = request_id(item, i);
            created.push(json);
            self.fields.push(field);
        }
        Reply::hal(
            json!({"_links": {"self": {"href": format!("{}{}", call.base, call.path)}},
            "_embedded": {"custom_fields": created}}),
        )
    }

    /// `POST /oauth2/access_token` with the refresh-token grant, form-encoded (research §4.1:
    /// token URL and rotation unverified; amoCRM's OAuth pages also list `redirect_uri`, which
    /// the fake does not require): a new access token and a new refresh token that retires the
    /// one used, `{token_type: "Bearer", expires_in: 86400, access_token, refresh_token}`.
    /// A wrong client or a retired refresh token: `400 {"hint", "title", "type", "status",
    /// "detail"}` (unverified shape).
    pub(super) fn token_endpoint(&mut self, raw: &str) -> Reply {
        self.token_calls += 1;
        let form = super::server::parse_query(Some(raw));
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if get("grant_type") != Some("refresh_token")
            || get("client_id") != Some(self.config.client_id.as_str())
            || get("client_secret") != Some(self.config.client_secret.as_str())
            || get("refresh_token") != Some(self.refresh_token.as_str())
            || self.refresh_token.is_empty()
        {
            return Reply::problem(
                axum::http::StatusCode::BAD_REQUEST,
                "Token has been revoked or the client is unknown",
            );
        }
        let n = self.id();
        let access = format!("kommo-access-{n}");
        self.refresh_token = format!("kommo-refresh-{n}");
        self.access_tokens.push(access.clone());
        Reply::hal(json!({"token_type": "Bearer", "expires_in": 86400,
            "access_token": access, "refresh_token": self.refresh_token}))
    }

    fn contact_json(&self, c: &Contact, base: &str) -> Value {
        json!({
            "id": c.id,
            "name": c.name,
            "first_name": c.name,
            "last_name": "",
            "responsible_user_id": USER_ID,
            "group_id": 0,
            "created_by": USER_ID,
            "updated_by": USER_ID,
            "created_at": c.created_at,
            "updated_at": c.updated_at,
            "closest_task_at": null,
            "is_deleted": false,
            "is_unsorted": false,
            "custom_fields_values": if c.fields.is_empty() { Value::Null } else { Value::Array(c.fields.clone()) },
            "account_id": ACCOUNT_ID,
            "_links": {"self": {"href": format!("{base}/api/v4/contacts/{}", c.id)}},
            "_embedded": {"tags": [], "companies": []},
        })
    }

    /// `GET /api/v4/contacts`: `page`, `limit`, `query` (the fake matches it as a substring
    /// of the name or any field value: Kommo's rules are undocumented), `with`,
    /// `order[id|updated_at|created_at]`, `filter[updated_at][from|to]` (SDK `ContactsFilter`,
    /// `BaseRangeFilter`; the fake treats both bounds as inclusive), `filter[id][]`.
    pub(super) fn contacts_list(&mut self, call: &Call<'_>) -> Reply {
        let allowed = [
            "query",
            "with",
            "order[id]",
            "order[updated_at]",
            "order[created_at]",
            "filter[updated_at][from]",
            "filter[updated_at][to]",
            "filter[id][]",
        ];
        let (limit, p) = match self.paging(call, &allowed) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let (from, to, order) = match (
            self.int_param(call, "filter[updated_at][from]"),
            self.int_param(call, "filter[updated_at][to]"),
            self.order(call),
        ) {
            (Ok(f), Ok(t), Ok(o)) => (f, t, o),
            (Err(r), ..) | (_, Err(r), _) | (.., Err(r)) => return r,
        };
        let ids: Vec<i64> = call
            .all("filter[id][]")
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect();
        let query = call.query("query").map(str::to_lowercase);
        let mut found: Vec<&Contact> = self
            .contacts
            .values()
            .filter(|c| from.is_none_or(|f| c.updated_at >= f))
            .filter(|c| to.is_none_or(|t| c.updated_at <= t))
            .filter(|c| ids.is_empty() || ids.contains(&c.id))
            .filter(|c| {
                query.as_deref().is_none_or(|q| {
                    c.name.to_lowercase().contains(q)
                        || Value::Array(c.fields.clone())
                            .to_string()
                            .to_lowercase()
                            .contains(q)
                })
            })
            .collect();
        if let Some((field, asc)) = order {
            found.sort_by_key(|c| match field.as_str() {
                "updated_at" => (c.updated_at, c.id),
                "created_at" => (c.created_at, c.id),
                _ => (c.id, c.id),
            });
            if !asc {
                found.reverse();
            }
        }
        let items = found
            .iter()
            .map(|c| self.contact_json(c, call.base))
            .collect();
        page(call, "contacts", items, limit, p)
    }

    /// Validates `custom_fields_values` (contacts page: `[{field_id | field_code, values:
    /// [{value, enum_id | enum_code}]}]`) and returns them as Kommo lists them.
    fn field_values(
        &mut self,
        call: &Call<'_>,
        i: usize,
        value: &Value,
    ) -> Result<Vec<Value>, Reply> {
        let bad = |this: &mut State, what: String| {
            Err(this.violation(
                call.method,
                call.path,
                format!("[{i}].custom_fields_values{what}"),
            ))
        };
        let Some(list) = value.as_array() else {
            return bad(self, " is not an array".into());
        };
        let mut out = Vec::new();
        for (j, entry) in list.iter().enumerate() {
            let field = match (entry["field_id"].as_i64(), entry["field_code"].as_str()) {
                (Some(id), _) => self.fields.iter().find(|f| f.id == id),
                (None, Some(code)) => self.fields.iter().find(|f| f.code.as_deref() == Some(code)),
                _ => return bad(self, format!("[{j}] has neither field_id nor field_code")),
            };
            let Some(field) = field.cloned() else {
                return bad(
                    self,
                    format!("[{j}] names a field the account does not have"),
                );
            };
            let Some(values) = entry["values"].as_array().filter(|v| !v.is_empty()) else {
                return bad(self, format!("[{j}].values is not a non-empty array"));
            };
            let mut kept = Vec::new();
            for (k, v) in values.iter().enumerate() {
                if !(v["value"].is_string() || v["value"].is_number() || v["value"].is_boolean()) {
                    return bad(self, format!("[{j}].values[{k}].value is not a scalar"));
                }
                let mut stored = json!({"value": v["value"]});
                if !field.enums.is_empty() {
                    let code = v["enum_code"].as_str().unwrap_or("WORK");
                    let Some((enum_id, code)) = field.enums.iter().find(|(_, c)| *c == code) else {
                        return bad(
                            self,
                            format!(
                                "[{j}].values[{k}].enum_code {code:?} is not one of the field's"
                            ),
                        );
                    };
                    stored["enum_id"] = json!(enum_id);
                    stored["enum_code"] = json!(code);
                } else if v.get("enum_code").is_some() {
                    return bad(
                        self,
                        format!("[{j}].values[{k}].enum_code on a field without enums"),
                    );
                }
                kept.push(stored);
            }
            out.push(json!({"field_id": field.id, "field_name": field.name,
                "field_code": field.code, "field_type": field.field_type, "values": kept}));
        }
        Ok(out)
    }

    /// Contact fields of an add or edit item, validated.
    fn contact_fields(
        &mut self,
        call: &Call<'_>,
        items: &[Map<String, Value>],
    ) -> Result<Vec<Option<Vec<Value>>>, Reply> {
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            for key in ["name", "first_name", "last_name"] {
                if item.get(key).is_some_and(|v| !v.is_string()) {
                    return Err(self.violation(
                        call.method,
                        call.path,
                        format!("[{i}].{key} is not a string"),
                    ));
                }
            }
            out.push(match item.get("custom_fields_values") {
                None => None,
                Some(v) => Some(self.field_values(call, i, v)?),
            });
        }
        Ok(out)
    }

    const CONTACT_KEYS: &'static [&'static str] = &[
        "name",
        "first_name",
        "last_name",
        "responsible_user_id",
        "created_by",
        "updated_by",
        "created_at",
        "updated_at",
        "custom_fields_values",
        "tags_to_add",
        "tags_to_delete",
        "_embedded",
        "request_id",
    ];

    /// `POST /api/v4/contacts` (contacts page, "Adding contacts").
    pub(super) fn contacts_add(&mut self, call: &Call<'_>) -> Reply {
        let items = match self.items(call) {
            Ok(v) => v,
            Err(r) => return r,
        };
        if let Err(r) = self.keys(call, &items, Self::CONTACT_KEYS) {
            return r;
        }
        let fields = match self.contact_fields(call, &items) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let refused: Vec<Value> = items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| self.rejected(it, i))
            .collect();
        if !refused.is_empty() {
            return Reply::refused(refused);
        }
        let mut created = Vec::new();
        for (i, (item, fields)) in items.iter().zip(fields).enumerate() {
            let id = self.id();
            let t = now();
            let name = item
                .get("name")
                .or_else(|| item.get("first_name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            self.contacts.insert(
                id,
                Contact {
                    id,
                    name,
                    fields: fields.unwrap_or_default(),
                    created_at: t,
                    updated_at: t,
                },
            );
            created.push(json!({"id": id, "request_id": request_id(item, i), "is_deleted": false,
                "is_unsorted": false, "_links": {"self": {"href": format!("{}/api/v4/contacts/{id}", call.base)}}}));
        }
        Reply::hal(
            json!({"_links": {"self": {"href": format!("{}{}", call.base, call.path)}},
            "_embedded": {"contacts": created}}),
        )
    }

    /// `PATCH /api/v4/contacts` (contacts page, "Updating contacts": each item has its `id`;
    /// only the fields sent change; a field sent replaces that field's values).
    pub(super) fn contacts_edit(&mut self, call: &Call<'_>) -> Reply {
        let items = match self.items(call) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let mut allowed = Self::CONTACT_KEYS.to_vec();
        allowed.push("id");
        if let Err(r) = self.keys(call, &items, &allowed) {
            return r;
        }
        for (i, item) in items.iter().enumerate() {
            if !item.get("id").is_some_and(Value::is_i64) {
                return self.violation(
                    call.method,
                    call.path,
                    format!("[{i}].id is not an integer"),
                );
            }
        }
        let fields = match self.contact_fields(call, &items) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let mut refused: Vec<Value> = items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| self.rejected(it, i))
            .collect();
        for (i, item) in items.iter().enumerate() {
            let id = item.get("id").and_then(Value::as_i64).unwrap_or_default();
            if !self.contacts.contains_key(&id) {
                refused.push(refusal(
                    &request_id(item, i),
                    "NotFound",
                    "id",
                    "no such contact",
                ));
            }
        }
        if !refused.is_empty() {
            return Reply::refused(refused);
        }
        let mut updated = Vec::new();
        for (i, (item, fields)) in items.iter().zip(fields).enumerate() {
            let id = item.get("id").and_then(Value::as_i64).unwrap_or_default();
            let t = now();
            if let Some(contact) = self.contacts.get_mut(&id) {
                if let Some(name) = item.get("name").and_then(Value::as_str) {
                    contact.name = name.to_owned();
                }
                for f in fields.unwrap_or_default() {
                    contact
                        .fields
                        .retain(|old| old["field_id"] != f["field_id"]);
                    contact.fields.push(f);
                }
                contact.updated_at = t;
                let mut answer = json!({"id": id, "name": contact.name, "updated_at": t,
                    "_links": {"self": {"href": format!("{}/api/v4/contacts/{id}", call.base)}}});
                if item.contains_key("request_id") {
                    answer["request_id"] = request_id(item, i);
                }
                updated.push(answer);
            }
        }
        Reply::hal(
            json!({"_links": {"self": {"href": format!("{}{}", call.base, call.path)}},
            "_embedded": {"contacts": updated}}),
        )
    }

    fn note_json(n: &Note, base: &str) -> Value {
        json!({
            "id": n.id,
            "entity_id": n.entity_id,
            "created_by": USER_ID,
            "updated_by": USER_ID,
            "created_at": n.created_at,
            "updated_at": n.updated_at,
            "responsible_user_id": USER_ID,
            "group_id": 0,
            "note_type": n.note_type,
            "params": {"text": n.text},
            "account_id": ACCOUNT_ID,
            "_links": {"self": {"href": format!("{base}/api/v4/contacts/{}/notes/{}", n.entity_id, n.id)}},
        })
    }

    /// `GET /api/v4/contacts/notes` (notes pages: `page`, `limit` ≤ 250, `filter[id][]`,
    /// `filter[note_type][]`, `filter[updated_at][from|to]`, `order[updated_at|id]`, `with`).
    pub(super) fn notes_list(&mut self, call: &Call<'_>) -> Reply {
        let allowed = [
            "with",
            "filter[id][]",
            "filter[note_type][]",
            "filter[updated_at][from]",
            "filter[updated_at][to]",
            "order[id]",
            "order[updated_at]",
        ];
        let (limit, p) = match self.paging(call, &allowed) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let (from, to, order) = match (
            self.int_param(call, "filter[updated_at][from]"),
            self.int_param(call, "filter[updated_at][to]"),
            self.order(call),
        ) {
            (Ok(f), Ok(t), Ok(o)) => (f, t, o),
            (Err(r), ..) | (_, Err(r), _) | (.., Err(r)) => return r,
        };
        let mut ids = Vec::new();
        for v in call.all("filter[id][]") {
            match v.parse::<i64>() {
                Ok(id) => ids.push(id),
                Err(_) => {
                    return self.violation(
                        call.method,
                        call.path,
                        format!("filter[id][] {v:?} is not an id"),
                    )
                }
            }
        }
        let types: Vec<&str> = call.all("filter[note_type][]");
        let mut found: Vec<&Note> = self
            .notes
            .values()
            .filter(|n| ids.is_empty() || ids.contains(&n.id))
            .filter(|n| types.is_empty() || types.contains(&n.note_type.as_str()))
            .filter(|n| from.is_none_or(|f| n.updated_at >= f))
            .filter(|n| to.is_none_or(|t| n.updated_at <= t))
            .collect();
        if let Some((field, asc)) = order {
            found.sort_by_key(|n| {
                if field == "updated_at" {
                    (n.updated_at, n.id)
                } else {
                    (n.id, n.id)
                }
            });
            if !asc {
                found.reverse();
            }
        }
        let items = found
            .iter()
            .map(|n| Self::note_json(n, call.base))
            .collect();
        page(call, "notes", items, limit, p)
    }

    /// `params` of a `common` note: `{text}`, a non-empty string (notes-types).
    fn note_text(
        &mut self,
        call: &Call<'_>,
        i: usize,
        item: &Map<String, Value>,
    ) -> Result<String, Reply> {
        match item.get("note_type").and_then(Value::as_str) {
            Some("common") => {}
            Some(other) => {
                return Err(self.violation(
                    call.method,
                    call.path,
                    format!("[{i}].note_type {other:?}: the fake implements common notes only"),
                ))
            }
            None => {
                return Err(self.violation(
                    call.method,
                    call.path,
                    format!("[{i}].note_type is missing"),
                ))
            }
        }
        let params = item.get("params").and_then(Value::as_object);
        match params.and_then(|p| p.get("text")).and_then(Value::as_str) {
            Some(text) if !text.trim().is_empty() && params.is_some_and(|p| p.len() == 1) => {
                Ok(text.to_owned())
            }
            _ => Err(self.violation(
                call.method,
                call.path,
                format!(
                    "[{i}].params is not {{\"text\": <non-empty string>}} (notes-types: common)"
                ),
            )),
        }
    }

    /// `POST /api/v4/contacts/notes` (CRMS §5: `[{entity_id, note_type, params}]`; SDK
    /// `NoteModel::toApi`: `created_at`, `responsible_user_id`, `request_id`).
    pub(super) fn notes_add(&mut self, call: &Call<'_>) -> Reply {
        let items = match self.items(call) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let allowed = [
            "entity_id",
            "note_type",
            "params",
            "created_by",
            "created_at",
            "updated_at",
            "responsible_user_id",
            "request_id",
            "is_need_to_trigger_digital_pipeline",
        ];
        if let Err(r) = self.keys(call, &items, &allowed) {
            return r;
        }
        let mut texts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if !item.get("entity_id").is_some_and(Value::is_i64) {
                return self.violation(
                    call.method,
                    call.path,
                    format!("[{i}].entity_id is not an integer"),
                );
            }
            if item.get("created_at").is_some_and(|v| !v.is_i64()) {
                return self.violation(
                    call.method,
                    call.path,
                    format!("[{i}].created_at is not a Unix timestamp"),
                );
            }
            match self.note_text(call, i, item) {
                Ok(t) => texts.push(t),
                Err(r) => return r,
            }
        }
        let mut refused: Vec<Value> = items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| self.rejected(it, i))
            .collect();
        for (i, item) in items.iter().enumerate() {
            let entity = item
                .get("entity_id")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            if !self.contacts.contains_key(&entity) {
                refused.push(refusal(
                    &request_id(item, i),
                    "NotFound",
                    "entity_id",
                    "no such contact",
                ));
            }
        }
        if !refused.is_empty() {
            return Reply::refused(refused);
        }
        let mut created = Vec::new();
        for (i, (item, text)) in items.iter().zip(texts).enumerate() {
            let id = self.id();
            let t = now();
            let note = Note {
                id,
                entity_id: item
                    .get("entity_id")
                    .and_then(Value::as_i64)
                    .unwrap_or_default(),
                note_type: "common".into(),
                text,
                created_at: item.get("created_at").and_then(Value::as_i64).unwrap_or(t),
                updated_at: t,
            };
            created.push(json!({"id": id, "entity_id": note.entity_id, "request_id": request_id(item, i),
                "_links": {"self": {"href": format!("{}/api/v4/contacts/{}/notes/{id}", call.base, note.entity_id)}}}));
            self.notes.insert(id, note);
        }
        Reply::hal(
            json!({"_links": {"self": {"href": format!("{}{}", call.base, call.path)}},
            "_embedded": {"notes": created}}),
        )
    }

    /// `PATCH /api/v4/contacts/notes` (notes pages, "Edit notes": an array of `{id, entity_id,
    /// note_type, params}`, `id` and `entity_id` required; the path is unverified).
    pub(super) fn notes_edit(&mut self, call: &Call<'_>) -> Reply {
        let items = match self.items(call) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let allowed = [
            "id",
            "entity_id",
            "note_type",
            "params",
            "request_id",
            "updated_by",
            "responsible_user_id",
        ];
        if let Err(r) = self.keys(call, &items, &allowed) {
            return r;
        }
        let mut texts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if !item.get("id").is_some_and(Value::is_i64)
                || !item.get("entity_id").is_some_and(Value::is_i64)
            {
                return self.violation(
                    call.method,
                    call.path,
                    format!("[{i}] needs integer id and entity_id"),
                );
            }
            match self.note_text(call, i, item) {
                Ok(t) => texts.push(t),
                Err(r) => return r,
            }
        }
        let mut refused: Vec<Value> = items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| self.rejected(it, i))
            .collect();
        for (i, item) in items.iter().enumerate() {
            let id = item.get("id").and_then(Value::as_i64).unwrap_or_default();
            let entity = item
                .get("entity_id")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            if self.notes.get(&id).is_none_or(|n| n.entity_id != entity) {
                refused.push(refusal(
                    &request_id(item, i),
                    "NotFound",
                    "id",
                    "no such note on this contact",
                ));
            }
        }
        if !refused.is_empty() {
            return Reply::refused(refused);
        }
        let mut updated = Vec::new();
        for (i, (item, text)) in items.iter().zip(texts).enumerate() {
            let id = item.get("id").and_then(Value::as_i64).unwrap_or_default();
            if let Some(note) = self.notes.get_mut(&id) {
                note.text = text;
                note.updated_at = now();
                let mut answer = json!({"id": id, "entity_id": note.entity_id, "updated_at": note.updated_at,
                    "_links": {"self": {"href": format!("{}/api/v4/contacts/{}/notes/{id}", call.base, note.entity_id)}}});
                if item.contains_key("request_id") {
                    answer["request_id"] = request_id(item, i);
                }
                updated.push(answer);
            }
        }
        Reply::hal(
            json!({"_links": {"self": {"href": format!("{}{}", call.base, call.path)}},
            "_embedded": {"notes": updated}}),
        )
    }
}

/// The item's `request_id`, or its position as text (the contacts page's example answers
/// `"request_id": "0"` for a first item sent without one).
fn request_id(item: &Map<String, Value>, i: usize) -> Value {
    item.get("request_id")
        .cloned()
        .unwrap_or_else(|| Value::String(i.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_starts_with_the_system_fields() {
        let state = State::new(FakeConfig::default());
        assert!(state
            .fields
            .iter()
            .any(|f| f.code.as_deref() == Some("PHONE")));
        assert!(state.contacts.is_empty());
    }
}
