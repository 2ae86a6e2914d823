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
/// The `detail` of a preference change derived from a keyword message.
pub const KEYWORD_DETAIL: &str = "keyword message";

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
                        detail: Some(KEYWORD_DETAIL.to_owned()),
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

/// The consent decision a marketing preference change records (purpose `marketing`, channel
/// `whatsapp`), or `None` for another category or value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceConsent {
    /// `resume` is an opt-in, `stop` an opt-out.
    pub granted: bool,
    /// `keyword` (a stop or start keyword), `whatsapp_error_131050`, or `whatsapp_preferences`
    /// (WhatsApp's own switch, a `user_preferences` webhook).
    pub source: &'static str,
    /// [`crate::consent::BY_CONTACT`] when the contact did it, [`crate::consent::BY_WHATSAPP`]
    /// for error 131050.
    pub recorded_by: &'static str,
}

/// What a preference change means as consent. A start keyword is the contact asking, in the
/// conversation, for marketing messages again: an opt-in of their own.
pub fn consent_of(change: &PreferenceChange) -> Option<PreferenceConsent> {
    if change.category != MARKETING {
        return None;
    }
    let granted = match change.value.as_str() {
        "stop" => false,
        "resume" => true,
        _ => return None,
    };
    let error = format!("error {MARKETING_OPT_OUT_ERROR}");
    let (source, recorded_by) = match change.detail.as_deref() {
        Some(KEYWORD_DETAIL) => ("keyword", crate::consent::BY_CONTACT),
        Some(d) if d == error => ("whatsapp_error_131050", crate::consent::BY_WHATSAPP),
        _ => ("whatsapp_preferences", crate::consent::BY_CONTACT),
    };
    Some(PreferenceConsent {
        granted,
        source,
        recorded_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_error_and_switch_changes_are_marketing_consent_decisions() {
        let business = crate::BusinessNumber::new("106540352242922");
        let contact = crate::ContactIdentity::from_webhook(Some("5511987654321"), None);
        let at = chrono::DateTime::from_timestamp(1_764_504_000, 0).unwrap_or_default();
        let message = |body: &str| crate::Message {
            wamid: format!("wamid.{body}"),
            direction: Direction::Inbound,
            business: business.clone(),
            contact: crate::ContactProfile {
                identity: contact.clone(),
                name: None,
                username: None,
            },
            timestamp: at,
            context: None,
            referral: None,
            content: MessageContent::Text {
                body: body.into(),
                preview_url: false,
            },
            sent_by: None,
        };
        let events: Vec<Event> = ["PARAR", "voltar"]
            .into_iter()
            .filter_map(|b| Event::message(message(b)))
            .collect();
        let derived = OptOutKeywords::default().derive(&events);
        let consents: Vec<PreferenceConsent> = derived
            .iter()
            .filter_map(|e| match &e.payload {
                EventPayload::PreferenceChanged(p) => consent_of(p),
                _ => None,
            })
            .collect();
        assert_eq!(consents.len(), 2);
        assert!(!consents[0].granted && consents[1].granted);
        assert!(consents
            .iter()
            .all(|c| c.source == "keyword" && c.recorded_by == "contact"));

        let by_error = opted_out_by_error(&business, &contact, at, "wamid.x").unwrap();
        let EventPayload::PreferenceChanged(p) = &by_error.payload else {
            panic!("{by_error:?}")
        };
        let c = consent_of(p).unwrap();
        assert_eq!(
            (c.granted, c.source, c.recorded_by),
            (false, "whatsapp_error_131050", "whatsapp")
        );

        let switch = PreferenceChange {
            business,
            contact,
            category: MARKETING.into(),
            value: "stop".into(),
            detail: Some("User requested to stop marketing messages".into()),
        };
        assert_eq!(consent_of(&switch).unwrap().source, "whatsapp_preferences");
        let other = PreferenceChange {
            category: "something_else".into(),
            ..switch
        };
        assert_eq!(consent_of(&other), None);
    }

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
