//! The sender's rate limits: per business number, and per business number × recipient pair.
//!
//! The per-number limiter allows no burst: GCRA then admits at most `n` sends in any half-open
//! one-second window, which is how Meta counts throughput. The pair limiter allows the configured
//! burst and then one send per period, as Meta's pair rate limit does.
//!
//! One instance keeps both in process (`governor`). Instances that share a PostgreSQL store
//! reserve their slots through the store's [`SharedLimiter`] instead, so a number's limit holds
//! whichever instance sends (docs/scaling.md). Shared per-number slots keep [`SHARED_HEADROOM`]
//! in hand: each instance acts on its slot after a database round trip and a timer's wake-up,
//! which differ between instances by milliseconds, tens of them on a loaded machine.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use wacrm_core::rate::{LimiterUnavailable, Rate, SharedLimiter};
use wacrm_whatsapp::WhatsAppConfig;

/// How many pair waits between two sweeps of the pair limiter's map.
const SWEEP_EVERY: u64 = 1024;

/// The share of a number's per-second limit that shared slots leave unused: 10 % of a second
/// absorbs 100 ms of difference between instances in when they act on their slots. 5 % (50 ms)
/// was measured too little: three instances on one loaded machine put 9 sends in a second for a
/// number limited to 8 in 2 of 7 runs of the multi-instance suite.
pub const SHARED_HEADROOM: f64 = 0.10;

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
    shared: Option<Arc<dyn SharedLimiter>>,
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
            shared: None,
        }
    }

    /// Limiters whose slots are reserved through `shared`, for instances that share a store.
    pub fn shared(config: &WhatsAppConfig, shared: Arc<dyn SharedLimiter>) -> Self {
        Throttle {
            shared: Some(shared),
            ..Throttle::new(config)
        }
    }

    /// Whether slots are reserved through a shared limiter.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// A number's shared rate: its per-second limit less [`SHARED_HEADROOM`], no burst.
    fn shared_number_rate(&self, phone_number_id: &str) -> Rate {
        let per_second = f64::from(self.config.messages_per_second_for(phone_number_id).max(1));
        Rate {
            interval: Duration::from_secs_f64(1.0 / (per_second * (1.0 - SHARED_HEADROOM))),
            burst: 1,
        }
    }

    /// The pair rate: the configured burst, then one send per period.
    fn shared_pair_rate(&self) -> Rate {
        Rate {
            interval: Duration::from_millis(self.config.pair_period_ms.max(1)),
            burst: self.config.pair_burst.max(1),
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

    /// Waits until one more message may go from `phone_number_id` to `to`. Fails only when
    /// the shared limiter cannot be asked: nothing may be sent then.
    pub async fn until_ready(
        &self,
        phone_number_id: &str,
        to: &str,
    ) -> Result<(), LimiterUnavailable> {
        if let Some(shared) = &self.shared {
            let pair = pair_key(phone_number_id, to);
            tokio::time::sleep(shared.reserve(&pair, self.shared_pair_rate()).await?).await;
            let number = number_key(phone_number_id);
            let rate = self.shared_number_rate(phone_number_id);
            tokio::time::sleep(shared.reserve(&number, rate).await?).await;
            return Ok(());
        }
        if self.pair_waits.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.pairs.retain_recent();
            self.pairs.shrink_to_fit();
        }
        self.pairs
            .until_key_ready(&(phone_number_id.to_owned(), to.to_owned()))
            .await;
        self.number(phone_number_id).until_ready().await;
        Ok(())
    }

    /// Waits until one more call may go from `phone_number_id` (mark-as-read: no pair limit).
    pub async fn until_number_ready(
        &self,
        phone_number_id: &str,
    ) -> Result<(), LimiterUnavailable> {
        if let Some(shared) = &self.shared {
            let number = number_key(phone_number_id);
            let rate = self.shared_number_rate(phone_number_id);
            tokio::time::sleep(shared.reserve(&number, rate).await?).await;
            return Ok(());
        }
        self.number(phone_number_id).until_ready().await;
        Ok(())
    }

    /// How many recipient pairs the limiter remembers now.
    pub fn pairs_remembered(&self) -> usize {
        self.pairs.len()
    }
}

/// The shared limiter's key of a business number's sends.
fn number_key(phone_number_id: &str) -> String {
    format!("wa:number:{phone_number_id}")
}

/// The shared limiter's key of a number × recipient pair. The recipient is hashed: the key is
/// stored, and a phone number is personal data.
fn pair_key(phone_number_id: &str, to: &str) -> String {
    let digest = Sha256::digest(format!("{phone_number_id}\n{to}").as_bytes());
    let short: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("wa:pair:{phone_number_id}:{short}")
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
            throttle
                .until_ready("1", &format!("55119{i:08}"))
                .await
                .unwrap();
        }
        // Swept every SWEEP_EVERY sends: never more than the recent ones are held.
        assert!(
            throttle.pairs_remembered() <= SWEEP_EVERY as usize + 1,
            "{} pairs held",
            throttle.pairs_remembered()
        );
    }

    #[test]
    fn shared_keys_never_hold_the_recipient_in_clear() {
        let key = pair_key("106540352242922", "5511999990001");
        assert!(key.starts_with("wa:pair:106540352242922:"), "{key}");
        assert!(!key.contains("5511999990001"), "{key}");
        assert_ne!(key, pair_key("106540352242922", "5511999990002"));
    }

    #[test]
    fn shared_number_slots_keep_headroom() {
        struct Never;
        impl SharedLimiter for Never {
            fn reserve<'a>(&'a self, _: &'a str, _: Rate) -> wacrm_core::rate::Reservation<'a> {
                Box::pin(async { Err(LimiterUnavailable("test".into())) })
            }
        }
        let throttle = Throttle::shared(
            &WhatsAppConfig {
                messages_per_second: 80,
                ..WhatsAppConfig::default()
            },
            Arc::new(Never),
        );
        let rate = throttle.shared_number_rate("1");
        // 80 a second less 10 %: 72 slots a second.
        assert_eq!(rate.burst, 1);
        assert!(
            (1.0 / rate.interval.as_secs_f64() - 72.0).abs() < 0.01,
            "{rate:?}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_shared_limiter_grants_nothing() {
        struct Down;
        impl SharedLimiter for Down {
            fn reserve<'a>(&'a self, _: &'a str, _: Rate) -> wacrm_core::rate::Reservation<'a> {
                Box::pin(async { Err(LimiterUnavailable("store down".into())) })
            }
        }
        let throttle = Throttle::shared(&WhatsAppConfig::default(), Arc::new(Down));
        assert!(throttle.until_ready("1", "5511999990001").await.is_err());
        assert!(throttle.until_number_ready("1").await.is_err());
    }
}
