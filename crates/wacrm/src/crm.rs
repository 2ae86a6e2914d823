//! `wacrm crm`: CRM connection management.

use clap::Subcommand;

use crate::settings::Settings;

/// `wacrm crm`: CRM connections.
#[derive(Subcommand)]
pub enum CrmCommand {
    /// Prepare a CRM account for wacrm: create, if missing, what the connection's adapter needs
    /// (HubSpot: a unique `whatsapp_id` contact property; `wacrm_wamid` and `wacrm_status` on
    /// communications). The kind is read from the connection's configuration.
    Setup {
        /// The kind, optional: when given it must be the connection's (`crm setup hubspot
        /// --connection main`, as before the registry).
        kind: Option<String>,
        /// The connection (`[crm.connections.<name>]`).
        #[arg(long)]
        connection: String,
    },
}

pub async fn run(
    settings: Settings,
    adapters: &wacrm_crm::Registry,
    command: CrmCommand,
) -> anyhow::Result<()> {
    match command {
        CrmCommand::Setup { kind, connection } => {
            let configured = settings.crm.kind(&connection)?;
            if let Some(kind) = kind.filter(|k| *k != configured) {
                anyhow::bail!(
                    "connection {connection} is of kind \"{configured}\", not \"{kind}\" ([crm.connections.{connection}])"
                );
            }
            // Audited before the CRM account is changed; an unwritable log changes nothing.
            let db = wacrm_store::connect(&settings.store).await?;
            wacrm_store::migrate(&db).await?;
            crate::shared::install(&db);
            let built = settings.crm.build(&connection, adapters)?;
            let target = format!("{configured}:{connection}");
            crate::audit::intent(&db, "crm.setup", &target, None).await?;
            let setup = built.adapter.setup().await;
            let outcome = if setup.is_ok() { "ok" } else { "error" };
            crate::audit::outcome(&db, "crm.setup", &target, None, outcome).await?;
            let created = setup?;
            if created.is_empty() {
                println!("{connection}: the CRM already has everything wacrm needs");
            } else {
                for p in created {
                    println!("{connection}: created {p}");
                }
            }
        }
    }
    Ok(())
}
