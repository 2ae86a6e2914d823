//! HubSpot's OpenAPI documents, loaded once per process, and request validation against them.

use crate::openapi::query;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::openapi::{specs_dir, SpecValidator};

/// Which of HubSpot's documents an operation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Doc {
    Contacts,
    Communications,
    Notes,
    Associations,
    Properties,
    Owners,
}

impl Doc {
    pub(super) fn file(self) -> &'static str {
        match self {
            Doc::Contacts => "contacts-v3.json",
            Doc::Communications => "communications-v3.json",
            Doc::Notes => "notes-v3.json",
            Doc::Associations => "associations-v4.json",
            Doc::Properties => "properties-v3.json",
            Doc::Owners => "owners-v3.json",
        }
    }
}

/// The six documents.
pub(super) struct Specs {
    contacts: SpecValidator,
    communications: SpecValidator,
    notes: SpecValidator,
    associations: SpecValidator,
    properties: SpecValidator,
    owners: SpecValidator,
}

impl Specs {
    pub(super) fn get(&self, doc: Doc) -> &SpecValidator {
        match doc {
            Doc::Contacts => &self.contacts,
            Doc::Communications => &self.communications,
            Doc::Notes => &self.notes,
            Doc::Associations => &self.associations,
            Doc::Properties => &self.properties,
            Doc::Owners => &self.owners,
        }
    }

    /// Validates a request against `paths[template][method]`: the JSON body when the operation
    /// has one, the query parameters otherwise. One line per violation.
    pub(super) fn validate(
        &self,
        doc: Doc,
        template: &str,
        method: &str,
        body: &Value,
        query: &[(String, String)],
    ) -> Vec<String> {
        let spec = self.get(doc);
        let mut errors = Vec::new();
        if spec.request_schema_pointer(template, method).is_ok() {
            if let Err(mut e) = spec.validate_request(template, method, body) {
                errors.append(&mut e);
            }
        }
        errors.extend(validate_query(spec.document(), template, method, query));
        errors
    }

    /// The operation's `x-hubspot-rate-limit-exemptions`.
    #[cfg(test)]
    pub(super) fn rate_limit_exemptions(
        &self,
        doc: Doc,
        template: &str,
        method: &str,
    ) -> Vec<String> {
        query::operation(self.get(doc).document(), template, method)
            .and_then(|op| op.get("x-hubspot-rate-limit-exemptions"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn load() -> Option<Arc<Specs>> {
    let dir = specs_dir()?.join("hubspot");
    let load = |doc: Doc| {
        let path = dir.join(doc.file());
        SpecValidator::load(&path)
            .unwrap_or_else(|e| panic!("HubSpot fake: cannot load {}: {e}", path.display()))
    };
    Some(Arc::new(Specs {
        contacts: load(Doc::Contacts),
        communications: load(Doc::Communications),
        notes: load(Doc::Notes),
        associations: load(Doc::Associations),
        properties: load(Doc::Properties),
        owners: load(Doc::Owners),
    }))
}

/// The documents, loaded on first use and shared by every fake of the process.
pub(super) fn shared_specs() -> Option<Arc<Specs>> {
    static SPECS: OnceLock<Option<Arc<Specs>>> = OnceLock::new();
    SPECS.get_or_init(load).clone()
}

/// Splits and percent-decodes a query string.
pub(super) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The operation's query parameters checked ([`query::validate_query`]; `required` marks
/// not checked).
fn validate_query(
    document: &Value,
    template: &str,
    method: &str,
    query: &[(String, String)],
) -> Vec<String> {
    query::validate_query(document, template, method, query, query::Required::Ignored)
}

#[cfg(test)]
mod tests {
    use super::super::routes::{Limiter, OPERATIONS};
    use super::*;

    /// The fake's rate-limit classes are those of HubSpot's documents: an operation exempt from
    /// the ten-second window there is exempt in the fake, and only those.
    #[test]
    fn limiters_match_the_documents_rate_limit_exemptions() {
        let Some(specs) = shared_specs() else {
            return;
        };
        for (op, method, doc, template, limiter) in OPERATIONS {
            let exempt = specs
                .rate_limit_exemptions(*doc, template, method)
                .iter()
                .any(|e| e == "ten-secondly");
            assert_eq!(
                exempt,
                *limiter != Limiter::TenSecondly,
                "{op:?} {method} {template}"
            );
            // Exempt searches count against the per-second search limit instead.
            assert_eq!(
                exempt && template.ends_with("/search"),
                *limiter == Limiter::Search,
                "{op:?} {method} {template}"
            );
        }
        // Both searches are implemented, and both documents exempt them.
        for (doc, template) in [
            (Doc::Contacts, "/crm/v3/objects/contacts/search"),
            (Doc::Communications, "/crm/v3/objects/communications/search"),
        ] {
            assert!(
                specs
                    .rate_limit_exemptions(doc, template, "POST")
                    .iter()
                    .any(|e| e == "ten-secondly"),
                "{} no longer exempts {template}",
                doc.file()
            );
            assert!(
                OPERATIONS.iter().any(|(_, m, d, t, l)| *m == "POST"
                    && *d == doc
                    && *t == template
                    && *l == Limiter::Search),
                "{template} is not a search-limited operation of the fake"
            );
        }
    }

    /// Every operation the fake implements exists in its document, with a request body exactly
    /// where the fake expects one.
    #[test]
    fn every_operation_is_in_its_document() {
        let Some(specs) = shared_specs() else {
            return;
        };
        for (op, method, doc, template, _) in OPERATIONS {
            let document = specs.get(*doc).document();
            assert!(
                query::operation(document, template, method).is_some(),
                "{op:?}: {method} {template} is not in {}",
                doc.file()
            );
        }
    }

    #[test]
    fn query_strings_are_split_and_decoded() {
        assert_eq!(
            parse_query(Some("email=a%40b.com&limit=10&x=a+b&flag")),
            vec![
                ("email".to_owned(), "a@b.com".to_owned()),
                ("limit".to_owned(), "10".to_owned()),
                ("x".to_owned(), "a b".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
