//! An integrator's own service reading wacrm's conversation events from Kafka.
//!
//! It needs only `wacrm-core` (the event types) and `wacrm-bus`'s CloudEvents decoding; the
//! consumer is plain rdkafka. Offsets are committed after an event is handled, so a crash
//! re-delivers rather than loses; event ids are deterministic, so a repeat can be recognised.
//!
//! `cargo run -p wacrm-bus --example kafka_consumer -- 127.0.0.1:9092 my-service`

use std::collections::HashSet;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use wacrm_bus::cloudevents::decode_event;
use wacrm_bus::kafka::record_from_kafka;
use wacrm_core::event::EventPayload;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let brokers = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let group = args.next().unwrap_or_else(|| "example-consumer".into());

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&["wacrm.conversations"])?;

    // A real service keeps this in its own store; a set shows the idea.
    let mut seen = HashSet::new();
    loop {
        let message = consumer.recv().await?;
        let record = record_from_kafka(&message);
        match decode_event(&record) {
            Ok(event) if !seen.insert(event.id) => {} // a repeat (Meta retried a webhook)
            Ok(event) => match &event.payload {
                EventPayload::MessageReceived(m) => {
                    println!(
                        "{} received {} at {}",
                        event.id,
                        m.content.kind(),
                        m.timestamp
                    );
                }
                EventPayload::StatusChanged(s) => {
                    println!("{} status {} for {}", event.id, s.state.as_str(), s.wamid);
                }
                other => println!("{} {}", event.id, other.type_name()),
            },
            // A type this build does not know (a newer wacrm): skip it, do not crash.
            Err(e) => eprintln!("skipping record at offset {}: {e}", record.offset),
        }
        consumer.commit_message(&message, CommitMode::Async)?;
    }
}
