//! Opt-out: when a contact says they want no more marketing messages.
//!
//! Three signals, all turned into the same `wacrm.contact.preference_changed.v1` event so the
//! store, the CRMs and every other consumer see one history:
//!
//! - WhatsApp's `user_preferences` webhook (normalised as such);
//! - an inbound text that is exactly one of the stop keywords (`STOP`, `PARAR`, `SAIR`,
//!   `CANCELAR` by default) — or a start keyword, which resumes;
//! - error 131050 ("user has stopped marketing messages") on a send or on a status.

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventPayload, PreferenceChange};
use crate::message::{Direction, MessageContent};
use crate::status::DeliveryState;

/// The preference category wacrm records opt-outs under (WhatsApp's own name for it).
pub const MARKETING: &str = "marketing_messages";
/// Meta's error code for "this user stopped marketing messages from you".
pub const MARKETING_OPT_OUT_ERROR: i64 = 131_050;

/// The keywords that stop or resume marketing messages. Matching ignores case, surrounding
/// spaces and trailing punctuation; the whole message must be the keyword.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptOutKeywords {
    /// Stop keywords.
    pub stop: Vec<String>,
    /// Start (resume) keywords.
    pub start: Vec<String>,
}

impl Default for OptOutKeywords {
    fn default() -> Self {
        OptOutKeywords {
            stop: ["STOP", "PARAR", "SAIR", "CANCELAR"]
                .map(String::from)
                .to_vec(),
            start: ["START", "VOLTAR"].map(String::from).to_vec(),
        }
    }
}

fn normalise(text: &str) -> String {
    text.trim()
        .trim_end_matches(|c: char| c.is_ascii_punctuation())
        .trim()
        .to_uppercase()
}

impl OptOutKeywords {
    /// `Some("stop")` / `Some("resume")` when the text is one of the keywords.
    pub fn classify(&self, text: &str) -> Option<&'static str> {
        let text = normalise(text);
        if text.is_empty() {
            return None;
        }
        if self.stop.iter().any(|k| normalise(k) == text) {
            Some("stop")
        } else if self.start.iter().any(|k| normalise(k) == text) {
            Some("resume")
        } else {
            None
        }
    }

    /// The preference events that `events` imply: one per keyword message and one per failed
    /// status carrying error 131050. Ids derive from the message or status, so deriving them
    /// again (a redelivered webhook) yields the same events.
    pub fn derive(&self, events: &[Event]) -> Vec<Event> {
        let mut derived = Vec::new();
        for event in events {
            match &event.payload {
                EventPayload::MessageReceived(m) if m.direction == Direction::Inbound => {
                    let MessageContent::Text { body, .. } = &m.content else {
                        continue;
                    };
                    let Some(value) = self.classify(body) else {
                        continue;
                    };
                    let change = PreferenceChange {
                        business: m.business.clone(),
                        contact: m.contact.identity.clone(),
                        category: MARKETING.to_owned(),
                        value: value.to_owned(),
                        detail: Some("keyword message".to_owned()),
                    };
                    derived.extend(Event::contact(
                        EventPayload::PreferenceChanged(change),
                        m.timestamp,
                        &["keyword", &m.wamid],
                    ));
                }
                EventPayload::StatusChanged(s)
                    if s.state == DeliveryState::Failed
                        && s.errors.iter().any(|e| e.code == MARKETING_OPT_OUT_ERROR) =>
                {
                    derived.extend(opted_out_by_error(
                        &s.business,
                        &s.recipient,
                        s.timestamp,
                        &s.wamid,
                    ));
                }
                _ => {}
            }
        }
        derived
    }
}

/// The opt-out recorded when WhatsApp answered 131050 for a message (`id` identifies the
/// message or request).
pub fn opted_out_by_error(
    business: &crate::BusinessNumber,
    contact: &crate::ContactIdentity,
    at: chrono::DateTime<chrono::Utc>,
    id: &str,
) -> Option<Event> {
    let change = PreferenceChange {
        business: business.clone(),
        contact: contact.clone(),
        category: MARKETING.to_owned(),
        value: "stop".to_owned(),
        detail: Some(format!("error {MARKETING_OPT_OUT_ERROR}")),
    };
    Event::contact(
        EventPayload::PreferenceChanged(change),
        at,
        &["error", &MARKETING_OPT_OUT_ERROR.to_string(), id],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_whole_messages_only() {
        let k = OptOutKeywords::default();
        assert_eq!(k.classify("PARAR"), Some("stop"));
        assert_eq!(k.classify("  parar! "), Some("stop"));
        assert_eq!(k.classify("Sair."), Some("stop"));
        assert_eq!(k.classify("voltar"), Some("resume"));
        assert_eq!(k.classify("não quero parar"), None);
        assert_eq!(k.classify(""), None);
    }
}
