//! Meta's WhatsApp Business Platform document with its send-request defects patched.
//!
//! `shared/README.md` lists the defects of the send endpoint's request schema
//! (`POST /{Version}/{Phone-Number-ID}/messages`, schema `Message`), each checked against the
//! document's own request examples:
//!
//! 1. every message-type schema combines `allOf: [BaseMessageProperties, {…}]` with
//!    `additionalProperties: false` in the second branch, so taken literally it rejects
//!    `messaging_product` and `to` (defined by the first branch) on every type;
//! 2. the template button `index` pattern `^[2-6, 11-14]$` is a character class that rejects
//!    `"0"`;
//! 3. location `latitude`/`longitude` are typed as strings while every example sends numbers;
//! 4. mark-as-read (`{"messaging_product":"whatsapp","status":"read","message_id":…}`) is
//!    missing from the request schema, though the document's own example "Send typing indicator
//!    and read receipt" sends it to this very operation;
//! 5. `recipient_type`, `type` and `template.language.policy` are required, though Meta's own
//!    examples omit them.
//!
//! [`patch_meta_send`] fixes exactly these, one named component schema at a time (listed with
//! their reasons in [`META_SEND_PATCHES`]). Each patch first checks that its defect is still in
//! the document and fails otherwise ([`SpecError::PatchDidNotApply`]), so a fixed document makes
//! the patch list visibly stale instead of silently doing nothing. Nothing else is loosened: the
//! message types the document closes stay closed (an unknown top-level or payload property is
//! still rejected; `TemplateMessage` the document leaves open), and every constraint the document
//! states on the content (`buttons` 1–3, `sections` 1–10, list-row lengths, media `id` xor
//! `link`, …) applies unchanged.
//!
//! Not patched, though the document's own examples meet them (they are outside
//! `shared/README.md`; the test that meets them lists them with these reasons): template button
//! `sub_type` is an enumeration of `quick_reply`, `url`, `catalog`, so "Send Catalog Template
//! Message" (`"CATALOG"`) and "Send Flow Template Message" (`"flow"`) fail it; the order-details
//! and order-status interactive messages (interactive types `order_details` / `order_status`,
//! actions `review_and_pay` / `review_order`) have no schema at all; and "Send Multi-Product
//! Message" keeps the placeholder `<HEADER_TYPE>` where the header `type` enumeration expects a
//! value.
//!
//! Worth knowing when relying on the validator: template components are checked through
//! `TemplateComponent` only (its `discriminator` mapping to `HeaderComponent`/`BodyComponent`/
//! `ButtonComponent` is an annotation), so the items of a component's `parameters` are not
//! checked one by one; that is also why named parameters (`parameter_name`), which the document
//! does not describe, pass.

use serde_json::{json, Value};

use super::{spec_path, SpecError, SpecValidator, META_SPEC};

/// The send endpoint's path template, as written in Meta's document.
pub const META_SEND_PATH: &str = "/{Version}/{Phone-Number-ID}/messages";

/// The component schema [`patch_meta_send`] adds for mark-as-read requests (a name of wacrm's
/// own, so it can never collide with one of Meta's).
pub const META_MARK_AS_READ_SCHEMA: &str = "WacrmMarkAsReadRequest";

/// One patch of the send-request schemas: which component schemas, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaSendPatch {
    /// The `#/components/schemas/<name>` entries that are replaced (or added).
    pub schemas: &'static [&'static str],
    /// What is wrong with them and what the patch does.
    pub reason: &'static str,
}

/// The send-message schemas whose `allOf[1]` says `additionalProperties: false`. `TemplateMessage`
/// is not among them: the document leaves it open, and so does the patch.
const CLOSED_MESSAGES: &[&str] = &[
    "TextMessage",
    "AudioMessage",
    "DocumentMessage",
    "ImageMessage",
    "LocationMessage",
    "VideoMessage",
    "StickerMessage",
    "ReactionMessage",
    "InteractiveMessage",
    "ContactsMessage",
];

/// The character class the document writes for the template button index.
const BROKEN_INDEX_PATTERN: &str = "^[2-6, 11-14]$";

/// The send-request patches of `shared/README.md`, in the order [`patch_meta_send`] applies them.
pub const META_SEND_PATCHES: &[MetaSendPatch] = &[
    MetaSendPatch {
        schemas: CLOSED_MESSAGES,
        reason: "each is `allOf: [$ref BaseMessageProperties, {additionalProperties: false, \
                 properties: {type, <payload>}}]`; `additionalProperties` only sees its own \
                 branch's `properties`, so messaging_product, to, recipient_type and context \
                 (declared by BaseMessageProperties) are rejected on every message. The names of \
                 BaseMessageProperties' properties are added to the branch's `properties` as \
                 `true` (their schemas stay in BaseMessageProperties, which allOf still \
                 applies): the message stays closed, over the base properties plus the type's \
                 own, which is what the document evidently means",
    },
    MetaSendPatch {
        schemas: &["LocationMessage"],
        reason: "location.latitude and location.longitude are typed `string` while every \
                 example of the document (Send Location Message, Send Reply to Location Message) \
                 sends JSON numbers; retyped `number`",
    },
    MetaSendPatch {
        schemas: &["TemplateComponent", "ButtonComponent"],
        reason: "the button `index` pattern `^[2-6, 11-14]$` is a character class (one of \
                 2-6, ',', ' ', 1, 4) that rejects \"0\", the first button; the description says \
                 \"Position index of the button (0-9)\". Replaced by one digit 0-9, as a string \
                 or as an integer: the document's own examples send both (\"0\" in Send Message \
                 Template Interactive, 0 in Send Catalog Template Message and Send Sample Issue \
                 Resolution Template)",
    },
    MetaSendPatch {
        schemas: &["BaseMessageProperties"],
        reason: "requires recipient_type and type, which Meta's own examples omit (recipient_type \
                 in Send Contact Message, Send Flow Template Message, Send Test Message …; type in \
                 Send Text Message with Preview URL and Send Reply to List Message); both dropped \
                 from `required` (their definitions stay). Each message type still requires its \
                 own payload property, so exactly one alternative of `Message` matches",
    },
    MetaSendPatch {
        schemas: &["LanguageObject"],
        reason: "requires `policy`, which Meta's own template examples omit (all but Send Sample \
                 Issue Resolution Template); dropped from `required` (the `deterministic` enum \
                 stays)",
    },
    MetaSendPatch {
        schemas: &["Message", META_MARK_AS_READ_SCHEMA],
        reason: "mark-as-read ({\"messaging_product\":\"whatsapp\",\"status\":\"read\",\
                 \"message_id\":…}, optionally with \"typing_indicator\":{\"type\":\"text\"}) is \
                 posted to this endpoint (Meta's \"Mark messages as read\" guide; the document's \
                 own example \"Send typing indicator and read receipt\") but no alternative of \
                 `Message` accepts it. A closed schema of wacrm's own (WacrmMarkAsReadRequest) is \
                 added, and `Message` becomes `if: {required: [status]}, then: \
                 WacrmMarkAsReadRequest, else: <the document's Message, unchanged>` (no message \
                 type declares `status`; the open TemplateMessage would have tolerated one, and \
                 no longer does)",
    },
];

/// Applies [`META_SEND_PATCHES`] to a validator loaded from [`META_SPEC`]; validate send bodies
/// with `validate_request(META_SEND_PATH, "post", &body)`.
///
/// 1. `TextMessage`, `AudioMessage`, `DocumentMessage`, `ImageMessage`, `LocationMessage`,
///    `VideoMessage`, `StickerMessage`, `ReactionMessage`, `InteractiveMessage`,
///    `ContactsMessage`: the property names of `BaseMessageProperties` (`messaging_product`,
///    `recipient_type`, `to`, `context`; `type` is there already) join `allOf[1].properties` as
///    `true`, so `allOf[1].additionalProperties: false` admits them.
/// 2. `LocationMessage`: `location.latitude`/`longitude` become `number`.
/// 3. `TemplateComponent.index` and `ButtonComponent`'s `index`: one digit `0`–`9`, string or
///    integer.
/// 4. `BaseMessageProperties.required`: `recipient_type` and `type` removed.
/// 5. `LanguageObject.required`: `policy` removed.
/// 6. `WacrmMarkAsReadRequest` added; `Message` sends a body with `status` to it and every other
///    body to the document's `Message`, unchanged.
///
/// # Errors
///
/// [`SpecError::PatchDidNotApply`] when a defect is no longer in the document (review the patch
/// list), [`SpecError::UnknownSchema`] when a patched schema is missing.
pub fn patch_meta_send(spec: &mut SpecValidator) -> Result<(), SpecError> {
    for name in CLOSED_MESSAGES {
        close_over_base(spec, name)?;
    }
    retype_coordinates(spec)?;
    fix_button_index(spec, "TemplateComponent", "/properties/index")?;
    fix_button_index(spec, "ButtonComponent", "/allOf/1/properties/index")?;
    drop_required(spec, "BaseMessageProperties", &["recipient_type", "type"])?;
    drop_required(spec, "LanguageObject", &["policy"])?;
    add_mark_as_read(spec)
}

/// Meta's document ([`META_SPEC`]) with [`META_SEND_PATCHES`] applied; validate send bodies with
/// `validate_request(META_SEND_PATH, "post", &body)`.
///
/// `None` (after printing "skipping: specs not found") when the specs are absent outside CI.
///
/// # Panics
///
/// As [`super::specs_dir`]; and when the document cannot be loaded or a patch no longer applies,
/// since then every send conformance test would be meaningless.
#[must_use]
#[track_caller]
pub fn meta_send_validator() -> Option<SpecValidator> {
    let path = spec_path(META_SPEC)?;
    let mut spec =
        SpecValidator::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
    patch_meta_send(&mut spec)
        .unwrap_or_else(|e| panic!("patching {} for sends: {e}", path.display()));
    Some(spec)
}

/// The current (possibly already patched) copy of a component schema.
fn current(spec: &SpecValidator, name: &str) -> Result<Value, SpecError> {
    spec.schema(name)
        .cloned()
        .ok_or_else(|| SpecError::UnknownSchema(name.to_owned()))
}

fn not_applied(schema: &str, expected: &str) -> SpecError {
    SpecError::PatchDidNotApply {
        schema: schema.to_owned(),
        expected: expected.to_owned(),
    }
}

/// Patch 1: the base property names join the closed branch's `properties`.
fn close_over_base(spec: &mut SpecValidator, name: &str) -> Result<(), SpecError> {
    let mut schema = current(spec, name)?;
    let expected = "allOf [$ref BaseMessageProperties, {additionalProperties: false, …}]";
    let base = json!({"$ref": "#/components/schemas/BaseMessageProperties"});
    let branches_ok = schema
        .get("allOf")
        .and_then(Value::as_array)
        .is_some_and(|branches| branches.len() == 2 && branches[0] == base);
    let closed = schema.pointer("/allOf/1/additionalProperties") == Some(&Value::Bool(false));
    if !branches_ok || !closed {
        return Err(not_applied(name, expected));
    }
    let base_names: Vec<String> = spec
        .schema("BaseMessageProperties")
        .and_then(|b| b.get("properties"))
        .and_then(Value::as_object)
        .map(|properties| properties.keys().cloned().collect())
        .ok_or_else(|| SpecError::UnknownSchema("BaseMessageProperties".to_owned()))?;
    let Some(properties) = schema
        .pointer_mut("/allOf/1/properties")
        .and_then(Value::as_object_mut)
    else {
        return Err(not_applied(name, expected));
    };
    let mut added = 0;
    for base_name in base_names {
        if !properties.contains_key(&base_name) {
            // `true`: the property's schema stays BaseMessageProperties', which allOf applies.
            properties.insert(base_name, Value::Bool(true));
            added += 1;
        }
    }
    if added == 0 {
        return Err(not_applied(
            name,
            "base properties missing from the closed branch",
        ));
    }
    spec.patch_schema(name, schema)
}

/// Patch 2: `LocationMessage` coordinates `string` → `number`.
fn retype_coordinates(spec: &mut SpecValidator) -> Result<(), SpecError> {
    let name = "LocationMessage";
    let mut schema = current(spec, name)?;
    for field in ["latitude", "longitude"] {
        let pointer = format!("/allOf/1/properties/location/properties/{field}/type");
        match schema.pointer_mut(&pointer) {
            Some(kind) if kind == "string" => *kind = Value::from("number"),
            _ => {
                return Err(not_applied(
                    name,
                    &format!("location.{field} typed `string`"),
                ))
            }
        }
    }
    spec.patch_schema(name, schema)
}

/// Patch 3: the button `index` becomes one digit, string or integer.
fn fix_button_index(spec: &mut SpecValidator, name: &str, pointer: &str) -> Result<(), SpecError> {
    let mut schema = current(spec, name)?;
    let expected = format!("index pattern {BROKEN_INDEX_PATTERN:?}");
    let Some(index) = schema.pointer_mut(pointer) else {
        return Err(not_applied(name, &expected));
    };
    if index.get("pattern").and_then(Value::as_str) != Some(BROKEN_INDEX_PATTERN) {
        return Err(not_applied(name, &expected));
    }
    *index = json!({
        "description": "Position index of the button (0-9); wacrm patch of the document's \
                        `^[2-6, 11-14]$`",
        "anyOf": [
            {"type": "string", "pattern": "^[0-9]$"},
            {"type": "integer", "minimum": 0, "maximum": 9}
        ]
    });
    spec.patch_schema(name, schema)
}

/// Patches 4 and 5: drop names from a schema's top-level `required`.
fn drop_required(spec: &mut SpecValidator, name: &str, fields: &[&str]) -> Result<(), SpecError> {
    let mut schema = current(spec, name)?;
    let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) else {
        return Err(not_applied(name, "a `required` list"));
    };
    for field in fields {
        let before = required.len();
        required.retain(|r| r.as_str() != Some(field));
        if required.len() == before {
            return Err(not_applied(name, &format!("{field:?} in `required`")));
        }
    }
    spec.patch_schema(name, schema)
}

/// Patch 6: add the mark-as-read schema and make it an alternative of `Message`.
fn add_mark_as_read(spec: &mut SpecValidator) -> Result<(), SpecError> {
    // The defect is behavioural: the document's request schema rejects Meta's own minimal
    // mark-as-read body. Should it ever accept it, this patch is stale.
    let probe = json!({
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.probe"
    });
    if spec
        .validate_request(META_SEND_PATH, "post", &probe)
        .is_ok()
    {
        return Err(not_applied(
            "Message",
            "a request schema that rejects mark-as-read",
        ));
    }
    let sends = current(spec, "Message")?;
    if sends.get("oneOf").and_then(Value::as_array).is_none() {
        return Err(not_applied("Message", "a `oneOf` of message types"));
    }
    // A body with `status` is a mark-as-read (no message type declares `status`); every other
    // body meets the document's own `oneOf`, unchanged, and its errors read as they would.
    let message = json!({
        "if": {"type": "object", "required": ["status"]},
        "then": {"$ref": format!("#/components/schemas/{META_MARK_AS_READ_SCHEMA}")},
        "else": sends
    });
    spec.patch_schema(
        META_MARK_AS_READ_SCHEMA,
        json!({
            "type": "object",
            "description": "wacrm: mark an incoming message (and the earlier ones of the thread) \
                            as read, optionally showing a typing indicator; Meta's \"Mark \
                            messages as read\" guide and the document's example \"Send typing \
                            indicator and read receipt\". Answered {\"success\": true}.",
            "required": ["messaging_product", "status", "message_id"],
            "additionalProperties": false,
            "properties": {
                "messaging_product": {"type": "string", "const": "whatsapp"},
                "status": {"type": "string", "const": "read"},
                "message_id": {"type": "string", "minLength": 1},
                "typing_indicator": {
                    "type": "object",
                    "required": ["type"],
                    "additionalProperties": false,
                    "properties": {"type": {"type": "string", "const": "text"}}
                }
            }
        }),
    )?;
    spec.patch_schema("Message", message)
}
