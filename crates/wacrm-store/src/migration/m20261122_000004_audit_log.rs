use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The append-only, hash-chained audit log.
#[derive(DeriveMigrationName)]
pub struct Migration;

fn a(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(a("audit_log"))
                .if_not_exists()
                .col(big_integer(a("seq")).primary_key())
                .col(timestamp_with_time_zone(a("at")))
                .col(string(a("key_id")))
                .col(string(a("actor")))
                .col(string(a("action")))
                .col(string_null(a("contact_id")))
                .col(string_null(a("target")))
                .col(string(a("outcome")))
                .col(string(a("prev_hash")))
                .col(string(a("hash")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_audit_log_key")
                .table(a("audit_log"))
                .col(a("key_id"))
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(a("audit_log")).if_exists().to_owned())
            .await
    }
}
