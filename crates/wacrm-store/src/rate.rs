//! The rate limiter that instances sharing one PostgreSQL store share
//! ([`wacrm_core::rate::SharedLimiter`]).
//!
//! Each key holds one number: the theoretical arrival time (TAT) of the generic cell rate
//! algorithm, in microseconds on the database's clock. A reservation is one statement that
//! moves the TAT on by one interval and returns it with the database's time, so every
//! instance's slots come from one schedule, and no instance's clock takes part:
//!
//! - new TAT = max(TAT, now) + interval;
//! - the slot begins at max(now, new TAT − interval − tolerance).
//!
//! Concurrent reservations of one key queue on its row lock and each gets its own slot. The
//! table is `UNLOGGED` (see the migration); rows whose TAT has passed hold nothing a missing
//! row would not, and are swept now and then.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use wacrm_core::rate::{LimiterUnavailable, Rate, Reservation, SharedLimiter};

/// Reservations between two sweeps of passed rows.
const SWEEP_EVERY: u64 = 4096;

const RESERVE: &str = "\
WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now_us)
INSERT INTO rate_limits AS r (key, tat_us)
SELECT $1, clock.now_us + $2 FROM clock
ON CONFLICT (key) DO UPDATE
    SET tat_us = GREATEST(r.tat_us, (SELECT now_us FROM clock)) + $2
RETURNING r.tat_us AS tat_us, (SELECT now_us FROM clock) AS now_us";

const SWEEP: &str = "DELETE FROM rate_limits \
    WHERE tat_us < (extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// A [`SharedLimiter`] on PostgreSQL.
pub struct PgLimiter {
    db: DatabaseConnection,
    reservations: AtomicU64,
}

impl PgLimiter {
    /// The limiter of a PostgreSQL store; `None` for SQLite, whose store belongs to one
    /// process (its in-process limiters are already global).
    pub fn new(db: &DatabaseConnection) -> Option<PgLimiter> {
        (db.get_database_backend() == DbBackend::Postgres).then(|| PgLimiter {
            db: db.clone(),
            reservations: AtomicU64::new(0),
        })
    }

    async fn reserve_slot(&self, key: &str, rate: Rate) -> Result<Duration, LimiterUnavailable> {
        let interval_us = micros(rate.interval).max(1);
        let row = self
            .db
            .query_one(Statement::from_sql_and_values(
                DbBackend::Postgres,
                RESERVE,
                [key.into(), interval_us.into()],
            ))
            .await
            .map_err(unavailable)?
            .ok_or_else(|| LimiterUnavailable("the reservation returned no row".into()))?;
        let tat_us: i64 = row.try_get("", "tat_us").map_err(unavailable)?;
        let now_us: i64 = row.try_get("", "now_us").map_err(unavailable)?;
        if self.reservations.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Best effort: a failed sweep leaves rows that a later one removes.
            if let Err(e) = self.db.execute_unprepared(SWEEP).await {
                tracing::warn!(error = %e, "sweeping the rate limiter's passed rows failed");
            }
        }
        Ok(wait_until_slot(
            tat_us,
            now_us,
            interval_us,
            micros(rate.tolerance()),
        ))
    }
}

impl SharedLimiter for PgLimiter {
    fn reserve<'a>(&'a self, key: &'a str, rate: Rate) -> Reservation<'a> {
        Box::pin(self.reserve_slot(key, rate))
    }
}

/// How long from `now_us` until the slot whose reservation moved the TAT to `tat_us` begins.
fn wait_until_slot(tat_us: i64, now_us: i64, interval_us: i64, tolerance_us: i64) -> Duration {
    let begins = tat_us
        .saturating_sub(interval_us)
        .saturating_sub(tolerance_us)
        .max(now_us);
    Duration::from_micros(u64::try_from(begins - now_us).unwrap_or(0))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn unavailable(e: sea_orm::DbErr) -> LimiterUnavailable {
    LimiterUnavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_key_grants_its_slot_at_once() {
        // TAT was in the past: the new TAT is now + interval, the slot begins now.
        assert_eq!(wait_until_slot(1_100, 1_000, 100, 0), Duration::ZERO);
    }

    #[test]
    fn a_busy_key_grants_the_slot_after_the_ones_before() {
        // Three slots already taken from now at 100 µs each: the fourth begins in 300 µs.
        assert_eq!(
            wait_until_slot(1_400, 1_000, 100, 0),
            Duration::from_micros(300)
        );
    }

    #[test]
    fn tolerance_lets_a_burst_through_before_its_schedule() {
        // Burst of 3 (tolerance 200 µs): the third slot in a row still begins now.
        assert_eq!(wait_until_slot(1_300, 1_000, 100, 200), Duration::ZERO);
        assert_eq!(
            wait_until_slot(1_400, 1_000, 100, 200),
            Duration::from_micros(100)
        );
    }
}
