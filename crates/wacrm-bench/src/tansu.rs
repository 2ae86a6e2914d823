//! A local Kafka-protocol broker for `wacrm-load drain` when no `--brokers` is given: `tansu`
//! with SQLite storage in a temporary directory, on a free loopback port, killed when dropped.
//! Found like the test suites find it: `WACRM_TANSU_BIN`, then `PATH`, then `~/.cargo/bin`.
//! `WACRM_TANSU_LOG` is passed to it as `RUST_LOG` (default `warn`); its output goes to
//! `broker.log` in its directory.
//!
//! tansu 0.6's SQLite storage reads each fetched record's headers with a query that scans the
//! whole `header` table (`header_fetch.sql`; the table has no index), so a consumer's fetch
//! slows down in proportion to every header the broker holds. [`Tansu::start_indexed`] adds
//! that index before serving, for runs that measure the clients rather than that scan.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the broker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TansuError {
    /// No `tansu` binary was found.
    #[error("no tansu binary (set WACRM_TANSU_BIN, or `cargo install tansu --version 0.6.0 --features dynostore,libsql`)")]
    NotInstalled,
    /// Starting it, or its directory, failed.
    #[error("starting tansu: {0}")]
    Io(#[from] std::io::Error),
    /// Adding the header index failed.
    #[error("indexing tansu's headers: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// It did not open its port in time.
    #[error("tansu did not open its port within {0:?}")]
    NotListening(Duration),
}

/// The `tansu` binary, if there is one.
pub fn find() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("WACRM_TANSU_BIN") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
}

/// A running tansu.
pub struct Tansu {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// The index tansu 0.6's `header` table lacks: a fetched record's headers by its key.
const HEADER_INDEX: &str =
    "create index if not exists wacrm_bench_header_by_record on header (topition, offset_id)";

impl Tansu {
    /// Starts tansu as it ships and waits until its port is open.
    pub fn start() -> Result<Tansu, TansuError> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = spawn(dir.path(), port)?;
        let tansu = Tansu { child, port, dir };
        tansu.wait_listening()?;
        Ok(tansu)
    }

    /// Starts tansu with its `header` table indexed by record: it creates its schema, is
    /// stopped, the index is added, and it starts again on the same storage and port.
    pub fn start_indexed() -> Result<Tansu, TansuError> {
        let mut tansu = Tansu::start()?;
        let _ = tansu.child.kill();
        let _ = tansu.child.wait();
        let db = rusqlite::Connection::open(tansu.dir.path().join("broker.db"))?;
        db.execute_batch(HEADER_INDEX)?;
        drop(db);
        tansu.child = spawn(tansu.dir.path(), tansu.port)?;
        tansu.wait_listening()?;
        Ok(tansu)
    }

    fn wait_listening(&self) -> Result<(), TansuError> {
        let within = Duration::from_secs(20);
        let deadline = Instant::now() + within;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(TansuError::NotListening(within));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `bootstrap.servers` for clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where its log is written.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }
}

/// tansu on `port` with SQLite storage in `dir`, its output appended to `broker.log` there.
fn spawn(dir: &std::path::Path, port: u16) -> Result<Child, TansuError> {
    let bin = find().ok_or(TansuError::NotInstalled)?;
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("broker.log"))?;
    Ok(Command::new(bin)
        .current_dir(dir)
        .args(["broker", "--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", "sqlite://broker.db"])
        .env(
            "RUST_LOG",
            std::env::var("WACRM_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()?)
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
