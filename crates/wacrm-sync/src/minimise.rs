//! What a message looks like on a CRM timeline, after data minimisation.

use wacrm_core::message::MessageContent;
use wacrm_core::{Direction, Message};

use crate::config::{BodyPolicy, Minimisation};

/// The timeline text of a message: who wrote it, then its content as the policy allows. Media
/// are shown as their type (and a link when wacrm sent it by link), never downloaded.
pub fn timeline_body(message: &Message, policy: &Minimisation) -> String {
    let who = match message.direction {
        Direction::Inbound => {
            let name = if policy.send_name {
                message.contact.name.clone()
            } else {
                None
            };
            format!("WhatsApp from {}", name.unwrap_or_else(|| "contact".into()))
        }
        Direction::Outbound => format!(
            "WhatsApp sent by {}",
            message
                .sent_by
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_else(|| "the business".into())
        ),
    };
    format!("{who}: {}", content_text(&message.content, policy))
}

fn apply(text: &str, policy: &Minimisation) -> String {
    match policy.body {
        BodyPolicy::Full => text.to_owned(),
        BodyPolicy::Redact => "[message]".to_owned(),
        BodyPolicy::Truncate => {
            let mut out: String = text.chars().take(policy.truncate_at).collect();
            if text.chars().count() > policy.truncate_at {
                out.push('…');
            }
            out
        }
    }
}

fn content_text(content: &MessageContent, policy: &Minimisation) -> String {
    let media = |kind: &str, link: Option<&String>| match link {
        Some(l) => format!("[{kind}] {l}"),
        None => format!("[{kind}]"),
    };
    match content {
        MessageContent::Text { body, .. } => apply(body, policy),
        MessageContent::Image(m) => media("image", m.link.as_ref()),
        MessageContent::Video(m) => media("video", m.link.as_ref()),
        MessageContent::Audio { media: m, voice } => media(
            if *voice { "voice message" } else { "audio" },
            m.link.as_ref(),
        ),
        MessageContent::Document { media: m, .. } => media("document", m.link.as_ref()),
        MessageContent::Sticker { .. } => "[sticker]".into(),
        MessageContent::Location { .. } => "[location]".into(),
        MessageContent::Contacts { cards } => format!("[{} contact card(s)]", cards.len()),
        MessageContent::Reaction { emoji: Some(e), .. } => format!("[reaction {e}]"),
        MessageContent::Reaction { emoji: None, .. } => "[reaction removed]".into(),
        MessageContent::Order { items, .. } => format!("[order of {} item(s)]", items.len()),
        MessageContent::Template { name, .. } => format!("[template {name}]"),
        MessageContent::System { system_type, .. } => format!("[{system_type}]"),
        MessageContent::Unsupported { .. } => "[unsupported message]".into(),
        MessageContent::Unknown { type_name, .. } => format!("[{type_name} message]"),
        other => other
            .preview_text()
            .map(|t| apply(&t, policy))
            .unwrap_or_else(|| format!("[{}]", other.kind())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacrm_core::{BusinessNumber, ContactIdentity, ContactProfile};

    fn text(body: &str) -> Message {
        Message {
            wamid: "w".into(),
            direction: Direction::Inbound,
            business: BusinessNumber::new("1"),
            contact: ContactProfile {
                identity: ContactIdentity::from_webhook(Some("5511987654321"), None),
                name: Some("Maria".into()),
                username: None,
            },
            timestamp: chrono::DateTime::UNIX_EPOCH,
            context: None,
            referral: None,
            content: MessageContent::Text {
                body: body.into(),
                preview_url: false,
            },
            sent_by: None,
        }
    }

    #[test]
    fn policies() {
        let full = Minimisation::default();
        assert_eq!(
            timeline_body(&text("Olá, tudo bem?"), &full),
            "WhatsApp from Maria: Olá, tudo bem?"
        );
        let redact = Minimisation {
            body: BodyPolicy::Redact,
            send_name: false,
            ..full.clone()
        };
        assert_eq!(
            timeline_body(&text("segredo"), &redact),
            "WhatsApp from contact: [message]"
        );
        let truncate = Minimisation {
            body: BodyPolicy::Truncate,
            truncate_at: 3,
            ..full
        };
        assert_eq!(
            timeline_body(&text("abcdef"), &truncate),
            "WhatsApp from Maria: abc…"
        );
    }
}
