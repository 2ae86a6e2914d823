//! `wacrm audit`: check the audit log's chain.

use clap::Subcommand;

use crate::settings::Settings;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify every entry's hash and link; fails naming the first edited or missing entry.
    Verify,
}

pub async fn run(settings: Settings, command: AuditCommand) -> anyhow::Result<()> {
    let db = wacrm_store::connect(&settings.store).await?;
    wacrm_store::migrate(&db).await?;
    match command {
        AuditCommand::Verify => match wacrm_store::audit::verify(&db).await? {
            Ok(count) => {
                println!("audit log intact: {count} entries verified");
                Ok(())
            }
            Err(broken) => anyhow::bail!(
                "audit log broken at entry {}: {}",
                broken.seq,
                broken.reason
            ),
        },
    }
}

/// Audits a command-line action (keys are managed from the host, not through an API key).
pub async fn cli(db: &wacrm_store::Db, action: &str, target: &str) -> anyhow::Result<()> {
    let actor = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    wacrm_store::audit::AuditLog::new(db.clone())
        .append(wacrm_store::audit::NewEntry {
            key_id: "cli".into(),
            actor: format!("cli:{actor}"),
            action: action.into(),
            contact_id: None,
            target: Some(target.into()),
            outcome: "ok".into(),
        })
        .await?;
    Ok(())
}
