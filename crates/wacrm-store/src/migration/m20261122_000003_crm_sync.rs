use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// CRM sync state: contact links and the idempotency ledger, per connection.
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
                .table(a("crm_links"))
                .if_not_exists()
                .col(string(a("connection")))
                .col(string(a("contact_key")))
                .col(string(a("crm_id")))
                .col(string(a("linked_by")))
                .col(timestamp_with_time_zone(a("linked_at")))
                .primary_key(Index::create().col(a("connection")).col(a("contact_key")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("crm_ledger"))
                .if_not_exists()
                .col(string(a("connection")))
                .col(string(a("wamid")))
                .col(string(a("state")))
                .col(string_null(a("crm_id")))
                .col(string_null(a("status")))
                .col(timestamp_with_time_zone(a("pending_since")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .primary_key(Index::create().col(a("connection")).col(a("wamid")))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in ["crm_ledger", "crm_links"] {
            m.drop_table(Table::drop().table(a(table)).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
