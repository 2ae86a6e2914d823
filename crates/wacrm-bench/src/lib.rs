//! Benchmarks and load generation for wacrm.
//!
//! - [`payloads`]: realistic, signed Cloud API webhooks of every type, in batches.
//! - [`driver`]: open-loop (fixed arrival rate) and closed-loop load with latency histograms.
//! - [`baseline`]: the minimal hyper server that measures the machine's ceiling.
//! - [`procstat`]: a server's RSS and CPU from `/proc`.
//! - [`meter`]: a proxy timing and counting the requests to a CRM fake that keeps no clock.
//! - [`drain`]: a Kafka backlog worked off by wacrm's consumer and by librdkafka's own.
//! - [`tansu`]: a local Kafka-protocol broker for it.
//!
//! The `wacrm-load` binary puts them together; the criterion benches measure the hot path's
//! parts.

pub mod baseline;
pub mod drain;
pub mod driver;
pub mod meter;
pub mod payloads;
pub mod procstat;
pub mod tansu;

use serde_json::json;

/// A webhook with `updates` inbound text messages from `contacts` different senders, in one
/// entry and change (Meta batches up to 1,000 updates this way).
pub fn text_webhook(first: usize, updates: usize, contacts: usize) -> Vec<u8> {
    let contacts = contacts.max(1);
    let messages: Vec<_> = (first..first + updates)
        .map(|i| {
            json!({
                "from": format!("55119{:08}", 80_000_000 + i % contacts),
                "id": format!("wamid.bench.{i:09}"),
                "timestamp": (1_750_000_000 + i).to_string(),
                "type": "text",
                "text": {"body": format!("Olá, quero saber o preço do produto {i}")}
            })
        })
        .collect();
    let profiles: Vec<_> = (0..contacts.min(updates.max(1)))
        .map(|c| json!({"profile": {"name": format!("Cliente {c}")}, "wa_id": format!("55119{:08}", 80_000_000 + c)}))
        .collect();
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": profiles,
            "messages": messages
        }}]}]
    });
    serde_json::to_vec(&body).unwrap_or_default()
}
