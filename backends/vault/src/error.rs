//! Vault's answers in secretd's error vocabulary.
//!
//! Only the status code and Vault's own error strings reach a message;
//! vaultrs errors that carry a response body are reduced to their fixed
//! description, because a body may hold secret data.

use std::error::Error as _;

use secretd_core::{ErrorKind, StoreError};
use vaultrs::error::ClientError;

/// Maps a vaultrs error; `what` says what was being done ("reading
/// acme/team/db", "logging in with approle").
pub fn map(e: ClientError, what: &str) -> StoreError {
    match e {
        ClientError::APIError { code, errors } => {
            let detail = if errors.is_empty() { String::new() } else { format!(": {}", errors.join("; ")) };
            let kind = match code {
                400 => ErrorKind::InvalidName,
                401 | 403 => ErrorKind::PermissionDenied,
                404 => ErrorKind::NotFound,
                405 | 501 => ErrorKind::Unsupported,
                408 => ErrorKind::Timeout,
                429 => ErrorKind::Throttled,
                412 | 472 | 473 | 500 | 502 | 503 | 504 => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            };
            StoreError::new(kind, format!("vault answered {code} while {what}{detail}"))
        }
        ClientError::RestClientError { source } => transport(&source, what),
        ClientError::JsonParseError { .. } | ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            StoreError::corrupt(format!("vault's answer while {what} was not what KV v2 returns"))
        }
        other => StoreError::internal(format!("vault client error while {what}: {other}")),
    }
}

/// A request that got no HTTP answer, or an error status without a JSON
/// body (a proxy's 502, say).
fn transport(e: &rustify::errors::ClientError, what: &str) -> StoreError {
    if let rustify::errors::ClientError::ServerResponseError { code, .. } = e {
        let kind = match code {
            401 | 403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            429 => ErrorKind::Throttled,
            500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        return StoreError::new(kind, format!("vault answered {code} while {what}"));
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(c) = cause {
        if let Some(re) = c.downcast_ref::<reqwest::Error>() {
            if re.is_timeout() {
                return StoreError::new(ErrorKind::Timeout, format!("vault did not answer in time while {what}"));
            }
            if re.is_connect() {
                return StoreError::unavailable(format!("cannot connect to vault while {what}"));
            }
        }
        cause = c.source();
    }
    StoreError::unavailable(format!("vault request failed while {what}: {e}"))
}
