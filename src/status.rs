//! The one place where backend error kinds become gRPC status codes.
//!
//! Callers act on the code, so each kind maps to exactly one code. A backend
//! refusing *secretd's own* credentials is the operator's problem, not the
//! caller's: it is reported as UNAVAILABLE, never as the caller's
//! PERMISSION_DENIED.

use secretd_core::{ErrorKind, StoreError};
use tonic::{Code, Status};

pub fn code_for(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::InvalidName | ErrorKind::TooLarge => Code::InvalidArgument,
        ErrorKind::PermissionDenied | ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Throttled => {
            Code::Unavailable
        }
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Unsupported => Code::Unimplemented,
        ErrorKind::Corrupt => Code::DataLoss,
        ErrorKind::Internal => Code::Internal,
    }
}

/// Converts a store error for the caller. The message is the store's safe
/// message (never a value); the cause chain goes to the log only.
pub fn from_store_error(error: &StoreError) -> Status {
    let message = match error.kind() {
        ErrorKind::PermissionDenied => format!("the secret backend refused secretd's credentials: {}", error.message()),
        ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Throttled => {
            format!("the secret backend is unavailable: {}", error.message())
        }
        _ => error.message().to_owned(),
    };
    if matches!(error.kind(), ErrorKind::Internal | ErrorKind::Corrupt | ErrorKind::PermissionDenied) {
        tracing::error!(kind = %error.kind(), error = %error, cause = ?std::error::Error::source(error), "backend error");
    } else if error.kind().is_transient() {
        tracing::warn!(kind = %error.kind(), error = %error, cause = ?std::error::Error::source(error), "backend error");
    }
    Status::new(code_for(error.kind()), message)
}

/// The upper-case name of a code, as gRPC tools print it (`NOT_FOUND`).
pub fn code_name(code: Code) -> &'static str {
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
    fn backend_credential_failure_is_not_the_callers_denial() {
        let status = from_store_error(&StoreError::new(ErrorKind::PermissionDenied, "403 from backend"));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("refused secretd's credentials"));
    }

    #[test]
    fn every_kind_has_a_distinct_meaningful_code() {
        assert_eq!(code_for(ErrorKind::NotFound), Code::NotFound);
        assert_eq!(code_for(ErrorKind::InvalidName), Code::InvalidArgument);
        assert_eq!(code_for(ErrorKind::Corrupt), Code::DataLoss);
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
    }
}
