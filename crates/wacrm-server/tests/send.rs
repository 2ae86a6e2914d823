//! The send API in process: validation (window, opt-out, content), roles and business numbers,
//! Idempotency-Key, audit, and the commands it publishes.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::Utc;
use http::StatusCode;
use serde_json::{json, Value};
use wacrm_bus::cloudevents::decode_event;
use wacrm_bus::Topics;
use wacrm_core::outbound::TemplateCategory;
use wacrm_core::EventPayload;
use wacrm_store::keys::{self, NewKey, Role};
use wacrm_testkit::webhooks;

use common::*;

const NUMBER_A: &str = "106540352242922";
const NUMBER_B: &str = "106540352240000";

fn text_to(to: &str, body: &str) -> Value {
    json!({"from": NUMBER_A, "to": to, "type": "text", "body": body})
}

fn template_to(to: &str, name: &str) -> Value {
    json!({"from": NUMBER_A, "to": to, "type": "template", "name": name, "language": "pt_BR",
           "components": [{"type": "body", "parameters": [{"type": "text", "text": "Maria"}]}]})
}

async fn harness_sending() -> Harness {
    let mut whatsapp = sending();
    for number in [NUMBER_A, NUMBER_B] {
        whatsapp.numbers.insert(
            number.into(),
            wacrm_whatsapp::config::NumberConfig::default(),
        );
    }
    whatsapp
        .templates
        .insert("order_update".into(), TemplateCategory::Utility);
    whatsapp
        .templates
        .insert("black_friday".into(), TemplateCategory::Marketing);
    harness_full(None, Some(SECRET), whatsapp).await
}

/// An inbound text from `from` to number A, `ago` before now, projected into the store.
async fn inbound(h: &Harness, from: &str, wamid: &str, body: &str, ago: chrono::Duration) {
    let ts = (Utc::now() - ago).timestamp();
    let (status, _) = call(
        &h.app,
        signed(webhooks::text(NUMBER_A, from, wamid, body, ts)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    h.project().await;
}

/// The commands published so far.
async fn commands(h: &Harness) -> Vec<EventPayload> {
    let topics = Topics::default();
    let mut sub = h
        .bus
        .subscribe("test-commands", &[topics.commands])
        .await
        .unwrap();
    let records = sub.poll(1000, Duration::from_millis(200)).await.unwrap();
    records
        .iter()
        .map(|r| decode_event(r).unwrap().payload)
        .collect()
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn the_window_is_24_hours_from_the_last_inbound_message_and_templates_ignore_it() {
    let h = harness_sending().await;
    let agent = h.key("Bruno Agent", Role::Agent, Some(&[NUMBER_A])).await;
    let almost = chrono::Duration::hours(23) + chrono::Duration::minutes(59);
    let past = chrono::Duration::hours(24) + chrono::Duration::minutes(1);
    inbound(&h, "5511911110001", "wamid.in.1", "oi", almost).await;
    inbound(&h, "5511911110002", "wamid.in.2", "oi", past).await;

    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &text_to("+55 11 91111-0001", "Olá!"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let accepted = parse(&body);
    assert_eq!(accepted["state"], "accepted");
    let request_id = accepted["request_id"].as_str().unwrap().to_owned();

    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &text_to("5511911110002", "Olá!"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(parse(&body)["reason"], "window_closed");

    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to("5511911110002", "order_update"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // A contact who never wrote gets templates only.
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &text_to("5511911110003", "Olá!"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let published = commands(&h).await;
    assert_eq!(published.len(), 2);
    let EventPayload::SendRequested(first) = &published[0] else {
        panic!("{published:?}")
    };
    assert_eq!(first.request_id, request_id);
    assert_eq!(first.to, "5511911110001");
    assert_eq!(first.sent_by.name, "Bruno Agent");

    let (status, body) = h
        .get(&format!("/v1/requests/{request_id}"), Some(&agent))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(parse(&body)["state"], "accepted");
}

#[tokio::test]
async fn a_call_from_the_contact_opens_the_window_too() {
    let h = harness_sending().await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    let an_hour_ago = (Utc::now() - chrono::Duration::hours(1)).timestamp();
    let call = webhooks::user_call(NUMBER_A, "5511912120001", "wacid.1", "connect", an_hour_ago);
    assert_eq!(call_status(&h, call).await, StatusCode::OK);
    h.project().await;
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &text_to("5511912120001", "Retornando a ligação"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

async fn call_status(h: &Harness, body: Vec<u8>) -> StatusCode {
    call(&h.app, signed(body)).await.0
}

#[tokio::test]
async fn an_opt_out_by_keyword_blocks_marketing_templates_but_not_utility_ones() {
    let h = harness_sending().await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    inbound(
        &h,
        "5511922220001",
        "wamid.stop.1",
        "PARAR",
        chrono::Duration::minutes(5),
    )
    .await;
    for name in ["black_friday", "not_configured_so_marketing"] {
        let (status, body) = h
            .post_json(
                "/v1/messages",
                &agent,
                &template_to("5511922220001", name),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert_eq!(parse(&body)["reason"], "opted_out");
    }
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to("5511922220001", "order_update"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Service messages inside the window are not marketing.
    let (status, _) = h
        .post_json(
            "/v1/messages",
            &agent,
            &text_to("5511922220001", "Ok, removido."),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Resuming by keyword lifts it.
    inbound(
        &h,
        "5511922220001",
        "wamid.start.1",
        "voltar",
        chrono::Duration::minutes(1),
    )
    .await;
    let (status, _) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to("5511922220001", "black_friday"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_opt_out_by_error_131050_blocks_marketing_templates() {
    let h = harness_sending().await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    let now = Utc::now().timestamp();
    let (status, _) = call(
        &h.app,
        signed(webhooks::status(
            NUMBER_A,
            "5511933330001",
            "wamid.out.1",
            "failed",
            now,
            Some(131_050),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    h.project().await;
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to("5511933330001", "black_friday"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(parse(&body)["reason"], "opted_out");
    let (status, _) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to("5511933330001", "order_update"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn keys_are_held_to_their_role_numbers_and_validity_and_every_refusal_is_audited() {
    let h = harness_sending().await;
    inbound(
        &h,
        "5511944440001",
        "wamid.in.r",
        "oi",
        chrono::Duration::minutes(5),
    )
    .await;
    let agent_a = h.key("Agent A", Role::Agent, Some(&[NUMBER_A])).await;
    let agent_b = h.key("Agent B", Role::Agent, Some(&[NUMBER_B])).await;
    let auditor = h.key("Aud", Role::Auditor, None).await;

    let mut from_b = text_to("5511944440001", "oi");
    from_b["from"] = json!(NUMBER_B);
    let (status, _) = h.post_json("/v1/messages", &agent_a, &from_b, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Agent B cannot read number A's message (nor learn that it exists).
    let (status, _) = h.get("/v1/messages/wamid.in.r", Some(&agent_b)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .post_json("/v1/messages/wamid.in.r/read", &agent_b, &json!({}), &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Auditors never send.
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &auditor,
            &text_to("5511944440001", "oi"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Revoked and expired keys: 401.
    let (info, revoked) = keys::create(
        &h.db,
        NewKey {
            name: "Gone".into(),
            role: Role::Agent,
            scopes: None,
            business_numbers: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    keys::revoke(&h.db, &info.id).await.unwrap();
    let (_, expired) = keys::create(
        &h.db,
        NewKey {
            name: "Old".into(),
            role: Role::Agent,
            scopes: None,
            business_numbers: None,
            expires_at: Some(Utc::now() - chrono::Duration::minutes(1)),
        },
    )
    .await
    .unwrap();
    for key in [&revoked, &expired] {
        let (status, _) = h
            .post_json("/v1/messages", key, &text_to("5511944440001", "oi"), &[])
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    let admin = h.admin().await;
    let (_, audit) = h.get("/v1/audit?action=messages.send", Some(&admin)).await;
    let audit: Vec<Value> = serde_json::from_str(&audit).unwrap();
    let denied: Vec<&Value> = audit.iter().filter(|e| e["outcome"] == "denied").collect();
    assert_eq!(denied.len(), 2, "{audit:#?}");
    let (_, reads) = h.get("/v1/audit?action=messages.read", Some(&admin)).await;
    assert!(reads.contains("not_found"), "{reads}");
    let (_, marks) = h
        .get("/v1/audit?action=messages.mark_read", Some(&admin))
        .await;
    assert!(marks.contains("denied"), "{marks}");
    assert!(commands(&h).await.is_empty());
}

#[tokio::test]
async fn an_idempotency_key_never_sends_twice() {
    let h = harness_sending().await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    inbound(
        &h,
        "5511955550001",
        "wamid.in.i",
        "oi",
        chrono::Duration::minutes(5),
    )
    .await;
    let body = text_to("5511955550001", "Seu pedido saiu para entrega.");
    let headers = [("idempotency-key", "order-42-shipped")];
    let (s1, b1) = h.post_json("/v1/messages", &agent, &body, &headers).await;
    let (s2, b2) = h.post_json("/v1/messages", &agent, &body, &headers).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(parse(&b1)["request_id"], parse(&b2)["request_id"]);
    // While the request is still `accepted`, a replay publishes its command again (the first
    // publish may have failed); it is the same request, which the sender sends once.
    let published = commands(&h).await;
    assert!(!published.is_empty());
    for c in &published {
        let EventPayload::SendRequested(r) = c else {
            panic!("{c:?}")
        };
        assert_eq!(json!(r.request_id), parse(&b1)["request_id"]);
    }

    let other = text_to("5511955550001", "Outra coisa.");
    let (status, b3) = h.post_json("/v1/messages", &agent, &other, &headers).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{b3}");
    assert_eq!(parse(&b3)["reason"], "idempotency_key_reused");

    // The same idempotency key from another API key is another request.
    let other_agent = h.key("Carla Agent", Role::Agent, None).await;
    let (status, b4) = h
        .post_json("/v1/messages", &other_agent, &body, &headers)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_ne!(parse(&b4)["request_id"], parse(&b1)["request_id"]);
}

#[tokio::test]
async fn content_is_checked_against_whatsapps_rules_before_it_is_queued() {
    let h = harness_sending().await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    inbound(
        &h,
        "5511966660001",
        "wamid.in.c",
        "oi",
        chrono::Duration::minutes(5),
    )
    .await;
    let four_buttons = json!({"from": NUMBER_A, "to": "5511966660001", "type": "interactive",
        "interactive": {"kind": "buttons", "body": "Escolha", "buttons": [
            {"id": "1", "title": "Um"}, {"id": "2", "title": "Dois"},
            {"id": "3", "title": "Três"}, {"id": "4", "title": "Quatro"}]}});
    let (status, body) = h
        .post_json("/v1/messages", &agent, &four_buttons, &[])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(parse(&body)["reason"], "invalid");
    let (status, _) = h
        .post_json(
            "/v1/messages",
            &agent,
            &json!({"from": NUMBER_A, "type": "nope"}),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let image = json!({"from": NUMBER_A, "to": "5511966660001", "type": "image",
        "link": "https://example.com/a.jpg", "caption": "Catálogo"});
    let (status, body) = h.post_json("/v1/messages", &agent, &image, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = h
        .post_json("/v1/messages/wamid.in.c/read", &agent, &json!({}), &[])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(parse(&body)["kind"], "read");
}

#[tokio::test]
async fn without_an_access_token_sending_is_unavailable() {
    let h = harness_full(
        None,
        Some(SECRET),
        wacrm_whatsapp::WhatsAppConfig::default(),
    )
    .await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    let (status, _) = h
        .post_json("/v1/messages", &agent, &text_to("5511977770001", "oi"), &[])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Ingest is ready all the same; the status says sending is not configured.
    assert_eq!(h.get("/readyz", None).await.0, StatusCode::OK);
    let (_, status) = h.get("/v1/status", Some(&agent)).await;
    assert_eq!(parse(&status)["sending"]["configured"], false);
}

#[tokio::test]
async fn from_must_be_a_business_number_in_digits() {
    let h = harness_sending().await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    inbound(
        &h,
        "5511977770001",
        "wamid.in.from",
        "oi",
        chrono::Duration::minutes(5),
    )
    .await;
    for (from, reason) in [
        (
            "123/subscribed_apps?override_callback_uri=https://evil.example#",
            "invalid",
        ),
        ("../me", "invalid"),
        ("", "invalid"),
        ("999999999999999", "unknown_number"),
    ] {
        let mut message = text_to("5511977770001", "oi");
        message["from"] = json!(from);
        let (status, body) = h.post_json("/v1/messages", &agent, &message, &[]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{from}: {body}");
        assert_eq!(parse(&body)["reason"], reason, "{from}: {body}");
    }
    assert!(commands(&h).await.is_empty(), "nothing was queued");
    // A number WhatsApp's webhooks reached is the business's, configured or not.
    let mut unconfigured = sending();
    unconfigured.numbers.clear();
    let h = harness_full(None, Some(SECRET), unconfigured).await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    inbound(
        &h,
        "5511977770001",
        "wamid.in.known",
        "oi",
        chrono::Duration::minutes(5),
    )
    .await;
    let (status, body) = h
        .post_json("/v1/messages", &agent, &text_to("5511977770001", "oi"), &[])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn a_rejected_token_shows_in_the_status_and_keeps_webhooks_in_rotation() {
    let h = harness_sending().await;
    assert_eq!(h.get("/readyz", None).await.0, StatusCode::OK);
    h.send_health.token_rejected(NUMBER_A, "error 190");
    h.send_health.token_rejected(NUMBER_B, "error 190");
    // One number's rejected token must not take webhooks out of rotation, nor tell the
    // unauthenticated which number is failing.
    let (status, body) = h.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.contains(NUMBER_A), "{body}");
    assert_eq!(h.get("/v1/status", None).await.0, StatusCode::UNAUTHORIZED);
    // A key limited to A sees A's health, not B's.
    let agent = h.key("Bruno Agent", Role::Agent, Some(&[NUMBER_A])).await;
    let (status, body) = h.get("/v1/status", Some(&agent)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let numbers = parse(&body)["sending"]["numbers"].clone();
    assert_eq!(numbers.as_array().unwrap().len(), 1, "{numbers}");
    assert_eq!(numbers[0]["phone_number_id"], NUMBER_A);
    assert_eq!(numbers[0]["state"], "token_rejected");
}

#[tokio::test]
async fn the_send_request_is_documented_in_openapi() {
    let h = harness_sending().await;
    let key = h.admin().await;
    let (_, doc) = h.get("/openapi.json", Some(&key)).await;
    let doc = parse(&doc);
    assert_eq!(
        doc["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/SendMessage"
    );
    let schema = &doc["components"]["schemas"]["SendMessage"];
    assert!(schema.is_object(), "{schema}");
    assert!(doc["paths"]["/v1/requests/{id}"]["get"].is_object());
    assert!(doc["paths"]["/v1/messages/{wamid}/read"]["post"].is_object());
    // Every reference resolves.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
}

#[tokio::test]
async fn audit_entries_are_published_on_the_bus_in_order_once() {
    let h = harness_sending().await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    for _ in 0..3 {
        h.post_json("/v1/messages", &agent, &text_to("5511988880001", "oi"), &[])
            .await;
    }
    let topics = Topics::default();
    let relayed = wacrm_server::audit_relay::relay_once(&h.db, h.bus.as_ref(), &topics, "/test")
        .await
        .unwrap();
    assert_eq!(relayed, 3);
    // Nothing new: nothing published again.
    let again = wacrm_server::audit_relay::relay_once(&h.db, h.bus.as_ref(), &topics, "/test")
        .await
        .unwrap();
    assert_eq!(again, 0);
    let mut sub = h
        .bus
        .subscribe("test-audit", std::slice::from_ref(&topics.audit))
        .await
        .unwrap();
    let records = sub.poll(100, Duration::from_millis(200)).await.unwrap();
    let seqs: Vec<i64> = records
        .iter()
        .map(|r| match decode_event(r).unwrap().payload {
            EventPayload::AuditRecorded(a) => {
                assert_eq!(a.actor, "Bruno Agent");
                assert_eq!(a.action, "messages.send");
                assert_eq!(a.outcome, "rejected", "the window is closed for a stranger");
                a.seq
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);

    // A crash between publishing and advancing the cursor: the same entries go out again, with
    // the same event ids, so consumers drop them.
    wacrm_store::audit::mark_published(&h.db, 0).await.unwrap();
    let again = wacrm_server::audit_relay::relay_once(&h.db, h.bus.as_ref(), &topics, "/test")
        .await
        .unwrap();
    assert_eq!(again, 3);
    let repeated = sub.poll(100, Duration::from_millis(200)).await.unwrap();
    let ids = |rs: &[wacrm_bus::Record]| -> Vec<_> {
        rs.iter().map(|r| decode_event(r).unwrap().id).collect()
    };
    assert_eq!(ids(&repeated), ids(&records));
}

#[tokio::test]
async fn each_key_has_a_request_rate_and_is_told_when_to_retry() {
    let server = wacrm_server::ServerConfig {
        requests_per_key_per_second: 1,
        requests_per_key_burst: 2,
        ..wacrm_server::ServerConfig::default()
    };
    let h = common::harness_served(None, Some(SECRET), sending(), &server).await;
    let busy = h.key("Script", Role::Agent, Some(&[NUMBER_A])).await;
    let other = h.key("Ana", Role::Agent, Some(&[NUMBER_A])).await;
    for _ in 0..2 {
        assert_eq!(h.get("/v1/status", Some(&busy)).await.0, StatusCode::OK);
    }
    let request = http::Request::get("/v1/status")
        .header("authorization", format!("Bearer {busy}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(h.app.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // Another key is not held back; an unknown key is still 401, not 429.
    assert_eq!(h.get("/v1/status", Some(&other)).await.0, StatusCode::OK);
    assert_eq!(
        h.get("/v1/status", Some("wacrm_0000_nope")).await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// A webhook saying the contact at `old` changed number to `new`, `ago` before now.
fn changed_number(old: &str, new: &str, ago: chrono::Duration) -> Vec<u8> {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER_A},
            "messages": [{
                "from": old, "id": "wamid.changed.1",
                "timestamp": (Utc::now() - ago).timestamp().to_string(),
                "type": "system",
                "system": {"body": format!("User changed from {old} to {new}"), "wa_id": new,
                           "type": "user_changed_number"}
            }]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

/// After a number change a send goes to the new number, whichever way the contact is named and
/// in whatever order the webhooks were stored: here the new number's message is stored first,
/// then a late one from the old number, then the change.
#[tokio::test]
async fn a_send_after_a_number_change_goes_to_the_new_number() {
    let h = harness_sending().await;
    let agent = h.key("Bruno Agent", Role::Agent, Some(&[NUMBER_A])).await;
    let old = "5511976543210";
    let new = "5511955554444";
    inbound(
        &h,
        new,
        "wamid.new.1",
        "oi de novo",
        chrono::Duration::minutes(5),
    )
    .await;
    inbound(&h, old, "wamid.old.1", "oi", chrono::Duration::hours(2)).await;
    let (status, _) = call(
        &h.app,
        signed(changed_number(old, new, chrono::Duration::hours(1))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    h.project().await;

    let (status, body) = h
        .get(&format!("/v1/contacts?wa_id={old}"), Some(&agent))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let contact_id = parse(&body)[0]["id"].as_str().unwrap().to_owned();
    for request in [
        text_to(old, "Olá!"),
        text_to(new, "Olá!"),
        json!({"from": NUMBER_A, "contact_id": contact_id, "type": "text", "body": "Olá!"}),
    ] {
        let (status, body) = h.post_json("/v1/messages", &agent, &request, &[]).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{request}: {body}");
    }
    let sends: Vec<String> = commands(&h)
        .await
        .into_iter()
        .filter_map(|c| match c {
            EventPayload::SendRequested(r) => Some(r.to),
            _ => None,
        })
        .collect();
    assert_eq!(sends, vec![new.to_owned(); 3]);
}
