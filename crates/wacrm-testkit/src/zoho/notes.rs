//! Notes: `GET`, `POST` and `PUT /crm/v8/Notes`.

use std::cmp::Ordering;

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use super::server::{error_body, field_error, Call, Reply};
use super::state::{parse_id, user, zoho_time, Note, State, CONTACTS, CONTACTS_MODULE_ID};

/// The fields `fields` may name (besides `id`).
const NOTE_FIELDS: &[&str] = &[
    "Note_Title",
    "Note_Content",
    "Parent_Id",
    "Created_Time",
    "Modified_Time",
    "Owner",
    "Created_By",
    "Modified_By",
];
/// The fields a write may set.
const WRITABLE: &[&str] = &["Note_Title", "Note_Content", "Parent_Id"];
/// The fields `sort_by` may name.
const SORT_FIELDS: &[&str] = &["id", "Created_Time", "Modified_Time"];
/// The longest title and content, in characters.
const MAX_TITLE: usize = 120;
const MAX_CONTENT: usize = 65_535;
/// The largest `per_page`, and how deep `page` × `per_page` may reach without a page token.
const MAX_PER_PAGE: usize = 200;
const MAX_DEPTH: usize = 2000;
/// The most `fields` and `ids` one list takes.
const MAX_FIELDS: usize = 50;
const MAX_IDS: usize = 100;

/// A note write's checked members: `Some(None)` clears a title or content.
#[derive(Default)]
struct NoteWrite {
    title: Option<Option<String>>,
    content: Option<Option<String>>,
    parent_id: Option<u64>,
}

/// The list parameters of `GET /Notes`, checked.
struct ListQuery {
    fields: Vec<String>,
    ids: Option<Vec<u64>>,
    page: usize,
    per_page: usize,
    sort_by: String,
    descending: bool,
}

fn expected_field_missing(index: usize) -> Value {
    error_body(
        "EXPECTED_FIELD_MISSING",
        "should contain either content or title",
        json!({"expected_fields": [
            {"api_name": "Note_Content", "json_path": format!("$.data[{index}].Note_Content")},
            {"api_name": "Note_Title", "json_path": format!("$.data[{index}].Note_Title")},
        ]}),
    )
}

fn compare(a: &Note, b: &Note, sort_by: &str) -> Ordering {
    match sort_by {
        "Created_Time" => a.created.cmp(&b.created),
        "Modified_Time" => a.modified.cmp(&b.modified),
        _ => Ordering::Equal,
    }
    .then(a.id.cmp(&b.id))
}

impl State {
    /// Checks a note's members; `skip` names members the operation reads itself.
    fn check_note(&self, index: usize, item: &Value, skip: &[&str]) -> Result<NoteWrite, Value> {
        let path = |name: &str| format!("$.data[{index}].{name}");
        let Some(item) = item.as_object() else {
            return Err(field_error(
                "INVALID_DATA",
                "invalid data",
                "data",
                &path(""),
            ));
        };
        let mut write = NoteWrite::default();
        for (name, value) in item {
            if skip.contains(&name.as_str()) {
                continue;
            }
            if !WRITABLE.contains(&name.as_str()) {
                return Err(field_error(
                    "INVALID_DATA",
                    "invalid data",
                    name,
                    &path(name),
                ));
            }
            if name == "Parent_Id" {
                write.parent_id = Some(self.check_parent(index, value)?);
                continue;
            }
            let text = match value {
                Value::Null => None,
                Value::String(s) if s.is_empty() => None,
                Value::String(s) => Some(s.clone()),
                _ => {
                    return Err(field_error(
                        "INVALID_DATA",
                        "invalid data",
                        name,
                        &path(name),
                    ))
                }
            };
            let max = if name == "Note_Title" {
                MAX_TITLE
            } else {
                MAX_CONTENT
            };
            if text.as_ref().is_some_and(|t| t.chars().count() > max) {
                return Err(error_body(
                    "INVALID_DATA",
                    "invalid data",
                    json!({"maximum_length": max, "api_name": name, "json_path": path(name)}),
                ));
            }
            if name == "Note_Title" {
                write.title = Some(text);
            } else {
                write.content = Some(text);
            }
        }
        Ok(write)
    }

    /// `Parent_Id`: `{"module": {"api_name": "Contacts"}, "id": <a stored contact>}`.
    fn check_parent(&self, index: usize, parent: &Value) -> Result<u64, Value> {
        let path = format!("$.data[{index}].Parent_Id");
        let Some(module) = parent.get("module").filter(|m| !m.is_null()) else {
            return Err(field_error(
                "MANDATORY_NOT_FOUND",
                "required field not found",
                "module",
                &format!("{path}.module"),
            ));
        };
        let module_ok = module.get("api_name").and_then(Value::as_str) == Some(CONTACTS)
            && module
                .get("id")
                .and_then(Value::as_str)
                .is_none_or(|id| id == CONTACTS_MODULE_ID);
        if !module_ok {
            return Err(field_error(
                "INVALID_DATA",
                "invalid data",
                "module",
                &format!("{path}.module"),
            ));
        }
        let Some(id) = parent.get("id").and_then(Value::as_str) else {
            return Err(field_error(
                "MANDATORY_NOT_FOUND",
                "required field not found",
                "id",
                &format!("{path}.id"),
            ));
        };
        match parse_id(id).filter(|id| self.contacts.contains_key(id)) {
            Some(id) => Ok(id),
            None => Err(field_error(
                "INVALID_DATA",
                "the id given seems to be invalid",
                "Parent_Id",
                &format!("{path}.id"),
            )),
        }
    }

    fn note_success(note: &Note, message: &str) -> Value {
        json!({
            "code": "SUCCESS",
            "details": State::write_details(note.id, note.created, note.modified),
            "message": message,
            "status": "success",
        })
    }

    /// `POST /Notes`.
    pub(super) fn notes_create(&mut self, call: &Call<'_>) -> Reply {
        let items = match self.batch_items(call, "data") {
            Ok(items) => items,
            Err(reply) => return reply,
        };
        let results = items
            .iter()
            .enumerate()
            .map(|(i, item)| self.create_note(i, item))
            .collect();
        Reply::batch("data", results, StatusCode::CREATED)
    }

    fn create_note(&mut self, index: usize, item: &Value) -> Result<Value, Value> {
        let write = self.check_note(index, item, &[])?;
        let title = write.title.flatten();
        let content = write.content.flatten();
        if title.is_none() && content.is_none() {
            return Err(expected_field_missing(index));
        }
        let Some(parent_id) = write.parent_id else {
            return Err(field_error(
                "MANDATORY_NOT_FOUND",
                "required field not found",
                "Parent_Id",
                &format!("$.data[{index}].Parent_Id"),
            ));
        };
        let id = self.new_id();
        let now = self.now();
        let note = Note {
            id,
            parent_id,
            title,
            content,
            created: now,
            modified: now,
        };
        let item = State::note_success(&note, "record added");
        self.notes.insert(id, note);
        Ok(item)
    }

    /// `PUT /Notes`: updates by `id`.
    /// `DELETE /Notes?ids=…`: the notes are gone.
    pub(super) fn notes_delete(&mut self, call: &Call<'_>) -> Reply {
        self.delete_ids(call, |state, id| state.notes.remove(&id).is_some())
    }

    pub(super) fn notes_update(&mut self, call: &Call<'_>) -> Reply {
        let items = match self.batch_items(call, "data") {
            Ok(items) => items,
            Err(reply) => return reply,
        };
        let results = items
            .iter()
            .enumerate()
            .map(|(i, item)| self.update_note(i, item))
            .collect();
        Reply::batch("data", results, StatusCode::OK)
    }

    fn update_note(&mut self, index: usize, item: &Value) -> Result<Value, Value> {
        let path = format!("$.data[{index}].id");
        let Some(id) = item.get("id").and_then(Value::as_str) else {
            return Err(field_error(
                "MANDATORY_NOT_FOUND",
                "required field not found",
                "id",
                &path,
            ));
        };
        let Some(id) = parse_id(id).filter(|id| self.notes.contains_key(id)) else {
            return Err(field_error(
                "INVALID_DATA",
                "the id given seems to be invalid",
                "id",
                &path,
            ));
        };
        let write = self.check_note(index, item, &["id"])?;
        // Zoho: "either note content or note title must be provided" on every update.
        let gives_text = [&write.title, &write.content]
            .iter()
            .any(|t| t.as_ref().is_some_and(Option::is_some));
        if !gives_text {
            return Err(expected_field_missing(index));
        }
        let now = self.now();
        let Some(note) = self.notes.get_mut(&id) else {
            return Err(field_error(
                "INVALID_DATA",
                "the id given seems to be invalid",
                "id",
                &path,
            ));
        };
        if let Some(title) = write.title {
            note.title = title;
        }
        if let Some(content) = write.content {
            note.content = content;
        }
        if let Some(parent_id) = write.parent_id {
            note.parent_id = parent_id;
        }
        note.modified = now;
        Ok(State::note_success(note, "record updated"))
    }

    /// Checks the list parameters of `GET /Notes` beyond the document's types.
    fn list_query(call: &Call<'_>) -> Result<ListQuery, String> {
        let list = |text: &str| -> Vec<String> {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let fields = list(call.query("fields").unwrap_or(""));
        if fields.is_empty() {
            return Err("?fields: names no field; Zoho requires the fields to answer".to_owned());
        }
        if fields.len() > MAX_FIELDS {
            return Err(format!(
                "?fields: {} names; at most {MAX_FIELDS}",
                fields.len()
            ));
        }
        if let Some(unknown) = fields
            .iter()
            .find(|f| *f != "id" && !NOTE_FIELDS.contains(&f.as_str()))
        {
            return Err(format!(
                "?fields: {unknown:?} is not a field of Notes {NOTE_FIELDS:?}"
            ));
        }
        let ids = match call.query("ids") {
            None => None,
            Some(text) => {
                let ids = list(text);
                if ids.is_empty() || ids.len() > MAX_IDS {
                    return Err(format!("?ids: {} ids; 1 to {MAX_IDS}", ids.len()));
                }
                let parsed: Option<Vec<u64>> = ids.iter().map(|i| parse_id(i)).collect();
                match parsed {
                    Some(parsed) => Some(parsed),
                    None => return Err(format!("?ids: {text:?} is not a list of record ids")),
                }
            }
        };
        let number = |name: &str, default: usize| -> Result<usize, String> {
            match call.query(name) {
                None => Ok(default),
                Some(text) => text
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("?{name}: {text:?} is not a positive integer")),
            }
        };
        let page = number("page", 1)?;
        let per_page = number("per_page", MAX_PER_PAGE)?;
        if per_page > MAX_PER_PAGE {
            return Err(format!("?per_page: {per_page}; at most {MAX_PER_PAGE}"));
        }
        if page.saturating_mul(per_page) > MAX_DEPTH {
            return Err(format!(
                "?page: page {page} of {per_page} reaches past the first {MAX_DEPTH} records, \
                 which needs a page_token (the fake implements none)"
            ));
        }
        let sort_by = call.query("sort_by").unwrap_or("id");
        if !SORT_FIELDS.contains(&sort_by) {
            return Err(format!(
                "?sort_by: {sort_by:?} is not one of {SORT_FIELDS:?}"
            ));
        }
        let descending = match call.query("sort_order") {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(other) => return Err(format!("?sort_order: {other:?} is not asc or desc")),
        };
        Ok(ListQuery {
            fields,
            ids,
            page,
            per_page,
            sort_by: sort_by.to_owned(),
            descending,
        })
    }

    /// A note as `GET /Notes` answers it: `id` and the fields asked for.
    fn note_json(&self, note: &Note, fields: &[String]) -> Value {
        let mut out = Map::new();
        out.insert("id".to_owned(), Value::from(note.id.to_string()));
        for field in fields {
            let value = match field.as_str() {
                "Note_Title" => note.title.clone().map_or(Value::Null, Value::from),
                "Note_Content" => note.content.clone().map_or(Value::Null, Value::from),
                "Parent_Id" => json!({
                    "module": {"api_name": CONTACTS, "id": CONTACTS_MODULE_ID},
                    "name": self.contact_name(note.parent_id),
                    "id": note.parent_id.to_string(),
                }),
                "Created_Time" => Value::from(zoho_time(note.created)),
                "Modified_Time" => Value::from(zoho_time(note.modified)),
                "Owner" | "Created_By" | "Modified_By" => user(),
                _ => continue,
            };
            out.insert(field.clone(), value);
        }
        Value::Object(out)
    }

    /// `GET /Notes`.
    pub(super) fn notes_list(&mut self, call: &Call<'_>) -> Reply {
        let query = match State::list_query(call) {
            Ok(query) => query,
            Err(line) => return self.violation(call, line),
        };
        let mut notes: Vec<&Note> = self
            .notes
            .values()
            .filter(|n| query.ids.as_ref().is_none_or(|ids| ids.contains(&n.id)))
            .collect();
        notes.sort_by(|a, b| {
            let order = compare(a, b, &query.sort_by);
            if query.descending {
                order.reverse()
            } else {
                order
            }
        });
        let start = (query.page - 1) * query.per_page;
        let page: Vec<Value> = notes
            .iter()
            .skip(start)
            .take(query.per_page)
            .map(|n| self.note_json(n, &query.fields))
            .collect();
        if page.is_empty() {
            return Reply::no_content();
        }
        let more = notes.len() > start + query.per_page;
        Reply::json(
            StatusCode::OK,
            json!({
                "data": page,
                "info": {
                    "page": query.page,
                    "per_page": query.per_page,
                    "count": page.len(),
                    "sort_by": query.sort_by,
                    "sort_order": if query.descending { "desc" } else { "asc" },
                    "more_records": more,
                },
            }),
        )
    }
}
