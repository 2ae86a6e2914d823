use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Who holds a `sending` request: `outbound_requests.claimed_by` names the instance that
/// claimed it, and `instances` says which instances are alive (`crate::instances`). A request
/// another live instance is sending is waited for, not declared interrupted.
#[derive(DeriveMigrationName)]
pub struct Migration;

fn a(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(a("outbound_requests"))
                .add_column(string_null(a("claimed_by")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("instances"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                .col(timestamp_with_time_zone(a("started_at")))
                .col(timestamp_with_time_zone(a("seen_at")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(a("instances")).if_exists().to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(a("outbound_requests"))
                .drop_column(a("claimed_by"))
                .to_owned(),
        )
        .await
    }
}
