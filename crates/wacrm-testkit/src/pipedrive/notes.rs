//! v1 notes: `GET /api/v1/notes`, `POST /api/v1/notes`, `GET`/`PUT /api/v1/notes/{id}`.

use std::cmp::Ordering;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::paging::offset_page;
use super::server::{Call, Reply};
use super::state::{is_v1_time, v1_time, Note, State};

/// The parents a note can be attached to; the fake holds persons only.
const PARENTS: &[&str] = &["person_id", "deal_id", "org_id", "lead_id", "project_id"];
/// The fields `sort` may name.
const SORT_FIELDS: &[&str] = &[
    "id",
    "user_id",
    "deal_id",
    "person_id",
    "org_id",
    "content",
    "add_time",
    "update_time",
];

/// A checked note body: only the members that were given.
#[derive(Default)]
struct NoteWrite {
    content: Option<String>,
    person_id: Option<i64>,
    add_time: Option<String>,
    pinned_to_person_flag: Option<bool>,
}

/// `sort`: `field [ASC|DESC]`, comma-separated; the direction defaults to ascending.
fn parse_sort(text: &str) -> Result<Vec<(String, bool)>, String> {
    let mut keys = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut words = part.split_whitespace();
        let field = words.next().unwrap_or("");
        if !SORT_FIELDS.contains(&field) {
            return Err(format!("{field:?} is not a sortable field {SORT_FIELDS:?}"));
        }
        let descending = match words.next().map(str::to_ascii_uppercase).as_deref() {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(other) => return Err(format!("{other:?} is not ASC or DESC")),
        };
        if words.next().is_some() {
            return Err(format!("{part:?} is not `field ASC|DESC`"));
        }
        keys.push((field.to_owned(), descending));
    }
    if keys.is_empty() {
        return Err("no field named".to_owned());
    }
    Ok(keys)
}

/// Compares two notes by one `sort` field.
fn compare(a: &Note, b: &Note, field: &str) -> Ordering {
    match field {
        "id" => a.id.cmp(&b.id),
        "user_id" => a.user_id.cmp(&b.user_id),
        "person_id" => a.person_id.cmp(&b.person_id),
        "content" => a.content.cmp(&b.content),
        "add_time" => a.add_time.cmp(&b.add_time),
        "update_time" => a.update_time.cmp(&b.update_time),
        // deal_id, org_id: null on every note the fake holds.
        _ => Ordering::Equal,
    }
}

fn is_date(text: &str) -> bool {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok() && text.len() == 10
}

impl State {
    /// `GET /notes`.
    pub(super) fn notes_list(&mut self, call: &Call<'_>) -> Reply {
        match self.list_notes(call) {
            Ok(reply) | Err(reply) => reply,
        }
    }

    fn list_notes(&mut self, call: &Call<'_>) -> Result<Reply, Reply> {
        let start = self.start(call)?;
        let limit = self.limit(call)?;
        let sort = match parse_sort(call.query("sort").unwrap_or("id ASC")) {
            Ok(sort) => sort,
            Err(line) => return Err(self.violation(call, format!("?sort: {line}"))),
        };
        for name in ["start_date", "end_date"] {
            if let Some(text) = call.query(name).filter(|t| !is_date(t)) {
                let line = format!("?{name}: {text:?} is not YYYY-MM-DD");
                return Err(self.violation(call, line));
            }
        }
        let integer = |name: &str| call.query(name).and_then(|t| t.parse::<i64>().ok());
        let person_id = integer("person_id");
        let user_id = integer("user_id");
        let pinned = call.query("pinned_to_person_flag").map(|f| f == "1");
        // The fake's notes are never attached to deals, organizations, leads or projects.
        let other_parent = ["deal_id", "org_id", "lead_id", "project_id"]
            .iter()
            .any(|name| call.query(name).is_some());
        let start_date = call.query("start_date");
        let end_date = call.query("end_date");
        let mut notes: Vec<&Note> = self
            .notes
            .values()
            .filter(|_| !other_parent)
            .filter(|n| person_id.is_none_or(|p| n.person_id == Some(p)))
            .filter(|n| user_id.is_none_or(|u| n.user_id == u))
            .filter(|n| pinned.is_none_or(|p| n.pinned_to_person_flag == p))
            .filter(|n| start_date.is_none_or(|d| n.add_time.get(..10) >= Some(d)))
            .filter(|n| end_date.is_none_or(|d| n.add_time.get(..10) <= Some(d)))
            .collect();
        notes.sort_by(|a, b| {
            sort.iter()
                .map(|(field, descending)| {
                    let order = compare(a, b, field);
                    if *descending {
                        order.reverse()
                    } else {
                        order
                    }
                })
                .find(|o| o.is_ne())
                .unwrap_or_else(|| a.id.cmp(&b.id))
        });
        let items = notes.iter().map(|n| self.note_json(n)).collect();
        Ok(offset_page(items, start, limit))
    }

    /// `GET /notes/{id}`.
    pub(super) fn note_get(&self, call: &Call<'_>) -> Reply {
        match self.notes.get(&call.id()) {
            Some(note) => Reply::success(self.note_json(note), Value::Null),
            None => Reply::not_found(),
        }
    }

    /// `POST /notes`: `content` and exactly one parent, which must be an existing person.
    pub(super) fn note_create(&mut self, call: &Call<'_>) -> Reply {
        let write = match self.note_write(call, true) {
            Ok(write) => write,
            Err(reply) => return reply,
        };
        let content = write.content.clone().unwrap_or_default();
        let id = self.new_note(content, write.person_id).id;
        self.apply_note(id, write, false);
        self.note_reply(id)
    }

    /// `PUT /notes/{id}`: replaces the members given, moves `update_time`.
    pub(super) fn note_update(&mut self, call: &Call<'_>) -> Reply {
        let id = call.id();
        if !self.notes.contains_key(&id) {
            return Reply::not_found();
        }
        let write = match self.note_write(call, false) {
            Ok(write) => write,
            Err(reply) => return reply,
        };
        self.apply_note(id, write, true);
        self.note_reply(id)
    }

    /// `DELETE /notes/{id}`: the note is gone (a second delete is a 404).
    pub(super) fn note_delete(&mut self, call: &Call<'_>) -> Reply {
        if self.notes.remove(&call.id()).is_none() {
            return Reply::not_found();
        }
        Reply::raw(StatusCode::OK, json!({"success": true, "data": true}))
    }

    fn note_reply(&self, id: i64) -> Reply {
        match self.notes.get(&id) {
            Some(note) => Reply::success(self.note_json(note), Value::Null),
            None => Reply::not_found(),
        }
    }

    fn apply_note(&mut self, id: i64, write: NoteWrite, touch: bool) {
        let now = v1_time(self.now());
        let Some(note) = self.notes.get_mut(&id) else {
            return;
        };
        if let Some(content) = write.content {
            note.content = content;
        }
        if let Some(person_id) = write.person_id {
            note.person_id = Some(person_id);
        }
        if let Some(add_time) = write.add_time {
            note.add_time = add_time;
        }
        if let Some(pinned) = write.pinned_to_person_flag {
            note.pinned_to_person_flag = pinned;
        }
        if touch {
            note.update_time = now;
        }
    }

    /// Reads and checks a note body; `create`: `content` and exactly one parent are required.
    fn note_write(&mut self, call: &Call<'_>, create: bool) -> Result<NoteWrite, Reply> {
        let body = call.body;
        let mut write = NoteWrite::default();
        match body.get("content") {
            Some(Value::String(content)) => write.content = Some(content.clone()),
            None if !create => {}
            _ => return Err(self.violation(call, "content: required, an HTML string")),
        }
        let parents: Vec<&str> = PARENTS
            .iter()
            .copied()
            .filter(|p| body.get(*p).is_some_and(|v| !v.is_null()))
            .collect();
        match parents.as_slice() {
            [] if create => {
                let line = format!("one of {PARENTS:?} is required");
                return Err(self.violation(call, line));
            }
            [] => {}
            ["person_id"] => {
                let id = body.get("person_id").and_then(Value::as_i64).unwrap_or(-1);
                if !self.persons.contains_key(&id) {
                    return Err(Reply::not_found());
                }
                write.person_id = Some(id);
            }
            [other] => {
                let line = format!("{other}: the fake holds notes on persons only");
                return Err(self.violation(call, line));
            }
            several => {
                let line = format!("{several:?}: a note is attached to exactly one parent");
                return Err(self.violation(call, line));
            }
        }
        if let Some(user_id) = body.get("user_id").filter(|v| !v.is_null()) {
            if user_id.as_i64() != Some(self.config.user_id) {
                return Err(Reply::error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "User {user_id} not found (the fake company has one user, {})",
                        self.config.user_id
                    ),
                ));
            }
        }
        match body.get("add_time") {
            None | Some(Value::Null) => {}
            Some(Value::String(time)) if is_v1_time(time) => write.add_time = Some(time.clone()),
            Some(other) => {
                let line = format!("add_time: {other} is not YYYY-MM-DD HH:MM:SS");
                return Err(self.violation(call, line));
            }
        }
        write.pinned_to_person_flag = body
            .get("pinned_to_person_flag")
            .and_then(Value::as_f64)
            .map(|flag| flag > 0.5);
        Ok(write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_reads_fields_and_directions() {
        assert_eq!(
            parse_sort("add_time DESC, id").unwrap(),
            vec![("add_time".to_owned(), true), ("id".to_owned(), false)]
        );
        assert_eq!(
            parse_sort("id asc").unwrap(),
            vec![("id".to_owned(), false)]
        );
        assert!(parse_sort("title DESC").is_err());
        assert!(parse_sort("id DOWN").is_err());
        assert!(parse_sort("").is_err());
    }
}
