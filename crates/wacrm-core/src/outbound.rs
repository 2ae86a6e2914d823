//! Outbound messages: what an employee may ask wacrm to send, the rules it must satisfy before it
//! is accepted, and the requests that travel on the commands topic.
//!
//! The limits below are WhatsApp's (Cloud API reference pages for text, media, interactive and
//! template messages); a request that breaks one is refused before it is queued, so it never
//! costs a Graph API call nor fails later where the employee cannot see it.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::contact::ContactIdentity;
use crate::conversation::{BusinessNumber, ConversationKey};
use crate::message::{Direction, Media, Message, MessageContent, Sender};
use crate::status::MetaError;
use crate::ContactProfile;

/// How long after a contact's last inbound message (or call) free-form messages may be sent.
pub const SERVICE_WINDOW: Duration = Duration::hours(24);

/// A media file to send: WhatsApp's id of an uploaded file, or a public link, never both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MediaRef {
    /// The media id of a file uploaded to WhatsApp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// An `https://` (or `http://`) link WhatsApp downloads the file from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// A caption (image, video, document), at most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

/// A parameter of a template component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TemplateParameter {
    /// Text; `parameter_name` for templates with named parameters, absent for positional ones.
    Text {
        /// The value.
        text: String,
        /// The parameter's name (named-parameter templates).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parameter_name: Option<String>,
    },
    /// An amount of money.
    Currency {
        /// Shown when the amount cannot be localised.
        fallback_value: String,
        /// ISO 4217 code.
        code: String,
        /// The amount × 1000.
        amount_1000: i64,
        /// The parameter's name (named-parameter templates).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parameter_name: Option<String>,
    },
    /// A date and time, shown as given.
    DateTime {
        /// The text shown.
        fallback_value: String,
        /// The parameter's name (named-parameter templates).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parameter_name: Option<String>,
    },
    /// A header image.
    Image {
        /// The file.
        image: MediaRef,
    },
    /// A header video.
    Video {
        /// The file.
        video: MediaRef,
    },
    /// A header document.
    Document {
        /// The file.
        document: MediaRef,
    },
    /// A quick-reply button's payload.
    Payload {
        /// What comes back when the button is tapped.
        payload: String,
    },
    /// A copy-code button's coupon.
    CouponCode {
        /// The code.
        coupon_code: String,
    },
}

/// A component of a template with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TemplateComponent {
    /// `header`, `body` or `button`.
    #[serde(rename = "type")]
    pub kind: TemplateComponentKind,
    /// For buttons: `quick_reply`, `url` or `copy_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<String>,
    /// For buttons: the button's position, from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The parameters, in order.
    #[serde(default)]
    pub parameters: Vec<TemplateParameter>,
}

/// Which part of a template a component fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemplateComponentKind {
    /// The header.
    Header,
    /// The body.
    Body,
    /// A button.
    Button,
}

/// A reply button of an interactive message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReplyButton {
    /// What comes back when it is tapped (at most 256 characters, unique in the message).
    pub id: String,
    /// Its label (at most 20 characters).
    pub title: String,
}

/// A row of a list message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListRow {
    /// What comes back when it is chosen (at most 200 characters, unique in the message).
    pub id: String,
    /// Its title (at most 24 characters).
    pub title: String,
    /// Its description (at most 72 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A section of a list message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListSection {
    /// Its title (at most 24 characters; required when there are several sections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its rows.
    pub rows: Vec<ListRow>,
}

/// An interactive message: reply buttons or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Interactive {
    /// Up to three reply buttons.
    Buttons {
        /// The text (at most 1024 characters).
        body: String,
        /// A text header (at most 60 characters).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        /// A footer (at most 60 characters).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<String>,
        /// One to three buttons.
        buttons: Vec<ReplyButton>,
    },
    /// A list of up to ten rows behind a button.
    List {
        /// The text (at most 4096 characters).
        body: String,
        /// A text header (at most 60 characters).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        /// A footer (at most 60 characters).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<String>,
        /// The label of the button that opens the list (at most 20 characters).
        button: String,
        /// One to ten sections with one to ten rows in all.
        sections: Vec<ListSection>,
    },
}

impl Interactive {
    /// The message's text.
    pub fn body(&self) -> &str {
        match self {
            Interactive::Buttons { body, .. } | Interactive::List { body, .. } => body,
        }
    }
}

/// What an outbound message carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutboundContent {
    /// Text, at most 4096 characters.
    Text {
        /// The text.
        body: String,
        /// Whether WhatsApp renders a preview of the first link.
        #[serde(default)]
        preview_url: bool,
    },
    /// An approved template; the only kind allowed outside the 24-hour window.
    Template {
        /// The template's name.
        name: String,
        /// Its language code (`pt_BR`, `en_US`, …).
        language: String,
        /// The components with parameters.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        components: Vec<TemplateComponent>,
    },
    /// A picture.
    Image {
        /// The file.
        #[serde(flatten)]
        media: MediaRef,
    },
    /// A sound file.
    Audio {
        /// The file (no caption).
        #[serde(flatten)]
        media: MediaRef,
    },
    /// A video.
    Video {
        /// The file.
        #[serde(flatten)]
        media: MediaRef,
    },
    /// A document.
    Document {
        /// The file.
        #[serde(flatten)]
        media: MediaRef,
        /// The name shown for it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
    },
    /// A sticker.
    Sticker {
        /// The file (no caption).
        #[serde(flatten)]
        media: MediaRef,
    },
    /// Reply buttons or a list.
    Interactive {
        /// The message.
        interactive: Interactive,
    },
    /// A reaction to a message of the conversation; an empty emoji removes it.
    Reaction {
        /// The wamid reacted to.
        message_id: String,
        /// The emoji, or `""` to remove the reaction.
        emoji: String,
    },
}

/// Why an outbound request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request breaks one of WhatsApp's rules for the content.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// Outside the 24-hour customer-service window only templates may be sent.
    #[error("the 24-hour customer-service window is closed ({0}); only templates may be sent")]
    WindowClosed(String),
    /// The contact stopped marketing messages from this number.
    #[error("the contact opted out of marketing messages ({0}); only utility and authentication templates may be sent")]
    OptedOut(String),
    /// The business requires an opt-in for marketing and the contact has none in force
    /// (`[whatsapp] marketing_requires_opt_in`, see [`crate::consent`]).
    #[error("no opt-in for marketing messages ({0}); only utility and authentication templates may be sent")]
    NoOptIn(String),
}

impl Refusal {
    /// A stable machine-readable code: `invalid`, `window_closed`, `opted_out` or `no_opt_in`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Invalid(_) => "invalid",
            Refusal::WindowClosed(_) => "window_closed",
            Refusal::OptedOut(_) => "opted_out",
            Refusal::NoOptIn(_) => "no_opt_in",
        }
    }
}

fn check_len(what: &str, value: &str, min: usize, max: usize) -> Result<(), Refusal> {
    let n = value.chars().count();
    if n < min || n > max {
        let bound = if min > 0 {
            format!("{min} to {max}")
        } else {
            format!("at most {max}")
        };
        return Err(Refusal::Invalid(format!(
            "{what} must be {bound} characters long (it is {n})"
        )));
    }
    Ok(())
}

fn check_opt(what: &str, value: Option<&String>, max: usize) -> Result<(), Refusal> {
    value.map_or(Ok(()), |v| check_len(what, v, 1, max))
}

impl MediaRef {
    fn validate(&self, what: &str, caption_allowed: bool) -> Result<(), Refusal> {
        match (&self.id, &self.link) {
            (Some(_), Some(_)) => {
                return Err(Refusal::Invalid(format!(
                    "{what}: give either id or link, not both"
                )))
            }
            (None, None) => return Err(Refusal::Invalid(format!("{what}: give an id or a link"))),
            (Some(id), None) => check_len(&format!("{what}.id"), id, 1, 256)?,
            (None, Some(link)) => {
                if !(link.starts_with("https://") || link.starts_with("http://")) {
                    return Err(Refusal::Invalid(format!(
                        "{what}.link must be an http(s) URL"
                    )));
                }
                check_len(&format!("{what}.link"), link, 1, 2048)?;
            }
        }
        match (&self.caption, caption_allowed) {
            (Some(_), false) => Err(Refusal::Invalid(format!("{what} cannot have a caption"))),
            (caption, _) => check_opt(&format!("{what}.caption"), caption.as_ref(), 1024),
        }
    }
}

impl Interactive {
    fn validate(&self) -> Result<(), Refusal> {
        match self {
            Interactive::Buttons {
                body,
                header,
                footer,
                buttons,
            } => {
                check_len("interactive.body", body, 1, 1024)?;
                check_opt("interactive.header", header.as_ref(), 60)?;
                check_opt("interactive.footer", footer.as_ref(), 60)?;
                if buttons.is_empty() || buttons.len() > 3 {
                    return Err(Refusal::Invalid(format!(
                        "reply buttons: 1 to 3 buttons (there are {})",
                        buttons.len()
                    )));
                }
                for b in buttons {
                    check_len("button id", &b.id, 1, 256)?;
                    check_len("button title", &b.title, 1, 20)?;
                }
                unique_ids(buttons.iter().map(|b| b.id.as_str()))
            }
            Interactive::List {
                body,
                header,
                footer,
                button,
                sections,
            } => {
                check_len("interactive.body", body, 1, 4096)?;
                check_opt("interactive.header", header.as_ref(), 60)?;
                check_opt("interactive.footer", footer.as_ref(), 60)?;
                check_len("list button", button, 1, 20)?;
                let rows: usize = sections.iter().map(|s| s.rows.len()).sum();
                if sections.is_empty() || sections.len() > 10 || rows == 0 || rows > 10 {
                    return Err(Refusal::Invalid(format!(
                        "list: 1 to 10 sections with 1 to 10 rows in all (there are {} sections, {rows} rows)",
                        sections.len()
                    )));
                }
                for s in sections {
                    if sections.len() > 1 && s.title.is_none() {
                        return Err(Refusal::Invalid(
                            "list: every section needs a title when there are several".into(),
                        ));
                    }
                    check_opt("section title", s.title.as_ref(), 24)?;
                    if s.rows.is_empty() {
                        return Err(Refusal::Invalid("list: a section has no rows".into()));
                    }
                    for r in &s.rows {
                        check_len("row id", &r.id, 1, 200)?;
                        check_len("row title", &r.title, 1, 24)?;
                        check_opt("row description", r.description.as_ref(), 72)?;
                    }
                }
                unique_ids(
                    sections
                        .iter()
                        .flat_map(|s| s.rows.iter().map(|r| r.id.as_str())),
                )
            }
        }
    }
}

fn unique_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Result<(), Refusal> {
    let mut seen = std::collections::BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(Refusal::Invalid(format!("duplicate id {id:?}")));
        }
    }
    Ok(())
}

impl OutboundContent {
    /// Checks WhatsApp's rules for the content alone.
    pub fn validate(&self) -> Result<(), Refusal> {
        match self {
            OutboundContent::Text { body, .. } => check_len("text.body", body, 1, 4096),
            OutboundContent::Template {
                name,
                language,
                components,
            } => {
                check_len("template.name", name, 1, 512)?;
                check_len("template.language", language, 2, 15)?;
                for c in components {
                    if c.kind == TemplateComponentKind::Button
                        && (c.sub_type.is_none() || c.index.is_none())
                    {
                        return Err(Refusal::Invalid(
                            "template button components need sub_type and index".into(),
                        ));
                    }
                    for p in &c.parameters {
                        match p {
                            TemplateParameter::Image { image: m }
                            | TemplateParameter::Video { video: m }
                            | TemplateParameter::Document { document: m } => {
                                m.validate("template header media", true)?
                            }
                            TemplateParameter::Text { text, .. } => {
                                check_len("template text parameter", text, 1, 32768)?
                            }
                            _ => {}
                        }
                    }
                }
                Ok(())
            }
            OutboundContent::Image { media } => media.validate("image", true),
            OutboundContent::Video { media } => media.validate("video", true),
            OutboundContent::Audio { media } => media.validate("audio", false),
            OutboundContent::Sticker { media } => media.validate("sticker", false),
            OutboundContent::Document { media, filename } => {
                media.validate("document", true)?;
                check_opt("document.filename", filename.as_ref(), 240)
            }
            OutboundContent::Interactive { interactive } => interactive.validate(),
            OutboundContent::Reaction { message_id, emoji } => {
                check_len("reaction.message_id", message_id, 1, 512)?;
                check_len("reaction.emoji", emoji, 0, 16)
            }
        }
    }

    /// Whether the content needs the 24-hour window open (everything but templates).
    pub fn needs_open_window(&self) -> bool {
        !matches!(self, OutboundContent::Template { .. })
    }

    /// The kind (`text`, `template`, `image`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            OutboundContent::Text { .. } => "text",
            OutboundContent::Template { .. } => "template",
            OutboundContent::Image { .. } => "image",
            OutboundContent::Audio { .. } => "audio",
            OutboundContent::Video { .. } => "video",
            OutboundContent::Document { .. } => "document",
            OutboundContent::Sticker { .. } => "sticker",
            OutboundContent::Interactive { .. } => "interactive",
            OutboundContent::Reaction { .. } => "reaction",
        }
    }
}

/// Template categories, as WhatsApp approves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemplateCategory {
    /// Promotions, offers, announcements: blocked for contacts who opted out.
    Marketing,
    /// Updates about an order or account.
    Utility,
    /// One-time passwords.
    Authentication,
}

impl TemplateCategory {
    /// `marketing`, `utility` or `authentication`.
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateCategory::Marketing => "marketing",
            TemplateCategory::Utility => "utility",
            TemplateCategory::Authentication => "authentication",
        }
    }
}

/// What the store knows about a contact on a business number, for deciding whether a message may
/// be sent now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendContext {
    /// The contact's last inbound message or call on this number.
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// The contact stopped marketing messages from this number (and has not resumed).
    pub marketing_opt_out: bool,
}

/// Checks the window and opt-out rules. `category` is the template's category when the content
/// is a template (unknown templates count as marketing: the safe side of an opt-out).
pub fn check_send(
    content: &OutboundContent,
    category: Option<TemplateCategory>,
    context: &SendContext,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    content.validate()?;
    if content.needs_open_window() {
        match context.last_inbound_at {
            None => {
                return Err(Refusal::WindowClosed(
                    "the contact never wrote to this number".into(),
                ))
            }
            Some(at) if now - at >= SERVICE_WINDOW => {
                return Err(Refusal::WindowClosed(format!(
                    "last inbound message at {}",
                    at.to_rfc3339()
                )))
            }
            Some(_) => {}
        }
    }
    if let OutboundContent::Template { name, .. } = content {
        let category = category.unwrap_or(TemplateCategory::Marketing);
        if category == TemplateCategory::Marketing && context.marketing_opt_out {
            return Err(Refusal::OptedOut(format!(
                "template {name} is a marketing template"
            )));
        }
    }
    Ok(())
}

/// An employee asked for a message to be sent (the commands topic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SendRequest {
    /// The request id the API answered with.
    pub request_id: String,
    /// The business number it is sent from.
    pub business: BusinessNumber,
    /// The recipient as WhatsApp knows them (`to`: their `wa_id` or phone digits).
    pub to: String,
    /// The recipient's identities.
    pub contact: ContactIdentity,
    /// What to send.
    pub content: OutboundContent,
    /// The template's category, when the content is a template and it is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<TemplateCategory>,
    /// The wamid this message replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The employee who asked.
    pub sent_by: Sender,
    /// When the API accepted it.
    pub requested_at: DateTime<Utc>,
}

impl SendRequest {
    /// The conversation it belongs to.
    pub fn conversation_key(&self) -> Option<ConversationKey> {
        Some(ConversationKey {
            phone_number_id: self.business.phone_number_id.clone(),
            contact: self.contact.primary_key()?,
        })
    }

    /// The message it became once WhatsApp accepted it with `wamid` at `at`.
    pub fn to_message(&self, wamid: &str, at: DateTime<Utc>) -> Message {
        Message {
            wamid: wamid.to_owned(),
            direction: Direction::Outbound,
            business: self.business.clone(),
            contact: ContactProfile {
                identity: self.contact.clone(),
                name: None,
                username: None,
            },
            timestamp: at,
            context: self
                .reply_to
                .as_ref()
                .map(|r| crate::message::MessageContext {
                    reply_to: Some(r.clone()),
                    ..Default::default()
                }),
            referral: None,
            content: self.message_content(),
            sent_by: Some(self.sent_by.clone()),
        }
    }

    fn message_content(&self) -> MessageContent {
        let media = |m: &MediaRef| Media {
            id: m.id.clone(),
            link: m.link.clone(),
            caption: m.caption.clone(),
            ..Media::default()
        };
        match &self.content {
            OutboundContent::Text { body, preview_url } => MessageContent::Text {
                body: body.clone(),
                preview_url: *preview_url,
            },
            OutboundContent::Template {
                name,
                language,
                components,
            } => MessageContent::Template {
                name: name.clone(),
                language: language.clone(),
                category: self.category.map(|c| c.as_str().to_owned()),
                components: (!components.is_empty())
                    .then(|| serde_json::to_value(components).ok())
                    .flatten(),
            },
            OutboundContent::Image { media: m } => MessageContent::Image(media(m)),
            OutboundContent::Video { media: m } => MessageContent::Video(media(m)),
            OutboundContent::Audio { media: m } => MessageContent::Audio {
                media: media(m),
                voice: false,
            },
            OutboundContent::Sticker { media: m } => MessageContent::Sticker {
                media: media(m),
                animated: false,
            },
            OutboundContent::Document { media: m, filename } => MessageContent::Document {
                media: media(m),
                filename: filename.clone(),
            },
            OutboundContent::Interactive { interactive } => MessageContent::InteractiveMessage {
                interactive: interactive.clone(),
            },
            OutboundContent::Reaction { message_id, emoji } => MessageContent::Reaction {
                message_id: message_id.clone(),
                emoji: (!emoji.is_empty()).then(|| emoji.clone()),
            },
        }
    }
}

/// An employee asked for an inbound message to be marked as read (the commands topic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReadRequest {
    /// The request id the API answered with.
    pub request_id: String,
    /// The business number that received the message.
    pub business: BusinessNumber,
    /// The inbound message's wamid.
    pub wamid: String,
    /// Who wrote it.
    pub contact: ContactIdentity,
    /// The employee who asked.
    pub sent_by: Sender,
    /// When the API accepted it.
    pub requested_at: DateTime<Utc>,
}

/// How a send request ended without a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// WhatsApp refused it (or retries ran out): it was not sent.
    Failed,
    /// Nobody can know whether WhatsApp sent it — the call timed out or was reset after the
    /// request left, WhatsApp answered a 5xx that does not say nothing was done or an answer
    /// that cannot be read, or wacrm stopped while the request was with WhatsApp. It is not sent
    /// again automatically (a duplicate is worse than asking the employee).
    Unknown,
}

/// A send or read request that did not produce a message (the conversations topic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SendFailure {
    /// The request.
    pub request_id: String,
    /// The business number.
    pub business: BusinessNumber,
    /// The recipient.
    pub contact: ContactIdentity,
    /// Failed or unknown.
    pub kind: FailureKind,
    /// What went wrong, in words.
    pub reason: String,
    /// WhatsApp's errors, when it answered with some.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<MetaError>,
    /// The employee who asked.
    pub sent_by: Sender,
    /// When it was given up.
    pub failed_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &str) -> OutboundContent {
        OutboundContent::Text {
            body: body.into(),
            preview_url: false,
        }
    }

    fn template() -> OutboundContent {
        OutboundContent::Template {
            name: "promo".into(),
            language: "pt_BR".into(),
            components: vec![],
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn window_is_open_for_just_under_24_hours() {
        let context = SendContext {
            last_inbound_at: Some(at("2026-01-01T10:00:00Z")),
            marketing_opt_out: false,
        };
        assert!(check_send(&text("oi"), None, &context, at("2026-01-02T09:59:00Z")).is_ok());
        let late = check_send(&text("oi"), None, &context, at("2026-01-02T10:01:00Z"));
        assert_eq!(late.unwrap_err().code(), "window_closed");
        assert!(check_send(&template(), None, &context, at("2026-01-02T10:01:00Z")).is_ok());
        let never = check_send(
            &text("oi"),
            None,
            &SendContext::default(),
            at("2026-01-02T10:01:00Z"),
        );
        assert_eq!(never.unwrap_err().code(), "window_closed");
    }

    #[test]
    fn opt_out_blocks_marketing_and_unknown_templates_only() {
        let context = SendContext {
            last_inbound_at: None,
            marketing_opt_out: true,
        };
        let now = at("2026-01-02T10:00:00Z");
        for category in [None, Some(TemplateCategory::Marketing)] {
            let refused = check_send(&template(), category, &context, now).unwrap_err();
            assert_eq!(refused.code(), "opted_out");
        }
        for category in [TemplateCategory::Utility, TemplateCategory::Authentication] {
            assert!(check_send(&template(), Some(category), &context, now).is_ok());
        }
    }

    #[test]
    fn content_limits_are_whatsapps() {
        assert!(text("").validate().is_err());
        assert!(text(&"a".repeat(4096)).validate().is_ok());
        assert!(text(&"a".repeat(4097)).validate().is_err());
        let buttons = |n: usize| OutboundContent::Interactive {
            interactive: Interactive::Buttons {
                body: "pick".into(),
                header: None,
                footer: None,
                buttons: (0..n)
                    .map(|i| ReplyButton {
                        id: format!("b{i}"),
                        title: format!("Option {i}"),
                    })
                    .collect(),
            },
        };
        assert!(buttons(3).validate().is_ok());
        assert!(buttons(4).validate().is_err());
        assert!(buttons(0).validate().is_err());
        let list = |n: usize| OutboundContent::Interactive {
            interactive: Interactive::List {
                body: "pick".into(),
                header: None,
                footer: None,
                button: "Options".into(),
                sections: vec![ListSection {
                    title: None,
                    rows: (0..n)
                        .map(|i| ListRow {
                            id: format!("r{i}"),
                            title: format!("Row {i}"),
                            description: None,
                        })
                        .collect(),
                }],
            },
        };
        assert!(list(10).validate().is_ok());
        assert!(list(11).validate().is_err());
        let both = OutboundContent::Image {
            media: MediaRef {
                id: Some("1".into()),
                link: Some("https://x/y.png".into()),
                caption: None,
            },
        };
        assert!(both.validate().is_err());
        let sticker_caption = OutboundContent::Sticker {
            media: MediaRef {
                id: Some("1".into()),
                link: None,
                caption: Some("no".into()),
            },
        };
        assert!(sticker_caption.validate().is_err());
    }

    #[test]
    fn request_json_is_tagged_by_type() {
        let content: OutboundContent = serde_json::from_value(serde_json::json!({
            "type": "document", "link": "https://example.com/a.pdf", "filename": "a.pdf"
        }))
        .unwrap();
        assert_eq!(content.kind(), "document");
        assert!(content.validate().is_ok());
    }
}
