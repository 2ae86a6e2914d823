//! Validation of request bodies: Meta's patched document, loaded once per process, and the few
//! rules of Meta's reference pages the document does not express.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::openapi::{meta_send_validator, SpecValidator, META_SEND_PATH};

/// A rule of Meta's reference pages that the fake enforces on top of the document's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferenceCheck {
    /// Which part of the body it applies to.
    pub applies_to: &'static str,
    /// The rule.
    pub rule: &'static str,
    /// The reference page it comes from.
    pub source: &'static str,
}

/// The longest text message body, in characters.
pub(super) const MAX_TEXT_BODY_CHARS: usize = 4096;

/// The rules the fake checks beyond the document. The document's `TextMessage` declares
/// `text.body` without requiring it, so a text message without a body validates; Meta's reference
/// page says otherwise, and so does the fake. (The document itself is not patched for this: its
/// patches are exactly those of `shared/README.md`.)
pub const REFERENCE_CHECKS: &[ReferenceCheck] = &[ReferenceCheck {
    applies_to: "text messages (`type: text`, or no `type` and a `text` object)",
    rule: "`text.body` is required and at most 4096 characters long",
    source: "Meta, \"Text Messages\" (Cloud API): \"<BODY_TEXT> String Required. Message body \
             text. Supports URLs. Maximum 4096 characters.\"",
}];

/// Applies [`REFERENCE_CHECKS`] to a send body; one violation line each.
pub(super) fn reference_violations(body: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let kind = body.get("type").and_then(Value::as_str);
    let text = body.get("text");
    let is_text = kind == Some("text") || (kind.is_none() && text.is_some());
    if is_text {
        match text.and_then(|t| t.get("body")) {
            None => lines.push(
                "/text: required: \"body\" is a required property (Meta reference \"Text \
                 Messages\")"
                    .to_owned(),
            ),
            Some(Value::String(s)) if s.chars().count() > MAX_TEXT_BODY_CHARS => {
                lines.push(format!(
                    "/text/body: maxLength: {} characters is longer than {MAX_TEXT_BODY_CHARS} \
                     (Meta reference \"Text Messages\")",
                    s.chars().count()
                ))
            }
            // A non-string body is the schema's to report (`type`).
            Some(_) => {}
        }
    }
    lines
}

/// A mark-as-read body: one with `status`, as the patched `Message` schema decides (no message
/// type declares `status`). Whether it is a *valid* one is the schema's business; this only
/// decides which kind of request it is.
pub(super) fn is_mark_as_read(body: &Value) -> bool {
    body.get("status").is_some()
}

/// Validates a body: the patched document (when present), then [`REFERENCE_CHECKS`] for sends.
pub(super) fn violations(spec: Option<&SpecValidator>, body: &Value) -> Vec<String> {
    let mut lines = match spec {
        Some(spec) => spec
            .validate_request(META_SEND_PATH, "post", body)
            .err()
            .unwrap_or_default(),
        None => Vec::new(),
    };
    if !is_mark_as_read(body) {
        lines.extend(reference_violations(body));
    }
    lines
}

/// Meta's document patched for sends, loaded on first use and shared by every fake of the
/// process; `None` when the specs are absent outside CI.
pub(super) fn shared_spec() -> Option<Arc<SpecValidator>> {
    static SPEC: OnceLock<Option<Arc<SpecValidator>>> = OnceLock::new();
    SPEC.get_or_init(|| meta_send_validator().map(Arc::new))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_body_is_required_and_bounded() {
        let ok = json!({"messaging_product": "whatsapp", "to": "1", "type": "text",
                        "text": {"body": "hi"}});
        assert!(reference_violations(&ok).is_empty());
        let missing = json!({"messaging_product": "whatsapp", "to": "1", "text": {}});
        assert_eq!(reference_violations(&missing).len(), 1);
        let long = json!({"messaging_product": "whatsapp", "to": "1", "type": "text",
                          "text": {"body": "x".repeat(MAX_TEXT_BODY_CHARS + 1)}});
        let lines = reference_violations(&long);
        assert!(lines[0].starts_with("/text/body: maxLength: "), "{lines:?}");
        let exact = json!({"to": "1", "type": "text",
                           "text": {"body": "é".repeat(MAX_TEXT_BODY_CHARS)}});
        assert!(reference_violations(&exact).is_empty());
        let image = json!({"to": "1", "type": "image", "image": {"id": "1"}});
        assert!(reference_violations(&image).is_empty());
    }

    #[test]
    fn mark_as_read_is_told_apart() {
        assert!(is_mark_as_read(&json!({
            "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.x"
        })));
        // An invalid one, but a mark-as-read all the same: it is not a send.
        assert!(is_mark_as_read(&json!({
            "messaging_product": "whatsapp", "to": "1", "status": "read", "text": {"body": "x"}
        })));
        assert!(!is_mark_as_read(&json!({
            "messaging_product": "whatsapp", "to": "1", "text": {"body": "x"}
        })));
    }
}
