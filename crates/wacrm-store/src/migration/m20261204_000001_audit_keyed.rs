use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The audit log becomes keyed: each new entry records which audit key (its id: the first 8
/// bytes of the key's SHA-256, in hex) made its `hash` an HMAC-SHA-256. Entries written before
/// have `NULL` there and keep their plain SHA-256, so they verify as before.
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
                .table(a("audit_log"))
                .add_column(string_null(a("mac_key")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(a("audit_log"))
                .drop_column(a("mac_key"))
                .to_owned(),
        )
        .await
    }
}
