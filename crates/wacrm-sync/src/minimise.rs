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
    let text = format!("{who}: {}", content_text(&message.content, policy));
    if policy.send_phone {
        text
    } else {
        without_own_number(text, &message.contact.identity)
    }
}

/// The text with the contact's own number, however it is spelt (`+55 11 98765-4321`,
/// `(11) 98765-4321`, `5511987654321`, with or without Brazil's 9th digit), replaced by
/// `[phone]`: a profile name or a message may carry it, and a connection with
/// `send_phone = false` must not receive it. A run of digits and separators is the number when
/// its digits hold the number's last eight.
pub fn without_own_number(text: String, identity: &wacrm_core::ContactIdentity) -> String {
    let mut numbers: Vec<String> = identity
        .phone
        .as_ref()
        .map(|p| p.search_variants())
        .unwrap_or_default();
    numbers.extend(identity.wa_id.clone());
    let mut tails: Vec<String> = numbers
        .iter()
        .map(|n| n.chars().filter(char::is_ascii_digit).collect::<String>())
        .filter(|d| d.len() >= 8)
        .map(|d| d[d.len() - 8..].to_owned())
        .collect();
    tails.sort();
    tails.dedup();
    if tails.is_empty() {
        return text;
    }
    let is_separator = |c: char| matches!(c, ' ' | '-' | '.' | '(' | ')' | '+' | '/');
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !(c.is_ascii_digit() || c == '+' || c == '(') {
            out.push(c);
            i += 1;
            continue;
        }
        let mut end = i;
        while end < chars.len() && (chars[end].is_ascii_digit() || is_separator(chars[end])) {
            end += 1;
        }
        // Trailing separators are not part of the number.
        let mut last = end;
        while last > i && !chars[last - 1].is_ascii_digit() {
            last -= 1;
        }
        let span: String = chars[i..last.max(i + 1)].iter().collect();
        let digits: String = span.chars().filter(char::is_ascii_digit).collect();
        if digits.len() >= 8 && tails.iter().any(|t| digits.contains(t.as_str())) {
            out.push_str("[phone]");
        } else {
            out.push_str(&span);
        }
        i = last.max(i + 1);
    }
    out
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

    #[test]
    fn without_send_phone_the_own_number_is_not_in_the_body() {
        let policy = Minimisation {
            send_phone: false,
            ..Minimisation::default()
        };
        let body = timeline_body(
            &text(
                "ligue +55 11 98765-4321, (11) 98765-4321, 5511987654321, 1187654321 \
                 ou 11 2345-6789 (outro)",
            ),
            &policy,
        );
        assert_eq!(
            body,
            "WhatsApp from Maria: ligue [phone], [phone], [phone], [phone] ou 11 2345-6789 (outro)"
        );
        assert_eq!(
            timeline_body(&text("+55 11 98765-4321"), &Minimisation::default()),
            "WhatsApp from Maria: +55 11 98765-4321",
            "sent as is when the policy allows"
        );
    }
}
