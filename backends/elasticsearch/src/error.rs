//! From HTTP answers and transport failures to secretd's one error
//! vocabulary.
//!
//! Elasticsearch and OpenSearch describe a failure as `{"error": {"type",
//! "reason", ...}, "status"}`; the type and a shortened reason go into the
//! message because operators need them ("index_not_found_exception",
//! "security_exception: missing authentication credentials"). That is safe:
//! values leave this process sealed, so the server can only ever echo
//! ciphertext, and request headers (credentials) are never part of an
//! answer.

use secretd_core::{ErrorKind, StoreError};

/// Longest server `reason` quoted in a message.
const MAX_REASON_CHARS: usize = 240;

/// The `type` and `reason` of an error answer, when it is one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ServerError {
    pub kind: Option<String>,
    pub reason: Option<String>,
}

impl ServerError {
    pub fn parse(body: &[u8]) -> Self {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value) => Self::from_error(&value["error"]),
            Err(_) => Self::default(),
        }
    }

    /// From the value of an `error` field.
    pub fn from_error(error: &serde_json::Value) -> Self {
        // Some proxies and old versions answer with `"error": "text"`.
        if let Some(text) = error.as_str() {
            return Self { kind: None, reason: Some(text.to_owned()) };
        }
        Self { kind: error["type"].as_str().map(str::to_owned), reason: error["reason"].as_str().map(str::to_owned) }
    }

    pub fn is(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind)
    }

    /// `: type: reason`, shortened, or nothing.
    pub fn detail(&self) -> String {
        let reason = self.reason.as_deref().map(|r| {
            let mut short: String = r.chars().filter(|c| !c.is_control()).take(MAX_REASON_CHARS).collect();
            if r.chars().count() > MAX_REASON_CHARS {
                short.push('…');
            }
            short
        });
        match (&self.kind, reason) {
            (Some(kind), Some(reason)) => format!(": {kind}: {reason}"),
            (Some(kind), None) => format!(": {kind}"),
            (None, Some(reason)) => format!(": {reason}"),
            (None, None) => String::new(),
        }
    }
}

/// The kind an HTTP status stands for. Callers handle the statuses that
/// mean something specific to them (404 on a get, 409 on a conditional
/// write) before falling back to this.
pub(crate) fn status_kind(status: u16) -> ErrorKind {
    match status {
        404 => ErrorKind::NotFound,
        409 => ErrorKind::AlreadyExists,
        401 | 403 => ErrorKind::PermissionDenied,
        413 => ErrorKind::TooLarge,
        // 408 is the server giving up waiting for us; 429 and 5xx are an
        // overloaded or failing cluster. All are worth another try later.
        429 => ErrorKind::Throttled,
        408 | 500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// Whether a status is worth retrying at once (with backoff).
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// An error answer as a [`StoreError`]; `what` says what secretd was doing
/// ("reading secret main/a/b").
pub(crate) fn from_status(status: u16, body: &[u8], what: &str) -> StoreError {
    let kind = status_kind(status);
    let server = ServerError::parse(body);
    let hint = match kind {
        ErrorKind::PermissionDenied => " (the cluster refused secretd's credentials or their privileges)",
        ErrorKind::Unavailable => " (the cluster is overloaded or failing)",
        _ => "",
    };
    StoreError::new(kind, format!("elasticsearch answered HTTP {status} while {what}{}{hint}", server.detail()))
}

/// A failure to get any answer at all. reqwest's errors name the URL but
/// never the headers or body, so they are kept as the source.
pub(crate) fn from_transport(error: reqwest::Error, what: &str) -> StoreError {
    let (kind, detail) = if error.is_timeout() {
        (ErrorKind::Timeout, "no answer in time")
    } else if error.is_connect() {
        (ErrorKind::Unavailable, "cannot connect")
    } else if error.is_builder() {
        (ErrorKind::Internal, "cannot build the request")
    } else {
        (ErrorKind::Unavailable, "the request failed")
    };
    // The innermost cause says why ("connection refused", "invalid peer
    // certificate: UnknownIssuer"); it names hosts, never headers or bodies.
    let mut cause: &dyn std::error::Error = &error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let cause = if std::ptr::addr_eq(cause, &error) { String::new() } else { format!(" ({cause})") };
    StoreError::new(kind, format!("elasticsearch: {detail} while {what}{cause}")).with_source(error)
}

/// An answer that is not what the API documents.
pub(crate) fn unexpected(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::internal(format!("elasticsearch gave an unexpected answer while {what}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_one_kind_each() {
        assert_eq!(status_kind(404), ErrorKind::NotFound);
        assert_eq!(status_kind(401), ErrorKind::PermissionDenied);
        assert_eq!(status_kind(403), ErrorKind::PermissionDenied);
        assert_eq!(status_kind(429), ErrorKind::Throttled);
        assert_eq!(status_kind(500), ErrorKind::Unavailable);
        assert_eq!(status_kind(503), ErrorKind::Unavailable);
        assert_eq!(status_kind(413), ErrorKind::TooLarge);
        assert_eq!(status_kind(400), ErrorKind::Internal);
        assert!(is_retryable_status(429) && is_retryable_status(502) && !is_retryable_status(404));
    }

    #[test]
    fn messages_quote_type_and_reason() {
        let body =
            br#"{"error":{"type":"security_exception","reason":"missing authentication credentials"},"status":401}"#;
        let e = from_status(401, body, "reading secret x");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.message().contains("security_exception: missing authentication credentials"), "{}", e.message());
        let e = from_status(503, b"<html>bad gateway</html>", "listing");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.message().starts_with("elasticsearch answered HTTP 503 while listing"), "{}", e.message());
        let long = format!(r#"{{"error":{{"type":"t","reason":"{}"}}}}"#, "r".repeat(1000));
        assert!(from_status(400, long.as_bytes(), "x").message().len() < 400);
        assert_eq!(ServerError::parse(br#"{"error":"plain"}"#).reason.as_deref(), Some("plain"));
    }
}
