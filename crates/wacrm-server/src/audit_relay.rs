//! Publishes the audit log on the bus (the audit topic), in log order, and anchors its head
//! outside the database.
//!
//! The log is written to the store first (an API call that cannot be audited is refused); this
//! relay then publishes each entry as `wacrm.audit.recorded.v1` and advances a cursor. A crash
//! between publishing and advancing publishes the same entries again, with the same event ids
//! (derived from `seq` and hash), so consumers drop the repeats; nothing is skipped. Several
//! instances on one PostgreSQL store relay one at a time (an advisory lock per pass), so
//! overlapping passes do not publish the same entries twice.
//!
//! Anchoring: every `[audit] anchor_every_secs`, and on shutdown, the instance holding the
//! relay's lock checks the entries written since the last anchor it knows (MACs, links, the
//! anchored entry unchanged) and writes the newest published entry's seq and link, MACed, to
//! the anchor file and as a `wacrm.audit.anchored.v1` record on the audit topic. The anchor goes
//! on the audit topic rather than a topic of its own: that topic has one partition, so the
//! anchor lands right after the entries it vouches for, and it needs no topic, ACL or retention
//! of its own (it lives exactly as long as the entries it anchors). Consumers skip a `ce_type`
//! they do not know (docs/events.md). A log that no longer matches its last anchor is not
//! anchored again — that would vouch for the rewrite — and the relay logs it at ERROR.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use tokio_util::sync::CancellationToken;
use wacrm_bus::cloudevents::{self, event_record};
use wacrm_bus::{EventBus, OutboundRecord, Record, Topics};
use wacrm_core::event::{AuditRecord, EventId};
use wacrm_core::Event;
use wacrm_store::audit::{self, Anchor, AuditKeys, Broken, Filter, ANCHOR_TYPE};
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
    /// The anchor file could not be written.
    #[error("{0}")]
    Anchor(String),
    /// The log no longer matches its last anchor (or its keys): it is not anchored.
    #[error("the audit log does not verify at entry {}: {}", .0.seq, .0.reason)]
    Broken(Broken),
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

/// How the relay anchors the chain head outside the database.
#[derive(Debug, Clone)]
pub struct Anchoring {
    /// The keys: the current one signs the anchors; all of them verify the entries checked
    /// before anchoring.
    pub keys: AuditKeys,
    /// The append-only anchor file.
    pub file: PathBuf,
    /// How often.
    pub every: Duration,
}

/// The bus record of an anchor: CloudEvents binary mode on the audit topic, key `audit`, an id
/// derived from the anchored seq and link.
pub fn anchor_record(topics: &Topics, source: &str, anchor: &Anchor) -> OutboundRecord {
    OutboundRecord {
        topic: topics.audit.clone(),
        key: "audit".to_owned(),
        headers: vec![
            (cloudevents::SPECVERSION.into(), "1.0".into()),
            (
                cloudevents::ID.into(),
                EventId::derive(ANCHOR_TYPE, &[&anchor.seq.to_string(), &anchor.link]).to_string(),
            ),
            (cloudevents::TYPE.into(), ANCHOR_TYPE.into()),
            (cloudevents::SOURCE.into(), source.into()),
            (
                cloudevents::TIME.into(),
                anchor.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            ),
            (cloudevents::CONTENT_TYPE.into(), "application/json".into()),
        ],
        payload: anchor.to_line().into_bytes(),
    }
}

/// The anchor a record of the audit topic carries, if it is one.
pub fn anchor_of(record: &Record) -> Option<Anchor> {
    let is_anchor = record
        .headers
        .iter()
        .any(|(k, v)| k == cloudevents::TYPE && v == ANCHOR_TYPE);
    if !is_anchor {
        return None;
    }
    serde_json::from_slice(&record.payload).ok()
}

/// Reads every anchor on the audit topic, as a consumer of a group of its own that commits
/// nothing (so it leaves no offsets behind). Stops once the topic is drained, or after `wait`
/// when it holds nothing.
pub async fn anchors_from_bus(
    bus: &dyn EventBus,
    topics: &Topics,
    wait: Duration,
) -> Result<Vec<Anchor>, RelayError> {
    let group = format!("wacrm-audit-verify-{}", uuid::Uuid::new_v4().simple());
    let mut sub = bus
        .subscribe(&group, std::slice::from_ref(&topics.audit))
        .await
        .map_err(|e| RelayError::Bus(e.to_string()))?;
    let deadline = Instant::now() + wait;
    let mut anchors = Vec::new();
    let mut seen = false;
    let outcome = loop {
        let records = match sub.poll(1000, Duration::from_secs(1)).await {
            Ok(records) => records,
            Err(e) => break Err(RelayError::Bus(e.to_string())),
        };
        if records.is_empty() {
            // A Kafka member polls empty while it joins; once records came, empty means done.
            if seen || Instant::now() >= deadline {
                break Ok(());
            }
            continue;
        }
        seen = true;
        anchors.extend(records.iter().filter_map(anchor_of));
    };
    let closed = sub.close().await;
    outcome?;
    closed.map_err(|e| RelayError::Bus(e.to_string()))?;
    Ok(anchors)
}

/// Publishes what is pending, then anchors the head (see the module's documentation), as the
/// one instance relaying. `last` is the newest anchor this process knows; it becomes the one
/// written. The anchor written, if any.
pub async fn anchor_once(
    db: &Db,
    bus: &dyn EventBus,
    topics: &Topics,
    source: &str,
    anchoring: &Anchoring,
    last: &mut Option<Anchor>,
) -> Result<Option<Anchor>, RelayError> {
    let Some(key) = anchoring.keys.current() else {
        return Err(RelayError::Anchor(
            "no audit key: anchors cannot be signed".into(),
        ));
    };
    let mut outcome: Result<Option<Anchor>, RelayError> = Ok(None);
    singleton::exclusive(db, singleton::AUDIT_RELAY, || async {
        outcome = async {
            while relay_pass(db, bus, topics, source).await? == 500 {}
            let anchor = match audit::anchor_head(db, key, &anchoring.keys, last.as_ref()).await? {
                Ok(Some(anchor)) => anchor,
                Ok(None) => return Ok(None),
                Err(broken) => {
                    metrics::counter!("wacrm_audit_anchor_failures_total").increment(1);
                    return Err(RelayError::Broken(broken));
                }
            };
            let file = anchoring.file.clone();
            let line = anchor.clone();
            tokio::task::spawn_blocking(move || audit::append_anchor(&file, &line))
                .await
                .map_err(|e| RelayError::Anchor(e.to_string()))?
                .map_err(|e| RelayError::Anchor(e.to_string()))?;
            bus.publish(vec![anchor_record(topics, source, &anchor)])
                .await
                .map_err(|e| RelayError::Bus(e.to_string()))?;
            metrics::counter!("wacrm_audit_anchors_total").increment(1);
            *last = Some(anchor.clone());
            Ok(Some(anchor))
        }
        .await;
        Ok(())
    })
    .await?;
    outcome
}

/// The newest anchor in `file` that `keys` authenticate (none when the file is missing or
/// unreadable: the first anchor then checks the newest entries only).
fn newest_in_file(file: &std::path::Path, keys: &AuditKeys) -> Option<Anchor> {
    match audit::read_anchor_file(file) {
        Ok(Some(found)) => audit::newest_authentic(&found.anchors, keys).cloned(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "audit anchors unreadable; starting without the last one");
            None
        }
    }
}

/// Relays every `every` until `shutdown`, then once more so the last entries go out too; with
/// `anchoring`, anchors the head every `anchoring.every` and on the way out.
pub async fn run(
    db: Db,
    bus: Arc<dyn EventBus>,
    topics: Topics,
    source: String,
    every: Duration,
    anchoring: Option<Anchoring>,
    shutdown: CancellationToken,
) {
    let mut last = anchoring
        .as_ref()
        .and_then(|a| newest_in_file(&a.file, &a.keys));
    let mut next_anchor = anchoring.as_ref().map(|a| Instant::now() + a.every);
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
        if let (Some(anchoring), Some(due)) = (&anchoring, next_anchor) {
            if stopping || Instant::now() >= due {
                next_anchor = Some(Instant::now() + anchoring.every);
                match anchor_once(&db, bus.as_ref(), &topics, &source, anchoring, &mut last).await {
                    Ok(Some(anchor)) => {
                        tracing::debug!(seq = anchor.seq, "audit log anchored")
                    }
                    Ok(None) => {}
                    Err(RelayError::Broken(broken)) => tracing::error!(
                        seq = broken.seq,
                        reason = %broken.reason,
                        "the audit log does not match its last anchor: not anchoring it; run `wacrm audit verify`"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "anchoring the audit log failed; retrying")
                    }
                }
            }
        }
        if stopping {
            return;
        }
    }
}
