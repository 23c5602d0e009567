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
//!
//! A [`Keyring`] holds the current envelope and the ones of earlier
//! secrets, so the secret can be rotated: new values are sealed under the
//! current one, stored ones open under whichever key id their header names,
//! and a re-seal moves them to the current key.

use std::fmt;

use aes_gcm::{
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
    Aes256Gcm, Nonce,
};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretString};
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

/// Why a [`Keyring`] could not be built. Each message starts with the
/// setting at fault (`secret`, `previous-secrets[i]`, counted from 0), for
/// the caller to prefix with its block and file; none quotes a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("secret: {0}")]
    Current(EnvelopeError),
    #[error("previous-secrets[{index}]: {source}")]
    Previous { index: usize, source: EnvelopeError },
    /// Two entries derive the same key id: the same secret twice, which is
    /// a slip in the configuration (a rotation that forgot to change it).
    #[error("previous-secrets[{index}]: is the same secret as {same_as}; remove it")]
    Duplicate { index: usize, same_as: String },
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

/// The key id a ciphertext names in its header, when it is in the
/// envelope format at all.
fn sealed_key_id(sealed: &[u8]) -> Option<&[u8]> {
    (sealed.len() >= HEADER_LEN + 16 && sealed[0] == FORMAT_V1).then(|| &sealed[1..1 + KEY_ID_LEN])
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope").field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

/// The current envelope and those of earlier secrets, for rotating the
/// secret without making stored values unreadable.
pub struct Keyring {
    current: Envelope,
    previous: Vec<Envelope>,
}

impl Keyring {
    /// `current` seals every new value; values sealed under any of
    /// `previous` still open. Every secret obeys [`MIN_SECRET_LEN`], and no
    /// secret may appear twice.
    pub fn new(current: &str, previous: &[SecretString]) -> Result<Self, KeyringError> {
        let current = Envelope::from_secret(current).map_err(KeyringError::Current)?;
        let mut ring = Self { current, previous: Vec::with_capacity(previous.len()) };
        for (index, secret) in previous.iter().enumerate() {
            let envelope = Envelope::from_secret(secret.expose_secret())
                .map_err(|source| KeyringError::Previous { index, source })?;
            if envelope.key_id == ring.current.key_id {
                return Err(KeyringError::Duplicate { index, same_as: "secret".to_owned() });
            }
            if let Some(earlier) = ring.previous.iter().position(|e| e.key_id == envelope.key_id) {
                return Err(KeyringError::Duplicate { index, same_as: format!("previous-secrets[{earlier}]") });
            }
            ring.previous.push(envelope);
        }
        Ok(ring)
    }

    /// The key id new values are sealed under; safe to log.
    pub fn key_id(&self) -> String {
        self.current.key_id()
    }

    /// The key ids of the previous secrets, in configuration order.
    pub fn previous_key_ids(&self) -> Vec<String> {
        self.previous.iter().map(Envelope::key_id).collect()
    }

    /// Seals under the current secret.
    pub fn seal(&self, name: &SecretName, version: &str, value: &SecretValue) -> Result<Vec<u8>, StoreError> {
        self.current.seal(name, version, value)
    }

    /// Opens a value sealed under the current or any previous secret. A
    /// key id that none of them has is `Corrupt`, naming the key id.
    pub fn open(&self, name: &SecretName, version: &str, sealed: &[u8]) -> Result<SecretValue, StoreError> {
        self.envelope_for(name, version, sealed)?.open(name, version, sealed)
    }

    /// Whether `sealed` is already under the current secret.
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed_key_id(sealed) == Some(&self.current.key_id[..])
    }

    /// The key id `sealed` names when none of the ring's secrets has it
    /// (`None` when one has, or when `sealed` is not an envelope at all).
    pub fn unknown_key_id(&self, sealed: &[u8]) -> Option<String> {
        let key_id = sealed_key_id(sealed)?;
        let known = std::iter::once(&self.current).chain(&self.previous).any(|e| e.key_id == key_id);
        (!known).then(|| hex(key_id))
    }

    /// The error for a start that finds a stored value under `key_id`,
    /// which none of the ring's secrets has.
    pub fn unknown_key_error(&self, key_id: &str) -> StoreError {
        StoreError::new(
            crate::ErrorKind::InvalidName,
            format!(
                "secret: stored values are sealed under key id {key_id}, which neither `secret` (key id {}) nor \
                 any of the {} `previous-secrets` has: a wrong secret, or a previous secret removed before \
                 `secretd rekey` finished",
                self.current.key_id(),
                self.previous.len()
            ),
        )
    }

    /// `sealed` opened and sealed again under the current secret, or `None`
    /// when it already is under it. The result differs from `sealed` (a new
    /// nonce), which is what a compare-and-set on the old bytes relies on.
    pub fn reseal(&self, name: &SecretName, version: &str, sealed: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if self.is_current(sealed) {
            return Ok(None);
        }
        let value = self.open(name, version, sealed)?;
        self.current.seal(name, version, &value).map(Some)
    }

    fn envelope_for(&self, name: &SecretName, version: &str, sealed: &[u8]) -> Result<&Envelope, StoreError> {
        let Some(key_id) = sealed_key_id(sealed) else {
            return Err(StoreError::corrupt(format!(
                "secret {name} version {version}: stored ciphertext is not in secretd's envelope format"
            )));
        };
        std::iter::once(&self.current).chain(&self.previous).find(|e| e.key_id == key_id).ok_or_else(|| {
            StoreError::corrupt(format!(
                "secret {name} version {version} was encrypted under key id {}, which neither `secret` \
                 (key id {}) nor any of the {} `previous-secrets` has; the secret it was written with may be \
                 missing from previous-secrets",
                hex(key_id),
                self.current.key_id(),
                self.previous.len()
            ))
        })
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_id", &self.key_id())
            .field("previous_key_ids", &self.previous_key_ids())
            .finish()
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

    const OLD: &str = "the-old-secret-of-32-characters!!";
    const OLDER: &str = "an-older-secret-of-32-characters!";

    fn previous(secrets: &[&str]) -> Vec<SecretString> {
        secrets.iter().map(|s| SecretString::from(*s)).collect()
    }

    #[test]
    fn keyring_seals_under_current_and_opens_every_previous() {
        let old = Envelope::from_secret(OLD).unwrap();
        let older = Envelope::from_secret(OLDER).unwrap();
        let value = SecretValue::from_slice(b"v");
        let from_old = old.seal(&name("k"), "1", &value).unwrap();
        let from_older = older.seal(&name("k"), "2", &value).unwrap();
        let ring = Keyring::new(SECRET, &previous(&[OLD, OLDER])).unwrap();
        assert_eq!(ring.open(&name("k"), "1", &from_old).unwrap(), value);
        assert_eq!(ring.open(&name("k"), "2", &from_older).unwrap(), value);
        let fresh = ring.seal(&name("k"), "3", &value).unwrap();
        assert!(ring.is_current(&fresh) && !ring.is_current(&from_old));
        assert_eq!(Envelope::from_secret(SECRET).unwrap().open(&name("k"), "3", &fresh).unwrap(), value);
        assert_eq!(ring.previous_key_ids(), vec![old.key_id(), older.key_id()]);
        // Binding to the name holds under a previous key too.
        assert_eq!(ring.open(&name("other"), "1", &from_old).unwrap_err().kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn reseal_moves_to_current_and_leaves_current_alone() {
        let old = Envelope::from_secret(OLD).unwrap();
        let value = SecretValue::from_slice(b"reseal me");
        let sealed = old.seal(&name("k"), "4", &value).unwrap();
        let ring = Keyring::new(SECRET, &previous(&[OLD])).unwrap();
        let resealed = ring.reseal(&name("k"), "4", &sealed).unwrap().expect("under a previous key");
        assert_ne!(resealed, sealed);
        assert!(ring.is_current(&resealed));
        let current_only = Keyring::new(SECRET, &[]).unwrap();
        assert_eq!(current_only.open(&name("k"), "4", &resealed).unwrap(), value);
        assert_eq!(ring.reseal(&name("k"), "4", &resealed).unwrap(), None);
        // Resealing keeps the binding: the version is part of it.
        assert_eq!(ring.reseal(&name("k"), "5", &sealed).unwrap_err().kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn unknown_key_id_names_it_and_hints_at_previous_secrets() {
        let old = Envelope::from_secret(OLD).unwrap();
        let sealed = old.seal(&name("k"), "1", &SecretValue::from_slice(b"v")).unwrap();
        let ring = Keyring::new(SECRET, &previous(&[OLDER])).unwrap();
        let err = ring.open(&name("k"), "1", &sealed).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains(&old.key_id()), "{}", err.message());
        assert!(err.message().contains("previous-secrets"), "{}", err.message());
        assert!(!err.message().contains(OLD) && !err.message().contains(SECRET));
        assert_eq!(ring.reseal(&name("k"), "1", &sealed).unwrap_err().kind(), ErrorKind::Corrupt);
        assert_eq!(ring.open(&name("k"), "1", b"garbage").unwrap_err().kind(), ErrorKind::Corrupt);
        assert_eq!(ring.unknown_key_id(&sealed), Some(old.key_id()));
        assert_eq!(ring.unknown_key_id(b"garbage"), None);
        let known = ring.seal(&name("k"), "1", &SecretValue::from_slice(b"v")).unwrap();
        assert_eq!(ring.unknown_key_id(&known), None);
        let message = ring.unknown_key_error(&old.key_id()).to_string();
        assert!(message.starts_with("secret: stored values are sealed under key id"), "{message}");
        assert!(message.contains(&old.key_id()) && message.contains(&ring.key_id()), "{message}");
    }

    #[test]
    fn keyring_refuses_short_and_duplicate_secrets_naming_the_entry() {
        assert_eq!(Keyring::new("short", &[]).unwrap_err(), KeyringError::Current(EnvelopeError::TooShort(5)));
        let err = Keyring::new(SECRET, &previous(&[OLD, "tiny"])).unwrap_err();
        assert_eq!(err, KeyringError::Previous { index: 1, source: EnvelopeError::TooShort(4) });
        assert!(err.to_string().starts_with("previous-secrets[1]: must be at least 32"), "{err}");
        let err = Keyring::new(SECRET, &previous(&[SECRET])).unwrap_err();
        assert_eq!(err.to_string(), "previous-secrets[0]: is the same secret as secret; remove it");
        let err = Keyring::new(SECRET, &previous(&[OLD, OLDER, OLD])).unwrap_err();
        assert_eq!(err.to_string(), "previous-secrets[2]: is the same secret as previous-secrets[0]; remove it");
        assert!(!err.to_string().contains(OLD));
    }

    #[test]
    fn keyring_debug_shows_key_ids_only() {
        let ring = Keyring::new(SECRET, &previous(&[OLD])).unwrap();
        let shown = format!("{ring:?}");
        assert!(shown.contains(&ring.key_id()) && !shown.contains(OLD) && !shown.contains(SECRET), "{shown}");
    }

    #[test]
    fn debug_hides_key() {
        let env = Envelope::from_secret(SECRET).unwrap();
        let shown = format!("{env:?}");
        assert!(shown.contains("key_id") && !shown.contains("cipher"), "{shown}");
    }
}
