//! Rate limits that several wacrm instances share.
//!
//! One instance enforces its limits with an in-process limiter. When several instances share
//! one PostgreSQL store, each limit must hold across all of them (Meta counts a business
//! number's sends, a CRM counts a connection's calls, whichever instance makes them), so the
//! sender and the CRM client reserve their slots through a [`SharedLimiter`], which the store
//! implements. This module only declares the port and the rate's shape; it performs no IO.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A rate in the shape of the generic cell rate algorithm (GCRA): one slot every `interval`,
/// and up to `burst` slots at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time between two slots at the steady rate.
    pub interval: Duration,
    /// Slots that may be taken at once (at least 1).
    pub burst: u32,
}

impl Rate {
    /// `per_second` slots a second, none at once beyond the first: then no half-open second
    /// ever holds more than `per_second` slots.
    pub fn per_second(per_second: u32) -> Rate {
        Rate {
            interval: Duration::from_secs(1) / per_second.max(1),
            burst: 1,
        }
    }

    /// How far ahead of the steady schedule a slot may be taken: `(burst − 1) × interval`.
    pub fn tolerance(&self) -> Duration {
        self.interval * self.burst.max(1).saturating_sub(1)
    }
}

/// A shared limiter could not be asked (its store is unreachable). The caller must not go on
/// as if a slot were granted: it waits and asks again, like any transient failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shared rate limiter is unavailable: {0}")]
pub struct LimiterUnavailable(pub String);

/// The future [`SharedLimiter::reserve`] returns.
pub type Reservation<'a> =
    Pin<Box<dyn Future<Output = Result<Duration, LimiterUnavailable>> + Send + 'a>>;

/// A rate limiter whose slots are shared by every instance that asks it.
///
/// `reserve` takes the next free slot of `key` at `rate` and returns how long from now until
/// that slot begins; the caller sleeps that long, then acts. A slot taken and not used (the
/// caller was stopped while it waited) is simply lost: the limit errs on the side of fewer
/// requests, never more.
pub trait SharedLimiter: Send + Sync {
    /// Reserves the next slot of `key` at `rate`; returns the wait until it begins.
    fn reserve<'a>(&'a self, key: &'a str, rate: Rate) -> Reservation<'a>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_second_rates_have_no_burst() {
        let rate = Rate::per_second(80);
        assert_eq!(rate.interval, Duration::from_micros(12_500));
        assert_eq!(rate.tolerance(), Duration::ZERO);
        assert_eq!(Rate::per_second(0).interval, Duration::from_secs(1));
    }

    #[test]
    fn tolerance_is_the_burst_ahead_of_schedule() {
        let rate = Rate {
            interval: Duration::from_millis(100),
            burst: 5,
        };
        assert_eq!(rate.tolerance(), Duration::from_millis(400));
    }
}
