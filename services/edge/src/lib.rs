//! The edge: the gateway's HTTP data plane.
//!
//! This crate holds the server skeleton (HTTP/1.1 and h2c on hyper, request
//! ids, problem+json errors, graceful drain). Routing, authentication,
//! limits and usage arrive with the edge issue; until then every request is
//! answered 501 rather than pretending to route.

pub mod config;
pub mod problem;
pub mod request_id;

pub use config::Config;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::problem::Problem;

gateway_runtime::process_config! {
    /// The configuration of the standalone `gateway-edge` binary.
    pub struct BinaryConfig {
        edge: Config,
    }
}

/// The edge server.
pub struct Edge {
    #[allow(dead_code)] // the service URLs are used once routing lands
    config: Config,
}

impl Edge {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    /// Serves HTTP on `listener` until `shutdown`, then lets in-flight
    /// requests finish for up to `grace`.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken, grace: Duration) {
        tracing::info!(addr = ?listener.local_addr().ok(), "edge listening");
        let connections = TaskTracker::new();
        loop {
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off
                        // briefly instead of spinning.
                        tracing::warn!(%error, "edge accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let _ = stream.set_nodelay(true);
            let shutdown = shutdown.clone();
            connections.spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let connection = builder.serve_connection(TokioIo::new(stream), service_fn(handle));
                tokio::pin!(connection);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%error, %remote, "edge connection ended with an error");
                        }
                    }
                    () = shutdown.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    }
                }
            });
        }
        connections.close();
        if tokio::time::timeout(grace, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(open = connections.len(), "edge drain timed out");
        }
        tracing::info!("edge stopped");
    }
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let request_id = request_id::from_headers(request.headers());
    let mut response = Problem::new(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "the edge does not route {} {} yet: routing arrives with the edge data plane",
            request.method(),
            request.uri().path()
        ),
        &request_id,
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    Ok(response)
}
