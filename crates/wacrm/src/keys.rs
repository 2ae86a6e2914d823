//! `wacrm keys`: employees' API keys.

use anyhow::bail;
use clap::Subcommand;
use wacrm_store::keys::{self, NewKey};

use crate::principal_args::PrincipalArgs;

use crate::settings::Settings;

/// `wacrm keys`: employees' API keys.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (it is shown only this once).
    Create {
        /// The employee's name.
        #[arg(long)]
        name: String,
        /// Role, scopes and business numbers.
        #[command(flatten)]
        principal: PrincipalArgs,
        /// Expiry, RFC 3339 (e.g. 2027-01-31T23:59:59Z).
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key id.
        id: String,
    },
}

pub async fn run(settings: Settings, command: KeysCommand) -> anyhow::Result<()> {
    let db = wacrm_store::connect(&settings.store).await?;
    wacrm_store::migrate(&db).await?;
    match command {
        KeysCommand::Create {
            name,
            principal,
            expires_at,
        } => {
            let role = principal.role()?;
            let business_numbers = principal.business_numbers()?;
            let intent = format!("new key for {name}");
            crate::audit::intent(&db, "keys.create", &intent, None).await?;
            let created = keys::create(
                &db,
                NewKey {
                    name,
                    role,
                    scopes: principal.scopes(),
                    business_numbers,
                    expires_at,
                },
            )
            .await;
            let (info, token) = match created {
                Ok(created) => created,
                Err(e) => {
                    crate::audit::outcome(&db, "keys.create", &intent, None, "rejected").await?;
                    return Err(e.into());
                }
            };
            crate::audit::outcome(&db, "keys.create", &info.id, None, "ok").await?;
            eprintln!(
                "created key {} for {} ({}); store it now, it is not shown again:",
                info.id,
                info.name,
                info.role.as_str()
            );
            println!("{token}");
        }
        KeysCommand::List => {
            crate::audit::cli(&db, "keys.list", "all").await?;
            for k in keys::list(&db).await? {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if k.expires_at.is_some_and(|e| e <= chrono::Utc::now()) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.name,
                    k.role.as_str(),
                    state,
                    k.business_numbers
                        .map(|n| n.join(","))
                        .unwrap_or_else(|| "*".into())
                );
            }
        }
        KeysCommand::Revoke { id } => {
            crate::audit::intent(&db, "keys.revoke", &id, None).await?;
            let revoked = keys::revoke(&db, &id).await;
            let outcome = match &revoked {
                Ok(true) => "ok",
                Ok(false) => "not_found",
                Err(_) => "error",
            };
            crate::audit::outcome(&db, "keys.revoke", &id, None, outcome).await?;
            if !revoked? {
                bail!("no key {id}");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}
