//! Delivery statuses of outbound messages and how they combine.
//!
//! WhatsApp reports `sent`, `delivered`, `read` (and `played` for voice notes) in any order, may
//! skip some (a "delivered" may never come) and may repeat them. [`MessageStatus::merge`] turns
//! any set of reports, in any order, into the same answer: the furthest state reached, or
//! `failed` — which no later report undoes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contact::ContactIdentity;
use crate::conversation::{BusinessNumber, ConversationKey};

/// The states of an outbound message, in the order they normally happen.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Accepted by wacrm, not yet confirmed by WhatsApp.
    Accepted,
    /// WhatsApp sent it.
    Sent,
    /// It reached the contact's phone.
    Delivered,
    /// The contact opened it.
    Read,
    /// The contact played the voice note.
    Played,
    /// WhatsApp could not deliver it. Terminal.
    Failed,
}

impl DeliveryState {
    /// The state as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Accepted => "accepted",
            DeliveryState::Sent => "sent",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Read => "read",
            DeliveryState::Played => "played",
            DeliveryState::Failed => "failed",
        }
    }

    /// Reads a state as WhatsApp or the store writes it.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "accepted" => DeliveryState::Accepted,
            "sent" => DeliveryState::Sent,
            "delivered" => DeliveryState::Delivered,
            "read" => DeliveryState::Read,
            "played" => DeliveryState::Played,
            "failed" => DeliveryState::Failed,
            _ => return None,
        })
    }
}

/// An error as WhatsApp reports it (on a status, a message or a whole webhook).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct MetaError {
    /// Meta's numeric error code, e.g. 131047 (re-engagement window closed).
    pub code: i64,
    /// The short title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `error_data.details`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// Pricing of a conversation or message as WhatsApp reports it on statuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pricing {
    /// Whether it is billed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billable: Option<bool>,
    /// `CBP`, `PMP`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing_model: Option<String>,
    /// `marketing`, `utility`, `authentication`, `service`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// The conversation window WhatsApp opened, as reported on statuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConversationWindow {
    /// WhatsApp's conversation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why it was opened (`marketing`, `utility`, `service`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// When it closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// One status report for one outbound message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatusUpdate {
    /// The message's wamid.
    pub wamid: String,
    /// The reported state.
    pub state: DeliveryState,
    /// When WhatsApp says it happened.
    pub timestamp: DateTime<Utc>,
    /// The business number that sent the message.
    pub business: BusinessNumber,
    /// The recipient.
    pub recipient: ContactIdentity,
    /// Why it failed, for `failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<MetaError>,
    /// Pricing information, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
    /// Conversation window information, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationWindow>,
}

impl StatusUpdate {
    /// The conversation the message belongs to, if the recipient has any identity.
    pub fn conversation_key(&self) -> Option<ConversationKey> {
        Some(ConversationKey {
            phone_number_id: self.business.phone_number_id.clone(),
            contact: self.recipient.primary_key()?,
        })
    }
}

/// The current status of a message: the merge of every report seen so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageStatus {
    /// The furthest state reached, or `failed`.
    pub state: DeliveryState,
    /// For `failed`, the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<MetaError>,
}

impl MessageStatus {
    /// The status a single report implies.
    pub fn from_report(state: DeliveryState, errors: &[MetaError]) -> Self {
        let error = if state == DeliveryState::Failed {
            errors.iter().min().cloned()
        } else {
            None
        };
        MessageStatus { state, error }
    }

    /// Combines two statuses. Commutative, associative and idempotent, so any order and any
    /// number of repeats of the same reports give one result: `failed` wins and stays (between
    /// two failures, the lower error sorts first so the choice does not depend on order);
    /// otherwise the furthest state wins, so a late `delivered` after `read` changes nothing.
    #[must_use]
    pub fn merge(&self, other: &MessageStatus) -> MessageStatus {
        match (self.state, other.state) {
            (DeliveryState::Failed, DeliveryState::Failed) => {
                let error = match (&self.error, &other.error) {
                    (Some(a), Some(b)) => Some(a.min(b).clone()),
                    (a, b) => a.clone().or_else(|| b.clone()),
                };
                MessageStatus {
                    state: DeliveryState::Failed,
                    error,
                }
            }
            (DeliveryState::Failed, _) => self.clone(),
            (_, DeliveryState::Failed) => other.clone(),
            (a, b) if a >= b => self.clone(),
            _ => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn st(state: DeliveryState) -> MessageStatus {
        MessageStatus::from_report(state, &[])
    }

    fn failed(code: i64) -> MessageStatus {
        MessageStatus::from_report(
            DeliveryState::Failed,
            &[MetaError {
                code,
                title: Some("t".into()),
                message: None,
                details: None,
            }],
        )
    }

    #[test]
    fn late_delivered_after_read_changes_nothing() {
        let read = st(DeliveryState::Read);
        assert_eq!(read.merge(&st(DeliveryState::Delivered)), read);
    }

    #[test]
    fn failed_is_terminal_and_keeps_its_error() {
        let f = failed(131047);
        let merged = f.merge(&st(DeliveryState::Read));
        assert_eq!(merged.state, DeliveryState::Failed);
        assert_eq!(merged.error.map(|e| e.code), Some(131047));
    }

    fn any_status() -> impl Strategy<Value = MessageStatus> {
        prop_oneof![
            Just(st(DeliveryState::Accepted)),
            Just(st(DeliveryState::Sent)),
            Just(st(DeliveryState::Delivered)),
            Just(st(DeliveryState::Read)),
            Just(st(DeliveryState::Played)),
            (130000i64..132000).prop_map(failed),
        ]
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in any_status(), b in any_status()) {
            prop_assert_eq!(a.merge(&b), b.merge(&a));
        }

        #[test]
        fn merge_is_associative(a in any_status(), b in any_status(), c in any_status()) {
            prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
        }

        #[test]
        fn merge_is_idempotent_and_monotonic(a in any_status(), b in any_status()) {
            prop_assert_eq!(a.merge(&a), a.clone());
            let m = a.merge(&b);
            prop_assert!(m.state >= a.state || m.state == DeliveryState::Failed);
            prop_assert_eq!(m.merge(&b), m.clone());
        }

        #[test]
        fn any_order_of_reports_gives_one_answer(mut reports in proptest::collection::vec(any_status(), 1..8), seed in any::<u64>()) {
            let forward = reports.iter().fold(reports[0].clone(), |acc, s| acc.merge(s));
            let n = reports.len();
            reports.rotate_left((seed as usize) % n);
            reports.reverse();
            let shuffled = reports.iter().fold(reports[0].clone(), |acc, s| acc.merge(s));
            prop_assert_eq!(forward, shuffled);
        }
    }
}
