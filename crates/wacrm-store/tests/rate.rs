//! The shared rate limiter on PostgreSQL: instances with pools of their own, reserving slots of
//! one key at once, each get a slot of their own on one schedule.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use wacrm_core::rate::{Rate, SharedLimiter};
use wacrm_store::rate::PgLimiter;
use wacrm_store::StoreConfig;

async fn instance(url: &str) -> DatabaseConnection {
    // A pool of its own, as a separate process has.
    wacrm_store::connect(&StoreConfig {
        url: url.to_owned(),
        max_connections: 4,
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn tat(db: &DatabaseConnection, key: &str) -> i64 {
    let row = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT tat_us FROM rate_limits WHERE key = $1",
            [key.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "tat_us").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_reserving_one_key_at_once_each_get_their_own_slot() {
    let Some(url) = common::empty_postgres().await else {
        return;
    };
    let dbs = [
        instance(&url).await,
        instance(&url).await,
        instance(&url).await,
    ];
    wacrm_store::migrate(&dbs[0]).await.unwrap();
    let limiters: Vec<PgLimiter> = dbs.iter().map(|db| PgLimiter::new(db).unwrap()).collect();
    // 100 ms a slot: 120 reservations take far less than the 12 s they schedule, so the TAT
    // never falls behind the clock and must end exactly 120 intervals after the first.
    let rate = Rate {
        interval: Duration::from_millis(100),
        burst: 1,
    };
    let first = limiters[0].reserve("send:1", rate).await.unwrap();
    assert_eq!(first, Duration::ZERO, "a quiet key grants its slot at once");
    let start = tat(&dbs[0], "send:1").await;

    let mut waits: Vec<Duration> = futures::future::join_all(limiters.iter().flat_map(|l| {
        (0..40).map(move |_| async move { l.reserve("send:1", rate).await.unwrap() })
    }))
    .await;
    let end = tat(&dbs[0], "send:1").await;
    assert_eq!(
        end - start,
        120 * 100_000,
        "every reservation took one slot"
    );

    // Each reservation was told a different wait, 100 ms apart (less the time that passed
    // between reservations, well under one interval here).
    waits.sort();
    for pair in waits.windows(2) {
        let gap = pair[1].saturating_sub(pair[0]);
        assert!(
            gap > Duration::from_millis(50) && gap < Duration::from_millis(150),
            "slots {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
    assert!(
        waits[119] > Duration::from_millis(11_000),
        "{:?}",
        waits[119]
    );

    // Another key has its own schedule.
    assert_eq!(
        limiters[1].reserve("send:2", rate).await.unwrap(),
        Duration::ZERO
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_goes_at_once_and_the_next_slot_waits_for_the_rate() {
    let Some(url) = common::empty_postgres().await else {
        return;
    };
    let db = instance(&url).await;
    wacrm_store::migrate(&db).await.unwrap();
    let limiter = PgLimiter::new(&db).unwrap();
    let rate = Rate {
        interval: Duration::from_secs(10),
        burst: 3,
    };
    for _ in 0..3 {
        assert_eq!(limiter.reserve("pair", rate).await.unwrap(), Duration::ZERO);
    }
    let fourth = limiter.reserve("pair", rate).await.unwrap();
    assert!(
        fourth > Duration::from_secs(9) && fourth <= Duration::from_secs(10),
        "{fourth:?}"
    );
}

#[tokio::test]
async fn sqlite_stores_have_no_shared_limiter() {
    let db = common::sqlite().await;
    assert!(PgLimiter::new(&db.db).is_none());
}
