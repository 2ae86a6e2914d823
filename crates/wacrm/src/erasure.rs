//! Erasing a person everywhere their data went (LGPD art. 18, VI; docs/privacy.md).
//!
//! [`Eraser::begin`] files an erasure (`wacrm_store::erasure`) with its steps: `store`, then
//! `dead_letters`, `bus` and one `crm:<connection>` per CRM connection. [`Eraser::run`] works
//! through the steps still pending, recording each as it settles, so a crash resumes where it
//! stopped: `wacrm erase` runs it at once; the service's erasure worker runs those the API
//! filed and any a crash left. A step that fails stays pending with the reason (never personal
//! data) and is tried again; a CRM without an erasure API leaves a manual step with the
//! instruction, which `GET /v1/erasures/{id}` and the CLI show.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use wacrm_bus::{BusErasure, EventBus, Topics};
use wacrm_core::contact::IdentityKey;
use wacrm_core::event::{ContactErased, Event};
use wacrm_crm::{ContactErasure, CrmAdapter, CrmError, Erasure as CrmErasure};
use wacrm_store::erasure::{self, CrmTrace, Erasure, Plan, Pseudonymiser, StepState};
use wacrm_store::Db;

use wacrm_store::erasure::step::{BUS, CRM_PREFIX, DEAD_LETTERS, STORE};

/// What an erasure reaches: the store, the bus (when this process may write it) and the CRM
/// connections.
pub struct Eraser {
    db: Db,
    bus: Option<Arc<dyn EventBus>>,
    topics: Topics,
    adapters: BTreeMap<String, Arc<dyn CrmAdapter>>,
    pseudonymiser: Pseudonymiser,
    source: String,
}

impl Eraser {
    /// An eraser over `db`; `bus` is `None` when another process holds it (the embedded bus of a
    /// running service): the bus step then waits for that service's worker.
    pub async fn new(
        db: Db,
        bus: Option<Arc<dyn EventBus>>,
        topics: Topics,
        adapters: BTreeMap<String, Arc<dyn CrmAdapter>>,
    ) -> anyhow::Result<Self> {
        let pseudonymiser = Pseudonymiser::load(&db)
            .await
            .context("loading the erasure secret")?;
        Ok(Eraser {
            db,
            bus,
            topics,
            adapters,
            pseudonymiser,
            source: "/wacrm".into(),
        })
    }

    /// Files the erasure of a prepared person ([`erasure::prepare`]), or returns the one already
    /// running for them: a step per configured connection.
    pub async fn begin(
        &self,
        prepared: erasure::Prepared,
        requested_by: &str,
    ) -> anyhow::Result<Erasure> {
        let connections: Vec<String> = self.adapters.keys().cloned().collect();
        Ok(erasure::file(&self.db, prepared, &connections, requested_by).await?)
    }

    /// Runs the erasure's pending steps in order; `progress` hears each step as it settles or
    /// fails. Returns the erasure as it stands (finished when every step settled).
    pub async fn run(
        &self,
        erasure: &Erasure,
        mut progress: impl FnMut(&str, &StepState),
    ) -> anyhow::Result<Erasure> {
        let Some(plan) = erasure.plan.clone() else {
            return Ok(erasure.clone());
        };
        let mut current = erasure.clone();
        let names: Vec<String> = ordered(current.steps.keys().cloned().collect());
        for name in names {
            let attempts = match current.steps.get(&name) {
                Some(StepState::Pending { attempts, .. }) => *attempts,
                _ => continue,
            };
            let state = match self.step(&name, &current.id, &plan).await {
                Ok(state) => state,
                Err(reason) => StepState::Pending {
                    attempts: attempts + 1,
                    last_error: Some(reason),
                },
            };
            progress(&name, &state);
            current = erasure::set_step(&self.db, &current.id, &name, state).await?;
        }
        if current.state == erasure::FINISHED {
            // A message the projection stored while the erasure ran (it read the erased list
            // before the store step committed) is caught by a last sweep.
            erasure::scrub_store(&self.db, &plan.subject, &self.pseudonymiser, plan.erased_at)
                .await?;
        }
        Ok(current)
    }

    /// One step; `Err` is a reason to try again later, in words without personal data.
    async fn step(&self, name: &str, id: &str, plan: &Plan) -> Result<StepState, String> {
        let done = |detail: String| StepState::Done {
            at: Utc::now(),
            detail,
        };
        match name {
            STORE => {
                let scrubbed = erasure::scrub_store(
                    &self.db,
                    &plan.subject,
                    &self.pseudonymiser,
                    plan.erased_at,
                )
                .await
                .map_err(|e| store_failure("store", &e))?;
                Ok(done(format!(
                    "{} messages, {} statuses, {} conversations, {} requests, {} identities, {} contacts, {} consent records, {} CRM rows removed",
                    scrubbed.messages,
                    scrubbed.statuses,
                    scrubbed.conversations,
                    scrubbed.requests,
                    scrubbed.identities,
                    scrubbed.contacts,
                    scrubbed.consent,
                    scrubbed.crm_rows
                )))
            }
            DEAD_LETTERS => {
                let count = erasure::scrub_dead_letters(&self.db, &plan.subject, plan.erased_at)
                    .await
                    .map_err(|e| store_failure("dead letters", &e))?;
                Ok(done(format!("{count} dead letters emptied")))
            }
            BUS => {
                let Some(bus) = &self.bus else {
                    return Err(
                        "the bus is held by the running service: its erasure worker finishes this step"
                            .into(),
                    );
                };
                let request = BusErasure {
                    needles: plan.subject.needles(),
                    contact_keys: plan
                        .subject
                        .keys
                        .iter()
                        .map(IdentityKey::contact_id)
                        .collect(),
                    contacts_topic: self.topics.contacts.clone(),
                };
                let erased = bus.erase(&request).await.map_err(|e| format!("bus: {e}"))?;
                let event = Event::contact_erased(ContactErased {
                    erasure_id: id.to_owned(),
                    contact_id: plan.subject.contact_id.clone(),
                    identity_ids: plan
                        .subject
                        .keys
                        .iter()
                        .map(IdentityKey::contact_id)
                        .collect(),
                    erased_at: plan.erased_at,
                });
                let record =
                    wacrm_bus::cloudevents::event_record(&self.topics, &self.source, &event)
                        .map_err(|e| format!("bus: {e}"))?;
                bus.publish(vec![record])
                    .await
                    .map_err(|e| format!("bus: {e}"))?;
                Ok(done(format!(
                    "{} records removed, {} tombstones published, contact.erased.v1 published",
                    erased.removed, erased.tombstones
                )))
            }
            crm if crm.starts_with(CRM_PREFIX) => {
                let connection = &crm[CRM_PREFIX.len()..];
                let Some(adapter) = self.adapters.get(connection) else {
                    return Err(format!("connection {connection} is not configured here"));
                };
                self.erase_in_crm(connection, adapter.as_ref(), plan).await
            }
            other => Err(format!("unknown step {other}")),
        }
    }

    /// Asks one CRM connection to erase every contact it holds for the person.
    async fn erase_in_crm(
        &self,
        connection: &str,
        adapter: &dyn CrmAdapter,
        plan: &Plan,
    ) -> Result<StepState, String> {
        let mut traces: Vec<CrmTrace> = plan
            .crm
            .iter()
            .filter(|t| t.connection == connection)
            .cloned()
            .collect();
        // Never synced (or linked by a person): the adapter may still find the contact by the
        // WhatsApp id.
        if traces.is_empty() {
            if let Some(primary) = plan.subject.primary() {
                traces.push(CrmTrace {
                    connection: connection.to_owned(),
                    contact_key: primary.to_string(),
                    crm_contact_id: None,
                    message_crm_ids: Vec::new(),
                });
            }
        }
        let mut erased = 0;
        let mut absent = 0;
        let mut manual = Vec::new();
        for trace in traces {
            let whatsapp_id = IdentityKey::from_parts(
                trace.contact_key.split_once(':').map_or("", |(k, _)| k),
                trace.contact_key.split_once(':').map_or("", |(_, v)| v),
            )
            .map(|key| match key {
                IdentityKey::Phone(phone) => phone.digits().to_owned(),
                other => other.value().to_owned(),
            })
            .unwrap_or_default();
            let request = ContactErasure {
                contact_key: trace.contact_key,
                crm_contact_id: trace.crm_contact_id,
                whatsapp_id,
                message_crm_ids: trace.message_crm_ids,
            };
            match adapter.erase_contact(&request).await {
                Ok(CrmErasure::Erased) => erased += 1,
                Ok(CrmErasure::NotFound) => absent += 1,
                Ok(CrmErasure::Manual(instruction)) => manual.push(instruction),
                Err(e) => return Err(crm_failure(connection, &e)),
            }
        }
        if !manual.is_empty() {
            return Ok(StepState::Manual {
                instruction: manual.join("; "),
            });
        }
        Ok(StepState::Done {
            at: Utc::now(),
            detail: format!("{erased} CRM contacts erased, {absent} already absent"),
        })
    }
}

/// A CRM failure in words for the erasure's status: its class, never the CRM's own text (which
/// may quote the person's data back).
fn crm_failure(connection: &str, e: &CrmError) -> String {
    let what = match e {
        CrmError::RateLimited { .. } => "rate limited",
        CrmError::QuotaExhausted { .. } => "daily quota used up",
        CrmError::Transient(_) => "transient failure",
        CrmError::Ambiguous(_) => "no answer (the delete may have been applied; asked again)",
        CrmError::Invalid(_) => "the CRM refused the request",
        CrmError::Fatal(_) => "the connection is unusable (credentials or configuration)",
    };
    format!("{connection}: {what}; tried again later")
}

/// A store failure in words: its class (a database error's text may quote values).
fn store_failure(step: &str, e: &wacrm_store::StoreError) -> String {
    match e.class() {
        wacrm_core::ErrorClass::Retry => {
            format!("{step}: the database is unavailable; tried again later")
        }
        _ => format!("{step}: the database refused the change; tried again later"),
    }
}

/// The steps in the order they run: store, dead letters, bus, then the CRMs by name.
fn ordered(mut names: Vec<String>) -> Vec<String> {
    let rank = |n: &str| match n {
        STORE => 0,
        DEAD_LETTERS => 1,
        BUS => 2,
        _ => 3,
    };
    names.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    names
}

/// How often the service's worker looks for erasures to run.
const WORKER_POLL: std::time::Duration = std::time::Duration::from_secs(2);
/// The longest a failing erasure waits before its next attempt.
const WORKER_MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(600);

/// The service's erasure worker: every two seconds runs the erasures still running — filed by
/// the API, or left by a crash, a CRM that was down, or a `wacrm erase` that could not reach
/// the bus — one instance at a time when several share PostgreSQL. An erasure whose steps
/// failed waits 2 s, 4 s, … up to ten minutes before its next attempt. Stops at `shutdown`
/// (between steps: a step cut short is run again, and every step is idempotent).
pub async fn worker(eraser: Arc<Eraser>, db: Db, shutdown: tokio_util::sync::CancellationToken) {
    let mut backoff: std::collections::HashMap<String, (std::time::Instant, u32)> =
        std::collections::HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(WORKER_POLL) => {}
        }
        let turn = wacrm_store::singleton::exclusive(
            &db,
            wacrm_store::singleton::ERASURE_WORKER,
            || async {
                let now = std::time::Instant::now();
                for filed in erasure::running(&db).await? {
                    if shutdown.is_cancelled() {
                        break;
                    }
                    if backoff.get(&filed.id).is_some_and(|(at, _)| *at > now) {
                        continue;
                    }
                    match eraser.run(&filed, |_, _| {}).await {
                        Ok(done) if done.state == erasure::FINISHED => {
                            backoff.remove(&filed.id);
                            tracing::info!(erasure = %done.id, "erasure finished");
                        }
                        Ok(pending) => {
                            let failures = backoff.get(&filed.id).map_or(0, |(_, n)| *n) + 1;
                            let wait = (WORKER_POLL * 2u32.saturating_pow(failures.min(10)))
                                .min(WORKER_MAX_BACKOFF);
                            backoff.insert(filed.id.clone(), (now + wait, failures));
                            tracing::warn!(erasure = %pending.id, retry_in = ?wait,
                                "erasure has steps left; trying again later");
                        }
                        Err(e) => {
                            tracing::error!(erasure = %filed.id, error = %e, "erasure failed")
                        }
                    }
                }
                Ok(())
            },
        )
        .await;
        if let Err(e) = turn {
            tracing::warn!(error = %e, "erasure worker: the store is unavailable");
        }
    }
}

/// The CRM adapters of every configured connection.
pub fn adapters_of(
    settings: &crate::Settings,
    registry: &wacrm_crm::Registry,
) -> anyhow::Result<BTreeMap<String, Arc<dyn CrmAdapter>>> {
    settings
        .crm
        .connections
        .keys()
        .map(|name| Ok((name.clone(), settings.crm.build(name, registry)?.adapter)))
        .collect()
}
