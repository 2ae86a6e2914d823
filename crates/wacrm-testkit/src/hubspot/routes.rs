//! The operations the fake answers, and matching a request path to one.

use std::collections::HashMap;

use super::specs::Doc;

/// An operation of HubSpot's API the fake implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    ContactsUpsert,
    ContactsBatchUpdate,
    ContactsSearch,
    ContactsBatchRead,
    ContactsGdprDelete,
    CommunicationsBatchCreate,
    CommunicationsBatchUpdate,
    CommunicationsSearch,
    CommunicationsBatchArchive,
    NotesBatchCreate,
    AssociationPut,
    AssociationPutDefault,
    AssociationBatchCreate,
    AssociationList,
    PropertiesList,
    PropertyCreate,
    PropertyGet,
    OwnersList,
}

/// Which rate limit an operation counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limiter {
    /// The rolling ten-second window.
    TenSecondly,
    /// The search endpoints' own per-second window (exempt from the ten-second one).
    Search,
    /// Exempt from the ten-second window, with no other limit in the fake.
    Exempt,
}

/// `(operation, method, document, path template as written in the document, limiter)`.
///
/// The limiters mirror the documents' `x-hubspot-rate-limit-exemptions` (a test checks it).
pub(super) const OPERATIONS: &[(Op, &str, Doc, &str, Limiter)] = &[
    (
        Op::ContactsUpsert,
        "POST",
        Doc::Contacts,
        "/crm/v3/objects/contacts/batch/upsert",
        Limiter::TenSecondly,
    ),
    (
        Op::ContactsBatchUpdate,
        "POST",
        Doc::Contacts,
        "/crm/v3/objects/contacts/batch/update",
        Limiter::TenSecondly,
    ),
    (
        Op::ContactsSearch,
        "POST",
        Doc::Contacts,
        "/crm/v3/objects/contacts/search",
        Limiter::Search,
    ),
    (
        Op::ContactsBatchRead,
        "POST",
        Doc::Contacts,
        "/crm/v3/objects/contacts/batch/read",
        Limiter::TenSecondly,
    ),
    (
        Op::ContactsGdprDelete,
        "POST",
        Doc::Contacts,
        "/crm/v3/objects/contacts/gdpr-delete",
        Limiter::TenSecondly,
    ),
    (
        Op::CommunicationsBatchArchive,
        "POST",
        Doc::Communications,
        "/crm/v3/objects/communications/batch/archive",
        Limiter::TenSecondly,
    ),
    (
        Op::CommunicationsBatchCreate,
        "POST",
        Doc::Communications,
        "/crm/v3/objects/communications/batch/create",
        Limiter::TenSecondly,
    ),
    (
        Op::CommunicationsBatchUpdate,
        "POST",
        Doc::Communications,
        "/crm/v3/objects/communications/batch/update",
        Limiter::TenSecondly,
    ),
    (
        Op::CommunicationsSearch,
        "POST",
        Doc::Communications,
        "/crm/v3/objects/communications/search",
        Limiter::Search,
    ),
    (
        Op::NotesBatchCreate,
        "POST",
        Doc::Notes,
        "/crm/v3/objects/notes/batch/create",
        Limiter::TenSecondly,
    ),
    (
        Op::AssociationPut,
        "PUT",
        Doc::Associations,
        "/crm/v4/objects/{objectType}/{objectId}/associations/{toObjectType}/{toObjectId}",
        Limiter::TenSecondly,
    ),
    (
        Op::AssociationPutDefault,
        "PUT",
        Doc::Associations,
        "/crm/v4/objects/{fromObjectType}/{fromObjectId}/associations/default/{toObjectType}/{toObjectId}",
        Limiter::TenSecondly,
    ),
    (
        Op::AssociationBatchCreate,
        "POST",
        Doc::Associations,
        "/crm/v4/associations/{fromObjectType}/{toObjectType}/batch/create",
        Limiter::Exempt,
    ),
    (
        Op::AssociationList,
        "GET",
        Doc::Associations,
        "/crm/v4/objects/{objectType}/{objectId}/associations/{toObjectType}",
        Limiter::TenSecondly,
    ),
    (
        Op::PropertiesList,
        "GET",
        Doc::Properties,
        "/crm/v3/properties/{objectType}",
        Limiter::TenSecondly,
    ),
    (
        Op::PropertyCreate,
        "POST",
        Doc::Properties,
        "/crm/v3/properties/{objectType}",
        Limiter::TenSecondly,
    ),
    (
        Op::PropertyGet,
        "GET",
        Doc::Properties,
        "/crm/v3/properties/{objectType}/{propertyName}",
        Limiter::TenSecondly,
    ),
    (
        Op::OwnersList,
        "GET",
        Doc::Owners,
        "/crm/v3/owners",
        Limiter::TenSecondly,
    ),
];

/// A matched request.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub op: Op,
    pub doc: Doc,
    pub template: &'static str,
    pub method: &'static str,
    pub limiter: Limiter,
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
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    OPERATIONS
        .iter()
        .filter(|(_, m, ..)| m.eq_ignore_ascii_case(method))
        .find_map(|(op, m, doc, template, limiter)| {
            let pattern: Vec<&'static str> = template.split('/').collect();
            if pattern.len() != segments.len() {
                return None;
            }
            let mut params = HashMap::new();
            for (p, s) in pattern.iter().zip(&segments) {
                match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if !s.is_empty() => {
                        params.insert(name, decode_segment(s));
                    }
                    Some(_) => return None,
                    None if p == s => {}
                    None => return None,
                }
            }
            Some(Route {
                op: *op,
                doc: *doc,
                template,
                method: m,
                limiter: *limiter,
                params,
            })
        })
}

fn decode_segment(segment: &str) -> String {
    // Path segments here are ids and names; only `%XX` escapes need undoing.
    super::specs::parse_query(Some(&format!("x={}", segment.replace('+', "%2B"))))
        .pop()
        .map(|(_, v)| v)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_and_parameters_are_captured() {
        let route = match_route(
            "PUT",
            "/crm/v4/objects/notes/1001/associations/contacts/1002",
        )
        .unwrap();
        assert_eq!(route.op, Op::AssociationPut);
        assert_eq!(route.param("objectType"), "notes");
        assert_eq!(route.param("toObjectId"), "1002");
        let route = match_route(
            "put",
            "/crm/v4/objects/notes/1001/associations/default/contacts/1002/",
        )
        .unwrap();
        assert_eq!(route.op, Op::AssociationPutDefault);
        assert_eq!(route.param("fromObjectId"), "1001");
        assert!(match_route("GET", "/crm/v3/objects/contacts/batch/upsert").is_none());
        assert!(match_route("POST", "/crm/v3/objects/deals/search").is_none());
        let route = match_route("POST", "/crm/v3/objects/communications/search").unwrap();
        assert_eq!(route.op, Op::CommunicationsSearch);
        assert_eq!(route.limiter, Limiter::Search);
        let route = match_route("POST", "/crm/v3/objects/contacts/batch/update").unwrap();
        assert_eq!(route.op, Op::ContactsBatchUpdate);
        let route = match_route("GET", "/crm/v3/properties/contacts/whatsapp_id").unwrap();
        assert_eq!(route.op, Op::PropertyGet);
    }
}
