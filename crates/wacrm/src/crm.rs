//! `wacrm crm`: CRM connection management.

use clap::Subcommand;

use crate::settings::Settings;

#[derive(Subcommand)]
pub enum CrmCommand {
    /// Prepare a CRM account for wacrm.
    Setup {
        #[command(subcommand)]
        crm: SetupCommand,
    },
}

#[derive(Subcommand)]
pub enum SetupCommand {
    /// Create, if missing, the HubSpot properties wacrm relies on (a unique `whatsapp_id`
    /// contact property; `wacrm_wamid` and `wacrm_status` on communications).
    Hubspot {
        /// The connection (`[crm.connections.<name>]`).
        #[arg(long)]
        connection: String,
    },
}

pub async fn run(settings: Settings, command: CrmCommand) -> anyhow::Result<()> {
    match command {
        CrmCommand::Setup {
            crm: SetupCommand::Hubspot { connection },
        } => {
            let hubspot = settings.crm.hubspot(&connection)?;
            // Audited before the CRM account is changed; an unwritable log changes nothing.
            let db = wacrm_store::connect(&settings.store).await?;
            wacrm_store::migrate(&db).await?;
            let target = format!("hubspot:{connection}");
            crate::audit::intent(&db, "crm.setup", &target, None).await?;
            let setup = hubspot.setup().await;
            let outcome = if setup.is_ok() { "ok" } else { "error" };
            crate::audit::outcome(&db, "crm.setup", &target, None, outcome).await?;
            let created = setup?;
            if created.is_empty() {
                println!("{connection}: HubSpot already has every property wacrm needs");
            } else {
                for p in created {
                    println!("{connection}: created {p}");
                }
            }
        }
    }
    Ok(())
}
