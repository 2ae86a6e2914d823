//! Prometheus metrics: one recorder per process, rendered at `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histogram samples are folded into their summaries.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder (once) and returns its handle.
///
/// The recorder keeps every histogram sample until upkeep folds it into the histogram's
/// summary; a scrape does that too, but a service nobody scrapes would otherwise hold every
/// sample it ever recorded (a few MiB a minute under load). So upkeep runs on its own thread.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            let upkeep = handle.clone();
            let started = std::thread::Builder::new()
                .name("wacrm-metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                });
            if let Err(e) = started {
                tracing::warn!(error = %e, "metrics upkeep thread not started; histograms are drained only by scrapes");
            }
            Some(handle)
        })
        .as_ref()
}

/// `GET /metrics`.
pub async fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}
