//! What the RD Station fake holds, and its operations.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use serde_json::{json, Map, Value};

use super::rdql;
use super::FakeConfig;
use crate::loopback::FakeRequest;

/// A request as recorded, with its arrival time.
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    pub at: Instant,
    pub request: FakeRequest,
}

/// An answer before it becomes a response.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
}

impl Reply {
    pub(super) fn ok(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            retry_after: None,
        }
    }

    /// v2's error envelope `{"errors": [...]}` (crm-v2-introduction: "errors: Array<Object>",
    /// never with `data`). The elements' fields are not documented: the fake writes
    /// `{"code", "detail"}`, a choice.
    pub(super) fn error(status: u16, code: &str, detail: impl Into<String>) -> Reply {
        Reply::ok(
            status,
            json!({"errors": [{"code": code, "detail": detail.into()}]}),
        )
    }
}

/// One kind of record the fake keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Contact,
    Deal,
    Task,
}

impl Kind {
    fn prefix(self) -> u64 {
        match self {
            Kind::Contact => 0x6c00_0000,
            Kind::Deal => 0x6d00_0000,
            Kind::Task => 0x7a00_0000,
        }
    }
}

/// The fake's state.
pub(super) struct State {
    pub config: FakeConfig,
    pub requests: Vec<Recorded>,
    pub violations: Vec<String>,
    /// Requests admitted in the last minute (for the rate limit).
    pub window: VecDeque<Instant>,
    pub rate_violations: usize,
    pub access_tokens: HashSet<String>,
    pub refresh_token: String,
    pub retired_refresh_tokens: Vec<String>,
    pub token_requests: usize,
    pub records: HashMap<Kind, Vec<Value>>,
    /// Order of last change, for `sort[updated_at]`.
    pub changed: HashMap<String, u64>,
    pub clock: u64,
    pub next_id: u64,
    pub custom_fields: Vec<Value>,
    pub users: Vec<Value>,
    pub pipelines: Vec<Value>,
}

/// The time the fake writes for a change number (ISO 8601, UTC, as crm-v2-introduction says).
fn time_of(n: u64) -> String {
    let t = chrono::DateTime::from_timestamp(1_780_000_000 + n as i64, 0).unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Ids are 24-hex strings (CRMS.md §3; the n8n node's `assertHexId`).
pub(super) fn is_hex24(s: &str) -> bool {
    s.len() == 24 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Task types of `TasksDescription.ts` in RD Station's n8n node.
const TASK_TYPES: [&str; 7] = [
    "call", "email", "lunch", "meeting", "task", "visit", "whatsapp",
];
/// Phone types of `ContactsDescription.ts` (and CRMS.md §3).
const PHONE_TYPES: [&str; 4] = ["mobile", "work", "home", "fax"];

impl State {
    pub(super) fn new(config: FakeConfig) -> State {
        let mut state = State {
            refresh_token: config.refresh_token.clone(),
            config,
            requests: Vec::new(),
            violations: Vec::new(),
            window: VecDeque::new(),
            rate_violations: 0,
            access_tokens: HashSet::new(),
            retired_refresh_tokens: Vec::new(),
            token_requests: 0,
            records: HashMap::new(),
            changed: HashMap::new(),
            clock: 0,
            next_id: 1,
            custom_fields: Vec::new(),
            users: Vec::new(),
            pipelines: Vec::new(),
        };
        for (name, email) in state.config.users.clone() {
            let id = state.new_id(Kind::Contact);
            state
                .users
                .push(json!({"id": id, "name": name, "email": email}));
        }
        for (label, slug) in state.config.contact_fields.clone() {
            state.add_custom_field(&label, &slug);
        }
        for (order, name) in ["Funil de vendas", "WhatsApp"].into_iter().enumerate() {
            let id = state.new_id(Kind::Deal);
            state
                .pipelines
                .push(json!({"id": id, "name": name, "order": order + 1}));
        }
        state
    }

    pub(super) fn add_custom_field(&mut self, label: &str, slug: &str) {
        let id = self.new_id(Kind::Task);
        self.custom_fields.push(json!({
            "id": id, "name": label, "label": label, "slug": slug,
            "entity": "contact", "type": "text",
        }));
    }

    fn new_id(&mut self, kind: Kind) -> String {
        self.next_id += 1;
        format!("{:08x}{:016x}", kind.prefix(), self.next_id)
    }

    fn touch(&mut self, id: &str) -> String {
        self.clock += 1;
        self.changed.insert(id.to_owned(), self.clock);
        time_of(self.clock)
    }

    pub(super) fn list(&self, kind: Kind) -> &[Value] {
        self.records.get(&kind).map(Vec::as_slice).unwrap_or(&[])
    }

    fn find_mut(&mut self, kind: Kind, id: &str) -> Option<&mut Value> {
        self.records
            .get_mut(&kind)?
            .iter_mut()
            .find(|r| r["id"].as_str() == Some(id))
    }

    pub(super) fn get(&self, kind: Kind, id: &str) -> Option<&Value> {
        self.list(kind)
            .iter()
            .find(|r| r["id"].as_str() == Some(id))
    }

    fn insert(&mut self, kind: Kind, mut record: Value) -> Value {
        let id = self.new_id(kind);
        let now = self.touch(&id);
        record["id"] = json!(id);
        record["created_at"] = json!(now);
        record["updated_at"] = json!(now);
        self.records.entry(kind).or_default().push(record.clone());
        record
    }

    /// A contact made by hand in RD Station's screens (no request, no rate limit).
    pub(super) fn insert_contact(&mut self, name: &str, phone: &str) -> String {
        let phones = if phone.is_empty() {
            json!([])
        } else {
            json!([{"phone": phone, "type": "work"}])
        };
        let contact = self.insert(
            Kind::Contact,
            json!({"name": name, "phones": phones, "emails": [], "custom_fields": {}}),
        );
        contact["id"].as_str().unwrap_or_default().to_owned()
    }

    /// A deal made by hand in RD Station's screens.
    pub(super) fn insert_deal(&mut self, name: &str, contact: &str, status: &str) -> String {
        let owner = self
            .users
            .first()
            .map(|u| u["id"].clone())
            .unwrap_or(Value::Null);
        let pipeline = self
            .pipelines
            .first()
            .map(|p| p["id"].clone())
            .unwrap_or(Value::Null);
        let deal = self.insert(
            Kind::Deal,
            json!({"name": name, "status": status, "owner_id": owner,
                   "contact_ids": [contact], "pipeline_id": pipeline}),
        );
        deal["id"].as_str().unwrap_or_default().to_owned()
    }

    /// A violation of the documented contract: recorded, answered 400 (crm-v2-introduction:
    /// "400 Bad Request: o corpo JSON está inválido ou tem parâmetros obrigatórios ausentes").
    pub(super) fn violation(&mut self, method: &str, path: &str, what: impl Into<String>) -> Reply {
        let what = what.into();
        self.violations.push(format!("{method} {path}: {what}"));
        Reply::error(400, "BAD_REQUEST", format!("wacrm RD Station fake: {what}"))
    }

    fn user_exists(&self, id: &str) -> bool {
        self.users.iter().any(|u| u["id"].as_str() == Some(id))
    }

    fn field_exists(&self, slug: &str) -> bool {
        self.custom_fields
            .iter()
            .any(|f| f["slug"].as_str() == Some(slug))
    }

    /// The values of `field` in a record, for RDQL.
    fn values(kind: Kind, record: &Value, field: &str) -> Vec<String> {
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        if let Some(slug) = field.strip_prefix('@') {
            return text(&record["custom_fields"][slug]).into_iter().collect();
        }
        let array = |name: &str, key: Option<&str>| -> Vec<String> {
            record[name]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| text(key.map(|k| &v[k]).unwrap_or(v)))
                .collect()
        };
        match (kind, field) {
            (Kind::Contact, "phone") => array("phones", Some("phone")),
            (Kind::Contact, "email") => array("emails", Some("email")),
            (Kind::Deal, "contact_id") => array("contact_ids", None),
            (Kind::Task, "owner_ids") => array("owner_ids", None),
            _ => text(&record[field]).into_iter().collect(),
        }
    }

    /// A list: `filter` (RDQL), `sort[<field>]`, `page[number]`, `page[size]`
    /// (crm-v2-introduction, "Paginação", "Ordenação"; the fields each resource filters and
    /// sorts on are those of RD Station's n8n node descriptions).
    pub(super) fn list_op(&mut self, kind: Kind, path: &str, query: &[(String, String)]) -> Reply {
        let (filters, sorts): (&[&str], &[&str]) = match kind {
            // ContactsDescription.ts / CRMS.md §3.
            Kind::Contact => (
                &[
                    "id",
                    "name",
                    "job_title",
                    "phone",
                    "email",
                    "created_at",
                    "updated_at",
                ],
                &["name", "created_at", "updated_at"],
            ),
            // DealsDescription.ts.
            Kind::Deal => (
                &[
                    "id",
                    "name",
                    "rating",
                    "status",
                    "closed_at",
                    "created_at",
                    "updated_at",
                    "expected_close_date",
                    "organization_id",
                    "contact_id",
                    "stage_id",
                    "lost_reason_id",
                    "campaign_id",
                    "owner_id",
                    "pipeline_id",
                    "product_ids",
                ],
                &["name", "rating", "created_at", "updated_at", "closed_at"],
            ),
            // TasksDescription.ts.
            Kind::Task => (
                &[
                    "deal_id",
                    "type",
                    "owner_ids",
                    "completed_at",
                    "due_date",
                    "status",
                ],
                &["due_date", "deal_id", "completed_at", "updated_at"],
            ),
        };
        let mut filter = None;
        let mut sort: Option<(String, bool)> = None;
        let mut number = 1usize;
        let mut size = 20usize;
        for (name, value) in query {
            if name == "filter" {
                match rdql::parse(value) {
                    Ok(expr) => filter = Some(expr),
                    Err(e) => return self.violation("GET", path, format!("filter: {e}")),
                }
            } else if let Some(field) = name.strip_prefix("sort[").and_then(|f| f.strip_suffix(']'))
            {
                if !sorts.contains(&field) || !(value == "asc" || value == "desc") {
                    return self.violation("GET", path, format!("{name}={value}: not a sort"));
                }
                sort = Some((field.to_owned(), value == "desc"));
            } else if name == "page[number]" || name == "page[size]" {
                let Ok(n) = value.parse::<usize>() else {
                    return self.violation("GET", path, format!("{name}: not an integer"));
                };
                if name == "page[number]" {
                    number = n;
                } else {
                    size = n;
                }
            } else {
                return self.violation("GET", path, format!("unknown query parameter {name}"));
            }
        }
        // Pages start at 1; the node never asks for more than 200 a page (its `pageSize`
        // maxValue): the fake holds the adapter to that.
        if number == 0 || size == 0 || size > 200 {
            return self.violation("GET", path, "page[number] ≥ 1 and 1 ≤ page[size] ≤ 200");
        }
        if let Some(expr) = &filter {
            for term in expr.terms() {
                let custom = term.field.starts_with('@');
                let custom_ok = custom && kind != Kind::Task && self.field_exists(&term.field[1..]);
                if !(filters.contains(&term.field.as_str()) || custom_ok) {
                    // An unknown custom field: the RDQL page lists the resources that filter
                    // on them; what RD answers for a slug that does not exist is not
                    // documented: 422, a choice.
                    if custom && kind != Kind::Task {
                        return Reply::error(
                            422,
                            "INVALID_FILTER",
                            format!("custom field {} does not exist", term.field),
                        );
                    }
                    return self.violation("GET", path, format!("filter on {}", term.field));
                }
            }
        }
        let mut rows: Vec<&Value> = self
            .list(kind)
            .iter()
            .filter(|r| {
                filter
                    .as_ref()
                    .is_none_or(|f| f.matches(&|field: &str| Self::values(kind, r, field)))
            })
            .collect();
        if let Some((field, desc)) = &sort {
            let key = |r: &Value| -> (String, u64) {
                let id = r["id"].as_str().unwrap_or_default();
                if field == "updated_at" {
                    (String::new(), self.changed.get(id).copied().unwrap_or(0))
                } else {
                    (Self::values(kind, r, field).join(","), 0)
                }
            };
            rows.sort_by_key(|r| key(r));
            if *desc {
                rows.reverse();
            }
        }
        let total = rows.len();
        let data: Vec<Value> = rows
            .into_iter()
            .skip((number - 1) * size)
            .take(size)
            .cloned()
            .collect();
        let pages = total.div_ceil(size).max(1);
        let link = |n: usize| format!("{path}?page[number]={n}&page[size]={size}");
        let mut links = json!({"first": link(1), "self": link(number), "last": link(pages)});
        if number > 1 {
            links["prev"] = json!(link(number - 1));
        }
        if number < pages {
            links["next"] = json!(link(number + 1));
        }
        Reply::ok(200, json!({"data": data, "links": links}))
    }

    /// Reads `data` of a write (crm-v2-introduction: "a estrutura base de payload ... será
    /// sempre `{"data": {}}`").
    fn data<'a>(
        &mut self,
        method: &str,
        path: &str,
        body: &'a Value,
    ) -> Result<&'a Map<String, Value>, Reply> {
        match body.get("data").and_then(Value::as_object) {
            Some(d) if body.as_object().is_some_and(|b| b.len() == 1) => Ok(d),
            _ => Err(self.violation(method, path, "the body must be {\"data\": {...}}")),
        }
    }

    /// Checks a contact's `phones`, `emails` and `custom_fields` (ContactsResource.ts builds
    /// them: phones `[{phone, type}]` with type among mobile/work/home/fax, emails
    /// `[{email}]`, custom fields `{slug: string}`).
    fn check_contact(
        &mut self,
        method: &str,
        path: &str,
        data: &Map<String, Value>,
    ) -> Option<Reply> {
        const KNOWN: [&str; 9] = [
            "name",
            "job_title",
            "birthday",
            "phones",
            "emails",
            "custom_fields",
            "legal_bases",
            "organization_id",
            "social_profiles",
        ];
        for key in data.keys() {
            if !KNOWN.contains(&key.as_str()) {
                return Some(self.violation(
                    method,
                    path,
                    format!("data.{key} is not a contact field"),
                ));
            }
        }
        if let Some(name) = data.get("name") {
            if name.as_str().is_none_or(|n| n.trim().is_empty()) {
                return Some(self.violation(method, path, "data.name must be a non-empty string"));
            }
        }
        if let Some(phones) = data.get("phones") {
            let ok = phones.as_array().is_some_and(|a| {
                a.iter().all(|p| {
                    p.as_object()
                        .is_some_and(|o| o.keys().all(|k| k == "phone" || k == "type"))
                        && p["phone"].as_str().is_some_and(|s| !s.is_empty())
                        && p["type"].as_str().is_some_and(|t| PHONE_TYPES.contains(&t))
                })
            });
            if !ok {
                return Some(self.violation(method, path, "data.phones must be [{phone, type}]"));
            }
        }
        if let Some(emails) = data.get("emails") {
            let ok = emails.as_array().is_some_and(|a| {
                a.iter()
                    .all(|e| e["email"].as_str().is_some_and(|s| s.contains('@')))
            });
            if !ok {
                return Some(self.violation(method, path, "data.emails must be [{email}]"));
            }
        }
        if let Some(fields) = data.get("custom_fields") {
            let Some(fields) = fields.as_object() else {
                return Some(self.violation(method, path, "data.custom_fields must be an object"));
            };
            for (slug, value) in fields {
                if !self.field_exists(slug) {
                    // Not documented: 422, a choice.
                    return Some(Reply::error(
                        422,
                        "UNPROCESSABLE_ENTITY",
                        format!("custom field {slug} does not exist"),
                    ));
                }
                if !(value.is_string() || value.is_null()) {
                    return Some(self.violation(
                        method,
                        path,
                        format!("custom field {slug}: not a string"),
                    ));
                }
            }
        }
        None
    }

    pub(super) fn contact_create(&mut self, path: &str, body: &Value) -> Reply {
        let data = match self.data("POST", path, body) {
            Ok(d) => d.clone(),
            Err(r) => return r,
        };
        if !data.contains_key("name") {
            // The node requires a name ("Name is required").
            return self.violation("POST", path, "data.name is required");
        }
        if let Some(r) = self.check_contact("POST", path, &data) {
            return r;
        }
        let mut record = json!({"phones": [], "emails": [], "custom_fields": {}});
        for (k, v) in data {
            record[k] = v;
        }
        Reply::ok(201, json!({"data": self.insert(Kind::Contact, record)}))
    }

    /// `PUT /contacts/{id}`: every field sent replaces the stored one — `phones`, `emails` and
    /// `custom_fields` whole (CRMS.md §3: the update "replaces the phones, emails … arrays"; for
    /// `custom_fields` nothing is documented and the fake replaces it too, the stricter choice).
    pub(super) fn contact_update(&mut self, path: &str, id: &str, body: &Value) -> Reply {
        let data = match self.data("PUT", path, body) {
            Ok(d) => d.clone(),
            Err(r) => return r,
        };
        if let Some(r) = self.check_contact("PUT", path, &data) {
            return r;
        }
        if self.get(Kind::Contact, id).is_none() {
            return Reply::error(404, "NOT_FOUND", "contact not found");
        }
        let now = self.touch(id);
        let Some(record) = self.find_mut(Kind::Contact, id) else {
            return Reply::error(404, "NOT_FOUND", "contact not found");
        };
        for (k, v) in data {
            record[k] = v;
        }
        record["updated_at"] = json!(now);
        Reply::ok(200, json!({"data": record.clone()}))
    }

    /// `POST /deals` (DealsResource.ts: `name` and `owner_id` required, `status` only
    /// `ongoing` on create, `pipeline_id` needed with `stage_id`, ids 24-hex).
    pub(super) fn deal_create(&mut self, path: &str, body: &Value) -> Reply {
        let data = match self.data("POST", path, body) {
            Ok(d) => d.clone(),
            Err(r) => return r,
        };
        const KNOWN: [&str; 15] = [
            "name",
            "owner_id",
            "status",
            "pipeline_id",
            "stage_id",
            "contact_ids",
            "custom_fields",
            "source_id",
            "campaign_id",
            "organization_id",
            "rating",
            "recurrence_price",
            "one_time_price",
            "expected_close_date",
            "distribution_settings",
        ];
        if let Some(k) = data.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return self.violation("POST", path, format!("data.{k} is not a deal field"));
        }
        if data
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(|n| n.trim().is_empty())
        {
            return self.violation("POST", path, "data.name is required");
        }
        let owner = data
            .get("owner_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !is_hex24(owner) {
            return self.violation("POST", path, "data.owner_id must be a 24-hex id");
        }
        if !self.user_exists(owner) {
            return Reply::error(422, "UNPROCESSABLE_ENTITY", "owner_id is not a user");
        }
        if data.get("status").is_some_and(|s| s != "ongoing") {
            return self.violation("POST", path, "data.status must be \"ongoing\" on create");
        }
        if data.contains_key("stage_id") && !data.contains_key("pipeline_id") {
            return self.violation("POST", path, "data.stage_id needs data.pipeline_id");
        }
        let contacts: Vec<String> = match data.get("contact_ids") {
            None => Vec::new(),
            Some(v) => match v.as_array() {
                Some(a) if a.iter().all(|c| c.as_str().is_some_and(is_hex24)) => a
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect(),
                _ => return self.violation("POST", path, "data.contact_ids must be 24-hex ids"),
            },
        };
        if contacts
            .iter()
            .any(|c| self.get(Kind::Contact, c).is_none())
        {
            return Reply::error(422, "UNPROCESSABLE_ENTITY", "contact_ids names no contact");
        }
        let pipeline = data
            .get("pipeline_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                self.pipelines
                    .first()
                    .and_then(|p| p["id"].as_str().map(str::to_owned))
            });
        let mut record =
            json!({"status": "ongoing", "contact_ids": contacts, "pipeline_id": pipeline});
        for (k, v) in data {
            if k != "contact_ids" {
                record[k] = v;
            }
        }
        Reply::ok(201, json!({"data": self.insert(Kind::Deal, record)}))
    }

    /// Checks a task body (TasksResource.ts / TasksDescription.ts: `name`, `deal_id`,
    /// `created_by_id` required on create; `type` among seven; `status` open, completed or
    /// canceled, set by update; `due_date` a DateTime; `owner_ids` ids).
    fn check_task(
        &mut self,
        method: &str,
        path: &str,
        data: &Map<String, Value>,
        create: bool,
    ) -> Option<Reply> {
        const CREATE: [&str; 8] = [
            "name",
            "deal_id",
            "created_by_id",
            "description",
            "type",
            "due_date",
            "owner_ids",
            // Not in the node's create; sent as "open" by third-party clients: the fake takes
            // only "open" on create.
            "status",
        ];
        const UPDATE: [&str; 8] = [
            "name",
            "description",
            "type",
            "status",
            "due_date",
            "deal_id",
            "completed_by_id",
            "owner_ids",
        ];
        let known: &[&str] = if create { &CREATE } else { &UPDATE };
        if let Some(k) = data.keys().find(|k| !known.contains(&k.as_str())) {
            return Some(self.violation(
                method,
                path,
                format!("data.{k} is not a task field here"),
            ));
        }
        if data.is_empty() {
            return Some(self.violation(method, path, "nothing to update"));
        }
        for key in ["name", "description"] {
            if data.get(key).is_some_and(|v| !v.is_string()) {
                return Some(self.violation(method, path, format!("data.{key} must be a string")));
            }
        }
        if create {
            for key in ["name", "deal_id", "created_by_id"] {
                if data
                    .get(key)
                    .and_then(Value::as_str)
                    .is_none_or(|v| v.trim().is_empty())
                {
                    return Some(self.violation(method, path, format!("data.{key} is required")));
                }
            }
            if data.get("status").is_some_and(|s| s != "open") {
                return Some(self.violation(method, path, "data.status on create: only \"open\""));
            }
        }
        if let Some(t) = data.get("type") {
            if !t.as_str().is_some_and(|t| TASK_TYPES.contains(&t)) {
                return Some(self.violation(method, path, "data.type is not a task type"));
            }
        }
        if let Some(s) = data.get("status") {
            if !s
                .as_str()
                .is_some_and(|s| ["open", "completed", "canceled"].contains(&s))
            {
                return Some(self.violation(method, path, "data.status is not a task status"));
            }
        }
        if let Some(d) = data.get("due_date") {
            let ok = d
                .as_str()
                .is_some_and(|d| chrono::DateTime::parse_from_rfc3339(d).is_ok());
            if !ok {
                return Some(self.violation(method, path, "data.due_date must be ISO 8601"));
            }
        }
        for key in ["created_by_id", "completed_by_id"] {
            if let Some(u) = data.get(key) {
                let id = u.as_str().unwrap_or_default();
                if !is_hex24(id) || !self.user_exists(id) {
                    return Some(Reply::error(
                        422,
                        "UNPROCESSABLE_ENTITY",
                        format!("{key} is not a user"),
                    ));
                }
            }
        }
        if let Some(deal) = data.get("deal_id") {
            let id = deal.as_str().unwrap_or_default();
            if !is_hex24(id) {
                return Some(self.violation(method, path, "data.deal_id must be a 24-hex id"));
            }
            if self.get(Kind::Deal, id).is_none() {
                return Some(Reply::error(
                    422,
                    "UNPROCESSABLE_ENTITY",
                    "deal_id names no deal",
                ));
            }
        }
        None
    }

    pub(super) fn task_create(&mut self, path: &str, body: &Value) -> Reply {
        let data = match self.data("POST", path, body) {
            Ok(d) => d.clone(),
            Err(r) => return r,
        };
        if let Some(r) = self.check_task("POST", path, &data, true) {
            return r;
        }
        let mut record = json!({"status": "open", "type": "task", "completed_at": null});
        for (k, v) in data {
            record[k] = v;
        }
        Reply::ok(201, json!({"data": self.insert(Kind::Task, record)}))
    }

    pub(super) fn task_update(&mut self, path: &str, id: &str, body: &Value) -> Reply {
        let data = match self.data("PUT", path, body) {
            Ok(d) => d.clone(),
            Err(r) => return r,
        };
        if let Some(r) = self.check_task("PUT", path, &data, false) {
            return r;
        }
        if self.get(Kind::Task, id).is_none() {
            return Reply::error(404, "NOT_FOUND", "task not found");
        }
        let now = self.touch(id);
        let Some(record) = self.find_mut(Kind::Task, id) else {
            return Reply::error(404, "NOT_FOUND", "task not found");
        };
        for (k, v) in data {
            record[k] = v;
        }
        if record["status"] == "completed" && record["completed_at"].is_null() {
            record["completed_at"] = json!(now);
        }
        record["updated_at"] = json!(now);
        Reply::ok(200, json!({"data": record.clone()}))
    }

    pub(super) fn one(&self, kind: Kind, id: &str) -> Reply {
        match self.get(kind, id) {
            Some(r) => Reply::ok(200, json!({"data": r})),
            None => Reply::error(404, "NOT_FOUND", "not found"),
        }
    }
}
