//! Several instances starting at once against one PostgreSQL database each run the migrations:
//! one applies them while the others wait, and every one starts.
#![allow(clippy::unwrap_used)]

mod common;

use sea_orm::{ConnectionTrait, Statement};
use wacrm_store::StoreConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_migrating_at_once_all_start_and_apply_each_migration_once() {
    let Some(url) = common::empty_postgres().await else {
        return;
    };
    let mut instances = Vec::new();
    for _ in 0..4 {
        // A pool of its own, as a separate process has.
        instances.push(
            wacrm_store::connect(&StoreConfig {
                url: url.clone(),
                max_connections: 2,
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    let runs = futures::future::join_all(instances.iter().map(wacrm_store::migrate)).await;
    for (i, run) in runs.iter().enumerate() {
        assert!(run.is_ok(), "instance {i}: {run:?}");
    }
    let db = &instances[0];
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT version, count(*) AS n FROM seaql_migrations GROUP BY version",
        ))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let n: i64 = row.try_get("", "n").unwrap();
        assert_eq!(n, 1);
    }
}
