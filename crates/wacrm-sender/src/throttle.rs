//! The sender's rate limits (`governor`): per business number, and per business number ×
//! recipient pair.
//!
//! The per-number limiter allows no burst: GCRA then admits at most `n` sends in any half-open
//! one-second window, which is how Meta counts throughput. The pair limiter allows the configured
//! burst and then one send per period, as Meta's pair rate limit does.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use wacrm_whatsapp::WhatsAppConfig;

/// How many pair waits between two sweeps of the pair limiter's map.
const SWEEP_EVERY: u64 = 1024;

/// Per-number and per-pair limiters.
///
/// Both maps are bounded: numbers are the business's own (the API refuses any other), and the
/// pair map is swept every [`SWEEP_EVERY`] sends of the recipients whose limit has fully
/// recovered (their state is the same as a fresh one's), so it holds only recipients written to
/// within the last `pair_period_ms × pair_burst`.
pub struct Throttle {
    config: WhatsAppConfig,
    numbers: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
    pairs: DefaultKeyedRateLimiter<(String, String)>,
    pair_waits: AtomicU64,
}

impl Throttle {
    /// Limiters for the configured rates.
    pub fn new(config: &WhatsAppConfig) -> Self {
        let period = Duration::from_millis(config.pair_period_ms.max(1));
        let burst = NonZeroU32::new(config.pair_burst).unwrap_or(NonZeroU32::MIN);
        let pair_quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Throttle {
            config: config.clone(),
            numbers: Mutex::new(HashMap::new()),
            pairs: RateLimiter::keyed(pair_quota),
            pair_waits: AtomicU64::new(0),
        }
    }

    fn number(&self, phone_number_id: &str) -> Arc<DefaultDirectRateLimiter> {
        let mut numbers = self.numbers.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            numbers
                .entry(phone_number_id.to_owned())
                .or_insert_with(|| {
                    let per_second = self.config.messages_per_second_for(phone_number_id);
                    let period = Duration::from_secs(1) / per_second;
                    let quota = Quota::with_period(period)
                        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                        .allow_burst(NonZeroU32::MIN);
                    Arc::new(RateLimiter::direct(quota))
                }),
        )
    }

    /// Waits until one more message may go from `phone_number_id` to `to`.
    pub async fn until_ready(&self, phone_number_id: &str, to: &str) {
        if self.pair_waits.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.pairs.retain_recent();
            self.pairs.shrink_to_fit();
        }
        self.pairs
            .until_key_ready(&(phone_number_id.to_owned(), to.to_owned()))
            .await;
        self.number(phone_number_id).until_ready().await;
    }

    /// Waits until one more call may go from `phone_number_id` (mark-as-read: no pair limit).
    pub async fn until_number_ready(&self, phone_number_id: &str) {
        self.number(phone_number_id).until_ready().await;
    }

    /// How many recipient pairs the limiter remembers now.
    pub fn pairs_remembered(&self) -> usize {
        self.pairs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recipients_whose_limit_recovered_are_forgotten() {
        let throttle = Throttle::new(&WhatsAppConfig {
            messages_per_second: 1000,
            pair_period_ms: 1,
            pair_burst: 1,
            ..WhatsAppConfig::default()
        });
        for i in 0..(3 * SWEEP_EVERY) {
            throttle.until_ready("1", &format!("55119{i:08}")).await;
        }
        // Swept every SWEEP_EVERY sends: never more than the recent ones are held.
        assert!(
            throttle.pairs_remembered() <= SWEEP_EVERY as usize + 1,
            "{} pairs held",
            throttle.pairs_remembered()
        );
    }
}
