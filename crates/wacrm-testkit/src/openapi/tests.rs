use super::*;
use serde_json::json;

/// A small OpenAPI 3.0 document exercising `$ref`, `nullable`, `discriminator`, request bodies.
fn toy(version: &str) -> SpecValidator {
    SpecValidator::from_document(
        json!({
            "openapi": version,
            "info": {"title": "toy", "version": "1"},
            "paths": {
                "/pets": {"post": {
                    "requestBody": {"$ref": "#/components/requestBodies/NewPet"}
                }},
                "/pets/{id}": {"put": {
                    "requestBody": {"content": {"application/json": {
                        "schema": {"type": "object", "required": ["name"],
                                   "properties": {"name": {"type": "string"}}},
                        "examples": {"ok": {"value": {"name": "Rex"}},
                                     "shared": {"$ref": "#/components/examples/Shared"}}
                    }}}
                }},
                "/pets/{id}/photo": {"put": {
                    "requestBody": {"content": {"image/png": {"schema": {"type": "string"}}}}
                }}
            },
            "components": {
                "requestBodies": {"NewPet": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Pet"},
                    "example": {"kind": "dog", "name": "Rex"}
                }}}},
                "examples": {"Shared": {"value": {"name": "Fido"}}},
                "schemas": {
                    "Pet": {
                        "type": "object",
                        "required": ["kind", "name"],
                        "discriminator": {"propertyName": "kind"},
                        "properties": {
                            "kind": {"type": "string", "enum": ["dog", "cat"]},
                            "name": {"type": "string", "example": "Rex"},
                            "owner": {"$ref": "#/components/schemas/Owner"},
                            "tag": {"type": "string", "nullable": true}
                        }
                    },
                    "Owner": {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "integer"}}
                    },
                    "Either": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/Pet"},
                            {"$ref": "#/components/schemas/Owner"}
                        ]
                    }
                }
            }
        }),
        "toy.json",
    )
    .expect("toy document compiles")
}

#[test]
fn valid_instance_passes_and_refs_resolve() {
    let spec = toy("3.0.3");
    let pet = json!({"kind": "dog", "name": "Rex", "owner": {"id": 7}, "tag": null});
    assert_eq!(spec.validate("Pet", &pet), Ok(()));
}

#[test]
fn errors_name_the_instance_path_and_keyword() {
    let spec = toy("3.0.3");
    let errors = spec
        .validate("Pet", &json!({"kind": "fish", "owner": {"id": "7"}}))
        .expect_err("invalid");
    assert!(
        errors.iter().any(|e| e.starts_with("/kind: enum: ")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("/owner/id: type: ")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("(root): required: ") && e.contains("\"name\"")),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[test]
fn failed_one_of_reports_the_closest_alternative() {
    let spec = toy("3.1.0");
    let errors = spec
        .validate(
            "Either",
            &json!({"kind": "dog", "name": "Rex", "owner": {"id": "x"}}),
        )
        .expect_err("invalid");
    // Alternative 0 (Pet) fails deep at /owner/id; alternative 1 (Owner) fails at the root.
    assert_eq!(
        errors,
        vec![r#"/owner/id: type: "x" is not of type "integer" (via oneOf[0] at (root))"#]
    );
}

#[test]
fn nullable_is_honoured_in_both_dialects() {
    for version in ["3.0.1", "3.1.0"] {
        let spec = toy(version);
        let pet = json!({"kind": "cat", "name": "Tom", "tag": null});
        assert_eq!(spec.validate("Pet", &pet), Ok(()), "{version}");
        assert!(spec
            .validate("Pet", &json!({"kind": "cat", "name": "Tom", "tag": 1}))
            .is_err());
    }
}

#[test]
fn unknown_schema_is_an_error_not_a_pass() {
    let spec = toy("3.0.3");
    let errors = spec.validate("Nope", &json!({})).expect_err("unknown");
    assert!(
        errors[0].contains("#/components/schemas/Nope"),
        "{errors:?}"
    );
}

#[test]
fn patch_schema_replaces_one_schema_and_clears_the_cache() {
    let mut spec = toy("3.0.3");
    assert!(spec.validate("Owner", &json!({"id": "abc"})).is_err());
    spec.patch_schema(
        "Owner",
        json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}),
    )
    .expect("patch");
    assert_eq!(spec.validate("Owner", &json!({"id": "abc"})), Ok(()));
    // Pet refers to Owner, so it sees the patch too; nothing else changed.
    assert_eq!(
        spec.validate(
            "Pet",
            &json!({"kind": "dog", "name": "a", "owner": {"id": "abc"}})
        ),
        Ok(())
    );
    assert!(spec.validate("Pet", &json!({"kind": "dog"})).is_err());
    assert_eq!(spec.patched_schemas(), ["Owner"]);

    spec.patch_schema("Added", json!({"type": "integer"}))
        .expect("add");
    assert_eq!(spec.validate("Added", &json!(3)), Ok(()));
    assert!(spec.validate("Added", &json!("3")).is_err());
}

#[test]
fn retarget_refs_changes_only_the_named_ref_and_refuses_stale_patches() {
    let mut spec = toy("3.0.3");
    spec.patch_schema("Owner2", json!({"type": "object"}))
        .expect("add");
    let changed = spec
        .retarget_refs("Pet", "Owner", "Owner2")
        .expect("retarget");
    assert_eq!(changed, 1);
    assert_eq!(
        spec.validate("Pet", &json!({"kind": "dog", "name": "a", "owner": {}})),
        Ok(())
    );
    // The defect is gone now: patching again must fail loudly.
    assert!(matches!(
        spec.retarget_refs("Pet", "Owner", "Owner2"),
        Err(SpecError::PatchDidNotApply { .. })
    ));
    assert!(matches!(
        spec.retarget_refs("Pet", "Owner2", "Missing"),
        Err(SpecError::UnknownSchema(_))
    ));
}

#[test]
fn validate_request_follows_request_body_refs() {
    let spec = toy("3.0.3");
    assert_eq!(
        spec.validate_request("/pets", "POST", &json!({"kind": "dog", "name": "Rex"})),
        Ok(())
    );
    let errors = spec
        .validate_request("/pets", "post", &json!({"kind": "dog"}))
        .expect_err("missing name");
    assert!(errors[0].starts_with("(root): required: "), "{errors:?}");

    // Inline request schema.
    assert_eq!(
        spec.validate_request("/pets/{id}", "put", &json!({"name": "Rex"})),
        Ok(())
    );
    assert!(spec
        .validate_request("/pets/{id}", "put", &json!({}))
        .is_err());

    // Missing operation / no JSON body are errors, never a pass.
    assert!(spec.validate_request("/nope", "get", &json!({})).is_err());
    assert!(spec
        .validate_request("/pets/{id}/photo", "put", &json!("x"))
        .is_err());
    assert!(matches!(
        spec.request_schema_pointer("/pets", "get"),
        Err(SpecError::NoRequestSchema { .. })
    ));
}

#[test]
fn patch_request_schema_replaces_one_inline_request_schema() {
    let mut spec = toy("3.0.3");
    assert!(spec
        .validate_request("/pets/{id}", "put", &json!({}))
        .is_err());
    let mut schema = spec
        .request_schema("/pets/{id}", "PUT")
        .expect("inline schema")
        .clone();
    schema["required"] = json!(["nick"]);
    schema["properties"]["nick"] = json!({"type": "string", "nullable": true});
    spec.patch_request_schema("/pets/{id}", "put", schema)
        .expect("patch");
    assert_eq!(
        spec.validate_request("/pets/{id}", "put", &json!({"nick": null})),
        Ok(())
    );
    assert!(spec
        .validate_request("/pets/{id}", "put", &json!({"name": "Rex"}))
        .is_err());
    assert_eq!(spec.patched_schemas(), ["PUT /pets/{id} request"]);
    // Other operations are untouched; a missing operation is an error, never a silent pass.
    assert!(spec
        .validate_request("/pets", "post", &json!({"kind": "dog"}))
        .is_err());
    assert!(matches!(
        spec.patch_request_schema("/nope", "post", json!({})),
        Err(SpecError::NoRequestSchema { .. })
    ));
}

#[test]
fn request_examples_are_read_raw() {
    let spec = toy("3.0.3");
    assert_eq!(
        spec.request_examples("/pets", "post").expect("op"),
        vec![("example".to_owned(), json!({"kind": "dog", "name": "Rex"}))]
    );
    assert_eq!(
        spec.request_examples("/pets/{id}", "put").expect("op"),
        vec![
            ("ok".to_owned(), json!({"name": "Rex"})),
            ("shared".to_owned(), json!({"name": "Fido"}))
        ]
    );
}

#[test]
fn loads_yaml_and_json_files() {
    let dir = std::env::temp_dir().join(format!("wacrm-testkit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let yaml = dir.join("doc.yaml");
    std::fs::write(
        &yaml,
        "openapi: 3.1.0\npaths: {}\ncomponents:\n  schemas:\n    N:\n      type: integer\n      \
         nullable: true\n",
    )
    .expect("write");
    let json_path = dir.join("doc.json");
    std::fs::write(
        &json_path,
        r#"{"openapi":"3.0.0","paths":{},"components":{"schemas":{"N":{"type":"integer"}}}}"#,
    )
    .expect("write");
    let from_yaml = SpecValidator::load(&yaml).expect("yaml");
    assert_eq!(from_yaml.validate("N", &json!(null)), Ok(()));
    let from_json = SpecValidator::load(&json_path).expect("json");
    assert!(from_json.validate("N", &json!(null)).is_err());
    assert!(matches!(
        SpecValidator::load(dir.join("missing.yaml")),
        Err(SpecError::Io { .. })
    ));
    std::fs::write(dir.join("swagger.json"), r#"{"swagger":"2.0"}"#).expect("write");
    assert!(matches!(
        SpecValidator::load(dir.join("swagger.json")),
        Err(SpecError::Parse { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn specs_dir_resolution() {
    let existing = Path::new(env!("CARGO_MANIFEST_DIR"));
    let missing = existing.join("definitely-not-here");

    // An explicit directory wins, and must exist.
    assert_eq!(
        resolve_specs_dir(Some(existing.into()), false, &missing),
        Ok(Some(existing.to_path_buf()))
    );
    assert!(resolve_specs_dir(Some(missing.clone().into()), false, existing).is_err());
    // Otherwise the default, if present.
    assert_eq!(
        resolve_specs_dir(None, true, existing),
        Ok(Some(existing.to_path_buf()))
    );
    // Absent: skip locally, fail in CI.
    assert_eq!(resolve_specs_dir(None, false, &missing), Ok(None));
    let ci = resolve_specs_dir(None, true, &missing).expect_err("CI must fail");
    assert!(ci.contains("CI"), "{ci}");
}

/// Meta's own inbound webhook examples fail the unpatched document (the defect in
/// `shared/README.md`) and all pass once [`patch_meta_webhooks`] is applied; status examples
/// pass either way.
#[test]
fn meta_webhook_patch_fixes_exactly_the_documented_defect() {
    let Some(path) = spec_path(META_SPEC) else {
        return;
    };
    let unpatched = SpecValidator::load(&path).expect("load");
    let mut patched = SpecValidator::load(&path).expect("load");
    patch_meta_webhooks(&mut patched).expect("patch");

    let examples = unpatched
        .request_examples("/whatsapp/webhooks", "post")
        .expect("webhook examples");
    assert!(examples.len() >= 13, "{} examples", examples.len());
    let mut inbound = 0;
    for (name, body) in &examples {
        // The group examples (`field` group_*) are outside the documented defect and fail for
        // reasons of their own (`Groups.timestamp` is an integer in the schema, a string in the
        // example; participants' `input`/`wa_id` are numbers there): wacrm consumes no group
        // webhooks, so they are neither patched nor checked here.
        let field = body
            .pointer("/entry/0/changes/0/field")
            .and_then(Value::as_str);
        if field != Some("messages") {
            continue;
        }
        let has_messages = body.pointer("/entry/0/changes/0/value/messages").is_some();
        if has_messages {
            inbound += 1;
            assert!(
                unpatched.validate("WebhookPayload", body).is_err(),
                "{name}: unpatched document unexpectedly accepts it"
            );
        }
        if let Err(errors) = patched.validate("WebhookPayload", body) {
            panic!("{name}: patched document rejects Meta's own example: {errors:#?}");
        }
    }
    assert!(inbound >= 13, "{inbound} inbound examples");

    let mut names: Vec<&str> = META_WEBHOOK_PATCHES
        .iter()
        .flat_map(|p| p.schemas.iter().copied())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut applied: Vec<&str> = patched
        .patched_schemas()
        .iter()
        .map(String::as_str)
        .collect();
    applied.sort_unstable();
    assert_eq!(applied, names, "META_WEBHOOK_PATCHES documents every patch");
}

#[test]
fn meta_patched_incoming_message_rejects_unknown_types_and_outbound_shapes() {
    let Some(spec) = meta_webhook_validator() else {
        return;
    };
    let errors = spec
        .validate(
            "IncomingMessage",
            &json!({"from": "1", "id": "w", "timestamp": "1", "type": "hologram"}),
        )
        .expect_err("unknown type");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("/type: enum: "), "{errors:?}");

    // An outbound-shaped text (no from/id/timestamp) is not an inbound message.
    let errors = spec
        .validate(
            "IncomingMessage",
            &json!({"messaging_product": "whatsapp", "to": "1", "type": "text",
                    "text": {"body": "hi"}}),
        )
        .expect_err("outbound shape");
    for field in ["from", "id", "timestamp"] {
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("(root): required: ") && e.contains(&format!("\"{field}\""))),
            "{field}: {errors:?}"
        );
    }
}

#[test]
fn hubspot_documents_load_and_validate_requests() {
    let Some(path) = spec_path("hubspot/contacts-v3.json") else {
        return;
    };
    let spec = SpecValidator::load(&path).expect("load");
    let ok = json!({"properties": {"email": "a@example.com"}, "associations": []});
    assert_eq!(
        spec.validate_request("/crm/v3/objects/contacts", "post", &ok),
        Ok(())
    );
    let errors = spec
        .validate_request(
            "/crm/v3/objects/contacts",
            "post",
            &json!({"properties": {"hs_lead_status": 5}}),
        )
        .expect_err("number property and no associations");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("/properties/hs_lead_status: type: ")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("(root): required: ") && e.contains("associations")),
        "{errors:?}"
    );

    for file in [
        "associations-v4.json",
        "communications-v3.json",
        "notes-v3.json",
        "owners-v3.json",
        "properties-v3.json",
    ] {
        let Some(path) = spec_path(&format!("hubspot/{file}")) else {
            return;
        };
        SpecValidator::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

/// Meta's send endpoint has a templated path; its own text example shows the documented
/// `allOf` + `additionalProperties: false` defect (and nothing else), which later send-request
/// tests will patch.
#[test]
fn meta_send_request_schema_resolves_and_shows_the_documented_defect() {
    let Some(path) = spec_path(META_SPEC) else {
        return;
    };
    let spec = SpecValidator::load(&path).expect("load");
    let endpoint = "/{Version}/{Phone-Number-ID}/messages";
    let examples = spec.request_examples(endpoint, "post").expect("examples");
    let (_, text) = examples
        .iter()
        .find(|(name, _)| name == "Send Text Message")
        .expect("Send Text Message example");
    let errors = spec
        .validate_request(endpoint, "post", text)
        .expect_err("documented defect");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("(root): additionalProperties: ")
            && errors[0].contains("'messaging_product'")
            && errors[0].contains("'to'"),
        "{errors:?}"
    );

    // The location example is reported through the location alternative (latitude typed as a
    // string), not through an alternative whose `type` enum already rejects it.
    let (_, location) = examples
        .iter()
        .find(|(name, _)| name == "Send Location Message")
        .expect("Send Location Message example");
    let errors = spec
        .validate_request(endpoint, "post", location)
        .expect_err("documented defect");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("/location/latitude: type: ")),
        "{errors:?}"
    );
}
