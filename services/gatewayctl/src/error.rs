//! What a command's failure looks like to a script: a message on stderr
//! and an exit code chosen by the kind of failure, never by its text.

use std::fmt;
use std::process::ExitCode;

/// Exit codes scripts can rely on (documented in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Anything not listed below, including INTERNAL.
    Failure = 1,
    /// Bad flags or input file (clap's usage errors exit 2 as well).
    Usage = 2,
    /// Not logged in, or the token expired (UNAUTHENTICATED).
    Unauthenticated = 3,
    /// PERMISSION_DENIED: the caller's role may not do this.
    PermissionDenied = 4,
    /// NOT_FOUND, or a name that matches nothing.
    NotFound = 5,
    /// ALREADY_EXISTS, ABORTED or FAILED_PRECONDITION.
    Conflict = 6,
    /// INVALID_ARGUMENT from a service.
    InvalidArgument = 7,
    /// UNAVAILABLE or DEADLINE_EXCEEDED: a service is unreachable.
    Unavailable = 8,
    /// RESOURCE_EXHAUSTED: a limit refused the call.
    Exhausted = 9,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Exit::NotFound, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A service's refusal keeps its gRPC code and message: `NOT_FOUND: api not found`.
impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        let exit = match status.code() {
            tonic::Code::Unauthenticated => Exit::Unauthenticated,
            tonic::Code::PermissionDenied => Exit::PermissionDenied,
            tonic::Code::NotFound => Exit::NotFound,
            tonic::Code::AlreadyExists | tonic::Code::Aborted | tonic::Code::FailedPrecondition => {
                Exit::Conflict
            }
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => Exit::InvalidArgument,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => Exit::Unavailable,
            tonic::Code::ResourceExhausted => Exit::Exhausted,
            _ => Exit::Failure,
        };
        let mut message = format!("{}: {}", code_name(status.code()), status.message());
        if exit == Exit::Unauthenticated {
            message.push_str(" (log in with `gatewayctl login`, or pass --token)");
        }
        Self { exit, message }
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        Self::new(Exit::Failure, error.to_string())
    }
}

/// The canonical name gRPC tools print (`NOT_FOUND`), not tonic's prose.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_code_and_message_and_pick_the_exit() {
        let error = CliError::from(tonic::Status::not_found("api not found"));
        assert_eq!(error.exit, Exit::NotFound);
        assert_eq!(error.message, "NOT_FOUND: api not found");
        let error = CliError::from(tonic::Status::permission_denied("needs ADMIN"));
        assert_eq!(error.exit, Exit::PermissionDenied);
        let error = CliError::from(tonic::Status::unauthenticated("expired"));
        assert!(
            error.message.contains("gatewayctl login"),
            "{}",
            error.message
        );
        let error = CliError::from(tonic::Status::unavailable("connect refused"));
        assert_eq!(error.exit as u8, 8);
    }
}
