//! The operations the fake answers, and matching a request path to one.
//!
//! Zoho's documents clash when read together: `record.json`'s `/crm/v8/{module_api_name}` and
//! `/crm/v8/{module_api_name}/{id}` also match `/crm/v8/Notes`, `/crm/v8/coql` and
//! `/crm/v8/settings/fields`, and `record.json` declares `/{id}` and `/{external_field_value}`
//! with the same shape. Concrete paths are matched first, then `/{module}/upsert` before any
//! `/{module}/{id}` (which the fake does not serve) — the `templated-path-clash` entry of
//! [`super::SPEC_PATCHES`].

/// Which of Zoho's documents an operation is validated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Doc {
    Record,
    Notes,
    Coql,
    Fields,
}

impl Doc {
    /// Every document the fake validates against.
    pub(super) const ALL: [Doc; 4] = [Doc::Record, Doc::Notes, Doc::Coql, Doc::Fields];

    /// The document's file under `zoho/v8.0/`.
    pub(super) fn file(self) -> &'static str {
        match self {
            Doc::Record => "record.json",
            Doc::Notes => "notes.json",
            Doc::Coql => "coql.json",
            Doc::Fields => "fields.json",
        }
    }
}

/// An operation of Zoho's API the fake implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    FieldsList,
    FieldCreate,
    Coql,
    Upsert,
    UpdateRecords,
    DeleteRecords,
    NotesList,
    NotesCreate,
    NotesUpdate,
    NotesDelete,
}

/// `(operation, method, document, path template as the document writes it, operationId)`.
pub(super) const OPERATIONS: &[(Op, &str, Doc, &str, &str)] = &[
    (
        Op::FieldsList,
        "GET",
        Doc::Fields,
        "/crm/v8/settings/fields",
        "Get Fields",
    ),
    (
        Op::FieldCreate,
        "POST",
        Doc::Fields,
        "/crm/v8/settings/fields",
        "Create Field",
    ),
    (Op::Coql, "POST", Doc::Coql, "/crm/v8/coql", "Get Records"),
    (
        Op::Upsert,
        "POST",
        Doc::Record,
        "/crm/v8/{module_api_name}/upsert",
        "Upsert Records",
    ),
    (
        Op::UpdateRecords,
        "PUT",
        Doc::Record,
        "/crm/v8/{module_api_name}",
        "Update Records",
    ),
    (
        Op::DeleteRecords,
        "DELETE",
        Doc::Record,
        "/crm/v8/{module_api_name}",
        "Delete Records",
    ),
    (
        Op::NotesList,
        "GET",
        Doc::Notes,
        "/crm/v8/Notes",
        "Get Notes",
    ),
    (
        Op::NotesCreate,
        "POST",
        Doc::Notes,
        "/crm/v8/Notes",
        "Create Notes",
    ),
    (
        Op::NotesUpdate,
        "PUT",
        Doc::Notes,
        "/crm/v8/Notes",
        "Update Notes",
    ),
    (
        Op::NotesDelete,
        "DELETE",
        Doc::Notes,
        "/crm/v8/Notes",
        "Delete Notes",
    ),
];

/// A matched request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Route {
    pub op: Op,
    pub doc: Doc,
    pub template: &'static str,
    pub method: &'static str,
}

fn route(op: Op) -> Option<Route> {
    OPERATIONS
        .iter()
        .find(|(o, ..)| *o == op)
        .map(|(op, method, doc, template, _)| Route {
            op: *op,
            doc: *doc,
            template,
            method,
        })
}

/// The operation `method path` invokes, if the fake implements it. The module must be
/// `Contacts`, written as Zoho writes it; a trailing slash is ignored.
pub(super) fn match_route(method: &str, path: &str) -> Option<Route> {
    let path = path.trim_end_matches('/');
    let method = method.to_ascii_uppercase();
    // Concrete paths first: they would also match record.json's templates.
    let op = match (method.as_str(), path) {
        ("GET", "/crm/v8/settings/fields") => Some(Op::FieldsList),
        ("POST", "/crm/v8/settings/fields") => Some(Op::FieldCreate),
        ("POST", "/crm/v8/coql") => Some(Op::Coql),
        ("GET", "/crm/v8/Notes") => Some(Op::NotesList),
        ("POST", "/crm/v8/Notes") => Some(Op::NotesCreate),
        ("PUT", "/crm/v8/Notes") => Some(Op::NotesUpdate),
        ("DELETE", "/crm/v8/Notes") => Some(Op::NotesDelete),
        (_, "/crm/v8/settings/fields" | "/crm/v8/coql" | "/crm/v8/Notes") => None,
        ("POST", "/crm/v8/Contacts/upsert") => Some(Op::Upsert),
        ("PUT", "/crm/v8/Contacts") => Some(Op::UpdateRecords),
        ("DELETE", "/crm/v8/Contacts") => Some(Op::DeleteRecords),
        _ => None,
    }?;
    route(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concrete_paths_win_and_only_contacts_are_served() {
        assert_eq!(
            match_route("post", "/crm/v8/coql").map(|r| r.op),
            Some(Op::Coql)
        );
        assert_eq!(
            match_route("PUT", "/crm/v8/Notes/").map(|r| r.op),
            Some(Op::NotesUpdate)
        );
        let upsert = match_route("POST", "/crm/v8/Contacts/upsert").unwrap();
        assert_eq!(upsert.template, "/crm/v8/{module_api_name}/upsert");
        assert_eq!(upsert.doc, Doc::Record);
        assert_eq!(
            match_route("PUT", "/crm/v8/Contacts").map(|r| r.template),
            Some("/crm/v8/{module_api_name}")
        );
        for (method, path) in [
            ("PUT", "/crm/v8/coql"),
            ("GET", "/crm/v8/Notes/123"),
            ("POST", "/crm/v8/Leads/upsert"),
            ("POST", "/crm/v8/contacts/upsert"),
            ("POST", "/crm/v8/Contacts"),
            ("GET", "/crm/v8/Contacts/search"),
            ("PATCH", "/crm/v8/settings/fields"),
            ("GET", "/crm/v7/Notes"),
        ] {
            assert_eq!(match_route(method, path), None, "{method} {path}");
        }
    }
}
