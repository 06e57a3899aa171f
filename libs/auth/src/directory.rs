//! Asking identity about users, keys and groups on behalf of a caller.
//!
//! Services that refer to identity's resources (a channel's groups, a
//! balance's owner) ask identity with the caller's own credentials, so
//! identity's RBAC decides what the caller may see: another tenant's
//! resource, or another user's key, is simply not found.

use std::time::Duration;

use gateway_proto::identity::v1 as id;
use gateway_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;

/// The credentials a call came in with, to forward to identity.
#[derive(Clone, Default)]
pub struct ForwardedCredentials {
    headers: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for ForwardedCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ForwardedCredentials([redacted])")
    }
}

impl ForwardedCredentials {
    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        let headers = ["authorization", crate::ADMIN_KEY_HEADER]
            .into_iter()
            .filter_map(|key| Some((key, metadata.get(key)?.to_str().ok()?.to_owned())))
            .collect();
        Self { headers }
    }

    fn apply<T>(&self, request: &mut tonic::Request<T>) {
        for (key, value) in &self.headers {
            if let Ok(value) = MetadataValue::try_from(value.as_str()) {
                request.metadata_mut().insert(*key, value);
            }
        }
        gateway_telemetry::inject_grpc_metadata(request.metadata_mut());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Unknown, or not visible to this caller.
    #[error("not found")]
    NotFound,
    #[error("identity unavailable: {0}")]
    Unavailable(String),
}

/// A lazily connected identity client.
#[derive(Debug, Clone)]
pub struct IdentityDirectory {
    channel: Channel,
}

impl IdentityDirectory {
    pub fn new(identity_url: &str) -> Result<Self, String> {
        let channel = tonic::transport::Endpoint::from_shared(identity_url.to_owned())
            .map_err(|error| format!("identity_url: {error}"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(Self { channel })
    }

    fn client(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.channel.clone())
    }

    /// The tenant of a group the caller may see.
    pub async fn group_tenant(
        &self,
        group_id: &str,
        credentials: &ForwardedCredentials,
    ) -> Result<String, DirectoryError> {
        let mut request = tonic::Request::new(id::GetGroupRequest {
            id: group_id.to_owned(),
        });
        credentials.apply(&mut request);
        let group = self
            .client()
            .get_group(request)
            .await
            .map_err(status_error)?
            .into_inner()
            .group;
        group
            .map(|group| group.tenant_id)
            .ok_or(DirectoryError::NotFound)
    }

    /// The tenant of a user the caller may see.
    pub async fn user_tenant(
        &self,
        user_id: &str,
        credentials: &ForwardedCredentials,
    ) -> Result<String, DirectoryError> {
        let mut request = tonic::Request::new(id::GetUserRequest {
            id: user_id.to_owned(),
        });
        credentials.apply(&mut request);
        let user = self
            .client()
            .get_user(request)
            .await
            .map_err(status_error)?
            .into_inner()
            .user;
        user.map(|user| user.tenant_id)
            .ok_or(DirectoryError::NotFound)
    }

    /// The tenant of an API key the caller may see (a USER: only their own).
    pub async fn key_tenant(
        &self,
        key_id: &str,
        credentials: &ForwardedCredentials,
    ) -> Result<String, DirectoryError> {
        let mut request = tonic::Request::new(id::GetApiKeyRequest {
            id: key_id.to_owned(),
        });
        credentials.apply(&mut request);
        let key = self
            .client()
            .get_api_key(request)
            .await
            .map_err(status_error)?
            .into_inner()
            .api_key;
        key.map(|key| key.tenant_id).ok_or(DirectoryError::NotFound)
    }
}

fn status_error(status: tonic::Status) -> DirectoryError {
    match status.code() {
        tonic::Code::NotFound | tonic::Code::PermissionDenied | tonic::Code::InvalidArgument => {
            DirectoryError::NotFound
        }
        _ => DirectoryError::Unavailable(format!("{}: {}", status.code(), status.message())),
    }
}
