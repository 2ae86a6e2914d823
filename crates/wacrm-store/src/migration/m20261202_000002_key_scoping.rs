use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Keys limited to business numbers see only what belongs to their numbers: dead letters and
/// audit entries remember the business number they concern (`NULL`: unknown or none, seen only
/// by keys of every number), audit entries carry what a call searched and found (`detail`),
/// and a contact's history is read newest first, a page at a time.
#[derive(DeriveMigrationName)]
pub struct Migration;

fn a(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        m.alter_table(
            Table::alter()
                .table(a("dead_letters"))
                .add_column(string_null(a("phone_number_id")))
                .to_owned(),
        )
        .await?;
        for column in [string_null(a("phone_number_id")), text_null(a("detail"))] {
            m.alter_table(
                Table::alter()
                    .table(a("audit_log"))
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        // A contact's history newest first, paged by (timestamp, wamid): the index serves the
        // order and the cursor's range; the old (contact_id, timestamp) index is its prefix.
        m.create_index(
            Index::create()
                .name("idx_messages_contact_time_wamid")
                .table(a("messages"))
                .col(a("contact_id"))
                .col(a("timestamp"))
                .col(a("wamid"))
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("idx_messages_contact_time")
                .table(a("messages"))
                .if_exists()
                .to_owned(),
        )
        .await?;
        // Visibility of a contact to a number-limited key: its conversations by contact.
        m.create_index(
            Index::create()
                .name("idx_conversations_contact")
                .table(a("conversations"))
                .col(a("contact_id"))
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_audit_log_number")
                .table(a("audit_log"))
                .col(a("phone_number_id"))
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, index) in [
            ("audit_log", "idx_audit_log_number"),
            ("conversations", "idx_conversations_contact"),
            ("messages", "idx_messages_contact_time_wamid"),
        ] {
            m.drop_index(
                Index::drop()
                    .name(index)
                    .table(a(table))
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        }
        m.create_index(
            Index::create()
                .name("idx_messages_contact_time")
                .table(a("messages"))
                .col(a("contact_id"))
                .col(a("timestamp"))
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        for (table, column) in [
            ("audit_log", "detail"),
            ("audit_log", "phone_number_id"),
            ("dead_letters", "phone_number_id"),
        ] {
            m.alter_table(
                Table::alter()
                    .table(a(table))
                    .drop_column(a(column))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
