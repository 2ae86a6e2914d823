//! No phone number, message body or e-mail address reaches a log line or a dead-letter reason,
//! even when a third party quotes them back: the real binary at `WACRM_LOG=debug`, on every bus
//! backend, with a HubSpot fake that refuses some inputs with a validation error quoting them
//! (as HubSpot names the value it refused) and a Graph fake whose send failure quotes the
//! recipient, the body and an e-mail address. The whole log, every dead letter's reason, its
//! reason header and last error, and the failed send's reason and errors are then searched for
//! every spelling of every phone sent (E.164 with and without `+`, national, and Brazil's form
//! without the 9th digit, digits only and formatted) and for every body.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{backends, Bus, Service};
use serde_json::{json, Value};
use wacrm_core::E164;
use wacrm_testkit::graph::{GraphConfig, GraphError, GraphFake};
use wacrm_testkit::hubspot::{FakeConfig, Fault, HubSpotFake};
use wacrm_testkit::webhooks;

const NUMBER: &str = "106540352242922";
/// Contacts that write in (mobiles of Rio, area code 21, with the 9th digit).
const CONTACTS: usize = 6;
/// Messages each contact writes.
const PER_CONTACT: usize = 5;
/// The contact HubSpot refuses: its WhatsApp id is in every request about it.
const REFUSED_CONTACT: usize = 2;
/// Messages HubSpot refuses for their body (contact, message).
const REFUSED_BODIES: [(usize, usize); 2] = [(0, 1), (4, 3)];
/// The contact an agent's reply fails to.
const SEND_TO: usize = 5;
/// The e-mail address the Graph API's failure quotes.
const EMAIL: &str = "maria.sigilo@example.com.br";

fn phone(c: usize) -> String {
    format!("55219{:08}", 88_776_100 + c)
}

/// What the contact wrote: nothing in it that a log would print by chance.
fn body(c: usize, m: usize) -> String {
    format!("segredo {c}-{m} do pedido abacaxi-{c}{m}")
}

const REPLY: &str = "Resposta sigilosa para abacaxi-reply";

/// Every spelling of a contact's phone a leak could take.
fn spellings(c: usize) -> Vec<String> {
    let mut out = E164::parse(&phone(c)).unwrap().search_variants();
    out.push(phone(c));
    out.push(format!("+{}", phone(c)));
    out.sort();
    out.dedup();
    assert!(
        out.iter().any(|s| s == &format!("552188776{:03}", 100 + c)),
        "the form without the 9th digit: {out:?}"
    );
    out
}

/// The secrets found in `text`, each with a little of what surrounds it.
fn leaks(text: &str, secrets: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for secret in secrets {
        if let Some(at) = text.find(secret.as_str()) {
            let start = text[..at]
                .char_indices()
                .rev()
                .nth(80)
                .map_or(0, |(i, _)| i);
            let end = text[at..]
                .char_indices()
                .nth(secret.len() + 80)
                .map_or(text.len(), |(i, _)| at + i);
            found.push(format!("{secret:?} in …{}…", &text[start..end]));
        }
    }
    found
}

async fn post_json(service: &Service, path: &str, key: &str, body: &Value) -> (u16, Value) {
    let r = service
        .client
        .post(service.url(path))
        .header("authorization", format!("Bearer {key}"))
        .header("idempotency-key", "pii-reply-1")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Dead letters written by consumers (the CRM sync).
async fn consumer_dead_letters(service: &Service, key: &str) -> Vec<Value> {
    let (_, all) = service
        .get_json("/v1/dead-letters?limit=1000&include_resolved=true", key)
        .await;
    all.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|d| {
            d["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("consumer:"))
        })
        .collect()
}

async fn nothing_personal_in_logs(bus: Bus) {
    let hubspot = HubSpotFake::start(FakeConfig::default()).await;
    let graph = GraphFake::start(GraphConfig::default()).await;
    let mut service = Service::new(bus).with_env(&[
        ("WACRM_LOG", "debug".into()),
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
        (
            "WACRM_CRM__CONNECTIONS__MAIN__RECONCILE_AFTER_MS",
            "500".into(),
        ),
    ]);
    let name = service.bus.name();
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
    let admin = service.admin_key();

    // HubSpot refuses one contact (its WhatsApp id) and two messages (their bodies), quoting
    // what it refused.
    hubspot.inject(Fault::ValidationErrorFor(phone(REFUSED_CONTACT)));
    for (c, m) in REFUSED_BODIES {
        hubspot.inject(Fault::ValidationErrorFor(body(c, m)));
    }
    service.start().await;

    let now = chrono::Utc::now().timestamp();
    let mut wamids = Vec::new();
    for m in 0..PER_CONTACT {
        for c in 0..CONTACTS {
            let wamid = format!("wamid.pii.{c}.{m}");
            let webhook =
                webhooks::text(NUMBER, &phone(c), &wamid, &body(c, m), now - 60 + m as i64);
            assert_eq!(service.post_webhook(webhook).await, 200, "{name}");
            wamids.push(wamid);
        }
    }
    service
        .wait_stored(&admin, wamids.clone(), Duration::from_secs(60))
        .await;

    // An agent's reply fails at WhatsApp with a cause that quotes the recipient, the body and
    // an e-mail address.
    graph.fail_next(
        None,
        GraphError::Code {
            http_status: 400,
            code: 131_026,
            subcode: None,
            title: "Message undeliverable".into(),
            message: format!(
                "Recipient +{} ({EMAIL}) cannot receive \"{REPLY}\"",
                phone(SEND_TO)
            ),
        },
    );
    let reply = json!({"from": NUMBER, "to": phone(SEND_TO), "type": "text", "body": REPLY});
    let (status, accepted) = post_json(&service, "/v1/messages", &admin, &reply).await;
    assert_eq!(status, 202, "{name}: {accepted}");
    let request_id = accepted["request_id"].as_str().unwrap().to_owned();

    // Every message is on HubSpot or dead-lettered, and the reply has failed.
    let refused = PER_CONTACT + REFUSED_BODIES.len();
    let expected_on_hubspot = CONTACTS * PER_CONTACT - refused;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (dead, request) = loop {
        let dead = consumer_dead_letters(&service, &admin).await;
        let (_, request) = service
            .get_json(&format!("/v1/requests/{request_id}"), &admin)
            .await;
        let synced = hubspot
            .communications()
            .iter()
            .filter(|c| {
                c.properties
                    .get("wacrm_wamid")
                    .is_some_and(|w| w.starts_with("wamid.pii."))
            })
            .count();
        if synced >= expected_on_hubspot && dead.len() >= refused && request["state"] == "failed" {
            break (dead, request);
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {synced} of {expected_on_hubspot} on HubSpot, {} of {refused} dead \
             letters, reply {}\n{}",
            dead.len(),
            request["state"],
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The refusals did reach wacrm (the test would prove nothing otherwise).
    assert!(
        dead.iter()
            .all(|d| d["reason"].as_str().unwrap().contains("refused by the CRM")),
        "{name}: {dead:#?}"
    );
    assert!(
        graph.queued_errors() == 0,
        "{name}: the Graph failure was not played"
    );
    service.terminate();

    let mut secrets: Vec<String> = (0..CONTACTS).flat_map(spellings).collect();
    secrets.extend((0..CONTACTS).flat_map(|c| (0..PER_CONTACT).map(move |m| body(c, m))));
    secrets.push(REPLY.to_owned());
    secrets.push(EMAIL.to_owned());

    let log = service.log();
    assert!(
        log.contains("DEBUG"),
        "{name}: the service did not log at debug"
    );
    let mut found = leaks(&log, &secrets);
    for d in &dead {
        let reasons = [
            d["reason"].as_str().unwrap_or_default(),
            d["last_error"].as_str().unwrap_or_default(),
            d["headers"][wacrm_bus::cloudevents::DLQ_REASON]
                .as_str()
                .unwrap_or_default(),
        ]
        .join("\n");
        found.extend(
            leaks(&reasons, &secrets)
                .into_iter()
                .map(|l| format!("dead letter {}: {l}", d["id"])),
        );
    }
    let failure = format!("{}\n{}", request["reason"], request["errors"]);
    found.extend(
        leaks(&failure, &secrets)
            .into_iter()
            .map(|l| format!("failed send: {l}")),
    );
    assert!(
        found.is_empty(),
        "{name}: personal data in logs or reasons:\n{}",
        found.join("\n")
    );
    // What operators need survived: HubSpot's category and Meta's code.
    assert!(
        dead.iter()
            .any(|d| d["reason"].as_str().unwrap().contains("VALIDATION_ERROR")),
        "{name}: {dead:#?}"
    );
    assert!(
        request["errors"].to_string().contains("131026"),
        "{name}: {request}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_errors_leave_no_phone_body_or_email_in_logs_on_every_backend() {
    for bus in backends() {
        nothing_personal_in_logs(bus).await;
    }
}
