//! The instance registry (`wacrm_store::instances`) and claims of sends by instance
//! (`outbound::claim`), on every database.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::databases;
use serde_json::json;
use wacrm_store::instances;
use wacrm_store::outbound::{self as requests, state, Claim};

async fn accepted(db: &wacrm_store::Db, id: &str) {
    requests::create(
        db,
        requests::NewRequest {
            request_id: id.to_owned(),
            key_id: "k1".into(),
            idempotency_key: None,
            request_hash: String::new(),
            kind: "send",
            phone_number_id: "106540352242922".into(),
            contact_id: None,
            command: json!({}),
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_instance_is_alive_from_register_to_retire_and_a_beat_brings_it_back() {
    for t in databases().await {
        let id = instances::new_id();
        assert!(
            !instances::is_alive(&t.db, &id).await.unwrap(),
            "{}",
            t.name
        );
        instances::register(&t.db, &id).await.unwrap();
        assert!(instances::is_alive(&t.db, &id).await.unwrap(), "{}", t.name);
        let alive: Vec<_> = instances::alive(&t.db)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(alive, vec![id.clone()], "{}", t.name);
        instances::retire(&t.db, &id).await.unwrap();
        assert!(
            !instances::is_alive(&t.db, &id).await.unwrap(),
            "{}",
            t.name
        );
        // A heartbeat after its row went (removed by hand, or by another instance's
        // housekeeping) registers it again.
        instances::beat(&t.db, &id).await.unwrap();
        assert!(instances::is_alive(&t.db, &id).await.unwrap(), "{}", t.name);
    }
}

#[tokio::test]
async fn a_claim_names_its_instance_and_only_a_live_other_holder_makes_it_busy() {
    let hold = Duration::from_secs(60);
    for t in databases().await {
        instances::register(&t.db, "a").await.unwrap();
        instances::register(&t.db, "b").await.unwrap();
        accepted(&t.db, "r1").await;
        assert_eq!(
            requests::claim(&t.db, "r1", "a", hold).await.unwrap(),
            Claim::Claimed
        );
        let row = requests::get(&t.db, "r1").await.unwrap().unwrap();
        assert_eq!(row.claimed_by.as_deref(), Some("a"), "{}", t.name);
        assert_eq!(row.state, state::SENDING);
        // Another live instance waits; the holder itself finds what it left behind.
        assert_eq!(
            requests::claim(&t.db, "r1", "b", hold).await.unwrap(),
            Claim::Busy { holder: "a".into() },
            "{}",
            t.name
        );
        assert!(matches!(
            requests::claim(&t.db, "r1", "a", hold).await.unwrap(),
            Claim::Interrupted(_)
        ));
        // Held longer than any send takes: left behind, even with its instance alive.
        assert!(matches!(
            requests::claim(&t.db, "r1", "b", Duration::ZERO)
                .await
                .unwrap(),
            Claim::Interrupted(_)
        ));
        // Its instance gone: interrupted.
        instances::retire(&t.db, "a").await.unwrap();
        assert!(matches!(
            requests::claim(&t.db, "r1", "b", hold).await.unwrap(),
            Claim::Interrupted(_)
        ));
        // Handed back, then claimed by the other.
        requests::release(&t.db, "r1").await.unwrap();
        assert_eq!(
            requests::claim(&t.db, "r1", "b", hold).await.unwrap(),
            Claim::Claimed
        );
        requests::finish_sent(&t.db, "r1", "wamid.1").await.unwrap();
        assert!(matches!(
            requests::claim(&t.db, "r1", "a", hold).await.unwrap(),
            Claim::Finished(_)
        ));
    }
}
