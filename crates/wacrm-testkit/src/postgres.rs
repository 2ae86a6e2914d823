//! Fresh PostgreSQL databases for suites that run several instances on one store, when
//! `WACRM_TEST_POSTGRES_URL` names a server (CI sets it).

use sea_orm::{ConnectionTrait, Database};

/// The URL of a new, empty database on the server `WACRM_TEST_POSTGRES_URL` names, or `None`
/// when it is not set. Panics when the server cannot be reached or refuses: a suite that was
/// given a server must not skip silently.
pub async fn fresh_database() -> Option<String> {
    let admin_url = std::env::var("WACRM_TEST_POSTGRES_URL").ok()?;
    let admin = Database::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("WACRM_TEST_POSTGRES_URL cannot be reached: {e}"));
    let name = format!(
        "wacrm_test_{}_{}",
        chrono::Utc::now().timestamp(),
        uuid::Uuid::new_v4().simple()
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("creating a test database: {e}"));
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin_url);
    Some(format!("{base}/{name}"))
}
