//! The `wacrm` command: `serve`, `migrate`, `keys`, `doctor`, `dead-letters`.

mod audit;
mod crm;
mod dead_letters;
mod doctor;
mod keys;
mod replay;
mod serve;
mod settings;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    /// Run the service: webhooks, API, store projection, CRM sync.
    Serve,
    /// Apply database migrations.
    Migrate,
    /// Manage employees' API keys.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Check the configuration, the store and the bus (and Kafka topics).
    Doctor {
        /// Create missing Kafka topics with the expected partitions and cleanup policy.
        #[arg(long)]
        create_topics: bool,
    },
    /// Re-drive a CRM connection from a point in time (idempotent). With the embedded bus,
    /// stop `wacrm serve` first.
    Replay {
        /// The connection.
        #[arg(long)]
        connection: String,
        /// From this WhatsApp time, RFC 3339 (e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        from: chrono::DateTime<chrono::Utc>,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// CRM connections.
    Crm {
        #[command(subcommand)]
        command: crm::CrmCommand,
    },
    /// List and re-drive dead letters.
    DeadLetters {
        #[command(subcommand)]
        command: dead_letters::DeadLettersCommand,
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
        Command::Serve => serve::run(settings).await,
        Command::Migrate => {
            let db = wacrm_store::connect(&settings.store).await?;
            wacrm_store::migrate(&db).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys { command } => keys::run(settings, command).await,
        Command::Doctor { create_topics } => doctor::run(settings, create_topics).await,
        Command::DeadLetters { command } => dead_letters::run(settings, command).await,
        Command::Crm { command } => crm::run(settings, command).await,
        Command::Audit { command } => audit::run(settings, command).await,
        Command::Replay { connection, from } => replay::run(settings, connection, from).await,
    }
}
