//! The edge: the gateway's HTTP data plane.
//!
//! HTTP/1.1 and h2c on hyper; `/{tenant_slug}/{api_slug}/{path}` is
//! authenticated by API key (a local principal cache fed by identity and
//! kept current by WatchKeys) or by the route's own mode (JWT, basic,
//! public), limited by quota, proxied to the API's upstream from the
//! catalog snapshot, and reported to usage through the sender library once
//! the response has ended.

pub mod access;
pub mod account;
pub mod admin;
pub mod admit;
pub mod ai;
pub mod auth;
pub mod balance;
pub mod body;
pub mod breaker;
pub mod cache;
pub mod client_ids;
pub mod config;
pub mod cors;
pub mod early_errors;
pub mod egress;
pub mod floor;
pub mod forward;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
pub mod headers;
pub mod health;
pub mod leases;
pub mod lingering;
pub mod openapi;
pub mod outbound;
pub mod path;
pub mod pipeline;
pub mod plugin;
pub mod policy;
pub mod principals;
pub mod probes;
pub mod problem;
pub mod ratelimit;
pub mod request_id;
pub mod request_metrics;
pub mod retry;
pub mod stats;
pub mod tenants;
pub mod tls;
pub mod transform;
pub mod upgrade;

pub use config::{Config, QuotaFailure, SpoolFsync, SpoolFull};

use std::sync::Arc;
use std::time::Duration;

use gateway_auth::AuthConfig;
use gateway_catalog_client::CatalogCache;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;
use gateway_usage_sender::{FsyncPolicy, SenderConfig, UsageSender};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pipeline::Proxy;
use crate::principals::Principals;

gateway_runtime::process_config! {
    /// The configuration of the standalone `gateway-edge` binary.
    pub struct BinaryConfig {
        auth: AuthConfig,
        egress: gateway_egress::EgressConfig,
        edge: Config,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("edge setup: {0}")]
    Setup(String),
}

/// The edge server.
pub struct Edge {
    config: Config,
    proxy: Arc<Proxy>,
    catalog: CatalogCache,
    credential: (String, String),
}

impl Edge {
    /// Connects (lazily) to the control plane with `auth.admin_key`, the
    /// edge's superadmin credential, and opens the usage spool. Upstream
    /// connections go only where `egress` allows.
    pub fn new(
        config: Config,
        auth: &AuthConfig,
        egress: gateway_egress::EgressPolicy,
        shutdown: &CancellationToken,
    ) -> Result<Self, Error> {
        Self::with_plugins(config, auth, egress, Vec::new(), shutdown)
    }

    /// As [`Self::new`], with `plugins` after the built-in ones.
    pub fn with_plugins(
        config: Config,
        auth: &AuthConfig,
        egress: gateway_egress::EgressPolicy,
        plugins: Vec<Box<dyn plugin::EdgePlugin>>,
        shutdown: &CancellationToken,
    ) -> Result<Self, Error> {
        let credential = (
            gateway_auth::ADMIN_KEY_HEADER.to_owned(),
            auth.admin_key.expose().to_owned(),
        );
        let identity =
            grpc::channel(&config.identity_url, Duration::from_secs(5)).map_err(Error::Setup)?;
        let quota =
            grpc::channel(&config.quota_url, Duration::from_secs(5)).map_err(Error::Setup)?;
        let principals = Arc::new(Principals::new(identity.clone(), credential.clone()));
        let tenants = tenants::Tenants::new(identity, credential.clone());
        let catalog = CatalogCache::new();
        let mut sender_config = SenderConfig::new(
            config.usage_url.clone(),
            auth.admin_key.expose(),
            &config.spool_dir,
        );
        sender_config.spool_max_bytes = config.spool_max_bytes;
        // A segment goes once all of it is acked: keep several within the bound.
        sender_config.segment_bytes = sender_config.segment_bytes.min(config.spool_max_bytes / 8);
        sender_config.fsync = match config.spool_fsync {
            SpoolFsync::Always => FsyncPolicy::Always,
            SpoolFsync::Never => FsyncPolicy::Never,
            SpoolFsync::Interval => {
                FsyncPolicy::Interval(Duration::from_millis(config.spool_fsync_interval_ms))
            }
        };
        let (usage, _task) = UsageSender::start(sender_config, shutdown.clone())
            .map_err(|error| Error::Setup(format!("usage sender: {error}")))?;
        let proxy = Arc::new(
            Proxy::new(
                config.clone(),
                pipeline::Wiring {
                    principals,
                    catalog: catalog.clone(),
                    quota: QuotaServiceClient::with_interceptor(
                        quota,
                        grpc::authed(credential.clone()),
                    ),
                    usage: Some(usage),
                    egress,
                    tenants,
                    plugins: plugin::Plugins::with_builtins(plugins),
                },
            )
            .map_err(Error::Setup)?,
        );
        Ok(Self {
            config,
            proxy,
            catalog,
            credential,
        })
    }

    /// The ops port's `/admin/edge`: per API and target, requests, error
    /// rate, latency percentiles, breaker and health state.
    pub fn admin_view(&self) -> gateway_runtime::ops::View {
        let policies = Arc::clone(&self.proxy.policies);
        let catalog = self.catalog.clone();
        let cache = self.proxy.cache.clone();
        Arc::new(move || admin::view(&policies, &catalog, &cache))
    }

    /// The catalog snapshot the edge serves from (primed = ready).
    pub fn catalog(&self) -> CatalogCache {
        self.catalog.clone()
    }

    /// Serves HTTP on `listener` until `shutdown`, then lets in-flight
    /// requests finish for up to `grace`.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken, grace: Duration) {
        tracing::info!(addr = ?listener.local_addr().ok(), "edge listening");
        self.proxy.plugins.startup();
        // The tokenizer's vocabulary loads off the request path.
        tokio::task::spawn_blocking(ai::tokens::warm);
        let background = TaskTracker::new();
        background.spawn(Arc::clone(&self.proxy.auth.principals).follow(shutdown.clone()));
        let credential_name: &'static str = gateway_auth::ADMIN_KEY_HEADER;
        background.spawn(gateway_catalog_client::follow(
            gateway_catalog_client::Connection {
                endpoint: self.config.catalog_url.clone(),
                credential: (credential_name, self.credential.1.clone()),
            },
            self.catalog.clone(),
            shutdown.clone(),
        ));
        background.spawn(probes::follow(
            self.catalog.clone(),
            Arc::clone(&self.proxy.policies),
            Arc::clone(&self.proxy.forwarder),
            shutdown.clone(),
        ));
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
            let proxy = Arc::clone(&self.proxy);
            let config = self.config.clone();
            connections.spawn(async move {
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_millis(config.header_read_timeout_ms))
                    .max_buf_size(config.max_header_bytes);
                builder.http2().max_header_list_size(
                    u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX),
                );
                let service = service_fn(move |request| Arc::clone(&proxy).handle(request, remote));
                let stream = early_errors::EarlyErrors::new(stream);
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
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
        // Unused lease budget goes back to quota now, not at expiry.
        let releases = async {
            self.proxy.admission.budgets.release_all().await;
            self.proxy.admission.leases.release_all().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), releases).await;
        background.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), background.wait()).await;
        self.proxy.plugins.shutdown();
        tracing::info!("edge stopped");
    }
}
