//! Identity's errors and their gRPC status, through the shared kind table.

use gateway_runtime::error::ErrorKind;
use gateway_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    AlreadyExists(String),
    /// One message for every credential failure, so a caller cannot tell an
    /// unknown user from a wrong password.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("too many failed logins for this user; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error("the directory server is unavailable")]
    DirectoryUnavailable(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Internal(String),
}

impl IdentityError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Self::InvalidCredentials => ErrorKind::Unauthenticated,
            Self::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Self::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Self::Throttled { .. } => ErrorKind::ResourceExhausted,
            Self::DirectoryUnavailable(_) => ErrorKind::Unavailable,
            Self::Storage(StorageError::Unavailable(_)) => ErrorKind::Unavailable,
            Self::Storage(_) | Self::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<IdentityError> for tonic::Status {
    fn from(error: IdentityError) -> Self {
        let kind = error.kind();
        let message = match &error {
            // Logged in full; callers get no internals.
            IdentityError::Storage(_)
            | IdentityError::Internal(_)
            | IdentityError::DirectoryUnavailable(_) => {
                tracing::error!(error = %error, detail = ?error, "identity request failed");
                match kind {
                    ErrorKind::Unavailable => "service temporarily unavailable".to_owned(),
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
    fn or_not_found(self, what: &'static str) -> Result<T, IdentityError>;
}

impl<T> StoreResultExt<T> for Result<T, StorageError> {
    fn or_not_found(self, what: &'static str) -> Result<T, IdentityError> {
        self.map_err(|error| match error {
            StorageError::NotFound => IdentityError::NotFound(what),
            StorageError::AlreadyExists { .. } => {
                IdentityError::AlreadyExists(format!("{what} already exists"))
            }
            StorageError::ForeignKey { .. } => IdentityError::FailedPrecondition(format!(
                "{what} refers to something that does not exist"
            )),
            other => IdentityError::Storage(other),
        })
    }
}
