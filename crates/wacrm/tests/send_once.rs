//! At most once to the customer, through the real binary: a Graph call whose answer comes after
//! the client's timeout is not sent again, and SIGTERM while a call is on the wire neither
//! abandons it nor lets the restart send it a second time. Meta has no idempotency key for
//! sends: every repeated call is a second WhatsApp message.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Bus, Service};
use serde_json::{json, Value};
use wacrm_testkit::graph::{GraphConfig, GraphFake};
use wacrm_testkit::webhooks;

const NUMBER: &str = "106540352242922";
const CONTACT: &str = "5511987001234";

/// A service on the embedded bus sending through `graph`, with `env` on top.
async fn service_for(graph: &GraphFake, env: &[(&str, String)]) -> (Service, String) {
    let mut service = Service::new(Bus::Embedded).with_env(&[
        ("WACRM_WHATSAPP__ACCESS_TOKEN", graph.config().access_token),
        ("WACRM_WHATSAPP__GRAPH_BASE_URL", graph.base_url()),
        ("WACRM_WHATSAPP__GRAPH_VERSION", graph.config().version),
        ("WACRM_WHATSAPP__RETRY_BASE_MS", "50".into()),
    ]);
    service = service.with_env(env);
    let agent = service
        .create_key(&["--name", "Bruno", "--role", "agent", "--number", NUMBER])
        .unwrap();
    service.start().await;
    // The customer writes first: the window is open.
    let now = chrono::Utc::now().timestamp();
    let inbound = webhooks::text(NUMBER, CONTACT, "wamid.in.once", "Oi", now - 60);
    assert_eq!(service.post_webhook(inbound).await, 200);
    service
        .wait_stored(
            &agent,
            ["wamid.in.once".to_owned()],
            Duration::from_secs(30),
        )
        .await;
    (service, agent)
}

async fn send(service: &Service, agent: &str, text: &str) -> String {
    let response = service
        .client
        .post(service.url("/v1/messages"))
        .header("authorization", format!("Bearer {agent}"))
        .json(&json!({"from": NUMBER, "to": CONTACT, "type": "text", "body": text}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.unwrap();
    body["request_id"].as_str().unwrap().to_owned()
}

/// Polls the request until `done` holds for its state.
async fn wait_request(service: &Service, agent: &str, id: &str, done: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = service.get_json(&format!("/v1/requests/{id}"), agent).await;
        if status == 200 && done.iter().any(|s| body["state"] == *s) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} never reached {done:?}: {status} {body}\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_slower_than_the_timeout_is_unknown_and_sent_once() {
    // Meta sends the message and answers after 1.5 s; wacrm waits 300 ms.
    let graph = GraphFake::start(GraphConfig {
        answer_delay: Duration::from_millis(1500),
        ..GraphConfig::default()
    })
    .await;
    let (mut service, agent) = service_for(
        &graph,
        &[
            ("WACRM_WHATSAPP__REQUEST_TIMEOUT_MS", "300".into()),
            ("WACRM_WHATSAPP__MAX_RETRY_MS", "8000".into()),
        ],
    )
    .await;
    let id = send(&service, &agent, "Seu pedido saiu").await;
    let request = wait_request(&service, &agent, &id, &["unknown", "failed", "sent"]).await;
    // Long enough for every retry the old sender made within max_retry_ms.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        graph.sent().len(),
        1,
        "one accepted request reached WhatsApp {} times",
        graph.sent().len()
    );
    assert_eq!(request["state"], "unknown", "{request}");
    assert!(
        request["reason"]
            .as_str()
            .unwrap()
            .contains("may or may not"),
        "{request}"
    );
    assert_eq!(request["attempts"], 1, "{request}");
    service.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_call_neither_abandons_it_nor_sends_it_again() {
    // The answer takes 2 s: SIGTERM arrives while the call is on the wire.
    let graph = GraphFake::start(GraphConfig {
        answer_delay: Duration::from_secs(2),
        ..GraphConfig::default()
    })
    .await;
    let (mut service, agent) = service_for(
        &graph,
        &[("WACRM_WHATSAPP__REQUEST_TIMEOUT_MS", "10000".into())],
    )
    .await;
    let id = send(&service, &agent, "Chegou?").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while graph.sent().is_empty() {
        assert!(Instant::now() < deadline, "never sent\n{}", service.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.terminate();
    let after_stop = wacrm_store_state(&service, &id).await;
    assert_ne!(
        after_stop, "accepted",
        "a request on the wire was handed back for sending again"
    );
    service.start().await;
    let request = wait_request(&service, &agent, &id, &["sent", "unknown"]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        graph.sent().len(),
        1,
        "one request reached WhatsApp {} times across a restart",
        graph.sent().len()
    );
    assert_eq!(
        request["state"], "sent",
        "the call finished within the shutdown bound: {request}"
    );
    service.terminate();
}

/// A request's state read from the stopped service's store file.
async fn wacrm_store_state(service: &Service, id: &str) -> String {
    use sea_orm_migration::sea_orm::{self, ConnectionTrait, Statement};
    let url = format!(
        "sqlite://{}?mode=ro",
        service.path().join("store.db").display()
    );
    let db = sea_orm::Database::connect(url).await.unwrap();
    let row = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT state FROM outbound_requests WHERE request_id = ?",
            [id.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<String>("", "state").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_cannot_aim_the_business_token_at_another_graph_path() {
    let graph = GraphFake::start(GraphConfig::default()).await;
    let (mut service, _) = service_for(&graph, &[]).await;
    // A key for every number: only the number's own checks stand in the way.
    let everyone = ["--name", "Carla", "--role", "agent"];
    let agent = service
        .create_key(&[&everyone[..], &["--all-numbers"]].concat())
        .or_else(|_| service.create_key(&everyone))
        .unwrap();
    for from in [
        "123/subscribed_apps?override_callback_uri=https://attacker.example/hook#",
        "999999999999999",
    ] {
        let response = service
            .client
            .post(service.url("/v1/messages"))
            .header("authorization", format!("Bearer {agent}"))
            .json(&json!({"from": from, "to": CONTACT, "type": "text", "body": "oi"}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 422, "{from}: {body}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        graph.requests().is_empty(),
        "{:?}",
        graph
            .requests()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
    // The number's sending health is untouched, and ingest stays ready.
    let (_, status) = service.get_json("/v1/status", &agent).await;
    assert!(
        status["sending"]["numbers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["state"] == "ok"),
        "{status}"
    );
    assert_eq!(service.get_text("/readyz", None).await.0, 200);
    service.terminate();
}
