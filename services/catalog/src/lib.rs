//! The catalog service: APIs, routes, upstreams, AI channels and prices.

mod api_auth;
pub mod catalog;
pub mod config;
pub mod error;
mod groups;
mod grpc;
pub mod store;
mod validate;
mod watch;

pub use grpc::access_policy;

pub use config::Config;

use std::sync::Arc;

use gateway_auth::{AuthConfig, AuthLayer};
use gateway_proto::catalog::v1::catalog_service_server::{CatalogServiceServer, SERVICE_NAME};
use gateway_runtime::CancellationToken;
use gateway_runtime::grpc::{GrpcServeError, GrpcServer};
use gateway_runtime::process::RuntimeConfig;
use gateway_secrets::SecretBox;
use gateway_storage::{ConnectOptions, Database, StorageError};
use tokio::net::TcpListener;
use tower_layer::Layer as _;

use crate::store::CatalogStore;

/// Fully qualified gRPC service name, as health and reflection report it.
pub const GRPC_SERVICE_NAME: &str = SERVICE_NAME;

gateway_runtime::process_config! {
    /// The configuration of the standalone `gateway-catalog` binary.
    pub struct BinaryConfig {
        auth: AuthConfig,
        secrets: gateway_secrets::SecretsConfig,
        egress: gateway_egress::EgressConfig,
        catalog: Config,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("catalog database: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Serve(#[from] GrpcServeError),
    #[error("catalog: {0}")]
    Catalog(#[from] error::CatalogError),
}

/// An opened catalog service: its database connected and migrated.
pub struct Catalog {
    store: CatalogStore,
    registry: Arc<catalog::Registry>,
    auth: AuthConfig,
}

impl Catalog {
    /// `auth.identity_url` must reach identity: group ids are checked there,
    /// and its public keys verify callers' tokens. Upstream URLs with a
    /// literal address `egress` refuses are refused at registration.
    pub async fn open(
        config: &Config,
        auth: &AuthConfig,
        secrets: &SecretBox,
        egress: gateway_egress::EgressPolicy,
    ) -> Result<Self, Error> {
        let options = ConnectOptions {
            max_connections: config.max_connections,
            ..ConnectOptions::default()
        };
        let db = Database::connect(&config.database_url, &options).await?;
        db.migrate(&store::MIGRATIONS).await?;
        let store = CatalogStore::new(db);
        let groups = groups::IdentityGroups::new(&auth.identity_url)?;
        let registry = Arc::new(catalog::Registry::new(
            store.clone(),
            secrets.clone(),
            groups,
            egress,
        ));
        Ok(Self {
            store,
            registry,
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
        let service = CatalogServiceServer::new(grpc::CatalogGrpc::new(
            Arc::clone(&self.registry),
            shutdown.clone(),
        ));
        // RBAC wraps only the catalog service; health and reflection stay open.
        let service = AuthLayer::new(verifier, grpc::access_policy).layer(service);
        let routes = tonic::service::Routes::new(service);
        let result = GrpcServer::new("catalog", routes, &[SERVICE_NAME])
            .drain_grace(runtime.shutdown_grace())
            .serve(listener, shutdown.clone())
            .await;
        shutdown.cancel();
        if let Some(keys) = keys {
            let _ = keys.await;
        }
        self.store.database().close().await;
        Ok(result?)
    }
}
