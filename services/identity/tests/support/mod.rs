//! An identity server on an ephemeral port, and authenticated clients.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_auth::AuthConfig;
use gateway_identity::config::{Config, LdapConfig};
use gateway_identity::{BootstrapConfig, Identity};
use gateway_proto::identity::v1 as pb;
use gateway_proto::identity::v1::identity_service_client::IdentityServiceClient;
use gateway_runtime::CancellationToken;
use gateway_runtime::process::RuntimeConfig;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const SUPERADMIN_PASSWORD: &str = "superadmin-password-1";

pub type Client = IdentityServiceClient<InterceptedService<Channel, Credentials>>;

/// Adds the caller's credentials to every request.
#[derive(Clone)]
pub struct Credentials(Option<(&'static str, String)>);

impl Credentials {
    pub fn admin_key(key: &str) -> Self {
        Self(Some(("x-admin-key", key.to_owned())))
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some((key, value)) = &self.0 {
            request
                .metadata_mut()
                .insert(*key, MetadataValue::try_from(value.as_str()).unwrap());
        }
        Ok(request)
    }
}

pub struct Server {
    pub endpoint: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Identity's own section and the shared `[auth]` section.
pub struct Settings {
    pub identity: Config,
    pub auth: AuthConfig,
    pub secrets: gateway_secrets::SecretBox,
}

/// Every test server shares one master key, like replicas do.
pub const MASTER_KEY: [u8; 32] = [7; 32];

pub fn config(database_url: &str) -> Settings {
    Settings {
        identity: Config {
            database_url: database_url.to_owned(),
            last_used_flush_secs: 1,
            login_max_failures: 3,
            ..Config::default()
        },
        auth: AuthConfig {
            admin_key: ADMIN_KEY.into(),
            ..AuthConfig::default()
        },
        secrets: gateway_secrets::SecretBox::new(&MASTER_KEY),
    }
}

pub fn ldap_config(url: &str, template: &str) -> LdapConfig {
    LdapConfig {
        url: url.to_owned(),
        user_dn_template: template.to_owned(),
        tenant_slug: "corp".to_owned(),
        timeout_ms: 3000,
    }
}

impl Server {
    pub async fn start(settings: Settings) -> Self {
        let identity = Identity::open(&settings.identity, &settings.auth, &settings.secrets)
            .await
            .unwrap();
        identity
            .bootstrap(&BootstrapConfig {
                password: SUPERADMIN_PASSWORD.into(),
                ..BootstrapConfig::default()
            })
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let runtime = RuntimeConfig {
            shutdown_grace_secs: 1,
            ..RuntimeConfig::default()
        };
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                identity.serve(listener, shutdown, &runtime).await.unwrap();
            }
        });
        gateway_testkit::wait_for_grpc_health(&endpoint, "", Duration::from_secs(10)).await;
        Self {
            endpoint,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(self.endpoint.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn anonymous(&self) -> Client {
        IdentityServiceClient::with_interceptor(self.channel().await, Credentials(None))
    }

    pub async fn admin_key(&self) -> Client {
        IdentityServiceClient::with_interceptor(
            self.channel().await,
            Credentials(Some(("x-admin-key", ADMIN_KEY.to_owned()))),
        )
    }

    pub async fn with_token(&self, token: &str) -> Client {
        IdentityServiceClient::with_interceptor(
            self.channel().await,
            Credentials(Some(("authorization", format!("Bearer {token}")))),
        )
    }

    /// Logs in and returns a client acting as that user.
    pub async fn login(&self, tenant_slug: &str, username: &str, password: &str) -> Client {
        let token = self
            .anonymous()
            .await
            .login(pb::LoginRequest {
                tenant_slug: tenant_slug.to_owned(),
                username: username.to_owned(),
                password: password.to_owned(),
                method: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .access_token;
        self.with_token(&token).await
    }
}

/// A tenant with an admin and a user, created through the API.
pub struct TenantFixture {
    pub tenant: pb::Tenant,
    pub admin: Client,
    pub admin_user: pb::User,
    pub user: Client,
    pub user_user: pb::User,
}

pub const PASSWORD: &str = "a-long-enough-password";

pub async fn tenant(server: &Server, slug: &str) -> TenantFixture {
    let mut root = server.admin_key().await;
    let tenant = root
        .create_tenant(pb::CreateTenantRequest {
            tenant: Some(pb::Tenant {
                slug: slug.to_owned(),
                name: format!("{slug} inc"),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let mut users = Vec::new();
    for (name, role) in [("admin", pb::Role::Admin), ("user", pb::Role::User)] {
        let user = root
            .create_user(pb::CreateUserRequest {
                user: Some(pb::User {
                    tenant_id: tenant.id.clone(),
                    username: format!("{slug}-{name}"),
                    email: format!("{name}@{slug}.example.org"),
                    role: role.into(),
                    ..Default::default()
                }),
                password: PASSWORD.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        users.push(user);
    }
    let user_user = users.pop().unwrap();
    let admin_user = users.pop().unwrap();
    TenantFixture {
        admin: server.login(slug, &admin_user.username, PASSWORD).await,
        user: server.login(slug, &user_user.username, PASSWORD).await,
        tenant,
        admin_user,
        user_user,
    }
}

pub fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    match result {
        Ok(response) => panic!("expected an error, got {response:?}"),
        Err(status) => status.code(),
    }
}
