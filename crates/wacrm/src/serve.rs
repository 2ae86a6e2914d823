//! `wacrm serve`: webhooks, API, the store projection, CRM sync, the sender and the audit relay,
//! until SIGTERM / Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wacrm_bus::runner::ConsumerRunner;
use wacrm_store::projection::{self, Projection};
use wacrm_sync::SyncEngine;

use crate::settings::Settings;

/// How long shutdown waits for consumers and the bus.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);

pub async fn run(settings: Settings) -> anyhow::Result<()> {
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
    let bus = wacrm_bus::open(&settings.bus)
        .await
        .context("opening the event bus")?;
    let topics = settings.bus.topics();
    let shutdown = CancellationToken::new();

    let subscription = bus
        .subscribe(projection::GROUP, &Projection::topics(&topics))
        .await
        .context("subscribing the store projection")?;
    let runner = ConsumerRunner::new(
        bus.clone(),
        topics.clone(),
        Projection::runner_config(Duration::from_millis(settings.store.projection_linger_ms)),
        Projection::new(db.clone(), topics.clone()),
    );
    let projection_task = tokio::spawn(runner.run_on_own_thread(subscription, shutdown.clone()));

    let mut sync_tasks = Vec::new();
    for name in settings.crm.connections.keys() {
        let (config, adapter) = settings.crm.build(name)?;
        let engine = SyncEngine::new(config, adapter, db.clone(), shutdown.clone());
        let runner_config = engine.runner_config();
        let subscription = bus
            .subscribe(&runner_config.group, &SyncEngine::topics(&topics))
            .await
            .with_context(|| format!("subscribing CRM connection {name}"))?;
        let runner = ConsumerRunner::new(bus.clone(), topics.clone(), runner_config, engine);
        tracing::info!(connection = %name, "CRM sync started");
        sync_tasks.push((
            name.clone(),
            tokio::spawn(runner.run(subscription, shutdown.clone())),
        ));
    }

    let send_health = Arc::new(wacrm_whatsapp::SendHealth::default());
    let sender_task = if settings.whatsapp.can_send() {
        let sender = wacrm_sender::Sender::new(
            settings.whatsapp.clone(),
            db.clone(),
            bus.clone(),
            topics.clone(),
            settings.server.event_source.clone(),
            send_health.clone(),
            shutdown.clone(),
        )
        .context("configuring the sender")?;
        let subscription = bus
            .subscribe(wacrm_sender::GROUP, &wacrm_sender::Sender::topics(&topics))
            .await
            .context("subscribing the sender")?;
        let runner = ConsumerRunner::new(
            bus.clone(),
            topics.clone(),
            wacrm_sender::Sender::runner_config(),
            sender,
        );
        tracing::info!("sender started");
        Some(tokio::spawn(runner.run(subscription, shutdown.clone())))
    } else {
        tracing::info!(
            "WACRM_WHATSAPP__ACCESS_TOKEN is not set: the send API answers 503 until it is"
        );
        None
    };
    let audit_relay = tokio::spawn(wacrm_server::audit_relay::run(
        db.clone(),
        bus.clone(),
        topics.clone(),
        settings.server.event_source.clone(),
        Duration::from_millis(500),
        shutdown.clone(),
    ));

    let state = Arc::new(wacrm_server::AppState {
        bus: bus.clone(),
        topics,
        audit: Arc::new(wacrm_store::audit::AuditLog::new(db.clone())),
        db,
        secrets,
        verify_token: settings.whatsapp.verify_token.clone(),
        source: settings.server.event_source.clone(),
        // The bus gives up after publish_timeout_ms itself; this is the safety net above it.
        publish_timeout: Duration::from_millis(settings.bus.publish_timeout_ms)
            + Duration::from_secs(2),
        whatsapp: Arc::new(settings.whatsapp.clone()),
        send_health,
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
    for (name, task) in sync_tasks {
        match tokio::time::timeout(SHUTDOWN_BOUND, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::error!(connection = %name, error = %e, "CRM sync stopped with an error")
            }
            Ok(Err(e)) => tracing::error!(connection = %name, error = %e, "CRM sync task failed"),
            Err(_) => {
                tracing::warn!(connection = %name, "CRM sync did not stop within {SHUTDOWN_BOUND:?}")
            }
        }
    }
    if let Some(task) = sender_task {
        match tokio::time::timeout(SHUTDOWN_BOUND, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "sender stopped with an error"),
            Ok(Err(e)) => tracing::error!(error = %e, "sender task failed"),
            Err(_) => tracing::warn!("sender did not stop within {SHUTDOWN_BOUND:?}"),
        }
    }
    if tokio::time::timeout(SHUTDOWN_BOUND, audit_relay)
        .await
        .is_err()
    {
        tracing::warn!("audit relay did not stop within {SHUTDOWN_BOUND:?}");
    }
    match tokio::time::timeout(SHUTDOWN_BOUND, projection_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "store projection stopped with an error"),
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
