//! The CRM sync ledger: intents (`pending`) and outcomes (`synced`), on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::databases;
use wacrm_store::sync::{ledger, mark_pending, mark_synced};

fn wamids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("wamid.ledger.{i}")).collect()
}

#[tokio::test]
async fn an_outcome_replaces_its_intent_and_a_later_intent_does_not_undo_it() {
    for t in databases().await {
        let all = wamids(450); // more than one multi-row insert
        mark_pending(&t.db, "hubspot", &all).await.unwrap();
        let synced: Vec<(String, String)> = all[..300]
            .iter()
            .map(|w| (w.clone(), format!("crm-{w}")))
            .collect();
        mark_synced(&t.db, "hubspot", &synced).await.unwrap();
        // A redelivered batch writes its intents again.
        mark_pending(&t.db, "hubspot", &all).await.unwrap();

        let rows = ledger(&t.db, "hubspot", &all).await.unwrap();
        assert_eq!(rows.len(), 450, "{}", t.name);
        for (i, w) in all.iter().enumerate() {
            let row = &rows[w];
            if i < 300 {
                assert_eq!(row.state, "synced", "{} {w}", t.name);
                assert_eq!(row.crm_id.as_deref(), Some(format!("crm-{w}").as_str()));
            } else {
                assert_eq!(row.state, "pending", "{} {w}", t.name);
                assert_eq!(row.crm_id, None);
            }
        }
        // Another connection's ledger is its own.
        assert!(ledger(&t.db, "pipedrive", &all).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_outcome_without_its_intent_is_still_recorded() {
    for t in databases().await {
        let w = "wamid.found.by.search".to_owned();
        mark_synced(&t.db, "hubspot", &[(w.clone(), "crm-1".into())])
            .await
            .unwrap();
        let rows = ledger(&t.db, "hubspot", std::slice::from_ref(&w))
            .await
            .unwrap();
        assert_eq!(rows[&w].state, "synced", "{}", t.name);
        assert_eq!(rows[&w].crm_id.as_deref(), Some("crm-1"), "{}", t.name);
    }
}

/// A create sent again (its first attempt lost) may be invisible to a CRM search for as long as
/// the first one: its row's `pending_since` moves to the new attempt. A synced row keeps its
/// time.
#[tokio::test]
async fn a_new_intent_renews_a_pending_rows_time_and_leaves_a_synced_one() {
    for t in databases().await {
        let pending = "contact:phone:+5511987654321".to_owned();
        let synced = "wamid.renew.synced".to_owned();
        let both = vec![pending.clone(), synced.clone()];
        mark_pending(&t.db, "pipedrive", &both).await.unwrap();
        mark_synced(&t.db, "pipedrive", &[(synced.clone(), "crm-9".into())])
            .await
            .unwrap();
        let first = ledger(&t.db, "pipedrive", &both).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        mark_pending(&t.db, "pipedrive", &both).await.unwrap();
        let second = ledger(&t.db, "pipedrive", &both).await.unwrap();
        assert!(
            second[&pending].pending_since > first[&pending].pending_since,
            "{}: {:?} then {:?}",
            t.name,
            first[&pending],
            second[&pending]
        );
        assert_eq!(second[&pending].state, "pending", "{}", t.name);
        assert_eq!(second[&synced], first[&synced], "{}", t.name);
    }
}
