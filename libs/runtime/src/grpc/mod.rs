//! One way to assemble and run a gRPC server, so that every service exposes
//! the same health, reflection, tracing and metrics.

mod metrics_layer;
mod trace_layer;

pub use metrics_layer::{GrpcMetrics, GrpcMetricsLayer};
pub use trace_layer::{GrpcTrace, GrpcTraceLayer};

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;

#[derive(Debug, thiserror::Error)]
pub enum GrpcServeError {
    #[error("failed to build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A gRPC server for one gateway service.
///
/// Every server built here answers `grpc.health.v1.Health` (per service and
/// overall), server reflection v1 and v1alpha (so `grpcurl list` works
/// against any service), traces each call as a child of the caller's W3C
/// trace context, and counts calls and latency by method and status code.
pub struct GrpcServer {
    name: &'static str,
    routes: Routes,
    service_names: Vec<&'static str>,
    drain_grace: Duration,
    components: Vec<(&'static str, tokio::sync::watch::Receiver<bool>)>,
}

impl GrpcServer {
    /// `name` labels logs; `routes` holds the service's tonic servers and
    /// `service_names` their fully qualified names, which health reports.
    pub fn new(name: &'static str, routes: Routes, service_names: &[&'static str]) -> Self {
        Self {
            name,
            routes,
            service_names: service_names.to_vec(),
            drain_grace: Duration::from_secs(10),
            components: Vec::new(),
        }
    }

    /// How long in-flight calls may take to finish once shutdown begins.
    pub fn drain_grace(mut self, grace: Duration) -> Self {
        self.drain_grace = grace;
        self
    }

    /// Reports a component's health under its own name (SERVING while
    /// `healthy` holds true), e.g. a dependency the service can run without
    /// but wants operators to see, like quota's Redis.
    pub fn component(
        mut self,
        name: &'static str,
        healthy: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        self.components.push((name, healthy));
        self
    }

    /// Reflection lists only what this server serves, although the
    /// descriptor set holds every gateway contract.
    fn reflection_builder(&self) -> tonic_reflection::server::Builder<'static> {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(gateway_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(tonic_health::pb::health_server::SERVICE_NAME)
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection");
        for service_name in &self.service_names {
            builder = builder.with_service_name(*service_name);
        }
        builder
    }

    /// Serves on `listener` until `shutdown` fires, then drains.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), GrpcServeError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        for service_name in &self.service_names {
            health
                .set_service_status(*service_name, ServingStatus::Serving)
                .await;
        }
        for (name, mut healthy) in std::mem::take(&mut self.components) {
            let health = health.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let status = if *healthy.borrow_and_update() {
                        ServingStatus::Serving
                    } else {
                        ServingStatus::NotServing
                    };
                    health.set_service_status(name, status).await;
                    tokio::select! {
                        changed = healthy.changed() => if changed.is_err() { return },
                        () = shutdown.cancelled() => return,
                    }
                }
            });
        }
        let reflection_v1 = self.reflection_builder().build_v1()?;
        // grpcurl and older tools still speak v1alpha.
        let reflection_v1alpha = self.reflection_builder().build_v1alpha()?;
        let routes = self
            .routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let local_addr = listener.local_addr().ok();
        tracing::info!(server = self.name, addr = ?local_addr, "grpc server listening");

        // Health turns NOT_SERVING as soon as shutdown begins, so load
        // balancers stop sending new calls while in-flight ones drain.
        let stopping = {
            let shutdown = shutdown.clone();
            let service_names = self.service_names.clone();
            async move {
                shutdown.cancelled().await;
                health
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
                for service_name in service_names {
                    health
                        .set_service_status(service_name, ServingStatus::NotServing)
                        .await;
                }
            }
        };

        let server = Server::builder()
            // Tracing sits outside metrics so the metrics work is inside the span.
            .layer(GrpcTraceLayer::new())
            .layer(GrpcMetricsLayer::new())
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming(listener), stopping);
        // `None`: the grace period ran out; the remaining calls are dropped.
        if let Some(result) =
            crate::shutdown::drain(self.name, server, &shutdown, self.drain_grace).await
        {
            result?;
        }
        tracing::info!(server = self.name, "grpc server stopped");
        Ok(())
    }
}

/// Accepted connections with Nagle's algorithm off: small gRPC responses
/// must not wait for a delayed ACK (40 ms on Linux).
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "could not set TCP_NODELAY");
            }
        })
    })
}
