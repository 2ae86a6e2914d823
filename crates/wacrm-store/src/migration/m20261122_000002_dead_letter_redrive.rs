use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Dead letters remember re-drive attempts and when one succeeded.
#[derive(DeriveMigrationName)]
pub struct Migration;

fn a(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in [
            timestamp_with_time_zone_null(a("resolved_at")),
            integer(a("attempts")).default(0).to_owned(),
            text_null(a("last_error")),
        ] {
            m.alter_table(
                Table::alter()
                    .table(a("dead_letters"))
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["resolved_at", "attempts", "last_error"] {
            m.alter_table(
                Table::alter()
                    .table(a("dead_letters"))
                    .drop_column(a(column))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
