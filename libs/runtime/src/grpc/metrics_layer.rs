//! Call counts and latency per gRPC method and status code.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use metrics::{Counter, Histogram};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::trace_layer::split_rpc_path;

/// Wraps a gRPC server in [`GrpcMetrics`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl GrpcMetricsLayer {
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// Records `grpc_server_handled_total{service,method,code}` and
/// `grpc_server_handling_seconds{service,method}`.
///
/// The code is read from the response headers: tonic puts it there for
/// every error of a unary call ("trailers-only" responses). A call whose
/// headers carry no status finished its headers successfully; a streaming
/// call that fails later is counted with the code it started with.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, ResBody> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        MetricsFuture {
            method: method_metrics(request.uri().path()),
            inner: self.inner.call(request),
            started: Instant::now(),
        }
    }
}

/// One method's series, taken from the registry once: a labelled
/// `counter!` allocates its labels and looks them up on every call.
struct MethodMetrics {
    service: String,
    method: String,
    handling: Histogram,
    /// By code, filled as codes occur.
    handled: RwLock<HashMap<&'static str, Counter>>,
}

impl MethodMetrics {
    fn new(path: &str) -> Self {
        let (service, method) = split_rpc_path(path);
        let handling = metrics::histogram!(
            "grpc_server_handling_seconds",
            "service" => service.to_owned(),
            "method" => method.to_owned(),
        );
        Self {
            service: service.to_owned(),
            method: method.to_owned(),
            handling,
            handled: RwLock::default(),
        }
    }

    fn handled(&self, code: &'static str) -> Counter {
        let known = self.handled.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(counter) = known.get(code) {
            return counter.clone();
        }
        drop(known);
        let counter = metrics::counter!(
            "grpc_server_handled_total",
            "service" => self.service.clone(),
            "method" => self.method.clone(),
            "code" => code,
        );
        let mut known = self.handled.write().unwrap_or_else(PoisonError::into_inner);
        known.entry(code).or_insert(counter).clone()
    }
}

/// Paths kept: more than a server's methods, fewer than a client sending
/// made-up paths could use to grow the map without bound.
const MAX_CACHED_PATHS: usize = 512;

fn method_metrics(path: &str) -> Arc<MethodMetrics> {
    static CACHE: OnceLock<RwLock<HashMap<String, Arc<MethodMetrics>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(RwLock::default);
    if let Some(known) = cache
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(path)
    {
        return Arc::clone(known);
    }
    let fresh = Arc::new(MethodMetrics::new(path));
    let mut known = cache.write().unwrap_or_else(PoisonError::into_inner);
    if known.len() >= MAX_CACHED_PATHS {
        return fresh;
    }
    Arc::clone(known.entry(path.to_owned()).or_insert(fresh))
}

pin_project! {
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        method: Arc<MethodMetrics>,
        started: Instant,
    }
}

impl<F, ResBody, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        let code = match &output {
            Ok(response) => response
                .headers()
                .get("grpc-status")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<i32>().ok())
                .map_or("OK", code_name),
            Err(_) => "INTERNAL",
        };
        this.method
            .handling
            .record(this.started.elapsed().as_secs_f64());
        this.method.handled(code).increment(1);
        Poll::Ready(output)
    }
}

fn code_name(code: i32) -> &'static str {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
