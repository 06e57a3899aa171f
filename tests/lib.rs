//! Support for the end-to-end tests: the whole suite in-process on
//! ephemeral ports, on SQLite or on PostgreSQL.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use gateway_runtime::CancellationToken;
use gateway_testkit::TestDatabase;
use gatewayd::{Addresses, Listeners, Suite, SuiteConfig};
use tokio::task::JoinHandle;

/// Which store the suite runs on.
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running suite; stops it when dropped.
pub struct TestSuite {
    pub addresses: Addresses,
    pub config: SuiteConfig,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _databases: Vec<TestDatabase>,
}

pub const BOOTSTRAP_PASSWORD: &str = "e2e-bootstrap-password";

impl TestSuite {
    /// Starts the suite and waits until every gRPC service reports SERVING.
    /// `None` means PostgreSQL was asked for but is not configured (skip).
    pub async fn start(backend: Backend) -> Option<Self> {
        let mut databases = Vec::new();
        for _ in 0..4 {
            databases.push(match backend {
                Backend::Sqlite => TestDatabase::sqlite().await,
                Backend::Postgres => TestDatabase::postgres().await?,
            });
        }
        let mut config = SuiteConfig::default();
        config.bootstrap.password = BOOTSTRAP_PASSWORD.into();
        config.runtime.shutdown_grace_secs = 5;
        config.secrets.master_key = "11".repeat(32).as_str().into();
        config.identity.database_url = databases[0].url().to_owned();
        config.catalog.database_url = databases[1].url().to_owned();
        config.quota.database_url = databases[2].url().to_owned();
        config.usage.database_url = databases[3].url().to_owned();

        let listeners = Listeners::ephemeral().await.unwrap();
        let addresses = listeners.addresses().unwrap();
        let suite = Suite::open(&config, &addresses).await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(suite.serve(listeners, shutdown.clone()));
        let started = Self {
            addresses,
            config,
            shutdown,
            task: Some(task),
            _databases: databases,
        };
        for (endpoint, service) in started.grpc_services() {
            gateway_testkit::wait_for_grpc_health(&endpoint, service, Duration::from_secs(10))
                .await;
        }
        Some(started)
    }

    /// `(endpoint URL, fully qualified service name)` of each gRPC service.
    pub fn grpc_services(&self) -> [(String, &'static str); 4] {
        [
            (
                url(self.addresses.identity),
                gateway_identity::GRPC_SERVICE_NAME,
            ),
            (
                url(self.addresses.catalog),
                gateway_catalog::GRPC_SERVICE_NAME,
            ),
            (url(self.addresses.quota), gateway_quota::GRPC_SERVICE_NAME),
            (url(self.addresses.usage), gateway_usage::GRPC_SERVICE_NAME),
        ]
    }

    pub async fn channel(&self, addr: std::net::SocketAddr) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(url(addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Signals shutdown and waits for every service to drain.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let task = self.task.take().expect("suite task");
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("suite stops within its drain grace")
            .expect("suite task joins")
    }
}

impl Drop for TestSuite {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}")
}
