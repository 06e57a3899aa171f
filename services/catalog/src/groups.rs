//! Group ids named by channels, multipliers and group prices must exist in
//! the resource's tenant. Groups are identity's, so catalog asks identity,
//! forwarding the caller's own credentials: identity's RBAC then decides
//! what the caller may see, and another tenant's group is simply unknown.

use std::time::Duration;

use gateway_proto::identity::v1::GetGroupRequest;
use gateway_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;

use crate::error::CatalogError;

/// The caller's credentials, as they came in.
#[derive(Clone, Default)]
pub struct Credentials {
    headers: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Credentials([redacted])")
    }
}

impl Credentials {
    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        let headers = ["authorization", gateway_auth::ADMIN_KEY_HEADER]
            .into_iter()
            .filter_map(|key| {
                let value = metadata.get(key)?.to_str().ok()?;
                Some((key, value.to_owned()))
            })
            .collect();
        Self { headers }
    }
}

#[derive(Debug, Clone)]
pub struct IdentityGroups {
    channel: Channel,
}

impl IdentityGroups {
    pub fn new(identity_url: &str) -> Result<Self, CatalogError> {
        let channel = tonic::transport::Endpoint::from_shared(identity_url.to_owned())
            .map_err(|error| CatalogError::Internal(format!("identity_url: {error}")))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(Self { channel })
    }

    /// Refuses unless every group exists in `tenant_id`.
    pub async fn check(
        &self,
        field: &str,
        tenant_id: &str,
        group_ids: &[String],
        credentials: &Credentials,
    ) -> Result<(), CatalogError> {
        for group_id in group_ids {
            let mut request = tonic::Request::new(GetGroupRequest {
                id: group_id.clone(),
            });
            for (key, value) in &credentials.headers {
                if let Ok(value) = MetadataValue::try_from(value.as_str()) {
                    request.metadata_mut().insert(*key, value);
                }
            }
            gateway_telemetry::inject_grpc_metadata(request.metadata_mut());
            let unknown = || CatalogError::InvalidArgument {
                field: field.to_owned(),
                message: format!("unknown group id {group_id:?}"),
            };
            match IdentityServiceClient::new(self.channel.clone())
                .get_group(request)
                .await
            {
                Ok(response) => {
                    let group = response.into_inner().group.ok_or_else(unknown)?;
                    if group.tenant_id != tenant_id {
                        return Err(unknown());
                    }
                }
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::NotFound | tonic::Code::PermissionDenied
                    ) =>
                {
                    return Err(unknown());
                }
                Err(status) => {
                    return Err(CatalogError::Unavailable(format!(
                        "identity GetGroup: {}",
                        status.message()
                    )));
                }
            }
        }
        Ok(())
    }
}
