//! Retention's purge: the job `wacrm serve` runs every `[retention] purge_every_secs`, and
//! `wacrm purge [--dry-run]`.
//!
//! A pass takes the classes of [`DataClass::ALL`] in turn: the store's through
//! `wacrm_store::retention` (bounded batches), the embedded bus's log through
//! [`EventBus::trim`] (bounded steps; Kafka brokers apply the topics' `retention.ms`
//! themselves), the audit log through the audit log's own purge. With several instances on one
//! PostgreSQL store one of them purges at a time (`wacrm_store::singleton`). A shutdown stops
//! a pass between two batches. Each pass that changed anything is audited (actor `system` for
//! the job), logged with its counts only and counted in `wacrm_retention_purged_total{class}`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use tokio_util::sync::CancellationToken;
use wacrm_bus::config::Backend;
use wacrm_bus::{EventBus, TrimPolicy};
use wacrm_store::retention::{self, Batching, DataClass, RetentionConfig};
use wacrm_store::{singleton, Db};

use crate::settings::Settings;

/// Wait between two batches, so the store projection and the bus's publishers get their turn.
const BATCH_PAUSE: Duration = Duration::from_millis(10);

/// The longest the job waits after `serve` starts before its first pass.
const FIRST_PASS_WITHIN: Duration = Duration::from_secs(60);

/// `wacrm purge`.
#[derive(Args)]
pub struct PurgeArgs {
    /// Count what each class would lose now; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What a pass did with one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Kept forever (its age is 0).
    Kept,
    /// Dry run: this many rows (records) would go.
    Counted(u64),
    /// This many went; `complete` is false when a shutdown stopped it between batches.
    Purged {
        /// Rows, records or entries.
        rows: u64,
        /// Whether nothing past the age is left.
        complete: bool,
    },
    /// Not this process's to purge (the bus log on Kafka, or an embedded bus another process
    /// owns): why.
    Elsewhere(String),
    /// It failed (the other classes went on).
    Failed(String),
}

/// One class's line of a pass.
#[derive(Debug, Clone)]
pub struct ClassReport {
    /// The class.
    pub class: DataClass,
    /// Its age in days (0: forever).
    pub days: u32,
    /// What is older than this goes.
    pub cutoff: Option<DateTime<Utc>>,
    /// What happened.
    pub outcome: Outcome,
}

/// A pass.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every class, in purge order.
    pub classes: Vec<ClassReport>,
    /// Records of the bus log dropped before a consumer group had read them (past the hard
    /// limit), by group.
    pub unconsumed: BTreeMap<String, u64>,
}

impl Report {
    /// Rows purged (or counted) per class, for the audit entry and the log.
    fn counts(&self) -> serde_json::Map<String, serde_json::Value> {
        self.classes
            .iter()
            .filter_map(|c| match c.outcome {
                Outcome::Purged { rows, .. } | Outcome::Counted(rows) => {
                    Some((c.class.name().to_owned(), rows.into()))
                }
                _ => None,
            })
            .collect()
    }

    fn failed(&self) -> bool {
        self.classes
            .iter()
            .any(|c| matches!(c.outcome, Outcome::Failed(_)))
    }

    fn stopped(&self) -> bool {
        self.classes.iter().any(|c| {
            matches!(
                c.outcome,
                Outcome::Purged {
                    complete: false,
                    ..
                }
            )
        })
    }

    fn changed_anything(&self) -> bool {
        self.classes
            .iter()
            .any(|c| matches!(c.outcome, Outcome::Purged { rows, .. } if rows > 0))
    }
}

/// The bus as a pass sees it: one it may trim, or why it may not.
pub type BusAccess<'a> = Result<&'a dyn EventBus, String>;

/// One pass over every class at `now`. With `dry_run` nothing changes and each class says how
/// much would go. `stop` is asked between batches.
pub async fn pass(
    db: &Db,
    bus: BusAccess<'_>,
    config: &RetentionConfig,
    now: DateTime<Utc>,
    dry_run: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> Report {
    let batching = Batching {
        rows: config.batch_rows,
        pause: BATCH_PAUSE,
        stop,
    };
    let mut report = Report::default();
    for class in DataClass::ALL {
        let cutoff = config.cutoff(class, now);
        let outcome = match cutoff {
            None => Outcome::Kept,
            Some(cutoff) if class == DataClass::BusLog => {
                trim_bus(bus.clone(), config, now, cutoff, dry_run, stop, &mut report).await
            }
            Some(cutoff) if dry_run => match retention::count(db, class, cutoff).await {
                Ok(n) => Outcome::Counted(n),
                Err(e) => Outcome::Failed(e.to_string()),
            },
            Some(_) if stop() => Outcome::Purged {
                rows: 0,
                complete: false,
            },
            Some(cutoff) => match retention::purge(db, class, cutoff, &batching).await {
                Ok(purged) => Outcome::Purged {
                    rows: purged.rows,
                    complete: purged.complete,
                },
                Err(e) => Outcome::Failed(e.to_string()),
            },
        };
        if let Outcome::Purged { rows, .. } = outcome {
            retention::record_purged(class, rows);
        }
        report.classes.push(ClassReport {
            class,
            days: config.days(class),
            cutoff,
            outcome,
        });
    }
    report
}

/// The bus log's part of a pass.
async fn trim_bus(
    bus: BusAccess<'_>,
    config: &RetentionConfig,
    now: DateTime<Utc>,
    cutoff: DateTime<Utc>,
    dry_run: bool,
    stop: &(dyn Fn() -> bool + Sync),
    report: &mut Report,
) -> Outcome {
    let bus = match bus {
        Ok(bus) => bus,
        Err(why) => return Outcome::Elsewhere(why),
    };
    let policy = TrimPolicy {
        older_than_ms: cutoff.timestamp_millis(),
        unconsumed_older_than_ms: config
            .bus_log_max_age()
            .map(|max| (now - max).timestamp_millis()),
    };
    let step = config.batch_rows as usize;
    let mut rows = 0;
    loop {
        if !dry_run && stop() {
            return Outcome::Purged {
                rows,
                complete: false,
            };
        }
        let trimmed = match bus.trim(policy, step, dry_run).await {
            Ok(Some(trimmed)) => trimmed,
            Ok(None) => {
                return Outcome::Elsewhere(format!(
                "{}: the broker deletes by each topic's retention.ms (`wacrm doctor` checks it)",
                bus.backend()
            ))
            }
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        rows += trimmed.records;
        for (group, n) in trimmed.unconsumed {
            *report.unconsumed.entry(group).or_default() += n;
        }
        if dry_run {
            return Outcome::Counted(rows);
        }
        if trimmed.done {
            return Outcome::Purged {
                rows,
                complete: true,
            };
        }
        tokio::time::sleep(BATCH_PAUSE).await;
    }
}

/// Logs a pass's counts (never a row's content) and its groups that lost unread records.
fn log(report: &Report) {
    let counts = serde_json::Value::Object(report.counts()).to_string();
    for (group, records) in &report.unconsumed {
        tracing::warn!(
            group = %group,
            records,
            "retention: the bus log dropped records past its hard limit (bus_log_max_days) that this consumer group had not read; it resumes after them"
        );
    }
    for class in &report.classes {
        if let Outcome::Failed(e) = &class.outcome {
            tracing::error!(class = %class.class, error = %e, "retention purge failed");
        }
    }
    tracing::info!(purged = %counts, stopped = report.stopped(), "retention purge");
}

/// Audits a pass that changed something: one entry with its counts.
async fn audit(db: &Db, key_id: &str, actor: &str, report: &Report) -> anyhow::Result<()> {
    let outcome = if report.failed() {
        "error"
    } else if report.stopped() {
        "stopped"
    } else {
        "ok"
    };
    let mut entry = wacrm_store::audit::NewEntry::new(key_id, actor, "retention.purge", outcome);
    entry.detail = Some(serde_json::json!({ "purged": report.counts() }));
    wacrm_store::audit::AuditLog::new(db.clone())
        .append(entry)
        .await?;
    Ok(())
}

/// The purge job of `wacrm serve`: a pass every `[retention] purge_every_secs` (the first one
/// within a minute of the start), until `shutdown`.
pub async fn job(
    db: Db,
    bus: Arc<dyn EventBus>,
    config: RetentionConfig,
    shutdown: CancellationToken,
) {
    let Some(every) = config.purge_every() else {
        tracing::info!("retention purge job off ([retention] purge_every_secs = 0)");
        return;
    };
    let mut wait = every.min(FIRST_PASS_WITHIN);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = every;
        let stop = || shutdown.is_cancelled();
        let passed = singleton::exclusive(&db, retention::PURGE_LOCK, || async {
            Ok(pass(&db, Ok(bus.as_ref()), &config, Utc::now(), false, &stop).await)
        })
        .await;
        match passed {
            Ok(Some(report)) => {
                log(&report);
                if report.changed_anything() || report.failed() {
                    if let Err(e) = audit(&db, "system", "system", &report).await {
                        tracing::error!(error = %e, "the retention purge could not be audited");
                    }
                }
                if !report.failed() && !report.stopped() {
                    retention::record_pass_completed(Utc::now());
                }
            }
            // Another instance on this store is purging.
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "retention purge could not start"),
        }
    }
}

/// `wacrm purge [--dry-run]`.
pub async fn run(settings: Settings, args: PurgeArgs) -> anyhow::Result<()> {
    let db = wacrm_store::connect(&settings.store).await?;
    wacrm_store::migrate(&db).await?;
    // The embedded log is one process's: while `serve` runs, its own job trims it.
    let bus = match settings.bus.backend {
        Backend::Kafka => Err(
            "kafka: the broker deletes by each topic's retention.ms (`wacrm doctor` checks it)"
                .to_owned(),
        ),
        _ => wacrm_bus::open(&settings.bus)
            .await
            .map_err(|e| format!("not trimmed here: {e}; the purge job of `wacrm serve` trims it")),
    };
    let config = &settings.retention;
    let never = || false;
    let now = Utc::now();
    let report = if args.dry_run {
        pass(
            &db,
            bus.as_deref().map_err(Clone::clone),
            config,
            now,
            true,
            &never,
        )
        .await
    } else {
        let passed = singleton::exclusive(&db, retention::PURGE_LOCK, || async {
            Ok(pass(
                &db,
                bus.as_deref().map_err(Clone::clone),
                config,
                now,
                false,
                &never,
            )
            .await)
        })
        .await?;
        let Some(report) = passed else {
            anyhow::bail!("another wacrm instance is purging this store now; try again later");
        };
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        audit(&db, "cli", &format!("cli:{user}"), &report).await?;
        report
    };
    if let Ok(bus) = &bus {
        bus.close(Duration::from_secs(5)).await.ok();
    }
    print!("{}", table(&report, args.dry_run));
    if report.failed() {
        anyhow::bail!("some classes could not be purged");
    }
    Ok(())
}

fn kept_for(days: u32) -> String {
    match days {
        0 => "forever".to_owned(),
        1 => "1 day".to_owned(),
        d => format!("{d} days"),
    }
}

/// The report as a table for people.
pub fn table(report: &Report, dry_run: bool) -> String {
    let head = if dry_run { "would go" } else { "purged" };
    let mut out = format!(
        "{:<18} {:<10} {:<22} {head}\n",
        "class", "kept for", "older than"
    );
    for c in &report.classes {
        let cutoff = c
            .cutoff
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "-".to_owned());
        let what = match &c.outcome {
            Outcome::Kept => "kept".to_owned(),
            Outcome::Counted(n) => n.to_string(),
            Outcome::Purged {
                rows,
                complete: true,
            } => rows.to_string(),
            Outcome::Purged {
                rows,
                complete: false,
            } => format!("{rows} (stopped; the rest next time)"),
            Outcome::Elsewhere(why) => format!("-  ({why})"),
            Outcome::Failed(e) => format!("FAILED: {e}"),
        };
        out.push_str(&format!(
            "{:<18} {:<10} {:<22} {what}\n",
            c.class.name(),
            kept_for(c.days),
            cutoff
        ));
    }
    for (group, n) in &report.unconsumed {
        out.push_str(&format!(
            "bus log: {n} records past bus_log_max_days that consumer group {group} had not read\n"
        ));
    }
    out
}
