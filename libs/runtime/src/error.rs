//! The one table that maps error kinds to both a gRPC code and an HTTP
//! status, so services and the edge answer the same failure the same way.

/// What kind of failure a request met, independent of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    /// Rate limited, quota exhausted, or throttled.
    ResourceExhausted,
    PayloadTooLarge,
    DeadlineExceeded,
    Unavailable,
    /// An upstream answered badly or refused the connection.
    BadGateway,
    Unimplemented,
    Internal,
}

impl ErrorKind {
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::PayloadTooLarge => tonic::Code::OutOfRange,
            Self::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::BadGateway => tonic::Code::Unavailable,
            Self::Unimplemented => tonic::Code::Unimplemented,
            Self::Internal => tonic::Code::Internal,
        }
    }

    pub fn http_status(self) -> http::StatusCode {
        match self {
            Self::InvalidArgument => http::StatusCode::BAD_REQUEST,
            Self::Unauthenticated => http::StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => http::StatusCode::FORBIDDEN,
            Self::NotFound => http::StatusCode::NOT_FOUND,
            Self::AlreadyExists => http::StatusCode::CONFLICT,
            Self::FailedPrecondition => http::StatusCode::PRECONDITION_FAILED,
            Self::ResourceExhausted => http::StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
            Self::DeadlineExceeded => http::StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway => http::StatusCode::BAD_GATEWAY,
            Self::Unimplemented => http::StatusCode::NOT_IMPLEMENTED,
            Self::Internal => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_and_timeouts_pair_as_in_http_and_grpc() {
        assert_eq!(
            ErrorKind::ResourceExhausted.grpc_code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(ErrorKind::ResourceExhausted.http_status(), 429);
        assert_eq!(ErrorKind::DeadlineExceeded.http_status(), 504);
        assert_eq!(ErrorKind::NotFound.grpc_code(), tonic::Code::NotFound);
    }
}
