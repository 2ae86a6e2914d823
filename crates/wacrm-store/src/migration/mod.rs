//! Schema migrations (sea-orm-migration), the same for SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261122_000002_dead_letter_redrive;
mod m20261122_000003_crm_sync;
mod m20261122_000004_audit_log;
mod m20261122_000005_outbound;
mod m20261123_000001_crm_secrets;
mod m20261202_000002_key_scoping;
mod m20261203_000001_rate_limits;
mod m20261203_000002_oauth_tokens;
mod m20261204_000001_audit_keyed;
mod m20261204_000002_retention;
mod m20261204_000003_erasure;
mod m20261204_000004_consent;
mod m20261205_000001_send_claims;
mod m20261206_000001_accounts;

/// Every migration, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261122_000002_dead_letter_redrive::Migration),
            Box::new(m20261122_000003_crm_sync::Migration),
            Box::new(m20261122_000004_audit_log::Migration),
            Box::new(m20261122_000005_outbound::Migration),
            Box::new(m20261123_000001_crm_secrets::Migration),
            Box::new(m20261202_000002_key_scoping::Migration),
            Box::new(m20261203_000001_rate_limits::Migration),
            Box::new(m20261203_000002_oauth_tokens::Migration),
            Box::new(m20261204_000001_audit_keyed::Migration),
            Box::new(m20261204_000002_retention::Migration),
            Box::new(m20261204_000003_erasure::Migration),
            Box::new(m20261204_000004_consent::Migration),
            Box::new(m20261205_000001_send_claims::Migration),
            Box::new(m20261206_000001_accounts::Migration),
        ]
    }
}
