//! `gatewayd --demo`: seeds a tenant, an API in front of a built-in echo
//! upstream (or `demo.upstream_url`), a plan and a key, so a first request
//! works in a minute with no internet. Safe to run again: what exists is
//! reused, and a fresh key is issued each time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use gateway_proto::catalog::v1 as cat;
use gateway_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use gateway_proto::identity::v1 as id;
use gateway_proto::identity::v1::identity_service_client::IdentityServiceClient;
use gateway_proto::quota::v1 as quota;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use tonic::Code;

use crate::Addresses;

/// The `[demo]` section: what `--demo` seeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// The demo API's upstream; empty = a built-in local echo server.
    pub upstream_url: String,
    pub requests_per_minute: i64,
    pub requests_per_month: i64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            upstream_url: String::new(),
            requests_per_minute: 5,
            requests_per_month: 100,
        }
    }
}

impl DemoConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.requests_per_minute <= 0 || self.requests_per_month <= 0 {
            problems.push("demo.requests_per_*: must be positive".to_owned());
        }
        let url = self.upstream_url.as_str();
        let valid = url.is_empty() || url.starts_with("http://") || url.starts_with("https://");
        if !valid {
            problems.push("demo.upstream_url: expected an http:// or https:// URL".to_owned());
        }
    }
}

/// What the demo seeded.
pub struct Demo {
    pub key: String,
    pub curl: String,
}

const TENANT: &str = "demo";
const API: &str = "echo";

/// Starts the built-in echo upstream: it answers every request with the
/// method, path, query and body it received, as JSON.
pub async fn start_echo() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        use http_body_util::BodyExt as _;
                        let method = request.method().to_string();
                        let path = request.uri().path().to_owned();
                        let query = request.uri().query().unwrap_or_default().to_owned();
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|body| body.to_bytes())
                            .unwrap_or_default();
                        let echo = serde_json::json!({
                            "method": method,
                            "path": path,
                            "query": query,
                            "body": String::from_utf8_lossy(&body),
                        });
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(echo.to_string())))
                                .unwrap_or_default(),
                        )
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    Ok(addr)
}

fn authed<T>(message: T, admin_key: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(gateway_auth::ADMIN_KEY_HEADER, admin_key.parse()?);
    Ok(request)
}

async fn channel(addr: SocketAddr) -> anyhow::Result<tonic::transport::Channel> {
    // The services were just spawned: give them a moment to accept.
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?;
    for _ in 0..50 {
        if let Ok(channel) = endpoint.connect().await {
            return Ok(channel);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(endpoint.connect().await?)
}

/// The demo API's upstream, started or named before the suite opens, so
/// the egress policy can open exactly its addresses.
pub struct Upstream {
    pub url: String,
    /// Every address the URL's host and port resolve to.
    pub addresses: Vec<SocketAddr>,
}

impl Upstream {
    /// The built-in echo, or `demo.upstream_url` resolved now.
    pub async fn prepare(config: &DemoConfig) -> anyhow::Result<Self> {
        if config.upstream_url.is_empty() {
            let addr = start_echo().await?;
            return Ok(Self {
                url: format!("http://{addr}"),
                addresses: vec![addr],
            });
        }
        let uri: http::Uri = config.upstream_url.parse()?;
        let host = uri.host().context("demo.upstream_url has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let addresses = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving demo.upstream_url host {host}"))?
            .collect();
        Ok(Self {
            url: config.upstream_url.clone(),
            addresses,
        })
    }

    /// Opens exactly these addresses (and ports) in `[egress] allow`.
    pub fn allow_in(&self, egress: &mut gateway_egress::EgressConfig) {
        egress
            .allow
            .extend(self.addresses.iter().map(SocketAddr::to_string));
    }
}

/// Seeds the demo through the services' own gRPC APIs, as the admin key,
/// with an API in front of `upstream`.
pub async fn seed(
    addresses: &Addresses,
    admin_key: &str,
    config: &DemoConfig,
    upstream: &Upstream,
) -> anyhow::Result<Demo> {
    let upstream = upstream.url.clone();
    let mut identity = IdentityServiceClient::new(channel(addresses.identity).await?);
    let mut catalog = CatalogServiceClient::new(channel(addresses.catalog).await?);
    let mut quota_client = QuotaServiceClient::new(channel(addresses.quota).await?);

    let tenant = match identity
        .create_tenant(authed(
            id::CreateTenantRequest {
                tenant: Some(id::Tenant {
                    slug: TENANT.to_owned(),
                    name: "Demo".to_owned(),
                    ..Default::default()
                }),
            },
            admin_key,
        )?)
        .await
    {
        Ok(created) => created.into_inner().tenant.context("no tenant")?,
        Err(status) if status.code() == Code::AlreadyExists => identity
            .list_tenants(authed(
                id::ListTenantsRequest {
                    page_size: 1000,
                    page_token: String::new(),
                },
                admin_key,
            )?)
            .await?
            .into_inner()
            .tenants
            .into_iter()
            .find(|tenant| tenant.slug == TENANT)
            .context("the demo tenant exists but is not listed")?,
        Err(status) => return Err(status).context("creating the demo tenant"),
    };
    let user = match identity
        .create_user(authed(
            id::CreateUserRequest {
                user: Some(id::User {
                    tenant_id: tenant.id.clone(),
                    username: "demo".to_owned(),
                    role: id::Role::Admin.into(),
                    ..Default::default()
                }),
                password: uuid::Uuid::now_v7().simple().to_string(),
            },
            admin_key,
        )?)
        .await
    {
        Ok(created) => created.into_inner().user.context("no user")?,
        Err(status) if status.code() == Code::AlreadyExists => identity
            .list_users(authed(
                id::ListUsersRequest {
                    page_size: 1000,
                    tenant_id: tenant.id.clone(),
                    ..Default::default()
                },
                admin_key,
            )?)
            .await?
            .into_inner()
            .users
            .into_iter()
            .find(|user| user.username == "demo")
            .context("the demo user exists but is not listed")?,
        Err(status) => return Err(status).context("creating the demo user"),
    };
    let api = cat::Api {
        tenant_id: tenant.id.clone(),
        name: "Echo".to_owned(),
        slug: API.to_owned(),
        upstreams: vec![cat::UpstreamTarget {
            url: upstream.clone(),
            weight: 1,
        }],
        enabled: true,
        ..Default::default()
    };
    match catalog
        .create_api(authed(
            cat::CreateApiRequest {
                api: Some(api),
                upstream_auth_secret: String::new(),
            },
            admin_key,
        )?)
        .await
    {
        Ok(_) => {}
        Err(status) if status.code() == Code::AlreadyExists => {
            // A restart: point the existing API at this run's upstream.
            let existing = catalog
                .list_apis(authed(
                    cat::ListApisRequest {
                        page_size: 1000,
                        tenant_id: tenant.id.clone(),
                        ..Default::default()
                    },
                    admin_key,
                )?)
                .await?
                .into_inner()
                .apis
                .into_iter()
                .find(|api| api.slug == API)
                .context("the demo API exists but is not listed")?;
            catalog
                .update_api(authed(
                    cat::UpdateApiRequest {
                        api: Some(cat::Api {
                            id: existing.id,
                            upstreams: vec![cat::UpstreamTarget {
                                url: upstream.clone(),
                                weight: 1,
                            }],
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["upstreams".to_owned()],
                        }),
                        ..Default::default()
                    },
                    admin_key,
                )?)
                .await
                .context("pointing the demo API at this run's upstream")?;
        }
        Err(status) => return Err(status).context("creating the demo API"),
    }
    let plan_spec = quota::Plan {
        tenant_id: tenant.id.clone(),
        name: "demo".to_owned(),
        requests_per_minute: Some(config.requests_per_minute),
        requests_per_month: Some(config.requests_per_month),
        ..Default::default()
    };
    let plan = match quota_client
        .create_plan(authed(
            quota::CreatePlanRequest {
                plan: Some(plan_spec),
            },
            admin_key,
        )?)
        .await
    {
        Ok(created) => created.into_inner().plan.context("no plan")?,
        Err(status)
            if status.code() == Code::FailedPrecondition
                || status.code() == Code::AlreadyExists =>
        {
            quota_client
                .list_plans(authed(
                    quota::ListPlansRequest {
                        page_size: 1000,
                        tenant_id: tenant.id.clone(),
                        ..Default::default()
                    },
                    admin_key,
                )?)
                .await?
                .into_inner()
                .plans
                .into_iter()
                .find(|plan| plan.name == "demo")
                .context("the demo plan exists but is not listed")?
        }
        Err(status) => return Err(status).context("creating the demo plan"),
    };
    let key = identity
        .create_api_key(authed(
            id::CreateApiKeyRequest {
                api_key: Some(id::ApiKey {
                    user_id: user.id,
                    name: format!("demo {}", uuid::Uuid::now_v7().simple()),
                    plan_id: plan.id,
                    ..Default::default()
                }),
            },
            admin_key,
        )?)
        .await
        .context("issuing the demo key")?
        .into_inner()
        .key;
    let curl = format!(
        "curl -i -H 'X-API-Key: {key}' 'http://{}/{TENANT}/{API}/hello?name=world'",
        addresses.edge
    );
    Ok(Demo { key, curl })
}
