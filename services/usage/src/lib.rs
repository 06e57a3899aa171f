//! The usage service: usage events, audit logs and stats.

pub mod audit;
pub mod config;
mod grpc;
pub mod ingest;
pub mod retention;
pub mod store;

pub use grpc::access_policy;

pub use config::Config;

use gateway_proto::usage::v1::usage_service_server::{SERVICE_NAME, UsageServiceServer};
use gateway_runtime::CancellationToken;
use gateway_runtime::grpc::{GrpcServeError, GrpcServer};
use gateway_runtime::process::RuntimeConfig;
use std::sync::Arc;
use std::time::Duration;

use gateway_auth::{AuthConfig, AuthLayer};
use gateway_storage::{ConnectOptions, Database, StorageError};
use tokio::net::TcpListener;
use tower_layer::Layer as _;

use crate::store::UsageStore;

/// Fully qualified gRPC service name, as health and reflection report it.
pub const GRPC_SERVICE_NAME: &str = SERVICE_NAME;

gateway_runtime::process_config! {
    /// The configuration of the standalone `gateway-usage` binary.
    pub struct BinaryConfig {
        auth: AuthConfig,
        usage: Config,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("usage database: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Serve(#[from] GrpcServeError),
    #[error("usage audit directory: {0}")]
    Audit(#[from] audit::AuditError),
}

/// An opened usage service: its database connected and migrated.
pub struct Usage {
    store: UsageStore,
    audit: Arc<audit::AuditWriters>,
    ingestor: Arc<ingest::Ingestor>,
    config: Config,
    auth: AuthConfig,
}

impl Usage {
    /// `auth.identity_url` must reach identity: its public keys verify
    /// callers' tokens.
    pub async fn open(config: &Config, auth: &AuthConfig) -> Result<Self, Error> {
        let options = ConnectOptions {
            max_connections: config.max_connections,
            ..ConnectOptions::default()
        };
        let db = Database::connect(&config.database_url, &options).await?;
        db.migrate(&store::MIGRATIONS).await?;
        let store = UsageStore::new(db);
        let audit = Arc::new(audit::AuditWriters::start(
            std::path::Path::new(&config.audit_dir),
            config.audit_writers,
            config.audit_segment_bytes,
        )?);
        let ingestor = Arc::new(ingest::Ingestor::new(
            store.clone(),
            Arc::clone(&audit),
            config.max_body_bytes,
        ));
        Ok(Self {
            store,
            audit,
            ingestor,
            config: config.clone(),
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
        let sweeper = tokio::spawn(retention::sweep(
            self.store.clone(),
            self.audit.dir().to_owned(),
            self.config.retention_days,
            Duration::from_secs(self.config.retention_sweep_secs),
            shutdown.clone(),
        ));
        let service = UsageServiceServer::new(grpc::UsageGrpc::new(
            self.store.clone(),
            Arc::clone(&self.ingestor),
            Arc::clone(&self.audit),
        ))
        // Ingest batches of 500 events with bodies exceed tonic's 4 MiB
        // default.
        .max_decoding_message_size(64 * 1024 * 1024);
        // RBAC wraps only the usage service; health and reflection stay open.
        let service = AuthLayer::new(verifier, grpc::access_policy).layer(service);
        let routes = tonic::service::Routes::new(service);
        let result = GrpcServer::new("usage", routes, &[SERVICE_NAME])
            .drain_grace(runtime.shutdown_grace())
            .serve(listener, shutdown.clone())
            .await;
        shutdown.cancel();
        let _ = sweeper.await;
        if let Some(keys) = keys {
            let _ = keys.await;
        }
        self.store.database().close().await;
        Ok(result?)
    }
}
