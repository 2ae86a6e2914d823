//! The sender's rate limits (`governor`): per business number, and per business number ×
//! recipient pair.
//!
//! The per-number limiter allows no burst: GCRA then admits at most `n` sends in any half-open
//! one-second window, which is how Meta counts throughput. The pair limiter allows the configured
//! burst and then one send per period, as Meta's pair rate limit does.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use wacrm_whatsapp::WhatsAppConfig;

/// Per-number and per-pair limiters.
pub struct Throttle {
    config: WhatsAppConfig,
    numbers: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
    pairs: DefaultKeyedRateLimiter<(String, String)>,
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
        self.pairs
            .until_key_ready(&(phone_number_id.to_owned(), to.to_owned()))
            .await;
        self.number(phone_number_id).until_ready().await;
    }

    /// Waits until one more call may go from `phone_number_id` (mark-as-read: no pair limit).
    pub async fn until_number_ready(&self, phone_number_id: &str) {
        self.number(phone_number_id).until_ready().await;
    }
}
