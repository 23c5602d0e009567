//! Values and per-version bookkeeping in Key Vault's string-only secrets.
//!
//! Key Vault stores a secret's value as a string, with a free-form
//! `contentType` string beside it on every version. secretd values are any
//! bytes, so:
//!
//! - a value that is UTF-8 is stored as is, with the content type
//!   `text/plain; charset=utf-8`, so the portal, the CLI and other clients
//!   see the value itself;
//! - any other value is stored as standard base64 with the content type
//!   `application/octet-stream; secretd-encoding=base64`, and decoded on
//!   read, so binary values round-trip byte for byte.
//!
//! The content type also carries `secretd-created=<unix seconds>`: when the
//! secret (not this version) was first written. Key Vault keeps timestamps
//! per version only, and secretd reports a secret's creation time, so each
//! put copies it forward from the version before (or leaves it out on the
//! first version, whose own `created` attribute is that time). It also
//! carries `secretd-written=<unix microseconds>`, the writer's clock when
//! the version was written: Key Vault's own times are whole seconds and its
//! version listing is in no particular order, so this is what puts the
//! versions of one second in order. Values written by other tools, without
//! these parameters, read as their string.

use base64::{engine::general_purpose::STANDARD, Engine};
use secretd_core::{SecretValue, StoreError};
use zeroize::Zeroizing;

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const BINARY: &str = "application/octet-stream; secretd-encoding=base64";
const ENCODING_PARAM: &str = "secretd-encoding";
const CREATED_PARAM: &str = "secretd-created";
const WRITTEN_PARAM: &str = "secretd-written";

/// The string to store and its content type.
pub fn encode(value: &SecretValue, created: Option<i64>) -> (Zeroizing<String>, String) {
    let (stored, mut content_type) = match std::str::from_utf8(value.expose()) {
        Ok(text) => (Zeroizing::new(text.to_owned()), TEXT.to_owned()),
        Err(_) => (Zeroizing::new(STANDARD.encode(value.expose())), BINARY.to_owned()),
    };
    if let Some(created) = created {
        content_type.push_str(&format!("; {CREATED_PARAM}={created}"));
    }
    (stored, content_type)
}

/// A content type with the version's write time added.
pub fn with_written(content_type: String, written_micros: i64) -> String {
    format!("{content_type}; {WRITTEN_PARAM}={written_micros}")
}

/// The write time [`with_written`] put in a content type.
pub fn written(content_type: Option<&str>) -> Option<i64> {
    param(content_type, WRITTEN_PARAM)?.parse().ok()
}

/// The value a stored string stands for, given its content type.
pub fn decode(stored: String, content_type: Option<&str>) -> Result<SecretValue, StoreError> {
    if param(content_type, ENCODING_PARAM) == Some("base64") {
        let stored = Zeroizing::new(stored);
        return STANDARD
            .decode(stored.as_bytes())
            .map(SecretValue::new)
            .map_err(|_| StoreError::corrupt("a Key Vault value marked secretd-encoding=base64 is not valid base64"));
    }
    Ok(SecretValue::new(stored.into_bytes()))
}

/// The secret's first-write time carried in a version's content type.
pub fn created(content_type: Option<&str>) -> Option<i64> {
    param(content_type, CREATED_PARAM)?.parse().ok()
}

/// A `name=value` parameter of a content type (`type; a=1; b=2`).
fn param<'a>(content_type: Option<&'a str>, name: &str) -> Option<&'a str> {
    content_type?
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stays_text_and_binary_round_trips() {
        let text = SecretValue::from_slice("pässwörd\n".as_bytes());
        let (stored, ct) = encode(&text, None);
        assert_eq!(stored.as_str(), "pässwörd\n");
        assert_eq!(ct, TEXT);
        assert_eq!(decode(stored.to_string(), Some(&ct)).unwrap(), text);

        let binary = SecretValue::from_slice(&[0, 0xff, 0xfe, 7]);
        let (stored, ct) = encode(&binary, Some(1_700_000_000));
        assert_eq!(ct, "application/octet-stream; secretd-encoding=base64; secretd-created=1700000000");
        assert_eq!(decode(stored.to_string(), Some(&ct)).unwrap(), binary);
        assert_eq!(created(Some(&ct)), Some(1_700_000_000));
        let ct = with_written(ct, 1_700_000_000_123_456);
        assert_eq!(written(Some(&ct)), Some(1_700_000_000_123_456));
        assert_eq!(created(Some(&ct)), Some(1_700_000_000));
        assert_eq!(decode(stored.to_string(), Some(&ct)).unwrap(), binary);
        assert_eq!(written(Some(TEXT)), None);
    }

    #[test]
    fn foreign_values_read_as_their_string() {
        assert_eq!(decode("AAEC".into(), None).unwrap().expose(), b"AAEC");
        assert_eq!(decode("x".into(), Some("application/json")).unwrap().expose(), b"x");
        assert_eq!(created(Some("text/plain")), None);
        assert_eq!(created(None), None);
        let err = decode("not base64!".into(), Some(BINARY)).unwrap_err();
        assert_eq!(err.kind(), secretd_core::ErrorKind::Corrupt);
        assert!(!err.message().contains("not base64!"));
    }
}
