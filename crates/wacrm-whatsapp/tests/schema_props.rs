//! Property test: payloads generated from Meta's `WebhookPayload` schema (the document in
//! `../shared/specs/meta/`, with its known defects patched) — every one that validates is
//! normalised without a panic, and every message and status in it comes out as an event or as a
//! rejected part (a dead letter): nothing is lost.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use wacrm_core::EventPayload;
use wacrm_testkit::openapi::generate::instances;
use wacrm_testkit::openapi::meta_webhook_validator;
use wacrm_whatsapp::normalise::parse_and_normalise;

fn ids(payload: &Value, list: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in payload["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            for item in change["value"][list].as_array().into_iter().flatten() {
                if let Some(id) = item["id"].as_str() {
                    out.push(id.to_owned());
                }
            }
        }
    }
    out
}

/// Checks one payload; `Ok(false)` when it is not schema-valid (skipped).
fn check(spec: &wacrm_testkit::openapi::SpecValidator, payload: &Value) -> Result<bool, String> {
    if spec.validate("WebhookPayload", payload).is_err() {
        return Ok(false);
    }
    let body = serde_json::to_vec(payload).unwrap();
    let Ok(out) = parse_and_normalise(&body, chrono::Utc::now()) else {
        // The whole body becomes one dead letter: kept, not lost.
        return Ok(true);
    };
    let rejected: String = out.rejected.iter().map(|r| r.raw.as_str()).collect();
    for wamid in ids(payload, "messages") {
        let as_event = out.events.iter().any(|e| match &e.payload {
            EventPayload::MessageReceived(m) => m.wamid == wamid,
            _ => false,
        });
        if !as_event && !rejected.contains(&serde_json::to_string(&wamid).unwrap()) {
            return Err(format!("message {wamid} lost"));
        }
    }
    for wamid in ids(payload, "statuses") {
        let as_event = out.events.iter().any(|e| match &e.payload {
            EventPayload::StatusChanged(s) => s.wamid == wamid,
            _ => false,
        });
        if !as_event && !rejected.contains(&serde_json::to_string(&wamid).unwrap()) {
            return Err(format!("status {wamid} lost"));
        }
    }
    Ok(true)
}

#[test]
fn every_schema_valid_payload_is_normalised_or_dead_lettered() {
    // Strategies for a schema this deep nest deeply: give them room.
    std::thread::Builder::new()
        .stack_size(256 * 1024 * 1024)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
}

fn run() {
    let Some(spec) = meta_webhook_validator() else {
        eprintln!("skipped: Meta's document is not in ../shared/specs");
        return;
    };
    let schema = spec.schema("WebhookPayload").unwrap().clone();
    let strategy = instances(spec.document(), &schema);
    let cases: u32 = std::env::var("WACRM_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let valid = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |payload| {
            match check(&spec, &payload) {
                Ok(true) => valid.set(valid.get() + 1),
                Ok(false) => {}
                Err(lost) => return Err(TestCaseError::fail(format!("{lost}: {payload}"))),
            }
            Ok(())
        })
        .unwrap();
    // The property must not be vacuous. About 40 % of generated payloads validate: the others
    // match two branches of one of the document's `oneOf`s (which `oneOf` forbids) or miss a
    // pattern; they are skipped, not counted.
    assert!(
        valid.get() * 4 >= cases,
        "only {} of {cases} generated payloads were schema-valid",
        valid.get()
    );
}
