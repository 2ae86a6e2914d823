//! Lenient wire types for Meta's `WebhookPayload` (business messaging API v23.0).
//!
//! Unknown fields are ignored; messages and statuses are kept as raw JSON at this level and read
//! one by one in [`crate::normalise`], so one odd message can never fail the other 999 of a batch.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// The top-level webhook body.
#[derive(Debug, Deserialize)]
pub struct WebhookPayload {
    /// `whatsapp_business_account` for WhatsApp webhooks.
    pub object: String,
    /// One entry per WhatsApp Business Account.
    pub entry: Vec<Entry>,
}

/// One WhatsApp Business Account's changes.
#[derive(Debug, Deserialize)]
pub struct Entry {
    /// The WhatsApp Business Account id.
    #[serde(default)]
    pub id: Option<String>,
    /// The changes.
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// One change: what `field` it is about and its value, kept raw until we know the field.
#[derive(Debug, Deserialize)]
pub struct Change {
    /// `messages`, `user_preferences`, … (other subscriptions send other fields).
    #[serde(default)]
    pub field: Option<String>,
    /// The change's value.
    pub value: Box<RawValue>,
}

/// The value of a `messages` (or `user_preferences`) change.
#[derive(Debug, Deserialize)]
pub struct MessagesValue {
    /// The business number.
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// The profiles of the senders.
    #[serde(default)]
    pub contacts: Vec<WireContact>,
    /// Inbound messages, raw.
    #[serde(default)]
    pub messages: Vec<Box<RawValue>>,
    /// Status reports, raw.
    #[serde(default)]
    pub statuses: Vec<Box<RawValue>>,
    /// Errors about the change as a whole.
    #[serde(default)]
    pub errors: Vec<WireError>,
    /// Marketing stop / resume preferences.
    #[serde(default)]
    pub user_preferences: Vec<Box<RawValue>>,
    /// Calls (Calling API, field `calls`).
    #[serde(default)]
    pub calls: Vec<Box<RawValue>>,
}

/// `metadata`: the business number the change is about.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// The display phone number.
    #[serde(default)]
    pub display_phone_number: Option<String>,
    /// The phone number id.
    pub phone_number_id: String,
}

/// `contacts[]`: a sender's profile.
#[derive(Debug, Clone, Deserialize)]
pub struct WireContact {
    /// The profile.
    #[serde(default)]
    pub profile: Option<WireProfile>,
    /// The WhatsApp id.
    #[serde(default)]
    pub wa_id: Option<String>,
    /// The business-scoped user id.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// `contacts[].profile`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireProfile {
    /// The profile name.
    #[serde(default)]
    pub name: Option<String>,
    /// The username, when the user has one.
    #[serde(default)]
    pub username: Option<String>,
}

/// An error object as Meta writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct WireError {
    /// The numeric code.
    pub code: i64,
    /// The title.
    #[serde(default)]
    pub title: Option<String>,
    /// The message.
    #[serde(default)]
    pub message: Option<String>,
    /// `error_data`.
    #[serde(default)]
    pub error_data: Option<WireErrorData>,
}

/// `error_data`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireErrorData {
    /// Details.
    #[serde(default)]
    pub details: Option<String>,
}

/// One inbound message. Every type's object is optional here; the `type` decides which one
/// must be present.
#[derive(Debug, Deserialize)]
pub struct WireMessage {
    /// The sender's `wa_id`.
    #[serde(default)]
    pub from: Option<String>,
    /// The sender's business-scoped user id.
    #[serde(default)]
    pub from_user_id: Option<String>,
    /// The wamid.
    pub id: String,
    /// Unix seconds, as a string (numbers are accepted too).
    #[serde(deserialize_with = "unix_seconds")]
    pub timestamp: i64,
    /// The message type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Reply / forward / product context.
    #[serde(default)]
    pub context: Option<WireContext>,
    /// Click-to-WhatsApp referral.
    #[serde(default)]
    pub referral: Option<wacrm_core::message::Referral>,
    /// `text`.
    #[serde(default)]
    pub text: Option<WireText>,
    /// `image`.
    #[serde(default)]
    pub image: Option<WireMedia>,
    /// `audio`.
    #[serde(default)]
    pub audio: Option<WireMedia>,
    /// `video`.
    #[serde(default)]
    pub video: Option<WireMedia>,
    /// `document`.
    #[serde(default)]
    pub document: Option<WireMedia>,
    /// `sticker`.
    #[serde(default)]
    pub sticker: Option<WireMedia>,
    /// `location`.
    #[serde(default)]
    pub location: Option<WireLocation>,
    /// `contacts`: shared contact cards.
    #[serde(default)]
    pub contacts: Option<Vec<serde_json::Value>>,
    /// `interactive`.
    #[serde(default)]
    pub interactive: Option<WireInteractive>,
    /// `button`: a template quick-reply tap.
    #[serde(default)]
    pub button: Option<WireButton>,
    /// `reaction`.
    #[serde(default)]
    pub reaction: Option<WireReaction>,
    /// `order`.
    #[serde(default)]
    pub order: Option<WireOrder>,
    /// `system`.
    #[serde(default)]
    pub system: Option<WireSystem>,
    /// Errors, for `unsupported` messages.
    #[serde(default)]
    pub errors: Vec<WireError>,
}

/// `context`.
#[derive(Debug, Deserialize)]
pub struct WireContext {
    /// Who sent the message replied to.
    #[serde(default)]
    pub from: Option<String>,
    /// The wamid replied to.
    #[serde(default)]
    pub id: Option<String>,
    /// Forwarded.
    #[serde(default)]
    pub forwarded: bool,
    /// Forwarded many times.
    #[serde(default)]
    pub frequently_forwarded: bool,
    /// The product asked about.
    #[serde(default)]
    pub referred_product: Option<wacrm_core::message::ProductRef>,
}

/// `text`.
#[derive(Debug, Deserialize)]
pub struct WireText {
    /// The body.
    pub body: String,
}

/// A media object.
#[derive(Debug, Deserialize)]
pub struct WireMedia {
    /// Media id.
    #[serde(default)]
    pub id: Option<String>,
    /// MIME type.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// Download URL (needs the access token).
    #[serde(default)]
    pub url: Option<String>,
    /// SHA-256.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Caption.
    #[serde(default)]
    pub caption: Option<String>,
    /// Document file name.
    #[serde(default)]
    pub filename: Option<String>,
    /// Audio: a voice note.
    #[serde(default)]
    pub voice: bool,
    /// Sticker: animated.
    #[serde(default)]
    pub animated: bool,
}

/// `location`.
#[derive(Debug, Deserialize)]
pub struct WireLocation {
    /// Latitude (a number; a numeric string is accepted).
    #[serde(deserialize_with = "float_or_string")]
    pub latitude: f64,
    /// Longitude.
    #[serde(deserialize_with = "float_or_string")]
    pub longitude: f64,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Address.
    #[serde(default)]
    pub address: Option<String>,
    /// URL.
    #[serde(default)]
    pub url: Option<String>,
}

/// `interactive`.
#[derive(Debug, Deserialize)]
pub struct WireInteractive {
    /// `button_reply`, `list_reply` or `nfm_reply`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Button reply.
    #[serde(default)]
    pub button_reply: Option<WireReply>,
    /// List reply.
    #[serde(default)]
    pub list_reply: Option<WireReply>,
    /// Flow reply.
    #[serde(default)]
    pub nfm_reply: Option<WireNfmReply>,
}

/// A button or list reply.
#[derive(Debug, Deserialize)]
pub struct WireReply {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Description (lists).
    #[serde(default)]
    pub description: Option<String>,
}

/// A flow reply.
#[derive(Debug, Deserialize)]
pub struct WireNfmReply {
    /// Flow name.
    #[serde(default)]
    pub name: Option<String>,
    /// Body.
    #[serde(default)]
    pub body: Option<String>,
    /// The answers as a JSON string.
    pub response_json: String,
}

/// `button`.
#[derive(Debug, Deserialize)]
pub struct WireButton {
    /// Text.
    pub text: String,
    /// Payload.
    #[serde(default)]
    pub payload: Option<String>,
}

/// `reaction`.
#[derive(Debug, Deserialize)]
pub struct WireReaction {
    /// The wamid reacted to.
    pub message_id: String,
    /// The emoji; absent or empty when removed.
    #[serde(default)]
    pub emoji: Option<String>,
}

/// `order`.
#[derive(Debug, Deserialize)]
pub struct WireOrder {
    /// Catalog id.
    pub catalog_id: String,
    /// Text.
    #[serde(default)]
    pub text: Option<String>,
    /// Items.
    #[serde(default)]
    pub product_items: Vec<WireOrderItem>,
}

/// `order.product_items[]`.
#[derive(Debug, Deserialize)]
pub struct WireOrderItem {
    /// Retailer id.
    pub product_retailer_id: String,
    /// Quantity.
    pub quantity: u64,
    /// Unit price.
    #[serde(deserialize_with = "float_or_string")]
    pub item_price: f64,
    /// Currency.
    pub currency: String,
}

/// `system`.
#[derive(Debug, Deserialize)]
pub struct WireSystem {
    /// Body.
    #[serde(default)]
    pub body: Option<String>,
    /// New `wa_id` for number changes.
    #[serde(default)]
    pub wa_id: Option<String>,
    /// New business-scoped user id, when reported.
    #[serde(default)]
    pub user_id: Option<String>,
    /// `user_changed_number`, …
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// One call event (`calls[]`, Calling API).
#[derive(Debug, Deserialize)]
pub struct WireCall {
    /// The call id (`wacid.…`).
    pub id: String,
    /// The caller.
    #[serde(default)]
    pub from: Option<String>,
    /// The callee.
    #[serde(default)]
    pub to: Option<String>,
    /// `connect`, `terminate`, …
    pub event: String,
    /// Unix seconds.
    #[serde(deserialize_with = "unix_seconds")]
    pub timestamp: i64,
    /// `USER_INITIATED` or `BUSINESS_INITIATED`.
    #[serde(default)]
    pub direction: Option<String>,
    /// For `terminate`: `COMPLETED`, `FAILED`, …
    #[serde(default)]
    pub status: Option<String>,
    /// For `terminate`: seconds.
    #[serde(default)]
    pub duration: Option<i64>,
}

/// One status report.
#[derive(Debug, Deserialize)]
pub struct WireStatus {
    /// The wamid.
    pub id: String,
    /// `sent`, `delivered`, `read`, `played`, `failed`.
    pub status: String,
    /// Unix seconds.
    #[serde(deserialize_with = "unix_seconds")]
    pub timestamp: i64,
    /// Recipient `wa_id`.
    #[serde(default)]
    pub recipient_id: Option<String>,
    /// Recipient business-scoped user id.
    #[serde(default)]
    pub recipient_user_id: Option<String>,
    /// Conversation window.
    #[serde(default)]
    pub conversation: Option<WireConversation>,
    /// Pricing.
    #[serde(default)]
    pub pricing: Option<wacrm_core::status::Pricing>,
    /// Errors (for `failed`).
    #[serde(default)]
    pub errors: Vec<WireError>,
}

/// `statuses[].conversation`.
#[derive(Debug, Deserialize)]
pub struct WireConversation {
    /// Id.
    #[serde(default)]
    pub id: Option<String>,
    /// Expiry, unix seconds.
    #[serde(default, deserialize_with = "opt_unix_seconds")]
    pub expiration_timestamp: Option<i64>,
    /// Origin.
    #[serde(default)]
    pub origin: Option<WireOrigin>,
}

/// `conversation.origin`.
#[derive(Debug, Deserialize)]
pub struct WireOrigin {
    /// `marketing`, `utility`, …
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// `user_preferences[]`.
#[derive(Debug, Deserialize)]
pub struct WirePreference {
    /// The contact's `wa_id`.
    #[serde(default)]
    pub wa_id: Option<String>,
    /// The contact's business-scoped user id.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Description.
    #[serde(default)]
    pub detail: Option<String>,
    /// `marketing_messages`.
    pub category: String,
    /// `stop` or `resume`.
    pub value: String,
    /// Unix seconds.
    #[serde(deserialize_with = "unix_seconds")]
    pub timestamp: i64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Int(i64),
    Float(f64),
    Text(String),
}

fn unix_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match NumberOrString::deserialize(d)? {
        NumberOrString::Int(v) => Ok(v),
        NumberOrString::Float(v) => Ok(v as i64),
        NumberOrString::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("timestamp is not unix seconds")),
    }
}

fn opt_unix_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    unix_seconds(d).map(Some)
}

fn float_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match NumberOrString::deserialize(d)? {
        NumberOrString::Int(v) => Ok(v as f64),
        NumberOrString::Float(v) => Ok(v),
        NumberOrString::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("not a number")),
    }
}
