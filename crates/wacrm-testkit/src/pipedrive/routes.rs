//! The operations the fake answers, and matching a request path to one.

use std::collections::HashMap;

/// Which of Pipedrive's documents (and URL prefixes) an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    /// `/api/v1/<path>`, validated against `openapi-v1.yaml`'s `<path>` (its server lacks `/api`).
    V1,
    /// `/api/v2/<path>`, validated against `openapi-v2.yaml`'s `<path>`.
    V2,
}

impl Api {
    /// The URL prefix the fake serves the document under.
    pub(super) fn prefix(self) -> &'static str {
        match self {
            Api::V1 => "/api/v1",
            Api::V2 => "/api/v2",
        }
    }

    /// The document's file under the specs directory.
    pub(super) fn file(self) -> &'static str {
        match self {
            Api::V1 => "pipedrive/openapi-v1.yaml",
            Api::V2 => "pipedrive/openapi-v2.yaml",
        }
    }
}

/// An operation of Pipedrive's API the fake implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    UsersMe,
    PersonFieldsList,
    PersonFieldCreate,
    PersonFieldGet,
    PersonsList,
    PersonCreate,
    PersonPatch,
    PersonDelete,
    NotesList,
    NoteCreate,
    NoteGet,
    NoteUpdate,
    NoteDelete,
}

/// `(operation, method, document, path template as written in the document, token cost)`.
///
/// The cost is used only when the documents are absent: with them, each operation costs its
/// `x-token-cost` (a test checks that the two agree).
pub(super) const OPERATIONS: &[(Op, &str, Api, &str, u64)] = &[
    (Op::UsersMe, "GET", Api::V1, "/users/me", 2),
    (Op::PersonFieldsList, "GET", Api::V1, "/personFields", 20),
    (Op::PersonFieldCreate, "POST", Api::V1, "/personFields", 10),
    (Op::PersonFieldGet, "GET", Api::V1, "/personFields/{id}", 2),
    (Op::PersonsList, "GET", Api::V2, "/persons", 10),
    (Op::PersonCreate, "POST", Api::V2, "/persons", 5),
    (Op::PersonPatch, "PATCH", Api::V2, "/persons/{id}", 5),
    (Op::PersonDelete, "DELETE", Api::V2, "/persons/{id}", 3),
    (Op::NotesList, "GET", Api::V1, "/notes", 20),
    (Op::NoteCreate, "POST", Api::V1, "/notes", 10),
    (Op::NoteGet, "GET", Api::V1, "/notes/{id}", 2),
    (Op::NoteUpdate, "PUT", Api::V1, "/notes/{id}", 10),
    (Op::NoteDelete, "DELETE", Api::V1, "/notes/{id}", 6),
];

/// A matched request.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub op: Op,
    pub api: Api,
    pub template: &'static str,
    pub method: &'static str,
    pub fallback_cost: u64,
    pub params: HashMap<&'static str, String>,
}

impl Route {
    /// A path parameter (always present for a matched template).
    pub(super) fn param(&self, name: &str) -> &str {
        self.params.get(name).map_or("", String::as_str)
    }
}

/// The operation `method path` invokes, if the fake implements it. A trailing slash is ignored.
pub(super) fn match_route(method: &str, path: &str) -> Option<Route> {
    let path = path.trim_end_matches('/');
    OPERATIONS
        .iter()
        .filter(|(_, m, ..)| m.eq_ignore_ascii_case(method))
        .find_map(|(op, m, api, template, cost)| {
            let rest = path.strip_prefix(api.prefix())?;
            let segments: Vec<&str> = rest.split('/').collect();
            let pattern: Vec<&'static str> = template.split('/').collect();
            if pattern.len() != segments.len() {
                return None;
            }
            let mut params = HashMap::new();
            for (p, s) in pattern.iter().zip(&segments) {
                match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if !s.is_empty() => {
                        params.insert(name, (*s).to_owned());
                    }
                    Some(_) => return None,
                    None if p == s => {}
                    None => return None,
                }
            }
            Some(Route {
                op: *op,
                api: *api,
                template,
                method: m,
                fallback_cost: *cost,
                params,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_select_the_document_and_parameters_are_captured() {
        let route = match_route("get", "/api/v1/personFields/12/").unwrap();
        assert_eq!(route.op, Op::PersonFieldGet);
        assert_eq!(route.api, Api::V1);
        assert_eq!(route.param("id"), "12");
        let route = match_route("PATCH", "/api/v2/persons/7").unwrap();
        assert_eq!(route.op, Op::PersonPatch);
        assert_eq!(route.template, "/persons/{id}");
        assert_eq!(
            match_route("GET", "/api/v2/persons").unwrap().op,
            Op::PersonsList
        );
        // v1 persons, v2 notes, unprefixed paths and other operations are not implemented.
        assert!(match_route("GET", "/api/v1/persons").is_none());
        assert!(match_route("GET", "/api/v2/notes").is_none());
        assert!(match_route("GET", "/v1/notes").is_none());
        assert!(match_route("GET", "/api/v2/persons/search").is_none());
        assert!(match_route("DELETE", "/api/v1/persons/1").is_none());
        assert_eq!(
            match_route("DELETE", "/api/v1/notes/1").unwrap().op,
            Op::NoteDelete
        );
        assert!(match_route("GET", "/api/v2/persons/").is_some());
    }
}
