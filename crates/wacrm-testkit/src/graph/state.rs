//! The fake's records: requests, sends, mark-as-reads, violations, queued errors and send
//! attempts for rate counting.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::openapi::SpecValidator;

use super::{GraphConfig, GraphError, GraphRequest, SentMessage};

/// One authenticated send attempt, whatever it was answered.
#[derive(Debug, Clone)]
pub(super) struct Attempt {
    pub phone_number_id: String,
    /// The digits of the body's `to` (empty when it had none).
    pub to_digits: String,
    pub at: Instant,
}

/// Everything the fake remembers.
pub(super) struct State {
    pub config: GraphConfig,
    pub spec: Option<Arc<SpecValidator>>,
    pub requests: Vec<GraphRequest>,
    pub sent: Vec<SentMessage>,
    pub mark_read: Vec<(String, String)>,
    pub violations: Vec<String>,
    /// `(phone number id or any, error)`, oldest first.
    pub queued: VecDeque<(Option<String>, GraphError)>,
    pub attempts: Vec<Attempt>,
    /// Messages accepted so far; part of every wamid.
    accepted: u64,
}

impl State {
    pub(super) fn new(config: GraphConfig, spec: Option<Arc<SpecValidator>>) -> State {
        State {
            config,
            spec,
            requests: Vec::new(),
            sent: Vec::new(),
            mark_read: Vec::new(),
            violations: Vec::new(),
            queued: VecDeque::new(),
            attempts: Vec::new(),
            accepted: 0,
        }
    }

    /// Removes and returns the oldest queued error that applies to `phone_number_id`.
    pub(super) fn take_queued(&mut self, phone_number_id: &str) -> Option<GraphError> {
        let position = self
            .queued
            .iter()
            .position(|(number, _)| number.as_deref().is_none_or(|n| n == phone_number_id))?;
        self.queued.remove(position).map(|(_, error)| error)
    }

    /// A fresh message id in Meta's form: `wamid.` and base64 of an opaque, unique payload.
    pub(super) fn next_wamid(&mut self, phone_number_id: &str, to: &str) -> String {
        self.accepted += 1;
        let payload = format!(
            "{phone_number_id}:{}:{}:{}",
            digits(to),
            self.accepted,
            uuid::Uuid::new_v4().simple()
        );
        format!("wamid.{}", base64(payload.as_bytes()))
    }

    /// The most attempts for a number (and recipient) within any half-open `window`.
    pub(super) fn max_rate(
        &self,
        phone_number_id: &str,
        to: Option<&str>,
        window: Duration,
    ) -> usize {
        if window.is_zero() {
            return 0;
        }
        let to = to.map(digits);
        let mut times: Vec<Instant> = self
            .attempts
            .iter()
            .filter(|a| a.phone_number_id == phone_number_id)
            .filter(|a| to.as_ref().is_none_or(|t| *t == a.to_digits))
            .map(|a| a.at)
            .collect();
        times.sort_unstable();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) >= window {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }
}

/// The ASCII digits of a phone number, as Meta's `wa_id` writes it.
pub(super) fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// Standard base64 with padding (RFC 4648 §4), as Meta's wamids are written.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b0 = u32::from(chunk[0]);
        let b1 = chunk.get(1).copied().map_or(0, u32::from);
        let b2 = chunk.get(2).copied().map_or(0, u32::from);
        let triple = (b0 << 16) | (b1 << 8) | b2;
        let sextet = |shift: u32| char::from(ALPHABET[((triple >> shift) & 0x3f) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[test]
    fn windows_are_half_open_and_per_pair() {
        let mut state = State::new(GraphConfig::default(), None);
        let t0 = Instant::now();
        for (ms, to) in [
            (0, "+1 555"),
            (400, "1555"),
            (999, "2"),
            (1000, "1555"),
            (1500, "1555"),
        ] {
            state.attempts.push(Attempt {
                phone_number_id: "P".to_owned(),
                to_digits: digits(to),
                at: t0 + Duration::from_millis(ms),
            });
        }
        let second = Duration::from_secs(1);
        assert_eq!(state.max_rate("P", None, second), 3);
        assert_eq!(state.max_rate("P", Some("+1-555"), second), 2);
        assert_eq!(state.max_rate("P", Some("2"), second), 1);
        assert_eq!(state.max_rate("Q", None, second), 0);
        assert_eq!(state.max_rate("P", None, Duration::ZERO), 0);
        assert_eq!(state.max_rate("P", None, Duration::from_secs(2)), 5);
    }

    #[test]
    fn queued_errors_match_their_number_in_order() {
        let mut state = State::new(GraphConfig::default(), None);
        state
            .queued
            .push_back((Some("A".to_owned()), GraphError::re_engagement()));
        state.queued.push_back((None, GraphError::undeliverable()));
        assert_eq!(state.take_queued("B"), Some(GraphError::undeliverable()));
        assert_eq!(state.take_queued("B"), None);
        assert_eq!(state.take_queued("A"), Some(GraphError::re_engagement()));
    }

    #[test]
    fn wamids_are_unique_and_look_like_meta_ids() {
        let mut state = State::new(GraphConfig::default(), None);
        let a = state.next_wamid("1", "+55 11");
        let b = state.next_wamid("1", "+55 11");
        assert_ne!(a, b);
        assert!(a.starts_with("wamid."), "{a}");
    }
}
