//! Prometheus metrics: one recorder per process, rendered at `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use wacrm_store::keys::scope;

use crate::auth::{Caller, MissingScope};

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

/// `GET /metrics`: for keys with the `metrics:read` scope. Scrapes are not audited: the
/// metrics hold counts and timings, never a contact or a message.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 401, description = "no, an unknown, revoked or expired key", body = crate::auth::ApiError),
        (status = 403, description = "the key lacks the metrics:read scope", body = crate::auth::ApiError),
    )
)]
pub async fn render(caller: Caller) -> Result<String, MissingScope> {
    caller.require(scope::METRICS_READ)?;
    Ok(install().map(|h| h.render()).unwrap_or_default())
}
