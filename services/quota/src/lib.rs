//! The quota service: plans, rate limits, balances and vouchers.

pub mod accounts;
pub mod admission;
pub mod config;
pub mod error;
mod grpc;
pub mod limiter;
pub mod plans;
pub mod resolve;
pub mod store;

pub use grpc::access_policy;

pub use config::Config;

use std::sync::Arc;
use std::time::Duration;

use gateway_auth::{AuthConfig, AuthLayer};
use gateway_proto::quota::v1::quota_service_server::{QuotaServiceServer, SERVICE_NAME};
use gateway_runtime::CancellationToken;
use gateway_runtime::grpc::{GrpcServeError, GrpcServer};
use gateway_runtime::process::RuntimeConfig;
use gateway_storage::{ConnectOptions, Database, StorageError};
use tokio::net::TcpListener;
use tower_layer::Layer as _;

use crate::store::QuotaStore;

/// Fully qualified gRPC service name, as health and reflection report it.
pub const GRPC_SERVICE_NAME: &str = SERVICE_NAME;

/// The gRPC health name that is SERVING while Redis answers and
/// NOT_SERVING while the memory fallback limits (the service itself stays
/// SERVING: it still answers every Check).
pub const REDIS_HEALTH_NAME: &str = "quota.redis";

gateway_runtime::process_config! {
    /// The configuration of the standalone `gateway-quota` binary.
    pub struct BinaryConfig {
        auth: AuthConfig,
        quota: Config,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("quota database: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Serve(#[from] GrpcServeError),
    #[error("quota setup: {0}")]
    Setup(String),
}

/// An opened quota service: its database connected and migrated.
pub struct Quota {
    store: QuotaStore,
    accounts: Arc<accounts::Accounts>,
    plans: Arc<plans::Plans>,
    limiter: Arc<limiter::Limiter>,
    limits: Arc<resolve::LimitsCache>,
    admissions: Arc<admission::Admissions>,
    auth: AuthConfig,
}

impl Quota {
    /// `auth.identity_url` must reach identity: balance owners are
    /// resolved there, and its public keys verify callers' tokens.
    pub async fn open(config: &Config, auth: &AuthConfig) -> Result<Self, Error> {
        let options = ConnectOptions {
            max_connections: config.max_connections,
            ..ConnectOptions::default()
        };
        let db = Database::connect(&config.database_url, &options).await?;
        db.migrate(&store::MIGRATIONS).await?;
        let store = QuotaStore::new(db);
        let limiter = if config.redis_url.is_empty() {
            limiter::Limiter::memory()
        } else {
            let timeout = Duration::from_millis(config.redis_timeout_ms);
            let redis = if config.redis_cluster {
                let seeds = config.redis_urls();
                limiter::redis::RedisLimiter::cluster(&seeds, &config.redis_prefix, timeout)
            } else {
                limiter::redis::RedisLimiter::new(&config.redis_url, &config.redis_prefix, timeout)
            }
            .map_err(|error| Error::Setup(error.to_string()))?;
            limiter::Limiter::with_redis(redis, Duration::from_millis(config.redis_retry_after_ms))
        };
        let directory = gateway_auth::directory::IdentityDirectory::new(&auth.identity_url)
            .map_err(Error::Setup)?;
        let limiter = Arc::new(limiter);
        let limits = resolve::LimitsCache::load(store.clone()).await?;
        let admissions = Arc::new(admission::Admissions::new(
            Arc::clone(&limits),
            Arc::clone(&limiter),
            store.clone(),
            config.admission_settings(),
        ));
        Ok(Self {
            plans: Arc::new(plans::Plans::new(
                store.clone(),
                directory.clone(),
                Arc::clone(&limits),
            )),
            accounts: Arc::new(accounts::Accounts::new(store.clone(), directory)),
            store,
            limiter,
            limits,
            admissions,
            auth: auth.clone(),
        })
    }

    /// Serves gRPC on `listener` until `shutdown`, then drains.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        runtime: &RuntimeConfig,
    ) -> Result<(), Error> {
        let verifier = self.auth.verifier();
        let keys = (!self.auth.uses_shared_secret()).then(|| {
            tokio::spawn(gateway_auth::remote::follow_identity_keys(
                self.auth.identity_url.clone(),
                verifier.clone(),
                shutdown.clone(),
            ))
        });
        let follower =
            tokio::spawn(Arc::clone(&self.limits).follow(Duration::from_secs(1), shutdown.clone()));
        let sweeper = tokio::spawn(Arc::clone(&self.admissions).sweep(shutdown.clone()));
        let service = QuotaServiceServer::new(grpc::QuotaGrpc::new(
            Arc::clone(&self.accounts),
            Arc::clone(&self.plans),
            Arc::clone(&self.limiter),
            Arc::clone(&self.admissions),
        ));
        // RBAC wraps only the quota service; health and reflection stay open.
        let service = AuthLayer::new(verifier, grpc::access_policy).layer(service);
        let routes = tonic::service::Routes::new(service);
        let mut server =
            GrpcServer::new("quota", routes, &[SERVICE_NAME]).drain_grace(runtime.shutdown_grace());
        if let Some(redis) = self.limiter.redis_health() {
            server = server.component(REDIS_HEALTH_NAME, redis);
        }
        let result = server.serve(listener, shutdown.clone()).await;
        shutdown.cancel();
        let _ = follower.await;
        let _ = sweeper.await;
        if let Some(keys) = keys {
            let _ = keys.await;
        }
        self.store.database().close().await;
        Ok(result?)
    }
}
