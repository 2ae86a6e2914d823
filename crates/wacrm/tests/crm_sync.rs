//! Webhooks → bus → sync engine → HubSpot (the stateful fake) through the real binary, on every
//! bus backend, including a SIGKILL mid-sync.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{backends, contact_wa_id, text_webhook, Bus, Service};
use wacrm_testkit::hubspot::{FakeConfig, HubSpotFake};

async fn wait_for(fake: &HubSpotFake, count: usize, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while fake.communications().len() < count {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {count} communications",
            fake.communications().len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn webhooks_land_on_hubspot_once(bus: Bus) {
    let fake = HubSpotFake::start(FakeConfig::default()).await;
    let mut service = Service::new(bus).with_env(&[
        ("WACRM_CRM__CONNECTIONS__MAIN__KIND", "hubspot".into()),
        (
            "WACRM_CRM__CONNECTIONS__MAIN__TOKEN",
            FakeConfig::default().token,
        ),
        ("WACRM_CRM__CONNECTIONS__MAIN__BASE_URL", fake.base_url()),
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
    service.start().await;

    // 300 messages from 25 contacts, each webhook delivered twice (Meta retries).
    for i in 0..150 {
        let (_, body) = text_webhook(i);
        assert_eq!(service.post_webhook(body.clone()).await, 200);
        assert_eq!(service.post_webhook(body).await, 200);
    }
    // Kill mid-sync, restart, send the rest.
    service.kill();
    service.start().await;
    for i in 150..300 {
        let (_, body) = text_webhook(i);
        assert_eq!(service.post_webhook(body).await, 200);
    }
    wait_for(&fake, 300, Duration::from_secs(120), name).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut per_wamid: HashMap<String, usize> = HashMap::new();
    for c in fake.communications() {
        *per_wamid
            .entry(c.properties["wacrm_wamid"].clone())
            .or_default() += 1;
    }
    assert_eq!(per_wamid.len(), 300, "{name}");
    assert!(
        per_wamid.values().all(|n| *n == 1),
        "{name}: a message is on the timeline twice"
    );
    let contacts = fake.contacts();
    assert_eq!(contacts.len(), 25, "{name}: one contact per person");
    let ids: HashMap<String, String> = contacts
        .iter()
        .map(|c| (c.properties["whatsapp_id"].clone(), c.id.clone()))
        .collect();
    for c in fake.communications() {
        let i: usize = c.properties["wacrm_wamid"]
            .trim_start_matches("wamid.e2e.")
            .parse()
            .unwrap();
        assert_eq!(
            c.properties["hs_timestamp"],
            ((1_750_000_000 + i as i64) * 1000).to_string()
        );
        assert!(c.properties["hs_communication_body"].ends_with(&format!("mensagem {i}")));
        let assoc = fake.associations_of("communications", &c.id);
        assert_eq!(
            assoc[0].to_id,
            ids[&contact_wa_id(i % 25)],
            "{name}: on the right contact"
        );
    }
    assert!(
        fake.violations().is_empty(),
        "{name}: {:?}",
        fake.violations()
    );
    service.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_land_on_hubspot_exactly_once_on_every_backend() {
    for bus in backends() {
        webhooks_land_on_hubspot_once(bus).await;
    }
}
