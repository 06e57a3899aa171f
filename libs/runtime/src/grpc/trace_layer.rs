//! A span per gRPC call, parented on the caller's W3C trace context.

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

/// Wraps a gRPC server in [`GrpcTrace`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcTraceLayer;

impl GrpcTraceLayer {
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTrace { inner }
    }
}

/// Opens a server span named after the RPC path for each call.
#[derive(Debug, Clone)]
pub struct GrpcTrace<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for GrpcTrace<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let (service, method) = split_rpc_path(path);
        let span = tracing::info_span!(
            "grpc.request",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
        );
        gateway_telemetry::set_parent_from_headers(&span, request.headers());
        self.inner.call(request).instrument(span)
    }
}

/// `/pkg.Service/Method` -> (`pkg.Service`, `Method`).
pub(crate) fn split_rpc_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_path_splits_into_service_and_method() {
        assert_eq!(
            split_rpc_path("/gateway.identity.v1.IdentityService/Login"),
            ("gateway.identity.v1.IdentityService", "Login")
        );
        assert_eq!(split_rpc_path("/odd"), ("odd", ""));
    }
}
