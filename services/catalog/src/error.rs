//! Catalog's errors and their gRPC status, through the shared kind table.

use gateway_runtime::error::ErrorKind;
use gateway_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Internal(String),
}

impl CatalogError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Self::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Self::Unavailable(_) | Self::Storage(StorageError::Unavailable(_)) => {
                ErrorKind::Unavailable
            }
            Self::Storage(_) | Self::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<CatalogError> for tonic::Status {
    fn from(error: CatalogError) -> Self {
        let kind = error.kind();
        let message = match &error {
            CatalogError::Storage(_) | CatalogError::Internal(_) | CatalogError::Unavailable(_) => {
                tracing::error!(error = %error, detail = ?error, "catalog request failed");
                match kind {
                    ErrorKind::Unavailable => "a dependency is temporarily unavailable".to_owned(),
                    _ => "internal error".to_owned(),
                }
            }
            _ => error.to_string(),
        };
        tonic::Status::new(kind.grpc_code(), message)
    }
}

/// Maps store errors of one resource to what the caller should see.
pub trait StoreResultExt<T> {
    fn or_not_found(self, what: &'static str) -> Result<T, CatalogError>;
}

impl<T> StoreResultExt<T> for Result<T, StorageError> {
    fn or_not_found(self, what: &'static str) -> Result<T, CatalogError> {
        self.map_err(|error| match error {
            StorageError::NotFound => CatalogError::NotFound(what),
            StorageError::AlreadyExists { .. } => {
                CatalogError::AlreadyExists(format!("{what} already exists"))
            }
            other => CatalogError::Storage(other),
        })
    }
}
