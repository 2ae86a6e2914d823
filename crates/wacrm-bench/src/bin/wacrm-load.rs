//! `wacrm-load`: the load generator. See docs/performance.md for the runs and their numbers.
//!
//! - `ingest`: signed webhooks at a fixed rate (open loop) or concurrency against a `wacrm serve`
//!   it starts (embedded or Kafka bus), and, with `--baseline`, against a minimal hyper server in
//!   the same run; requests/s, messages/s, latency percentiles, errors, the server's RSS and CPU,
//!   and wacrm's throughput as a share of the baseline's.
//! - `e2e`: webhooks → bus → sync engine → a HubSpot fake with a latency and a rate limit;
//!   webhook-to-CRM latency percentiles, CRM calls per 1,000 messages, synced messages/s, and
//!   whether the CRM's limit was ever exceeded. `--crm pipedrive`: the same through the
//!   Pipedrive fake (its 2-second burst limit and token budget): calls and tokens per 1,000
//!   messages, duplicates, and whether the limit was ever exceeded. `--crm salesforce`,
//!   `rdstation`, `zoho`, `kommo`: the same through those CRMs' fakes (one generic path,
//!   `E2eFake`): messages held, held twice, calls per 1,000 messages, the busiest window
//!   against the CRM's documented limit, and requests off the spec.
//! - `drain`: a backlog on Kafka worked off by wacrm's consumer (subscription + runner, a no-op
//!   handler) and by a plain librdkafka consumer, interleaved over rounds against one broker
//!   (`--brokers`, or a tansu it starts); records/s of each, the ratio and its spread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;
use wacrm_bench::driver::{drive, Pace, Pool, Report};
use wacrm_bench::meter::Meter;
use wacrm_bench::payloads::{Generator, Mix};
use wacrm_bench::{baseline, procstat};

const SECRET: &str = "load-secret";

#[derive(Parser)]
#[command(name = "wacrm-load", about = "Load generator and benchmarks for wacrm")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum MixArg {
    Text,
    All,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum BusArg {
    Embedded,
    Kafka,
}

#[derive(clap::Args, Clone)]
struct Server {
    /// The wacrm binary (default: `wacrm` beside this one, i.e. target/release/wacrm).
    #[arg(long)]
    wacrm: Option<PathBuf>,
    /// The bus backend of the started service.
    #[arg(long, value_enum, default_value = "embedded")]
    bus: BusArg,
    /// Kafka bootstrap servers (with `--bus kafka`).
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
    /// Extra environment for the service, `KEY=VALUE` (repeatable).
    #[arg(long = "env")]
    env: Vec<String>,
    /// Drive an already running service on this loopback port instead of starting one (for
    /// profiling it under perf or valgrind); `--pid` gives its process for RSS and CPU.
    #[arg(long)]
    port: Option<u16>,
    /// The running service's process id (with `--port`).
    #[arg(long)]
    pid: Option<u32>,
    /// A key with the `metrics:read` scope for the running service's `/metrics` (with
    /// `--port`; a started service gets one of its own). Without it the store's progress is
    /// not reported.
    #[arg(long, env = "WACRM_LOAD_METRICS_KEY")]
    metrics_key: Option<String>,
    /// Services to start, sharing one broker and one PostgreSQL database (above 1: `--bus
    /// kafka` and `--postgres`); requests go to them in turn, as a load balancer would spread
    /// them. Their CPU is summed.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// A PostgreSQL server whose user may create databases: each run's services share a new
    /// database on it. Without it a service keeps its store in a SQLite file of its own.
    #[arg(long, env = "WACRM_LOAD_POSTGRES_URL")]
    postgres: Option<String>,
    /// The broker's process id (with `--bus kafka`), to report its CPU beside wacrm's: on one
    /// machine the broker shares the cores with the services.
    #[arg(long)]
    broker_pid: Option<u32>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Webhook ingest: throughput, latency, memory, CPU.
    Ingest {
        #[command(flatten)]
        server: Server,
        /// Open loop: requests per second.
        #[arg(long, conflicts_with = "concurrency")]
        rate: Option<f64>,
        /// Closed loop: requests in flight.
        #[arg(long)]
        concurrency: Option<usize>,
        /// Seconds of load.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Seconds of warm-up load before measuring.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// Updates per webhook (1…1000).
        #[arg(long, default_value_t = 1)]
        updates: usize,
        /// What the webhooks hold.
        #[arg(long, value_enum, default_value = "text")]
        mix: MixArg,
        /// Distinct contacts.
        #[arg(long, default_value_t = 10_000)]
        contacts: usize,
        /// Distinct business numbers.
        #[arg(long, default_value_t = 5)]
        numbers: usize,
        /// Also measure the minimal hyper server with the same load.
        #[arg(long)]
        baseline: bool,
        /// Only the baseline (no wacrm).
        #[arg(long)]
        baseline_only: bool,
        /// Runs, each with a fresh service (and baseline): prints every run, then the spread
        /// (this machine's numbers vary by ±10 % and more from run to run).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// Webhooks → bus → CRM sync → a CRM fake.
    E2e {
        #[command(flatten)]
        server: Server,
        /// The CRM: `hubspot` (limit per 10 s, latency), `pipedrive` (limit per 2 s),
        /// `salesforce` (concurrent requests), `rdstation` (requests per minute), `zoho`
        /// (concurrent requests) or `kommo` (requests per second).
        #[arg(long, value_enum, default_value_t = Crm::Hubspot)]
        crm: Crm,
        /// Messages per second sent.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Messages in all.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Distinct contacts.
        #[arg(long, default_value_t = 100)]
        contacts: usize,
        /// The fake CRM's latency per request, ms (HubSpot only).
        #[arg(long, default_value_t = 50)]
        crm_latency_ms: u64,
        /// The fake CRM's limit: per rolling 10 s for HubSpot (100, or 190 on higher tiers;
        /// default 190), per rolling 2 s for Pipedrive (Lite 20 … Ultimate 120; default 20),
        /// concurrent requests for Salesforce (25 per org; default 25, the fake enforces it)
        /// and Zoho (5 on Free … 25 on Ultimate; default 5, measured by a proxy), per rolling
        /// minute for RD Station (120; default 120) and per rolling second for Kommo (7;
        /// default 7), which their fakes enforce and the connection is configured with. RD
        /// Station at 120 a minute takes minutes: raise `--timeout` for runs of more than a
        /// few hundred calls.
        #[arg(long)]
        crm_limit: Option<u32>,
        /// Longest wait for the CRM to catch up, seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Also report latency without the first seconds' messages (the contacts' first
        /// search and link, bounded by the CRM's search limit).
        #[arg(long, default_value_t = 5)]
        steady_after: u64,
    },
    /// A Kafka backlog drained by wacrm's consumer and by plain librdkafka, interleaved.
    Drain(DrainArgs),
    /// (internal) the minimal hyper server.
    BaselineServer {
        /// Where to listen.
        #[arg(long)]
        listen: SocketAddr,
    },
}

#[derive(clap::Args)]
struct DrainArgs {
    /// Kafka bootstrap servers; without it a tansu (SQLite storage) is started in a temporary
    /// directory for the run.
    #[arg(long)]
    brokers: Option<String>,
    /// Records in each consumer group's backlog.
    #[arg(long, default_value_t = 10_000)]
    records: usize,
    /// Rounds, each measuring both consumers (which goes first alternates).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Partitions of each backlog's topic (default: wacrm's, `bus.kafka.partitions`).
    #[arg(long)]
    partitions: Option<i32>,
    /// Bytes of each record's payload.
    #[arg(long, default_value_t = 700)]
    payload_bytes: usize,
    /// Most records per batch for both consumers (default: the runner's).
    #[arg(long)]
    max_batch: Option<usize>,
    /// An extra librdkafka property for both consumers, `KEY=VALUE` (repeatable).
    #[arg(long = "property")]
    properties: Vec<String>,
    /// Longest a consumer may take to drain its backlog, seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// With the started tansu: index its `header` table by record first. tansu 0.6 reads a
    /// fetched record's headers by scanning every header it holds, which bounds both consumers
    /// well below what they can do; with the index the run measures the clients.
    #[arg(long, conflicts_with = "brokers")]
    tansu_header_index: bool,
}

async fn drain(args: DrainArgs) -> anyhow::Result<()> {
    use wacrm_bench::drain::{run, summarize, DrainOptions};
    let defaults = DrainOptions::default();
    let mut properties = Vec::new();
    for kv in &args.properties {
        let (k, v) = kv.split_once('=').context("--property wants KEY=VALUE")?;
        properties.push((k.to_owned(), v.to_owned()));
    }
    let tansu = match &args.brokers {
        Some(_) => None,
        None if args.tansu_header_index => {
            Some(tokio::task::spawn_blocking(wacrm_bench::tansu::Tansu::start_indexed).await??)
        }
        None => Some(tokio::task::spawn_blocking(wacrm_bench::tansu::Tansu::start).await??),
    };
    let brokers = match (&args.brokers, &tansu) {
        (Some(b), _) => b.clone(),
        (None, Some(t)) => t.bootstrap(),
        (None, None) => bail!("no broker"),
    };
    let options = DrainOptions {
        brokers,
        records: args.records.max(1),
        rounds: args.rounds.max(1),
        partitions: args.partitions.unwrap_or(defaults.partitions).max(1),
        payload_bytes: args.payload_bytes,
        max_batch: args.max_batch.unwrap_or(defaults.max_batch).max(1),
        properties,
        timeout: Duration::from_secs(args.timeout),
    };
    println!(
        "drain: {} records per group, {} partitions, {}-byte payloads, batches of up to {}, {} rounds, broker {}{}",
        options.records,
        options.partitions,
        options.payload_bytes,
        options.max_batch,
        options.rounds,
        options.brokers,
        match (&tansu, args.tansu_header_index) {
            (None, _) => "",
            (Some(_), false) => " (tansu started for this run, SQLite storage)",
            (Some(_), true) => " (tansu started for this run, SQLite storage, headers indexed)",
        }
    );
    if !options.properties.is_empty() {
        println!("consumer properties: {:?}", options.properties);
    }
    let rounds = run(&options).await?;
    summarize(&rounds);
    Ok(())
}

/// The CRM fake `e2e` syncs to.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Crm {
    Hubspot,
    Pipedrive,
    Salesforce,
    #[value(name = "rdstation")]
    RdStation,
    Zoho,
    Kommo,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Spawned {
    child: Option<Child>,
    pid: u32,
    port: u16,
    /// A key that may read the service's `/metrics`.
    metrics_key: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wacrm_path(server: &Server) -> anyhow::Result<PathBuf> {
    match &server.wacrm {
        // The service starts in its own temporary directory: a relative path would miss.
        Some(p) => Ok(std::path::absolute(p)?),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("no directory beside this binary")?
            .join("wacrm")),
    }
}

/// What the services of one run share: the store (a PostgreSQL database, or each its SQLite
/// file) and the topic prefix (one deployment on the broker).
struct Shared {
    store_url: Option<String>,
    topic_prefix: String,
}

impl Shared {
    /// A new deployment: a fresh database on `--postgres` when given, and topics no earlier run
    /// used.
    async fn new(server: &Server) -> anyhow::Result<Self> {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let store_url = match &server.postgres {
            Some(url) => Some(create_database(url).await?),
            None => None,
        };
        Ok(Shared {
            store_url,
            topic_prefix: format!("load{}r{run}.", std::process::id()),
        })
    }
}

/// Creates an empty database on the PostgreSQL server `admin_url` names; its URL.
async fn create_database(admin_url: &str) -> anyhow::Result<String> {
    use sea_orm::ConnectionTrait;
    let admin = sea_orm::Database::connect(admin_url)
        .await
        .context("connecting to --postgres")?;
    let name = format!(
        "wacrm_load_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .context("creating the run's database on --postgres")?;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

fn wacrm_command(
    server: &Server,
    shared: &Shared,
    dir: &std::path::Path,
    port: u16,
) -> anyhow::Result<Command> {
    let mut cmd = Command::new(wacrm_path(server)?);
    let store_url = match &shared.store_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}?mode=rwc", dir.join("store.db").display()),
    };
    cmd.current_dir(dir)
        .env("WACRM_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WACRM_STORE__URL", store_url)
        .env("WACRM_BUS__EMBEDDED__PATH", dir.join("bus.db"))
        .env("WACRM_WHATSAPP__APP_SECRET", SECRET)
        .env("WACRM_LOG", "warn");
    if server.bus == BusArg::Kafka {
        cmd.env("WACRM_BUS__BACKEND", "kafka")
            .env("WACRM_BUS__KAFKA__BROKERS", &server.kafka_brokers)
            .env("WACRM_BUS__KAFKA__CREATE_TOPICS", "true")
            .env("WACRM_BUS__TOPIC_PREFIX", &shared.topic_prefix);
    }
    for kv in &server.env {
        let (k, v) = kv.split_once('=').context("--env wants KEY=VALUE")?;
        cmd.env(k, v);
    }
    Ok(cmd)
}

async fn wait_ready(client: &reqwest::Client, url: &str, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!("the server exited with {status}");
        }
        if Instant::now() > deadline {
            bail!("the server did not become ready at {url}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `wacrm ARGS` against the service's files; what it printed on stdout.
fn run_wacrm(
    server: &Server,
    shared: &Shared,
    dir: &std::path::Path,
    port: u16,
    args: &[&str],
) -> anyhow::Result<String> {
    let out = wacrm_command(server, shared, dir, port)?
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "wacrm {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The services of one run: one, or `--instances` on one broker and one database.
struct Fleet {
    members: Vec<Spawned>,
}

impl Fleet {
    /// Each service's webhook URL, in the order requests take them.
    fn webhook_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}/webhooks/whatsapp", m.port))
            .collect()
    }
}

/// Starts the run's services: runs `setup` (`wacrm ARGS` lines) and makes a metrics key once
/// against their shared store, then starts `--instances` services and waits until each is ready.
async fn start_wacrm(
    server: &Server,
    client: &reqwest::Client,
    setup: &[&[&str]],
) -> anyhow::Result<Fleet> {
    let instances = server.instances.max(1);
    if instances > 1 && (server.bus != BusArg::Kafka || server.postgres.is_none()) {
        bail!("--instances above 1 needs --bus kafka and --postgres: the services share one broker and one database");
    }
    let shared = Shared::new(server).await?;
    let first = tempfile::tempdir()?;
    let first_port = free_port()?;
    for args in setup {
        run_wacrm(server, &shared, first.path(), first_port, args)?;
    }
    let metrics_key = run_wacrm(
        server,
        &shared,
        first.path(),
        first_port,
        &[
            "keys",
            "create",
            "--name",
            "wacrm-load",
            "--role",
            "auditor",
            "--scope",
            "metrics:read",
            "--all-numbers",
        ],
    )?
    .trim()
    .to_owned();
    let mut members = Vec::with_capacity(instances);
    let mut first = Some((first, first_port));
    for _ in 0..instances {
        let (dir, port) = match first.take() {
            Some(first) => first,
            None => (tempfile::tempdir()?, free_port()?),
        };
        members.push(spawn_service(server, &shared, client, dir, port, &metrics_key).await?);
    }
    Ok(Fleet { members })
}

/// Starts `wacrm serve` in `dir` on `port` and waits until it is ready.
async fn spawn_service(
    server: &Server,
    shared: &Shared,
    client: &reqwest::Client,
    dir: tempfile::TempDir,
    port: u16,
    metrics_key: &str,
) -> anyhow::Result<Spawned> {
    let log = std::fs::File::create(dir.path().join("wacrm.log"))?;
    let mut child = wacrm_command(server, shared, dir.path(), port)?
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| {
            format!(
                "starting {}",
                wacrm_path(server).unwrap_or_default().display()
            )
        })?;
    wait_ready(
        client,
        &format!("http://127.0.0.1:{port}/readyz"),
        &mut child,
    )
    .await?;
    Ok(Spawned {
        pid: child.id(),
        child: Some(child),
        port,
        metrics_key: Some(metrics_key.to_owned()),
        _dir: Some(dir),
    })
}

async fn start_baseline(client: &reqwest::Client) -> anyhow::Result<Spawned> {
    let port = free_port()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["baseline-server", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            bail!("the baseline server did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = client;
    Ok(Spawned {
        pid: child.id(),
        child: Some(child),
        port,
        metrics_key: None,
        _dir: None,
    })
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

struct Measured {
    report: Report,
    /// The largest idle RSS of the services.
    idle_rss: u64,
    /// The largest peak RSS of the services.
    peak_rss: u64,
    /// The services' CPU, summed, in cores.
    cpu_cores: f64,
    /// The services' CPU time, summed, over the measured load.
    cpu: Duration,
    /// The broker's CPU in cores (`--broker-pid`).
    broker_cores: Option<f64>,
    /// This load generator's CPU in cores (it shares the machine).
    generator_cores: f64,
}

impl Measured {
    /// The services' CPU time per 1,000 webhooks answered 200, seconds: with the webhook rate a
    /// deployment expects, the cores it needs (CPU per 1,000 × webhooks per second / 1,000).
    fn cpu_per_thousand(&self) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / self.report.ok.max(1) as f64
    }
}

/// The load every server of an ingest run gets.
struct Load {
    pool: Arc<Pool>,
    pace: Pace,
    warmup: Duration,
    duration: Duration,
    /// The broker's process, whose CPU is read beside the services'.
    broker_pid: Option<u32>,
}

/// The CPU time of a process between two readings, when both were read.
fn cpu_between(before: Option<&procstat::Reading>, after: Option<&procstat::Reading>) -> Duration {
    match (before, after) {
        (Some(b), Some(a)) => a.cpu.saturating_sub(b.cpu),
        _ => Duration::ZERO,
    }
}

/// Drives `load` at the services of `members` (in turn) and reads their memory and CPU.
async fn measure(members: &[Spawned], load: &Load) -> anyhow::Result<Measured> {
    let (pool, pace, warmup, duration) = (&load.pool, load.pace, load.warmup, load.duration);
    let client = client()?;
    let urls: Vec<String> = members
        .iter()
        .map(|m| format!("http://127.0.0.1:{}/webhooks/whatsapp", m.port))
        .collect();
    let idle_rss = members
        .iter()
        .filter_map(|m| procstat::read(m.pid).map(|r| r.rss))
        .max()
        .unwrap_or(0);
    if !warmup.is_zero() {
        drive(
            client.clone(),
            urls.clone(),
            Arc::clone(pool),
            pace,
            warmup,
            20_000,
        )
        .await?;
    }
    let stop = CancellationToken::new();
    let samplers: Vec<_> = members
        .iter()
        .map(|m| {
            tokio::spawn(procstat::peak_rss(
                m.pid,
                Duration::from_millis(100),
                stop.clone(),
            ))
        })
        .collect();
    let broker_pid = load.broker_pid;
    let started = Instant::now();
    let before: Vec<_> = members.iter().map(|m| procstat::read(m.pid)).collect();
    let broker_before = broker_pid.and_then(procstat::read);
    let generator_before = procstat::read(std::process::id());
    let report = drive(client, urls, Arc::clone(pool), pace, duration, 20_000).await?;
    let after: Vec<_> = members.iter().map(|m| procstat::read(m.pid)).collect();
    let broker_after = broker_pid.and_then(procstat::read);
    let generator_after = procstat::read(std::process::id());
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    stop.cancel();
    let mut peak_rss = 0;
    for sampler in samplers {
        peak_rss = peak_rss.max(sampler.await.unwrap_or(0));
    }
    let cpu: Duration = before
        .iter()
        .zip(&after)
        .map(|(b, a)| cpu_between(b.as_ref(), a.as_ref()))
        .sum();
    let broker_cores = broker_pid
        .map(|_| cpu_between(broker_before.as_ref(), broker_after.as_ref()).as_secs_f64() / wall);
    let generator_cores =
        cpu_between(generator_before.as_ref(), generator_after.as_ref()).as_secs_f64() / wall;
    Ok(Measured {
        report,
        idle_rss,
        peak_rss,
        cpu_cores: cpu.as_secs_f64() / wall,
        cpu,
        broker_cores,
        generator_cores,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print(name: &str, m: &Measured) {
    let r = &m.report;
    println!(
        "{name:<9} {:>9.0} req/s {:>9.0} msg/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>8.2} ms  errors {:>6} {:?}  rss idle {:>5.1} MiB peak {:>5.1} MiB  cpu {:.2} cores",
        r.rps(),
        r.mps(),
        r.ms(0.5),
        r.ms(0.99),
        r.ms(0.999),
        r.ms(1.0),
        r.error_count(),
        r.errors,
        mib(m.idle_rss),
        mib(m.peak_rss),
        m.cpu_cores,
    );
    if m.report.ok > 0 && name != "baseline" {
        println!(
            "{:<9} cpu {:.3} s per 1,000 webhooks{}; load generator {:.2} cores",
            "",
            m.cpu_per_thousand(),
            match m.broker_cores {
                Some(cores) => format!("; broker {cores:.2} cores"),
                None => String::new(),
            },
            m.generator_cores,
        );
    }
}

/// Which servers an ingest run measures, and how many times.
struct Runs {
    baseline: bool,
    baseline_only: bool,
    repeat: usize,
}

/// One run's figures, for the spread over repeated runs.
struct RunFigures {
    rps: f64,
    p99_ms: f64,
    peak_mib: f64,
    cores: f64,
    cpu_per_thousand: f64,
    share: Option<f64>,
}

async fn ingest(
    server: Server,
    pace: Pace,
    duration: Duration,
    warmup: Duration,
    generator: Generator,
    runs: Runs,
) -> anyhow::Result<()> {
    let per_second = match pace {
        Pace::Rate(r) => r as usize,
        Pace::Concurrency(_) => 30_000,
    };
    // About 400,000 updates' worth of distinct webhooks at most (memory), cycled beyond that.
    let cap = (400_000 / generator.updates.max(1)).max(50);
    let count = (per_second * (duration + warmup).as_secs() as usize).clamp(1, cap);
    eprintln!("generating {count} signed webhooks…");
    let load = Load {
        pool: Arc::new(Pool::new(&generator, count)),
        pace,
        warmup,
        duration,
        broker_pid: server.broker_pid,
    };
    println!(
        "load: {pace:?}, {} s (+{} s warm-up), {} update(s) per webhook, {:?} mix, {} contacts, {} numbers",
        duration.as_secs(),
        warmup.as_secs(),
        generator.updates,
        generator.mix,
        generator.contacts,
        generator.numbers
    );
    if server.instances > 1 {
        println!(
            "{} services on one broker and one PostgreSQL database, requests in turn",
            server.instances
        );
    }
    let c = client()?;
    let mut figures = Vec::new();
    for run in 1..=runs.repeat {
        if runs.repeat > 1 {
            println!("run {run} of {}", runs.repeat);
        }
        let mut baseline_rps = None;
        if runs.baseline || runs.baseline_only {
            let base = start_baseline(&c).await?;
            let m = measure(std::slice::from_ref(&base), &load).await?;
            print("baseline", &m);
            baseline_rps = Some(m.report.rps());
        }
        if runs.baseline_only {
            continue;
        }
        let wacrm = match server.port {
            Some(port) => Fleet {
                members: vec![Spawned {
                    child: None,
                    pid: server.pid.unwrap_or(0),
                    port,
                    metrics_key: server.metrics_key.clone(),
                    _dir: None,
                }],
            },
            None => start_wacrm(&server, &c, &[]).await?,
        };
        // Let the idle service settle before reading its idle RSS.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let m = measure(&wacrm.members, &load).await?;
        print("wacrm", &m);
        if let Some((stored, published)) = store_progress(&c, &wacrm).await {
            println!("store projection: {stored} of {published} published events stored when the load ended");
        }
        let share = baseline_rps.map(|b| 100.0 * m.report.rps() / b.max(1.0));
        if let Some(share) = share {
            println!("wacrm / baseline: {share:.0} %");
        }
        figures.push(RunFigures {
            rps: m.report.rps(),
            p99_ms: m.report.ms(0.99),
            peak_mib: mib(m.peak_rss),
            cores: m.cpu_cores,
            cpu_per_thousand: m.cpu_per_thousand(),
            share,
        });
    }
    if figures.len() > 1 {
        print_spread(&figures);
    }
    Ok(())
}

/// Events the store projection had stored, and events published, as the services count them
/// (`/metrics`, summed): whether the store kept up with the load.
async fn store_progress(client: &reqwest::Client, wacrm: &Fleet) -> Option<(u64, u64)> {
    let (mut stored, mut published) = (0, 0);
    for member in &wacrm.members {
        let (s, p) = member_progress(client, member).await?;
        stored += s;
        published += p;
    }
    Some((stored, published))
}

/// One service's [`store_progress`].
async fn member_progress(client: &reqwest::Client, wacrm: &Spawned) -> Option<(u64, u64)> {
    let text = client
        .get(format!("http://127.0.0.1:{}/metrics", wacrm.port))
        .bearer_auth(wacrm.metrics_key.as_deref()?)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let counter = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map(|value| value as u64)
    };
    let published = counter("wacrm_events_published_total ")?;
    let stored = counter("wacrm_consumer_records_total{group=\"wacrm-store\"} ").unwrap_or(0);
    Some((stored, published))
}

/// Minimum, median and maximum of each figure over the runs.
fn print_spread(figures: &[RunFigures]) {
    fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
        values.sort_by(f64::total_cmp);
        (
            values[0],
            values[values.len() / 2],
            values[values.len() - 1],
        )
    }
    let line = |name: &str, unit: &str, values: Vec<f64>| {
        if values.is_empty() {
            return;
        }
        let (min, median, max) = spread(values);
        println!("  {name:<10} min {min:>9.2}  median {median:>9.2}  max {max:>9.2} {unit}");
    };
    println!("wacrm over {} runs:", figures.len());
    line(
        "throughput",
        "req/s",
        figures.iter().map(|f| f.rps).collect(),
    );
    line("p99", "ms", figures.iter().map(|f| f.p99_ms).collect());
    line(
        "peak RSS",
        "MiB",
        figures.iter().map(|f| f.peak_mib).collect(),
    );
    line("CPU", "cores", figures.iter().map(|f| f.cores).collect());
    line(
        "CPU/1,000",
        "s per 1,000 webhooks",
        figures.iter().map(|f| f.cpu_per_thousand).collect(),
    );
    line(
        "/ baseline",
        "%",
        figures.iter().filter_map(|f| f.share).collect(),
    );
}

/// Sends `messages` signed text webhooks from `contacts` at `rate` to the run's services (in
/// turn, open loop); prints and returns the ingest report.
async fn send_webhooks(
    c: &reqwest::Client,
    wacrm: &Fleet,
    rate: f64,
    messages: usize,
    contacts: usize,
) -> anyhow::Result<Report> {
    let generator = Generator {
        updates: 1,
        contacts,
        numbers: 1,
        mix: Mix::Text,
        secret: SECRET.into(),
        run: format!("e2e{}", std::process::id()),
    };
    let pool = Arc::new(Pool::new(&generator, messages));
    let duration = Duration::from_secs_f64(messages as f64 / rate);
    let report = drive(
        c.clone(),
        wacrm.webhook_urls(),
        Arc::clone(&pool),
        Pace::Rate(rate),
        duration,
        20_000,
    )
    .await?;
    println!(
        "ingest: {:.0} req/s, p99 {:.2} ms, errors {:?}",
        report.rps(),
        report.ms(0.99),
        report.errors
    );
    Ok(report)
}

/// `e2e --crm pipedrive`: webhooks → bus → sync engine → the Pipedrive fake, whose burst
/// limit is `limit` per rolling 2 s; calls and tokens per 1,000 messages, duplicates, the
/// busiest 2 s.
async fn e2e_pipedrive(
    server: Server,
    rate: f64,
    messages: usize,
    contacts: usize,
    limit: u32,
    timeout: Duration,
) -> anyhow::Result<()> {
    use wacrm_testkit::pipedrive::{FakeConfig, PipedriveFake};
    let config = FakeConfig {
        requests_per_2s: limit,
        daily_tokens: u64::MAX / 2,
        ..FakeConfig::default()
    };
    let fake = PipedriveFake::start(config.clone()).await;
    let mut server = server;
    server.env.extend([
        "WACRM_CRM__CONNECTIONS__MAIN__KIND=pipedrive".to_owned(),
        format!("WACRM_CRM__CONNECTIONS__MAIN__TOKEN={}", config.token),
        format!("WACRM_CRM__CONNECTIONS__MAIN__BASE_URL={}", fake.base_url()),
        format!("WACRM_CRM__CONNECTIONS__MAIN__REQUESTS_PER_2S={limit}"),
    ]);
    let c = client()?;
    let wacrm = start_wacrm(&server, &c, &[&["crm", "setup", "--connection", "main"]]).await?;
    fake.clear_requests();
    let tokens_before = fake.tokens_spent();
    println!("e2e: {messages} messages from {contacts} contacts at {rate} msg/s; Pipedrive, limit {limit}/2 s");
    let started = Instant::now();
    let report = send_webhooks(&c, &wacrm, rate, messages, contacts).await?;
    let expected = report.ok as usize;
    let deadline = Instant::now() + timeout;
    let wamids = |fake: &PipedriveFake| -> Vec<String> {
        fake.notes()
            .iter()
            .flat_map(|n| wacrm_crm::transcript::wamids_in(&n.content))
            .collect()
    };
    loop {
        let synced = wamids(&fake).len();
        if synced >= expected {
            break;
        }
        if Instant::now() > deadline {
            println!("timed out: {synced} of {expected} synced");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut logged = wamids(&fake);
    let total = logged.len();
    logged.sort_unstable();
    logged.dedup();
    let calls = fake.requests().len();
    let tokens = fake.tokens_spent() - tokens_before;
    let busiest = fake.max_requests_in_any_window(Duration::from_secs(2));
    println!(
        "crm: {} messages in {} notes on {} persons ({} logged twice); {:.1} Pipedrive calls and {:.0} tokens per 1,000 messages; {:.0} msg/s synced; busiest 2 s: {busiest} calls (limit {limit}: {}); requests off the spec: {}",
        logged.len(),
        fake.notes().len(),
        fake.persons().len(),
        total - logged.len(),
        calls as f64 * 1000.0 / logged.len().max(1) as f64,
        tokens as f64 * 1000.0 / logged.len().max(1) as f64,
        logged.len() as f64 / elapsed,
        if fake.burst_violations() == 0 && busiest as u32 <= limit { "never exceeded" } else { "EXCEEDED" },
        fake.violations().len(),
    );
    drop(wacrm);
    Ok(())
}

/// The busiest stretch of a run, held against the CRM's documented limit.
struct Busiest {
    /// What was measured, e.g. `busiest minute: 118 calls`.
    measured: String,
    /// The limit it is held against, e.g. `120 a minute`.
    limit: String,
    /// Whether the run went over it (or the fake refused a request for it).
    exceeded: bool,
}

/// A CRM fake `e2e` syncs to, behind what the generic run needs of it: the connection's
/// environment, what the fake holds and how the CRM's limits fared.
trait E2eFake {
    /// The CRM's name, for the printed lines.
    fn name(&self) -> &'static str;
    /// `KEY=VALUE` environment giving `wacrm` a connection `main` to the fake.
    fn env(&self) -> Vec<String>;
    /// Forgets the requests so far (setup's), so that only the sync is counted.
    fn clear_requests(&self);
    /// The wamid of every message the fake holds, once per copy.
    fn held_wamids(&self) -> Vec<String>;
    /// Where the messages are held, e.g. `in 100 notes on 100 contacts`.
    fn holding(&self) -> String;
    /// API calls since [`E2eFake::clear_requests`] (token endpoints not included: they are
    /// not API calls and cost no allocation).
    fn calls(&self) -> usize;
    /// The busiest stretch since [`E2eFake::clear_requests`] against the documented limit.
    fn busiest(&self) -> Busiest;
    /// Requests the fake found off the CRM's documents.
    fn violations(&self) -> usize;
}

/// The connection variable `KEY` of connection `main`.
fn main_env(key: &str, value: impl std::fmt::Display) -> String {
    format!("WACRM_CRM__CONNECTIONS__MAIN__{key}={value}")
}

/// `e2e --crm salesforce`: messages are records of `WhatsApp_Message__c`.
struct SalesforceE2e {
    fake: wacrm_testkit::salesforce::SalesforceFake,
    /// Concurrent requests allowed (Salesforce: 25 long requests per org).
    limit: usize,
}

impl E2eFake for SalesforceE2e {
    fn name(&self) -> &'static str {
        "Salesforce"
    }

    fn env(&self) -> Vec<String> {
        let config = self.fake.config();
        vec![
            main_env("KIND", "salesforce"),
            main_env("CLIENT_ID", config.client_id),
            main_env("CLIENT_SECRET", config.client_secret),
            // The fake's one URL is the login host and the token answer's `instance_url`.
            main_env("LOGIN_URL", self.fake.base_url()),
        ]
    }

    fn clear_requests(&self) {
        self.fake.clear_requests();
    }

    fn held_wamids(&self) -> Vec<String> {
        self.fake
            .records("WhatsApp_Message__c")
            .iter()
            .filter_map(|r| r.get("Wamid__c").and_then(|w| w.as_str()))
            .map(str::to_owned)
            .collect()
    }

    fn holding(&self) -> String {
        format!(
            "in {} message records on {} contacts",
            self.fake.records("WhatsApp_Message__c").len(),
            self.fake.records("Contact").len()
        )
    }

    fn calls(&self) -> usize {
        self.fake.requests().len()
    }

    fn busiest(&self) -> Busiest {
        let config = self.fake.config();
        let in_flight = self.fake.max_in_flight();
        Busiest {
            measured: format!(
                "busiest second: {} calls, most in flight: {in_flight}",
                self.fake.busiest_second()
            ),
            limit: format!("{} in flight", self.limit),
            // Salesforce documents no per-second limit: concurrency and the daily allocation.
            exceeded: in_flight > self.limit || self.fake.api_used() > config.daily_api_requests,
        }
    }

    fn violations(&self) -> usize {
        self.fake.violations().len()
    }
}

/// `e2e --crm rdstation`: messages are lines of completed tasks on deals.
struct RdStationE2e {
    fake: wacrm_testkit::rdstation::RdStationFake,
}

impl E2eFake for RdStationE2e {
    fn name(&self) -> &'static str {
        "RD Station"
    }

    fn env(&self) -> Vec<String> {
        let config = self.fake.config();
        vec![
            main_env("KIND", "rdstation"),
            main_env("CLIENT_ID", config.client_id),
            main_env("CLIENT_SECRET", config.client_secret),
            // Rotated on first use; the new one is kept in the default token file, under the
            // service's own directory, where `crm setup` and `serve` both find it.
            main_env("REFRESH_TOKEN", config.refresh_token),
            main_env("BASE_URL", format!("{}/crm/v2", self.fake.base_url())),
            main_env("TOKEN_URL", self.fake.token_url()),
            main_env("REQUESTS_PER_MINUTE", config.requests_per_minute),
        ]
    }

    fn clear_requests(&self) {
        self.fake.clear_requests();
    }

    fn held_wamids(&self) -> Vec<String> {
        self.fake
            .tasks()
            .iter()
            .filter_map(|t| t["description"].as_str())
            .flat_map(wacrm_rdstation::mapping::wamids_in)
            .collect()
    }

    fn holding(&self) -> String {
        format!(
            "in {} tasks on {} deals, {} contacts",
            self.fake.tasks().len(),
            self.fake.deals().len(),
            self.fake.contacts().len()
        )
    }

    fn calls(&self) -> usize {
        self.fake.requests().len()
    }

    fn busiest(&self) -> Busiest {
        let limit = self.fake.config().requests_per_minute;
        let busiest = self
            .fake
            .max_requests_in_any_window(Duration::from_secs(60));
        let refused = self.fake.rate_violations();
        Busiest {
            measured: format!("busiest minute: {busiest} calls, {refused} refused (429)"),
            limit: format!("{limit} a minute"),
            exceeded: busiest > limit as usize || refused > 0,
        }
    }

    fn violations(&self) -> usize {
        self.fake.violations().len()
    }
}

/// `e2e --crm zoho`: messages are lines of notes on contacts. The fake keeps no clock, so the
/// API calls go through a [`Meter`] that times them and counts them in flight.
struct ZohoE2e {
    fake: wacrm_testkit::zoho::ZohoFake,
    meter: Meter,
    /// Concurrent requests allowed (Zoho: 5 on Free … 25 on Ultimate, per org and app).
    limit: usize,
}

impl E2eFake for ZohoE2e {
    fn name(&self) -> &'static str {
        "Zoho"
    }

    fn env(&self) -> Vec<String> {
        let config = self.fake.config();
        vec![
            main_env("KIND", "zoho"),
            main_env("CLIENT_ID", config.client_id),
            main_env("CLIENT_SECRET", config.client_secret),
            main_env("REFRESH_TOKEN", config.refresh_token),
            // Tokens straight from the fake; API calls through the meter.
            main_env("ACCOUNTS_URL", self.fake.base_url()),
            main_env("API_DOMAIN", self.meter.base_url()),
        ]
    }

    fn clear_requests(&self) {
        self.fake.clear_requests();
        self.meter.clear();
    }

    fn held_wamids(&self) -> Vec<String> {
        self.fake
            .notes()
            .iter()
            .flat_map(|n| wacrm_crm::transcript::wamids_in(&n.content))
            .collect()
    }

    fn holding(&self) -> String {
        format!(
            "in {} notes on {} contacts",
            self.fake.notes().len(),
            self.fake.contacts().len()
        )
    }

    fn calls(&self) -> usize {
        self.fake.requests().len()
    }

    fn busiest(&self) -> Busiest {
        let in_flight = self.meter.max_in_flight();
        Busiest {
            measured: format!(
                "busiest second: {} calls, most in flight: {in_flight}",
                self.meter.busiest(Duration::from_secs(1))
            ),
            limit: format!("{} in flight", self.limit),
            // Zoho documents credits per day and concurrency, no request rate.
            exceeded: in_flight > self.limit,
        }
    }

    fn violations(&self) -> usize {
        self.fake.violations().len()
    }
}

/// `e2e --crm kommo`: messages are lines of common notes on contacts.
struct KommoE2e {
    fake: wacrm_testkit::kommo::KommoFake,
}

impl E2eFake for KommoE2e {
    fn name(&self) -> &'static str {
        "Kommo"
    }

    fn env(&self) -> Vec<String> {
        let config = self.fake.config();
        vec![
            main_env("KIND", "kommo"),
            // The long-lived token: Kommo's recommended credential.
            main_env("TOKEN", config.token),
            main_env("BASE_URL", self.fake.base_url()),
            main_env("REQUESTS_PER_SECOND", config.requests_per_second),
        ]
    }

    fn clear_requests(&self) {
        self.fake.clear_requests();
    }

    fn held_wamids(&self) -> Vec<String> {
        self.fake
            .notes()
            .iter()
            .flat_map(|n| wacrm_kommo::mapping::wamids_in(&n.text))
            .collect()
    }

    fn holding(&self) -> String {
        format!(
            "in {} notes on {} contacts",
            self.fake.notes().len(),
            self.fake.contacts().len()
        )
    }

    fn calls(&self) -> usize {
        self.fake.requests().len()
    }

    fn busiest(&self) -> Busiest {
        let limit = self.fake.config().requests_per_second;
        let busiest = self.fake.max_requests_in_any_window(Duration::from_secs(1));
        let refused = self.fake.rate_violations();
        Busiest {
            measured: format!("busiest second: {busiest} calls, {refused} refused (429)"),
            limit: format!("{limit} a second"),
            exceeded: busiest > limit as usize || refused > 0,
        }
    }

    fn violations(&self) -> usize {
        self.fake.violations().len()
    }
}

/// Starts the fake of `crm` (one of the generic ones) with `limit` (see `--crm-limit`).
async fn start_fake(crm: Crm, limit: Option<u32>) -> anyhow::Result<Box<dyn E2eFake>> {
    Ok(match crm {
        Crm::Salesforce => {
            use wacrm_testkit::salesforce::{FakeConfig, SalesforceFake};
            let limit = limit.unwrap_or(25) as usize;
            let config = FakeConfig {
                max_concurrent_requests: limit,
                ..FakeConfig::default()
            };
            Box::new(SalesforceE2e {
                fake: SalesforceFake::start(config).await,
                limit,
            })
        }
        Crm::RdStation => {
            use wacrm_testkit::rdstation::{FakeConfig, RdStationFake};
            let config = FakeConfig {
                requests_per_minute: limit.unwrap_or(120),
                ..FakeConfig::default()
            };
            Box::new(RdStationE2e {
                fake: RdStationFake::start(config).await,
            })
        }
        Crm::Zoho => {
            use wacrm_testkit::zoho::{FakeConfig, ZohoFake};
            let fake = ZohoFake::start(FakeConfig::default()).await;
            let meter = Meter::start(&fake.base_url()).await?;
            Box::new(ZohoE2e {
                fake,
                meter,
                limit: limit.unwrap_or(5) as usize,
            })
        }
        Crm::Kommo => {
            use wacrm_testkit::kommo::{FakeConfig, KommoFake};
            let config = FakeConfig {
                requests_per_second: limit.unwrap_or(7),
                ..FakeConfig::default()
            };
            Box::new(KommoE2e {
                fake: KommoFake::start(config).await,
            })
        }
        Crm::Hubspot | Crm::Pipedrive => bail!("HubSpot and Pipedrive have runs of their own"),
    })
}

/// `e2e` through a generic fake: webhooks → bus → sync engine → the fake; messages held,
/// held twice, calls per 1,000 messages, the busiest stretch against the CRM's limit and
/// requests off the spec.
async fn e2e_crm(
    server: Server,
    fake: &dyn E2eFake,
    rate: f64,
    messages: usize,
    contacts: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut server = server;
    server.env.extend(fake.env());
    let c = client()?;
    let wacrm = start_wacrm(&server, &c, &[&["crm", "setup", "--connection", "main"]]).await?;
    fake.clear_requests();
    println!(
        "e2e: {messages} messages from {contacts} contacts at {rate} msg/s; {}",
        fake.name()
    );
    let started = Instant::now();
    let report = send_webhooks(&c, &wacrm, rate, messages, contacts).await?;
    let expected = report.ok as usize;
    let deadline = Instant::now() + timeout;
    loop {
        let synced = fake.held_wamids().len();
        if synced >= expected {
            break;
        }
        if Instant::now() > deadline {
            println!("timed out: {synced} of {expected} synced");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Calls may follow the last message's write (RD Station completes a task after creating
    // it): count them once the CRM has had none for 3 s.
    let mut calls = fake.calls();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = fake.calls();
        if now != calls {
            calls = now;
            quiet_since = Instant::now();
        }
    }
    let mut held = fake.held_wamids();
    let total = held.len();
    held.sort_unstable();
    held.dedup();
    let busiest = fake.busiest();
    println!(
        "crm: {} messages held {} ({} held twice); {:.1} {} calls per 1,000 messages; {:.0} msg/s synced; {} (limit {}: {}); requests off the spec: {}",
        held.len(),
        fake.holding(),
        total - held.len(),
        calls as f64 * 1000.0 / held.len().max(1) as f64,
        fake.name(),
        held.len() as f64 / elapsed,
        busiest.measured,
        busiest.limit,
        if busiest.exceeded { "EXCEEDED" } else { "never exceeded" },
        fake.violations(),
    );
    drop(wacrm);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn e2e(
    server: Server,
    rate: f64,
    messages: usize,
    contacts: usize,
    crm_latency: Duration,
    crm_limit: u32,
    timeout: Duration,
    steady_after: f64,
) -> anyhow::Result<()> {
    use wacrm_testkit::hubspot::{FakeConfig, HubSpotFake};
    let config = FakeConfig {
        latency: crm_latency,
        requests_per_10s: crm_limit,
        ..FakeConfig::default()
    };
    let fake = HubSpotFake::start(config.clone()).await;
    let mut server = server;
    server.env.extend([
        "WACRM_CRM__CONNECTIONS__MAIN__KIND=hubspot".to_owned(),
        format!("WACRM_CRM__CONNECTIONS__MAIN__TOKEN={}", config.token),
        format!("WACRM_CRM__CONNECTIONS__MAIN__BASE_URL={}", fake.base_url()),
        format!("WACRM_CRM__CONNECTIONS__MAIN__REQUESTS_PER_10S={crm_limit}"),
    ]);
    let c = client()?;
    let wacrm = start_wacrm(
        &server,
        &c,
        &[&["crm", "setup", "hubspot", "--connection", "main"]],
    )
    .await?;
    fake.clear_requests();
    println!(
        "e2e: {messages} messages from {contacts} contacts at {rate} msg/s; CRM latency {} ms, limit {crm_limit}/10 s",
        crm_latency.as_millis()
    );
    let started = chrono::Utc::now();
    let report = send_webhooks(&c, &wacrm, rate, messages, contacts).await?;
    // Webhook n was scheduled at started + n / rate; its communication carries its wamid.
    let deadline = Instant::now() + timeout;
    let expected = report.ok as usize;
    loop {
        let synced = fake.communication_count();
        if synced >= expected {
            break;
        }
        if Instant::now() > deadline {
            println!("timed out: {synced} of {expected} synced");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)?;
    let mut steady = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)?;
    let mut last = started;
    let comms = fake.communications();
    for comm in &comms {
        let Some(n) = comm
            .properties
            .get("wacrm_wamid")
            .and_then(|w| w.rsplit('.').next())
            .and_then(|n| n.parse::<f64>().ok())
        else {
            continue;
        };
        let scheduled = started + chrono::Duration::microseconds((n / rate * 1e6) as i64);
        let ms = (comm.created_at - scheduled).num_milliseconds().max(1) as u64;
        let _ = latency.record(ms);
        if n / rate >= steady_after {
            let _ = steady.record(ms);
        }
        last = last.max(comm.created_at);
    }
    let calls = fake.requests().len();
    let span = (last - started).num_milliseconds().max(1) as f64 / 1000.0;
    let max_window = fake.max_requests_in_any_window(Duration::from_secs(10));
    println!(
        "crm: {} communications; webhook→CRM p50 {} ms, p99 {} ms, max {} ms; {:.1} CRM calls per 1,000 messages; {:.0} msg/s synced; busiest 10 s: {max_window} calls (limit {crm_limit}: {})",
        comms.len(),
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.max(),
        calls as f64 * 1000.0 / comms.len().max(1) as f64,
        comms.len() as f64 / span,
        if max_window as u32 <= crm_limit { "never exceeded" } else { "EXCEEDED" },
    );
    // The sync rate once the first contacts are linked: CRM creations from `steady_after` s
    // into the run to the last one.
    let steady_from = started + chrono::Duration::milliseconds((steady_after * 1000.0) as i64);
    let later = comms.iter().filter(|c| c.created_at >= steady_from).count();
    let steady_span = (last - steady_from).num_milliseconds().max(1) as f64 / 1000.0;
    println!(
        "steady state (messages sent after {steady_after} s): webhook→CRM p50 {} ms, p99 {} ms, max {} ms; {:.0} msg/s synced from {steady_after} s on",
        steady.value_at_quantile(0.5),
        steady.value_at_quantile(0.99),
        steady.max(),
        later as f64 / steady_span
    );
    drop(wacrm);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Cmd::BaselineServer { listen } = cli.command {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return Ok(runtime.block_on(baseline::serve(listen))?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Cmd::Ingest {
                server,
                rate,
                concurrency,
                duration,
                warmup,
                updates,
                mix,
                contacts,
                numbers,
                baseline,
                baseline_only,
                repeat,
            } => {
                let pace = match (rate, concurrency) {
                    (Some(r), _) => Pace::Rate(r),
                    (None, Some(c)) => Pace::Concurrency(c),
                    (None, None) => Pace::Concurrency(64),
                };
                let generator = Generator {
                    updates: updates.clamp(1, 1000),
                    contacts,
                    numbers,
                    mix: match mix {
                        MixArg::Text => Mix::Text,
                        MixArg::All => Mix::All,
                    },
                    secret: SECRET.into(),
                    run: format!("r{}", std::process::id()),
                };
                ingest(
                    server,
                    pace,
                    Duration::from_secs(duration),
                    Duration::from_secs(warmup),
                    generator,
                    Runs {
                        baseline,
                        baseline_only,
                        repeat: repeat.max(1),
                    },
                )
                .await
            }
            Cmd::E2e {
                server,
                crm: Crm::Pipedrive,
                rate,
                messages,
                contacts,
                crm_limit,
                timeout,
                ..
            } => {
                e2e_pipedrive(
                    server,
                    rate,
                    messages,
                    contacts,
                    crm_limit.unwrap_or(20),
                    Duration::from_secs(timeout),
                )
                .await
            }
            Cmd::E2e {
                server,
                crm: crm @ (Crm::Salesforce | Crm::RdStation | Crm::Zoho | Crm::Kommo),
                rate,
                messages,
                contacts,
                crm_limit,
                timeout,
                ..
            } => {
                let fake = start_fake(crm, crm_limit).await?;
                e2e_crm(
                    server,
                    fake.as_ref(),
                    rate,
                    messages,
                    contacts,
                    Duration::from_secs(timeout),
                )
                .await
            }
            Cmd::E2e {
                server,
                crm: Crm::Hubspot,
                rate,
                messages,
                contacts,
                crm_latency_ms,
                crm_limit,
                timeout,
                steady_after,
            } => {
                e2e(
                    server,
                    rate,
                    messages,
                    contacts,
                    Duration::from_millis(crm_latency_ms),
                    crm_limit.unwrap_or(190),
                    Duration::from_secs(timeout),
                    steady_after as f64,
                )
                .await
            }
            Cmd::Drain(args) => drain(args).await,
            Cmd::BaselineServer { .. } => Ok(()),
        }
    })
}
