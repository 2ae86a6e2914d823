//! A transcript of WhatsApp messages as the HTML text of a CRM note: one line per message with
//! its direction, text (sender included), WhatsApp's time, wamid and delivery status, in
//! visible text. For CRMs whose notes have no custom fields, the wamid in the text is what
//! lets `find_messages` find a note after a crash, and the status can be rewritten in place.

use wacrm_core::{DeliveryState, Direction};

use crate::adapter::MessageSync;

/// The text as HTML text: `&`, `<`, `>`, `"` escaped, line breaks as `<br>`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
    out
}

/// The text marking a message's delivery status in its line.
const STATUS_MARK: &str = " · status: ";

/// One message's line: the text (direction and sender included), then WhatsApp's time, the
/// wamid and, for outbound messages, the delivery status, in visible text (CRMs sanitise note
/// HTML; nothing is hidden in attributes or comments).
pub fn line(message: &MessageSync) -> String {
    let arrow = match message.direction {
        Direction::Inbound => "←",
        Direction::Outbound => "→",
    };
    let status = message
        .status
        .map(|s| format!("{STATUS_MARK}{}", s.as_str()))
        .unwrap_or_default();
    format!(
        "<p>{arrow} {}<br><small>{} UTC · {}{status}</small></p>",
        escape(&message.body),
        message.timestamp.format("%Y-%m-%d %H:%M:%S"),
        escape(&message.wamid),
    )
}

/// The notes a batch of messages makes: each contact's messages, in order, `per_note` at most a
/// note, as `(CRM contact id, indices into messages)`.
pub fn notes_of(messages: &[MessageSync], per_note: usize) -> Vec<(String, Vec<usize>)> {
    let mut by_contact: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match by_contact.iter_mut().find(|(c, _)| *c == m.crm_contact_id) {
            Some((_, indices)) => indices.push(i),
            None => by_contact.push((&m.crm_contact_id, vec![i])),
        }
    }
    by_contact
        .into_iter()
        .flat_map(|(contact, indices)| {
            indices
                .chunks(per_note.max(1))
                .map(|chunk| (contact.to_owned(), chunk.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A note holding these messages' lines (one contact's, of one batch).
pub fn content(messages: &[&MessageSync]) -> String {
    let mut content = String::from("<p><b>WhatsApp</b> (wacrm)</p>");
    for m in messages {
        content.push_str(&line(m));
    }
    content
}

/// The note's content with the status of `wamid`'s line set to `state` (and `failure`), or
/// `None` when the note has no line of that wamid.
pub fn with_status(
    content: &str,
    wamid: &str,
    state: DeliveryState,
    failure: Option<&str>,
) -> Option<String> {
    let wamid = escape(wamid);
    let at = content.find(&format!(" · {wamid}"))? + " · ".len() + wamid.len();
    let end = at + content[at..].find("</small>")?;
    let status = match failure {
        Some(reason) => format!("{STATUS_MARK}{} ({})", state.as_str(), escape(reason)),
        None => format!("{STATUS_MARK}{}", state.as_str()),
    };
    Some(format!("{}{status}{}", &content[..at], &content[end..]))
}

/// The wamids of the lines of a note.
pub fn wamids_in(content: &str) -> Vec<String> {
    content
        .split(" · ")
        .filter(|part| part.starts_with("wamid."))
        .map(|part| part.split(['<', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// The status written on `wamid`'s line, if any (for tests and tools reading notes back).
pub fn status_in(content: &str, wamid: &str) -> Option<String> {
    let at = content.find(&format!(" · {wamid}"))?;
    let line = &content[at..at + content[at..].find("</small>")?];
    line.split(STATUS_MARK)
        .nth(1)
        .map(|s| s.split(' ').next().unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn message(wamid: &str, direction: Direction, status: Option<DeliveryState>) -> MessageSync {
        MessageSync {
            wamid: wamid.into(),
            crm_contact_id: "7".into(),
            direction,
            timestamp: DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default(),
            body: "WhatsApp from Maria: <b>oi</b> & tchau".into(),
            kind: "text".into(),
            phone_number_id: "106540352242922".into(),
            status,
        }
    }

    #[test]
    fn a_note_carries_each_line_and_its_status_can_be_rewritten() {
        let a = message("wamid.A=", Direction::Inbound, None);
        let b = message("wamid.B=", Direction::Outbound, Some(DeliveryState::Sent));
        let content = super::content(&[&a, &b]);
        assert!(
            content.contains("&lt;b&gt;oi&lt;/b&gt; &amp; tchau"),
            "{content}"
        );
        assert!(
            content.contains("2026-05-28 20:26:40 UTC · wamid.A="),
            "{content}"
        );
        assert_eq!(wamids_in(&content), vec!["wamid.A=", "wamid.B="]);
        assert_eq!(status_in(&content, "wamid.B=").as_deref(), Some("sent"));
        assert_eq!(status_in(&content, "wamid.A="), None);
        let read = with_status(&content, "wamid.B=", DeliveryState::Read, None).unwrap_or_default();
        assert_eq!(status_in(&read, "wamid.B=").as_deref(), Some("read"));
        assert_eq!(status_in(&read, "wamid.A="), None);
        let failed = with_status(&read, "wamid.A=", DeliveryState::Failed, Some("131026"))
            .unwrap_or_default();
        assert_eq!(status_in(&failed, "wamid.A=").as_deref(), Some("failed"));
        assert_eq!(status_in(&failed, "wamid.B=").as_deref(), Some("read"));
        assert_eq!(
            with_status(&content, "wamid.C", DeliveryState::Read, None),
            None
        );
    }
}
