//! Secrets Manager's answers in secretd's error vocabulary.
//!
//! The SDK has already retried what it deems transient (throttling, 5xx,
//! dropped connections: three tries with jittered exponential backoff); what
//! reaches here is final for this call.

use aws_sdk_secretsmanager::{
    error::{ProvideErrorMetadata, SdkError},
    operation::RequestId,
};
use secretd_core::{ErrorKind, StoreError};

/// Maps an SDK error; `what` says what was being done ("reading acme/x/y").
pub fn map<E, R>(e: SdkError<E, R>, what: &str) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or("Unknown");
            let message = err.message().unwrap_or_default();
            let kind = kind_of(code, message);
            let request = err.meta().request_id().map(|id| format!(" (request id {id})")).unwrap_or_default();
            StoreError::new(kind, format!("Secrets Manager answered {code} while {what}: {message}{request}"))
        }
        SdkError::TimeoutError(_) => {
            StoreError::new(ErrorKind::Timeout, format!("Secrets Manager did not answer in time while {what}"))
        }
        SdkError::DispatchFailure(failure) => {
            let reason = if failure.is_timeout() {
                return StoreError::new(
                    ErrorKind::Timeout,
                    format!("Secrets Manager did not answer in time while {what}"),
                );
            } else if failure.is_io() {
                "cannot connect"
            } else {
                "the request could not be sent"
            };
            StoreError::unavailable(format!("{reason} to Secrets Manager while {what}"))
        }
        SdkError::ResponseError(_) => {
            StoreError::unavailable(format!("Secrets Manager's answer could not be read while {what}"))
        }
        SdkError::ConstructionFailure(_) => {
            // Most often: no credentials or no region found.
            StoreError::new(
                ErrorKind::PermissionDenied,
                format!("the Secrets Manager request could not be built while {what}: {}", source_chain(&e)),
            )
        }
        _ => StoreError::internal(format!("Secrets Manager call failed while {what}")),
    }
}

/// The error codes of the Secrets Manager API and the common AWS ones.
fn kind_of(code: &str, message: &str) -> ErrorKind {
    match code {
        "ResourceNotFoundException" => ErrorKind::NotFound,
        // Reading or deleting a secret scheduled for deletion: to secretd,
        // it is gone.
        "InvalidRequestException" if message.contains("marked for deletion") || message.contains("marked deleted") => {
            ErrorKind::NotFound
        }
        // A name still reserved by a secret deleted an instant ago: the
        // same put will succeed shortly.
        "InvalidRequestException" if message.contains("scheduled for deletion") => ErrorKind::Unavailable,
        "ResourceExistsException" => ErrorKind::AlreadyExists,
        "InvalidParameterException"
        | "InvalidRequestException"
        | "ValidationException"
        | "MalformedPolicyDocumentException" => ErrorKind::InvalidName,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidClientTokenId"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "DecryptionFailure"
        | "EncryptionFailure" => ErrorKind::PermissionDenied,
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" | "RequestLimitExceeded" => {
            ErrorKind::Throttled
        }
        "LimitExceededException"
        | "InternalServiceError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cause = e.source();
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(kind_of("ResourceNotFoundException", ""), ErrorKind::NotFound);
        assert_eq!(
            kind_of(
                "InvalidRequestException",
                "You can't perform this operation on the secret because it was marked for deletion."
            ),
            ErrorKind::NotFound
        );
        assert_eq!(kind_of("ThrottlingException", ""), ErrorKind::Throttled);
        assert_eq!(kind_of("AccessDeniedException", ""), ErrorKind::PermissionDenied);
        assert_eq!(kind_of("InvalidParameterException", ""), ErrorKind::InvalidName);
        assert_eq!(kind_of("SomethingNew", ""), ErrorKind::Internal);
    }
}
