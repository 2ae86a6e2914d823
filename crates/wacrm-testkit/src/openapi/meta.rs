//! Meta's WhatsApp Business Platform document with its webhook defect patched.
//!
//! `shared/README.md` lists the defect: `IncomingMessage` refers to the *outbound* (send-request)
//! message schemas, so every inbound webhook example of the document fails it, while status
//! webhooks validate. The inbound schemas exist in the same document (`TextMessage_2`,
//! `ReactionMessage_1`, …); the patches below point the webhook schemas at them and change nothing
//! else. Each patch checks that the defect is still there and fails otherwise, so a fixed
//! document makes the patch list visibly stale instead of silently doing nothing.

use serde_json::{json, Value};

use super::{spec_path, SpecError, SpecValidator};

/// Meta's document, relative to [`super::specs_dir`].
pub const META_SPEC: &str = "meta/business-messaging-api_v23.0.yaml";

/// One patch of Meta's document: which component schema, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaWebhookPatch {
    /// The `#/components/schemas/<name>` entries that are replaced.
    pub schemas: &'static [&'static str],
    /// What is wrong with it and what the patch does.
    pub reason: &'static str,
}

/// `type` → inbound schema, for `IncomingMessage`. The keys are exactly those of the document's
/// own `IncomingMessage.discriminator.mapping`; only the targets change, from the outbound
/// schemas (`TextMessage`, `ReactionMessage`, …) to the inbound ones defined for webhooks.
const INBOUND_BY_TYPE: &[(&str, &str)] = &[
    ("text", "TextMessage_2"),
    ("reaction", "ReactionMessage_1"),
    ("audio", "AudioMessage_1"),
    ("document", "DocumentMessage_1"),
    ("image", "ImageMessage_1"),
    ("sticker", "StickerMessage_1"),
    ("video", "VideoMessage_1"),
    ("location", "LocationMessage_1"),
    ("contacts", "ContactSharingMessage"),
    ("unsupported", "UnsupportedMessage"),
    ("unknown", "UnsupportedMessage"),
    ("button", "ButtonMessage"),
    ("interactive", "InteractiveMessageReply"),
    ("order", "OrderMessage"),
];

/// Inbound message schemas whose `allOf[0]` is the outbound `BaseMessageProperties`.
const INBOUND_MESSAGES: &[&str] = &[
    "TextMessage_2",
    "ReactionMessage_1",
    "AudioMessage_1",
    "DocumentMessage_1",
    "ImageMessage_1",
    "StickerMessage_1",
    "VideoMessage_1",
    "LocationMessage_1",
    "ContactSharingMessage",
    "UnsupportedMessage",
    "ButtonMessage",
    "InteractiveMessageReply",
    "OrderMessage",
    "SystemMessage",
];

/// The webhook patch of `shared/README.md`, in the order [`patch_meta_webhooks`] applies it.
/// All four items are the one defect "inbound webhook schemas refer to outbound schemas".
pub const META_WEBHOOK_PATCHES: &[MetaWebhookPatch] = &[
    MetaWebhookPatch {
        schemas: &["IncomingMessage"],
        reason: "its oneOf/discriminator maps every message type to the OUTBOUND send schema \
                 (TextMessage, ReactionMessage, …), which requires messaging_product/to/\
                 recipient_type and rejects all inbound examples; replaced by a choice \
                 discriminated on `type` (same keys as the document's mapping: text, reaction, \
                 audio, document, image, sticker, video, location, contacts, unsupported, unknown, \
                 button, interactive, order) over the INBOUND schemas of the same document \
                 (TextMessage_2, ReactionMessage_1, AudioMessage_1, DocumentMessage_1, \
                 ImageMessage_1, StickerMessage_1, VideoMessage_1, LocationMessage_1, \
                 ContactSharingMessage, UnsupportedMessage, ButtonMessage, \
                 InteractiveMessageReply, OrderMessage); an unlisted type fails `enum` on /type",
    },
    MetaWebhookPatch {
        schemas: INBOUND_MESSAGES,
        reason: "each inbound message schema's allOf starts with the OUTBOUND \
                 BaseMessageProperties (requires messaging_product, recipient_type, to); \
                 retargeted to the inbound BaseMessageProperties_1 (requires from, id, \
                 timestamp), which the document defines for exactly this and which is otherwise \
                 unused",
    },
    MetaWebhookPatch {
        schemas: &["ContactSharingMessage"],
        reason: "contacts[] items refer to the OUTBOUND ContactObject (additionalProperties: \
                 false, send-side shape) instead of the inbound ContactObject_1 defined next to \
                 it; retargeted",
    },
    MetaWebhookPatch {
        schemas: &["UnsupportedMessage"],
        reason: "errors[] items refer to the OUTBOUND API ErrorObject (requires `type`, which \
                 webhook errors never carry) instead of the inbound ErrorObject_2 defined next to \
                 it; retargeted",
    },
];

/// Applies [`META_WEBHOOK_PATCHES`] to a validator loaded from [`META_SPEC`]:
///
/// 1. `IncomingMessage`: its `oneOf` and `discriminator.mapping` name the outbound send schemas
///    (`TextMessage`, …), which require `messaging_product`/`recipient_type`/`to`, so Meta's own
///    inbound examples fail. It becomes a choice discriminated on `type` (the document's mapping
///    keys) over the inbound `TextMessage_2`, `ReactionMessage_1`, `AudioMessage_1`,
///    `DocumentMessage_1`, `ImageMessage_1`, `StickerMessage_1`, `VideoMessage_1`,
///    `LocationMessage_1`, `ContactSharingMessage`, `UnsupportedMessage`, `ButtonMessage`,
///    `InteractiveMessageReply` and `OrderMessage`. Written as `if`/`then` per type rather than a
///    bare `oneOf`, so an error is reported inside the matching schema, and an unknown `type`
///    fails `enum`.
/// 2. Those inbound schemas and `SystemMessage` start with `allOf: [$ref BaseMessageProperties]`,
///    the outbound base; retargeted to the inbound `BaseMessageProperties_1` (`from`, `id`,
///    `timestamp`), which nothing else in the document uses.
/// 3. `ContactSharingMessage.contacts[]`: outbound `ContactObject` → inbound `ContactObject_1`.
/// 4. `UnsupportedMessage.errors[]`: outbound `ErrorObject` (requires `type`) → inbound
///    `ErrorObject_2`.
///
/// Not patched, though also defective: `ContextObject` requires `referred_product` even on plain
/// replies, and the group examples disagree with `Groups` (`timestamp`, participant ids). Those
/// are not in `shared/README.md`; tests that meet them say so.
///
/// # Errors
///
/// [`SpecError::PatchDidNotApply`] when a defect is no longer in the document (review the patch
/// list), [`SpecError::UnknownSchema`] when an inbound schema is missing.
pub fn patch_meta_webhooks(spec: &mut SpecValidator) -> Result<(), SpecError> {
    patch_incoming_message(spec)?;
    for schema in INBOUND_MESSAGES {
        spec.retarget_refs(schema, "BaseMessageProperties", "BaseMessageProperties_1")?;
    }
    spec.retarget_refs("ContactSharingMessage", "ContactObject", "ContactObject_1")?;
    spec.retarget_refs("UnsupportedMessage", "ErrorObject", "ErrorObject_2")?;
    Ok(())
}

/// Replaces `IncomingMessage` by the discriminated choice over the inbound schemas.
fn patch_incoming_message(spec: &mut SpecValidator) -> Result<(), SpecError> {
    let outbound_text = json!({"$ref": "#/components/schemas/TextMessage"});
    let refers_to_outbound = spec
        .schema("IncomingMessage")
        .ok_or_else(|| SpecError::UnknownSchema("IncomingMessage".to_owned()))?
        .get("oneOf")
        .and_then(Value::as_array)
        .is_some_and(|alternatives| alternatives.contains(&outbound_text));
    if !refers_to_outbound {
        return Err(SpecError::PatchDidNotApply {
            schema: "IncomingMessage".to_owned(),
            expected: "oneOf containing the outbound #/components/schemas/TextMessage".to_owned(),
        });
    }
    for (_, target) in INBOUND_BY_TYPE {
        if spec.schema(target).is_none() {
            return Err(SpecError::UnknownSchema((*target).to_owned()));
        }
    }

    let types: Vec<&str> = INBOUND_BY_TYPE.iter().map(|(t, _)| *t).collect();
    let branches: Vec<Value> = INBOUND_BY_TYPE
        .iter()
        .map(|(message_type, schema)| {
            json!({
                "if": {
                    "properties": {"type": {"const": message_type}},
                    "required": ["type"]
                },
                "then": {"$ref": format!("#/components/schemas/{schema}")}
            })
        })
        .collect();
    spec.patch_schema(
        "IncomingMessage",
        json!({
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"type": "string", "enum": types}},
            "allOf": branches
        }),
    )
}

/// Meta's document ([`META_SPEC`]) with [`META_WEBHOOK_PATCHES`] applied; validate webhook
/// bodies with `validate("WebhookPayload", &body)`.
///
/// `None` (after printing "skipping: specs not found") when the specs are absent outside CI.
///
/// # Panics
///
/// As [`super::specs_dir`]; and when the document cannot be loaded or a patch no longer applies,
/// since then every webhook conformance test would be meaningless.
#[must_use]
#[track_caller]
pub fn meta_webhook_validator() -> Option<SpecValidator> {
    let path = spec_path(META_SPEC)?;
    let mut spec =
        SpecValidator::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
    patch_meta_webhooks(&mut spec)
        .unwrap_or_else(|e| panic!("patching {} for webhooks: {e}", path.display()));
    Some(spec)
}
