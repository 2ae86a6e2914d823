//! `wacrm audit`: check the audit log's chain.

use clap::Subcommand;

use crate::settings::Settings;

/// `wacrm audit`: the audit log.
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

/// Audits a command-line read (keys are managed from the host, not through an API key).
pub async fn cli(db: &wacrm_store::Db, action: &str, target: &str) -> anyhow::Result<()> {
    entry(db, action, target, None, "ok").await
}

/// Before a command changes anything: records the intent (outcome `intent`). An error means the
/// audit log cannot be written and the command must do nothing (it fails closed); otherwise act,
/// then record the outcome with [`outcome`].
pub async fn intent(
    db: &wacrm_store::Db,
    action: &str,
    target: &str,
    phone_number_id: Option<&str>,
) -> anyhow::Result<()> {
    entry(db, action, target, phone_number_id, "intent")
        .await
        .map_err(|e| e.context("the audit log cannot be written; nothing was done"))
}

/// After a command acted: its outcome (`ok`, `not_found`, `error`, …), the second entry after
/// [`intent`].
pub async fn outcome(
    db: &wacrm_store::Db,
    action: &str,
    target: &str,
    phone_number_id: Option<&str>,
    outcome: &str,
) -> anyhow::Result<()> {
    entry(db, action, target, phone_number_id, outcome).await
}

async fn entry(
    db: &wacrm_store::Db,
    action: &str,
    target: &str,
    phone_number_id: Option<&str>,
    outcome: &str,
) -> anyhow::Result<()> {
    let actor = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let mut new = wacrm_store::audit::NewEntry::new("cli", format!("cli:{actor}"), action, outcome);
    new.target = Some(target.into());
    new.phone_number_id = phone_number_id.map(str::to_owned);
    wacrm_store::audit::AuditLog::new(db.clone())
        .append(new)
        .await?;
    Ok(())
}
