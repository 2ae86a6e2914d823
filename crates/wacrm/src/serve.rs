//! `wacrm serve`: webhooks, API, the store projection, CRM sync, the sender and the audit relay,
//! until SIGTERM / Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wacrm_bus::runner::{ConsumerRunner, RunnerError};
use wacrm_bus::supervise::{supervise, ConsumerRegistry, RestartPolicy};
use wacrm_bus::{EventBus, Subscription};
use wacrm_store::projection::{self, Projection};
use wacrm_sync::SyncEngine;

use crate::settings::Settings;

/// How long shutdown waits for consumers and the bus.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);

pub async fn run(settings: Settings, adapters: wacrm_crm::Registry) -> anyhow::Result<()> {
    wacrm_server::metrics_endpoint::install();
    let secrets = settings.whatsapp.secrets();
    if !secrets.is_configured() {
        tracing::warn!(
            "WACRM_WHATSAPP__APP_SECRET is not set: every webhook will be rejected (401) until it is"
        );
    }
    let db = wacrm_store::connect(&settings.store)
        .await
        .context("connecting to the store")?;
    wacrm_store::migrate(&db)
        .await
        .context("migrating the store")?;
    // Instances sharing a PostgreSQL store share every CRM connection's rate limits and rotating
    // refresh tokens (the sender shares its own limits the same way).
    crate::shared::install(&db);
    // The audit key (created on the first start when none is configured), installed for every
    // audit entry of the process, and how the relay anchors the log.
    let anchoring = crate::audit::for_serve(&settings, &db).await?;
    let bus = wacrm_bus::open(&settings.bus)
        .await
        .context("opening the event bus")?;
    let topics = settings.bus.topics();
    let shutdown = CancellationToken::new();
    // Claims of sends carry this instance's id; it stays alive until the sender has stopped
    // (calls on their way finish after the shutdown signal), then goes.
    let instance = crate::instance::Instance::start(&db)
        .await
        .context("registering this instance in the store")?;

    // Every consumer runs under a supervisor: a consumer that stops (a fatal error, a lost
    // bus, a panic) is logged at ERROR at once, shown down in `/v1/status` and
    // `wacrm_consumer_up`, and restarted with backoff.
    let consumers = Arc::new(ConsumerRegistry::default());
    let policy = RestartPolicy::default();

    let projection_task = {
        let (bus, topics, db, registry) =
            (bus.clone(), topics.clone(), db.clone(), consumers.clone());
        let linger = Duration::from_millis(settings.store.projection_linger_ms);
        let stop = shutdown.clone();
        tokio::spawn(supervise(
            projection::GROUP.to_owned(),
            consumers.clone(),
            policy,
            shutdown.clone(),
            move || {
                let (bus, topics, db, registry, stop) = (
                    bus.clone(),
                    topics.clone(),
                    db.clone(),
                    registry.clone(),
                    stop.clone(),
                );
                async move {
                    let subscription =
                        subscribe(&bus, projection::GROUP, &Projection::topics(&topics)).await?;
                    ConsumerRunner::new(
                        bus.clone(),
                        topics.clone(),
                        Projection::runner_config(linger),
                        Projection::new(db, topics),
                    )
                    .with_registry(registry)
                    .run_on_own_thread(subscription, stop)
                    .await
                }
            },
        ))
    };

    let mut sync_tasks = Vec::new();
    let mut crm_connections = Vec::new();
    for (name, connection) in &settings.crm.connections {
        // Built once here so a misconfigured connection stops the start, not a restart loop.
        let group = settings.crm.build(name, &adapters)?.config.group();
        crm_connections.push(wacrm_server::status::CrmConnectionInfo {
            name: name.clone(),
            kind: connection.kind(),
            group: group.clone(),
        });
        let (bus, topics, db, registry, crm, adapters) = (
            bus.clone(),
            topics.clone(),
            db.clone(),
            consumers.clone(),
            settings.crm.clone(),
            adapters.clone(),
        );
        let (name, stop) = (name.clone(), shutdown.clone());
        tracing::info!(connection = %name, "CRM sync started");
        sync_tasks.push((
            name.clone(),
            tokio::spawn(supervise(
                group.clone(),
                consumers.clone(),
                policy,
                shutdown.clone(),
                move || {
                    let (bus, topics, db, registry, crm, adapters, name, stop, group) = (
                        bus.clone(),
                        topics.clone(),
                        db.clone(),
                        registry.clone(),
                        crm.clone(),
                        adapters.clone(),
                        name.clone(),
                        stop.clone(),
                        group.clone(),
                    );
                    async move {
                        let built =
                            crm.build(&name, &adapters)
                                .map_err(|e| RunnerError::Fatal {
                                    group: group.clone(),
                                    reason: format!("{e:#}"),
                                })?;
                        let engine = SyncEngine::new(built.config, built.adapter, db);
                        let runner_config = engine.runner_config();
                        let subscription =
                            subscribe(&bus, &group, &SyncEngine::topics(&topics)).await?;
                        ConsumerRunner::new(bus.clone(), topics, runner_config, engine)
                            .with_registry(registry)
                            .run(subscription, stop)
                            .await
                    }
                },
            )),
        ));
    }

    let send_health = Arc::new(wacrm_whatsapp::SendHealth::default());
    let sender_task = if settings.whatsapp.can_send() {
        // Checked once here: a configuration the sender refuses stops the start.
        wacrm_whatsapp::GraphClient::new(settings.whatsapp.clone())
            .context("configuring the sender")?;
        let (bus, topics, db, registry, health) = (
            bus.clone(),
            topics.clone(),
            db.clone(),
            consumers.clone(),
            send_health.clone(),
        );
        let (whatsapp, source, stop, instance_id) = (
            settings.whatsapp.clone(),
            settings.server.event_source.clone(),
            shutdown.clone(),
            instance.id().to_owned(),
        );
        tracing::info!("sender started");
        Some(tokio::spawn(supervise(
            wacrm_sender::GROUP.to_owned(),
            consumers.clone(),
            policy,
            shutdown.clone(),
            move || {
                let (bus, topics, db, registry, health, whatsapp, source, stop, instance_id) = (
                    bus.clone(),
                    topics.clone(),
                    db.clone(),
                    registry.clone(),
                    health.clone(),
                    whatsapp.clone(),
                    source.clone(),
                    stop.clone(),
                    instance_id.clone(),
                );
                async move {
                    let sender = wacrm_sender::Sender::new(
                        whatsapp,
                        db,
                        bus.clone(),
                        topics.clone(),
                        source,
                        health,
                        stop.clone(),
                    )
                    .map_err(|e| RunnerError::Fatal {
                        group: wacrm_sender::GROUP.to_owned(),
                        reason: e.to_string(),
                    })?
                    .with_instance(instance_id);
                    let subscription = subscribe(
                        &bus,
                        wacrm_sender::GROUP,
                        &wacrm_sender::Sender::topics(&topics),
                    )
                    .await?;
                    ConsumerRunner::new(
                        bus.clone(),
                        topics,
                        wacrm_sender::Sender::runner_config(),
                        sender,
                    )
                    .with_registry(registry)
                    .run(subscription, stop)
                    .await
                }
            },
        )))
    } else {
        tracing::info!(
            "WACRM_WHATSAPP__ACCESS_TOKEN is not set: the send API answers 503 until it is"
        );
        None
    };
    // Retention: what is past its age goes, every `[retention] purge_every_secs`, on one
    // instance at a time; a shutdown stops it between two batches.
    let purge_job = tokio::spawn(crate::purge::job(
        db.clone(),
        bus.clone(),
        settings.retention.clone(),
        shutdown.clone(),
    ));
    let audit_relay = tokio::spawn(wacrm_server::audit_relay::run(
        db.clone(),
        bus.clone(),
        topics.clone(),
        settings.server.event_source.clone(),
        Duration::from_millis(500),
        Some(anchoring),
        shutdown.clone(),
    ));

    let erasure_worker = {
        let adapters = crate::erasure::adapters_of(&settings, &adapters)?;
        let eraser =
            crate::erasure::Eraser::new(db.clone(), Some(bus.clone()), topics.clone(), adapters)
                .await?;
        tokio::spawn(crate::erasure::worker(
            Arc::new(eraser),
            db.clone(),
            shutdown.clone(),
        ))
    };

    let state = Arc::new(wacrm_server::AppState {
        bus: bus.clone(),
        topics,
        audit: Arc::new(wacrm_store::audit::AuditLog::new(db.clone())),
        db: db.clone(),
        secrets,
        verify_token: settings.whatsapp.verify_token.clone(),
        source: settings.server.event_source.clone(),
        // The bus gives up after publish_timeout_ms itself; this is the safety net above it.
        publish_timeout: Duration::from_millis(settings.bus.publish_timeout_ms)
            + Duration::from_secs(2),
        whatsapp: Arc::new(settings.whatsapp.clone()),
        send_health,
        consumers,
        crm_connections,
    });
    let app = wacrm_server::router(state, &settings.server);
    let listener = tokio::net::TcpListener::bind(&settings.server.listen)
        .await
        .with_context(|| format!("listening on {}", settings.server.listen))?;
    tracing::info!(listen = %listener.local_addr()?, bus = bus.backend(), "wacrm is serving");

    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: no new requests; finishing in-flight work");
        signal_token.cancel();
    });
    let server_result =
        wacrm_server::serve(listener, app, &settings.server, shutdown.clone()).await;
    shutdown.cancel();
    // The supervisors log a consumer's own error; here only a bound that ran out is news.
    for (name, task) in sync_tasks {
        match tokio::time::timeout(SHUTDOWN_BOUND, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(connection = %name, error = %e, "CRM sync task failed"),
            Err(_) => {
                tracing::warn!(connection = %name, "CRM sync did not stop within {SHUTDOWN_BOUND:?}")
            }
        }
    }
    if let Some(task) = sender_task {
        match tokio::time::timeout(SHUTDOWN_BOUND, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "sender task failed"),
            Err(_) => tracing::warn!("sender did not stop within {SHUTDOWN_BOUND:?}"),
        }
    }
    instance.retire(&db).await;
    if tokio::time::timeout(SHUTDOWN_BOUND, audit_relay)
        .await
        .is_err()
    {
        tracing::warn!("audit relay did not stop within {SHUTDOWN_BOUND:?}");
    }
    if tokio::time::timeout(SHUTDOWN_BOUND, purge_job)
        .await
        .is_err()
    {
        tracing::warn!("retention purge did not stop within {SHUTDOWN_BOUND:?}");
    }
    if tokio::time::timeout(SHUTDOWN_BOUND, erasure_worker)
        .await
        .is_err()
    {
        tracing::warn!("erasure worker did not stop within {SHUTDOWN_BOUND:?}");
    }
    match tokio::time::timeout(SHUTDOWN_BOUND, projection_task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "store projection task failed"),
        Err(_) => tracing::warn!("store projection did not stop within {SHUTDOWN_BOUND:?}"),
    }
    if let Err(e) = bus.close(SHUTDOWN_BOUND).await {
        tracing::warn!(error = %e, "event bus did not flush cleanly");
    }
    server_result.context("HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Joins a consumer group; a bus that refuses is a stop the supervisor retries.
async fn subscribe(
    bus: &Arc<dyn EventBus>,
    group: &str,
    topics: &[String],
) -> Result<Box<dyn Subscription>, RunnerError> {
    bus.subscribe(group, topics)
        .await
        .map_err(|source| RunnerError::Bus {
            group: group.to_owned(),
            source,
        })
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
