//! The JSON Schemas in docs/schemas/ are generated from the event types; this test fails when
//! they drift. `WACRM_UPDATE_SCHEMAS=1 cargo test -p wacrm-core --test schemas` rewrites them.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use schemars::{schema_for, Schema};
use wacrm_core::event::{
    self, AuditRecord, Call, ContactErased, ContactUpdate, IdentityChange, PlatformError,
    PreferenceChange,
};
use wacrm_core::outbound::{ReadRequest, SendFailure, SendRequest};
use wacrm_core::{Event, Message, StatusUpdate};

fn schemas() -> Vec<(String, Schema)> {
    vec![
        (
            format!("{}.json", event::MESSAGE_RECEIVED),
            schema_for!(Message),
        ),
        (
            format!("{}.json", event::MESSAGE_SENT),
            schema_for!(Message),
        ),
        (
            format!("{}.json", event::STATUS_CHANGED),
            schema_for!(StatusUpdate),
        ),
        (
            format!("{}.json", event::CONTACT_UPDATED),
            schema_for!(ContactUpdate),
        ),
        (
            format!("{}.json", event::CONTACT_IDENTITY_CHANGED),
            schema_for!(IdentityChange),
        ),
        (
            format!("{}.json", event::PREFERENCE_CHANGED),
            schema_for!(PreferenceChange),
        ),
        (
            format!("{}.json", event::PLATFORM_ERROR),
            schema_for!(PlatformError),
        ),
        (format!("{}.json", event::CALL), schema_for!(Call)),
        (
            format!("{}.json", event::SEND_REQUESTED),
            schema_for!(SendRequest),
        ),
        (
            format!("{}.json", event::READ_REQUESTED),
            schema_for!(ReadRequest),
        ),
        (
            format!("{}.json", event::SEND_FAILED),
            schema_for!(SendFailure),
        ),
        (
            format!("{}.json", event::AUDIT_RECORDED),
            schema_for!(AuditRecord),
        ),
        (
            format!("{}.json", event::CONTACT_ERASED),
            schema_for!(ContactErased),
        ),
        ("event.json".to_owned(), schema_for!(Event)),
    ]
}

#[test]
fn committed_schemas_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas");
    let update = std::env::var_os("WACRM_UPDATE_SCHEMAS").is_some();
    if update {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut drifted = Vec::new();
    for (name, schema) in schemas() {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(&name);
        if update {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            drifted.push(name);
        }
    }
    assert!(
        drifted.is_empty(),
        "docs/schemas drifted from the event types: {drifted:?}; run WACRM_UPDATE_SCHEMAS=1 cargo test -p wacrm-core --test schemas and commit"
    );
    // Every published type has a schema.
    for t in event::EVENT_TYPES {
        assert!(
            schemas().iter().any(|(n, _)| n == &format!("{t}.json")),
            "{t}"
        );
    }
}

#[test]
fn events_validate_against_their_schema_shape() {
    // A cheap self-check that the schema describes the JSON we write: the required keys of
    // Message are present in a serialized message.
    let schema = serde_json::to_value(schema_for!(Message)).unwrap();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for key in [
        "wamid",
        "direction",
        "business",
        "contact",
        "timestamp",
        "content",
    ] {
        assert!(required.contains(&key), "{key} in {required:?}");
    }
}
