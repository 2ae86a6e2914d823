use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Rotating OAuth refresh tokens that instances sharing a PostgreSQL store share
/// (`crate::oauth_tokens`): a row per chain, named by the fingerprint of the configured refresh
/// token it descends from, holding the refresh token the CRM accepts next and the access token
/// issued with it (renewal time on the database's clock, in microseconds since the epoch).
///
/// The tokens are kept as they are, like the pseudonym secrets in `crm_secrets`: the CRM needs
/// them back, so they cannot be hashed; the store and its backups are as private as the
/// credentials they hold. SQLite is one process's store: the table exists so both schemas stay
/// alike, and is not used (a connection there keeps its chain in its token file).
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
                .table(a("oauth_tokens"))
                .if_not_exists()
                .col(text(a("configured_sha256")).primary_key())
                .col(text_null(a("refresh_token")))
                .col(text_null(a("access_token")))
                .col(text_null(a("instance_url")))
                .col(big_integer_null(a("renew_at_us")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(a("oauth_tokens"))
                .if_exists()
                .to_owned(),
        )
        .await
    }
}
