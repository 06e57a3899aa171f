//! The identity service: tenants, users, groups, API keys, login and the
//! key authentication the edge relies on.

mod api_key;
pub mod bootstrap;
pub mod config;
pub mod directory;
pub mod error;
mod grpc;
mod ldap;
pub mod password;
pub mod store;
mod throttle;
mod tokens;
mod validate;
mod watch;

pub use api_key::sha256_hex;
pub use grpc::access_policy;

pub use bootstrap::BootstrapOutcome;
pub use config::{BootstrapConfig, Config};

use std::sync::Arc;
use std::time::Duration;

use gateway_auth::{AuthConfig, AuthLayer, Verifier};
use gateway_proto::identity::v1::identity_service_server::{IdentityServiceServer, SERVICE_NAME};
use gateway_runtime::CancellationToken;
use gateway_runtime::grpc::{GrpcServeError, GrpcServer};
use gateway_runtime::process::RuntimeConfig;
use gateway_storage::{ConnectOptions, Database, StorageError};
use tokio::net::TcpListener;
use tower_layer::Layer as _;

use crate::store::IdentityStore;

/// Fully qualified gRPC service name, as health and reflection report it.
pub const GRPC_SERVICE_NAME: &str = SERVICE_NAME;

gateway_runtime::process_config! {
    /// The configuration of the standalone `gateway-identity` binary.
    pub struct BinaryConfig {
        auth: AuthConfig,
        secrets: gateway_secrets::SecretsConfig,
        identity: Config,
        bootstrap: BootstrapConfig,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("identity database: {0}")]
    Storage(#[from] StorageError),
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error("signing keys: {0}")]
    Keys(#[from] error::IdentityError),
    #[error(transparent)]
    Serve(#[from] GrpcServeError),
}

/// An opened identity service: its database connected and migrated, its
/// signing keys loaded.
pub struct Identity {
    store: IdentityStore,
    directory: Arc<directory::Directory>,
    verifier: Verifier,
    config: Config,
}

impl Identity {
    pub async fn open(
        config: &Config,
        auth: &AuthConfig,
        secrets: &gateway_secrets::SecretBox,
    ) -> Result<Self, Error> {
        let options = ConnectOptions {
            max_connections: config.max_connections,
            ..ConnectOptions::default()
        };
        let db = Database::connect(&config.database_url, &options).await?;
        db.migrate(&store::MIGRATIONS).await?;
        let store = IdentityStore::new(db);
        let (tokens, verifier) = tokens::TokenIssuer::load(&store, config, auth, secrets).await?;
        let directory = Arc::new(directory::Directory::new(
            store.clone(),
            config.clone(),
            tokens,
        ));
        Ok(Self {
            store,
            directory,
            verifier,
            config: config.clone(),
        })
    }

    /// Verifies identity's tokens and the admin key (for tests and for
    /// services embedded in one process).
    pub fn verifier(&self) -> Verifier {
        self.verifier.clone()
    }

    /// Creates the first superadmin if there is none.
    pub async fn bootstrap(&self, config: &BootstrapConfig) -> Result<BootstrapOutcome, Error> {
        Ok(bootstrap::ensure_superadmin(&self.store, config).await?)
    }

    /// Serves gRPC on `listener` until `shutdown`, then drains.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        runtime: &RuntimeConfig,
    ) -> Result<(), Error> {
        let service = IdentityServiceServer::new(grpc::IdentityGrpc::new(
            Arc::clone(&self.directory),
            shutdown.clone(),
        ));
        // RBAC wraps only the identity service; health and reflection stay open.
        let service = AuthLayer::new(self.verifier.clone(), grpc::access_policy).layer(service);
        let routes = tonic::service::Routes::new(service);
        let maintenance = tokio::spawn(maintain(
            Arc::clone(&self.directory),
            self.config.clone(),
            shutdown.clone(),
        ));
        let result = GrpcServer::new("identity", routes, &[SERVICE_NAME])
            .drain_grace(runtime.shutdown_grace())
            .serve(listener, shutdown.clone())
            .await;
        shutdown.cancel();
        let _ = maintenance.await;
        self.store.database().close().await;
        Ok(result?)
    }
}

/// Background upkeep, off the request path: batched last-used writes and
/// change-log retention. Flushes once more on shutdown.
async fn maintain(
    directory: Arc<directory::Directory>,
    config: Config,
    shutdown: CancellationToken,
) {
    let mut flush = tokio::time::interval(Duration::from_secs(config.last_used_flush_secs));
    let mut prune = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = flush.tick() => {
                if let Err(error) = directory.flush_last_used().await {
                    tracing::warn!(%error, "writing key last-used times failed; will retry");
                }
            }
            _ = prune.tick() => {
                let retention = i64::try_from(config.change_retention_hours).unwrap_or(i64::MAX / 3_600_000_000);
                let before = gateway_storage::now_micros() - retention.saturating_mul(3_600_000_000);
                match directory.store().prune_changes(before).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "pruned old key changes"),
                    Err(error) => tracing::warn!(%error, "pruning key changes failed"),
                }
            }
            () = shutdown.cancelled() => break,
        }
    }
    if let Err(error) = directory.flush_last_used().await {
        tracing::warn!(%error, "final last-used flush failed");
    }
}
