//! The HTTP surface, in process: signatures, handshake, limits, dead letters, auth, readiness.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use http::StatusCode;
use tower::ServiceExt;
use wacrm_bus::{BusError, EventBus, OutboundRecord, Subscription, Topics};
use wacrm_server::ServerConfig;
use wacrm_store::keys::{self, NewKey, Role};
use wacrm_whatsapp::signature::sign;

use common::*;

#[tokio::test]
async fn wrong_or_missing_signature_is_401_and_nothing_is_stored() {
    let h = harness().await;
    let body = fixture("text.json");
    assert_eq!(
        call(&h.app, post(body.clone(), None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let wrong = sign(b"another-secret", &body);
    assert_eq!(
        call(&h.app, post(body.clone(), Some(wrong))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&h.app, post(body, Some("sha256=00".into()))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.project().await, 0, "nothing reached the bus");
}

#[tokio::test]
async fn without_an_app_secret_every_webhook_is_rejected() {
    let h = harness_with(None, None).await;
    let body = fixture("text.json");
    let sig = sign(b"", &body);
    assert_eq!(
        call(&h.app, post(body, Some(sig))).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn signed_webhook_is_stored_and_readable_through_the_api() {
    let h = harness().await;
    assert_eq!(
        call(&h.app, signed(fixture("batch_3x2.json"))).await.0,
        StatusCode::OK
    );
    assert!(h.project().await >= 18);
    let key = h.admin().await;
    let raw: serde_json::Value = serde_json::from_slice(&fixture("batch_3x2.json")).unwrap();
    let from = raw["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
        .as_str()
        .unwrap();
    let (status, body) = h
        .get(&format!("/v1/contacts?wa_id={from}"), Some(&key))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let contacts: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = contacts.as_array().unwrap();
    assert_eq!(list.len(), 1, "{body}");
    {
        let contact = &list[0];
        let id = contact["id"].as_str().unwrap();
        let (status, body) = h
            .get(&format!("/v1/contacts/{id}/messages"), Some(&key))
            .await;
        assert_eq!(status, StatusCode::OK);
        let messages: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        assert!(!messages.is_empty());
        let times: Vec<&str> = messages
            .iter()
            .map(|m| m["timestamp"].as_str().unwrap())
            .collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted, "ordered by WhatsApp's time");
        for m in &messages {
            for field in ["id", "direction", "kind", "timestamp"] {
                assert!(!m[field].is_null(), "{field} in {m}");
            }
        }
    }
}

#[tokio::test]
async fn message_detail_shows_status_and_history() {
    let h = harness().await;
    assert_eq!(
        call(&h.app, signed(fixture("text.json"))).await.0,
        StatusCode::OK
    );
    h.project().await;
    let key = h.admin().await;
    let raw: serde_json::Value = serde_json::from_slice(&fixture("text.json")).unwrap();
    let wamid = raw["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
        .as_str()
        .unwrap();
    let (status, body) = h.get(&format!("/v1/messages/{wamid}"), Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["id"], wamid);
    assert_eq!(m["direction"], "inbound");
    assert!(m["status_history"].is_array());
    assert_eq!(
        h.get("/v1/messages/wamid.nope", Some(&key)).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn handshake_echoes_the_challenge_only_for_the_right_token() {
    let h = harness().await;
    let ok = h.get("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444", None).await;
    assert_eq!(ok, (StatusCode::OK, "1158201444".into()));
    let bad = h
        .get(
            "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1",
            None,
        )
        .await;
    assert_eq!(bad.0, StatusCode::FORBIDDEN);
    let mode = h
        .get(
            "/webhooks/whatsapp?hub.mode=other&hub.verify_token=verify-me&hub.challenge=1",
            None,
        )
        .await;
    assert_eq!(mode.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_webhook_body_that_does_not_arrive_in_time_gets_408_and_closes_the_connection() {
    let server = ServerConfig {
        body_read_timeout_ms: 200,
        ..ServerConfig::default()
    };
    let h = harness_served(None, Some(SECRET), sending(), &server).await;
    let body = fixture("text.json");
    let signature = sign(SECRET.as_bytes(), &body);
    // Half the body, then nothing: a client trickling its body, or one that stalled.
    let half = axum::body::Bytes::copy_from_slice(&body[..body.len() / 2]);
    let stalled =
        futures::stream::iter([Ok::<_, std::io::Error>(half)]).chain(futures::stream::pending());
    let req = http::Request::post("/webhooks/whatsapp")
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(axum::body::Body::from_stream(stalled))
        .unwrap();
    let started = std::time::Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(10), h.app.clone().oneshot(req))
        .await
        .expect("the handler waited for the body forever")
        .unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(res.headers()["connection"], "close");
    assert!(started.elapsed() >= Duration::from_millis(150));

    // Nothing reached the bus, and the whole body within the deadline is accepted.
    let mut sub = h
        .bus
        .subscribe("check", &[Topics::default().conversations])
        .await
        .unwrap();
    assert!(sub
        .poll(10, Duration::from_millis(100))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        call(&h.app, signed(fixture("text.json"))).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_webhook_body_that_breaks_off_gets_400_and_nothing_is_published() {
    let h = harness().await;
    let body = fixture("text.json");
    let signature = sign(SECRET.as_bytes(), &body);
    let half = axum::body::Bytes::copy_from_slice(&body[..body.len() / 2]);
    let broken = futures::stream::iter([
        Ok(half),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]);
    let req = http::Request::post("/webhooks/whatsapp")
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(axum::body::Body::from_stream(broken))
        .unwrap();
    assert_eq!(call(&h.app, req).await.0, StatusCode::BAD_REQUEST);
    let mut sub = h
        .bus
        .subscribe("check", &[Topics::default().conversations])
        .await
        .unwrap();
    assert!(sub
        .poll(10, Duration::from_millis(100))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn bodies_over_four_mebibytes_get_413() {
    let h = harness().await;
    let body = vec![b' '; 4 * 1024 * 1024 + 1];
    assert_eq!(
        call(&h.app, signed(body)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let fits = format!(
        "{{\"object\":\"whatsapp_business_account\",\"entry\":[]}}{}",
        " ".repeat(3_000_000)
    );
    assert_eq!(
        call(&h.app, signed(fits.into_bytes())).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn signed_garbage_is_a_dead_letter_and_200() {
    let h = harness().await;
    assert_eq!(
        call(&h.app, signed(b"this is not json".to_vec())).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&h.app, signed(b"this is not json".to_vec())).await.0,
        StatusCode::OK,
        "Meta's retry"
    );
    h.project().await;
    let key = h.admin().await;
    let (status, body) = h.get("/v1/dead-letters", Some(&key)).await;
    assert_eq!(status, StatusCode::OK);
    let dead: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(dead.len(), 1, "the retry is the same dead letter: {dead:?}");
    assert_eq!(dead[0]["payload"], "this is not json");
    assert_eq!(dead[0]["source"], "webhook");
    assert!(dead[0]["reason"]
        .as_str()
        .unwrap()
        .contains("not a WhatsApp webhook"));
}

#[tokio::test]
async fn v1_needs_a_valid_key() {
    let h = harness().await;
    for path in [
        "/v1/contacts?wa_id=1",
        "/v1/contacts/x",
        "/v1/contacts/x/messages",
        "/v1/messages/x",
        "/v1/dead-letters",
    ] {
        assert_eq!(
            h.get(path, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            h.get(path, Some("wacrm_nope_nope")).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let (info, token) = keys::create(
        &h.db,
        NewKey {
            name: "Rui".into(),
            role: Role::Agent,
            scopes: None,
            business_numbers: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        h.get("/v1/contacts?wa_id=5511987654321", Some(&token))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/v1/dead-letters", Some(&token)).await.0,
        StatusCode::FORBIDDEN,
        "agents lack dead_letters:read"
    );
    keys::revoke(&h.db, &info.id).await.unwrap();
    assert_eq!(
        h.get("/v1/contacts?wa_id=5511987654321", Some(&token))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let expired = keys::create(
        &h.db,
        NewKey {
            name: "Old".into(),
            role: Role::Auditor,
            scopes: None,
            business_numbers: None,
            expires_at: Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
        },
    )
    .await
    .unwrap()
    .1;
    assert_eq!(
        h.get("/v1/contacts?wa_id=5511987654321", Some(&expired))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let h = harness().await;
    wacrm_server::metrics_endpoint::install();
    assert_eq!(h.get("/healthz", None).await.0, StatusCode::OK);
    assert_eq!(h.get("/readyz", None).await.0, StatusCode::OK);
    call(&h.app, signed(fixture("text.json"))).await;
    assert_eq!(h.get("/metrics", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.get("/openapi.json", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    let admin = h.admin().await;
    let (status, metrics) = h.get("/metrics", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("wacrm_webhooks_total"), "{metrics}");
    let (status, doc) = h.get("/openapi.json", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert!(doc["paths"]["/v1/messages/{wamid}"].is_object());
    assert!(doc["paths"]["/webhooks/whatsapp"]["post"].is_object());
    assert!(doc["paths"]["/metrics"]["get"]["security"].is_array());
}

#[tokio::test]
async fn metrics_need_their_scope_and_the_scope_reads_nothing_else() {
    let h = harness().await;
    wacrm_server::metrics_endpoint::install();
    let monitoring = h
        .scoped_key(Role::Auditor, &[keys::scope::METRICS_READ])
        .await
        .unwrap();
    assert_eq!(h.get("/metrics", Some(&monitoring)).await.0, StatusCode::OK);
    assert_eq!(
        h.get("/v1/contacts?wa_id=5511987654321", Some(&monitoring))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.get("/v1/audit", Some(&monitoring)).await.0,
        StatusCode::FORBIDDEN
    );
    for role in [Role::Agent, Role::Auditor] {
        let without = h.key("Rui", role, None).await;
        let (status, body) = h.get("/metrics", Some(&without)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("metrics:read"), "{body}");
        assert_eq!(
            h.get("/openapi.json", Some(&without)).await.0,
            StatusCode::OK
        );
    }
    let unknown = h
        .scoped_key(Role::Agent, &["metrics:write"])
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().contains("unknown scope metrics:write"),
        "{unknown}"
    );
    let (twice, _) = keys::create(
        &h.db,
        NewKey {
            name: "Monitor".into(),
            role: Role::Auditor,
            scopes: Some(vec![
                keys::scope::METRICS_READ.into(),
                keys::scope::METRICS_READ.into(),
            ]),
            business_numbers: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(twice.scopes, vec![keys::scope::METRICS_READ.to_owned()]);
}

/// A bus that is down.
struct DownBus;

#[async_trait]
impl EventBus for DownBus {
    async fn publish(&self, _: Vec<OutboundRecord>) -> Result<(), BusError> {
        Err(BusError::Unavailable("broker unreachable".into()))
    }
    async fn subscribe(&self, _: &str, _: &[String]) -> Result<Box<dyn Subscription>, BusError> {
        Err(BusError::Unavailable("broker unreachable".into()))
    }
    async fn check(&self) -> Result<(), BusError> {
        Err(BusError::Unavailable("broker unreachable".into()))
    }
    fn backend(&self) -> &'static str {
        "down"
    }
}

/// A bus that never confirms.
struct StuckBus;

#[async_trait]
impl EventBus for StuckBus {
    async fn publish(&self, _: Vec<OutboundRecord>) -> Result<(), BusError> {
        std::future::pending().await
    }
    async fn subscribe(&self, _: &str, _: &[String]) -> Result<Box<dyn Subscription>, BusError> {
        std::future::pending().await
    }
    async fn check(&self) -> Result<(), BusError> {
        Ok(())
    }
    fn backend(&self) -> &'static str {
        "stuck"
    }
}

#[tokio::test]
async fn an_unavailable_or_stuck_bus_gets_503_so_meta_retries() {
    let h = harness_with(Some(Arc::new(DownBus)), Some(SECRET)).await;
    assert_eq!(
        call(&h.app, signed(fixture("text.json"))).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&h.app, signed(b"garbage".to_vec())).await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "dead letters need the bus too"
    );
    assert_eq!(
        h.get("/readyz", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let h = harness_with(Some(Arc::new(StuckBus)), Some(SECRET)).await;
    assert_eq!(
        call(&h.app, signed(fixture("text.json"))).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn every_api_call_is_audited_and_agents_are_held_to_their_numbers() {
    let h = harness().await;
    assert_eq!(
        call(&h.app, signed(fixture("text.json"))).await.0,
        StatusCode::OK
    );
    h.project().await;
    let raw: serde_json::Value = serde_json::from_slice(&fixture("text.json")).unwrap();
    let wamid = raw["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
        .as_str()
        .unwrap();
    let number = raw["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"]
        .as_str()
        .unwrap();
    let (_, other_number_agent) = keys::create(
        &h.db,
        NewKey {
            name: "Bia".into(),
            role: Role::Agent,
            scopes: None,
            business_numbers: Some(vec!["999".into()]),
            expires_at: None,
        },
    )
    .await
    .unwrap();
    let (_, own_number_agent) = keys::create(
        &h.db,
        NewKey {
            name: "Caio".into(),
            role: Role::Agent,
            scopes: None,
            business_numbers: Some(vec![number.into()]),
            expires_at: None,
        },
    )
    .await
    .unwrap();
    let (_, auditor) = keys::create(
        &h.db,
        NewKey {
            name: "Dora".into(),
            role: Role::Auditor,
            scopes: None,
            business_numbers: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    let path = format!("/v1/messages/{wamid}");
    assert_eq!(
        h.get(&path, Some(&other_number_agent)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.get(&path, Some(&own_number_agent)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/v1/audit", Some(&own_number_agent)).await.0,
        StatusCode::FORBIDDEN,
        "agents do not read the audit log"
    );
    let (status, body) = h
        .get("/v1/audit?action=messages.read", Some(&auditor))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["actor"], "Bia");
    assert_eq!(entries[0]["outcome"], "denied");
    assert_eq!(entries[0]["target"], wamid);
    assert_eq!(entries[1]["actor"], "Caio");
    assert_eq!(entries[1]["outcome"], "ok");
    let (_, all) = h.get("/v1/audit", Some(&auditor)).await;
    let all: Vec<serde_json::Value> = serde_json::from_str(&all).unwrap();
    assert!(
        all.iter()
            .any(|e| e["action"] == "audit.read" && e["actor"] == "Dora"),
        "reading the log is audited too"
    );
    assert!(all
        .iter()
        .any(|e| e["action"] == "audit.read" && e["outcome"] == "denied"));
    assert_eq!(
        wacrm_store::audit::verify(&h.db).await.unwrap(),
        Ok(all.len() as u64 + 1)
    );
}
