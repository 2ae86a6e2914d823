//! A stopped consumer is seen at once, through the real binary: a CRM connection whose token
//! is refused (401) logs an ERROR naming its group as soon as it stops, shows down in
//! `/v1/status` and `wacrm_consumer_up`, and ingest stays ready.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Bus, Service};
use wacrm_testkit::hubspot::{FakeConfig, HubSpotFake};
use wacrm_testkit::webhooks;

const NUMBER: &str = "106540352242922";
const GROUP: &str = "wacrm-sync-main";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_crm_token_stops_its_consumer_loudly_and_visibly() {
    let hubspot = HubSpotFake::start(FakeConfig::default()).await;
    let mut service = Service::new(Bus::Embedded).with_env(&[
        ("WACRM_CRM__CONNECTIONS__MAIN__KIND", "hubspot".into()),
        (
            "WACRM_CRM__CONNECTIONS__MAIN__TOKEN",
            "pat-na1-revoked".into(),
        ),
        ("WACRM_CRM__CONNECTIONS__MAIN__BASE_URL", hubspot.base_url()),
    ]);
    let admin = service
        .create_key(&["--name", "Ops", "--role", "admin", "--number", NUMBER])
        .unwrap();
    service.start().await;
    let now = chrono::Utc::now().timestamp();
    let body = webhooks::text(NUMBER, "5511987001234", "wamid.sup.1", "Oi", now);
    assert_eq!(service.post_webhook(body).await, 200);

    // The ERROR line comes when the consumer stops, not at shutdown.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = service.log();
        if log
            .lines()
            .any(|l| l.contains("ERROR") && l.contains(GROUP) && l.contains("fatal"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ERROR line for the stopped consumer:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, body) = service.get_json("/v1/status", &admin).await;
    assert_eq!(status, 200, "{body}");
    let connection = &body["crm_connections"][0];
    assert_eq!(connection["name"], "main", "{body}");
    assert_eq!(connection["kind"], "hubspot", "{body}");
    assert_eq!(connection["consumer"]["up"], false, "{body}");
    assert_eq!(
        connection["consumer"]["last_error"]["class"], "fatal",
        "{body}"
    );
    let store = body["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["group"] == "wacrm-store")
        .unwrap();
    assert_eq!(store["up"], true, "{body}");

    let (_, metrics) = service.get_text("/metrics", Some(&admin)).await;
    assert!(
        metrics.contains(&format!("wacrm_consumer_up{{group=\"{GROUP}\"}} 0")),
        "{metrics}"
    );
    assert!(
        metrics.contains("wacrm_consumer_up{group=\"wacrm-store\"} 1"),
        "{metrics}"
    );

    // Ingest is not affected: webhooks stay in rotation.
    let (ready, _) = service.get_text("/readyz", None).await;
    assert_eq!(ready, 200);
    // Nothing about the service's insides without a key.
    let (status, body) = service.get_text("/v1/status", None).await;
    assert_eq!(status, 401);
    assert!(!body.contains(GROUP), "{body}");
    service.terminate();
}
