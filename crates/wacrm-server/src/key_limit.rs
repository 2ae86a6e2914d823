//! A request rate per API key: one employee's script, or a leaked key, cannot take the API (and
//! the audit log it writes to) from everyone else. Over the rate a call is answered 429 with
//! `Retry-After`, before anything is read or audited.
//!
//! The limiter is keyed by key id, so it holds one cell per key that called — bounded by the
//! keys table, since only authenticated callers reach it.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::ServerConfig;

/// The per-key limiter (absent when `requests_per_key_per_second` is 0).
pub struct KeyLimiter {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl KeyLimiter {
    /// The limiter `[server]` asks for.
    pub fn from_config(config: &ServerConfig) -> Self {
        let limiter = NonZeroU32::new(config.requests_per_key_per_second).map(|rate| {
            let burst = NonZeroU32::new(config.requests_per_key_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        KeyLimiter { limiter }
    }

    /// `Ok` when the key may make one more call now; otherwise how long until it may.
    pub fn check(&self, key_id: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&key_id.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_rate_waits_and_others_do_not() {
        let limiter = KeyLimiter::from_config(&ServerConfig {
            requests_per_key_per_second: 2,
            requests_per_key_burst: 3,
            ..ServerConfig::default()
        });
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let wait = limiter.check("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(limiter.check("b").is_ok());
        let off = KeyLimiter::from_config(&ServerConfig {
            requests_per_key_per_second: 0,
            ..ServerConfig::default()
        });
        assert!((0..10_000).all(|_| off.check("a").is_ok()));
    }
}
