//! The `wacrm` command: `serve`, `migrate`, `keys`.

mod settings;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use wacrm_bus::runner::{ConsumerRunner, RunnerConfig};
use wacrm_store::keys::{self, NewKey, Role};
use wacrm_store::projection::{self, Projection};

use settings::Settings;

#[derive(Parser)]
#[command(
    name = "wacrm",
    version,
    about = "WhatsApp Business conversations into CRMs through an event bus"
)]
struct Cli {
    /// Configuration file (default: ./wacrm.toml if present).
    #[arg(long, global = true, env = "WACRM_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: webhooks, API, store projection.
    Serve,
    /// Apply database migrations.
    Migrate,
    /// Manage employees' API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (it is shown only this once).
    Create {
        /// The employee's name.
        #[arg(long)]
        name: String,
        /// admin, agent or auditor.
        #[arg(long)]
        role: String,
        /// Business numbers (phone number ids) the key may use; repeat for several. Default: all.
        #[arg(long = "number")]
        numbers: Vec<String>,
        /// Expiry, RFC 3339 (e.g. 2027-01-31T23:59:59Z).
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key id.
        id: String,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WACRM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let db = wacrm_store::connect(&settings.store).await?;
            wacrm_store::migrate(&db).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys { command } => keys_command(settings, command).await,
    }
}

async fn keys_command(settings: Settings, command: KeysCommand) -> anyhow::Result<()> {
    let db = wacrm_store::connect(&settings.store).await?;
    wacrm_store::migrate(&db).await?;
    match command {
        KeysCommand::Create {
            name,
            role,
            numbers,
            expires_at,
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("role must be admin, agent or auditor");
            };
            let (info, token) = keys::create(
                &db,
                NewKey {
                    name,
                    role,
                    scopes: None,
                    business_numbers: (!numbers.is_empty()).then_some(numbers),
                    expires_at,
                },
            )
            .await?;
            eprintln!(
                "created key {} for {} ({}); store it now, it is not shown again:",
                info.id,
                info.name,
                info.role.as_str()
            );
            println!("{token}");
        }
        KeysCommand::List => {
            for k in keys::list(&db).await? {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if k.expires_at.is_some_and(|e| e <= chrono::Utc::now()) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.name,
                    k.role.as_str(),
                    state,
                    k.business_numbers
                        .map(|n| n.join(","))
                        .unwrap_or_else(|| "*".into())
                );
            }
        }
        KeysCommand::Revoke { id } => {
            if !keys::revoke(&db, &id).await? {
                bail!("no key {id}");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    wacrm_server::metrics_endpoint::install();
    let secrets = settings.whatsapp.secrets();
    if !secrets.is_configured() {
        tracing::warn!("WACRM_WHATSAPP__APP_SECRET is not set: every webhook will be rejected (401) until it is");
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
        RunnerConfig::new(projection::GROUP),
        Projection::new(db.clone(), topics.clone()),
    );
    let projection_task = tokio::spawn(runner.run(subscription, shutdown.clone()));

    let state = Arc::new(wacrm_server::AppState {
        bus: bus.clone(),
        topics,
        db,
        secrets,
        verify_token: settings.whatsapp.verify_token.clone(),
        source: settings.server.event_source.clone(),
        publish_timeout: Duration::from_millis(settings.bus.publish_timeout_ms),
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
    let server = wacrm_server::serve(listener, app, shutdown.clone());
    let server_result = server.await;
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(30), projection_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "store projection stopped with an error"),
        Ok(Err(e)) => tracing::error!(error = %e, "store projection task failed"),
        Err(_) => tracing::warn!("store projection did not stop within 30 s"),
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
