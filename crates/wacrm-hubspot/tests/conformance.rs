//! The HubSpot adapter passes the adapters' conformance suite against the HubSpot fake, which
//! validates every request against HubSpot's OpenAPI documents.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use wacrm_crm::{ConnectionConfig, CrmAdapter};
use wacrm_hubspot::{HubSpot, HubSpotConfig};
use wacrm_testkit::conformance::{self, same_phone, Canned, Held, Target};
use wacrm_testkit::hubspot::{FakeConfig, HubSpotFake};

struct HubSpotTarget {
    fake: HubSpotFake,
}

fn rate_limited(policy: &str) -> serde_json::Value {
    json!({
        "status": "error",
        "message": format!("You have reached your {} limit.", policy.to_ascii_lowercase()),
        "errorType": "RATE_LIMIT",
        "correlationId": "2f7a1e0c-0000-4000-8000-000000000000",
        "policyName": policy,
    })
}

impl Target for HubSpotTarget {
    fn name(&self) -> &'static str {
        "hubspot"
    }

    fn upstream(&self) -> String {
        self.fake.base_url()
    }

    fn adapter(&self, base_url: &str) -> (ConnectionConfig, Arc<dyn CrmAdapter>) {
        let mut config = HubSpotConfig {
            token: FakeConfig::default().token,
            base_url: base_url.to_owned(),
            ..HubSpotConfig::default()
        };
        config.sync.name = "conformance".into();
        let adapter = HubSpot::new(config.clone()).unwrap();
        (config.sync, Arc::new(adapter))
    }

    fn rate_limited(&self) -> Canned {
        Canned::json(
            429,
            &[("x-hubspot-ratelimit-interval-milliseconds", "1000")],
            rate_limited("TEN_SECONDLY_ROLLING"),
        )
    }

    fn quota_exhausted(&self) -> Option<Canned> {
        Some(Canned::json(429, &[], rate_limited("DAILY")))
    }

    fn rejected(&self) -> Canned {
        Canned::json(
            400,
            &[],
            json!({"status": "error", "message": "Property values were not valid",
                   "correlationId": "2f7a1e0c-0000-4000-8000-000000000001",
                   "category": "VALIDATION_ERROR"}),
        )
    }

    fn messages(&self) -> HashMap<String, Vec<Held>> {
        let mut out: HashMap<String, Vec<Held>> = HashMap::new();
        for c in self.fake.communications() {
            let contact = self
                .fake
                .associations_of("communications", &c.id)
                .into_iter()
                .find(|a| a.to_type == "contacts")
                .map(|a| a.to_id)
                .unwrap_or_default();
            out.entry(c.properties.get("wacrm_wamid").cloned().unwrap_or_default())
                .or_default()
                .push(Held {
                    contact,
                    status: c.properties.get("wacrm_status").cloned(),
                });
        }
        out
    }

    fn contacts_for(&self, whatsapp_id: &str) -> Vec<String> {
        self.fake
            .contacts()
            .into_iter()
            .filter(|c| {
                c.properties.get("whatsapp_id").map(String::as_str) == Some(whatsapp_id)
                    || c.properties
                        .get("phone")
                        .is_some_and(|p| same_phone(p, whatsapp_id))
            })
            .map(|c| c.id)
            .collect()
    }

    fn hand_made_contact(&self, phone: &str, name: &str) -> Option<String> {
        Some(
            self.fake
                .insert_contact(&[("phone", phone), ("firstname", name)]),
        )
    }

    fn violations(&self) -> Vec<String> {
        self.fake.violations()
    }

    fn holds(&self, text: &str) -> bool {
        self.fake.holds(text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_passes_the_conformance_suite() {
    let fake = HubSpotFake::start(FakeConfig {
        requests_per_10s: 190,
        ..FakeConfig::default()
    })
    .await;
    let target = HubSpotTarget { fake };
    // What `wacrm crm setup` creates, once.
    let (_, adapter) = target.adapter(&target.fake.base_url());
    adapter.setup().await.unwrap();
    conformance::run(&target).await;
}
