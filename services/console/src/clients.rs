//! The services the pages call. Every call carries the signed-in user's
//! own JWT, so the console holds no privilege of its own: what a page may
//! show or change is what the services' RBAC lets that user do.

use std::time::Duration;

use gateway_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use gateway_proto::identity::v1::identity_service_client::IdentityServiceClient;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;
use gateway_proto::usage::v1::usage_service_client::UsageServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::config::Config;

/// One lazily connected channel per service.
#[derive(Clone)]
pub struct Clients {
    identity: Channel,
    catalog: Channel,
    quota: Channel,
    usage: Channel,
}

impl Clients {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(config.call_timeout_ms);
        let channel = |url: &str| -> anyhow::Result<Channel> {
            Ok(Endpoint::from_shared(url.to_owned())?
                .connect_timeout(timeout)
                .timeout(timeout)
                .connect_lazy())
        };
        Ok(Self {
            identity: channel(&config.identity_url)?,
            catalog: channel(&config.catalog_url)?,
            quota: channel(&config.quota_url)?,
            usage: channel(&config.usage_url)?,
        })
    }

    pub fn identity(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.identity.clone())
    }

    pub fn catalog(&self) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::new(self.catalog.clone())
    }

    pub fn quota(&self) -> QuotaServiceClient<Channel> {
        QuotaServiceClient::new(self.quota.clone())
    }

    pub fn usage(&self) -> UsageServiceClient<Channel> {
        UsageServiceClient::new(self.usage.clone())
    }
}

/// `message` as a request carrying `token` (none: an anonymous call, as
/// login and sign-up are).
pub fn authed<T>(token: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}
