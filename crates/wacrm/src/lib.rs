//! wacrm as a library: every command of the `wacrm` binary, for a binary of your own.
//!
//! The `wacrm` binary is `wacrm::main_with(wacrm::adapters())`. An integrator with their own CRM
//! adapter builds the same service with their kind added to the registry, without a fork:
//!
//! ```no_run
//! # struct MyCrmKind;
//! # impl wacrm_crm::AdapterKind for MyCrmKind {
//! #     fn kind(&self) -> &'static str { "mycrm" }
//! #     fn build(&self, _: &str, _: &mut dyn erased_serde::Deserializer<'static>)
//! #         -> Result<wacrm_crm::Built, wacrm_crm::CrmError> {
//! #         Err(wacrm_crm::CrmError::Fatal("see examples/custom_adapter.rs".into()))
//! #     }
//! # }
//! fn main() -> anyhow::Result<()> {
//!     wacrm::main_with(wacrm::adapters().with(MyCrmKind))
//! }
//! ```
//!
//! `serve`, `migrate`, `keys`, `doctor`, `replay`, `crm setup`, `audit`, `dead-letters` and `health` then
//! know the `mycrm` kind (`[crm.connections.<name>] kind = "mycrm"`). `examples/custom_adapter.rs`
//! is such a binary. This crate is the application, so its entry points return `anyhow` errors,
//! as a `main` does.

mod accounts;
mod audit;
mod crm;
mod dead_letters;
mod doctor;
mod erase;
pub mod erasure;
mod export;
mod health;
mod instance;
mod keys;
mod principal_args;
mod purge;
mod replay;
mod serve;
pub mod settings;
mod shared;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use accounts::AccountsCommand;
pub use audit::AuditCommand;
pub use crm::CrmCommand;
pub use dead_letters::DeadLettersCommand;
pub use export::ExportArgs;
pub use keys::KeysCommand;
pub use settings::{adapters, Settings};
pub use wacrm_crm::Registry;

/// The command line.
#[derive(Parser)]
#[command(
    name = "wacrm",
    version,
    about = "WhatsApp Business conversations into CRMs through an event bus"
)]
pub struct Cli {
    /// Configuration file (default: ./wacrm.toml if present).
    #[arg(long, global = true, env = "WACRM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written (to stderr).
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Human,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the service: webhooks, API, store projection, CRM sync.
    Serve,
    /// Apply database migrations.
    Migrate,
    /// Manage the console's accounts: the first admin, a lost phone, a person who left.
    Accounts {
        /// The subcommand.
        #[command(subcommand)]
        command: accounts::AccountsCommand,
    },
    /// Manage employees' API keys.
    Keys {
        /// The subcommand.
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
        /// The subcommand.
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// CRM connections.
    Crm {
        /// The subcommand.
        #[command(subcommand)]
        command: crm::CrmCommand,
    },
    /// Exit 0 when the local `wacrm serve` answers ready (`/readyz`), 1 otherwise: a
    /// container's HEALTHCHECK.
    Health,
    /// List and re-drive dead letters.
    DeadLetters {
        /// The subcommand.
        #[command(subcommand)]
        command: dead_letters::DeadLettersCommand,
    },
    /// Export everything wacrm holds on one contact as JSON (a data subject's request for
    /// access); audited as the command line's user.
    Export(export::ExportArgs),
    /// Erase a contact everywhere their data went: store, dead letters, bus, every CRM
    /// connection (LGPD erasure; docs/privacy.md). Resumable; audited.
    Erase(erase::EraseArgs),
    /// Remove what is past its retention (`[retention]`), class by class, and print a table
    /// of counts; `--dry-run` counts without changing anything. Audited. With the embedded
    /// bus, its log is trimmed only while `wacrm serve` is stopped (serve's purge job trims it).
    Purge(purge::PurgeArgs),
}

/// Logs to stderr in `format`, filtered by `WACRM_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
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

/// Parses the command line, and runs it with the adapter kinds of `registry`: the whole of a
/// wacrm binary's `main`.
pub fn main_with(registry: Registry) -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli, registry))
}

/// Runs a parsed command line with the adapter kinds of `registry` (logging is the caller's).
pub async fn run(cli: Cli, registry: Registry) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    // Every command's audit entries are signed with the audit key (`serve` also creates it;
    // the container's health check writes none).
    if !matches!(cli.command, Command::Serve | Command::Health) {
        audit::install_for_command(&settings);
    }
    match cli.command {
        Command::Serve => serve::run(settings, registry).await,
        Command::Migrate => {
            let db = wacrm_store::connect(&settings.store).await?;
            wacrm_store::migrate(&db).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys { command } => keys::run(settings, command).await,
        Command::Accounts { command } => accounts::run(settings, command).await,
        Command::Doctor { create_topics } => doctor::run(settings, &registry, create_topics).await,
        Command::DeadLetters { command } => dead_letters::run(settings, command).await,
        Command::Export(args) => export::run(settings, args).await,
        Command::Erase(args) => erase::run(settings, &registry, args).await,
        Command::Purge(args) => purge::run(settings, args).await,
        Command::Crm { command } => crm::run(settings, &registry, command).await,
        Command::Audit { command } => audit::run(settings, command).await,
        Command::Health => health::run(&settings.server.listen).await,
        Command::Replay { connection, from } => {
            replay::run(settings, &registry, connection, from).await
        }
    }
}
