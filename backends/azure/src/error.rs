//! Key Vault's answers, and the Azure SDK's failures, in secretd's error
//! vocabulary.
//!
//! A Key Vault error body is `{"error": {"code", "message", "innererror"}}`;
//! its code and message (names and reasons, never values) reach the
//! message, cut short and stripped of control characters. Failures to read
//! a *successful* answer get a fixed message and no source, because a
//! deserializer's complaint may quote the body, and a body may hold a value.

use std::error::Error as _;

use azure_core::error::ErrorKind as SdkKind;
use secretd_core::{ErrorKind, StoreError};

/// The longest server message quoted in an error.
const MAX_DETAIL_CHARS: usize = 200;

/// What Key Vault said in an error answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub status: u16,
    pub code: Option<String>,
    pub inner_code: Option<String>,
    pub message: Option<String>,
}

impl ServiceError {
    fn from_sdk(e: &azure_core::Error) -> Option<Self> {
        let SdkKind::HttpResponse { status, error_code, raw_response } = e.kind() else {
            return None;
        };
        let mut out = Self { status: u16::from(*status), code: error_code.clone(), ..Default::default() };
        if let Some(raw) = raw_response {
            if let Ok(body) = serde_json::from_slice::<serde_json::Value>(raw.body().as_ref()) {
                let error = &body["error"];
                out.code = error["code"].as_str().map(str::to_owned).or(out.code);
                out.message = error["message"].as_str().map(short);
                out.inner_code = error["innererror"]["code"].as_str().map(str::to_owned);
            }
        }
        Some(out)
    }

    fn detail(&self) -> String {
        let mut detail = String::new();
        if let Some(code) = &self.code {
            detail.push_str(&format!(" {}", short(code)));
        }
        if let Some(inner) = &self.inner_code {
            detail.push_str(&format!("/{}", short(inner)));
        }
        if let Some(message) = &self.message {
            detail.push_str(&format!(": {message}"));
        }
        detail
    }

    /// The secretd kind of an error answer.
    fn kind(&self) -> ErrorKind {
        let has = |code: &str| {
            self.code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(code))
                || self.inner_code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(code))
        };
        match self.status {
            // Key Vault's 25,600-character limit on values.
            400 if self.message.as_deref().is_some_and(|m| m.contains("maximum permitted length")) => {
                ErrorKind::TooLarge
            }
            413 => ErrorKind::TooLarge,
            400 => ErrorKind::InvalidName,
            // A disabled version cannot be read: to secretd it is not there.
            403 if has("SecretDisabled") => ErrorKind::NotFound,
            401 | 403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            405 | 501 => ErrorKind::Unsupported,
            408 => ErrorKind::Timeout,
            409 => ErrorKind::AlreadyExists,
            429 => ErrorKind::Throttled,
            500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

/// The Key Vault error answer behind `e`, if it is one.
pub fn service_error(e: &azure_core::Error) -> Option<ServiceError> {
    ServiceError::from_sdk(e)
}

/// Maps an SDK error; `what` says what was being done ("reading
/// acme/team/db").
pub fn map(e: azure_core::Error, what: &str) -> StoreError {
    if let Some(service) = ServiceError::from_sdk(&e) {
        let kind = service.kind();
        let message = match kind {
            ErrorKind::PermissionDenied => {
                format!("Key Vault refused secretd's credentials ({}) while {what}{}", service.status, service.detail())
            }
            _ => format!("Key Vault answered {} while {what}{}", service.status, service.detail()),
        };
        return StoreError::new(kind, message).with_source(e);
    }
    match e.kind() {
        SdkKind::Credential => {
            // The token endpoint may be unreachable (worth retrying later) or
            // may refuse the credential (the operator's to fix).
            // The bearer-token policy's own race (see `AzureStore::challenged`)
            // is no refusal: a retry succeeds.
            let raced = e.to_string().contains("error while fetching the access token");
            let kind = if transport_cause(&e).is_some() || raced {
                ErrorKind::Unavailable
            } else {
                ErrorKind::PermissionDenied
            };
            StoreError::new(kind, format!("the Azure credential could not get a token while {what}: {}", chain(&e)))
                .with_source(e)
        }
        SdkKind::Io | SdkKind::Connection => transport(e, what),
        // A successful answer that does not read as Key Vault's model: say
        // so without quoting it (see the module docs).
        SdkKind::DataConversion => {
            StoreError::new(ErrorKind::Corrupt, format!("Key Vault's answer while {what} was not in the expected form"))
        }
        _ => {
            let message = format!("Azure SDK error while {what}: {}", chain(&e));
            StoreError::internal(message).with_source(e)
        }
    }
}

/// A request that got no HTTP answer.
fn transport(e: azure_core::Error, what: &str) -> StoreError {
    if let Some(re) = transport_cause(&e) {
        if re.is_timeout() {
            return StoreError::new(ErrorKind::Timeout, format!("Key Vault did not answer in time while {what}"))
                .with_source(e);
        }
    }
    StoreError::unavailable(format!("cannot reach Key Vault while {what}: {}", chain(&e))).with_source(e)
}

/// The reqwest error somewhere in the causes, if the failure was one of
/// the transport's.
fn transport_cause(e: &azure_core::Error) -> Option<&reqwest::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(c) = cause {
        if let Some(re) = c.downcast_ref::<reqwest::Error>() {
            return Some(re);
        }
        cause = c.source();
    }
    None
}

/// The messages of an error and its causes, without repeats: the SDK wraps
/// transport errors in generic context ("retry policy expired"), and the
/// useful part ("invalid peer certificate: UnknownIssuer") is at the end.
fn chain(e: &azure_core::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let text = short(&c.to_string());
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// A server- or library-provided text, one line and bounded.
fn short(text: &str) -> String {
    let mut s: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_DETAIL_CHARS).collect();
    if text.chars().count() > MAX_DETAIL_CHARS {
        s.push('…');
    }
    s.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use azure_core::http::{headers::Headers, RawResponse, StatusCode};

    use super::*;

    fn http_error(status: u16, body: &str) -> azure_core::Error {
        let raw = RawResponse::from_bytes(StatusCode::from(status), Headers::new(), body.as_bytes().to_vec());
        azure_core::Error::with_message(
            SdkKind::HttpResponse {
                status: StatusCode::from(status),
                error_code: None,
                raw_response: Some(Box::new(raw)),
            },
            "ignored",
        )
    }

    #[test]
    fn statuses_map_to_kinds() {
        let cases = [
            (
                404,
                r#"{"error":{"code":"SecretNotFound","message":"A secret with (name/id) x was not found"}}"#,
                ErrorKind::NotFound,
            ),
            (
                401,
                r#"{"error":{"code":"Unauthorized","message":"AKV10032: Invalid issuer."}}"#,
                ErrorKind::PermissionDenied,
            ),
            (
                403,
                r#"{"error":{"code":"Forbidden","message":"no get permission","innererror":{"code":"AccessDenied"}}}"#,
                ErrorKind::PermissionDenied,
            ),
            (
                403,
                r#"{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}"#,
                ErrorKind::NotFound,
            ),
            (409, r#"{"error":{"code":"Conflict","message":"deleted but recoverable"}}"#, ErrorKind::AlreadyExists),
            (429, r#"{"error":{"code":"Throttled","message":"slow down"}}"#, ErrorKind::Throttled),
            (503, "<html>gateway</html>", ErrorKind::Unavailable),
            (
                400,
                r#"{"error":{"code":"BadParameter","message":"Secret is beyond the maximum permitted length of 25600 characters."}}"#,
                ErrorKind::TooLarge,
            ),
            (
                400,
                r#"{"error":{"code":"BadParameter","message":"The request URI contains an invalid name"}}"#,
                ErrorKind::InvalidName,
            ),
            (418, "", ErrorKind::Internal),
        ];
        for (status, body, kind) in cases {
            let e = map(http_error(status, body), "reading main/ns/k");
            assert_eq!(e.kind(), kind, "{status} {body}: {e}");
            assert!(e.message().contains("reading main/ns/k"), "{e}");
        }
        let e = map(http_error(401, r#"{"error":{"code":"Unauthorized","message":"AKV10032: Invalid issuer."}}"#), "x");
        assert!(e.message().contains("refused secretd's credentials"), "{e}");
        assert!(e.message().contains("AKV10032"), "{e}");
    }

    #[test]
    fn long_or_multiline_server_messages_are_cut() {
        let body = format!(r#"{{"error":{{"code":"BadParameter","message":"line1\nline2 {}"}}}}"#, "x".repeat(1000));
        let e = map(http_error(400, &body), "writing k");
        assert!(!e.message().contains('\n'));
        assert!(e.message().len() < 400, "{}", e.message());
    }

    #[test]
    fn unreadable_successful_answers_do_not_quote_them() {
        let e = azure_core::Error::with_message(SdkKind::DataConversion, "invalid type: string \"hunter2\"");
        let mapped = map(e, "reading k");
        assert_eq!(mapped.kind(), ErrorKind::Corrupt);
        assert!(!mapped.message().contains("hunter2"));
        assert!(mapped.source().is_none());
    }
}
