//! The Kafka backend on an encrypted listener, with and without SASL: the properties an operator
//! sets for a managed or encrypted cluster (`security.protocol`, `ssl.ca.location`, `sasl.*`
//! under `[bus.kafka.properties]` or in the environment) against tansu behind a TLS front
//! (`support::tls_front`) whose CA is made at test time.
//!
//! With librdkafka built without OpenSSL (before rdkafka's `ssl-vendored` feature), every client
//! in the TLS and SASL_SSL tests failed at creation: `Unsupported value "ssl" for configuration
//! property "security.protocol": OpenSSL not available at build time`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use support::broker::Broker;
use support::tls_front::Pki;
use wacrm_bus::kafka::{check_topics, expected_topics, KafkaBus, KafkaConfig, TopicState};
use wacrm_bus::{EventBus, OutboundRecord, Record, Subscription, Topics};

/// Longest a failing call may take here: its own timeout (5 s at most below) and some slack for
/// a loaded machine. Past it, the call hung.
const FAILS_WITHIN: Duration = Duration::from_secs(20);

/// Every log line of this test binary, wacrm's (`tracing`) and librdkafka's (`log`) alike, as the
/// service's own subscriber collects them: what an operator reads when the bus cannot connect.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .init();
    });
}

/// The captured lines that name `port`.
fn log_lines_about(port: u16) -> Vec<String> {
    let needle = format!("127.0.0.1:{port}");
    String::from_utf8_lossy(&LOGS.lock().unwrap())
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

/// Waits (a bounded time) for a log line about `port` that contains `what`.
async fn logged(port: u16, what: &str) -> bool {
    let deadline = Instant::now() + FAILS_WITHIN;
    while Instant::now() < deadline {
        if log_lines_about(port).iter().any(|l| l.contains(what)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The bus configuration for `broker` with `properties`, as `[bus.kafka.properties]` gives them.
fn config(broker: &Broker, properties: &[(&str, &str)]) -> KafkaConfig {
    KafkaConfig {
        brokers: broker.bootstrap(),
        partitions: 2,
        session_timeout_ms: 6_000,
        request_timeout_ms: 5_000,
        properties: properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..KafkaConfig::default()
    }
}

fn record(topic: &str, key: &str, n: usize) -> OutboundRecord {
    OutboundRecord {
        topic: topic.into(),
        key: key.into(),
        headers: vec![("n".into(), n.to_string())],
        payload: n.to_string().into_bytes(),
    }
}

/// Creates the topics under `prefix`, publishes 20 records under two keys, consumes them all in
/// each key's order and commits them: the whole life of the bus, on `cfg`.
async fn topics_publish_consume(cfg: &KafkaConfig, prefix: &str) {
    let topics = Topics::with_prefix(prefix);
    let created = check_topics(cfg, &expected_topics(&topics, cfg), true)
        .await
        .unwrap();
    assert!(
        created.iter().all(|(_, s)| *s == TopicState::Ok),
        "{created:?}"
    );

    let bus = KafkaBus::open(cfg, Duration::from_secs(10)).unwrap();
    bus.check().await.unwrap();
    let keys = [
        "106540352242922/phone:+5511987650001",
        "106540352242922/phone:+5511987650002",
    ];
    bus.publish(
        (0..20)
            .map(|n| record(&topics.conversations, keys[n % 2], n))
            .collect(),
    )
    .await
    .unwrap();

    let mut sub = bus
        .subscribe(
            &format!("{prefix}group"),
            std::slice::from_ref(&topics.conversations),
        )
        .await
        .unwrap();
    let got = drain(&mut sub, 20, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 20);
    for key in keys {
        let seen: Vec<usize> = got
            .iter()
            .filter(|r| r.key == key)
            .map(|r| String::from_utf8_lossy(&r.payload).parse().unwrap())
            .collect();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{key}: {seen:?}");
    }
    sub.commit(&got).await.unwrap();
    sub.close().await.unwrap();
    bus.close(Duration::from_secs(5)).await.unwrap();
}

async fn drain(sub: &mut Box<dyn Subscription>, want: usize, within: Duration) -> Vec<Record> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        out.extend(sub.poll(1000, Duration::from_millis(500)).await.unwrap());
    }
    out
}

/// `ssl` with the CA that signed the broker's certificate, named by `ssl.ca.location` as an
/// operator would: topics are created, records published and consumed, all through TLS (the
/// broker advertises only the TLS port, so no client reached the plaintext one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_with_the_configured_ca_creates_topics_publishes_and_consumes() {
    capture_logs();
    let pki = Pki::generate("wacrm");
    let Some((broker, front)) = Broker::start_behind_tls(&pki) else {
        return;
    };
    let ca = pki.ca_location();
    let cfg = config(
        &broker,
        &[("security.protocol", "ssl"), ("ssl.ca.location", &ca)],
    );

    topics_publish_consume(&cfg, "tls.").await;

    assert!(front.handshakes() > 0, "no client came through TLS");
    assert!(front.failures().is_empty(), "{:?}", front.failures());
}

/// A CA that did not sign the broker's certificate: every call fails within its own timeout
/// (none hangs), and the log says why, naming the broker and `ssl.ca.location`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_with_another_ca_fails_in_bounded_time_and_says_why() {
    capture_logs();
    let pki = Pki::generate("wacrm");
    let stranger = Pki::generate("stranger");
    let Some((broker, front)) = Broker::start_behind_tls(&pki) else {
        return;
    };
    let ca = stranger.ca_location();
    let cfg = config(
        &broker,
        &[("security.protocol", "ssl"), ("ssl.ca.location", &ca)],
    );
    let topics = Topics::with_prefix("tls-stranger.");

    let started = Instant::now();
    let created = tokio::time::timeout(
        FAILS_WITHIN,
        check_topics(&cfg, &expected_topics(&topics, &cfg), true),
    )
    .await
    .expect("creating topics hung");
    assert!(created.is_err(), "{created:?}");

    let bus = KafkaBus::open(&cfg, Duration::from_secs(3)).unwrap();
    let checked = tokio::time::timeout(FAILS_WITHIN, bus.check())
        .await
        .expect("the bus check hung");
    assert!(checked.is_err(), "{checked:?}");
    let published = tokio::time::timeout(
        FAILS_WITHIN,
        bus.publish(vec![record(&topics.conversations, "k", 0)]),
    )
    .await
    .expect("publishing hung");
    assert!(published.is_err(), "{published:?}");
    assert!(started.elapsed() < 3 * FAILS_WITHIN);

    // librdkafka's own words, through the service's log: the handshake failed because the
    // certificate could not be verified, and what to check.
    assert!(
        logged(broker.port, "certificate verify failed").await,
        "{:#?}",
        log_lines_about(broker.port)
    );
    assert!(
        log_lines_about(broker.port)
            .iter()
            .any(|l| l.contains("ssl.ca.location")),
        "{:#?}",
        log_lines_about(broker.port)
    );
    // The broker's side: the client refused its certificate, and never got through.
    assert_eq!(front.handshakes(), 0);
    assert!(
        front.failures().iter().any(|f| f.contains("UnknownCA")),
        "{:?}",
        front.failures()
    );
}

/// SASL_SSL with SCRAM-SHA-512, the usual managed-Kafka setting, configured through
/// environment-style names (`WACRM_BUS__KAFKA__PROPERTIES__SASL_PASSWORD` arrives as
/// `sasl_password`): the client signs in with the stored credential and the bus works; the same
/// with a wrong password is refused in bounded time, and the log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_scram_sha_512_signs_in_and_a_wrong_password_is_refused() {
    capture_logs();
    let pki = Pki::generate("wacrm");
    let Some((mut broker, front)) = Broker::start_behind_tls(&pki) else {
        return;
    };
    broker.add_scram_sha512_user("wacrm-svc", "pa55-w0rd");
    broker.require_sasl();
    let ca = pki.ca_location();
    let sasl = |password: &str| {
        config(
            &broker,
            &[
                ("security_protocol", "SASL_SSL"),
                ("sasl_mechanisms", "SCRAM-SHA-512"),
                ("sasl_username", "wacrm-svc"),
                ("sasl_password", password),
                ("ssl_ca_location", &ca),
            ],
        )
    };

    topics_publish_consume(&sasl("pa55-w0rd"), "sasl.").await;
    assert!(front.handshakes() > 0, "no client came through TLS");

    let wrong = sasl("not-the-password");
    let topics = Topics::with_prefix("sasl-wrong.");
    let created = tokio::time::timeout(
        FAILS_WITHIN,
        check_topics(&wrong, &expected_topics(&topics, &wrong), true),
    )
    .await
    .expect("creating topics hung");
    assert!(created.is_err(), "{created:?}");
    // The admin client says no more than that (librdkafka's explanation stays on a queue it
    // does not read); the service's producer logs it.
    let bus = KafkaBus::open(&wrong, Duration::from_secs(3)).unwrap();
    let published = tokio::time::timeout(
        FAILS_WITHIN,
        bus.publish(vec![record(&topics.conversations, "k", 0)]),
    )
    .await
    .expect("publishing hung");
    assert!(published.is_err(), "{published:?}");
    assert!(
        logged(broker.port, "SASL SCRAM authentication failed").await,
        "{:#?}",
        log_lines_about(broker.port)
    );
    // The password never reaches a log line, even a failing one.
    assert!(!String::from_utf8_lossy(&LOGS.lock().unwrap()).contains("not-the-password"));
}

/// SASL_SSL with PLAIN (Confluent Cloud's setting): the producer, consumer and admin clients
/// are created, and their SASL handshake reaches the broker over TLS. tansu 0.6 has no PLAIN
/// (it offers SCRAM-SHA-256/512, and only when it requires SASL), so it answers the handshake
/// with "unsupported mechanism": a PLAIN sign-in cannot be tested end to end here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_plain_clients_are_created_and_reach_the_sasl_handshake() {
    capture_logs();
    let pki = Pki::generate("wacrm");
    let Some((broker, front)) = Broker::start_behind_tls(&pki) else {
        return;
    };
    let ca = pki.ca_location();
    let cfg = config(
        &broker,
        &[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "api-key"),
            ("sasl.password", "api-secret"),
            ("ssl.ca.location", &ca),
        ],
    );
    let bus = KafkaBus::open(&cfg, Duration::from_secs(3)).unwrap();
    let sub = bus
        .subscribe("plain-group", &["sasl-plain.conversations".to_owned()])
        .await
        .unwrap();
    let topics = Topics::with_prefix("sasl-plain.");
    let created = tokio::time::timeout(
        FAILS_WITHIN,
        check_topics(&cfg, &expected_topics(&topics, &cfg), true),
    )
    .await
    .expect("creating topics hung");
    assert!(created.is_err(), "tansu has no PLAIN: {created:?}");
    assert!(
        logged(broker.port, "SASL PLAIN mechanism handshake failed").await,
        "{:#?}",
        log_lines_about(broker.port)
    );
    assert!(
        front.handshakes() > 0,
        "the SASL handshake did not come through TLS"
    );
    sub.close().await.unwrap();
}

/// Environment variable names cannot hold dots: `WACRM_BUS__KAFKA__PROPERTIES__SASL_PASSWORD`
/// reaches the configuration as `sasl_password` (the configuration loader lower-cases it). The
/// client gets librdkafka's dotted name, and librdkafka accepts every one of them (it refuses an
/// unknown name when the client is created).
#[test]
fn environment_style_property_names_reach_the_client_with_dots() {
    // A real file: librdkafka reads the CA when it creates the client.
    let pki = Pki::generate("wacrm");
    let ca = pki.ca_location();
    let properties: BTreeMap<String, String> = [
        ("security_protocol", "SASL_SSL"),
        ("sasl_mechanisms", "SCRAM-SHA-512"),
        ("sasl_username", "wacrm-svc"),
        ("sasl_password", "pa55-w0rd"),
        ("SSL_CA_LOCATION", &ca),
        ("ssl.endpoint.identification.algorithm", "https"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let cfg = KafkaConfig {
        properties,
        ..KafkaConfig::default()
    };
    let mut mapped = cfg.librdkafka_properties();
    mapped.sort();
    assert_eq!(
        mapped,
        vec![
            ("sasl.mechanisms".to_owned(), "SCRAM-SHA-512"),
            ("sasl.password".to_owned(), "pa55-w0rd"),
            ("sasl.username".to_owned(), "wacrm-svc"),
            ("security.protocol".to_owned(), "SASL_SSL"),
            ("ssl.ca.location".to_owned(), ca.as_str()),
            ("ssl.endpoint.identification.algorithm".to_owned(), "https"),
        ]
    );
    // The producer is created (no connection yet): every name and value was accepted.
    let bus = KafkaBus::open(&cfg, Duration::from_secs(1));
    assert!(bus.is_ok(), "{:?}", bus.err());
}

/// The SCRAM credential the suite stores is salted as RFC 5802 says (PBKDF2 with
/// HMAC-SHA-512; the published test vectors).
#[test]
fn scram_salting_matches_published_vectors() {
    let hex = |b: Vec<u8>| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let one = hex(support::scram::salted_password(b"password", b"salt", 1));
    assert!(one.starts_with("867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252"));
    let two = hex(support::scram::salted_password(b"password", b"salt", 2));
    assert!(two.starts_with("e1d9c16aa681708a45f5c7c4e215ceb66e011a2e9f0040713f18aefdb866d53c"));
}
