//! The usage service: usage events, audit logs and stats.

pub mod config;
mod grpc;
pub mod store;

pub use config::Config;

use gateway_proto::usage::v1::usage_service_server::{SERVICE_NAME, UsageServiceServer};
use gateway_runtime::CancellationToken;
use gateway_runtime::grpc::{GrpcServeError, GrpcServer};
use gateway_runtime::process::RuntimeConfig;
use gateway_storage::{ConnectOptions, Database, StorageError};
use tokio::net::TcpListener;

use crate::store::UsageStore;

/// Fully qualified gRPC service name, as health and reflection report it.
pub const GRPC_SERVICE_NAME: &str = SERVICE_NAME;

gateway_runtime::process_config! {
    /// The configuration of the standalone `gateway-usage` binary.
    pub struct BinaryConfig {
        usage: Config,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("usage database: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Serve(#[from] GrpcServeError),
}

/// An opened usage service: its database connected and migrated.
pub struct Usage {
    store: UsageStore,
}

impl Usage {
    pub async fn open(config: &Config) -> Result<Self, Error> {
        let options = ConnectOptions {
            max_connections: config.max_connections,
            ..ConnectOptions::default()
        };
        let db = Database::connect(&config.database_url, &options).await?;
        db.migrate(&store::MIGRATIONS).await?;
        Ok(Self {
            store: UsageStore::new(db),
        })
    }

    /// Serves gRPC on `listener` until `shutdown`, then drains.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        runtime: &RuntimeConfig,
    ) -> Result<(), Error> {
        let routes = tonic::service::Routes::new(UsageServiceServer::new(grpc::UsageGrpc::new(
            self.store.clone(),
        )));
        let result = GrpcServer::new("usage", routes, &[SERVICE_NAME])
            .drain_grace(runtime.shutdown_grace())
            .serve(listener, shutdown)
            .await;
        self.store.database().close().await;
        Ok(result?)
    }
}
