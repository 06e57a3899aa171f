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
    _audit_dir: tempfile::TempDir,
}

pub const BOOTSTRAP_PASSWORD: &str = "e2e-bootstrap-password";
/// The suite's emergency admin key (`x-admin-key`).
pub const ADMIN_KEY: &str = "e2e-admin-key-0123456789";
/// What the test suites' egress policy opens: their local upstreams.
pub const LOOPBACK_UPSTREAMS: &str = "127.0.0.1";

impl TestSuite {
    /// Starts the suite and waits until every gRPC service reports SERVING.
    /// `None` means PostgreSQL was asked for but is not configured (skip).
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |_| {}).await
    }

    /// As [`Self::start`], with `tweak` applied to the config first.
    /// Tests run their upstreams on loopback, so the egress policy opens
    /// 127.0.0.1 unless `tweak` says otherwise.
    pub async fn start_with(
        backend: Backend,
        tweak: impl FnOnce(&mut SuiteConfig),
    ) -> Option<Self> {
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
        config.auth.admin_key = ADMIN_KEY.into();
        config.secrets.master_key = "11".repeat(32).as_str().into();
        config.identity.database_url = databases[0].url().to_owned();
        config.catalog.database_url = databases[1].url().to_owned();
        config.quota.database_url = databases[2].url().to_owned();
        config.usage.database_url = databases[3].url().to_owned();
        let audit_dir = tempfile::tempdir().unwrap();
        config.usage.audit_dir = audit_dir.path().join("audit").display().to_string();
        config.edge.spool_dir = audit_dir.path().join("edge-spool").display().to_string();
        // The production pairing: PostgreSQL with Redis for shared limits.
        if matches!(backend, Backend::Postgres)
            && let Some(redis_url) = gateway_testkit::server_url(gateway_testkit::REDIS_URL_ENV)
        {
            config.quota.redis_url = redis_url;
            config.quota.redis_prefix = format!("gwe2e-{}", uuid::Uuid::now_v7().simple());
            // Counting, not latency, is under test: keep a loaded CI
            // machine from diverting checks to the fallback.
            config.quota.redis_timeout_ms = 1000;
        }

        config.egress.allow = vec![LOOPBACK_UPSTREAMS.to_owned()];
        tweak(&mut config);

        let listeners = Listeners::ephemeral().await.unwrap();
        let addresses = listeners.addresses().unwrap();
        let suite = Suite::open(&config, &addresses).await.unwrap();
        let shutdown = CancellationToken::new();
        let readiness = gateway_runtime::ops::Readiness::new();
        let task = tokio::spawn(suite.serve(listeners, shutdown.clone(), readiness));
        let started = Self {
            addresses,
            config,
            shutdown,
            task: Some(task),
            _databases: databases,
            _audit_dir: audit_dir,
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

/// A free loopback address (released, so a child process can bind it).
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A workspace binary beside the running test's (`cargo test --workspace`
/// builds each service's binary for that service's own tests).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let binary = deps.parent().unwrap().parent().unwrap().join(name);
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace --bins`",
        binary.display()
    );
    binary
}

pub fn url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}")
}

/// Adds a caller's credentials to every request of a client.
#[derive(Clone)]
pub struct Credentials(pub &'static str, pub String);

impl Credentials {
    pub fn admin_key() -> Self {
        Self("x-admin-key", ADMIN_KEY.to_owned())
    }

    pub fn bearer(token: &str) -> Self {
        Self("authorization", format!("Bearer {token}"))
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let value = tonic::metadata::MetadataValue::try_from(self.1.as_str())
            .map_err(|_| tonic::Status::internal("bad test credential"))?;
        request.metadata_mut().insert(self.0, value);
        Ok(request)
    }
}

pub type Authed =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Credentials>;

impl TestSuite {
    pub async fn identity_as(
        &self,
        credentials: Credentials,
    ) -> gateway_proto::identity::v1::identity_service_client::IdentityServiceClient<Authed> {
        gateway_proto::identity::v1::identity_service_client::IdentityServiceClient::with_interceptor(
            self.channel(self.addresses.identity).await,
            credentials,
        )
    }

    pub async fn quota_as(
        &self,
        credentials: Credentials,
    ) -> gateway_proto::quota::v1::quota_service_client::QuotaServiceClient<Authed> {
        gateway_proto::quota::v1::quota_service_client::QuotaServiceClient::with_interceptor(
            self.channel(self.addresses.quota).await,
            credentials,
        )
    }

    pub async fn catalog_as(
        &self,
        credentials: Credentials,
    ) -> gateway_proto::catalog::v1::catalog_service_client::CatalogServiceClient<Authed> {
        gateway_proto::catalog::v1::catalog_service_client::CatalogServiceClient::with_interceptor(
            self.channel(self.addresses.catalog).await,
            credentials,
        )
    }

    pub async fn usage_as(
        &self,
        credentials: Credentials,
    ) -> gateway_proto::usage::v1::usage_service_client::UsageServiceClient<Authed> {
        gateway_proto::usage::v1::usage_service_client::UsageServiceClient::with_interceptor(
            self.channel(self.addresses.usage).await,
            credentials,
        )
    }

    /// A tenant with an admin and a user; returns (tenant id, admin user
    /// id and token, user id and token).
    pub async fn tenant(&self, slug: &str) -> TenantFixture {
        use gateway_proto::identity::v1 as id;
        let mut root = self.identity_as(Credentials::admin_key()).await;
        let tenant = root
            .create_tenant(id::CreateTenantRequest {
                tenant: Some(id::Tenant {
                    slug: slug.to_owned(),
                    name: slug.to_owned(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .tenant
            .unwrap();
        let mut people = Vec::new();
        for (name, role) in [("admin", id::Role::Admin), ("user", id::Role::User)] {
            let username = format!("{slug}-{name}");
            let user = root
                .create_user(id::CreateUserRequest {
                    user: Some(id::User {
                        tenant_id: tenant.id.clone(),
                        username: username.clone(),
                        role: role.into(),
                        ..Default::default()
                    }),
                    password: "a-long-enough-password".to_owned(),
                })
                .await
                .unwrap()
                .into_inner()
                .user
                .unwrap();
            let token = root
                .login(id::LoginRequest {
                    tenant_slug: slug.to_owned(),
                    username,
                    password: "a-long-enough-password".to_owned(),
                    method: 0,
                })
                .await
                .unwrap()
                .into_inner()
                .access_token;
            people.push((user.id, token));
        }
        let (user_id, user_token) = people.pop().unwrap();
        let (admin_id, admin_token) = people.pop().unwrap();
        TenantFixture {
            id: tenant.id,
            admin_id,
            admin_token,
            user_id,
            user_token,
        }
    }
}

pub struct TenantFixture {
    pub id: String,
    pub admin_id: String,
    pub admin_token: String,
    pub user_id: String,
    pub user_token: String,
}

/// Retries a call while the service has not loaded identity's keys yet
/// (services fetch them in the background at start).
pub async fn eventually<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match call().await {
            Err(status)
                if status.code() == tonic::Code::Unauthenticated
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}
