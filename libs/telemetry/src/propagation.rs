//! W3C trace context (`traceparent`, `tracestate`) in HTTP headers and gRPC
//! metadata. gRPC metadata is HTTP/2 headers, so servers extract from the
//! `http::HeaderMap` in a tower layer and clients inject through an
//! interceptor.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The remote context carried by incoming headers (empty if none).
pub fn extract_context(headers: &HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// Makes `span` a child of the trace the caller sent, if any.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    let parent = extract_context(headers);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Writes the current span's context into outgoing HTTP headers.
pub fn inject_context(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Writes the current span's context into outgoing gRPC metadata.
pub fn inject_grpc_metadata(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata));
    });
}

/// The current trace id as 32 hex digits, if the span is being traced.
pub fn trace_id_of_current_span() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// A tonic client interceptor that carries the current trace to the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracePropagationInterceptor;

impl tonic::service::Interceptor for TracePropagationInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject_grpc_metadata(request.metadata_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_header_is_extracted_and_reinjected() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let mut incoming = HeaderMap::new();
        incoming.insert("traceparent", HeaderValue::from_static(TRACEPARENT));

        let context = extract_context(&incoming);
        let span = context.span();
        assert_eq!(
            span.span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );

        let mut outgoing = HeaderMap::new();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut HeaderInjector(&mut outgoing));
        });
        assert_eq!(outgoing.get("traceparent").unwrap(), TRACEPARENT);

        let mut metadata = MetadataMap::new();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut MetadataInjector(&mut metadata));
        });
        assert_eq!(metadata.get("traceparent").unwrap(), TRACEPARENT);
    }

    #[test]
    fn missing_or_garbled_traceparent_gives_an_invalid_context() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static("not-a-trace"));
        assert!(!extract_context(&headers).span().span_context().is_valid());
        assert!(
            !extract_context(&HeaderMap::new())
                .span()
                .span_context()
                .is_valid()
        );
    }
}
