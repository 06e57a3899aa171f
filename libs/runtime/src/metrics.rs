//! The process-wide Prometheus recorder behind the `metrics` macros.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the recorder on first use and returns the handle that renders
/// the exposition text. Safe to call from every server in one process.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        // Buckets (not the default summaries) so that latency can be
        // aggregated across replicas; from 0.5 ms to 10 s.
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets(&LATENCY_BUCKETS_SECONDS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (tests embedding the
        // suite); ours then renders nothing, which is the honest answer.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// Prometheus text exposition of everything recorded so far.
pub fn render() -> String {
    handle().render()
}
