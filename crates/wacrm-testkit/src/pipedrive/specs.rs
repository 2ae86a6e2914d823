//! Pipedrive's OpenAPI documents, loaded once per process with their known defects patched,
//! request validation against them, and the operations' token costs.

use crate::openapi::query;
use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};

use super::routes::Api;
use crate::openapi::{spec_path, SpecError, SpecValidator};

/// One patch of Pipedrive's v2 document: which operations' request schemas it replaces, and
/// why. Every patch first checks that its defect is still in the document and fails loudly
/// otherwise, so a fixed document makes the list visibly stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecPatch {
    /// The patch's name, as the fake's documentation and tests refer to it.
    pub name: &'static str,
    /// `(method, path template)` of each operation of `openapi-v2.yaml` whose request schema
    /// is patched.
    pub operations: &'static [(&'static str, &'static str)],
    /// What is wrong with the document and what the patch does.
    pub reason: &'static str,
}

const PERSON_WRITES: &[(&str, &str)] = &[("POST", "/persons"), ("PATCH", "/persons/{id}")];

/// The patches of `openapi-v2.yaml` the fake applies, in order; nothing else is loosened.
pub const SPEC_PATCHES: &[SpecPatch] = &[
    SpecPatch {
        name: "person-create-requires-title",
        operations: &[("POST", "/persons")],
        reason: "the request schema says `required: [title]`, but persons have no `title` (the \
                 schema does not even declare one); Pipedrive requires `name` (PROVENANCE.md, \
                 CRMS.md). `title` is replaced by `name` in `required`",
    },
    SpecPatch {
        name: "person-labels-typed-boolean",
        operations: PERSON_WRITES,
        reason: "`phones[].label` and `emails[].label` are typed `boolean`, while the responses \
                 type them `string` and the v2 migration guide sends strings (\"work\", \
                 \"anything\"); retyped `string`",
    },
    SpecPatch {
        name: "person-request-lacks-custom-fields",
        operations: PERSON_WRITES,
        reason: "the request schemas have no `custom_fields` property, while the migration guide \
                 writes custom fields as `custom_fields: {<40-hex key>: value}` and the response \
                 schema has `custom_fields: {type: object}`; added as an object (its keys are \
                 checked by the fake against the person fields it holds)",
    },
];

/// The two documents, patched.
pub(super) struct Specs {
    v1: SpecValidator,
    v2: SpecValidator,
}

impl Specs {
    pub(super) fn get(&self, api: Api) -> &SpecValidator {
        match api {
            Api::V1 => &self.v1,
            Api::V2 => &self.v2,
        }
    }

    /// Validates a request against `paths[template][method]` of the document: the JSON body
    /// when the operation has one, and the query parameters. One line per violation.
    pub(super) fn validate(
        &self,
        api: Api,
        template: &str,
        method: &str,
        body: &Value,
        query: &[(String, String)],
    ) -> Vec<String> {
        let spec = self.get(api);
        let mut errors = Vec::new();
        if spec.request_schema_pointer(template, method).is_ok() {
            if let Err(mut e) = spec.validate_request(template, method, body) {
                errors.append(&mut e);
            }
        }
        errors.extend(validate_query(spec.document(), template, method, query));
        errors
    }

    /// The operation's `x-token-cost`, if the document states one.
    pub(super) fn token_cost(&self, api: Api, template: &str, method: &str) -> Option<u64> {
        query::operation(self.get(api).document(), template, method)
            .and_then(|op| op.get("x-token-cost"))
            .and_then(Value::as_u64)
    }
}

fn load() -> Option<Arc<Specs>> {
    let load = |api: Api| -> Option<SpecValidator> {
        let path = spec_path(api.file())?;
        let spec = SpecValidator::load(&path)
            .unwrap_or_else(|e| panic!("Pipedrive fake: cannot load {}: {e}", path.display()));
        Some(spec)
    };
    let v1 = load(Api::V1)?;
    let mut v2 = load(Api::V2)?;
    if let Err(e) = patch_v2(&mut v2) {
        panic!("Pipedrive fake: patching {}: {e}", Api::V2.file());
    }
    Some(Arc::new(Specs { v1, v2 }))
}

/// The documents, loaded and patched on first use and shared by every fake of the process.
pub(super) fn shared_specs() -> Option<Arc<Specs>> {
    static SPECS: OnceLock<Option<Arc<Specs>>> = OnceLock::new();
    SPECS.get_or_init(load).clone()
}

/// Applies [`SPEC_PATCHES`] to `openapi-v2.yaml`.
fn patch_v2(spec: &mut SpecValidator) -> Result<(), SpecError> {
    require_name(spec)?;
    for (method, path) in PERSON_WRITES {
        string_labels(spec, method, path)?;
    }
    for (method, path) in PERSON_WRITES {
        add_custom_fields(spec, method, path)?;
    }
    Ok(())
}

fn not_applied(method: &str, path: &str, expected: &str) -> SpecError {
    SpecError::PatchDidNotApply {
        schema: format!("{method} {path} request"),
        expected: expected.to_owned(),
    }
}

/// `person-create-requires-title`.
fn require_name(spec: &mut SpecValidator) -> Result<(), SpecError> {
    let (method, path) = ("POST", "/persons");
    let mut schema = spec.request_schema(path, method)?.clone();
    let expected = "`title` in `required`, and no `title` property";
    if schema.pointer("/properties/title").is_some() {
        return Err(not_applied(method, path, expected));
    }
    let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) else {
        return Err(not_applied(method, path, expected));
    };
    let Some(slot) = required.iter_mut().find(|r| r.as_str() == Some("title")) else {
        return Err(not_applied(method, path, expected));
    };
    *slot = Value::from("name");
    spec.patch_request_schema(path, method, schema)
}

/// `person-labels-typed-boolean`, for one operation.
fn string_labels(spec: &mut SpecValidator, method: &str, path: &str) -> Result<(), SpecError> {
    let mut schema = spec.request_schema(path, method)?.clone();
    for list in ["phones", "emails"] {
        let pointer = format!("/properties/{list}/items/properties/label/type");
        match schema.pointer_mut(&pointer) {
            Some(kind) if kind == "boolean" => *kind = Value::from("string"),
            _ => {
                return Err(not_applied(
                    method,
                    path,
                    &format!("{list}[].label typed `boolean`"),
                ))
            }
        }
    }
    spec.patch_request_schema(path, method, schema)
}

/// `person-request-lacks-custom-fields`, for one operation.
fn add_custom_fields(spec: &mut SpecValidator, method: &str, path: &str) -> Result<(), SpecError> {
    let mut schema = spec.request_schema(path, method)?.clone();
    let expected = "an object schema with `properties` and no `custom_fields`";
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return Err(not_applied(method, path, expected));
    };
    if properties.contains_key("custom_fields") {
        return Err(not_applied(method, path, expected));
    }
    properties.insert(
        "custom_fields".to_owned(),
        json!({
            "type": "object",
            "description": "wacrm patch (person-request-lacks-custom-fields): custom field \
                            values keyed by the field's 40-hex key",
            "additionalProperties": true
        }),
    );
    spec.patch_request_schema(path, method, schema)
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
    use super::super::routes::OPERATIONS;
    use super::*;

    /// Every operation the fake implements is in its document, not deprecated, and costs
    /// there what the fake charges without the documents.
    #[test]
    fn operations_exist_and_costs_match_the_documents() {
        let Some(specs) = shared_specs() else {
            return;
        };
        for (op, method, api, template, cost) in OPERATIONS {
            let found = query::operation(specs.get(*api).document(), template, method);
            let Some(found) = found else {
                panic!("{op:?}: {method} {template} is not in {}", api.file());
            };
            assert_ne!(
                found.get("deprecated"),
                Some(&Value::Bool(true)),
                "{op:?} is deprecated"
            );
            assert_eq!(
                specs.token_cost(*api, template, method),
                Some(*cost),
                "{op:?}: x-token-cost"
            );
        }
    }

    /// The raw document shows each defect; the patched one accepts the bodies Pipedrive
    /// expects and still rejects bodies off the schema.
    #[test]
    fn patches_fix_exactly_the_named_defects() {
        let Some(specs) = shared_specs() else {
            return;
        };
        let Some(path) = spec_path(Api::V2.file()) else {
            return;
        };
        let raw = SpecValidator::load(&path).unwrap();
        let body = json!({
            "name": "Maria",
            "phones": [{"value": "+5511987654321", "label": "mobile", "primary": true}],
            "emails": [{"value": "m@example.com", "label": "work"}],
            "custom_fields": {"9dc80c50d78a15643bfc4ca79d76156a73a1ca0e": "5511987654321"}
        });
        let errors = raw.validate_request("/persons", "post", &body).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("title")), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("/phones/0/label")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("/emails/0/label")),
            "{errors:?}"
        );
        assert!(raw
            .validate_request(
                "/persons/{id}",
                "patch",
                &json!({"phones": [{"label": "x"}]})
            )
            .is_err());

        let v2 = specs.get(Api::V2);
        assert_eq!(v2.validate_request("/persons", "post", &body), Ok(()));
        assert_eq!(v2.validate_request("/persons/{id}", "patch", &body), Ok(()));
        assert!(v2
            .validate_request("/persons", "post", &json!({"title": "x"}))
            .is_err());
        assert!(v2
            .validate_request("/persons", "post", &json!({"name": "x", "phones": "+1"}))
            .is_err());
        assert!(v2
            .validate_request(
                "/persons",
                "post",
                &json!({"name": "x", "custom_fields": []})
            )
            .is_err());
        assert!(v2
            .validate_request(
                "/persons/{id}",
                "patch",
                &json!({"phones": [{"value": "1", "label": true}]})
            )
            .is_err());
        assert_eq!(
            v2.patched_schemas(),
            ["POST /persons request", "PATCH /persons/{id} request"]
        );

        // Applying the patches again finds no defect: each fails loudly.
        let mut again = raw;
        patch_v2(&mut again).unwrap();
        assert!(matches!(
            require_name(&mut again),
            Err(SpecError::PatchDidNotApply { .. })
        ));
        assert!(matches!(
            string_labels(&mut again, "POST", "/persons"),
            Err(SpecError::PatchDidNotApply { .. })
        ));
        assert!(matches!(
            add_custom_fields(&mut again, "PATCH", "/persons/{id}"),
            Err(SpecError::PatchDidNotApply { .. })
        ));
    }

    #[test]
    fn query_parameters_are_checked_against_the_operation() {
        let Some(specs) = shared_specs() else {
            return;
        };
        let v1 = specs.get(Api::V1).document();
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(validate_query(
            v1,
            "/notes",
            "get",
            &q(&[
                ("person_id", "3"),
                ("sort", "id DESC"),
                ("pinned_to_person_flag", "1")
            ])
        )
        .is_empty());
        let errors = validate_query(
            v1,
            "/notes",
            "get",
            &q(&[
                ("person_id", "x"),
                ("api_token", "t"),
                ("pinned_to_person_flag", "2"),
            ]),
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
        let v2 = specs.get(Api::V2).document();
        assert_eq!(
            validate_query(v2, "/persons", "get", &q(&[("sort_by", "name")])).len(),
            1
        );
    }
}
