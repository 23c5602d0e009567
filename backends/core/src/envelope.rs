//! The AES-256-GCM envelope for stores that encrypt values at rest (SQL,
//! Elasticsearch).
//!
//! The key is derived with HKDF-SHA256 from the backend's configured
//! `secret`, so any string of at least 32 characters works and the raw
//! setting is never used as a key directly. Every ciphertext starts with a
//! format byte and a key id (also HKDF-derived, so it reveals nothing about
//! the key) and is bound, as associated data, to the secret's tenant,
//! namespace, key and version: a row copied onto another name or version
//! fails to decrypt with a `Corrupt` error instead of returning the wrong
//! secret.
//!
//! Layout: `0x01 | key id (8) | nonce (12) | ciphertext and tag`.

use std::fmt;

use aes_gcm::{
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
    Aes256Gcm, Nonce,
};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{SecretName, SecretValue, StoreError};

/// The platform's rule: a backend `secret` has at least 32 characters.
pub const MIN_SECRET_LEN: usize = 32;

const FORMAT_V1: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
const HKDF_SALT: &[u8] = b"secretd envelope v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("must be at least {MIN_SECRET_LEN} characters long (got {0}); `secretd keygen` prints a suitable one")]
    TooShort(usize),
}

/// Encrypts and decrypts values under one key derived from a secret string.
pub struct Envelope {
    cipher: Aes256Gcm,
    key_id: [u8; KEY_ID_LEN],
}

impl Envelope {
    pub fn from_secret(secret: &str) -> Result<Self, EnvelopeError> {
        let len = secret.chars().count();
        if len < MIN_SECRET_LEN {
            return Err(EnvelopeError::TooShort(len));
        }
        let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret.as_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        let mut key_id = [0u8; KEY_ID_LEN];
        // Expanding 32 or 8 bytes from SHA-256 HKDF cannot fail.
        hkdf.expand(b"aes-256-gcm key", key.as_mut()).expect("32 bytes is a valid HKDF-SHA256 length");
        hkdf.expand(b"key id", &mut key_id).expect("8 bytes is a valid HKDF-SHA256 length");
        let cipher = Aes256Gcm::new_from_slice(key.as_ref()).expect("the key is 32 bytes");
        Ok(Self { cipher, key_id })
    }

    /// The key id, as stored in every ciphertext; safe to log.
    pub fn key_id(&self) -> String {
        hex(&self.key_id)
    }

    /// Encrypts `value` for `name` at `version`.
    pub fn seal(&self, name: &SecretName, version: &str, value: &SecretValue) -> Result<Vec<u8>, StoreError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(name, version);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, Payload { msg: value.expose(), aad: &aad })
            .map_err(|_| StoreError::internal(format!("encrypting secret {name} failed")))?;
        let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts what [`seal`](Self::seal) wrote for the same name and version.
    pub fn open(&self, name: &SecretName, version: &str, sealed: &[u8]) -> Result<SecretValue, StoreError> {
        if sealed.len() < HEADER_LEN + 16 || sealed[0] != FORMAT_V1 {
            return Err(StoreError::corrupt(format!(
                "secret {name} version {version}: stored ciphertext is not in secretd's envelope format"
            )));
        }
        let key_id = &sealed[1..1 + KEY_ID_LEN];
        if key_id != self.key_id {
            return Err(StoreError::corrupt(format!(
                "secret {name} version {version} was encrypted under key id {}, but the configured secret has key id {}",
                hex(key_id),
                self.key_id()
            )));
        }
        let nonce = Nonce::from_slice(&sealed[1 + KEY_ID_LEN..HEADER_LEN]);
        let aad = associated_data(name, version);
        let plaintext = self.cipher.decrypt(nonce, Payload { msg: &sealed[HEADER_LEN..], aad: &aad }).map_err(|_| {
            StoreError::corrupt(format!(
                "secret {name} version {version} failed authentication: the stored value was altered or belongs to another name"
            ))
        })?;
        Ok(SecretValue::new(plaintext))
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope").field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

/// Length-prefixed parts, so that no two different names encode alike.
fn associated_data(name: &SecretName, version: &str) -> Vec<u8> {
    let mut aad = b"secretd/v1".to_vec();
    for part in [name.tenant.as_str(), name.namespace.as_str(), name.key.as_str(), version] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn name(key: &str) -> SecretName {
        SecretName::parse("main", "company.team", key).unwrap()
    }

    #[test]
    fn round_trip_and_no_plaintext() {
        let env = Envelope::from_secret(SECRET).unwrap();
        let value = SecretValue::from_slice(b"plaintext-marker-42");
        let sealed = env.seal(&name("k"), "1", &value).unwrap();
        assert!(!sealed.windows(19).any(|w| w == b"plaintext-marker-42"));
        assert_eq!(env.open(&name("k"), "1", &sealed).unwrap(), value);
    }

    #[test]
    fn bound_to_name_and_version() {
        let env = Envelope::from_secret(SECRET).unwrap();
        let sealed = env.seal(&name("k"), "1", &SecretValue::from_slice(b"v")).unwrap();
        assert_eq!(env.open(&name("other"), "1", &sealed).unwrap_err().kind(), ErrorKind::Corrupt);
        assert_eq!(env.open(&name("k"), "2", &sealed).unwrap_err().kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn wrong_key_names_key_ids() {
        let a = Envelope::from_secret(SECRET).unwrap();
        let b = Envelope::from_secret("another-secret-of-32-characters!!").unwrap();
        let sealed = a.seal(&name("k"), "1", &SecretValue::from_slice(b"v")).unwrap();
        let err = b.open(&name("k"), "1", &sealed).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains(&a.key_id()), "{}", err.message());
    }

    #[test]
    fn tampering_and_garbage_are_corrupt() {
        let env = Envelope::from_secret(SECRET).unwrap();
        let mut sealed = env.seal(&name("k"), "1", &SecretValue::from_slice(b"value")).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(env.open(&name("k"), "1", &sealed).unwrap_err().kind(), ErrorKind::Corrupt);
        assert_eq!(env.open(&name("k"), "1", b"").unwrap_err().kind(), ErrorKind::Corrupt);
        assert_eq!(env.open(&name("k"), "1", &[1u8; 10]).unwrap_err().kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn short_secret_refused() {
        assert_eq!(Envelope::from_secret("short").unwrap_err(), EnvelopeError::TooShort(5));
        assert!(Envelope::from_secret(&"é".repeat(32)).is_ok());
    }

    #[test]
    fn debug_hides_key() {
        let env = Envelope::from_secret(SECRET).unwrap();
        let shown = format!("{env:?}");
        assert!(shown.contains("key_id") && !shown.contains("cipher"), "{shown}");
    }
}
