use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

/// Consent records (`crate::consent`): one row per opt-in or opt-out a contact made for a
/// purpose, never updated (the current state is the newest that applies), and the indexes the
/// data-subject export (`crate::export`) reads a contact's requests and audit entries by —
/// without them each page of an export scanned the whole table — and a contact's merged
/// predecessors by.
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
                .table(a("consent_records"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                .col(string(a("contact_id")))
                .col(string(a("purpose")))
                .col(boolean(a("granted")))
                .col(string(a("channel")))
                .col(text(a("source")))
                .col(string(a("recorded_by")))
                .col(string_null(a("key_id")))
                .col(string_null(a("phone_number_id")))
                .col(timestamp_with_time_zone(a("at")))
                .col(timestamp_with_time_zone(a("recorded_at")))
                .to_owned(),
        )
        .await?;
        for (name, table, columns) in [
            (
                "idx_consent_records_contact",
                "consent_records",
                &["contact_id", "purpose", "at"][..],
            ),
            (
                "idx_outbound_requests_contact",
                "outbound_requests",
                &["contact_id", "created_at"][..],
            ),
            (
                "idx_audit_log_contact",
                "audit_log",
                &["contact_id", "seq"][..],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(a(table)).if_not_exists();
            for c in columns {
                index.col(a(c));
            }
            m.create_index(index.to_owned()).await?;
        }
        // The contacts merged into one (`crate::consent::family`, asked by every marketing
        // send and every read of consent): only merged rows are indexed, so the projection's
        // inserts of new contacts pay nothing for it.
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_contacts_merged_into ON contacts (merged_into) \
                 WHERE merged_into IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS idx_contacts_merged_into")
            .await?;
        for (name, table) in [
            ("idx_audit_log_contact", "audit_log"),
            ("idx_outbound_requests_contact", "outbound_requests"),
        ] {
            m.drop_index(Index::drop().name(name).table(a(table)).to_owned())
                .await?;
        }
        m.drop_table(
            Table::drop()
                .table(a("consent_records"))
                .if_exists()
                .to_owned(),
        )
        .await
    }
}
