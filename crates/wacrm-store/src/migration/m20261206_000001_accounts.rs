use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The console's people (`crate::accounts`) and their sessions (`crate::console_sessions`):
/// accounts with an argon2id password hash, a TOTP secret once enrolled, hashed one-time
/// recovery codes and a failure count for lockout; sessions stored by the SHA-256 of their
/// cookie, with the step of MFA they reached and their CSRF token.
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
                .table(a("accounts"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                .col(string_uniq(a("username")))
                .col(string(a("name")))
                .col(string(a("role")))
                .col(text(a("scopes")))
                .col(text_null(a("business_numbers")))
                .col(string(a("locale")))
                .col(text(a("password_hash")))
                .col(string_null(a("totp_secret")))
                .col(timestamp_with_time_zone_null(a("totp_enrolled_at")))
                .col(big_integer_null(a("totp_last_step")))
                .col(text(a("recovery_codes")))
                .col(integer(a("failed_attempts")))
                .col(timestamp_with_time_zone_null(a("locked_until")))
                .col(timestamp_with_time_zone_null(a("disabled_at")))
                .col(timestamp_with_time_zone(a("created_at")))
                .col(string(a("created_by")))
                .col(timestamp_with_time_zone_null(a("last_login_at")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("console_sessions"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                .col(string(a("account_id")))
                .col(boolean(a("mfa_passed")))
                .col(string(a("csrf")))
                .col(string_null(a("pending_totp_secret")))
                .col(timestamp_with_time_zone(a("created_at")))
                .col(timestamp_with_time_zone(a("last_seen_at")))
                .col(timestamp_with_time_zone(a("expires_at")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_console_sessions_account")
                .table(a("console_sessions"))
                .col(a("account_id"))
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in ["console_sessions", "accounts"] {
            m.drop_table(Table::drop().table(a(table)).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
