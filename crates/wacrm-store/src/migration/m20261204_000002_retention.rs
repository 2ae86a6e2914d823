use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Retention (`crate::retention`): a message whose body or media references were removed is
/// marked with when (`body_expired_at`, `media_expired_at`), and each data class gets the index
/// its age predicate needs, so an hourly purge finds the next thousand rows without scanning
/// what it already purged.
///
/// The two message indexes are partial (`WHERE … IS NULL`, the same text on SQLite and
/// PostgreSQL): a message leaves them once it is expired, so they hold only what a purge may
/// still touch. The retention queries repeat their `WHERE` terms word for word, which is what
/// SQLite needs to use a partial index.
#[derive(DeriveMigrationName)]
pub struct Migration;

fn a(name: &str) -> Alias {
    Alias::new(name)
}

/// The partial and plain indexes, as SQL both databases take.
const INDEXES: [(&str, &str); 6] = [
    (
        "idx_messages_body_retention",
        "CREATE INDEX IF NOT EXISTS idx_messages_body_retention ON messages (\"timestamp\") \
         WHERE body_expired_at IS NULL",
    ),
    (
        "idx_messages_media_retention",
        "CREATE INDEX IF NOT EXISTS idx_messages_media_retention ON messages (\"timestamp\") \
         WHERE media_expired_at IS NULL \
         AND kind IN ('image', 'audio', 'video', 'document', 'sticker')",
    ),
    (
        "idx_message_statuses_time",
        "CREATE INDEX IF NOT EXISTS idx_message_statuses_time ON message_statuses (\"timestamp\")",
    ),
    (
        "idx_dead_letters_created",
        "CREATE INDEX IF NOT EXISTS idx_dead_letters_created ON dead_letters (created_at)",
    ),
    (
        "idx_platform_errors_received",
        "CREATE INDEX IF NOT EXISTS idx_platform_errors_received ON platform_errors (received_at)",
    ),
    (
        "idx_outbound_requests_finished",
        "CREATE INDEX IF NOT EXISTS idx_outbound_requests_finished ON outbound_requests (updated_at) \
         WHERE state IN ('sent', 'failed', 'unknown')",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in ["body_expired_at", "media_expired_at"] {
            m.alter_table(
                Table::alter()
                    .table(a("messages"))
                    .add_column(timestamp_with_time_zone_null(a(column)))
                    .to_owned(),
            )
            .await?;
        }
        let db = m.get_connection();
        for (_, sql) in INDEXES {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (name, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        for column in ["media_expired_at", "body_expired_at"] {
            m.alter_table(
                Table::alter()
                    .table(a("messages"))
                    .drop_column(a(column))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
