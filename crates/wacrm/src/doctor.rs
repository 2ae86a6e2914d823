//! `wacrm doctor`: is everything this configuration needs there?

use anyhow::bail;
use sea_orm_migration::MigratorTrait;
use wacrm_bus::config::Backend;
use wacrm_bus::kafka::{self, TopicState};

use crate::settings::Settings;

fn line(ok: bool, what: &str, detail: impl std::fmt::Display) -> bool {
    println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
    ok
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

    if settings.bus.backend == Backend::Kafka {
        let specs = kafka::expected_topics(&settings.bus.topics(), &settings.bus.kafka);
        match kafka::check_topics(&settings.bus.kafka, &specs, create_topics).await {
            Ok(states) => {
                for (spec, state) in states {
                    let detail = match &state {
                        TopicState::Ok => format!(
                            "{} partitions, cleanup.policy={}",
                            spec.partitions, spec.cleanup_policy
                        ),
                        TopicState::Missing => "missing (create with --create-topics)".to_owned(),
                        TopicState::Partitions { found } => {
                            format!("{found} partitions, expected {}", spec.partitions)
                        }
                        TopicState::CleanupPolicy { found } => {
                            format!("cleanup.policy={found}, expected {}", spec.cleanup_policy)
                        }
                    };
                    healthy &= line(
                        state == TopicState::Ok,
                        &format!("topic {}", spec.name),
                        detail,
                    );
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
