//! Group ids named by channels, multipliers and group prices must exist in
//! the resource's tenant. Groups are identity's, so catalog asks identity
//! with the caller's own credentials (see `gateway_auth::directory`).

pub use gateway_auth::directory::ForwardedCredentials as Credentials;
use gateway_auth::directory::{DirectoryError, IdentityDirectory};

use crate::error::CatalogError;

#[derive(Debug, Clone)]
pub struct IdentityGroups {
    directory: IdentityDirectory,
}

impl IdentityGroups {
    pub fn new(identity_url: &str) -> Result<Self, CatalogError> {
        Ok(Self {
            directory: IdentityDirectory::new(identity_url).map_err(CatalogError::Internal)?,
        })
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
            let unknown = || CatalogError::InvalidArgument {
                field: field.to_owned(),
                message: format!("unknown group id {group_id:?}"),
            };
            match self.directory.group_tenant(group_id, credentials).await {
                Ok(tenant) if tenant == tenant_id => {}
                Ok(_) | Err(DirectoryError::NotFound) => return Err(unknown()),
                Err(DirectoryError::Unavailable(message)) => {
                    return Err(CatalogError::Unavailable(message));
                }
            }
        }
        Ok(())
    }
}
