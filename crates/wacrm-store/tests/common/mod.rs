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
    let mut out = databases().await;
    let mut pooled = databases().await.remove(0);
    pooled.name = "sqlite (through the pool)";
    pooled.through_pool = true;
    out.insert(1, pooled);
    out
}

/// Every database the suite runs against.
pub async fn databases() -> Vec<TestDb> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let db = wacrm_store::connect(&StoreConfig {
        url,
        max_connections: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    wacrm_store::migrate(&db).await.unwrap();
    out.push(TestDb {
        name: "sqlite",
        db,
        through_pool: false,
        _dir: Some(dir),
    });
    if let Ok(admin_url) = std::env::var("WACRM_TEST_POSTGRES_URL") {
        let admin = Database::connect(&admin_url).await.unwrap();
        let name = format!("wacrm_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap();
        let url = format!("{base}/{name}");
        let db = wacrm_store::connect(&StoreConfig {
            url,
            max_connections: 4,
            ..Default::default()
        })
        .await
        .unwrap();
        wacrm_store::migrate(&db).await.unwrap();
        out.push(TestDb {
            name: "postgres",
            db,
            through_pool: true,
            _dir: None,
        });
    } else {
        eprintln!("WACRM_TEST_POSTGRES_URL not set: running the store tests on SQLite only");
    }
    out
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
