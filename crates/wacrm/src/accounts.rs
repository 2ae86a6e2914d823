//! `wacrm accounts`: the console's people — the first admin, and emergencies (a lost phone, a
//! person who left). Every command is audited, its intent before it acts.

use std::io::Read;

use anyhow::{bail, Context};
use clap::Subcommand;
use wacrm_store::accounts::{self, NewAccount};
use wacrm_store::console_sessions;

use crate::principal_args::PrincipalArgs;
use crate::settings::Settings;

/// `wacrm accounts`: console accounts.
#[derive(Subcommand)]
pub enum AccountsCommand {
    /// Create an account. Its TOTP is enrolled at its first sign-in.
    Create {
        /// The sign-in name (3 to 64 of a-z 0-9 . _ -).
        #[arg(long)]
        username: String,
        /// The person's name, as the audit log shows it.
        #[arg(long)]
        name: String,
        /// Role, scopes and business numbers.
        #[command(flatten)]
        principal: PrincipalArgs,
        /// The console's language for the account: pt-BR (default) or en.
        #[arg(long)]
        locale: Option<String>,
        /// Read the password from standard input (its first line) instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts (never their secrets).
    List,
    /// Disable an account and end its sessions.
    Disable {
        /// The username.
        username: String,
    },
    /// Remove an account's TOTP and recovery codes (a lost phone) and end its sessions: the
    /// next sign-in enrols again. Also clears a lockout.
    ResetMfa {
        /// The username.
        username: String,
    },
}

pub async fn run(settings: Settings, command: AccountsCommand) -> anyhow::Result<()> {
    let db = wacrm_store::connect(&settings.store).await?;
    wacrm_store::migrate(&db).await?;
    match command {
        AccountsCommand::Create {
            username,
            name,
            principal,
            locale,
            password_stdin,
        } => {
            let role = principal.role()?;
            let business_numbers = principal.business_numbers()?;
            let (password, generated) = if password_stdin {
                let mut input = String::new();
                std::io::stdin()
                    .take(u64::try_from(accounts::MAX_PASSWORD_BYTES + 2).unwrap_or(1026))
                    .read_to_string(&mut input)
                    .context("reading the password from standard input")?;
                let line = input.lines().next().unwrap_or_default().to_owned();
                (line, false)
            } else {
                (accounts::generate_password(), true)
            };
            let intent = format!("new account {username}");
            crate::audit::intent(&db, "accounts.create", &intent, None).await?;
            let created = accounts::create(
                &db,
                NewAccount {
                    username,
                    name,
                    role,
                    scopes: principal.scopes(),
                    business_numbers,
                    locale,
                    password: password.clone(),
                    created_by: "cli".into(),
                },
            )
            .await;
            let account = match created {
                Ok(account) => account,
                Err(e) => {
                    crate::audit::outcome(&db, "accounts.create", &intent, None, "rejected")
                        .await?;
                    return Err(e.into());
                }
            };
            crate::audit::outcome(&db, "accounts.create", &account.username, None, "ok").await?;
            eprintln!(
                "created account {} for {} ({}); TOTP is enrolled at the first sign-in at /console",
                account.username,
                account.name,
                account.role.as_str()
            );
            if generated {
                eprintln!("its first password (shown only this once):");
                println!("{password}");
            }
        }
        AccountsCommand::List => {
            crate::audit::cli(&db, "accounts.list", "all").await?;
            let now = chrono::Utc::now();
            for a in accounts::list(&db).await? {
                let state = if a.disabled_at.is_some() {
                    "disabled"
                } else if a.locked_until.is_some_and(|u| u > now) {
                    "locked"
                } else if !a.mfa_enrolled {
                    "mfa-pending"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    a.username,
                    a.name,
                    a.role.as_str(),
                    state,
                    a.business_numbers
                        .map(|n| n.join(","))
                        .unwrap_or_else(|| "*".into()),
                    a.last_login_at
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        AccountsCommand::Disable { username } => {
            change(&db, "accounts.disable", &username, |db, id| {
                Box::pin(async move { accounts::disable(db, id).await })
            })
            .await?;
            println!("disabled {username}");
        }
        AccountsCommand::ResetMfa { username } => {
            change(&db, "accounts.reset_mfa", &username, |db, id| {
                Box::pin(async move { accounts::reset_mfa(db, id).await })
            })
            .await?;
            println!("{username} enrols TOTP again at the next sign-in");
        }
    }
    Ok(())
}

type Change = for<'a> fn(
    &'a wacrm_store::Db,
    &'a str,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<bool, wacrm_store::StoreError>> + Send + 'a>,
>;

/// Audits `action` on an account, applies it, ends the account's sessions, audits the outcome.
async fn change(
    db: &wacrm_store::Db,
    action: &str,
    username: &str,
    apply: Change,
) -> anyhow::Result<()> {
    crate::audit::intent(db, action, username, None).await?;
    let Some(account) = accounts::find_by_username(db, username).await? else {
        crate::audit::outcome(db, action, username, None, "not_found").await?;
        bail!("no account {username}");
    };
    let applied = apply(db, &account.id).await;
    let ended = match &applied {
        Ok(true) => console_sessions::end_all_for(db, &account.id)
            .await
            .map(Some),
        _ => Ok(None),
    };
    let outcome = match (&applied, &ended) {
        (Ok(true), Ok(_)) => "ok",
        (Ok(false), _) => "not_found",
        _ => "error",
    };
    crate::audit::outcome(db, action, username, None, outcome).await?;
    applied?;
    if let Some(n) = ended? {
        eprintln!("{n} sessions ended");
    }
    Ok(())
}
