//! The quota service: plans, rate limits, balances and vouchers.

pub mod config;
mod grpc;
pub mod limiter;
pub mod store;

pub use config::Config;

use gateway_proto::quota::v1::quota_service_server::{QuotaServiceServer, SERVICE_NAME};
use gateway_runtime::CancellationToken;
use gateway_runtime::grpc::{GrpcServeError, GrpcServer};
use gateway_runtime::process::RuntimeConfig;
use gateway_storage::{ConnectOptions, Database, StorageError};
use gateway_telemetry::TelemetryConfig;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::store::QuotaStore;

/// Fully qualified gRPC service name, as health and reflection report it.
pub const GRPC_SERVICE_NAME: &str = SERVICE_NAME;

/// The configuration of the standalone `gateway-quota` binary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BinaryConfig {
    pub telemetry: TelemetryConfig,
    pub runtime: RuntimeConfig,
    pub quota: Config,
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
        self.quota.validate(problems);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("quota database: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Serve(#[from] GrpcServeError),
}

/// An opened quota service: its database connected and migrated.
pub struct Quota {
    store: QuotaStore,
}

impl Quota {
    pub async fn open(config: &Config) -> Result<Self, Error> {
        let options = ConnectOptions {
            max_connections: config.max_connections,
            ..ConnectOptions::default()
        };
        let db = Database::connect(&config.database_url, &options).await?;
        db.migrate(&store::MIGRATIONS).await?;
        Ok(Self {
            store: QuotaStore::new(db),
        })
    }

    /// Serves gRPC on `listener` until `shutdown`, then drains.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        runtime: &RuntimeConfig,
    ) -> Result<(), Error> {
        let routes = tonic::service::Routes::new(QuotaServiceServer::new(grpc::QuotaGrpc::new(
            self.store.clone(),
        )));
        let result = GrpcServer::new("quota", routes, &[SERVICE_NAME])
            .drain_grace(runtime.shutdown_grace())
            .serve(listener, shutdown)
            .await;
        self.store.database().close().await;
        Ok(result?)
    }
}
