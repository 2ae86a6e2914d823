//! Query strings checked against an operation's declared query parameters, the same way for
//! every fake.

use serde_json::Value;

/// `~` and `/` escaped for a JSON pointer token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The operation object `paths[template][method]`, if the document has it.
pub fn operation<'a>(document: &'a Value, template: &str, method: &str) -> Option<&'a Value> {
    document.pointer(&format!(
        "/paths/{}/{}",
        escape(template),
        method.to_ascii_lowercase()
    ))
}

/// A parameter object, its local `$ref` followed.
fn resolve<'a>(document: &'a Value, parameter: &'a Value) -> &'a Value {
    parameter
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|p| document.pointer(p))
        .unwrap_or(parameter)
}

/// The `in: query` parameters of an operation (path-level ones included).
fn query_parameters<'a>(document: &'a Value, template: &str, method: &str) -> Vec<&'a Value> {
    let path = format!("/paths/{}", escape(template));
    let mut out = Vec::new();
    for pointer in [
        format!("{path}/parameters"),
        format!("{path}/{}/parameters", method.to_ascii_lowercase()),
    ] {
        if let Some(list) = document.pointer(&pointer).and_then(Value::as_array) {
            out.extend(
                list.iter()
                    .map(|p| resolve(document, p))
                    .filter(|p| p.get("in").and_then(Value::as_str) == Some("query")),
            );
        }
    }
    out
}

/// Whether `required` query parameters must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    /// A missing `required` parameter is a violation.
    Checked,
    /// Not checked (a document whose `required` marks are known to be unreliable).
    Ignored,
}

/// Checks a query string against the operation's `in: query` parameters: each name must be
/// declared, integers, numbers and booleans must parse, enumerations (string or numeric) must
/// hold, and — with [`Required::Checked`] — each `required` one must be present. Ranges stated
/// only in prose are each fake's own checks. One line per violation, `?<name>: <keyword>: …`.
pub fn validate_query(
    document: &Value,
    template: &str,
    method: &str,
    query: &[(String, String)],
    required: Required,
) -> Vec<String> {
    let declared = query_parameters(document, template, method);
    let mut errors = Vec::new();
    for (name, value) in query {
        let Some(param) = declared
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str()))
        else {
            errors.push(format!(
                "?{name}: parameters: the operation declares no query parameter {name:?}"
            ));
            continue;
        };
        let schema = param.get("schema").unwrap_or(&Value::Null);
        let kind = schema.get("type").and_then(Value::as_str);
        let ok = match kind {
            Some("boolean") => matches!(value.as_str(), "true" | "false"),
            Some("integer") => value.parse::<i64>().is_ok(),
            Some("number") => value.parse::<f64>().is_ok(),
            _ => true,
        };
        if !ok {
            errors.push(format!(
                "?{name}: type: {value:?} is not of type {:?}",
                kind.unwrap_or("value")
            ));
            continue;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            let number = value.parse::<f64>().ok();
            let found = allowed.iter().any(|a| match a {
                Value::String(s) => s == value,
                Value::Number(n) => n.as_f64().is_some() && n.as_f64() == number,
                _ => false,
            });
            if !found {
                let allowed: Vec<String> = allowed.iter().map(Value::to_string).collect();
                errors.push(format!(
                    "?{name}: enum: {value:?} is not one of {}",
                    allowed.join(", ")
                ));
            }
        }
    }
    if required == Required::Checked {
        for param in &declared {
            let Some(name) = param.get("name").and_then(Value::as_str) else {
                continue;
            };
            if param.get("required") == Some(&Value::Bool(true))
                && !query.iter().any(|(n, _)| n == name)
            {
                errors.push(format!(
                    "?{name}: required: the operation requires the query parameter {name:?}"
                ));
            }
        }
    }
    errors
}
