//! The identity service: tenants, users, groups, API keys, login and the
//! key authentication the edge relies on.

pub mod bootstrap;
pub mod config;
mod grpc;
pub mod password;
pub mod store;

pub use bootstrap::BootstrapOutcome;
pub use config::{BootstrapConfig, Config};

use gateway_proto::identity::v1::identity_service_server::{IdentityServiceServer, SERVICE_NAME};
use gateway_runtime::CancellationToken;
use gateway_runtime::grpc::{GrpcServeError, GrpcServer};
use gateway_runtime::process::RuntimeConfig;
use gateway_storage::{ConnectOptions, Database, StorageError};
use gateway_telemetry::TelemetryConfig;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::store::IdentityStore;

/// Fully qualified gRPC service name, as health and reflection report it.
pub const GRPC_SERVICE_NAME: &str = SERVICE_NAME;

/// The configuration of the standalone `gateway-identity` binary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BinaryConfig {
    pub telemetry: TelemetryConfig,
    pub runtime: RuntimeConfig,
    pub identity: Config,
    pub bootstrap: BootstrapConfig,
}

impl gateway_runtime::process::ProcessConfig for BinaryConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }

    fn runtime(&self) -> &RuntimeConfig {
        &self.runtime
    }
}

impl gateway_runtime::config::Validate for BinaryConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if let Err(problem) = self.telemetry.validate() {
            problems.push(format!("telemetry.{problem}"));
        }
        self.runtime.validate(problems);
        self.identity.validate(problems);
        self.bootstrap.validate(problems);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("identity database: {0}")]
    Storage(#[from] StorageError),
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error(transparent)]
    Serve(#[from] GrpcServeError),
}

/// An opened identity service: its database connected and migrated.
pub struct Identity {
    store: IdentityStore,
}

impl Identity {
    pub async fn open(config: &Config) -> Result<Self, Error> {
        let options = ConnectOptions {
            max_connections: config.max_connections,
            ..ConnectOptions::default()
        };
        let db = Database::connect(&config.database_url, &options).await?;
        db.migrate(&store::MIGRATIONS).await?;
        Ok(Self {
            store: IdentityStore::new(db),
        })
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
        let routes = tonic::service::Routes::new(IdentityServiceServer::new(
            grpc::IdentityGrpc::new(self.store.clone()),
        ));
        let result = GrpcServer::new("identity", routes, &[SERVICE_NAME])
            .drain_grace(runtime.shutdown_grace())
            .serve(listener, shutdown)
            .await;
        self.store.database().close().await;
        Ok(result?)
    }
}
