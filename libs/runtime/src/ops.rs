//! The ops HTTP port, apart from traffic: `/health/live`, `/health/ready`
//! and `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Which parts of the process are ready to take traffic.
///
/// Components register as not ready and mark themselves ready once primed
/// (a listener bound, a snapshot loaded); `/health/ready` answers 200 only
/// when all are.
#[derive(Clone, Default)]
pub struct Readiness {
    components: Arc<Mutex<BTreeMap<String, bool>>>,
    views: Arc<Mutex<BTreeMap<String, View>>>,
}

/// A JSON page of the ops port (`/admin/edge`), computed on each GET.
pub type View = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("components", &self.snapshot())
            .finish_non_exhaustive()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a component that is not ready yet.
    pub fn register(&self, component: &str) {
        self.lock().entry(component.to_owned()).or_insert(false);
    }

    pub fn set_ready(&self, component: &str, ready: bool) {
        self.lock().insert(component.to_owned(), ready);
    }

    /// Serves `view` as JSON at `path` on the ops port.
    pub fn add_view(&self, path: &str, view: View) {
        self.views
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_owned(), view);
    }

    fn view(&self, path: &str) -> Option<View> {
        self.views
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .cloned()
    }

    pub fn is_ready(&self) -> bool {
        self.lock().values().all(|ready| *ready)
    }

    fn snapshot(&self) -> BTreeMap<String, bool> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serves the ops endpoints until `shutdown` fires.
pub async fn serve(listener: TcpListener, readiness: Readiness, shutdown: CancellationToken) {
    let prometheus = crate::metrics::handle();
    let tracker = TaskTracker::new();
    // Histograms accumulate until drained; keep memory flat between scrapes.
    tracker.spawn({
        let shutdown = shutdown.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => prometheus.run_upkeep(),
                    () = shutdown.cancelled() => break,
                }
            }
        }
    });
    tracing::info!(addr = ?listener.local_addr().ok(), "ops server listening");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "ops accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let readiness = readiness.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = service_fn(move |request| {
                let readiness = readiness.clone();
                async move { Ok::<_, Infallible>(route(&request, &readiness)) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

fn route(request: &Request<Incoming>, readiness: &Readiness) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match request.uri().path() {
        "/health/live" => text(StatusCode::OK, "ok\n"),
        "/health/ready" => {
            let status = if readiness.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = serde_json::json!({
                "ready": status == StatusCode::OK,
                "components": readiness.snapshot(),
            });
            response(status, "application/json", body.to_string())
        }
        "/metrics" => response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::metrics::render(),
        ),
        path => match readiness.view(path) {
            Some(view) => response(StatusCode::OK, "application/json", view().to_string()),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", body.to_owned())
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_registered_component() {
        let readiness = Readiness::new();
        assert!(
            readiness.is_ready(),
            "nothing registered is trivially ready"
        );
        readiness.register("identity");
        readiness.register("edge");
        assert!(!readiness.is_ready());
        readiness.set_ready("identity", true);
        assert!(!readiness.is_ready());
        readiness.set_ready("edge", true);
        assert!(readiness.is_ready());
    }
}
