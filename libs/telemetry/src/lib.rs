//! Telemetry for every gateway process: structured logs (pretty or JSON),
//! OpenTelemetry trace export over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set, and W3C trace-context propagation across gRPC and HTTP hops.

mod propagation;

pub use propagation::{
    TracePropagationInterceptor, extract_context, inject_context, inject_grpc_metadata,
    set_parent_from_headers, trace_id_of_current_span,
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The `[telemetry]` section of every binary's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info` or `info,gateway_edge=debug`.
    pub log_filter: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_filter: "info".to_owned(),
        }
    }
}

impl TelemetryConfig {
    /// Checks the filter directive once at start, so a typo is an error
    /// instead of silently logging nothing.
    pub fn validate(&self) -> Result<(), String> {
        EnvFilter::try_new(&self.log_filter)
            .map(|_| ())
            .map_err(|error| format!("log_filter: {error}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("failed to build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes and shuts down trace export when dropped; keep it alive in `main`.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        // Export failures at exit must not turn a clean stop into a crash.
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber and propagator.
///
/// Spans always carry OpenTelemetry context (so trace ids reach logs, usage
/// events and upstream `traceparent` headers); they are exported only when
/// `otlp_endpoint` is given.
pub fn init(
    service_name: &str,
    config: &TelemetryConfig,
    otlp_endpoint: Option<&str>,
) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = otlp_endpoint.filter(|endpoint| !endpoint.is_empty()) {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    let tracer = provider.tracer(service_name.to_owned());
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = EnvFilter::try_new(&config.log_filter)?;
    let fmt_layer = match config.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_log_filter_is_reported_with_the_field_name() {
        let config = TelemetryConfig {
            log_filter: "info,[=".to_owned(),
            ..TelemetryConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error.starts_with("log_filter:"), "{error}");
    }

    #[test]
    fn default_config_is_valid() {
        TelemetryConfig::default().validate().unwrap();
    }
}
