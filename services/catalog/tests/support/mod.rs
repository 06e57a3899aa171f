//! Identity and catalog on ephemeral ports, two tenants, and clients that
//! act as their admins, users and the edge.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_auth::AuthConfig;
use gateway_catalog::Catalog;
use gateway_identity::Identity;
use gateway_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use gateway_proto::identity::v1 as id;
use gateway_proto::identity::v1::identity_service_client::IdentityServiceClient;
use gateway_runtime::CancellationToken;
use gateway_runtime::process::RuntimeConfig;
use gateway_secrets::SecretBox;
use gateway_testkit::TestDatabase;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const ADMIN_KEY: &str = "catalog-test-admin-key";
pub const PASSWORD: &str = "a-long-enough-password";
pub const MASTER_KEY: [u8; 32] = [3; 32];

#[derive(Clone)]
pub struct Credentials(Option<(&'static str, String)>);

impl Credentials {
    pub fn admin_key() -> Self {
        Self(Some(("x-admin-key", ADMIN_KEY.to_owned())))
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

pub type CatalogClient = CatalogServiceClient<InterceptedService<Channel, Credentials>>;
pub type IdentityClient = IdentityServiceClient<InterceptedService<Channel, Credentials>>;

pub struct Tenant {
    pub id: String,
    pub slug: String,
    pub admin: CatalogClient,
    pub user: CatalogClient,
    pub group_id: String,
}

pub struct Suite {
    pub identity_url: String,
    pub catalog_url: String,
    pub catalog_database_url: String,
    shutdown: CancellationToken,
    _databases: Vec<TestDatabase>,
}

impl Drop for Suite {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn channel(url: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn auth(identity_url: &str) -> AuthConfig {
    AuthConfig {
        admin_key: ADMIN_KEY.into(),
        identity_url: identity_url.to_owned(),
        ..AuthConfig::default()
    }
}

impl Suite {
    pub async fn start(identity_db: TestDatabase, catalog_db: TestDatabase) -> Self {
        let shutdown = CancellationToken::new();
        let runtime = RuntimeConfig {
            shutdown_grace_secs: 1,
            ..RuntimeConfig::default()
        };
        let secrets = SecretBox::new(&MASTER_KEY);

        let identity_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let identity_url = format!("http://{}", identity_listener.local_addr().unwrap());
        let identity_config = gateway_identity::Config {
            database_url: identity_db.url().to_owned(),
            ..gateway_identity::Config::default()
        };
        let identity = Identity::open(&identity_config, &auth(&identity_url), &secrets)
            .await
            .unwrap();
        tokio::spawn({
            let (shutdown, runtime) = (shutdown.clone(), runtime.clone());
            async move {
                identity
                    .serve(identity_listener, shutdown, &runtime)
                    .await
                    .unwrap()
            }
        });
        gateway_testkit::wait_for_grpc_health(&identity_url, "", Duration::from_secs(10)).await;

        let mut suite = Self {
            identity_url: identity_url.clone(),
            catalog_url: String::new(),
            catalog_database_url: catalog_db.url().to_owned(),
            shutdown,
            _databases: vec![identity_db, catalog_db],
        };
        suite.catalog_url = suite.start_catalog().await;
        suite
    }

    /// Starts (another) catalog replica on the same database.
    pub async fn start_catalog(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.start_catalog_on(listener, self.shutdown.clone())
            .await
            .0
    }

    /// A replica on `listener` that `stop` stops on its own.
    pub async fn start_catalog_on(
        &self,
        listener: tokio::net::TcpListener,
        stop: CancellationToken,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let runtime = RuntimeConfig {
            shutdown_grace_secs: 1,
            ..RuntimeConfig::default()
        };
        let url = format!("http://{}", listener.local_addr().unwrap());
        let config = gateway_catalog::Config {
            database_url: self.catalog_database_url.clone(),
            ..gateway_catalog::Config::default()
        };
        let catalog = Catalog::open(
            &config,
            &auth(&self.identity_url),
            &SecretBox::new(&MASTER_KEY),
            // The tests' upstream fixtures, opened exactly.
            gateway_egress::EgressPolicy::strict().allowing("127.0.0.1:9000".parse().unwrap()),
        )
        .await
        .unwrap();
        let task =
            tokio::spawn(async move { catalog.serve(listener, stop, &runtime).await.unwrap() });
        gateway_testkit::wait_for_grpc_health(&url, "", Duration::from_secs(10)).await;
        (url, task)
    }

    pub async fn identity_root(&self) -> IdentityClient {
        IdentityServiceClient::with_interceptor(
            channel(&self.identity_url).await,
            Credentials(Some(("x-admin-key", ADMIN_KEY.to_owned()))),
        )
    }

    pub async fn catalog_root(&self) -> CatalogClient {
        self.catalog_as(Credentials(Some(("x-admin-key", ADMIN_KEY.to_owned()))))
            .await
    }

    pub async fn catalog_as(&self, credentials: Credentials) -> CatalogClient {
        CatalogServiceClient::with_interceptor(channel(&self.catalog_url).await, credentials)
    }

    /// A tenant with an admin, a user and a group, all through identity.
    pub async fn tenant(&self, slug: &str) -> Tenant {
        let mut root = self.identity_root().await;
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
        let mut tokens = Vec::new();
        for (name, role) in [("admin", id::Role::Admin), ("user", id::Role::User)] {
            let username = format!("{slug}-{name}");
            root.create_user(id::CreateUserRequest {
                user: Some(id::User {
                    tenant_id: tenant.id.clone(),
                    username: username.clone(),
                    role: role.into(),
                    ..Default::default()
                }),
                password: PASSWORD.to_owned(),
            })
            .await
            .unwrap();
            let login = root
                .login(id::LoginRequest {
                    tenant_slug: slug.to_owned(),
                    username,
                    password: PASSWORD.to_owned(),
                    method: 0,
                })
                .await
                .unwrap()
                .into_inner();
            tokens.push(login.access_token);
        }
        let group = root
            .create_group(id::CreateGroupRequest {
                group: Some(id::Group {
                    tenant_id: tenant.id.clone(),
                    name: "vip".to_owned(),
                    priority: 5,
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .group
            .unwrap();
        let bearer =
            |token: &String| Credentials(Some(("authorization", format!("Bearer {token}"))));
        let admin = self.catalog_as(bearer(&tokens[0])).await;
        let user = self.catalog_as(bearer(&tokens[1])).await;
        // Catalog fetches identity's keys in the background at start.
        wait_until_tokens_verify(&admin).await;
        Tenant {
            id: tenant.id,
            slug: slug.to_owned(),
            admin,
            user,
            group_id: group.id,
        }
    }
}

async fn wait_until_tokens_verify(client: &CatalogClient) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let result = client
            .clone()
            .list_apis(gateway_proto::catalog::v1::ListApisRequest::default())
            .await;
        match result {
            Ok(_) => return,
            Err(status)
                if status.code() == tonic::Code::Unauthenticated
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("catalog refused a valid token: {status:?}"),
        }
    }
}

pub fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    match result {
        Ok(response) => panic!("expected an error, got {response:?}"),
        Err(status) => status.code(),
    }
}
