//! What the embedded-bus suites share: a log in a temporary directory, and draining a
//! subscription.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use wacrm_bus::config::EmbeddedConfig;
use wacrm_bus::{Record, Subscription};

/// A log in `dir`, with group commits of up to 1,024 records.
pub fn config(dir: &tempfile::TempDir) -> EmbeddedConfig {
    EmbeddedConfig {
        path: dir.path().join("bus.db"),
        max_batch: 1024,
    }
}

/// Polls until `want` records came, failing if a poll waits 5 s for nothing.
pub async fn drain(sub: &mut Box<dyn Subscription>, want: usize) -> Vec<Record> {
    let mut out = Vec::new();
    while out.len() < want {
        let batch = sub.poll(1000, Duration::from_secs(5)).await.unwrap();
        assert!(!batch.is_empty(), "timed out with {} of {want}", out.len());
        out.extend(batch);
    }
    out
}
