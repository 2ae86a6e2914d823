//! Publishes the audit log on the bus (the audit topic), in log order.
//!
//! The log is written to the store first (an API call that cannot be audited is refused); this
//! relay then publishes each entry as `wacrm.audit.recorded.v1` and advances a cursor. A crash
//! between publishing and advancing publishes the same entries again, with the same event ids
//! (derived from `seq` and hash), so consumers drop the repeats; nothing is skipped. Several
//! instances on one PostgreSQL store relay one at a time (an advisory lock per pass), so
//! overlapping passes do not publish the same entries twice.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wacrm_bus::cloudevents::event_record;
use wacrm_bus::{EventBus, Topics};
use wacrm_core::event::AuditRecord;
use wacrm_core::Event;
use wacrm_store::audit::{self, Filter};
use wacrm_store::singleton;
use wacrm_store::Db;

/// Why a relay pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] wacrm_store::StoreError),
    /// The bus did not take the records.
    #[error("publishing audit entries: {0}")]
    Bus(String),
}

/// Publishes entries not yet published, up to 500; how many it published. With several
/// instances on one PostgreSQL store, one relays at a time (`wacrm_store::singleton`): an
/// instance that finds another relaying publishes nothing this pass.
pub async fn relay_once(
    db: &Db,
    bus: &dyn EventBus,
    topics: &Topics,
    source: &str,
) -> Result<usize, RelayError> {
    let mut outcome: Result<usize, RelayError> = Ok(0);
    singleton::exclusive(db, singleton::AUDIT_RELAY, || async {
        outcome = relay_pass(db, bus, topics, source).await;
        Ok(())
    })
    .await?;
    outcome
}

/// One pass, by the one instance relaying.
async fn relay_pass(
    db: &Db,
    bus: &dyn EventBus,
    topics: &Topics,
    source: &str,
) -> Result<usize, RelayError> {
    let after = audit::published_up_to(db).await?;
    let entries = audit::page(
        db,
        &Filter {
            after_seq: Some(after),
            limit: 500,
            ..Filter::default()
        },
    )
    .await?;
    let Some(last) = entries.last().map(|e| e.seq) else {
        return Ok(0);
    };
    let mut records = Vec::with_capacity(entries.len());
    for e in &entries {
        let event = Event::audit(AuditRecord {
            seq: e.seq,
            at: e.at,
            key_id: e.key_id.clone(),
            actor: e.actor.clone(),
            action: e.action.clone(),
            contact_id: e.contact_id.clone(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            hash: e.hash.clone(),
            prev_hash: e.prev_hash.clone(),
        });
        records.push(
            event_record(topics, source, &event).map_err(|e| RelayError::Bus(e.to_string()))?,
        );
    }
    bus.publish(records)
        .await
        .map_err(|e| RelayError::Bus(e.to_string()))?;
    audit::mark_published(db, last).await?;
    Ok(entries.len())
}

/// Relays every `every` until `shutdown`, then once more so the last entries go out too.
pub async fn run(
    db: Db,
    bus: Arc<dyn EventBus>,
    topics: Topics,
    source: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(every) => false,
        };
        loop {
            match relay_once(&db, bus.as_ref(), &topics, &source).await {
                Ok(500) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "audit relay pass failed; retrying");
                    break;
                }
            }
        }
        if stopping {
            return;
        }
    }
}
