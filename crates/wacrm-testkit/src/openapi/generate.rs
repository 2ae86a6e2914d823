//! Random instances of an OpenAPI document's schemas, as proptest strategies: the property tests
//! feed wacrm payloads shaped exactly as a vendor's document allows, not only as the examples
//! show.
//!
//! Supported: `$ref` (within the document), `allOf` (merged), `oneOf` / `anyOf` (one branch),
//! `enum`, `const`, objects (required properties always, optional ones half the time; no extra
//! properties), arrays (`minItems`, up to 3 items), strings (`pattern` when it is a plain regex,
//! `minLength` / `maxLength`, else short words and digit strings), integers and numbers (within
//! `minimum` / `maximum`), booleans. Recursion stops at a depth. A generated value is not
//! guaranteed to be valid (a pattern the generator cannot honour, a `oneOf` whose branches
//! overlap): callers validate with [`super::SpecValidator::validate`] and keep the valid ones.

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Just, Union};
use serde_json::{Map, Value};

/// A strategy for instances of `schema`, resolving `$ref`s against `document`.
pub fn instances(document: &Value, schema: &Value) -> BoxedStrategy<Value> {
    generate(document, schema, 0)
}

const MAX_DEPTH: usize = 8;

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    let mut current = schema;
    for _ in 0..16 {
        match current.get("$ref").and_then(Value::as_str) {
            Some(r) => match r.strip_prefix('#').and_then(|p| document.pointer(p)) {
                Some(next) => current = next,
                None => return current,
            },
            None => return current,
        }
    }
    current
}

/// `allOf` branches merged into one object schema (properties and required lists united).
fn merge_all_of(document: &Value, schema: &Value) -> Value {
    let mut merged = Map::new();
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    let mut own = schema.clone();
    if let Some(o) = own.as_object_mut() {
        o.remove("allOf");
    }
    let mut parts = vec![own];
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        parts.extend(all.iter().map(|p| resolve(document, p).clone()));
    }
    for part in parts {
        let part = if part.get("allOf").is_some() {
            merge_all_of(document, &part)
        } else {
            part
        };
        if let Some(o) = part.as_object() {
            for (k, v) in o {
                match k.as_str() {
                    "allOf" => {}
                    "properties" => {
                        if let Some(p) = v.as_object() {
                            for (name, s) in p {
                                properties.insert(name.clone(), s.clone());
                            }
                        }
                    }
                    "required" => {
                        if let Some(r) = v.as_array() {
                            required.extend(r.iter().cloned());
                        }
                    }
                    _ => {
                        merged.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
    }
    if !properties.is_empty() {
        merged.insert("properties".into(), Value::Object(properties));
        merged
            .entry("type")
            .or_insert_with(|| Value::from("object"));
    }
    if !required.is_empty() {
        merged.insert("required".into(), Value::Array(required));
    }
    Value::Object(merged)
}

fn generate(document: &Value, schema: &Value, depth: usize) -> BoxedStrategy<Value> {
    let schema = resolve(document, schema);
    if depth > MAX_DEPTH {
        return Just(Value::Null).boxed();
    }
    if schema.get("allOf").is_some() {
        let merged = merge_all_of(document, schema);
        return generate(document, &merged, depth + 1);
    }
    if let Some(c) = schema.get("const") {
        return Just(c.clone()).boxed();
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.is_empty() {
            return proptest::sample::select(values.clone()).boxed();
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let strategies: Vec<BoxedStrategy<Value>> = branches
                .iter()
                .map(|b| generate(document, b, depth + 1))
                .collect();
            if !strategies.is_empty() {
                return Union::new(strategies).boxed();
            }
        }
    }
    let kind = schema
        .get("type")
        .and_then(Value::as_str)
        .or_else(|| schema.get("properties").map(|_| "object"))
        .unwrap_or("string");
    match kind {
        "object" => object(document, schema, depth),
        "array" => {
            let items = schema.get("items").cloned().unwrap_or(Value::Null);
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
            let max = schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .map_or(3, |m| (m as usize).min(3))
                .max(min);
            proptest::collection::vec(generate(document, &items, depth + 1), min..=max)
                .prop_map(Value::Array)
                .boxed()
        }
        "integer" => {
            let min = schema.get("minimum").and_then(Value::as_i64).unwrap_or(0);
            let max = schema
                .get("maximum")
                .and_then(Value::as_i64)
                .unwrap_or(2_000_000_000);
            (min..=max.max(min)).prop_map(Value::from).boxed()
        }
        "number" => (-90.0f64..90.0).prop_map(Value::from).boxed(),
        "boolean" => any::<bool>().prop_map(Value::from).boxed(),
        _ => string(schema),
    }
}

fn object(document: &Value, schema: &Value, depth: usize) -> BoxedStrategy<Value> {
    let required: Vec<String> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let name = name.clone();
            let value = generate(document, property, depth + 1);
            if required.contains(&name) {
                fields.push(value.prop_map(move |v| Some((name.clone(), v))).boxed());
            } else {
                fields.push(
                    proptest::option::of(value)
                        .prop_map(move |v| v.map(|v| (name.clone(), v)))
                        .boxed(),
                );
            }
        }
    }
    fields
        .prop_map(|pairs| Value::Object(pairs.into_iter().flatten().collect()))
        .boxed()
}

fn string(schema: &Value) -> BoxedStrategy<Value> {
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(1) as usize;
    let max = schema
        .get("maxLength")
        .and_then(Value::as_u64)
        .map_or(24, |m| (m as usize).min(24))
        .max(min);
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        if let Ok(s) =
            proptest::string::string_regex(pattern.trim_start_matches('^').trim_end_matches('$'))
        {
            return s.prop_map(Value::from).boxed();
        }
    }
    if let Some(example) = schema.get("example").and_then(Value::as_str) {
        // Half the time the document's example (digits where Meta wants an id or a time), half
        // the time free text.
        let example = example.to_owned();
        return prop_oneof![
            Just(Value::from(example)),
            proptest::string::string_regex(&format!("[0-9]{{{min},{max}}}")).map_or_else(
                |_| Just(Value::from("0")).boxed(),
                |s| s.prop_map(Value::from).boxed()
            ),
            proptest::string::string_regex(&format!("[a-zA-Z0-9 .çãé]{{{min},{max}}}"))
                .map_or_else(
                    |_| Just(Value::from("a")).boxed(),
                    |s| s.prop_map(Value::from).boxed()
                ),
        ]
        .boxed();
    }
    proptest::string::string_regex(&format!("[a-zA-Z0-9 ]{{{min},{max}}}")).map_or_else(
        |_| Just(Value::from("a")).boxed(),
        |s| s.prop_map(Value::from).boxed(),
    )
}
