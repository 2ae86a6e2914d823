//! From Meta's webhook payload to core events.
//!
//! Every entry × every change × every message, status, preference and error is processed;
//! nothing is skipped silently. What cannot be understood is returned as [`Rejected`] with the
//! reason and the raw JSON, for the caller to dead-letter. A message of a type we do not know (or
//! a known type in an unexpected shape) is not rejected: it becomes
//! [`MessageContent::Unknown`] with the raw JSON, so it is stored like any other message.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use wacrm_core::contact::{ContactIdentity, ContactProfile};
use wacrm_core::conversation::BusinessNumber;
use wacrm_core::event::{
    ContactUpdate, Event, EventId, EventPayload, IdentityChange, PlatformError, PreferenceChange,
    PLATFORM_ERROR,
};
use wacrm_core::message::{
    Direction, InteractiveReply, Media, Message, MessageContent, MessageContext, OrderItem,
};
use wacrm_core::status::{ConversationWindow, DeliveryState, MetaError, StatusUpdate};

use crate::webhook::{
    MessagesValue, WebhookPayload, WireContact, WireError, WireMedia, WireMessage, WirePreference,
    WireStatus,
};

/// A part of a webhook that could not be turned into an event, with why. Never dropped: the
/// caller keeps it as a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// What was wrong.
    pub reason: String,
    /// A complete webhook payload holding just this part (with its entry id, field, metadata
    /// and contacts), so a dead letter can be re-driven through the same path once the cause is
    /// fixed. The part itself is kept exactly as received.
    pub raw: String,
}

/// Where a change sits in its payload, to rebuild a one-part payload for a rejection.
#[derive(Clone, Copy)]
struct ChangeRef<'a> {
    entry_id: Option<&'a str>,
    field: Option<&'a str>,
    value: &'a RawValue,
}

impl ChangeRef<'_> {
    /// A payload with this change, its value reduced to `array: [part]` (or whole when `part`
    /// is `None`).
    fn payload_with(&self, part: Option<(&str, &RawValue)>) -> String {
        let whole: serde_json::Value =
            serde_json::from_str(self.value.get()).unwrap_or(serde_json::Value::Null);
        let value = match part {
            None => whole,
            Some((array, item)) => {
                let mut reduced = serde_json::Map::new();
                for key in ["messaging_product", "metadata", "contacts"] {
                    if let Some(v) = whole.get(key) {
                        reduced.insert(key.to_owned(), v.clone());
                    }
                }
                let item: serde_json::Value =
                    serde_json::from_str(item.get()).unwrap_or(serde_json::Value::Null);
                reduced.insert(array.to_owned(), serde_json::Value::Array(vec![item]));
                serde_json::Value::Object(reduced)
            }
        };
        let mut change = serde_json::Map::new();
        if let Some(field) = self.field {
            change.insert("field".into(), field.into());
        }
        change.insert("value".into(), value);
        let mut entry = serde_json::Map::new();
        if let Some(id) = self.entry_id {
            entry.insert("id".into(), id.into());
        }
        entry.insert(
            "changes".into(),
            serde_json::Value::Array(vec![serde_json::Value::Object(change)]),
        );
        serde_json::json!({"object": "whatsapp_business_account", "entry": [entry]}).to_string()
    }
}

/// Everything a webhook payload said.
#[derive(Debug, Default)]
pub struct Normalised {
    /// The events, in the order of the payload.
    pub events: Vec<Event>,
    /// The parts that could not be understood.
    pub rejected: Vec<Rejected>,
}

/// Why a body is not a WhatsApp webhook at all.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or not shaped like a `WebhookPayload`. Shown scrubbed: the parser's message
    /// quotes the value it did not expect, which may be a phone number or a body.
    #[error("body is not a WhatsApp webhook payload: {}", wacrm_core::redact::scrub(&.0.to_string()))]
    Shape(#[from] serde_json::Error),
    /// JSON, but for another product.
    #[error("webhook object is {0:?}, not whatsapp_business_account")]
    Object(String),
}

/// Parses a raw webhook body and normalises it. `received_at` is used only where Meta gives no
/// time of its own (change-level errors).
pub fn parse_and_normalise(
    body: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Normalised, PayloadError> {
    let payload: WebhookPayload = serde_json::from_slice(body)?;
    if payload.object != "whatsapp_business_account" {
        return Err(PayloadError::Object(payload.object));
    }
    Ok(normalise(&payload, received_at))
}

/// Normalises every entry and change of a payload.
pub fn normalise(payload: &WebhookPayload, received_at: DateTime<Utc>) -> Normalised {
    let mut out = Normalised::default();
    for entry in &payload.entry {
        for change in &entry.changes {
            let at = ChangeRef {
                entry_id: entry.id.as_deref(),
                field: change.field.as_deref(),
                value: &change.value,
            };
            match change.field.as_deref() {
                Some("messages") | Some("user_preferences") | Some("calls") | None => {
                    normalise_value(at, received_at, &mut out)
                }
                Some(other) => out.rejected.push(Rejected {
                    reason: format!("change field {other:?} is not handled by wacrm"),
                    raw: at.payload_with(None),
                }),
            }
        }
    }
    out
}

fn normalise_value(at: ChangeRef<'_>, received_at: DateTime<Utc>, out: &mut Normalised) {
    let value: MessagesValue = match serde_json::from_str(at.value.get()) {
        Ok(v) => v,
        Err(e) => {
            return reject(
                out,
                format!("change value is not understood: {e}"),
                at.payload_with(None),
            )
        }
    };
    let Some(metadata) = &value.metadata else {
        return reject(
            out,
            "change value has no metadata.phone_number_id".into(),
            at.payload_with(None),
        );
    };
    let business = BusinessNumber {
        phone_number_id: metadata.phone_number_id.clone(),
        display_phone_number: metadata.display_phone_number.clone(),
    };
    let profiles = Profiles::new(&value.contacts);
    let mut announced: HashMap<usize, DateTime<Utc>> = HashMap::new();

    for raw_message in &value.messages {
        match read_message(raw_message, &business, &profiles) {
            Ok((message, profile_index, extra)) => {
                if let Some(i) = profile_index {
                    announced.entry(i).or_insert(message.timestamp);
                }
                match Event::message(message) {
                    Some(event) => out.events.push(event),
                    None => reject(
                        out,
                        "message has no sender identity".into(),
                        at.payload_with(Some(("messages", raw_message))),
                    ),
                }
                out.events.extend(extra);
            }
            Err(reason) => reject(
                out,
                reason,
                at.payload_with(Some(("messages", raw_message))),
            ),
        }
    }

    let mut announced: Vec<_> = announced.into_iter().collect();
    announced.sort_by_key(|(i, _)| *i);
    for (index, time) in announced {
        let profile = profiles.profile(index);
        let parts = [
            business.phone_number_id.clone(),
            profile
                .identity
                .keys()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            profile.name.clone().unwrap_or_default(),
            profile.username.clone().unwrap_or_default(),
        ];
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let payload = EventPayload::ContactUpdated(ContactUpdate {
            business: business.clone(),
            profile,
        });
        out.events.extend(Event::contact(payload, time, &parts));
    }

    for raw_status in &value.statuses {
        match read_status(raw_status, &business) {
            Ok(event) => out.events.push(event),
            Err(reason) => reject(out, reason, at.payload_with(Some(("statuses", raw_status)))),
        }
    }

    for raw_pref in &value.user_preferences {
        match read_preference(raw_pref, &business, &profiles) {
            Ok(event) => out.events.push(event),
            Err(reason) => reject(
                out,
                reason,
                at.payload_with(Some(("user_preferences", raw_pref))),
            ),
        }
    }

    for raw_call in &value.calls {
        match read_call(raw_call, &business) {
            Ok(event) => out.events.push(event),
            Err(reason) => reject(out, reason, at.payload_with(Some(("calls", raw_call)))),
        }
    }

    if !value.errors.is_empty() {
        let errors: Vec<MetaError> = value.errors.iter().map(meta_error).collect();
        let fingerprint = serde_json::to_string(&errors).unwrap_or_default();
        out.events.push(Event {
            id: EventId::derive(PLATFORM_ERROR, &[&business.phone_number_id, &fingerprint]),
            time: received_at,
            key: format!("{}/platform", business.phone_number_id),
            payload: EventPayload::PlatformError(PlatformError {
                business: business.clone(),
                errors,
            }),
        });
    }
}

fn reject(out: &mut Normalised, reason: String, raw: String) {
    // A parser's reason quotes the value it did not expect: it becomes a dead-letter reason and
    // a log line, the raw part stays whole for a re-drive.
    let reason = wacrm_core::redact::scrub(&reason);
    out.rejected.push(Rejected { reason, raw });
}

/// The `contacts[]` of a change, looked up by `wa_id` or BSUID.
struct Profiles<'a> {
    contacts: &'a [WireContact],
}

impl<'a> Profiles<'a> {
    fn new(contacts: &'a [WireContact]) -> Self {
        Profiles { contacts }
    }

    /// The index of the profile that belongs to a sender.
    fn find(&self, wa_id: Option<&str>, bsuid: Option<&str>) -> Option<usize> {
        let by_id = self.contacts.iter().position(|c| {
            (wa_id.is_some() && c.wa_id.as_deref() == wa_id)
                || (bsuid.is_some() && c.user_id.as_deref() == bsuid)
        });
        by_id.or_else(|| (self.contacts.len() == 1).then_some(0))
    }

    fn profile(&self, index: usize) -> ContactProfile {
        let c = &self.contacts[index];
        ContactProfile {
            identity: ContactIdentity::from_webhook(c.wa_id.as_deref(), c.user_id.as_deref()),
            name: c.profile.as_ref().and_then(|p| p.name.clone()),
            username: c.profile.as_ref().and_then(|p| p.username.clone()),
        }
    }
}

/// The fields every message has, read when the full shape does not match.
#[derive(Deserialize)]
struct MessageHead {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    from_user_id: Option<String>,
    id: String,
    timestamp: serde_json::Value,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

type ReadMessage = (Message, Option<usize>, Vec<Event>);

fn read_message(
    raw: &RawValue,
    business: &BusinessNumber,
    profiles: &Profiles<'_>,
) -> Result<ReadMessage, String> {
    match serde_json::from_str::<WireMessage>(raw.get()) {
        Ok(wire) => Ok(from_wire(wire, raw, business, profiles)),
        Err(shape_error) => {
            // Keep any message we can identify, whatever its body looks like.
            let head: MessageHead = serde_json::from_str(raw.get())
                .map_err(|e| format!("message without id or timestamp: {e}"))?;
            let timestamp = match &head.timestamp {
                serde_json::Value::String(s) => s.parse::<i64>().ok(),
                serde_json::Value::Number(n) => n.as_i64(),
                _ => None,
            }
            .ok_or_else(|| format!("message timestamp is not unix seconds ({shape_error})"))?;
            let wire = WireMessage {
                from: head.from,
                from_user_id: head.from_user_id,
                id: head.id,
                timestamp,
                kind: head.kind.unwrap_or_else(|| "unknown".into()),
                context: None,
                referral: None,
                text: None,
                image: None,
                audio: None,
                video: None,
                document: None,
                sticker: None,
                location: None,
                contacts: None,
                interactive: None,
                button: None,
                reaction: None,
                order: None,
                system: None,
                errors: Vec::new(),
            };
            Ok(from_wire(wire, raw, business, profiles))
        }
    }
}

fn from_wire(
    mut wire: WireMessage,
    raw: &RawValue,
    business: &BusinessNumber,
    profiles: &Profiles<'_>,
) -> ReadMessage {
    let profile_index = profiles.find(wire.from.as_deref(), wire.from_user_id.as_deref());
    let mut identity =
        ContactIdentity::from_webhook(wire.from.as_deref(), wire.from_user_id.as_deref());
    let (name, username) = match profile_index {
        Some(i) => {
            let p = profiles.profile(i);
            if identity.bsuid.is_none() {
                identity.bsuid = p.identity.bsuid.clone();
            }
            if identity.wa_id.is_none() && identity.phone.is_none() {
                identity.wa_id = p.identity.wa_id.clone();
                identity.phone = p.identity.phone.clone();
            }
            (p.name, p.username)
        }
        None => (None, None),
    };
    let timestamp = DateTime::from_timestamp(wire.timestamp, 0).unwrap_or_default();
    let context = wire.context.take().map(|c| MessageContext {
        reply_to: c.id,
        reply_to_from: c.from,
        forwarded: c.forwarded,
        frequently_forwarded: c.frequently_forwarded,
        referred_product: c.referred_product,
    });
    let referral = wire.referral.take();
    let content = content(&mut wire, raw);
    let mut extra = Vec::new();
    if let MessageContent::System {
        system_type,
        new_wa_id,
        ..
    } = &content
    {
        if system_type == "user_changed_number" || system_type == "user_changed_user_id" {
            let new_bsuid = wire.system.as_ref().and_then(|s| s.user_id.as_deref());
            let new = ContactIdentity::from_webhook(new_wa_id.as_deref(), new_bsuid);
            if !new.is_empty() {
                let payload = EventPayload::ContactIdentityChanged(IdentityChange {
                    business: business.clone(),
                    old: identity.clone(),
                    new,
                    wamid: wire.id.clone(),
                });
                extra.extend(Event::contact(payload, timestamp, &[&wire.id]));
            }
        }
    }
    let message = Message {
        wamid: wire.id,
        direction: Direction::Inbound,
        business: business.clone(),
        contact: ContactProfile {
            identity,
            name,
            username,
        },
        timestamp,
        context,
        referral,
        content,
        sent_by: None,
    };
    (message, profile_index, extra)
}

fn media(m: WireMedia) -> Media {
    Media {
        id: m.id,
        link: m.url,
        mime_type: m.mime_type,
        sha256: m.sha256,
        caption: m.caption,
    }
}

fn raw_json(raw: &RawValue) -> serde_json::Value {
    serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null)
}

/// The content for the message's type, or `Unknown` with the raw JSON when the type is not
/// known or its object is missing.
fn content(wire: &mut WireMessage, raw: &RawValue) -> MessageContent {
    let known = match wire.kind.as_str() {
        "text" => wire.text.take().map(|t| MessageContent::Text {
            body: t.body,
            preview_url: false,
        }),
        "image" => wire.image.take().map(|m| MessageContent::Image(media(m))),
        "video" => wire.video.take().map(|m| MessageContent::Video(media(m))),
        "audio" => wire.audio.take().map(|m| MessageContent::Audio {
            voice: m.voice,
            media: media(m),
        }),
        "document" => wire.document.take().map(|m| MessageContent::Document {
            filename: m.filename.clone(),
            media: media(m),
        }),
        "sticker" => wire.sticker.take().map(|m| MessageContent::Sticker {
            animated: m.animated,
            media: media(m),
        }),
        "location" => wire.location.take().map(|l| MessageContent::Location {
            latitude: l.latitude,
            longitude: l.longitude,
            name: l.name,
            address: l.address,
            url: l.url,
        }),
        "contacts" => wire
            .contacts
            .take()
            .map(|cards| MessageContent::Contacts { cards }),
        "interactive" => wire.interactive.take().and_then(|i| match i.kind.as_str() {
            "button_reply" => i.button_reply.map(|r| {
                MessageContent::Interactive(InteractiveReply::ButtonReply {
                    id: r.id,
                    title: r.title,
                })
            }),
            "list_reply" => i.list_reply.map(|r| {
                MessageContent::Interactive(InteractiveReply::ListReply {
                    id: r.id,
                    title: r.title,
                    description: r.description,
                })
            }),
            "nfm_reply" => i.nfm_reply.map(|r| {
                MessageContent::Interactive(InteractiveReply::NfmReply {
                    name: r.name,
                    body: r.body,
                    response_json: r.response_json,
                })
            }),
            _ => None,
        }),
        "button" => wire.button.take().map(|b| MessageContent::TemplateButton {
            text: b.text,
            payload: b.payload,
        }),
        "reaction" => wire.reaction.take().map(|r| MessageContent::Reaction {
            message_id: r.message_id,
            emoji: r.emoji.filter(|e| !e.is_empty()),
        }),
        "order" => wire.order.take().map(|o| MessageContent::Order {
            catalog_id: o.catalog_id,
            text: o.text.filter(|t| !t.is_empty()),
            items: o
                .product_items
                .into_iter()
                .map(|i| OrderItem {
                    product_retailer_id: i.product_retailer_id,
                    quantity: i.quantity,
                    item_price: i.item_price,
                    currency: i.currency,
                })
                .collect(),
        }),
        "system" => wire.system.as_ref().map(|s| MessageContent::System {
            system_type: s.kind.clone().unwrap_or_else(|| "unknown".into()),
            body: s.body.clone(),
            new_wa_id: s.wa_id.clone(),
        }),
        "unsupported" | "unknown" => Some(MessageContent::Unsupported {
            errors: wire.errors.iter().map(meta_error).collect(),
            raw: raw_json(raw),
        }),
        _ => None,
    };
    known.unwrap_or_else(|| MessageContent::Unknown {
        type_name: wire.kind.clone(),
        raw: raw_json(raw),
    })
}

fn meta_error(e: &WireError) -> MetaError {
    MetaError {
        code: e.code,
        title: e.title.clone(),
        message: e.message.clone(),
        details: e.error_data.as_ref().and_then(|d| d.details.clone()),
    }
}

fn read_call(raw: &RawValue, business: &BusinessNumber) -> Result<Event, String> {
    let wire: crate::webhook::WireCall =
        serde_json::from_str(raw.get()).map_err(|e| format!("call is not understood: {e}"))?;
    // The contact is the caller of a call they placed, the callee of one the business placed.
    let business_initiated = wire.direction.as_deref() == Some("BUSINESS_INITIATED");
    let (direction, contact) = if business_initiated {
        (Direction::Outbound, wire.to.as_deref())
    } else {
        (Direction::Inbound, wire.from.as_deref())
    };
    let call = wacrm_core::event::Call {
        call_id: wire.id,
        business: business.clone(),
        contact: ContactIdentity::from_webhook(contact, None),
        direction,
        event: wire.event,
        status: wire.status,
        duration_seconds: wire.duration,
        timestamp: DateTime::from_timestamp(wire.timestamp, 0).unwrap_or_default(),
    };
    Event::call(call).ok_or_else(|| "call has no contact identity".to_owned())
}

fn read_status(raw: &RawValue, business: &BusinessNumber) -> Result<Event, String> {
    let wire: WireStatus =
        serde_json::from_str(raw.get()).map_err(|e| format!("status is not understood: {e}"))?;
    let state = DeliveryState::parse(&wire.status)
        .filter(|s| *s != DeliveryState::Accepted)
        .ok_or_else(|| format!("unknown status {:?}", wire.status))?;
    let recipient = ContactIdentity::from_webhook(
        wire.recipient_id.as_deref(),
        wire.recipient_user_id.as_deref(),
    );
    let update = StatusUpdate {
        wamid: wire.id,
        state,
        timestamp: DateTime::from_timestamp(wire.timestamp, 0).unwrap_or_default(),
        business: business.clone(),
        recipient,
        errors: wire.errors.iter().map(meta_error).collect(),
        pricing: wire.pricing,
        conversation: wire.conversation.map(|c| ConversationWindow {
            id: c.id,
            origin: c.origin.and_then(|o| o.kind),
            expires_at: c
                .expiration_timestamp
                .and_then(|t| DateTime::from_timestamp(t, 0)),
        }),
    };
    Event::status(update).ok_or_else(|| "status has no recipient identity".to_owned())
}

fn read_preference(
    raw: &RawValue,
    business: &BusinessNumber,
    profiles: &Profiles<'_>,
) -> Result<Event, String> {
    let wire: WirePreference = serde_json::from_str(raw.get())
        .map_err(|e| format!("user preference is not understood: {e}"))?;
    let mut contact = ContactIdentity::from_webhook(wire.wa_id.as_deref(), wire.user_id.as_deref());
    if contact.is_empty() {
        if let Some(i) = profiles.find(None, None) {
            contact = profiles.profile(i).identity;
        }
    }
    let time = DateTime::from_timestamp(wire.timestamp, 0).unwrap_or_default();
    let ts = wire.timestamp.to_string();
    let key = contact
        .primary_key()
        .map(|k| k.to_string())
        .ok_or_else(|| "user preference has no contact identity".to_owned())?;
    let parts = [
        business.phone_number_id.clone(),
        key,
        wire.category.clone(),
        wire.value.clone(),
        ts,
    ];
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let payload = EventPayload::PreferenceChanged(PreferenceChange {
        business: business.clone(),
        contact,
        category: wire.category,
        value: wire.value,
        detail: wire.detail,
    });
    Event::contact(payload, time, &parts).ok_or_else(|| "user preference has no contact".into())
}
