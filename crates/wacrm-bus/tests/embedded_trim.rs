//! Trimming the embedded log: only what is past the retention and consumed by every group that
//! committed on the topic (or past the hard limit), oldest first, in bounded steps; replay and
//! resuming work on what is left, and a topic trimmed to nothing keeps its offsets.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::embedded::{config, drain};
use wacrm_bus::embedded::EmbeddedBus;
use wacrm_bus::{EventBus, OutboundRecord, Record, TrimPolicy, Trimmed};

fn record(topic: &str, n: usize) -> OutboundRecord {
    OutboundRecord {
        topic: topic.into(),
        key: format!("k{}", n % 3),
        headers: vec![("n".into(), n.to_string())],
        payload: n.to_string().into_bytes(),
    }
}

async fn publish(bus: &EmbeddedBus, topic: &str, range: std::ops::Range<usize>) {
    bus.publish(range.map(|n| record(topic, n)).collect())
        .await
        .unwrap();
}

/// A time between what was published before and what is published after it.
async fn boundary() -> i64 {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let at = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(20)).await;
    at
}

/// Commits a group's position on `topic` at `next` (everything before it consumed).
async fn commit_to(bus: &EmbeddedBus, group: &str, topic: &str, next: usize) {
    let mut sub = bus.subscribe(group, &[topic.to_owned()]).await.unwrap();
    let got = drain(&mut sub, next).await;
    sub.commit(&got[..next]).await.unwrap();
}

/// Every offset a new group reads of `topic`.
async fn offsets(bus: &EmbeddedBus, topic: &str, want: usize) -> Vec<i64> {
    let group = format!("reader-{}", uuid::Uuid::new_v4());
    let mut sub = bus.subscribe(&group, &[topic.to_owned()]).await.unwrap();
    let got = drain(&mut sub, want).await;
    let more = sub.poll(100, Duration::from_millis(50)).await.unwrap();
    assert!(more.is_empty(), "more than {want}: {more:?}");
    got.iter().map(|r| r.offset).collect()
}

/// Trims until done, in steps of `step`; every step removes at most `step` records.
async fn trim_all(bus: &EmbeddedBus, policy: TrimPolicy, step: usize) -> Trimmed {
    let mut total = Trimmed::default();
    for _ in 0..1_000 {
        let trimmed = bus.trim(policy, step, false).await.unwrap().unwrap();
        assert!(
            trimmed.records <= step as u64,
            "{trimmed:?} in a step of {step}"
        );
        total.records += trimmed.records;
        for (group, n) in trimmed.unconsumed {
            *total.unconsumed.entry(group).or_default() += n;
        }
        if trimmed.done {
            total.done = true;
            return total;
        }
    }
    panic!("trimming never finished");
}

fn numbers(records: &[Record]) -> Vec<usize> {
    records
        .iter()
        .map(|r| {
            String::from_utf8(r.payload.clone())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn only_old_records_every_group_consumed_go_and_replay_reads_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(&config(&dir)).unwrap();
    publish(&bus, "t", 0..10).await;
    let cutoff = boundary().await;
    publish(&bus, "t", 10..20).await;
    commit_to(&bus, "ahead", "t", 15).await;
    commit_to(&bus, "behind", "t", 5).await;
    let policy = TrimPolicy {
        older_than_ms: cutoff,
        unconsumed_older_than_ms: None,
    };

    // The dry run counts what would go and changes nothing.
    let dry = bus.trim(policy, 1, true).await.unwrap().unwrap();
    assert_eq!(dry.records, 5, "{dry:?}");
    assert!(dry.unconsumed.is_empty());
    assert_eq!(offsets(&bus, "t", 20).await, (0..20).collect::<Vec<_>>());

    // Old and consumed by both groups: 0–4. Not 5–9 (old, but "behind" has not read them),
    // not 10–19 (young, though "ahead" read up to 14).
    let trimmed = trim_all(&bus, policy, 1_000).await;
    assert_eq!(trimmed.records, 5, "{trimmed:?}");
    assert!(trimmed.unconsumed.is_empty());
    assert_eq!(offsets(&bus, "t", 15).await, (5..20).collect::<Vec<_>>());

    // "behind" catches up to 12: the rest of the old records go, the young ones stay.
    commit_to(&bus, "behind", "t", 7).await; // 5 + 7 = 12
    let trimmed = trim_all(&bus, policy, 2).await;
    assert_eq!(trimmed.records, 5, "{trimmed:?}");
    assert_eq!(offsets(&bus, "t", 10).await, (10..20).collect::<Vec<_>>());

    // Each group resumes where it committed, on what is left.
    let mut ahead = bus.subscribe("ahead", &["t".into()]).await.unwrap();
    assert_eq!(
        numbers(&drain(&mut ahead, 5).await),
        (15..20).collect::<Vec<_>>()
    );
    let mut behind = bus.subscribe("behind", &["t".into()]).await.unwrap();
    assert_eq!(
        numbers(&drain(&mut behind, 8).await),
        (12..20).collect::<Vec<_>>()
    );
    // Nothing more is old enough.
    drop((ahead, behind));
    assert_eq!(trim_all(&bus, policy, 1_000).await.records, 0);
}

#[tokio::test]
async fn past_the_hard_limit_a_stopped_group_loses_what_it_did_not_read_and_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(&config(&dir)).unwrap();
    publish(&bus, "t", 0..10).await;
    let hard = boundary().await;
    publish(&bus, "t", 10..20).await;
    let retention = boundary().await;
    publish(&bus, "t", 20..25).await;
    commit_to(&bus, "live", "t", 25).await;
    // A group that read one record and stopped for good.
    commit_to(&bus, "gone", "t", 1).await;

    let only_retention = TrimPolicy {
        older_than_ms: retention,
        unconsumed_older_than_ms: None,
    };
    let trimmed = trim_all(&bus, only_retention, 1_000).await;
    assert_eq!(
        trimmed.records, 1,
        "the stopped group holds the log: {trimmed:?}"
    );

    let with_hard_limit = TrimPolicy {
        older_than_ms: retention,
        unconsumed_older_than_ms: Some(hard),
    };
    let dry = bus.trim(with_hard_limit, 1, true).await.unwrap().unwrap();
    assert_eq!(dry.records, 9);
    let trimmed = trim_all(&bus, with_hard_limit, 4).await;
    // 1–9 are past the hard limit; 10–19 are past the retention but "gone" has not read them
    // and they are within the hard limit.
    assert_eq!(trimmed.records, 9, "{trimmed:?}");
    assert_eq!(trimmed.unconsumed.get("gone"), Some(&9));
    assert!(!trimmed.unconsumed.contains_key("live"));
    assert_eq!(offsets(&bus, "t", 15).await, (10..25).collect::<Vec<_>>());

    // The stopped group comes back: it resumes after the gap, at the oldest record left.
    let mut gone = bus.subscribe("gone", &["t".into()]).await.unwrap();
    assert_eq!(
        numbers(&drain(&mut gone, 15).await),
        (10..25).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_topic_no_group_committed_on_is_trimmed_by_age_and_keeps_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(&config(&dir)).unwrap();
        publish(&bus, "audit", 0..6).await;
        publish(&bus, "t", 0..3).await;
        commit_to(&bus, "g", "t", 2).await;
        let everything = TrimPolicy {
            older_than_ms: chrono::Utc::now().timestamp_millis() + 1,
            unconsumed_older_than_ms: None,
        };
        let trimmed = trim_all(&bus, everything, 1_000).await;
        assert_eq!(trimmed.records, 6 + 2, "{trimmed:?}");
        // A publish after the trim continues the offsets; then nothing is left of the topic.
        publish(&bus, "audit", 6..7).await;
        assert_eq!(offsets(&bus, "audit", 1).await, vec![6]);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let everything = TrimPolicy {
            older_than_ms: chrono::Utc::now().timestamp_millis() + 1,
            unconsumed_older_than_ms: None,
        };
        assert_eq!(trim_all(&bus, everything, 1_000).await.records, 1);
    }
    // Reopened with nothing left of "audit": its offsets still go on.
    let bus = EmbeddedBus::open(&config(&dir)).unwrap();
    publish(&bus, "audit", 7..8).await;
    assert_eq!(offsets(&bus, "audit", 1).await, vec![7]);
    assert_eq!(offsets(&bus, "t", 1).await, vec![2]);
}

#[tokio::test]
async fn publishing_and_consuming_go_on_while_the_log_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let bus = std::sync::Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    publish(&bus, "t", 0..2_000).await;
    commit_to(&bus, "g", "t", 2_000).await;
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for n in 2_000..2_200 {
                bus.publish(vec![record("t", n)]).await.unwrap();
            }
        })
    };
    let cutoff = chrono::Utc::now().timestamp_millis() + 1;
    let trimmed = trim_all(
        &bus,
        TrimPolicy {
            older_than_ms: cutoff,
            unconsumed_older_than_ms: None,
        },
        100,
    )
    .await;
    publisher.await.unwrap();
    assert_eq!(trimmed.records, 2_000);
    let mut sub = bus.subscribe("g", &["t".into()]).await.unwrap();
    assert_eq!(
        numbers(&drain(&mut sub, 200).await),
        (2_000..2_200).collect::<Vec<_>>()
    );
}
