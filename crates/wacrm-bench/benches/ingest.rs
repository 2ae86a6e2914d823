#![allow(missing_docs)]
//! Micro-benchmarks of the ingest hot path: signature verification, parsing + normalisation
//! (per message and per 1,000-update batch), CloudEvents encoding, embedded bus append.
//!
//! `cargo bench -p wacrm-bench`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wacrm_bench::text_webhook;
use wacrm_bus::cloudevents::event_record;
use wacrm_bus::config::EmbeddedConfig;
use wacrm_bus::embedded::EmbeddedBus;
use wacrm_bus::{EventBus, Topics};
use wacrm_whatsapp::normalise::parse_and_normalise;
use wacrm_whatsapp::signature::sign;
use wacrm_whatsapp::WebhookSecrets;

fn signature(c: &mut Criterion) {
    let body = text_webhook(0, 1, 1);
    let secrets = WebhookSecrets::new(Some("app-secret"), Some("next-secret"));
    let header = sign(b"app-secret", &body);
    c.bench_function("signature/verify_1_message_body", |b| {
        b.iter(|| secrets.verify(black_box(&body), Some(black_box(&header))))
    });
}

fn normalise(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalise");
    for updates in [1usize, 100, 1000] {
        let body = text_webhook(0, updates, 100);
        group.throughput(Throughput::Elements(updates as u64));
        group.bench_with_input(
            BenchmarkId::new("text_updates", updates),
            &body,
            |b, body| b.iter(|| parse_and_normalise(black_box(body), chrono::Utc::now())),
        );
    }
    let fixtures = [
        "image.json",
        "interactive_nfm_reply.json",
        "order.json",
        "status_failed.json",
        "batch_3x2.json",
    ];
    for name in fixtures {
        let path = format!(
            "{}/../wacrm-whatsapp/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        if let Ok(body) = std::fs::read(&path) {
            group.throughput(Throughput::Elements(1));
            group.bench_with_input(BenchmarkId::new("fixture", name), &body, |b, body| {
                b.iter(|| parse_and_normalise(black_box(body), chrono::Utc::now()))
            });
        }
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let body = text_webhook(0, 1, 1);
    let events = parse_and_normalise(&body, chrono::Utc::now())
        .map(|n| n.events)
        .unwrap_or_default();
    let topics = Topics::default();
    c.bench_function("cloudevents/encode_message_event", |b| {
        b.iter(|| event_record(&topics, "/wacrm", black_box(&events[0])))
    });
}

fn bus_append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let bus = Arc::new(
        EmbeddedBus::open(&EmbeddedConfig {
            path: dir.path().join("bench.db"),
            max_batch: 4096,
        })
        .unwrap_or_else(|e| panic!("bus: {e}")),
    );
    let body = text_webhook(0, 1, 1);
    let events = parse_and_normalise(&body, chrono::Utc::now())
        .map(|n| n.events)
        .unwrap_or_default();
    let topics = Topics::default();
    let records: Vec<_> = events
        .iter()
        .filter_map(|e| event_record(&topics, "/wacrm", e).ok())
        .collect();
    let mut group = c.benchmark_group("embedded_bus");
    for concurrency in [1usize, 64] {
        group.throughput(Throughput::Elements(concurrency as u64));
        group.bench_with_input(
            BenchmarkId::new("durable_publish_concurrent", concurrency),
            &concurrency,
            |b, &n| {
                b.to_async(&runtime).iter(|| {
                    let bus = bus.clone();
                    let records = records.clone();
                    async move {
                        let mut tasks = Vec::with_capacity(n);
                        for _ in 0..n {
                            let bus = bus.clone();
                            let records = records.clone();
                            tasks.push(tokio::spawn(async move { bus.publish(records).await }));
                        }
                        for t in tasks {
                            let _ = t.await;
                        }
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, signature, normalise, encode, bus_append);
criterion_main!(benches);
