//! `wacrm doctor`: is everything this configuration needs there?

use anyhow::bail;
use sea_orm_migration::MigratorTrait;
use wacrm_bus::config::Backend;
use wacrm_bus::kafka::{self, TopicState};
use wacrm_store::retention::DataClass;

use crate::settings::Settings;

fn line(ok: bool, what: &str, detail: impl std::fmt::Display) -> bool {
    println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
    ok
}

/// Something to look at that does not fail the check.
fn warn(what: &str, detail: impl std::fmt::Display) {
    println!("warn {what}: {detail}");
}

/// How long a Kafka retention value is, for people.
fn retention_text(ms: &str) -> String {
    const DAY: u64 = 86_400_000;
    const HOUR: u64 = 3_600_000;
    match ms.trim().parse::<i64>().map(u64::try_from) {
        // Any negative retention is Kafka's "forever".
        Ok(Err(_)) => "forever".to_owned(),
        Ok(Ok(ms)) if ms > 0 && ms.is_multiple_of(DAY) => format!("{} days", ms / DAY),
        Ok(Ok(ms)) if ms > 0 && ms.is_multiple_of(HOUR) => format!("{} hours", ms / HOUR),
        Ok(Ok(ms)) => format!("{ms} ms"),
        Err(_) => ms.to_owned(),
    }
}

pub async fn run(
    settings: Settings,
    adapters: &wacrm_crm::Registry,
    create_topics: bool,
) -> anyhow::Result<()> {
    let mut healthy = true;
    let secrets = settings.whatsapp.secrets();
    healthy &= line(
        secrets.is_configured(),
        "whatsapp app secret",
        if secrets.is_configured() {
            "set"
        } else {
            "not set: webhooks are rejected"
        },
    );
    let token = settings
        .whatsapp
        .verify_token
        .as_deref()
        .is_some_and(|t| !t.is_empty());
    line(
        true,
        "whatsapp verify token",
        if token {
            "set"
        } else {
            "not set: handshakes are refused"
        },
    );

    match wacrm_store::connect(&settings.store).await {
        Ok(db) => {
            healthy &= line(true, "store", "reachable");
            crate::shared::install(&db);
            match wacrm_store::migration::Migrator::get_pending_migrations(&db).await {
                Ok(pending) if pending.is_empty() => {
                    line(true, "migrations", "up to date");
                }
                Ok(pending) => {
                    healthy &= line(
                        false,
                        "migrations",
                        format!("{} pending (run `wacrm migrate`)", pending.len()),
                    );
                }
                Err(e) => healthy &= line(false, "migrations", e),
            }
        }
        Err(e) => healthy &= line(false, "store", e),
    }

    // What is kept how long ([retention], already validated when the settings loaded).
    let retention = &settings.retention;
    let kept: Vec<String> = DataClass::ALL
        .iter()
        .map(|c| match retention.days(*c) {
            0 => format!("{c} forever"),
            d => format!("{c} {d} d"),
        })
        .collect();
    let job = match retention.purge_every() {
        Some(every) => format!("purged every {} s by `wacrm serve`", every.as_secs()),
        None => "no purge job (purge_every_secs = 0): run `wacrm purge`".to_owned(),
    };
    line(true, "retention", format!("{}; {job}", kept.join(", ")));
    if retention.bus_log_days == 0 {
        warn(
            "retention",
            "bus_log_days = 0: the bus keeps every record, and the personal data in it, forever",
        );
    }
    let bodies = retention.message_bodies_days;
    if bodies > 0 && (retention.bus_log_days == 0 || retention.bus_log_days > bodies) {
        // A store rebuilt from the bus (or a replayed CRM connection) would get back bodies
        // the store had already let go.
        warn(
            "retention",
            format!(
                "the bus keeps records longer than message bodies are kept ({bodies} days): a replay brings expired bodies back"
            ),
        );
    }

    if settings.bus.backend == Backend::Kafka {
        let specs = kafka::expected_topics(&settings.bus.topics(), &settings.bus.kafka);
        match kafka::check_topics(&settings.bus.kafka, &specs, create_topics).await {
            Ok(states) => {
                for (spec, state) in states {
                    let what = format!("topic {}", spec.name);
                    if let TopicState::Retention {
                        name,
                        found,
                        expected,
                    } = &state
                    {
                        // The topic works; it keeps records (and personal data) for as long as
                        // it says, and replay reaches back that far, not what [retention] says.
                        let found = match found {
                            Some(v) => format!("{name}={v} ({})", retention_text(v)),
                            None => format!(
                                "{name} not set on the topic (the broker's default applies)"
                            ),
                        };
                        warn(
                            &what,
                            format!(
                                "{found}, expected {expected} ({}) from [retention] bus_log_days; \
                                 change it with `kafka-configs.sh --alter --entity-type topics \
                                 --entity-name {} --add-config {name}={expected}`",
                                retention_text(expected),
                                spec.name
                            ),
                        );
                        continue;
                    }
                    let detail = match &state {
                        TopicState::Ok => {
                            let retention = kafka::retention_config(&spec, &settings.bus.kafka)
                                .map(|(name, value)| {
                                    format!(", {name}={value} ({})", retention_text(&value))
                                })
                                .unwrap_or_default();
                            format!(
                                "{} partitions, cleanup.policy={}{retention}",
                                spec.partitions, spec.cleanup_policy
                            )
                        }
                        TopicState::Missing => "missing (create with --create-topics)".to_owned(),
                        TopicState::Partitions { found } => {
                            format!("{found} partitions, expected {}", spec.partitions)
                        }
                        TopicState::CleanupPolicy { found } => {
                            format!("cleanup.policy={found}, expected {}", spec.cleanup_policy)
                        }
                        TopicState::Retention { .. } => continue,
                    };
                    healthy &= line(state == TopicState::Ok, &what, detail);
                }
            }
            Err(e) => healthy &= line(false, "kafka", e),
        }
    }
    match wacrm_bus::open(&settings.bus).await {
        Ok(bus) => match bus.check().await {
            Ok(()) => {
                line(true, "bus", format!("{} reachable", bus.backend()));
            }
            Err(e) => healthy &= line(false, "bus", e),
        },
        Err(e) => healthy &= line(false, "bus", e),
    }
    // Every CRM connection, by its adapter's own check (credential accepted, what `crm setup`
    // creates present); nothing is changed.
    for name in settings.crm.connections.keys() {
        let what = format!("crm {name}");
        match settings.crm.build(name, adapters) {
            Ok(built) => match built.adapter.check().await {
                Ok(found) if found.is_empty() => {
                    line(true, &what, "built (its adapter checks nothing more)");
                }
                Ok(found) => {
                    line(true, &what, found.join(", "));
                }
                Err(e) => healthy &= line(false, &what, e),
            },
            Err(e) => healthy &= line(false, &what, format!("{e:#}")),
        }
    }
    if !healthy {
        bail!("some checks failed");
    }
    Ok(())
}
