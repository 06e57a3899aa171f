//! Stage: authenticate. The presented key (`X-API-Key` or `Authorization:
//! Bearer`) is hashed and resolved to a principal through the principal
//! cache; `X-Client-ID` picks a registered client's plan, or counts the
//! key's plan per unregistered value (capped per key). Routes may take
//! other credentials instead ([`modes`]): a JWT ([`jwt`]), HTTP Basic
//! ([`basic`]), or none (public, limited per client IP).

pub mod basic;
pub mod jwt;
pub mod modes;

use std::net::SocketAddr;
use std::sync::Arc;

pub use gateway_auth::key_hash::sha256_hex;
use gateway_proto::identity::v1 as id;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::body::EdgeBody;
use crate::client_ids::{self, ClientIds};
use crate::principals::Principals;
use crate::problem::{Halt, halt};

/// Who is calling, as the later stages need it.
pub struct Caller {
    pub principal: Arc<id::Principal>,
    /// An `X-Client-ID` value that names no registered client.
    pub unregistered_client: Option<String>,
    /// The header that carried the key (stripped before forwarding).
    pub key_header: HeaderName,
    pub remote_ip: String,
    /// For a caller without a key (JWT, basic, public): the quota client
    /// scope its requests count in, with the API's auth plan.
    pub subject: Option<String>,
    /// Headers set (or, with `None`, removed) on the upstream request.
    pub forward: Vec<(HeaderName, Option<HeaderValue>)>,
}

impl Caller {
    /// A caller without a gateway key, counted as `subject` under `plan_id`
    /// of the API's tenant.
    pub fn keyless(
        tenant: (&str, &str),
        subject: String,
        username: String,
        plan_id: &str,
        remote: SocketAddr,
    ) -> Self {
        Self {
            principal: Arc::new(id::Principal {
                tenant_id: tenant.0.to_owned(),
                tenant_slug: tenant.1.to_owned(),
                username,
                plan_id: plan_id.to_owned(),
                ..id::Principal::default()
            }),
            unregistered_client: None,
            key_header: header::AUTHORIZATION,
            remote_ip: remote.ip().to_string(),
            subject: Some(subject),
            forward: Vec::new(),
        }
    }
}

/// The key from `X-API-Key` or `Authorization: Bearer`, and which header
/// carried it.
pub fn presented_key(headers: &HeaderMap) -> Option<(String, HeaderName)> {
    if let Some(value) = headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
    {
        return Some((
            value.trim().to_owned(),
            HeaderName::from_static("x-api-key"),
        ));
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| (token.trim().to_owned(), header::AUTHORIZATION))
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(0))
}

/// Where a key was presented.
#[derive(Clone, Copy)]
pub struct KeyRequest<'a> {
    pub headers: &'a HeaderMap,
    pub remote: SocketAddr,
    /// The tenant of the path; `None` on the AI endpoints (any tenant).
    pub tenant_slug: Option<&'a str>,
    pub request_id: &'a str,
}

pub struct Authenticator {
    pub principals: Arc<Principals>,
    client_ids: ClientIds,
}

impl Authenticator {
    pub fn new(principals: Arc<Principals>, max_client_ids_per_key: usize) -> Self {
        Self {
            principals,
            client_ids: ClientIds::new(max_client_ids_per_key),
        }
    }

    /// The caller, or the answer that refuses it. A key of another tenant
    /// gets `not_found`, exactly like an unknown API.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        remote: SocketAddr,
        tenant_slug: &str,
        not_found: &(dyn Fn() -> Response<EdgeBody> + Sync),
        request_id: &str,
    ) -> Result<Caller, Halt> {
        let Some(presented) = presented_key(headers) else {
            return Err(halt(
                StatusCode::UNAUTHORIZED,
                "an API key is required (X-API-Key or Authorization: Bearer)",
                request_id,
            ));
        };
        let request = KeyRequest {
            headers,
            remote,
            tenant_slug: Some(tenant_slug),
            request_id,
        };
        self.authenticate_key(presented, &request, not_found).await
    }

    /// As [`Self::authenticate`], for a key already taken from the request
    /// (the AI endpoints read more places than the generic path).
    pub async fn authenticate_key(
        &self,
        (key, key_header): (String, HeaderName),
        request: &KeyRequest<'_>,
        not_found: &(dyn Fn() -> Response<EdgeBody> + Sync),
    ) -> Result<Caller, Halt> {
        let KeyRequest {
            headers,
            remote,
            tenant_slug,
            request_id,
        } = *request;
        let in_tenant = |principal: &id::Principal| {
            tenant_slug.is_none_or(|slug| principal.tenant_slug == slug)
        };
        let client_id = client_id(headers, request_id)?;
        let remote_ip = remote.ip().to_string();
        let answer = self
            .principals
            .authenticate(&sha256_hex(&key), client_id.as_deref(), Some(&remote_ip))
            .await
            .map_err(|error| {
                tracing::warn!(%error, "cannot authenticate: identity unreachable");
                halt(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "authentication is temporarily unavailable",
                    request_id,
                )
            })?;
        let mut unregistered_client = None;
        let principal = match (answer.status, answer.principal) {
            (id::KeyStatus::Active, Some(principal)) => principal,
            // Identity checks the key before the client id: the key is
            // usable, and its plan counts per client id value.
            (id::KeyStatus::ClientUnknown, Some(principal)) => {
                unregistered_client = client_id;
                principal
            }
            (id::KeyStatus::Unknown | id::KeyStatus::Unspecified, _) | (_, None) => {
                return Err(halt(
                    StatusCode::UNAUTHORIZED,
                    "invalid API key",
                    request_id,
                ));
            }
            (status, Some(principal)) => {
                if !in_tenant(&principal) {
                    return Err(Box::new(not_found()));
                }
                return Err(halt(StatusCode::FORBIDDEN, refused(status), request_id));
            }
        };
        // Enforced on cached principals too.
        if principal
            .expire_time
            .as_ref()
            .is_some_and(|expire| expire.seconds < now_secs())
        {
            return Err(halt(
                StatusCode::FORBIDDEN,
                "the API key has expired",
                request_id,
            ));
        }
        if !in_tenant(&principal) {
            return Err(Box::new(not_found()));
        }
        if let Some(value) = &unregistered_client {
            self.admit_client_id(&principal.key_id, value, request_id)?;
        }
        Ok(Caller {
            principal,
            unregistered_client,
            key_header,
            remote_ip,
            subject: None,
            forward: Vec::new(),
        })
    }

    fn admit_client_id(&self, key_id: &str, value: &str, request_id: &str) -> Result<(), Halt> {
        let now = u64::try_from(now_secs()).unwrap_or(0);
        let Err(cap) = self.client_ids.admit(key_id, value, now) else {
            return Ok(());
        };
        let mut response = halt(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Rate limit exceeded: this key has used its {} distinct X-Client-ID values for today",
                cap.cap
            ),
            request_id,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(cap.retry_after_secs));
        Err(response)
    }
}

/// The `X-Client-ID` value, if any; a malformed one is a 400.
pub(crate) fn client_id(headers: &HeaderMap, request_id: &str) -> Result<Option<String>, Halt> {
    let Some(value) = headers.get("x-client-id") else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default().trim();
    if client_ids::valid(value) {
        return Ok(Some(value.to_owned()));
    }
    Err(halt(
        StatusCode::BAD_REQUEST,
        format!(
            "X-Client-ID must be 1 to {} visible ASCII characters",
            client_ids::MAX_LEN
        ),
        request_id,
    ))
}

fn refused(status: id::KeyStatus) -> &'static str {
    match status {
        id::KeyStatus::Expired => "the API key has expired",
        id::KeyStatus::Frozen => "the API key is frozen",
        id::KeyStatus::UserDisabled => "the key's user is disabled",
        _ => "the API key may not be used from here",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_either_header() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer sk-abc"));
        assert_eq!(presented_key(&headers).unwrap().0, "sk-abc");
        headers.insert("x-api-key", HeaderValue::from_static("sk-def"));
        assert_eq!(
            presented_key(&headers).unwrap(),
            ("sk-def".to_owned(), HeaderName::from_static("x-api-key"))
        );
        let mut basic = HeaderMap::new();
        basic.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert!(presented_key(&basic).is_none());
    }

    #[test]
    fn malformed_client_ids_are_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(client_id(&headers, "r").unwrap(), None);
        headers.insert("x-client-id", HeaderValue::from_static(" app-1 "));
        assert_eq!(client_id(&headers, "r").unwrap().as_deref(), Some("app-1"));
        headers.insert("x-client-id", HeaderValue::from_static("two words"));
        assert_eq!(
            client_id(&headers, "r").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }
}
