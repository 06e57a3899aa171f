//! Tenant slugs to ids for requests that carry no key (CORS preflights):
//! identity's `GetTenantBySlug`, cached. Slugs do not change, so a known
//! slug is trusted for a while; an unknown one is asked again soon.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use gateway_proto::identity::v1 as pb;
use gateway_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tonic::transport::Channel;

use crate::grpc::{Authed, authed};

const KNOWN_TTL: Duration = Duration::from_secs(300);
const UNKNOWN_TTL: Duration = Duration::from_secs(5);
const MAX_ENTRIES: usize = 100_000;
/// A keyless request waits no longer than this for identity.
const DEADLINE: Duration = Duration::from_millis(500);

pub struct Tenants {
    client: IdentityServiceClient<Authed>,
    cache: RwLock<HashMap<String, (Option<String>, Instant)>>,
}

impl Tenants {
    pub fn new(channel: Channel, credential: (String, String)) -> Self {
        Self {
            client: IdentityServiceClient::with_interceptor(channel, authed(credential)),
            cache: RwLock::new(HashMap::new()),
        }
    }

    fn cached(&self, slug: &str) -> Option<Option<String>> {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        let (id, fetched) = cache.get(slug)?;
        let ttl = if id.is_some() { KNOWN_TTL } else { UNKNOWN_TTL };
        (fetched.elapsed() < ttl).then(|| id.clone())
    }

    /// The tenant's id, or `None` when no tenant has the slug (or identity
    /// cannot say right now).
    pub async fn id(&self, slug: &str) -> Option<String> {
        if let Some(known) = self.cached(slug) {
            return known;
        }
        let request = pb::GetTenantBySlugRequest {
            slug: slug.to_owned(),
        };
        let answer =
            tokio::time::timeout(DEADLINE, self.client.clone().get_tenant_by_slug(request)).await;
        let id = match answer {
            Ok(Ok(response)) => response.into_inner().tenant.map(|tenant| tenant.id),
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => None,
            // Unreachable: not cached, so the next request asks again.
            _ => return None,
        };
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(slug.to_owned(), (id.clone(), Instant::now()));
        id
    }
}
