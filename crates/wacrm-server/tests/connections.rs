//! The accept loop over real loopback sockets: the head deadline (which also closes idle
//! keep-alive connections) and graceful shutdown.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wacrm_server::ServerConfig;

const PATIENCE: Duration = Duration::from_secs(10);
/// The head deadline of the tests about it: short, so that they are quick.
const HEAD_DEADLINE_MS: u64 = 300;
/// How long `/slow` takes: long enough that a test sees it still answering on a loaded machine.
const SLOW: Duration = Duration::from_millis(1_500);

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(header_read_timeout_ms: u64) -> Server {
    let app = Router::new().route("/", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(SLOW).await;
            "slow"
        }),
    );
    let config = ServerConfig {
        header_read_timeout_ms,
        ..ServerConfig::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task =
        tokio::spawn(async move { wacrm_server::serve(listener, app, &config, token).await });
    Server {
        addr,
        shutdown,
        task,
    }
}

async fn send(stream: &mut TcpStream, path: &str) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
}

/// Reads until a whole response whose body ends with `body` has arrived.
async fn response(stream: &mut TcpStream, body: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).ends_with(body) {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// Waits until the server closes the connection; what it sent before that.
async fn closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut got))
        .await
        .expect("the server kept the connection open")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

async fn served(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    send(&mut stream, "/").await;
    let answer = tokio::time::timeout(PATIENCE, response(&mut stream, "ok"))
        .await
        .expect("no answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stream
}

/// Waits until the server cuts `stream` off, which must not be before the head deadline of a
/// server started with [`HEAD_DEADLINE_MS`]; what it sent first.
async fn cut_off_at_the_head_deadline(stream: &mut TcpStream) -> String {
    let started = std::time::Instant::now();
    let sent = closed(stream).await;
    // The deadline may start a little before `started`: the connection was open already.
    let earliest = Duration::from_millis(HEAD_DEADLINE_MS - 50);
    assert!(
        started.elapsed() >= earliest,
        "cut off after {:?}, before the head deadline",
        started.elapsed()
    );
    sent
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_head_deadline() {
    let server = start(HEAD_DEADLINE_MS).await;
    let mut idle = served(server.addr).await;
    let sent = cut_off_at_the_head_deadline(&mut idle).await;
    assert_eq!(sent, "", "the idle connection got more than a close");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_cut_off() {
    let server = start(HEAD_DEADLINE_MS).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let sent = cut_off_at_the_head_deadline(&mut slow).await;
    assert!(
        !sent.starts_with("HTTP/1.1 2"),
        "a half head was answered: {sent}"
    );
    // The server still serves others.
    served(server.addr).await;
}

#[tokio::test]
async fn a_client_that_connects_and_sends_nothing_is_cut_off() {
    let server = start(HEAD_DEADLINE_MS).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let sent = cut_off_at_the_head_deadline(&mut silent).await;
    assert_eq!(sent, "", "a silent client got an answer");
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_then_stops_accepting() {
    let server = start(30_000).await;
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    send(&mut busy, "/slow").await;
    let sent = std::time::Instant::now();
    // An idle keep-alive connection must not hold shutdown up (its head deadline is 30 s).
    let _idle = served(server.addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown.cancel();

    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    assert!(
        sent.elapsed() >= SLOW - Duration::from_millis(50),
        "serve returned before the request in flight was answered"
    );
    let answer = tokio::time::timeout(PATIENCE, response(&mut busy, "slow"))
        .await
        .expect("the request in flight was not finished");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "still accepting after shutdown"
    );
}
