//! Test databases: SQLite always; PostgreSQL too when `WACRM_TEST_POSTGRES_URL` is set (CI sets
//! it), each test on a fresh database.
#![allow(dead_code, clippy::unwrap_used)]

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use wacrm_bus::{Record, Topics};
use wacrm_core::event::Event;
use wacrm_store::projection::Projection;
use wacrm_store::StoreConfig;

/// A database under test and what keeps it alive.
pub struct TestDb {
    pub name: &'static str,
    pub db: DatabaseConnection,
    /// The projection writes through the pool even on SQLite.
    pub through_pool: bool,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// The store projection over this database, as the test runs it.
    pub fn projection(&self) -> Projection {
        if self.through_pool {
            Projection::through_pool(self.db.clone(), Topics::default())
        } else {
            Projection::new(self.db.clone(), Topics::default())
        }
    }
}

/// Every database the projection runs against: SQLite on the projection's own connection,
/// SQLite through the pool (as on PostgreSQL), and PostgreSQL when configured.
pub async fn projection_databases() -> Vec<TestDb> {
    let mut out = vec![sqlite().await, sqlite_through_pool().await];
    out.extend(postgres().await);
    out
}

/// A fresh SQLite store whose projection writes through the pool.
pub async fn sqlite_through_pool() -> TestDb {
    TestDb {
        name: "sqlite (through the pool)",
        through_pool: true,
        ..sqlite().await
    }
}

/// Every database the suite runs against.
pub async fn databases() -> Vec<TestDb> {
    let mut out = vec![sqlite().await];
    out.extend(postgres().await);
    out
}

/// A fresh SQLite store in a temporary directory.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    TestDb {
        name: "sqlite",
        db: connected(url).await,
        through_pool: false,
        _dir: Some(dir),
    }
}

/// A fresh PostgreSQL database, when `WACRM_TEST_POSTGRES_URL` names a server.
async fn postgres() -> Option<TestDb> {
    let url = empty_postgres().await?;
    Some(TestDb {
        name: "postgres",
        db: connected(url).await,
        through_pool: true,
        _dir: None,
    })
}

/// The URL of a new, empty (unmigrated) PostgreSQL database, when `WACRM_TEST_POSTGRES_URL`
/// names a server.
#[allow(dead_code)]
pub async fn empty_postgres() -> Option<String> {
    let Ok(admin_url) = std::env::var("WACRM_TEST_POSTGRES_URL") else {
        eprintln!("WACRM_TEST_POSTGRES_URL not set: running the store tests on SQLite only");
        return None;
    };
    let admin = Database::connect(&admin_url).await.unwrap();
    drop_stale_databases(&admin).await;
    let name = format!(
        "wacrm_test_{}_{}",
        chrono::Utc::now().timestamp(),
        uuid::Uuid::new_v4().simple()
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap();
    Some(format!("{base}/{name}"))
}

/// Test databases live as long as the server (a test cannot drop its own on the way out: drop
/// is not async), so each new one first drops those made over an hour ago — no test runs that
/// long — and those named before names carried their creation time.
async fn drop_stale_databases(admin: &DatabaseConnection) {
    let cutoff = chrono::Utc::now().timestamp() - 3600;
    let rows = admin
        .query_all(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE 'wacrm_test_%'",
        ))
        .await
        .unwrap();
    for row in rows {
        let name: String = row.try_get("", "datname").unwrap();
        let created = name
            .strip_prefix("wacrm_test_")
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(secs, _)| secs.parse::<i64>().ok());
        if created.is_none_or(|secs| secs < cutoff) {
            // Still in use by a straggler: left for a later run.
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
                .await;
        }
    }
}

/// The store at `url`, migrated.
async fn connected(url: String) -> DatabaseConnection {
    let db = wacrm_store::connect(&StoreConfig {
        url,
        max_connections: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    wacrm_store::migrate(&db).await.unwrap();
    db
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../wacrm-whatsapp/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The events of a fixture.
pub fn events(name: &str) -> Vec<Event> {
    let n = wacrm_whatsapp::normalise::parse_and_normalise(
        &fixture(name),
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    )
    .unwrap();
    assert!(n.rejected.is_empty(), "{name}: {:?}", n.rejected);
    n.events
}

/// Events as the bus would deliver them.
pub fn records(events: &[Event]) -> Vec<Record> {
    wacrm_testkit::bus::records(events).unwrap()
}
