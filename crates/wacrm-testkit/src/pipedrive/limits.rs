//! Pipedrive's rate limits: the per-token burst limit over a rolling 2-second window and the
//! company's daily token budget, with the headers every answer carries.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;

use super::server::Reply;
use super::state::State;

/// The burst limit's rolling window.
pub(super) const BURST_WINDOW: Duration = Duration::from_secs(2);

/// Drops arrival times at least `window` before `at`; returns how many remain.
fn in_window(times: &mut VecDeque<Instant>, at: Instant, window: Duration) -> usize {
    while let Some(front) = times.front() {
        if at.saturating_duration_since(*front) >= window {
            times.pop_front();
        } else {
            break;
        }
    }
    times.len()
}

/// Whole seconds, rounded up.
fn ceil_secs(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

impl State {
    /// Counts the request in the burst window, or answers `429` when the window is full: the
    /// request came while `x-ratelimit-remaining` was `0`, which is counted as a burst
    /// violation of the client.
    pub(super) fn admit_burst(&mut self, at: Instant) -> Option<Reply> {
        let used = in_window(&mut self.window, at, BURST_WINDOW);
        if used >= self.config.requests_per_2s as usize {
            self.burst_violations += 1;
            return Some(Reply::error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Rate limit exceeded: at most {} requests per 2 seconds",
                    self.config.requests_per_2s
                ),
            ));
        }
        self.window.push_back(at);
        None
    }

    /// `429` once the daily token budget is spent (the fake's budget never resets).
    pub(super) fn over_budget(&self) -> Option<Reply> {
        (self.tokens_spent >= self.config.daily_tokens).then(|| {
            Reply::raw(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"success": false, "error": "Request over limit"}),
            )
        })
    }

    /// Adds `x-ratelimit-{limit,remaining,reset}` and
    /// `x-daily-ratelimit-token-{limit,remaining}`.
    pub(super) fn with_rate_headers(&mut self, reply: Reply, at: Instant) -> Reply {
        let limit = self.config.requests_per_2s as usize;
        let used = in_window(&mut self.window, at, BURST_WINDOW);
        let reset = self.window.front().map_or(0, |oldest| {
            ceil_secs((*oldest + BURST_WINDOW).saturating_duration_since(at))
        });
        reply
            .with_header("x-ratelimit-limit", limit.to_string())
            .with_header(
                "x-ratelimit-remaining",
                limit.saturating_sub(used).to_string(),
            )
            .with_header("x-ratelimit-reset", reset.to_string())
            .with_header(
                "x-daily-ratelimit-token-limit",
                self.config.daily_tokens.to_string(),
            )
            .with_header(
                "x-daily-ratelimit-token-remaining",
                self.config
                    .daily_tokens
                    .saturating_sub(self.tokens_spent)
                    .to_string(),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_forgets_old_requests_and_reset_rounds_up() {
        let start = Instant::now();
        let mut times: VecDeque<Instant> = [start, start + Duration::from_millis(500)]
            .into_iter()
            .collect();
        assert_eq!(
            in_window(
                &mut times,
                start + Duration::from_millis(1999),
                BURST_WINDOW
            ),
            2
        );
        assert_eq!(
            in_window(&mut times, start + Duration::from_secs(2), BURST_WINDOW),
            1
        );
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }
}
