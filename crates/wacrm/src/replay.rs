//! `wacrm replay`: re-drive a CRM connection from a point in time.
//!
//! A throw-away consumer group reads the conversation topic from the beginning and hands every
//! event from `--from` on (by WhatsApp's time) to the connection's sync engine. The ledger makes
//! this idempotent: what the CRM already holds is skipped; what it lost (deleted by hand, or a
//! connection added later) is written again.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use wacrm_bus::cloudevents;
use wacrm_bus::runner::Handler;
use wacrm_bus::Record;
use wacrm_sync::SyncEngine;

use crate::settings::Settings;

fn event_time(record: &Record) -> Option<DateTime<Utc>> {
    record
        .header(cloudevents::TIME)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

pub async fn run(
    settings: Settings,
    adapters: &wacrm_crm::Registry,
    connection: String,
    from: DateTime<Utc>,
) -> anyhow::Result<()> {
    let db = wacrm_store::connect(&settings.store).await?;
    wacrm_store::migrate(&db).await?;
    crate::shared::install(&db);
    let target = format!("{connection} from {}", from.to_rfc3339());
    crate::audit::intent(&db, "crm.replay", &target, None).await?;
    let replayed = replay(&settings, adapters, &db, &connection, from).await;
    let outcome = if replayed.is_ok() { "ok" } else { "error" };
    crate::audit::outcome(&db, "crm.replay", &target, None, outcome).await?;
    replayed
}

async fn replay(
    settings: &Settings,
    adapters: &wacrm_crm::Registry,
    db: &wacrm_store::Db,
    connection: &str,
    from: DateTime<Utc>,
) -> anyhow::Result<()> {
    let db = db.clone();
    let built = settings.crm.build(connection, adapters)?;
    let bus = wacrm_bus::open(&settings.bus)
        .await
        .context("opening the event bus")?;
    let topics = settings.bus.topics();
    let group = format!(
        "wacrm-replay-{connection}-{}",
        Utc::now().timestamp_millis()
    );
    let mut subscription = bus.subscribe(&group, &SyncEngine::topics(&topics)).await?;
    let mut engine = SyncEngine::new(built.config, built.adapter, db);
    let total = subscription.lag().await.unwrap_or(0).max(0) as u64;
    let progress = ProgressBar::new(total);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events replayed ({msg})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut dead = 0usize;
    loop {
        let batch = subscription.poll(500, Duration::from_secs(2)).await?;
        if batch.is_empty() {
            break;
        }
        let wanted: Vec<Record> = batch
            .iter()
            .filter(|r| event_time(r).is_some_and(|t| t >= from))
            .cloned()
            .collect();
        if !wanted.is_empty() {
            let mut attempts = 0;
            loop {
                match engine.handle(&wanted).await {
                    Ok(handled) => {
                        dead += handled.dead_letters.len();
                        for (i, reason) in handled.dead_letters {
                            progress.println(format!("offset {}: {reason}", wanted[i].offset));
                        }
                        break;
                    }
                    Err(e) if attempts < 10 => {
                        attempts += 1;
                        progress.println(format!("retrying: {e}"));
                        tokio::time::sleep(Duration::from_secs(attempts)).await;
                    }
                    Err(e) => anyhow::bail!("replay stopped: {e}"),
                }
            }
        }
        subscription.commit(&batch).await?;
        progress.inc(batch.len() as u64);
        progress.set_message(format!("{dead} refused by the CRM"));
    }
    progress.finish();
    subscription.close().await?;
    bus.close(Duration::from_secs(10)).await?;
    println!("replayed connection {connection} from {from}; {dead} event(s) refused by the CRM");
    Ok(())
}
