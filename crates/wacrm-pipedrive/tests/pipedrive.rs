//! The Pipedrive adapter driven by the sync engine against the Pipedrive fake, which validates
//! every request against Pipedrive's v1 and v2 documents and enforces its rate limits and
//! token budget: the conformance suite, the calls a thousand messages cost, setup and check.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wacrm_core::{Direction, Event};
use wacrm_crm::{ConnectionConfig, CrmAdapter};
use wacrm_pipedrive::{Pipedrive, PipedriveConfig};
use wacrm_sync::SyncEngine;
use wacrm_testkit::conformance::{self, same_phone, Canned, Held, Target};
use wacrm_testkit::pipedrive::{FakeConfig, PipedriveFake};

const FIELD: &str = "WhatsApp ID";

fn config(fake: &PipedriveFake, base_url: &str) -> PipedriveConfig {
    let mut config = PipedriveConfig {
        token: fake.config().token,
        base_url: base_url.to_owned(),
        requests_per_2s: fake.config().requests_per_2s,
        ..PipedriveConfig::default()
    };
    config.sync.name = "pipedrive".into();
    config
}

struct PipedriveTarget {
    fake: PipedriveFake,
}

impl Target for PipedriveTarget {
    fn name(&self) -> &'static str {
        "pipedrive"
    }

    fn upstream(&self) -> String {
        self.fake.base_url()
    }

    fn adapter(&self, base_url: &str) -> (ConnectionConfig, Arc<dyn CrmAdapter>) {
        let config = config(&self.fake, base_url);
        (
            config.sync.clone(),
            Arc::new(Pipedrive::new(config).unwrap()),
        )
    }

    fn rate_limited(&self) -> Canned {
        Canned::json(
            429,
            &[
                ("x-ratelimit-limit", "20"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "0"),
            ],
            json!({"success": false, "error": "Request over limit"}),
        )
    }

    fn quota_exhausted(&self) -> Option<Canned> {
        Some(Canned::json(
            429,
            &[
                ("x-daily-ratelimit-token-limit", "30000"),
                ("x-daily-ratelimit-token-remaining", "0"),
            ],
            json!({"success": false, "error": "Request over limit"}),
        ))
    }

    fn rejected(&self) -> Canned {
        Canned::json(
            400,
            &[],
            json!({"success": false, "error": "Validation failed",
                   "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API.",
                   "data": null, "additional_data": null}),
        )
    }

    fn messages(&self) -> HashMap<String, Vec<Held>> {
        conformance::held_in_notes(self.fake.notes().into_iter().map(|n| {
            (
                n.person_id.map(|p| p.to_string()).unwrap_or_default(),
                n.content,
            )
        }))
    }

    fn contacts_for(&self, whatsapp_id: &str) -> Vec<String> {
        let key = self.fake.person_field_key(FIELD).unwrap_or_default();
        self.fake
            .persons()
            .into_iter()
            .filter(|p| {
                p.custom_fields.get(&key).and_then(|v| v.as_str()) == Some(whatsapp_id)
                    || p.phones.iter().any(|ph| same_phone(ph, whatsapp_id))
            })
            .map(|p| p.id.to_string())
            .collect()
    }

    fn hand_made_contact(&self, phone: &str, name: &str) -> Option<String> {
        Some(self.fake.insert_person(name, phone).to_string())
    }

    fn violations(&self) -> Vec<String> {
        self.fake.violations()
    }

    fn holds(&self, text: &str) -> bool {
        self.fake.holds(text)
    }
}

async fn started(fake_config: FakeConfig) -> PipedriveTarget {
    let fake = PipedriveFake::start(fake_config).await;
    let adapter = Pipedrive::new(config(&fake, &fake.base_url())).unwrap();
    let created = adapter.setup().await.unwrap();
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(
        adapter.setup().await.unwrap().is_empty(),
        "setup is idempotent"
    );
    PipedriveTarget { fake }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipedrive_passes_the_conformance_suite() {
    let target = started(FakeConfig {
        requests_per_2s: 100,
        daily_tokens: 10_000_000,
        ..FakeConfig::default()
    })
    .await;
    conformance::run(&target).await;
    assert_eq!(target.fake.burst_violations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_what_is_missing_and_a_bad_token_is_fatal() {
    let fake = PipedriveFake::start(FakeConfig::default()).await;
    let adapter = Pipedrive::new(config(&fake, &fake.base_url())).unwrap();
    let missing = adapter.check().await.unwrap_err().to_string();
    assert!(missing.contains("wacrm crm setup"), "{missing}");
    adapter.setup().await.unwrap();
    let ok = adapter.check().await.unwrap();
    assert!(ok.iter().any(|l| l.contains("WhatsApp ID")), "{ok:?}");
    let mut wrong = config(&fake, &fake.base_url());
    wrong.token = "not-the-token".into();
    let err = Pipedrive::new(wrong).unwrap().check().await.unwrap_err();
    assert_eq!(err.class(), wacrm_core::ErrorClass::Fatal, "{err}");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

fn message(i: usize, contact: usize) -> Event {
    conformance::text_message(
        &format!("wamid.pd{i}"),
        &format!("5511988{contact:06}"),
        &format!("Cliente {contact}"),
        1_780_000_000 + i as i64,
        Direction::Inbound,
        &format!("mensagem {i}"),
    )
}

/// Pipedrive has no bulk create for persons or notes and a note belongs to one person: a
/// batch costs a person refresh, one create per new person and one note per contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_a_hundred_contacts_within_the_limits() {
    let target = started(FakeConfig {
        daily_tokens: 100_000,
        ..FakeConfig::default()
    })
    .await;
    let fake = &target.fake;
    let (db, _dir) = conformance::temp_store().await;
    let (sync, adapter) = target.adapter(&fake.base_url());
    let mut engine = SyncEngine::new(sync, adapter, db);
    fake.clear_requests();
    let spent_before = fake.tokens_spent();
    let first: Vec<Event> = (0..1000).map(|i| message(i, i % 100)).collect();
    assert_eq!(conformance::sync_batch(&mut engine, &first).await, vec![]);
    let new_contacts = fake.requests().len();
    let new_tokens = fake.tokens_spent() - spent_before;

    // The same hundred people write again: they are known now.
    fake.clear_requests();
    let spent_before = fake.tokens_spent();
    let second: Vec<Event> = (1000..2000).map(|i| message(i, i % 100)).collect();
    assert_eq!(conformance::sync_batch(&mut engine, &second).await, vec![]);
    let known_contacts = fake.requests().len();
    let known_tokens = fake.tokens_spent() - spent_before;
    eprintln!(
        "Pipedrive calls for 1,000 messages from 100 contacts: {new_contacts} ({new_tokens} tokens) \
         with 100 new persons, {known_contacts} ({known_tokens} tokens) with the persons known"
    );
    assert_eq!(fake.persons().len(), 100);
    assert_eq!(target.messages().len(), 2000);
    assert!(target.messages().values().all(|v| v.len() == 1));
    // Floors: a person list, 100 person creates, 100 notes; then a person list and 100 notes.
    assert!(new_contacts <= 203, "{new_contacts} calls");
    assert!(known_contacts <= 102, "{known_contacts} calls");
    assert_eq!(
        fake.burst_violations(),
        0,
        "the 2-second limit was exceeded"
    );
    assert!(fake.max_requests_in_any_window(Duration::from_secs(2)) <= 20);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}
