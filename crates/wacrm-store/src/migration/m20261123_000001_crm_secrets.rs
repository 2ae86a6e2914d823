use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// A random secret per CRM connection, for keyed pseudonyms of phone numbers when a connection
/// may not send them (`minimisation.send_phone = false`): generated once, never derived from
/// anything, so a pseudonym cannot be recomputed from a phone number without it.
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
                .table(a("crm_secrets"))
                .if_not_exists()
                .col(string(a("connection")).primary_key())
                .col(string(a("secret")))
                .col(timestamp_with_time_zone(a("created_at")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(a("crm_secrets")).if_exists().to_owned())
            .await
    }
}
