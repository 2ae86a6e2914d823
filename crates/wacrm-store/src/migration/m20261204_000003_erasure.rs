use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Erasure (LGPD art. 18, VI): `erasures` holds one row per erasure, its plan while it runs
/// (the identities and CRM objects it must still reach; cleared when it finishes) and the state
/// of each step; `erased_subjects` holds, per identity, only a keyed hash and when it was
/// erased, so that Meta's late retries of a message from before the erasure do not bring the
/// data back (the projection and the sync engine drop them), while a message the person sends
/// afterwards starts a new contact.
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
                .table(a("erasures"))
                .if_not_exists()
                .col(text(a("id")).primary_key())
                .col(text(a("subject")))
                .col(text(a("state")))
                .col(text_null(a("plan")))
                .col(text(a("steps")))
                .col(text(a("requested_by")))
                .col(timestamp_with_time_zone(a("requested_at")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .col(timestamp_with_time_zone_null(a("finished_at")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("erasures_subject_state")
                .table(a("erasures"))
                .col(a("subject"))
                .col(a("state"))
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("erased_subjects"))
                .if_not_exists()
                .col(text(a("subject")).primary_key())
                .col(timestamp_with_time_zone(a("erased_at")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in ["erased_subjects", "erasures"] {
            m.drop_table(Table::drop().table(a(table)).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
