//! Quota's errors and their gRPC status, through the shared kind table.

use gateway_runtime::error::ErrorKind;
use gateway_storage::StorageError;

use crate::store::{LedgerError, VoucherError};

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl QuotaError {
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
            Self::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Self::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Self::Unavailable(_) | Self::Storage(StorageError::Unavailable(_)) => {
                ErrorKind::Unavailable
            }
            Self::Storage(_) => ErrorKind::Internal,
        }
    }
}

impl From<LedgerError> for QuotaError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::InsufficientBalance { .. } => Self::FailedPrecondition(error.to_string()),
            LedgerError::Storage(error) => Self::Storage(error),
        }
    }
}

impl From<VoucherError> for QuotaError {
    fn from(error: VoucherError) -> Self {
        match error {
            VoucherError::NotFound => Self::NotFound("voucher"),
            VoucherError::Expired | VoucherError::Exhausted | VoucherError::AlreadyRedeemed => {
                Self::FailedPrecondition(error.to_string())
            }
            VoucherError::Ledger(error) => error.into(),
            VoucherError::Storage(error) => Self::Storage(error),
        }
    }
}

impl From<QuotaError> for tonic::Status {
    fn from(error: QuotaError) -> Self {
        let kind = error.kind();
        let message = match &error {
            QuotaError::Storage(_) | QuotaError::Unavailable(_) => {
                tracing::error!(error = %error, detail = ?error, "quota request failed");
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
