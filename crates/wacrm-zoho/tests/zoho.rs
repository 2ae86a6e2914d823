//! The Zoho CRM adapter driven by the sync engine against the Zoho fake, which validates every
//! request against Zoho's v8 documents: the conformance suite, the calls a thousand messages
//! cost, setup and check, an expired token renewed.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use wacrm_core::{Direction, Event};
use wacrm_crm::{ConnectionConfig, CrmAdapter};
use wacrm_sync::SyncEngine;
use wacrm_testkit::conformance::{self, same_phone, Canned, Held, Target};
use wacrm_testkit::zoho::{FakeConfig, ZohoFake};
use wacrm_zoho::{Zoho, ZohoConfig};

const FIELD: &str = "WhatsApp ID";

fn config(fake: &ZohoFake, api_domain: &str) -> ZohoConfig {
    let fake_config = fake.config();
    let mut config = ZohoConfig {
        client_id: fake_config.client_id,
        client_secret: fake_config.client_secret,
        refresh_token: fake_config.refresh_token,
        // Tokens straight from the fake; API calls through the fault proxy when given one.
        accounts_url: fake.base_url(),
        api_domain: api_domain.to_owned(),
        requests_per_s: 50,
        ..ZohoConfig::default()
    };
    config.sync.name = "zoho".into();
    config
}

struct ZohoTarget {
    fake: ZohoFake,
}

impl Target for ZohoTarget {
    fn name(&self) -> &'static str {
        "zoho"
    }

    fn upstream(&self) -> String {
        self.fake.base_url()
    }

    fn adapter(&self, base_url: &str) -> (ConnectionConfig, Arc<dyn CrmAdapter>) {
        let config = config(&self.fake, base_url);
        (config.sync.clone(), Arc::new(Zoho::new(config).unwrap()))
    }

    fn rate_limited(&self) -> Canned {
        Canned::json(
            429,
            &[("retry-after", "0")],
            json!({"code": "RATE_LIMIT_EXCEEDED", "details": {},
                   "message": "Too many requests", "status": "error"}),
        )
    }

    /// Zoho does not document how it answers once the org's daily credits are spent.
    fn quota_exhausted(&self) -> Option<Canned> {
        None
    }

    fn rejected(&self) -> Canned {
        Canned::json(
            400,
            &[],
            json!({"code": "INVALID_DATA", "details": {}, "message": "invalid data", "status": "error"}),
        )
    }

    fn messages(&self) -> HashMap<String, Vec<Held>> {
        conformance::held_in_notes(
            self.fake
                .notes()
                .into_iter()
                .map(|n| (n.parent_id, n.content)),
        )
    }

    fn contacts_for(&self, whatsapp_id: &str) -> Vec<String> {
        let field = self.fake.field_api_name(FIELD).unwrap_or_default();
        self.fake
            .contacts()
            .into_iter()
            .filter(|c| {
                c.fields.get(&field).and_then(|v| v.as_str()) == Some(whatsapp_id)
                    || ["Phone", "Mobile"].iter().any(|f| {
                        c.fields
                            .get(*f)
                            .and_then(|v| v.as_str())
                            .is_some_and(|p| same_phone(p, whatsapp_id))
                    })
            })
            .map(|c| c.id)
            .collect()
    }

    fn hand_made_contact(&self, phone: &str, name: &str) -> Option<String> {
        Some(
            self.fake
                .insert_contact(&[("Last_Name", name), ("Phone", phone)]),
        )
    }

    fn violations(&self) -> Vec<String> {
        self.fake.violations()
    }

    fn holds(&self, text: &str) -> bool {
        self.fake.holds(text)
    }
}

async fn started() -> ZohoTarget {
    let fake = ZohoFake::start(FakeConfig::default()).await;
    let adapter = Zoho::new(config(&fake, &fake.base_url())).unwrap();
    assert_eq!(adapter.setup().await.unwrap().len(), 1);
    assert!(
        adapter.setup().await.unwrap().is_empty(),
        "setup is idempotent"
    );
    ZohoTarget { fake }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoho_passes_the_conformance_suite() {
    let target = started().await;
    conformance::run(&target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_what_is_missing_and_an_expired_token_is_renewed() {
    let fake = ZohoFake::start(FakeConfig::default()).await;
    let adapter = Zoho::new(config(&fake, &fake.base_url())).unwrap();
    let missing = adapter.check().await.unwrap_err().to_string();
    assert!(missing.contains("wacrm crm setup"), "{missing}");
    adapter.setup().await.unwrap();
    fake.expire_tokens();
    let ok = adapter.check().await.unwrap();
    assert!(ok.iter().any(|l| l.contains("WhatsApp ID")), "{ok:?}");
    assert_eq!(
        fake.token_requests(),
        2,
        "one token, then one after it expired"
    );
    let mut wrong = config(&fake, &fake.base_url());
    wrong.refresh_token = "1000.revoked".into();
    let err = Zoho::new(wrong).unwrap().check().await.unwrap_err();
    assert_eq!(err.class(), wacrm_core::ErrorClass::Fatal, "{err}");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

fn message(i: usize, contact: usize) -> Event {
    conformance::text_message(
        &format!("wamid.zo{i}"),
        &format!("5511988{contact:06}"),
        &format!("Cliente Numero{contact}"),
        1_780_000_000 + i as i64,
        Direction::Inbound,
        &format!("mensagem {i}"),
    )
}

/// Zoho takes 100 records a call: a batch costs a few lookups, one upsert and one notes call
/// per hundred contacts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_a_hundred_contacts_in_a_handful_of_calls() {
    let target = started().await;
    let fake = &target.fake;
    let (db, _dir) = conformance::temp_store().await;
    let (sync, adapter) = target.adapter(&fake.base_url());
    let mut engine = SyncEngine::new(sync, adapter, db);
    fake.clear_requests();
    let credits = fake.credits_used();
    let events: Vec<Event> = (0..1000).map(|i| message(i, i % 100)).collect();
    assert_eq!(conformance::sync_batch(&mut engine, &events).await, vec![]);
    let calls = fake.requests().len();
    eprintln!(
        "Zoho calls for 1,000 messages from 100 new contacts: {calls} ({} credits)",
        fake.credits_used() - credits
    );
    assert_eq!(fake.contacts().len(), 100);
    let held = target.messages();
    assert_eq!(held.len(), 1000);
    assert!(held.values().all(|v| v.len() == 1));
    assert!(calls <= 14, "{calls} calls");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}
