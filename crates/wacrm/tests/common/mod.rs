//! Drives the real `wacrm` binary, on the embedded bus or on Kafka (tansu).
#![allow(dead_code, clippy::unwrap_used)]

#[path = "../../../wacrm-bus/tests/support/broker.rs"]
pub mod broker;
pub mod browser;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::Broker;
use wacrm_whatsapp::signature::sign;

pub const SECRET: &str = "e2e-secret";
/// The consumers' `session.timeout.ms` of a test service on Kafka.
pub const KAFKA_SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// How many unreadable messages [`Service::not_stored`] asks about in one pass.
const NOT_STORED_LOOKS: usize = 20;

/// Which bus the service runs on.
pub enum Bus {
    Embedded,
    Kafka(Broker),
    /// A broker several services share, owned by the test (its bootstrap address).
    SharedKafka(String),
}

impl Bus {
    pub fn name(&self) -> &'static str {
        match self {
            Bus::Embedded => "embedded",
            Bus::Kafka(_) | Bus::SharedKafka(_) => "kafka",
        }
    }
}

/// Every backend available here: embedded always, Kafka when a broker can be started.
pub fn backends() -> Vec<Bus> {
    let mut out = vec![Bus::Embedded];
    if let Some(broker) = Broker::start() {
        out.push(Bus::Kafka(broker));
    }
    out
}

pub struct Service {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub child: Option<Child>,
    pub client: reqwest::Client,
    pub bus: Bus,
    env: Vec<(String, String)>,
    program: PathBuf,
}

impl Service {
    /// Adds configuration (environment variables) before start.
    pub fn with_env(mut self, vars: &[(&str, String)]) -> Service {
        self.env
            .extend(vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        self
    }

    pub fn new(bus: Bus) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let port = broker::free_port();
        let mut env = vec![
            (
                "WACRM_SERVER__LISTEN".to_owned(),
                format!("127.0.0.1:{port}"),
            ),
            (
                "WACRM_STORE__URL".to_owned(),
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("store.db").display()
                ),
            ),
            (
                "WACRM_BUS__EMBEDDED__PATH".to_owned(),
                dir.path().join("bus.db").display().to_string(),
            ),
            ("WACRM_WHATSAPP__APP_SECRET".to_owned(), SECRET.to_owned()),
            // CI raises it (`WACRM_TEST_SERVICE_LOG=info`) so that `.ci/scan-logs` searches
            // more of what the service says for personal data.
            (
                "WACRM_LOG".to_owned(),
                std::env::var("WACRM_TEST_SERVICE_LOG").unwrap_or_else(|_| "warn".to_owned()),
            ),
        ];
        let bootstrap = match &bus {
            Bus::Embedded => None,
            Bus::Kafka(broker) => Some(broker.bootstrap()),
            Bus::SharedKafka(bootstrap) => Some(bootstrap.clone()),
        };
        if let Some(bootstrap) = bootstrap {
            env.extend([
                ("WACRM_BUS__BACKEND".to_owned(), "kafka".to_owned()),
                ("WACRM_BUS__KAFKA__BROKERS".to_owned(), bootstrap),
                (
                    "WACRM_BUS__KAFKA__CREATE_TOPICS".to_owned(),
                    "true".to_owned(),
                ),
                ("WACRM_BUS__KAFKA__PARTITIONS".to_owned(), "3".to_owned()),
                (
                    "WACRM_BUS__KAFKA__SESSION_TIMEOUT_MS".to_owned(),
                    KAFKA_SESSION_TIMEOUT.as_millis().to_string(),
                ),
                (
                    "WACRM_BUS__PUBLISH_TIMEOUT_MS".to_owned(),
                    "3000".to_owned(),
                ),
            ]);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Service {
            dir,
            port,
            child: None,
            client,
            bus,
            env,
            program: PathBuf::from(env!("CARGO_BIN_EXE_wacrm")),
        }
    }

    /// Runs another build of wacrm (an integrator's binary) instead of `wacrm`.
    pub fn with_program(mut self, program: PathBuf) -> Service {
        self.program = program;
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.current_dir(self.dir.path())
            .envs(self.env.iter().cloned());
        cmd
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("wacrm.log"))
            .unwrap();
        let child = self
            .command()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready().await;
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "wacrm ({}) did not become ready:\n{}",
                self.bus.name(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("wacrm.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, and the exit must be clean and prompt.
    pub fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "wacrm exited with {status} on SIGTERM:\n{}",
                    self.log()
                );
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("wacrm did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn admin_key(&self) -> String {
        self.create_key(&["--name", "E2E", "--role", "admin", "--all-numbers"])
            .unwrap()
    }

    /// `wacrm keys create ARGS`: the printed key, or what the command wrote to stderr.
    pub fn create_key(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command()
            .args(["keys", "create"])
            .args(args)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// GET with an optional key: the status and the body as text.
    pub async fn get_text(&self, path: &str, key: Option<&str>) -> (u16, String) {
        let mut request = self.client.get(self.url(path));
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Posts a signed webhook; the status code, or 0 when the connection failed.
    pub async fn post_webhook(&self, body: Vec<u8>) -> u16 {
        let sig = sign(SECRET.as_bytes(), &body);
        match self
            .client
            .post(self.url("/webhooks/whatsapp"))
            .header("x-hub-signature-256", sig)
            .body(body)
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    pub async fn get_json(&self, path: &str, key: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get_text(path, Some(key)).await;
        (
            status,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits until every wamid is readable through the API.
    pub async fn wait_stored(
        &self,
        key: &str,
        wamids: impl IntoIterator<Item = String>,
        within: Duration,
    ) {
        let deadline = Instant::now() + within;
        let mut missing: Vec<String> = wamids.into_iter().collect();
        while !missing.is_empty() {
            if Instant::now() >= deadline {
                let missing = self.not_stored_exactly(key, missing).await;
                panic!(
                    "{}: {} acknowledged messages never reached the store{}\n{}",
                    self.bus.name(),
                    missing.len(),
                    self.kafka_whereabouts(&missing).await,
                    self.log()
                );
            }
            missing = self.not_stored(key, missing).await;
            if !missing.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// On Kafka, where the given wamids are in the conversations topic (partition:offset), read
    /// from the start by a consumer group of its own: for a failure's message, to tell a record
    /// the broker lost from one the consumers skipped.
    pub async fn kafka_whereabouts(&self, wamids: &[String]) -> String {
        use wacrm_bus::kafka::{KafkaBus, KafkaConfig};
        use wacrm_bus::EventBus;
        let brokers = match &self.bus {
            Bus::Kafka(broker) => broker.bootstrap(),
            Bus::SharedKafka(bootstrap) => bootstrap.clone(),
            Bus::Embedded => return String::new(),
        };
        let config = KafkaConfig {
            brokers,
            idempotence: false,
            ..KafkaConfig::default()
        };
        let Ok(bus) = KafkaBus::open(&config, Duration::from_secs(5)) else {
            return "; the log could not be read (no client)".into();
        };
        let group = format!(
            "diagnose-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let topic = wacrm_bus::Topics::default().conversations;
        let Ok(mut sub) = bus.subscribe(&group, std::slice::from_ref(&topic)).await else {
            return "; the log could not be read (no subscription)".into();
        };
        let mut found: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        let mut read = 0usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut idle_polls = 0;
        while Instant::now() < deadline && idle_polls < 3 {
            let records = sub
                .poll(1000, Duration::from_secs(2))
                .await
                .unwrap_or_default();
            if records.is_empty() {
                idle_polls += 1;
                continue;
            }
            idle_polls = 0;
            read += records.len();
            for r in records {
                let text = String::from_utf8_lossy(&r.payload);
                for w in wamids.iter().filter(|w| text.contains(w.as_str())) {
                    found
                        .entry(w.as_str())
                        .or_default()
                        .push(format!("{}:{}", r.partition, r.offset));
                }
            }
        }
        format!(
            "; in {topic} ({read} records read): {} of them at {:?}, not found: {:?}",
            found.len(),
            found,
            wamids
                .iter()
                .filter(|w| !found.contains_key(w.as_str()))
                .collect::<Vec<_>>()
        )
    }

    /// The wamids not readable through the API yet, as far as it looked: it stops at the
    /// [`NOT_STORED_LOOKS`]th unreadable one and returns the ones it did not ask about with
    /// them. Every read is audited, and the audit log is published to the bus: asking about
    /// thousands of missing messages every 200 ms put thousands of audit records a second on
    /// the bus whose consumers the test is waiting for.
    pub async fn not_stored(&self, key: &str, wamids: Vec<String>) -> Vec<String> {
        self.unreadable(key, wamids, NOT_STORED_LOOKS).await
    }

    /// Every wamid not readable through the API, each asked about: for a failure's message.
    pub async fn not_stored_exactly(&self, key: &str, wamids: Vec<String>) -> Vec<String> {
        self.unreadable(key, wamids, usize::MAX).await
    }

    async fn unreadable(&self, key: &str, wamids: Vec<String>, looks: usize) -> Vec<String> {
        let mut missing = Vec::new();
        let mut unasked = wamids.into_iter();
        for wamid in unasked.by_ref() {
            if self.get_json(&format!("/v1/messages/{wamid}"), key).await.0 != 200 {
                missing.push(wamid);
                if missing.len() == looks {
                    break;
                }
            }
        }
        missing.extend(unasked);
        missing
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.keep_log();
    }
}

impl Service {
    /// Copies the service's log into `WACRM_TEST_LOG_DIR` when it is set: CI searches every
    /// log of the suite for personal data afterwards (`.ci/scan-logs`).
    fn keep_log(&self) {
        let Some(dir) = std::env::var_os("WACRM_TEST_LOG_DIR") else {
            return;
        };
        let from = self.dir.path().join("wacrm.log");
        if !from.exists() {
            return;
        }
        let test = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "test".to_owned());
        let thread = std::thread::current()
            .name()
            .unwrap_or("main")
            .replace("::", "-");
        let to = Path::new(&dir).join(format!("{test}.{thread}.{}.log", self.port));
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::copy(&from, &to)) {
            eprintln!("could not keep {}: {e}", from.display());
        }
    }
}

/// A one-message text webhook from one of 25 contacts.
pub fn text_webhook(i: usize) -> (String, Vec<u8>) {
    let wamid = format!("wamid.e2e.{i:06}");
    let contact = contact_wa_id(i % 25);
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": format!("Cliente {}", i % 25)}, "wa_id": contact}],
            "messages": [{"from": contact, "id": wamid, "timestamp": (1_750_000_000 + i).to_string(),
                          "type": "text", "text": {"body": format!("mensagem {i}")}}]
        }}]}]
    });
    (wamid, serde_json::to_vec(&body).unwrap())
}

pub fn contact_wa_id(c: usize) -> String {
    format!("55119{:08}", 87_000_000 + c)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../wacrm-whatsapp/tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// `wacrm accounts create --username USERNAME --password-stdin ARGS…` with `password` on
/// standard input; panics with the command's error when it fails.
pub fn create_account(service: &Service, username: &str, password: &str, args: &[&str]) {
    use std::io::Write;
    let mut child = service
        .command()
        .args([
            "accounts",
            "create",
            "--username",
            username,
            "--password-stdin",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The TOTP code of `secret` `offset_s` seconds from now, as an authenticator app shows it.
pub fn totp_code_at(secret: &str, offset_s: i64) -> String {
    wacrm_store::accounts::totp_code(
        secret,
        chrono::Utc::now() + chrono::Duration::seconds(offset_s),
    )
    .unwrap()
}
