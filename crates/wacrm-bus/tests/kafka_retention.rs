//! Kafka topics are created with an explicit retention from `[retention] bus_log_days`, and a
//! topic that keeps records for another time (or forever, or by the broker's default) is told
//! apart — against a real Kafka-protocol broker (tansu, which stores the configuration a topic
//! is created with and answers `DescribeConfigs` with it).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use support::broker::Broker;
use wacrm_bus::kafka::{check_topics, expected_topics, KafkaConfig, TopicSpec, TopicState};
use wacrm_bus::Topics;

const DAY_MS: i64 = 86_400_000;

fn config(broker: &Broker, retention_ms: i64) -> KafkaConfig {
    KafkaConfig {
        brokers: broker.bootstrap(),
        partitions: 2,
        topic_retention_ms: retention_ms,
        ..KafkaConfig::default()
    }
}

fn admin(broker: &Broker) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap()
}

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(Duration::from_secs(10)))
}

/// The topic's configuration as the broker describes it.
async fn described(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> HashMap<String, String> {
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options())
        .await
        .unwrap();
    let resource = results.into_iter().next().unwrap().unwrap();
    resource
        .entries
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

fn state_of<'a>(states: &'a [(TopicSpec, TopicState)], topic: &str) -> &'a TopicState {
    &states.iter().find(|(s, _)| s.name == topic).unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_with_the_buss_retention_and_other_retentions_are_told_apart() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let three_days = config(&broker, 3 * DAY_MS);
    let topics = Topics::with_prefix("ret.");
    let specs = expected_topics(&topics, &three_days);
    let created = check_topics(&three_days, &specs, true).await.unwrap();
    assert!(
        created.iter().all(|(_, s)| *s == TopicState::Ok),
        "{created:?}"
    );

    let admin = admin(&broker);
    for topic in [
        &topics.conversations,
        &topics.commands,
        &topics.audit,
        &topics.dead_letters,
    ] {
        let found = described(&admin, topic).await;
        assert_eq!(
            found.get("cleanup.policy").map(String::as_str),
            Some("delete")
        );
        assert_eq!(
            found.get("retention.ms").map(String::as_str),
            Some("259200000"),
            "{topic}: {found:?}"
        );
        assert_eq!(
            found.get("segment.ms").map(String::as_str),
            Some("86400000"),
            "{topic}: a record outlives the retention by a day at most"
        );
    }
    let contacts = described(&admin, &topics.contacts).await;
    assert_eq!(
        contacts.get("cleanup.policy").map(String::as_str),
        Some("compact"),
        "{contacts:?}"
    );
    assert_eq!(
        contacts.get("delete.retention.ms").map(String::as_str),
        Some("259200000"),
        "tombstones stay as long as the bus keeps records: {contacts:?}"
    );
    assert_eq!(
        contacts.get("max.compaction.lag.ms").map(String::as_str),
        Some("86400000")
    );

    // The configuration changes to a week: every topic is found keeping 3 days, and named.
    let week = config(&broker, 7 * DAY_MS);
    let states = check_topics(&week, &expected_topics(&topics, &week), false)
        .await
        .unwrap();
    assert_eq!(
        state_of(&states, &topics.conversations),
        &TopicState::Retention {
            name: "retention.ms",
            found: Some("259200000".into()),
            expected: "604800000".into(),
        }
    );
    assert_eq!(
        state_of(&states, &topics.contacts),
        &TopicState::Retention {
            name: "delete.retention.ms",
            found: Some("259200000".into()),
            expected: "604800000".into(),
        }
    );

    // Topics made by hand: one keeping everything forever, one setting no retention at all.
    let forever = "ret2.conversations";
    let unset = "ret3.conversations";
    let made = admin
        .create_topics(
            &[
                NewTopic::new(forever, 2, TopicReplication::Fixed(1))
                    .set("cleanup.policy", "delete")
                    .set("retention.ms", "-1"),
                NewTopic::new(unset, 2, TopicReplication::Fixed(1)).set("cleanup.policy", "delete"),
            ],
            &options(),
        )
        .await
        .unwrap();
    assert!(made.iter().all(Result::is_ok), "{made:?}");
    for (prefix, found) in [("ret2.", Some("-1".to_owned())), ("ret3.", None)] {
        let topics = Topics::with_prefix(prefix);
        let states = check_topics(&week, &expected_topics(&topics, &week), false)
            .await
            .unwrap();
        assert_eq!(
            state_of(&states, &topics.conversations),
            &TopicState::Retention {
                name: "retention.ms",
                found,
                expected: "604800000".into(),
            }
        );
    }

    // A bus kept forever (bus_log_days = 0) expects exactly that.
    let kept_forever = config(&broker, -1);
    let topics = Topics::with_prefix("ret2.");
    let states = check_topics(
        &kept_forever,
        &[expected_topics(&topics, &kept_forever)[0].clone()],
        false,
    )
    .await
    .unwrap();
    assert_eq!(states[0].1, TopicState::Ok, "{states:?}");
}
