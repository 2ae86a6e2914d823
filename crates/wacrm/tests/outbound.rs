//! Outbound end to end through the real binary, on every bus backend: an agent sends through the
//! API (twice, with one Idempotency-Key) → the sender → the Graph API fake; WhatsApp's status
//! webhooks (sent, delivered, read) → the message shows `read`; the CRM logs it with the agent's
//! name; the audit log holds the send.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{backends, Bus, Service};
use serde_json::{json, Value};
use wacrm_testkit::graph::{GraphConfig, GraphFake};
use wacrm_testkit::hubspot::{FakeConfig, HubSpotFake};
use wacrm_testkit::webhooks;

const NUMBER: &str = "106540352242922";
const CONTACT: &str = "5511987001234";

impl Service {
    fn key(&self, name: &str, role: &str) -> String {
        let out = self
            .command()
            .args([
                "keys", "create", "--name", name, "--role", role, "--number", NUMBER,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    async fn post_json(&self, path: &str, key: &str, body: &Value, idem: &str) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .header("authorization", format!("Bearer {key}"))
            .header("idempotency-key", idem)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls `path` until `done` holds for its JSON.
    async fn wait_json(
        &self,
        path: &str,
        key: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.get_json(path, key).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{} ({}): {what}; last answer {status} {body}\n{}",
                path,
                self.bus.name(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn send_and_follow_statuses(bus: Bus) {
    let graph = GraphFake::start(GraphConfig::default()).await;
    let hubspot = HubSpotFake::start(FakeConfig::default()).await;
    let mut service = Service::new(bus).with_env(&[
        ("WACRM_WHATSAPP__ACCESS_TOKEN", graph.config().access_token),
        ("WACRM_WHATSAPP__GRAPH_BASE_URL", graph.base_url()),
        ("WACRM_WHATSAPP__GRAPH_VERSION", graph.config().version),
        ("WACRM_WHATSAPP__RETRY_BASE_MS", "50".into()),
        ("WACRM_CRM__CONNECTIONS__MAIN__KIND", "hubspot".into()),
        (
            "WACRM_CRM__CONNECTIONS__MAIN__TOKEN",
            FakeConfig::default().token,
        ),
        ("WACRM_CRM__CONNECTIONS__MAIN__BASE_URL", hubspot.base_url()),
    ]);
    let out = service
        .command()
        .args(["crm", "setup", "hubspot", "--connection", "main"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agent = service.key("Bruno Agent", "agent");
    let admin = service.admin_key();
    service.start().await;

    // The customer writes first: the window opens.
    let now = chrono::Utc::now().timestamp();
    let inbound = webhooks::text(NUMBER, CONTACT, "wamid.in.e2e", "Oi, meu pedido?", now - 60);
    assert_eq!(service.post_webhook(inbound).await, 200);
    service
        .wait_stored(&agent, ["wamid.in.e2e".to_owned()], Duration::from_secs(30))
        .await;

    // The agent answers; the client retries with the same Idempotency-Key.
    let message = json!({"from": NUMBER, "to": CONTACT, "type": "text",
                         "body": "Saiu para entrega hoje!", "reply_to": "wamid.in.e2e"});
    let (s1, first) = service
        .post_json("/v1/messages", &agent, &message, "reply-1")
        .await;
    let (s2, again) = service
        .post_json("/v1/messages", &agent, &message, "reply-1")
        .await;
    assert_eq!((s1, s2), (202, 202), "{first} {again}");
    assert_eq!(first["request_id"], again["request_id"]);
    let request_id = first["request_id"].as_str().unwrap().to_owned();

    let request = service
        .wait_json(
            &format!("/v1/requests/{request_id}"),
            &agent,
            "request sent",
            |b| b["state"] == "sent",
        )
        .await;
    let wamid = request["wamid"].as_str().unwrap().to_owned();
    assert_eq!(graph.sent().len(), 1, "two identical requests send once");
    assert_eq!(graph.violations(), Vec::<String>::new());
    assert_eq!(graph.sent()[0].wamid, wamid);
    assert_eq!(
        graph.sent()[0].body["context"]["message_id"],
        "wamid.in.e2e"
    );

    // WhatsApp reports sent, delivered, read — delivered last, out of order.
    for (state, offset) in [("sent", 1), ("read", 3), ("delivered", 2)] {
        let body = webhooks::status(NUMBER, CONTACT, &wamid, state, now + offset, None);
        assert_eq!(service.post_webhook(body).await, 200);
    }
    let shown = service
        .wait_json(
            &format!("/v1/messages/{wamid}"),
            &agent,
            "message read",
            |b| b["status"] == "read" && b["status_history"].as_array().map(Vec::len) == Some(3),
        )
        .await;
    assert_eq!(shown["direction"], "outbound");
    assert_eq!(shown["sent_by"]["name"], "Bruno Agent");
    let request = service
        .wait_json(
            &format!("/v1/requests/{request_id}"),
            &agent,
            "request detail",
            |b| b["message"]["status"] == "read",
        )
        .await;
    assert_eq!(request["message"]["id"], wamid.as_str());

    // Marking the customer's message as read reaches WhatsApp.
    let (status, read) = service
        .post_json(
            "/v1/messages/wamid.in.e2e/read",
            &agent,
            &json!({}),
            "read-1",
        )
        .await;
    assert_eq!(status, 202, "{read}");
    let read_id = read["request_id"].as_str().unwrap().to_owned();
    service
        .wait_json(
            &format!("/v1/requests/{read_id}"),
            &agent,
            "marked read",
            |b| b["state"] == "sent",
        )
        .await;
    assert_eq!(
        graph.mark_read(),
        vec![(NUMBER.to_owned(), "wamid.in.e2e".to_owned())]
    );

    // The CRM logs the outbound message with the employee's name.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logged = hubspot.communications().iter().any(|c| {
            c.properties
                .get("hs_communication_body")
                .is_some_and(|b| b.contains("Bruno Agent"))
        });
        if logged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "CRM never logged the outbound message\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The audit log holds both send calls.
    let (_, audit) = service
        .get_json("/v1/audit?action=messages.send", &admin)
        .await;
    let sends: Vec<&Value> = audit.as_array().unwrap().iter().collect();
    // The intent before the request existed, then each call's outcome.
    let outcomes: Vec<&str> = sends
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["requested", "ok", "ok"], "{audit}");
    assert!(sends.iter().all(|e| e["actor"] == "Bruno Agent"));
    assert!(sends.iter().all(|e| e["target"] == request_id.as_str()));
    service.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_sends_and_sees_it_read_on_every_backend() {
    for bus in backends() {
        send_and_follow_statuses(bus).await;
    }
}
