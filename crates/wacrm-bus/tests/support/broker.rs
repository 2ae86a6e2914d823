//! A real Kafka-protocol broker for integration tests: `tansu` on a free loopback port with
//! SQLite storage (so data survives its restarts), or in memory for suites that kill clients
//! mid-request, or on SQLite behind a [`reply_keeper`] that answers for clients that left
//! (itself behind a front of the suite's own, such as a TLS terminator, when asked). Found
//! through `WACRM_TANSU_BIN`, `PATH` or
//! `~/.cargo/bin`; when it is missing the Kafka suites skip with a message, except under CI
//! (`CI` or `WACRM_REQUIRE_KAFKA` set), where they fail. `WACRM_TANSU_LOG` is passed to tansu
//! as `RUST_LOG` (default `warn`; its debug logs run to hundreds of MB a minute).
#![allow(dead_code, clippy::unwrap_used)]

use std::any::Any;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    dir: tempfile::TempDir,
    /// The port clients connect to (and the one tansu advertises).
    pub port: u16,
    /// The port tansu listens on: `port`, or the one behind the [`reply_keeper`] or front.
    broker_port: u16,
    child: Option<Child>,
    /// The switch of the [`reply_keeper`] in front, when there is one.
    keeper: Option<std::sync::Arc<reply_keeper::Switch>>,
    /// What a [`Broker::start_behind`] front returned: kept (serving) as long as the broker.
    front: Option<Box<dyn Any + Send>>,
    bin: PathBuf,
    storage: &'static str,
    started: bool,
    /// Whether tansu requires SASL (`--authentication`): see [`Broker::require_sasl`].
    sasl: bool,
}

/// SQLite storage: survives restarts, but tansu 0.6 serves all of it from one task that ends
/// for good on the first reply it cannot deliver or the first storage error (`tansu-storage`
/// 0.6.0, `service.rs`, `ChannelRequestService::serve`: `tx.send(response)…?` inside the
/// loop) — a client that dies or times out with a request in flight stops the broker.
const SQLITE: &str = "sqlite://broker.db";
/// In-memory storage: lost on restart, but without that single task.
const MEMORY: &str = "memory://tansu/";

/// What stands between clients and tansu, on the port tansu advertises.
enum Front {
    /// Nothing: clients connect to tansu itself.
    Direct,
    /// A [`reply_keeper`].
    ReplyKeeper,
    /// What this function starts serving on the clients' listener, given the port to pass
    /// the bytes on to (a [`reply_keeper`]'s, in front of tansu).
    Custom(Box<dyn FnOnce(TcpListener, u16) -> Box<dyn Any + Send>>),
}

fn find_tansu() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu"));
    find_program("WACRM_TANSU_BIN", &["tansu"], home.as_slice())
}

/// The program named by the environment variable `var`, else the first of `names` on `PATH`,
/// else the first of `fallbacks` that exists (the test suites' external programs: the broker,
/// the browser and its driver).
pub fn find_program(var: &str, names: &[&str], fallbacks: &[PathBuf]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .chain(fallbacks.iter().cloned())
        .find(|candidate| candidate.is_file())
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    /// Starts a broker, or `None` (after saying why) when tansu is not installed outside CI.
    pub fn start() -> Option<Broker> {
        Broker::start_fronted(SQLITE, Front::Direct)
    }

    /// A broker whose storage is in memory, for suites that never restart it but kill its
    /// clients mid-request (see [`SQLITE`]).
    pub fn start_in_memory() -> Option<Broker> {
        Broker::start_fronted(MEMORY, Front::Direct)
    }

    /// A broker with SQLite storage behind a [`reply_keeper`], for suites whose clients die
    /// or time out with requests in flight (a crashed service, a broker outage): tansu then
    /// still delivers every reply it owes, so its storage task keeps serving.
    pub fn start_behind_reply_keeper() -> Option<Broker> {
        Broker::start_fronted(SQLITE, Front::ReplyKeeper)
    }

    /// A broker whose storage is in memory behind a [`reply_keeper`] whose switch can cut every
    /// client off (see [`Broker::cut_clients_off`]): a broker outage as its clients see it, while
    /// the broker keeps its log and its groups' committed offsets.
    pub fn start_cuttable() -> Option<Broker> {
        Broker::start_fronted(MEMORY, Front::ReplyKeeper)
    }

    /// A broker with SQLite storage (so it can be restarted, see [`Broker::require_sasl`])
    /// behind a [`reply_keeper`], whose clients reach it only through `front`: given the
    /// loopback listener clients connect to (the port tansu advertises, so clients that follow
    /// the metadata stay on it) and the keeper's port, it starts serving the listener and
    /// returns a handle kept until the broker is dropped (`tls_front` puts TLS in front this
    /// way: `Broker::start_behind_tls`).
    pub fn start_behind(
        front: impl FnOnce(TcpListener, u16) -> Box<dyn Any + Send> + 'static,
    ) -> Option<Broker> {
        Broker::start_fronted(SQLITE, Front::Custom(Box::new(front)))
    }

    fn start_fronted(storage: &'static str, front: Front) -> Option<Broker> {
        let Some(bin) = find_tansu() else {
            let required = std::env::var_os("CI").is_some()
                || std::env::var_os("WACRM_REQUIRE_KAFKA").is_some();
            assert!(!required, "tansu is not installed but the Kafka suites are required here (run .ci/run, or `cargo install tansu --version 0.6.0 --features dynostore,libsql`)");
            eprintln!("skipping: no Kafka-protocol broker (install tansu to run the Kafka suites)");
            return None;
        };
        let broker_port = free_port();
        let clients = || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            (listener, port)
        };
        let (port, keeper, front) = match front {
            Front::Direct => (broker_port, None, None),
            Front::ReplyKeeper => {
                let (listener, port) = clients();
                (port, Some(reply_keeper::spawn(listener, broker_port)), None)
            }
            Front::Custom(start) => {
                let (listener, port) = clients();
                let (keeper_listener, keeper_port) = clients();
                let keeper = reply_keeper::spawn(keeper_listener, broker_port);
                (port, Some(keeper), Some(start(listener, keeper_port)))
            }
        };
        let mut broker = Broker {
            dir: tempfile::tempdir().unwrap(),
            port,
            broker_port,
            child: None,
            keeper,
            front,
            bin,
            storage,
            started: false,
            sasl: false,
        };
        broker.restart();
        Some(broker)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port tansu itself listens on (plaintext, whatever stands in front of it).
    pub fn plaintext_port(&self) -> u16 {
        self.broker_port
    }

    /// Restarts the broker requiring SASL from every client (tansu's `--authentication`):
    /// SCRAM-SHA-256 or SCRAM-SHA-512 against the credentials it stores (tansu 0.6 offers no
    /// other mechanism). Store them first, while no SASL is required: tansu answers nothing but
    /// the SASL handshake before a client authenticated. Needs SQLite storage, which keeps them.
    pub fn require_sasl(&mut self) {
        assert!(
            self.storage == SQLITE,
            "an in-memory broker keeps no credentials"
        );
        self.stop();
        self.sasl = true;
        self.restart();
    }

    /// Starts (again) on the same port and storage.
    pub fn restart(&mut self) {
        assert!(
            !(self.started && self.storage == MEMORY),
            "an in-memory broker loses everything on restart"
        );
        self.started = true;
        let listen = format!("tcp://127.0.0.1:{}", self.broker_port);
        let advertised = format!("tcp://127.0.0.1:{}", self.port);
        let mut args = vec![
            "broker",
            "--listener-url",
            &listen,
            "--advertised-listener-url",
            &advertised,
            "--storage-engine",
            self.storage,
        ];
        if self.sasl {
            args.push("--authentication");
        }
        let child = Command::new(&self.bin)
            .current_dir(self.dir.path())
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("WACRM_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(self.log_file())
            .stderr(self.log_file())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.broker_port)).is_err() {
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

    /// Whether the broker answers a new client's metadata request (Kafka `Metadata` v0, all
    /// topics) within `within`: tansu 0.6 can stop answering everyone while its port stays
    /// open. Asked through the [`reply_keeper`] when there is one, so that giving up on the
    /// reply cannot itself stop the broker.
    pub fn answers_metadata(&self, within: Duration) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(within));
        let _ = stream.set_write_timeout(Some(within));
        let client = b"wacrm-probe";
        let mut body = Vec::new();
        body.extend_from_slice(&3i16.to_be_bytes()); // api key: Metadata
        body.extend_from_slice(&0i16.to_be_bytes()); // version 0
        body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
        body.extend_from_slice(&(client.len() as i16).to_be_bytes());
        body.extend_from_slice(client);
        body.extend_from_slice(&0i32.to_be_bytes()); // no topics named: all of them
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        if stream.write_all(&frame).is_err() {
            return false;
        }
        let mut head = [0u8; 8];
        stream.read_exact(&mut head).is_ok() && head[4..8] == 7i32.to_be_bytes()
    }

    /// Freezes the broker (SIGSTOP): its port stays open and nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill {signal}");
        }
    }

    /// Cuts every client off: their connections are closed and new ones are closed at once, as
    /// when the broker is down, while the broker itself runs on (the keeper still takes the
    /// replies owed on the connections it closed). Needs a broker behind a [`reply_keeper`].
    pub fn cut_clients_off(&self) {
        self.keeper
            .as_ref()
            .expect("a broker behind a reply keeper")
            .cut();
    }

    /// Lets clients reach the broker again after [`Broker::cut_clients_off`].
    pub fn let_clients_back(&self) {
        self.keeper
            .as_ref()
            .expect("a broker behind a reply keeper")
            .mend();
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
            // The whole log outlives the temporary directory, for what came before the tail.
            let kept = std::env::temp_dir().join(format!("wacrm-tansu-{}.log", self.port));
            if std::fs::copy(self.dir.path().join("broker.log"), &kept).is_ok() {
                eprintln!("--- the whole tansu log: {} ---", kept.display());
            }
        }
        self.stop();
    }
}

/// A loopback proxy in front of tansu that never lets a reply go undelivered from tansu's side.
///
/// Each client connection gets its own connection to the broker. Requests and replies are
/// Kafka frames (a 4-byte big-endian length, then that many bytes); the keeper counts the
/// requests it forwarded and the replies it read back. When a client goes away (killed, or
/// librdkafka dropping a connection whose request timed out), the keeper stops forwarding but
/// keeps the broker's side open, reading and discarding, until every forwarded request has
/// its reply (or [`DRAIN_BOUND`] passes). When the broker goes away, the client's connection
/// is closed; while it is down, connections are accepted and closed at once. Its [`Switch`]
/// cuts every client off the same way while the broker runs on.
pub mod reply_keeper {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    /// How long a connection whose client left waits for the replies it is owed.
    pub const DRAIN_BOUND: Duration = Duration::from_secs(600);

    /// Whether clients are cut off, and the client connections to close when they are.
    #[derive(Default)]
    pub struct Switch {
        state: Mutex<SwitchState>,
    }

    #[derive(Default)]
    struct SwitchState {
        cut: bool,
        clients: Vec<TcpStream>,
    }

    impl Switch {
        /// Closes every client connection and every new one until [`Switch::mend`].
        pub fn cut(&self) {
            let mut state = self.state.lock().unwrap();
            state.cut = true;
            for client in state.clients.drain(..) {
                let _ = client.shutdown(Shutdown::Both);
            }
        }

        /// Lets new client connections through again.
        pub fn mend(&self) {
            self.state.lock().unwrap().cut = false;
        }

        /// Whether `client` may go on; it is remembered, to be closed by the next cut.
        fn admit(&self, client: &TcpStream) -> bool {
            let mut state = self.state.lock().unwrap();
            if state.cut {
                return false;
            }
            if let Ok(clone) = client.try_clone() {
                state.clients.push(clone);
            }
            true
        }
    }

    /// Accepts clients on `listener` and proxies each to the broker on `broker_port`, on
    /// threads of its own, for the rest of the process.
    pub fn spawn(listener: TcpListener, broker_port: u16) -> Arc<Switch> {
        let switch = Arc::new(Switch::default());
        let admitted = switch.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if admitted.admit(&client) {
                    std::thread::spawn(move || serve(client, broker_port));
                }
                // Not admitted: dropped here, so the client sees its connection closed.
            }
        });
        switch
    }

    /// Counts complete Kafka frames in a byte stream.
    #[derive(Default)]
    pub struct FrameCounter {
        header: Vec<u8>,
        remaining: usize,
    }

    impl FrameCounter {
        /// Feeds the next bytes of the stream; returns how many frames they completed.
        pub fn feed(&mut self, mut bytes: &[u8]) -> usize {
            let mut completed = 0;
            while !bytes.is_empty() {
                if self.remaining > 0 {
                    let n = self.remaining.min(bytes.len());
                    self.remaining -= n;
                    bytes = &bytes[n..];
                    if self.remaining == 0 {
                        completed += 1;
                    }
                    continue;
                }
                let n = (4 - self.header.len()).min(bytes.len());
                self.header.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if self.header.len() == 4 {
                    let size = u32::from_be_bytes([
                        self.header[0],
                        self.header[1],
                        self.header[2],
                        self.header[3],
                    ]) as usize;
                    self.header.clear();
                    if size == 0 {
                        completed += 1;
                    } else {
                        self.remaining = size;
                    }
                }
            }
            completed
        }
    }

    /// Replies owed on one connection, and whether the broker's side has closed.
    #[derive(Default)]
    struct Owed {
        replies: i64,
        broker_closed: bool,
    }

    fn serve(mut client: TcpStream, broker_port: u16) {
        let Ok(mut broker) = TcpStream::connect(("127.0.0.1", broker_port)) else {
            // The broker is down: the client sees its connection closed.
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = broker.set_nodelay(true);
        let owed = Arc::new((Mutex::new(Owed::default()), Condvar::new()));
        let (Ok(mut from_broker), Ok(mut to_client)) = (broker.try_clone(), client.try_clone())
        else {
            return;
        };
        let replies = {
            let owed = owed.clone();
            std::thread::spawn(move || {
                let mut frames = FrameCounter::default();
                let mut buf = vec![0u8; 64 * 1024];
                let mut client_open = true;
                while let Ok(n) = from_broker.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let done = frames.feed(&buf[..n]) as i64;
                    if client_open && to_client.write_all(&buf[..n]).is_err() {
                        client_open = false;
                    }
                    let (lock, changed) = &*owed;
                    lock.lock().unwrap().replies -= done;
                    changed.notify_all();
                }
                let _ = to_client.shutdown(Shutdown::Both);
                let (lock, changed) = &*owed;
                lock.lock().unwrap().broker_closed = true;
                changed.notify_all();
            })
        };
        let mut frames = FrameCounter::default();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = client.read(&mut buf) {
            if n == 0 {
                break;
            }
            let done = frames.feed(&buf[..n]) as i64;
            owed.0.lock().unwrap().replies += done;
            if broker.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        // The client left (or the broker did): wait for what the broker still owes.
        let deadline = Instant::now() + DRAIN_BOUND;
        let (lock, changed) = &*owed;
        let mut state = lock.lock().unwrap();
        while state.replies > 0 && !state.broker_closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = changed.wait_timeout(state, left).unwrap().0;
        }
        drop(state);
        let _ = broker.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
        let _ = replies.join();
    }
}
