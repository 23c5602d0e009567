//! Secret Manager's answers in secretd's error vocabulary.
//!
//! The client is built without retries of its own; the store retries
//! transient kinds (`Unavailable`, `Timeout`) through
//! [`secretd_core::retry`], so what reaches here is one attempt's outcome.
//! Messages carry the status code and Google's own message, which names
//! resources but never payloads. A response that cannot be decoded is
//! reported without its cause, because the response to an access call
//! holds the value.

use std::error::Error as _;

use google_cloud_gax::error::{rpc::Code, CredentialsError, Error};
use secretd_core::{ErrorKind, StoreError};

/// Maps a client error; `what` says what was being done ("reading acme/x/y").
pub fn map(e: Error, what: &str) -> StoreError {
    if let Some(status) = e.status() {
        let kind = kind_of(status.code);
        let message = if status.message.is_empty() { String::new() } else { format!(": {}", status.message) };
        let err =
            StoreError::new(kind, format!("Secret Manager answered {} while {what}{message}", status.code.name()));
        return err.with_source(e);
    }
    if e.is_timeout() {
        return StoreError::new(ErrorKind::Timeout, format!("Secret Manager did not answer in time while {what}"));
    }
    if e.is_deserialization() {
        // No source: the decoder's message may quote the response, and the
        // response may be a secret's value.
        return StoreError::new(ErrorKind::Internal, format!("Secret Manager's answer could not be read while {what}"));
    }
    if e.is_authentication() {
        let transient = e.source().and_then(|s| s.downcast_ref::<CredentialsError>()).is_some_and(|c| c.is_transient());
        let kind = if transient { ErrorKind::Unavailable } else { ErrorKind::PermissionDenied };
        return StoreError::new(kind, format!("no Google access token could be obtained while {what}: {e}"))
            .with_source(e);
    }
    if let Some(code) = e.http_status_code() {
        // An HTTP error without Google's error body: a proxy, a load
        // balancer, or a server that is not Secret Manager.
        let kind = match code {
            400 => ErrorKind::InvalidName,
            401 | 403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::AlreadyExists,
            408 | 504 => ErrorKind::Timeout,
            429 => ErrorKind::Throttled,
            500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        return StoreError::new(kind, format!("Secret Manager's endpoint answered HTTP {code} while {what}"))
            .with_source(e);
    }
    if e.is_connect() || e.is_io() || e.is_transport() || e.is_exhausted() {
        return StoreError::unavailable(format!("cannot reach Secret Manager while {what}: {e}")).with_source(e);
    }
    if e.is_serialization() || e.is_binding() {
        return StoreError::internal(format!("the Secret Manager request could not be built while {what}"));
    }
    StoreError::internal(format!("Secret Manager call failed while {what}")).with_source(e)
}

/// The canonical status codes, as Secret Manager uses them.
fn kind_of(code: Code) -> ErrorKind {
    match code {
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::PermissionDenied | Code::Unauthenticated => ErrorKind::PermissionDenied,
        Code::ResourceExhausted => ErrorKind::Throttled,
        Code::Unavailable | Code::Aborted | Code::Internal | Code::Unknown => ErrorKind::Unavailable,
        Code::DeadlineExceeded | Code::Cancelled => ErrorKind::Timeout,
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidName,
        Code::Unimplemented => ErrorKind::Unsupported,
        Code::DataLoss => ErrorKind::Corrupt,
        // FAILED_PRECONDITION (a disabled or destroyed version, say) is
        // interpreted by the caller, which knows what it asked for.
        _ => ErrorKind::Internal,
    }
}

/// Whether the error is Secret Manager's FAILED_PRECONDITION: reading a
/// version that is disabled or destroyed.
pub fn is_failed_precondition(e: &Error) -> bool {
    e.status().is_some_and(|s| s.code == Code::FailedPrecondition)
}

#[cfg(test)]
mod tests {
    use google_cloud_gax::error::rpc::Status;

    use super::*;

    fn service(code: Code, message: &str) -> Error {
        Error::service(Status::default().set_code(code).set_message(message))
    }

    #[test]
    fn codes() {
        for (code, kind) in [
            (Code::NotFound, ErrorKind::NotFound),
            (Code::AlreadyExists, ErrorKind::AlreadyExists),
            (Code::PermissionDenied, ErrorKind::PermissionDenied),
            (Code::Unauthenticated, ErrorKind::PermissionDenied),
            (Code::ResourceExhausted, ErrorKind::Throttled),
            (Code::Unavailable, ErrorKind::Unavailable),
            (Code::Internal, ErrorKind::Unavailable),
            (Code::DeadlineExceeded, ErrorKind::Timeout),
            (Code::InvalidArgument, ErrorKind::InvalidName),
            (Code::FailedPrecondition, ErrorKind::Internal),
        ] {
            let err = map(service(code, "Secret [projects/p/secrets/s] not found."), "reading t/n/k");
            assert_eq!(err.kind(), kind, "{code:?}");
            assert!(err.message().contains("while reading t/n/k"), "{}", err.message());
            assert!(err.message().contains(code.name()), "{}", err.message());
        }
        assert!(is_failed_precondition(&service(Code::FailedPrecondition, "")));
        assert!(!is_failed_precondition(&service(Code::NotFound, "")));
    }

    #[test]
    fn transport_failures() {
        let err = map(Error::timeout("slow"), "listing");
        assert_eq!(err.kind(), ErrorKind::Timeout);
        let err = map(Error::io("reset by peer"), "listing");
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        let err = map(Error::deser("invalid type: string \"hunter2\""), "reading t/n/k");
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(!err.to_string().contains("hunter2"), "a decoding error must not quote the answer");
        assert!(std::error::Error::source(&err).is_none());
        let err = map(Error::authentication(CredentialsError::from_msg(false, "bad key")), "listing");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        let err = map(Error::authentication(CredentialsError::from_msg(true, "metadata server down")), "listing");
        assert_eq!(err.kind(), ErrorKind::Unavailable);
    }
}
