//! `wacrm dead-letters`: list and re-drive what could not be processed.

use anyhow::{bail, Context};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use wacrm_store::queries;

use crate::settings::Settings;

/// `wacrm dead-letters`: dead letters.
#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters, newest first.
    List {
        /// Most to list.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Include those already re-driven.
        #[arg(long)]
        all: bool,
    },
    /// Re-drive dead letters (one by id, or every unresolved one). With the embedded bus, stop
    /// `wacrm serve` first or use `POST /v1/dead-letters/{id}/retry`.
    Retry {
        /// The dead letter's id; omit with --all.
        id: Option<String>,
        /// Re-drive every unresolved dead letter.
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(settings: Settings, command: DeadLettersCommand) -> anyhow::Result<()> {
    let db = wacrm_store::connect(&settings.store).await?;
    wacrm_store::migrate(&db).await?;
    match command {
        DeadLettersCommand::List { limit, all } => {
            for d in queries::dead_letters(&db, limit, all, None).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}{}",
                    d.id,
                    d.created_at.to_rfc3339(),
                    d.source,
                    d.error_class,
                    d.reason,
                    if d.resolved_at.is_some() {
                        "\t(resolved)"
                    } else {
                        ""
                    }
                );
            }
        }
        DeadLettersCommand::Retry { id, all } => {
            let targets = match (id, all) {
                (Some(id), false) => vec![queries::dead_letter(&db, &id)
                    .await?
                    .with_context(|| format!("no dead letter {id}"))?],
                (None, true) => queries::dead_letters(&db, u64::MAX >> 1, false, None).await?,
                _ => bail!("give one dead letter id, or --all"),
            };
            let bus = wacrm_bus::open(&settings.bus)
                .await
                .context("opening the event bus")?;
            let topics = settings.bus.topics();
            let progress = ProgressBar::new(targets.len() as u64);
            progress.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} re-driven {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let mut failed = 0;
            for dead in &targets {
                // Audited before it is re-driven; an unwritable audit log stops the command
                // before this dead letter.
                let number = dead.phone_number_id.as_deref();
                crate::audit::intent(&db, "dead_letters.retry", &dead.id, number).await?;
                let outcome = wacrm_server::redrive::redrive(
                    &db,
                    bus.as_ref(),
                    &topics,
                    &settings.server.event_source,
                    &settings.whatsapp.opt_out_keywords,
                    dead,
                )
                .await;
                let word = match &outcome {
                    Ok(Ok(())) => "ok",
                    Ok(Err(_)) => "still_dead",
                    Err(_) => "error",
                };
                crate::audit::outcome(&db, "dead_letters.retry", &dead.id, number, word).await?;
                if let Err(reason) = outcome? {
                    failed += 1;
                    progress.println(format!("{}: still dead: {reason}", dead.id));
                }
                progress.inc(1);
            }
            progress.finish_with_message(format!("({failed} still dead)"));
            bus.close(std::time::Duration::from_secs(10)).await?;
            if failed > 0 {
                bail!(
                    "{failed} of {} dead letters could not be re-driven",
                    targets.len()
                );
            }
        }
    }
    Ok(())
}
