use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

/// The shared rate limiter's state (`crate::rate`): per key, the theoretical arrival time of
/// the next free slot, in microseconds since the epoch on the database's clock.
///
/// On PostgreSQL the table is `UNLOGGED`: its rows live for seconds, losing them in a database
/// crash only restarts every limit from a quiet state, and without WAL a reservation never waits
/// for a disk flush (this machine's disk stalls 50–600 ms now and then, which would bunch the
/// sends queued behind one reservation). SQLite is one process's store: the table exists so
/// both schemas stay alike, and is not used.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let sql = match db.get_database_backend() {
            DbBackend::Postgres => {
                "CREATE UNLOGGED TABLE IF NOT EXISTS rate_limits \
                 (key TEXT PRIMARY KEY, tat_us BIGINT NOT NULL)"
            }
            _ => {
                "CREATE TABLE IF NOT EXISTS rate_limits \
                 (key TEXT PRIMARY KEY, tat_us BIGINT NOT NULL)"
            }
        };
        db.execute_unprepared(sql).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS rate_limits")
            .await?;
        Ok(())
    }
}
