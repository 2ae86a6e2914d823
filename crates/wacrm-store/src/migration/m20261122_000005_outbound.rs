use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Outbound requests (send, mark as read) with their idempotency keys, and the cursors of
/// relays that publish store rows on the bus (the audit log).
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
                .table(a("outbound_requests"))
                .if_not_exists()
                .col(string(a("request_id")).primary_key())
                .col(string(a("key_id")))
                .col(string_null(a("idempotency_key")))
                .col(string(a("request_hash")))
                .col(string(a("kind")))
                .col(string(a("phone_number_id")))
                .col(string_null(a("contact_id")))
                .col(string(a("state")))
                .col(string_null(a("wamid")))
                .col(json_null(a("errors")))
                .col(string_null(a("reason")))
                .col(integer(a("attempts")).default(0))
                .col(json(a("command")))
                .col(timestamp_with_time_zone(a("created_at")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_outbound_requests_idempotency")
                .table(a("outbound_requests"))
                .col(a("key_id"))
                .col(a("idempotency_key"))
                .unique()
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_outbound_requests_wamid")
                .table(a("outbound_requests"))
                .col(a("wamid"))
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("relay_cursors"))
                .if_not_exists()
                .col(string(a("name")).primary_key())
                .col(big_integer(a("position")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(a("relay_cursors"))
                .if_exists()
                .to_owned(),
        )
        .await?;
        m.drop_table(
            Table::drop()
                .table(a("outbound_requests"))
                .if_exists()
                .to_owned(),
        )
        .await
    }
}
