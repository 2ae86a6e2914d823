//! Turning an OpenAPI document into something a JSON Schema 2020-12 validator reads as intended.
//!
//! Only *schema objects* are rewritten (component schemas and every `schema` of a parameter,
//! header, request body or response); examples and everything else in the document are left as
//! they are, so request examples can still be read from it.

use serde_json::{Map, Number, Value};

/// Which OpenAPI 3 minor version a document declares; the keyword quirks differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// OpenAPI 3.0.x: schema objects are an extended subset of JSON Schema draft 5.
    OpenApi30,
    /// OpenAPI 3.1.x: schema objects are JSON Schema 2020-12 plus annotations.
    OpenApi31,
}

impl Dialect {
    /// Reads the dialect from the document's `openapi` field.
    pub(crate) fn of(document: &Value) -> Result<Self, String> {
        match document.get("openapi").and_then(Value::as_str) {
            Some(v) if v.starts_with("3.0") => Ok(Self::OpenApi30),
            Some(v) if v.starts_with("3.1") => Ok(Self::OpenApi31),
            Some(v) => Err(format!(
                "unsupported OpenAPI version {v:?} (need 3.0 or 3.1)"
            )),
            None => Err("no `openapi` version field: not an OpenAPI 3 document".to_owned()),
        }
    }
}

/// Converts a parsed YAML value into JSON.
///
/// YAML allows non-string mapping keys (Meta's document has unquoted response codes such as
/// `200:`); they become their plain-text form. Tags are dropped, keeping the tagged value.
pub(crate) fn yaml_to_json(value: serde_yaml_ng::Value) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Value::Number(
                    Number::from_f64(f).ok_or_else(|| format!("non-finite number {n} in YAML"))?,
                )
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut out = Map::with_capacity(mapping.len());
            for (k, v) in mapping {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_owned(),
                    other => return Err(format!("unsupported YAML mapping key {other:?}")),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

/// Rewrites every schema object reachable from the OpenAPI document's structure.
pub(crate) fn normalise_document(document: &mut Value, dialect: Dialect) {
    walk_document(document, dialect);
}

/// Walks the non-schema parts of a document: any `schema` member is a schema object, and so is
/// every member of `components.schemas`. Examples and extensions are never entered, since their
/// contents are payloads, not schemas.
fn walk_document(node: &mut Value, dialect: Dialect) {
    match node {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match key.as_str() {
                    "example" | "examples" => {}
                    k if k.starts_with("x-") => {}
                    "schema" => normalise_schema(value, dialect),
                    "schemas" => {
                        if let Value::Object(schemas) = value {
                            for schema in schemas.values_mut() {
                                normalise_schema(schema, dialect);
                            }
                        }
                    }
                    _ => walk_document(value, dialect),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                walk_document(item, dialect);
            }
        }
        _ => {}
    }
}

/// Keywords that only annotate in OpenAPI and can be dropped without changing what validates.
const ANNOTATIONS: &[&str] = &[
    "example",
    "examples",
    "discriminator",
    "xml",
    "externalDocs",
];

/// Rewrites one schema object (and, recursively, its subschemas) for JSON Schema 2020-12:
///
/// - `example`, `examples`, `discriminator`, `xml`, `externalDocs` are removed. They annotate;
///   `discriminator` in particular only *names* the property an `oneOf`/`anyOf` is chosen by, the
///   choice itself is always in the `oneOf`/`anyOf`.
/// - `nullable: true` (OpenAPI 3.0; Meta's 3.1 document also uses it once) becomes a `"null"`
///   member of `type` (and of `enum`, when present); `nullable` itself is removed.
/// - OpenAPI 3.0 only: boolean `exclusiveMinimum`/`exclusiveMaximum` become the numeric form, and
///   the siblings of a `$ref` are dropped (3.0 ignores them; 2020-12 would apply them).
pub(crate) fn normalise_schema(schema: &mut Value, dialect: Dialect) {
    let Value::Object(map) = schema else {
        return;
    };

    if dialect == Dialect::OpenApi30 && map.contains_key("$ref") {
        map.retain(|k, _| k == "$ref");
        return;
    }

    for keyword in ANNOTATIONS {
        map.remove(*keyword);
    }

    if let Some(nullable) = map.remove("nullable") {
        if nullable == Value::Bool(true) {
            make_nullable(map);
        }
    }

    if dialect == Dialect::OpenApi30 {
        exclusive_bound(map, "exclusiveMinimum", "minimum");
        exclusive_bound(map, "exclusiveMaximum", "maximum");
    }

    for (keyword, value) in map.iter_mut() {
        match keyword.as_str() {
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let Value::Object(children) = value {
                    for child in children.values_mut() {
                        normalise_schema(child, dialect);
                    }
                }
            }
            "allOf" | "anyOf" | "oneOf" | "prefixItems" => {
                if let Value::Array(children) = value {
                    for child in children {
                        normalise_schema(child, dialect);
                    }
                }
            }
            "items" => match value {
                Value::Array(children) => {
                    for child in children {
                        normalise_schema(child, dialect);
                    }
                }
                other => normalise_schema(other, dialect),
            },
            "additionalProperties"
            | "additionalItems"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "propertyNames"
            | "unevaluatedItems"
            | "unevaluatedProperties"
            | "contentSchema" => normalise_schema(value, dialect),
            _ => {}
        }
    }
}

fn make_nullable(map: &mut Map<String, Value>) {
    match map.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            map.insert(
                "type".to_owned(),
                Value::Array(vec![Value::String(t), Value::from("null")]),
            );
        }
        Some(Value::Array(types)) if !types.iter().any(|t| t == "null") => {
            types.push(Value::from("null"));
        }
        _ => {}
    }
    if let Some(Value::Array(values)) = map.get_mut("enum") {
        if !values.contains(&Value::Null) {
            values.push(Value::Null);
        }
    }
}

fn exclusive_bound(map: &mut Map<String, Value>, exclusive: &str, inclusive: &str) {
    match map.get(exclusive) {
        Some(Value::Bool(true)) => {
            if let Some(bound) = map.remove(inclusive) {
                map.insert(exclusive.to_owned(), bound);
            } else {
                map.remove(exclusive);
            }
        }
        Some(Value::Bool(false)) => {
            map.remove(exclusive);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nullable_becomes_a_null_type_and_enum_member() {
        let mut s = json!({"type": "string", "enum": ["a"], "nullable": true, "example": "a"});
        normalise_schema(&mut s, Dialect::OpenApi30);
        assert_eq!(s, json!({"type": ["string", "null"], "enum": ["a", null]}));
    }

    #[test]
    fn nullable_false_is_just_dropped() {
        let mut s = json!({"type": "integer", "nullable": false});
        normalise_schema(&mut s, Dialect::OpenApi31);
        assert_eq!(s, json!({"type": "integer"}));
    }

    #[test]
    fn annotations_are_stripped_in_nested_schemas_only() {
        let mut doc = json!({
            "openapi": "3.1.0",
            "components": {"schemas": {"A": {
                "type": "object",
                "discriminator": {"propertyName": "type"},
                "properties": {"b": {"type": "array", "items": {"type": "string", "example": "x"}}},
                "oneOf": [{"type": "object", "examples": [{}]}]
            }}},
            "paths": {"/p": {"post": {"requestBody": {"content": {"application/json": {
                "schema": {"type": "object", "nullable": true},
                "example": {"schema": {"nullable": true}, "example": 1}
            }}}}}}
        });
        normalise_document(&mut doc, Dialect::OpenApi31);
        assert_eq!(
            doc["components"]["schemas"]["A"],
            json!({
                "type": "object",
                "properties": {"b": {"type": "array", "items": {"type": "string"}}},
                "oneOf": [{"type": "object"}]
            })
        );
        let media = &doc["paths"]["/p"]["post"]["requestBody"]["content"]["application/json"];
        assert_eq!(media["schema"], json!({"type": ["object", "null"]}));
        // Payload examples are data, not schemas: untouched.
        assert_eq!(
            media["example"],
            json!({"schema": {"nullable": true}, "example": 1})
        );
    }

    #[test]
    fn openapi_30_boolean_exclusive_bounds_and_ref_siblings() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "n": {"type": "number", "minimum": 0, "exclusiveMinimum": true,
                      "maximum": 9, "exclusiveMaximum": false},
                "r": {"$ref": "#/components/schemas/R", "description": "ignored in 3.0"}
            }
        });
        normalise_schema(&mut s, Dialect::OpenApi30);
        assert_eq!(
            s["properties"],
            json!({
                "n": {"type": "number", "exclusiveMinimum": 0, "maximum": 9},
                "r": {"$ref": "#/components/schemas/R"}
            })
        );
    }

    #[test]
    fn yaml_integer_keys_become_strings() {
        let y: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("responses:\n  200:\n    description: ok\n  x: 1.5\n")
                .expect("yaml");
        let j = yaml_to_json(y).expect("json");
        assert_eq!(
            j,
            json!({"responses": {"200": {"description": "ok"}, "x": 1.5}})
        );
    }

    #[test]
    fn dialect_is_read_from_the_version_field() {
        assert_eq!(
            Dialect::of(&json!({"openapi": "3.0.1"})),
            Ok(Dialect::OpenApi30)
        );
        assert_eq!(
            Dialect::of(&json!({"openapi": "3.1.0"})),
            Ok(Dialect::OpenApi31)
        );
        assert!(Dialect::of(&json!({"swagger": "2.0"})).is_err());
    }
}
