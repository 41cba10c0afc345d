//! `/metrics` in Prometheus text (feature `prometheus`): installing the
//! recorder, and the route that renders it.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::hub::Hub;

/// Bounds of the latency histograms, in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// Why [`install_prometheus`] failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the Prometheus recorder: {0}")]
pub struct PrometheusError(#[from] metrics_exporter_prometheus::BuildError);

/// Installs Prometheus's recorder as the process's `metrics` recorder, with
/// histogram buckets for Sacred's latencies (`*_seconds`), and returns the
/// handle [`crate::HubBuilder::prometheus`] serves on `/metrics`.
///
/// Call it once, before building the hub (the hub registers its metrics
/// when it is built). Metrics the host records with `metrics::counter!` and
/// its siblings appear on the same page. A process that installs its own
/// recorder (another exporter) keeps it: this fails, and the hub's metrics
/// go there instead.
pub fn install_prometheus() -> Result<PrometheusHandle, PrometheusError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)?
        .install_recorder()?;
    Ok(handle)
}

/// The `/metrics` route: the hub's gauges sampled now, then everything the
/// recorder holds.
pub(crate) async fn metrics(State(hub): State<Hub>) -> impl IntoResponse {
    hub.record_gauges().await;
    let text = hub
        .inner
        .prometheus
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
}

/// Drains the recorder's histogram samples into their buckets every few
/// seconds, so that they stay bounded between scrapes; ends with the hub.
pub(crate) async fn upkeep(hub: std::sync::Weak<crate::hub::HubInner>, handle: PrometheusHandle) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if hub.strong_count() == 0 {
            return;
        }
        handle.run_upkeep();
    }
}
