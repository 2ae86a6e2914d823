//! Messages between a business number and a contact, whatever their content.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contact::ContactProfile;
use crate::conversation::{BusinessNumber, ConversationKey};
use crate::status::MetaError;

/// Which way a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the contact to the business.
    Inbound,
    /// From the business to the contact.
    Outbound,
}

impl Direction {
    /// `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// One WhatsApp message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Message {
    /// WhatsApp's message id (`wamid.…`), unique per message.
    pub wamid: String,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The business number of the conversation.
    pub business: BusinessNumber,
    /// The customer: sender of an inbound message, recipient of an outbound one.
    pub contact: ContactProfile,
    /// When WhatsApp says the message was sent: the event time, never the processing time.
    pub timestamp: DateTime<Utc>,
    /// Reply, forward and product context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<MessageContext>,
    /// The click-to-WhatsApp ad or post the conversation started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral: Option<Referral>,
    /// What the message says or carries.
    pub content: MessageContent,
    /// For outbound messages, the employee who sent it through wacrm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_by: Option<Sender>,
}

impl Message {
    /// The conversation this message belongs to, if the contact has any identity.
    pub fn conversation_key(&self) -> Option<ConversationKey> {
        Some(ConversationKey {
            phone_number_id: self.business.phone_number_id.clone(),
            contact: self.contact.identity.primary_key()?,
        })
    }
}

/// The employee behind an outbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sender {
    /// The id of the API key used.
    pub key_id: String,
    /// The employee's name as registered with the key.
    pub name: String,
}

/// What a message replies to, whether it was forwarded, and the product it asks about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageContext {
    /// The wamid this message replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Who sent the message replied to (a business number or the contact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_from: Option<String>,
    /// The message was forwarded.
    #[serde(default)]
    pub forwarded: bool,
    /// The message was forwarded more than five times.
    #[serde(default)]
    pub frequently_forwarded: bool,
    /// The catalog product the contact asked about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referred_product: Option<ProductRef>,
}

/// A product in a catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProductRef {
    /// The catalog id.
    pub catalog_id: String,
    /// The product's retailer id.
    pub product_retailer_id: String,
}

/// A click-to-WhatsApp ad or post that started the conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Referral {
    /// The ad's or post's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// The ad's or post's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// `ad` or `post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    /// The ad's headline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// The ad's primary text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `image` or `video`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The click id, for attributing conversions to the ad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctwa_clid: Option<String>,
}

/// A media object: WhatsApp's media id (inbound) or a link (outbound).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Media {
    /// WhatsApp's media id; the file is fetched from the Graph API with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A public link to the file (outbound media sent by link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// SHA-256 of the file, base64, as WhatsApp reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

/// A reply to an interactive message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum InteractiveReply {
    /// A reply button was tapped.
    ButtonReply {
        /// The button's id.
        id: String,
        /// The button's title.
        title: String,
    },
    /// A list row was chosen.
    ListReply {
        /// The row's id.
        id: String,
        /// The row's title.
        title: String,
        /// The row's description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// A WhatsApp Flow was completed.
    NfmReply {
        /// The flow's name (`flow`, `address_message`, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The text shown in the chat.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// The flow's answers, the JSON text WhatsApp sent.
        response_json: String,
    },
}

/// One item of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderItem {
    /// The product's retailer id.
    pub product_retailer_id: String,
    /// How many.
    pub quantity: u64,
    /// Unit price.
    pub item_price: f64,
    /// ISO 4217 currency code.
    pub currency: String,
}

/// What a message carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MessageContent {
    /// Plain text.
    Text {
        /// The text.
        body: String,
        /// Outbound: whether WhatsApp should render a link preview.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        preview_url: bool,
    },
    /// A picture.
    Image(Media),
    /// A sound file or a voice note.
    Audio {
        /// The file.
        #[serde(flatten)]
        media: Media,
        /// Recorded with WhatsApp's voice recorder.
        #[serde(default)]
        voice: bool,
    },
    /// A video.
    Video(Media),
    /// A document.
    Document {
        /// The file.
        #[serde(flatten)]
        media: Media,
        /// The file's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
    },
    /// A sticker.
    Sticker {
        /// The file.
        #[serde(flatten)]
        media: Media,
        /// Animated sticker.
        #[serde(default)]
        animated: bool,
    },
    /// A shared location.
    Location {
        /// Latitude in degrees.
        latitude: f64,
        /// Longitude in degrees.
        longitude: f64,
        /// The place's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The place's address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        /// A link about the place.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// Shared contact cards, each as WhatsApp structured it (names, phones, emails, …).
    Contacts {
        /// The cards.
        cards: Vec<serde_json::Value>,
    },
    /// A reply to an interactive message.
    Interactive(InteractiveReply),
    /// A tap on a template's quick-reply button.
    TemplateButton {
        /// The button's text.
        text: String,
        /// The payload the template defined for the button.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<String>,
    },
    /// A reaction to another message; no emoji means the reaction was removed.
    Reaction {
        /// The wamid reacted to.
        message_id: String,
        /// The emoji, absent when the reaction was removed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        emoji: Option<String>,
    },
    /// An order from a catalog.
    Order {
        /// The catalog id.
        catalog_id: String,
        /// The text sent with the order.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// The items.
        items: Vec<OrderItem>,
    },
    /// An outbound interactive message (reply buttons or a list).
    InteractiveMessage {
        /// The message as sent.
        interactive: crate::outbound::Interactive,
    },
    /// An outbound template message.
    Template {
        /// The template's name.
        name: String,
        /// Its language code.
        language: String,
        /// Its category (`marketing`, `utility`, `authentication`) when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        category: Option<String>,
        /// The components with their parameters, as sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        components: Option<serde_json::Value>,
    },
    /// A system notice, such as a customer changing their number.
    System {
        /// The notice's type (`user_changed_number`, `customer_identity_changed`, …).
        system_type: String,
        /// The notice's text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// For a number change, the new `wa_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_wa_id: Option<String>,
    },
    /// A message type WhatsApp itself does not support for the Cloud API.
    Unsupported {
        /// The errors WhatsApp attached.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        errors: Vec<MetaError>,
        /// The message exactly as received.
        raw: serde_json::Value,
    },
    /// A type wacrm does not know yet (or a known type that did not match its shape), kept
    /// exactly as received so nothing is lost.
    Unknown {
        /// The `type` WhatsApp reported.
        type_name: String,
        /// The message exactly as received.
        raw: serde_json::Value,
    },
}

impl MessageContent {
    /// The content's kind as stored and shown (`text`, `image`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            MessageContent::Text { .. } => "text",
            MessageContent::Image(_) => "image",
            MessageContent::Audio { .. } => "audio",
            MessageContent::Video(_) => "video",
            MessageContent::Document { .. } => "document",
            MessageContent::Sticker { .. } => "sticker",
            MessageContent::Location { .. } => "location",
            MessageContent::Contacts { .. } => "contacts",
            MessageContent::Interactive(_) => "interactive",
            MessageContent::TemplateButton { .. } => "template_button",
            MessageContent::Reaction { .. } => "reaction",
            MessageContent::Order { .. } => "order",
            MessageContent::Template { .. } => "template",
            MessageContent::InteractiveMessage { .. } => "interactive_message",
            MessageContent::System { .. } => "system",
            MessageContent::Unsupported { .. } => "unsupported",
            MessageContent::Unknown { .. } => "unknown",
        }
    }

    /// A short human-readable text for timelines: the body of a text, the caption of media, the
    /// title of a reply. `None` when the content has no text of its own.
    pub fn preview_text(&self) -> Option<String> {
        match self {
            MessageContent::Text { body, .. } => Some(body.clone()),
            MessageContent::Image(m) | MessageContent::Video(m) => m.caption.clone(),
            MessageContent::Document { media, filename } => {
                media.caption.clone().or_else(|| filename.clone())
            }
            MessageContent::Interactive(InteractiveReply::ButtonReply { title, .. })
            | MessageContent::Interactive(InteractiveReply::ListReply { title, .. }) => {
                Some(title.clone())
            }
            MessageContent::Interactive(InteractiveReply::NfmReply { body, .. }) => body.clone(),
            MessageContent::TemplateButton { text, .. } => Some(text.clone()),
            MessageContent::Reaction { emoji, .. } => emoji.clone(),
            MessageContent::Order { text, .. } => text.clone(),
            MessageContent::System { body, .. } => body.clone(),
            MessageContent::Location { name, address, .. } => name.clone().or(address.clone()),
            MessageContent::Template { name, .. } => Some(format!("template {name}")),
            MessageContent::InteractiveMessage { interactive } => {
                Some(interactive.body().to_owned())
            }
            MessageContent::Audio { .. }
            | MessageContent::Sticker { .. }
            | MessageContent::Contacts { .. }
            | MessageContent::Unsupported { .. }
            | MessageContent::Unknown { .. } => None,
        }
    }
}
