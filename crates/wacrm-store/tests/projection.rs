//! The store projection, on SQLite and (when configured) PostgreSQL: idempotent, order-proof,
//! one contact per person.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    events, projection_databases as databases, records, sqlite, sqlite_through_pool, TestDb,
};
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};
use wacrm_bus::runner::{Handler, HandlerError};
use wacrm_core::contact::IdentityKey;
use wacrm_core::event::{Event, EventPayload};
use wacrm_core::E164;
use wacrm_store::entities::{contact, contact_identity, conversation, message, message_status};
use wacrm_store::queries;

async fn project(t: &TestDb, events: &[Event]) {
    let mut projection = t.projection();
    assert_eq!(projection.has_own_connection(), t.name == "sqlite");
    projection.handle(&records(events)).await.unwrap();
}

/// A text message from the business to the contact of `status_*.json` fixtures, so statuses
/// have a message to attach to.
fn outbound_for(status_events: &[Event]) -> Vec<Event> {
    status_events
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::StatusChanged(s) => Some(s),
            _ => None,
        })
        .map(|s| {
            Event::message(wacrm_core::Message {
                wamid: s.wamid.clone(),
                direction: wacrm_core::Direction::Outbound,
                business: s.business.clone(),
                contact: wacrm_core::ContactProfile {
                    identity: s.recipient.clone(),
                    name: None,
                    username: None,
                },
                timestamp: s.timestamp - chrono::Duration::seconds(5),
                context: None,
                referral: None,
                content: wacrm_core::MessageContent::Text {
                    body: "olá".into(),
                    preview_url: false,
                },
                sent_by: None,
            })
            .unwrap()
        })
        .collect()
}

async fn status_of(db: &DatabaseConnection, wamid: &str) -> (Option<String>, usize) {
    let m = queries::get_message(db, wamid).await.unwrap().unwrap();
    (m.message.status, m.status_history.len())
}

#[tokio::test]
async fn out_of_order_statuses_end_in_the_right_state() {
    for t in databases().await {
        // read before delivered
        let statuses = events("statuses_out_of_order.json");
        let wamid = match &statuses[0].payload {
            EventPayload::StatusChanged(s) => s.wamid.clone(),
            _ => panic!(),
        };
        project(&t, &outbound_for(&statuses[..1])).await;
        project(&t, &statuses).await;
        assert_eq!(
            status_of(&t.db, &wamid).await,
            (Some("read".into()), 2),
            "{}",
            t.name
        );

        // delivered never sent: read alone is enough
        let read = events("status_read.json");
        let EventPayload::StatusChanged(s) = &read[0].payload else {
            panic!()
        };
        project(&t, &outbound_for(&read)).await;
        project(&t, &read).await;
        assert_eq!(
            status_of(&t.db, &s.wamid).await.0,
            Some("read".into()),
            "{}",
            t.name
        );

        // failed with a code, then a late "delivered": still failed, error kept
        let failed = events("status_failed.json");
        let EventPayload::StatusChanged(f) = &failed[0].payload else {
            panic!()
        };
        project(&t, &outbound_for(&failed)).await;
        project(&t, &failed).await;
        let mut late = f.clone();
        late.state = wacrm_core::DeliveryState::Delivered;
        late.errors.clear();
        late.timestamp += chrono::Duration::seconds(10);
        project(&t, &[Event::status(late).unwrap()]).await;
        let m = queries::get_message(&t.db, &f.wamid)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.message.status.as_deref(), Some("failed"), "{}", t.name);
        assert_eq!(
            m.message.status_error.unwrap()["code"],
            131047,
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn statuses_before_their_message_are_applied_when_it_arrives() {
    for t in databases().await {
        let statuses = events("statuses_out_of_order.json");
        let EventPayload::StatusChanged(s) = &statuses[0].payload else {
            panic!()
        };
        project(&t, &statuses).await;
        project(&t, &outbound_for(&statuses[..1])).await;
        assert_eq!(
            status_of(&t.db, &s.wamid).await,
            (Some("read".into()), 2),
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn the_same_webhook_three_times_yields_one_message_and_one_history() {
    for t in databases().await {
        let batch = events("batch_3x2.json");
        for _ in 0..3 {
            project(&t, &batch).await;
        }
        let counts = queries::counts(&t.db).await.unwrap();
        // 12 messages, and the 6 the statuses report on, known only from them.
        assert_eq!(counts.messages, 18, "{}", t.name);
        assert_eq!(counts.statuses, 6, "{}", t.name);
    }
}

#[tokio::test]
async fn bsuid_only_contact_is_stored_and_found() {
    for t in databases().await {
        let evs = events("bsuid_only.json");
        project(&t, &evs).await;
        let EventPayload::MessageReceived(m) = &evs[0].payload else {
            panic!()
        };
        let bsuid = m.contact.identity.bsuid.clone().unwrap();
        let found = queries::find_contacts(&t.db, &[IdentityKey::Bsuid(bsuid)], None)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{}", t.name);
        assert_eq!(
            found[0].username.as_deref(),
            Some("@bia.rocha"),
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn brazilian_number_with_and_without_ninth_digit_is_one_contact() {
    for t in databases().await {
        project(&t, &events("number_9th_digit_pair.json")).await;
        let phone = E164::parse("5511987654321").unwrap();
        let found = queries::find_contacts(&t.db, &[IdentityKey::Phone(phone)], None)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{}", t.name);
        let msgs = queries::contact_messages(&t.db, &found[0].id, None, 100, None)
            .await
            .unwrap()
            .messages;
        assert_eq!(msgs.len(), 2, "{}", t.name);
        assert_eq!(
            queries::counts(&t.db).await.unwrap().contacts,
            1,
            "{}",
            t.name
        );
    }
}

fn text_from(wa_id: &str, wamid: &str, ts: i64) -> Event {
    Event::message(wacrm_core::Message {
        wamid: wamid.into(),
        direction: wacrm_core::Direction::Inbound,
        business: wacrm_core::BusinessNumber::new("106540352242922"),
        contact: wacrm_core::ContactProfile {
            identity: wacrm_core::ContactIdentity::from_webhook(Some(wa_id), None),
            name: Some("Maria".into()),
            username: None,
        },
        timestamp: chrono::DateTime::from_timestamp(ts, 0).unwrap(),
        context: None,
        referral: None,
        content: wacrm_core::MessageContent::Text {
            body: "oi".into(),
            preview_url: false,
        },
        sent_by: None,
    })
    .unwrap()
}

#[tokio::test]
async fn a_number_change_keeps_history_on_one_contact_in_any_order() {
    for t in databases().await {
        let change = events("system_user_changed_number.json");
        let EventPayload::ContactIdentityChanged(c) = change
            .iter()
            .find_map(|e| {
                matches!(e.payload, EventPayload::ContactIdentityChanged(_)).then_some(&e.payload)
            })
            .unwrap()
        else {
            panic!()
        };
        let old = c.old.wa_id.clone().unwrap();
        let new = c.new.wa_id.clone().unwrap();
        // A message from the new number arrives before the system message is processed.
        project(&t, &[text_from(&old, "wamid.before", 1_700_000_000)]).await;
        project(&t, &[text_from(&new, "wamid.after", 1_800_000_100)]).await;
        assert_eq!(
            queries::counts(&t.db).await.unwrap().contacts,
            2,
            "{}",
            t.name
        );
        project(&t, &change).await;
        assert_eq!(
            queries::counts(&t.db).await.unwrap().contacts,
            1,
            "{}",
            t.name
        );
        let by_old = queries::find_contacts(
            &t.db,
            &[IdentityKey::Phone(E164::parse(&old).unwrap())],
            None,
        )
        .await
        .unwrap();
        let by_new = queries::find_contacts(
            &t.db,
            &[IdentityKey::Phone(E164::parse(&new).unwrap())],
            None,
        )
        .await
        .unwrap();
        assert_eq!(by_old, by_new, "{}", t.name);
        let msgs = queries::contact_messages(&t.db, &by_old[0].id, None, 100, None)
            .await
            .unwrap()
            .messages;
        let ids: Vec<_> = msgs.iter().map(|m| m.id.as_str()).collect();
        assert!(
            ids.contains(&"wamid.before") && ids.contains(&"wamid.after"),
            "{}: {ids:?}",
            t.name
        );
        assert_eq!(
            msgs.len(),
            3,
            "{}: both messages and the system notice",
            t.name
        );
        // The merged contact's conversation moved to the survivor, its times kept.
        let conversations = conversation::Entity::find().all(&t.db).await.unwrap();
        assert!(
            conversations.iter().all(|c| c.contact_id == by_old[0].id),
            "{}: {conversations:?}",
            t.name
        );
        let latest = chrono::DateTime::from_timestamp(1_800_000_100, 0).unwrap();
        let with_business = conversations
            .iter()
            .find(|c| c.phone_number_id == "106540352242922")
            .unwrap();
        assert!(
            with_business.last_message_at >= Some(latest)
                && with_business.last_inbound_at >= Some(latest),
            "{}: {with_business:?}",
            t.name
        );
    }
}

async fn snapshot(db: &DatabaseConnection) -> String {
    let contacts: Vec<_> = contact::Entity::find()
        .order_by_asc(contact::Column::Id)
        .all(db)
        .await
        .unwrap();
    let identities: Vec<_> = contact_identity::Entity::find()
        .order_by_asc(contact_identity::Column::Kind)
        .order_by_asc(contact_identity::Column::Value)
        .all(db)
        .await
        .unwrap();
    let conversations: Vec<_> = conversation::Entity::find()
        .order_by_asc(conversation::Column::PhoneNumberId)
        .order_by_asc(conversation::Column::ContactId)
        .all(db)
        .await
        .unwrap();
    let messages: Vec<_> = message::Entity::find()
        .order_by_asc(message::Column::Wamid)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|mut m| {
            m.stored_at = chrono::DateTime::UNIX_EPOCH;
            m
        })
        .collect();
    let statuses: Vec<_> = message_status::Entity::find()
        .order_by_asc(message_status::Column::Wamid)
        .order_by_asc(message_status::Column::State)
        .all(db)
        .await
        .unwrap();
    format!("{contacts:?}\n{identities:?}\n{conversations:?}\n{messages:?}\n{statuses:?}")
}

#[tokio::test]
async fn replaying_everything_twice_gives_the_same_store() {
    let mut all = Vec::new();
    for name in [
        "batch_3x2.json",
        "number_9th_digit_pair.json",
        "system_user_changed_number.json",
        "bsuid_only.json",
        "statuses_out_of_order.json",
        "user_preferences_stop.json",
        "value_errors.json",
        "unknown_future_type.json",
    ] {
        all.extend(events(name));
    }
    let mut snapshots = Vec::new();
    for t in databases().await {
        project(&t, &all).await;
        let first = snapshot(&t.db).await;
        project(&t, &all).await;
        assert_eq!(
            first,
            snapshot(&t.db).await,
            "{}: replay changed the store",
            t.name
        );
        snapshots.push(first);
    }
    // A fresh store fed the same events has the same ids and rows.
    let fresh = sqlite().await;
    project(&fresh, &all).await;
    assert_eq!(snapshot(&fresh.db).await, snapshots[0]);
}

/// Everything the fixtures hold, plus a number change with messages of both numbers around it
/// (a merge in the middle of a batch) and several messages per conversation.
fn mixed_events() -> Vec<Event> {
    let mut all = Vec::new();
    for name in [
        "batch_3x2.json",
        "number_9th_digit_pair.json",
        "bsuid_only.json",
        "statuses_out_of_order.json",
        "user_preferences_stop.json",
        "value_errors.json",
    ] {
        all.extend(events(name));
    }
    let change = events("system_user_changed_number.json");
    let (old, new) = change
        .iter()
        .find_map(|e| match &e.payload {
            EventPayload::ContactIdentityChanged(c) => {
                Some((c.old.wa_id.clone().unwrap(), c.new.wa_id.clone().unwrap()))
            }
            _ => None,
        })
        .unwrap();
    all.push(text_from(&old, "wamid.old.1", 1_700_000_000));
    all.push(text_from(&new, "wamid.new.1", 1_800_000_100));
    all.push(text_from(&old, "wamid.old.2", 1_700_000_050));
    all.extend(change);
    all.push(text_from(&new, "wamid.new.2", 1_800_000_200));
    all.push(text_from(&old, "wamid.old.3", 1_700_000_020));
    // Statuses before their outbound message, then the message, in one batch; and a message
    // the business sent followed by its failure report, in one batch.
    let early = events("statuses_out_of_order.json");
    all.extend(outbound_for(&early));
    let failed = events("status_failed.json");
    all.extend(outbound_for(&failed));
    all.extend(failed);
    // The same wamid twice with different senders: the first one stays.
    all.push(text_from("5531987651111", "wamid.twice", 1_750_000_100));
    all.push(text_from("5531987652222", "wamid.twice", 1_750_000_200));
    // One contact renamed back and forth at the same second: the last name wins, as it does
    // one event at a time, although its report repeats an earlier one of the batch.
    for (n, name) in ["Ana", "Bia", "Ana"].into_iter().enumerate() {
        let mut renamed = text_from("5521987650000", &format!("wamid.rename.{n}"), 1_750_000_000);
        if let EventPayload::MessageReceived(m) = &mut renamed.payload {
            m.contact.name = Some(name.into());
        }
        all.push(renamed);
    }
    all
}

#[tokio::test]
async fn one_batch_gives_the_store_that_one_event_at_a_time_gives() {
    let all = mixed_events();
    for (batched, single) in databases().await.into_iter().zip(databases().await) {
        project(&batched, &all).await;
        for event in &all {
            project(&single, std::slice::from_ref(event)).await;
        }
        assert_eq!(
            snapshot(&batched.db).await,
            snapshot(&single.db).await,
            "{}",
            batched.name
        );
        assert_eq!(
            queries::counts(&batched.db).await.unwrap().contacts,
            queries::counts(&single.db).await.unwrap().contacts
        );
    }
}

#[tokio::test]
async fn an_undecodable_record_is_named_for_dead_lettering() {
    for t in databases().await {
        let mut projection = t.projection();
        let mut recs = records(&events("text.json"));
        recs[0].payload = b"{not json".to_vec();
        match projection.handle(&recs).await {
            Err(HandlerError::Permanent { index: 0, .. }) => {}
            other => panic!("{}: {other:?}", t.name),
        }
        assert_eq!(
            queries::counts(&t.db).await.unwrap().messages,
            0,
            "{}: nothing applied",
            t.name
        );
    }
}

#[tokio::test]
async fn a_late_older_message_does_not_bring_back_an_old_profile_name() {
    for t in databases().await {
        let mut newer = text_from("5511987654321", "wamid.new", 1_800_000_000);
        let mut older = text_from("5511987654321", "wamid.old", 1_700_000_000);
        for (event, name) in [(&mut newer, "Maria Souza"), (&mut older, "Mari")] {
            if let EventPayload::MessageReceived(m) = &mut event.payload {
                m.contact.name = Some(name.into());
            }
        }
        project(&t, &[newer]).await;
        project(&t, &[older]).await;
        let phone = E164::parse("5511987654321").unwrap();
        let found = queries::find_contacts(&t.db, &[IdentityKey::Phone(phone)], None)
            .await
            .unwrap();
        assert_eq!(
            found[0].display_name.as_deref(),
            Some("Maria Souza"),
            "{}",
            t.name
        );
    }
}

/// A contact row with nothing but its id.
fn bare_contact(id: &str) -> contact::ActiveModel {
    use sea_orm::ActiveValue::Set;
    contact::ActiveModel {
        id: Set(id.into()),
        display_name: Set(None),
        username: Set(None),
        merged_into: Set(None),
        created_at: Set(chrono::DateTime::UNIX_EPOCH),
        updated_at: Set(chrono::DateTime::UNIX_EPOCH),
    }
}

/// A writer that read before another connection committed still gets to write: `begin_write`
/// holds the write lock from the start (a deferred SQLite transaction would be refused with
/// "database is locked" here, and its whole batch retried).
#[tokio::test]
async fn a_write_transaction_that_reads_first_is_not_refused_by_a_concurrent_commit() {
    use sea_orm::TransactionTrait;
    for t in databases().await {
        let txn = wacrm_store::begin_write(&t.db).await.unwrap();
        contact::Entity::find().all(&txn).await.unwrap();
        // Another connection writes meanwhile: it waits for this transaction instead of
        // committing under its snapshot.
        let other = t.db.clone();
        let concurrent = tokio::spawn(async move {
            let txn = other.begin().await.unwrap();
            contact::Entity::insert(bare_contact("other"))
                .exec_without_returning(&txn)
                .await?;
            txn.commit().await
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        contact::Entity::insert(bare_contact("mine"))
            .exec_without_returning(&txn)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        txn.commit().await.unwrap();
        concurrent.await.unwrap().unwrap();
        assert_eq!(
            queries::counts(&t.db).await.unwrap().contacts,
            2,
            "{}",
            t.name
        );
    }
}

/// Every fixture's events and the mixed batch, and a dead-letter record: every kind of row the
/// projection writes.
fn everything() -> Vec<wacrm_bus::Record> {
    let mut all = mixed_events();
    for name in [
        "text.json",
        "image.json",
        "location.json",
        "interactive_button_reply.json",
        "order.json",
        "reaction.json",
        "text_referral.json",
        "contacts_vcard.json",
        "status_sent.json",
        "status_delivered.json",
        "status_read.json",
    ] {
        all.extend(events(name));
    }
    let mut recs = records(&all);
    let topics = wacrm_bus::Topics::default();
    recs.push(wacrm_bus::Record {
        topic: topics.dead_letters.clone(),
        partition: 0,
        offset: 7,
        key: "k".into(),
        headers: vec![
            (wacrm_bus::cloudevents::DLQ_ID.into(), "dlq-1".into()),
            (
                wacrm_bus::cloudevents::DLQ_TIME.into(),
                "2026-11-30T12:00:00.123456789Z".into(),
            ),
            (wacrm_bus::cloudevents::DLQ_SOURCE.into(), "test".into()),
            (wacrm_bus::cloudevents::DLQ_REASON.into(), "bad".into()),
        ],
        payload: b"\x00\xffnot utf-8".to_vec(),
        timestamp_ms: 1_764_504_000_000,
    });
    recs
}

/// Every projected table's rows as SQLite holds them, each value `quote()`d (so a time or JSON
/// written as other text, or as another type, differs); the time a message was stored aside.
async fn raw_rows(db: &DatabaseConnection) -> Vec<String> {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = db.get_database_backend();
    let mut out = Vec::new();
    for table in [
        "contacts",
        "contact_identities",
        "conversations",
        "messages",
        "message_statuses",
        "contact_preferences",
        "platform_errors",
        "dead_letters",
    ] {
        let columns: Vec<String> = db
            .query_all(Statement::from_string(
                backend,
                format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
            ))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.try_get::<String>("", "name").unwrap())
            .filter(|c| c != "stored_at")
            .collect();
        let quoted: Vec<String> = columns.iter().map(|c| format!("quote({c})")).collect();
        let sql = format!(
            "SELECT {} AS row FROM {table} ORDER BY 1",
            quoted.join(" || '|' || ")
        );
        let rows = db
            .query_all(Statement::from_string(backend, sql))
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{table}: nothing written");
        for r in rows {
            out.push(format!(
                "{table}: {}",
                r.try_get::<String>("", "row").unwrap()
            ));
        }
    }
    out
}

#[tokio::test]
async fn the_own_sqlite_connection_writes_exactly_what_the_pool_writes() {
    let recs = everything();
    let (own, pooled) = (sqlite().await, sqlite_through_pool().await);
    for t in [&own, &pooled] {
        let mut projection = t.projection();
        projection.handle(&recs).await.unwrap();
        // And once more, one record at a time: a replay changes nothing.
        for record in &recs {
            projection
                .handle(std::slice::from_ref(record))
                .await
                .unwrap();
        }
    }
    assert_eq!(snapshot(&own.db).await, snapshot(&pooled.db).await);
    let (own_rows, pooled_rows) = (raw_rows(&own.db).await, raw_rows(&pooled.db).await);
    assert_eq!(own_rows.len(), pooled_rows.len());
    for (a, b) in own_rows.iter().zip(&pooled_rows) {
        assert_eq!(a, b);
    }
}

#[tokio::test]
async fn a_batch_that_fails_midway_leaves_nothing_and_the_next_one_goes_through() {
    for t in databases().await {
        let good = text_from("5511987654321", "wamid.good", 1_800_000_000);
        let mut bad = text_from("5511987650000", "wamid.bad", 1_800_000_001);
        if let EventPayload::MessageReceived(m) = &mut bad.payload {
            m.contact.identity = wacrm_core::ContactIdentity::default();
        }
        let mut projection = t.projection();
        match projection.handle(&records(&[good.clone(), bad])).await {
            Err(HandlerError::Permanent { index: 1, .. }) => {}
            other => panic!("{}: {other:?}", t.name),
        }
        let counts = queries::counts(&t.db).await.unwrap();
        assert_eq!((counts.contacts, counts.messages), (0, 0), "{}", t.name);
        // The runner hands the batch again without the dead letter.
        projection.handle(&records(&[good])).await.unwrap();
        let counts = queries::counts(&t.db).await.unwrap();
        assert_eq!((counts.contacts, counts.messages), (1, 1), "{}", t.name);
    }
}

#[tokio::test]
async fn the_own_sqlite_connection_waits_for_another_writer() {
    use sea_orm::TransactionTrait;
    let t = sqlite().await;
    assert!(t.projection().has_own_connection());
    let txn = t.db.begin().await.unwrap();
    contact::Entity::insert(bare_contact("other"))
        .exec_without_returning(&txn)
        .await
        .unwrap();
    let mut projection = t.projection();
    let handled = tokio::task::spawn_blocking(move || {
        // As the runner's own thread builds it (`run_on_own_thread`): the projection also
        // reads the erased list through the pool, which needs tokio's timers.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(projection.handle(&records(&events("text.json"))))
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !handled.is_finished(),
        "wrote while another writer held the lock"
    );
    txn.commit().await.unwrap();
    handled.await.unwrap().unwrap();
    let counts = queries::counts(&t.db).await.unwrap();
    assert_eq!((counts.contacts, counts.messages), (2, 1));
}

/// A status of a message wacrm never saw (sent from the number by another tool) makes it
/// visible in the history as an outbound placeholder with its status; the message itself wins
/// whichever order they come in.
#[tokio::test]
async fn a_message_known_only_from_statuses_is_listed_and_the_real_one_replaces_it() {
    for t in databases().await {
        let statuses = events("statuses_out_of_order.json");
        let EventPayload::StatusChanged(s) = &statuses[0].payload else {
            panic!()
        };
        let wamid = s.wamid.clone();
        let recipient = s.recipient.keys();
        // Statuses only, twice (idempotent): one placeholder with the merged status.
        project(&t, &statuses).await;
        project(&t, &statuses).await;
        let found = queries::find_contacts(&t.db, &recipient, None)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{}", t.name);
        let page = queries::contact_messages(&t.db, &found[0].id, None, 100, None)
            .await
            .unwrap();
        assert_eq!(page.messages.len(), 1, "{}", t.name);
        let m = &page.messages[0];
        assert_eq!(
            (m.id.as_str(), m.direction.as_str(), m.kind.as_str()),
            (wamid.as_str(), "outbound", queries::STATUS_ONLY_KIND),
            "{}",
            t.name
        );
        assert_eq!(m.status.as_deref(), Some("read"), "{}", t.name);
        let first = statuses
            .iter()
            .filter_map(|e| match &e.payload {
                EventPayload::StatusChanged(s) => Some(s.timestamp),
                _ => None,
            })
            .min()
            .unwrap();
        assert_eq!(
            m.timestamp, first,
            "dated by its earliest status: {}",
            t.name
        );
        assert!(queries::contact_visible(
            &t.db,
            &found[0].id,
            Some(std::slice::from_ref(&s.business.phone_number_id))
        )
        .await
        .unwrap());

        // The real message arrives: it replaces the placeholder, keeping the statuses.
        let real = outbound_for(&statuses[..1]);
        project(&t, &real).await;
        project(&t, &statuses).await;
        let after = queries::get_message(&t.db, &wamid).await.unwrap().unwrap();
        assert_eq!(after.message.kind, "text", "{}", t.name);
        assert_eq!(after.message.status.as_deref(), Some("read"), "{}", t.name);
        assert_eq!(after.status_history.len(), 2, "{}", t.name);
        let page = queries::contact_messages(&t.db, &found[0].id, None, 100, None)
            .await
            .unwrap();
        assert_eq!(page.messages.len(), 1, "{}", t.name);
    }
}

#[tokio::test]
async fn the_real_message_first_then_statuses_make_no_placeholder() {
    for t in databases().await {
        let statuses = events("statuses_out_of_order.json");
        let EventPayload::StatusChanged(s) = &statuses[0].payload else {
            panic!()
        };
        let mut batch = outbound_for(&statuses[..1]);
        batch.extend(statuses.iter().cloned());
        // In one batch and across batches.
        project(&t, &batch).await;
        project(&t, &outbound_for(&statuses[..1])).await;
        project(&t, &statuses).await;
        let m = queries::get_message(&t.db, &s.wamid)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.message.kind.as_str(), m.message.status.as_deref()),
            ("text", Some("read")),
            "{}",
            t.name
        );
        assert_eq!(queries::counts(&t.db).await.unwrap().messages, 1);
    }
}

/// A dead letter remembers the business number its payload names, on every projection path.
#[tokio::test]
async fn dead_letters_name_the_business_number_of_their_payload() {
    let webhook = std::fs::read(format!(
        "{}/../wacrm-whatsapp/tests/fixtures/text.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let event = serde_json::json!({"wamid": "w", "business": {"phone_number_id": "222"}});
    let two = serde_json::json!({"entry": [
        {"changes": [{"value": {"metadata": {"phone_number_id": "1"}}}]},
        {"changes": [{"value": {"metadata": {"phone_number_id": "2"}}}]}
    ]});
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("webhook", webhook, Some("106540352242922")),
        ("event", event.to_string().into_bytes(), Some("222")),
        ("two numbers", two.to_string().into_bytes(), None),
        ("garbage", b"not json".to_vec(), None),
    ];
    let topics = wacrm_bus::Topics::default();
    let recs: Vec<wacrm_bus::Record> = cases
        .iter()
        .enumerate()
        .map(|(i, (id, payload, _))| wacrm_bus::Record {
            topic: topics.dead_letters.clone(),
            partition: 0,
            offset: i as i64,
            key: "k".into(),
            headers: vec![(wacrm_bus::cloudevents::DLQ_ID.into(), (*id).into())],
            payload: payload.clone(),
            timestamp_ms: 1_764_504_000_000,
        })
        .collect();
    for t in databases().await {
        t.projection().handle(&recs).await.unwrap();
        for (id, _, number) in &cases {
            let dead = queries::dead_letter(&t.db, id).await.unwrap().unwrap();
            assert_eq!(dead.phone_number_id.as_deref(), *number, "{}: {id}", t.name);
        }
        let limited = queries::dead_letters(&t.db, 100, true, Some(&["222".to_owned()]))
            .await
            .unwrap();
        let ids: Vec<&str> = limited.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, vec!["event"], "{}", t.name);
        let all = queries::dead_letters(&t.db, 100, true, None).await.unwrap();
        assert_eq!(all.len(), 4, "{}", t.name);
    }
}
