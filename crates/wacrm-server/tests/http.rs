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
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let messages = page["messages"].as_array().unwrap();
        assert!(!messages.is_empty());
        assert!(page["next"].is_null(), "{page}");
        let times: Vec<&str> = messages
            .iter()
            .map(|m| m["timestamp"].as_str().unwrap())
            .collect();
        let mut sorted = times.clone();
        sorted.sort();
        sorted.reverse();
        assert_eq!(times, sorted, "newest first by WhatsApp's time");
        for m in messages {
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
        StatusCode::NOT_FOUND,
        "another number's message is not revealed"
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
    assert_eq!(entries[0]["outcome"], "not_found");
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

/// The business number and sender of the `text.json` fixture.
fn text_fixture_parties() -> (String, String, String) {
    let raw: serde_json::Value = serde_json::from_slice(&fixture("text.json")).unwrap();
    let value = &raw["entry"][0]["changes"][0]["value"];
    (
        value["metadata"]["phone_number_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        value["messages"][0]["from"].as_str().unwrap().to_owned(),
        value["messages"][0]["id"].as_str().unwrap().to_owned(),
    )
}

/// `text.json` with its messages replaced by `count` texts (two per second, so pairs share a
/// timestamp and the wamid breaks the tie).
fn many_texts(count: usize) -> Vec<u8> {
    let mut raw: serde_json::Value = serde_json::from_slice(&fixture("text.json")).unwrap();
    let template = raw["entry"][0]["changes"][0]["value"]["messages"][0].clone();
    let messages: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            let mut m = template.clone();
            m["id"] = format!("wamid.page.{i:04}").into();
            m["timestamp"] = (1_777_600_000 + i as i64 / 2).to_string().into();
            m.as_object_mut().unwrap().remove("context");
            m
        })
        .collect();
    raw["entry"][0]["changes"][0]["value"]["messages"] = messages.into();
    serde_json::to_vec(&raw).unwrap()
}

async fn json_of(h: &Harness, path: &str, key: &str) -> serde_json::Value {
    let (status, body) = h.get(path, Some(key)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn contact_id_of(h: &Harness, wa_id: &str, key: &str) -> String {
    let found = json_of(h, &format!("/v1/contacts?wa_id={wa_id}"), key).await;
    found[0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_number_limited_key_sees_only_contacts_messages_of_its_numbers() {
    let h = harness().await;
    assert_eq!(
        call(&h.app, signed(fixture("text.json"))).await.0,
        StatusCode::OK
    );
    h.project().await;
    let (number, from, wamid) = text_fixture_parties();
    let admin = h.admin().await;
    let own = h.key("Caio", Role::Agent, Some(&[number.as_str()])).await;
    let other = h.key("Bia", Role::Agent, Some(&["999"])).await;
    let id = contact_id_of(&h, &from, &admin).await;

    let found = json_of(&h, &format!("/v1/contacts?wa_id={from}"), &own).await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let hidden = json_of(&h, &format!("/v1/contacts?wa_id={from}"), &other).await;
    assert_eq!(hidden, serde_json::json!([]), "a contact of another number");
    for path in [
        format!("/v1/contacts/{id}"),
        format!("/v1/contacts/{id}/messages"),
        format!("/v1/messages/{wamid}"),
    ] {
        assert_eq!(h.get(&path, Some(&own)).await.0, StatusCode::OK, "{path}");
        assert_eq!(
            h.get(&path, Some(&other)).await,
            h.get(
                &path
                    .replace(&id, "no-such-contact")
                    .replace(&wamid, "wamid.none"),
                Some(&other)
            )
            .await,
            "{path}: answered as if it did not exist"
        );
        assert_eq!(h.get(&path, Some(&other)).await.0, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn a_search_is_audited_with_its_hashed_query_and_the_contacts_found() {
    let h = harness().await;
    assert_eq!(
        call(&h.app, signed(fixture("text.json"))).await.0,
        StatusCode::OK
    );
    h.project().await;
    let (_, from, _) = text_fixture_parties();
    let admin = h.admin().await;
    let id = contact_id_of(&h, &from, &admin).await;
    let entries = json_of(&h, "/v1/audit?action=contacts.search", &admin).await;
    let detail = &entries[0]["detail"];
    let digest = detail["query_sha256"].as_str().unwrap();
    assert_eq!(digest.len(), 64, "{detail}");
    assert!(digest.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(detail["contacts"], serde_json::json!([id]));
    assert!(
        !entries.to_string().contains(&from[2..]),
        "the phone itself"
    );
    // The same person searched by phone in another spelling is the same query.
    let spelled = format!("+{} {}", &from[..2], &from[2..]);
    json_of(
        &h,
        &format!(
            "/v1/contacts?phone={}",
            spelled.replace('+', "%2B").replace(' ', "%20")
        ),
        &admin,
    )
    .await;
    let entries = json_of(&h, "/v1/audit?action=contacts.search", &admin).await;
    assert_eq!(entries[1]["detail"]["query_sha256"], digest);
    assert_eq!(
        wacrm_store::audit::verify(&h.db).await.unwrap().map(|_| ()),
        Ok(())
    );
}

#[tokio::test]
async fn a_contacts_history_pages_newest_first_to_the_oldest() {
    let h = harness().await;
    assert_eq!(
        call(&h.app, signed(many_texts(250))).await.0,
        StatusCode::OK
    );
    h.project().await;
    let (_, from, _) = text_fixture_parties();
    let admin = h.admin().await;
    let id = contact_id_of(&h, &from, &admin).await;
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut path = format!("/v1/contacts/{id}/messages?limit=100");
    loop {
        let page = json_of(&h, &path, &admin).await;
        let messages = page["messages"].as_array().unwrap();
        sizes.push(messages.len());
        seen.extend(
            messages
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/contacts/{id}/messages?limit=100&before={next}"),
            None => break,
        }
        // A message stored meanwhile (newer than every page) shifts nothing.
        if sizes.len() == 1 {
            let mut newer: serde_json::Value = serde_json::from_slice(&many_texts(1)).unwrap();
            let m = &mut newer["entry"][0]["changes"][0]["value"]["messages"][0];
            m["id"] = "wamid.page.newer".into();
            m["timestamp"] = "1777700000".into();
            let body = serde_json::to_vec(&newer).unwrap();
            assert_eq!(call(&h.app, signed(body)).await.0, StatusCode::OK);
            h.project().await;
        }
    }
    assert_eq!(sizes, vec![100, 100, 50]);
    let expected: Vec<String> = (0..250)
        .rev()
        .map(|i| format!("wamid.page.{i:04}"))
        .collect();
    assert_eq!(seen, expected, "newest first, none missing or repeated");
    for bad in ["zz", "00", "6e6f742d612d637572736f72"] {
        assert_eq!(
            h.get(
                &format!("/v1/contacts/{id}/messages?before={bad}"),
                Some(&admin)
            )
            .await
            .0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_message_known_only_from_its_status_is_in_the_history() {
    let h = harness().await;
    assert_eq!(
        call(&h.app, signed(fixture("status_sent.json"))).await.0,
        StatusCode::OK
    );
    h.project().await;
    let raw: serde_json::Value = serde_json::from_slice(&fixture("status_sent.json")).unwrap();
    let status = &raw["entry"][0]["changes"][0]["value"]["statuses"][0];
    let admin = h.admin().await;
    let id = contact_id_of(&h, status["recipient_id"].as_str().unwrap(), &admin).await;
    let page = json_of(&h, &format!("/v1/contacts/{id}/messages"), &admin).await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{page}");
    assert_eq!(messages[0]["id"], status["id"]);
    assert_eq!(messages[0]["direction"], "outbound");
    assert_eq!(messages[0]["status"], "sent");
}

/// `text.json` with its one message's sender removed: a part normalisation rejects, kept as a
/// one-part webhook dead letter of the fixture's business number.
fn rejected_part() -> Vec<u8> {
    let mut raw: serde_json::Value = serde_json::from_slice(&fixture("text.json")).unwrap();
    let value = &mut raw["entry"][0]["changes"][0]["value"];
    value.as_object_mut().unwrap().remove("contacts");
    let m = value["messages"][0].as_object_mut().unwrap();
    m.remove("from");
    m.remove("from_user_id");
    serde_json::to_vec(&raw).unwrap()
}

#[tokio::test]
async fn dead_letters_and_the_audit_log_are_held_to_the_keys_numbers() {
    let h = harness().await;
    for body in [
        rejected_part(),
        b"this is not json".to_vec(),
        fixture("text.json"),
    ] {
        assert_eq!(call(&h.app, signed(body)).await.0, StatusCode::OK);
    }
    h.project().await;
    let (number, _, wamid) = text_fixture_parties();
    let admin = h.admin().await;
    let own = h.key("Dora", Role::Admin, Some(&[number.as_str()])).await;
    let other = h.key("Eva", Role::Admin, Some(&["999"])).await;

    let all = json_of(&h, "/v1/dead-letters", &admin).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let of_number: Vec<&serde_json::Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["phone_number_id"] == number.as_str())
        .collect();
    assert_eq!(
        of_number.len(),
        1,
        "the rejected part names its number: {all}"
    );
    let dead_id = of_number[0]["id"].as_str().unwrap().to_owned();
    let unknown_id = all
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["phone_number_id"].is_null())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = json_of(&h, "/v1/dead-letters", &own).await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["id"], dead_id.as_str());
    assert_eq!(
        json_of(&h, "/v1/dead-letters", &other).await,
        serde_json::json!([])
    );

    let retry = |id: &str| format!("/v1/dead-letters/{}/retry", id.replace('/', "%2F"));
    for (key, id) in [(&other, &dead_id), (&own, &unknown_id)] {
        let (status, body) = h
            .post_json(&retry(id), key, &serde_json::json!({}), &[])
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let (status, body) = h
        .post_json(&retry(&dead_id), &own, &serde_json::json!({}), &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The audit log: a message read on the number, and the re-drive (intent, then outcome).
    assert_eq!(
        h.get(&format!("/v1/messages/{wamid}"), Some(&own)).await.0,
        StatusCode::OK
    );
    let seen_by = |entries: &serde_json::Value, action: &str| {
        entries
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .map(|e| e["outcome"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let mine = json_of(&h, "/v1/audit", &own).await;
    assert_eq!(seen_by(&mine, "messages.read"), vec!["ok"]);
    assert_eq!(seen_by(&mine, "dead_letters.retry"), vec!["intent", "ok"]);
    assert!(
        seen_by(&mine, "dead_letters.list").is_empty(),
        "tied to no number: {mine}"
    );
    let theirs = json_of(&h, "/v1/audit", &other).await;
    assert!(seen_by(&theirs, "messages.read").is_empty(), "{theirs}");
    assert!(
        seen_by(&theirs, "dead_letters.retry").is_empty(),
        "{theirs}"
    );
    let everything = json_of(&h, "/v1/audit", &admin).await;
    assert_eq!(seen_by(&everything, "dead_letters.retry").len(), 4);
    assert!(!seen_by(&everything, "dead_letters.list").is_empty());
}

#[tokio::test]
async fn a_re_drive_that_cannot_be_audited_does_nothing_and_answers_503() {
    use sea_orm::ConnectionTrait;
    let h = harness().await;
    assert_eq!(
        call(&h.app, signed(b"this is not json".to_vec())).await.0,
        StatusCode::OK
    );
    h.project().await;
    let admin = h.admin().await;
    let dead = json_of(&h, "/v1/dead-letters", &admin).await;
    let id = dead[0]["id"].as_str().unwrap().to_owned();
    h.db.execute_unprepared(
        "CREATE TRIGGER audit_read_only BEFORE INSERT ON audit_log \
         BEGIN SELECT RAISE(ABORT, 'read-only'); END",
    )
    .await
    .unwrap();
    let (status, body) = h
        .post_json(
            &format!("/v1/dead-letters/{}/retry", id.replace('/', "%2F")),
            &admin,
            &serde_json::json!({}),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let after = wacrm_store::queries::dead_letter(&h.db, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.attempts, 0, "nothing was re-driven");
    assert!(after.last_error.is_none());
}
