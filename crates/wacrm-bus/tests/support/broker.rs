//! A real Kafka-protocol broker for integration tests: `tansu` on a free loopback port with
//! SQLite storage (so data survives its restarts), or in memory for suites that kill clients
//! mid-request. Found through `WACRM_TANSU_BIN`, `PATH` or
//! `~/.cargo/bin`; when it is missing the Kafka suites skip with a message, except under CI
//! (`CI` or `WACRM_REQUIRE_KAFKA` set), where they fail.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    bin: PathBuf,
    storage: &'static str,
    started: bool,
}

/// SQLite storage: survives restarts, but tansu 0.6 serves all of it from one task that ends
/// for good on the first reply it cannot deliver or the first storage error (`tansu-storage`
/// 0.6.0, `service.rs`, `ChannelRequestService::serve`: `tx.send(response)…?` inside the
/// loop) — a client that dies or times out with a request in flight stops the broker.
const SQLITE: &str = "sqlite://broker.db";
/// In-memory storage: lost on restart, but without that single task.
const MEMORY: &str = "memory://tansu/";

fn find_tansu() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WACRM_TANSU_BIN") {
        return Some(PathBuf::from(p));
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    /// Starts a broker, or `None` (after saying why) when tansu is not installed outside CI.
    pub fn start() -> Option<Broker> {
        Broker::start_with(SQLITE)
    }

    /// A broker whose storage is in memory, for suites that never restart it but kill its
    /// clients mid-request (see [`SQLITE`]).
    pub fn start_in_memory() -> Option<Broker> {
        Broker::start_with(MEMORY)
    }

    fn start_with(storage: &'static str) -> Option<Broker> {
        let Some(bin) = find_tansu() else {
            let required = std::env::var_os("CI").is_some()
                || std::env::var_os("WACRM_REQUIRE_KAFKA").is_some();
            assert!(!required, "tansu is not installed but the Kafka suites are required here (run .ci/run, or `cargo install tansu --version 0.6.0 --features dynostore,libsql`)");
            eprintln!("skipping: no Kafka-protocol broker (install tansu to run the Kafka suites)");
            return None;
        };
        let mut broker = Broker {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
            bin,
            storage,
            started: false,
        };
        broker.restart();
        Some(broker)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and storage.
    pub fn restart(&mut self) {
        assert!(
            !(self.started && self.storage == MEMORY),
            "an in-memory broker loses everything on restart"
        );
        self.started = true;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.bin)
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                self.storage,
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(self.log_file())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_file(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    }

    /// The end of the broker's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Kills the broker (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- tansu log (last lines) ---\n{}", self.log_tail());
        }
        self.stop();
    }
}
