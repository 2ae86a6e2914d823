//! The sync engine against an in-memory CRM: batching, links, the ledger, crash windows,
//! duplicates, reordering and bad input.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use wacrm_bus::runner::{Handler, HandlerError};
use wacrm_bus::Record;
use wacrm_core::{
    BusinessNumber, ContactIdentity, ContactProfile, DeliveryState, Direction, Event, Message,
    MessageContent, MetaError, StatusUpdate,
};
use wacrm_sync::{ConnectionConfig, SyncEngine};
use wacrm_testkit::memory::MemoryCrm;

async fn store() -> (wacrm_store::Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let db = wacrm_store::connect(&wacrm_store::StoreConfig {
        url,
        max_connections: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    wacrm_store::migrate(&db).await.unwrap();
    (db, dir)
}

fn engine(db: &wacrm_store::Db, crm: &MemoryCrm) -> SyncEngine {
    let config = ConnectionConfig {
        name: "main".into(),
        reconcile_after_ms: 0,
        ..ConnectionConfig::default()
    };
    SyncEngine::new(config, Arc::new(crm.clone()), db.clone())
}

fn message(i: usize, contact: usize, direction: Direction) -> Event {
    Event::message(Message {
        wamid: format!("wamid.{i}"),
        direction,
        business: BusinessNumber::new("106540352242922"),
        contact: ContactProfile {
            identity: ContactIdentity::from_webhook(
                Some(&format!("55119{:08}", 80_000_000 + contact)),
                None,
            ),
            name: Some(format!("Cliente {contact}")),
            username: None,
        },
        timestamp: chrono::DateTime::from_timestamp(1_750_000_000 + i as i64, 0).unwrap(),
        context: None,
        referral: None,
        content: MessageContent::Text {
            body: format!("mensagem {i}"),
            preview_url: false,
        },
        sent_by: None,
    })
    .unwrap()
}

fn status(i: usize, contact: usize, state: DeliveryState, at: i64) -> Event {
    Event::status(StatusUpdate {
        wamid: format!("wamid.{i}"),
        state,
        timestamp: chrono::DateTime::from_timestamp(1_750_000_000 + at, 0).unwrap(),
        business: BusinessNumber::new("106540352242922"),
        recipient: ContactIdentity::from_webhook(
            Some(&format!("55119{:08}", 80_000_000 + contact)),
            None,
        ),
        errors: if state == DeliveryState::Failed {
            vec![MetaError {
                code: 131026,
                title: Some("Message undeliverable".into()),
                message: None,
                details: None,
            }]
        } else {
            vec![]
        },
        pricing: None,
        conversation: None,
    })
    .unwrap()
}

fn records(events: &[Event]) -> Vec<Record> {
    wacrm_testkit::bus::records(events).unwrap()
}

#[tokio::test]
async fn a_thousand_messages_from_a_hundred_contacts_take_a_handful_of_calls() {
    let (db, _dir) = store().await;
    let crm = MemoryCrm::default();
    let mut engine = engine(&db, &crm);
    let events: Vec<Event> = (0..1000)
        .map(|i| message(i, i % 100, Direction::Inbound))
        .collect();
    let handled = engine.handle(&records(&events)).await.unwrap();
    assert!(handled.dead_letters.is_empty());
    let crm_state = crm.0.lock().unwrap();
    assert_eq!(crm_state.contacts.len(), 100);
    assert_eq!(crm_state.messages.len(), 1000);
    // 1 contact batch + 10 message batches.
    assert_eq!(
        crm_state.calls, 11,
        "calls for 1,000 messages from 100 contacts"
    );
}

#[tokio::test]
async fn a_crash_between_the_crm_write_and_the_ledger_does_not_duplicate() {
    let (db, _dir) = store().await;
    let crm = MemoryCrm::default();
    crm.0.lock().unwrap().crash_after_write = 1;
    let events: Vec<Event> = (0..5).map(|i| message(i, 0, Direction::Inbound)).collect();
    let mut first = engine(&db, &crm);
    assert!(
        first.handle(&records(&events)).await.is_err(),
        "the write 'crashed'"
    );
    // The bus redelivers the uncommitted batch to a restarted engine.
    let mut second = engine(&db, &crm);
    second.handle(&records(&events)).await.unwrap();
    let crm_state = crm.0.lock().unwrap();
    assert_eq!(crm_state.messages.len(), 5, "reconciled, not created again");
}

/// A CRM without an upsert (`ContactProtocol::FindThenCreate`): contacts are found before
/// they are created, and a create whose answer was lost (or a crash right after it) is found
/// on the next attempt, never made again.
#[tokio::test]
async fn without_an_upsert_a_lost_contact_create_is_found_not_made_twice() {
    let (db, _dir) = store().await;
    let crm = MemoryCrm::default();
    {
        let mut state = crm.0.lock().unwrap();
        state.without_upsert = true;
        state.lose_create_answers = 1;
    }
    let events: Vec<Event> = (0..20)
        .map(|i| message(i, i % 4, Direction::Inbound))
        .collect();
    let mut first = engine(&db, &crm);
    assert!(
        first.handle(&records(&events)).await.is_err(),
        "the answer of the create was lost"
    );
    let mut second = engine(&db, &crm);
    second.handle(&records(&events)).await.unwrap();
    // The same contacts again, in a new batch, and a fifth one.
    let more: Vec<Event> = (20..30)
        .map(|i| message(i, i % 5, Direction::Inbound))
        .collect();
    second.handle(&records(&more)).await.unwrap();
    let state = crm.0.lock().unwrap();
    let mut made: Vec<&str> = state.created.iter().map(|(w, _)| w.as_str()).collect();
    made.sort_unstable();
    let before = made.len();
    made.dedup();
    assert_eq!(
        before,
        made.len(),
        "a contact was created twice: {:?}",
        state.created
    );
    assert_eq!(made.len(), 5);
    assert_eq!(state.messages.len(), 30);
}

#[tokio::test]
async fn a_partly_answered_create_is_reconciled_not_created_again() {
    let (db, _dir) = store().await;
    let crm = MemoryCrm::default();
    crm.0.lock().unwrap().answer_half = true;
    let events: Vec<Event> = (0..10).map(|i| message(i, 0, Direction::Inbound)).collect();
    let mut engine = engine(&db, &crm);
    let first = engine.handle(&records(&events)).await;
    assert!(first.is_err(), "the unanswered half is retried");
    engine.handle(&records(&events)).await.unwrap();
    let crm_state = crm.0.lock().unwrap();
    assert_eq!(
        crm_state.messages.len(),
        10,
        "reconciled, not created again"
    );
}

#[tokio::test]
async fn an_ambiguous_create_leaves_its_rows_pending_for_reconciliation() {
    let (db, _dir) = store().await;
    let crm = MemoryCrm::default();
    crm.0.lock().unwrap().crash_after_write = 1;
    let events: Vec<Event> = (0..3).map(|i| message(i, 0, Direction::Inbound)).collect();
    let mut engine = engine(&db, &crm);
    assert!(engine.handle(&records(&events)).await.is_err());
    let wamids: Vec<String> = (0..3).map(|i| format!("wamid.{i}")).collect();
    let ledger = wacrm_store::sync::ledger(&db, "main", &wamids)
        .await
        .unwrap();
    assert!(ledger.values().all(|e| e.state == "pending"), "{ledger:?}");
    engine.handle(&records(&events)).await.unwrap();
    assert_eq!(crm.0.lock().unwrap().messages.len(), 3);
}

#[tokio::test]
async fn a_refused_message_is_dead_lettered_and_the_rest_goes_through() {
    let (db, _dir) = store().await;
    let crm = MemoryCrm::default();
    crm.0.lock().unwrap().refuse = Some("mensagem 3".into());
    let events: Vec<Event> = (0..6).map(|i| message(i, 0, Direction::Inbound)).collect();
    let handled = engine(&db, &crm).handle(&records(&events)).await.unwrap();
    assert_eq!(handled.dead_letters.len(), 1);
    assert_eq!(handled.dead_letters[0].0, 3);
    assert!(handled.dead_letters[0].1.contains("refused"));
    assert_eq!(crm.0.lock().unwrap().messages.len(), 5);
}

#[tokio::test]
async fn a_daily_quota_parks_the_connection_until_it_resets() {
    let (db, _dir) = store().await;
    let crm = MemoryCrm::default();
    let mut engine = engine(&db, &crm);
    let batch = records(&[message(1, 1, Direction::Inbound)]);
    let until = chrono::Utc::now() + chrono::Duration::hours(3);
    crm.0.lock().unwrap().quota_until = Some(until);
    let started = std::time::Instant::now();
    let parked = engine.handle(&batch).await;
    // The engine returns at once and asks the runner to park it (which keeps polling: on
    // Kafka a handler that sleeps for hours is put out of its group).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the handler slept in the quota instead of returning"
    );
    match parked {
        Err(HandlerError::Park { wait, .. }) => assert!(
            wait > std::time::Duration::from_secs(3 * 3600 - 60)
                && wait <= std::time::Duration::from_secs(3 * 3600),
            "{wait:?}"
        ),
        other => panic!("not parked until the reset: {other:?}"),
    }
    assert_eq!(crm.0.lock().unwrap().calls, 1, "no calls while parked");
    crm.0.lock().unwrap().quota_until = None;
    engine.handle(&batch).await.unwrap();
    assert_eq!(crm.0.lock().unwrap().messages.len(), 1);
}

#[tokio::test]
async fn routing_limits_a_connection_to_its_numbers() {
    let (db, _dir) = store().await;
    let crm = MemoryCrm::default();
    let config = ConnectionConfig {
        name: "other".into(),
        business_numbers: vec!["999".into()],
        reconcile_after_ms: 0,
        ..ConnectionConfig::default()
    };
    let mut engine = SyncEngine::new(config, Arc::new(crm.clone()), db.clone());
    engine
        .handle(&records(&[message(1, 1, Direction::Inbound)]))
        .await
        .unwrap();
    assert_eq!(crm.0.lock().unwrap().calls, 0);
}

/// One step of a delivery history: the bus delivers these events (possibly again), and the
/// consumer may restart before committing.
#[derive(Debug, Clone)]
enum Step {
    Deliver(Vec<usize>),
    CrashAfterWrite,
}

fn scenario() -> impl Strategy<Value = (Vec<usize>, Vec<Step>)> {
    // Events 0..4 are outbound messages, 4..16 statuses (3 per message, any order).
    let order = Just((0..16).collect::<Vec<usize>>()).prop_shuffle();
    let steps = prop::collection::vec(
        prop_oneof![
            prop::collection::vec(0usize..16, 1..8).prop_map(Step::Deliver),
            Just(Step::CrashAfterWrite),
        ],
        0..6,
    );
    (order, steps)
}

fn history() -> Vec<Event> {
    let mut events: Vec<Event> = (0..4).map(|i| message(i, i, Direction::Outbound)).collect();
    for i in 0..4 {
        let last = if i == 2 {
            DeliveryState::Failed
        } else {
            DeliveryState::Read
        };
        events.push(status(i, i, DeliveryState::Sent, 10));
        events.push(status(i, i, DeliveryState::Delivered, 20));
        events.push(status(i, i, last, 30));
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn any_interleaving_ends_with_one_entry_per_wamid_and_the_right_status((order, steps) in scenario()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (db, _dir) = store().await;
            let crm = MemoryCrm::default();
            let all = history();
            // Duplicates and crashes first, then the full history in a shuffled order (as a
            // redelivery after a restart would), which must converge.
            for step in &steps {
                match step {
                    Step::Deliver(idx) => {
                        let batch: Vec<Event> = idx.iter().map(|i| all[*i].clone()).collect();
                        let _ = engine(&db, &crm).handle(&records(&batch)).await;
                    }
                    Step::CrashAfterWrite => crm.0.lock().unwrap().crash_after_write = 1,
                }
            }
            crm.0.lock().unwrap().crash_after_write = 0;
            let shuffled: Vec<Event> = order.iter().map(|i| all[*i].clone()).collect();
            engine(&db, &crm).handle(&records(&shuffled)).await.unwrap();
            // A late redelivery of everything changes nothing.
            engine(&db, &crm).handle(&records(&all)).await.unwrap();

            let crm_state = crm.0.lock().unwrap();
            let mut per_wamid: HashMap<&str, usize> = HashMap::new();
            for (wamid, _, _, _) in crm_state.messages.values() {
                *per_wamid.entry(wamid.as_str()).or_default() += 1;
            }
            prop_assert_eq!(per_wamid.len(), 4);
            prop_assert!(per_wamid.values().all(|n| *n == 1), "{:?}", per_wamid);
            for (wamid, _, _, status) in crm_state.messages.values() {
                let expected = if wamid == "wamid.2" { "failed" } else { "read" };
                prop_assert_eq!(status.as_deref(), Some(expected), "{}", wamid);
            }
            Ok(())
        })?;
    }
}

/// A batch that takes longer than `batch_budget_ms` (a slow CRM, or a limit shared by several
/// instances) is handed back in time instead of holding its partitions past Kafka's poll
/// interval; each pass moves it on, and every message reaches the CRM once.
#[tokio::test]
async fn a_batch_longer_than_its_budget_is_handed_back_and_finished_in_parts() {
    let (db, _dir) = store().await;
    let crm = MemoryCrm::default();
    let delay = std::time::Duration::from_millis(200);
    crm.0.lock().unwrap().call_delay = delay;
    let budget = std::time::Duration::from_secs(1);
    let config = ConnectionConfig {
        name: "main".into(),
        reconcile_after_ms: 0,
        batch_budget_ms: budget.as_millis() as u64,
        ..ConnectionConfig::default()
    };
    let mut engine = SyncEngine::new(config, Arc::new(crm.clone()), db.clone());
    // 3,000 messages from 60 contacts: a contacts call, then 30 calls of 100 messages, four
    // at a time, 200 ms each: 1.8 s in one pass, longer than the budget.
    let events: Vec<Event> = (0..3000)
        .map(|i| message(i, i % 60, Direction::Inbound))
        .collect();
    let records = wacrm_testkit::bus::records(&events).unwrap();
    let mut passes = 0;
    loop {
        passes += 1;
        assert!(passes <= 50, "the batch never finished");
        let started = std::time::Instant::now();
        let outcome = engine.handle(&records).await;
        let took = started.elapsed();
        // Within the budget (a part is dropped when it runs out), with room for the store.
        assert!(
            took < budget + delay + std::time::Duration::from_millis(300),
            "pass {passes} held the batch for {took:?} (budget {budget:?})"
        );
        match outcome {
            Ok(handled) => {
                assert!(handled.dead_letters.is_empty(), "{handled:?}");
                break;
            }
            Err(HandlerError::Park { .. }) => continue,
            Err(e) => panic!("pass {passes}: {e}"),
        }
    }
    assert!(passes > 1, "the batch was handed back at least once");
    let crm = crm.0.lock().unwrap();
    let mut per_wamid: HashMap<&str, usize> = HashMap::new();
    for (wamid, ..) in crm.messages.values() {
        *per_wamid.entry(wamid.as_str()).or_default() += 1;
    }
    eprintln!("{passes} passes, {} CRM calls", crm.calls);
    assert_eq!(per_wamid.len(), 3000);
    assert!(
        per_wamid.values().all(|n| *n == 1),
        "a message logged twice"
    );
    assert_eq!(crm.contacts.len(), 60);
}
