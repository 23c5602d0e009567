//! API tokens: how they look, how they are made, and how they are kept.
//!
//! A token is `sdt_` followed by 32 random bytes in base64url (256 bits).
//! secretd shows it once, at creation, and keeps only its SHA-256: a token
//! is random and long, so a fast hash is as safe as a slow one, and the
//! state store leaking would not reveal usable tokens.
//!
//! Lookups go through a map keyed by the hash. That lookup cannot leak the
//! token through timing: a caller can choose its token but not its hash's
//! bytes. The final comparison is constant-time all the same, so the code
//! holds up if the map is ever replaced by something that compares raw
//! bytes.

use std::fmt;

use base64::Engine;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const TOKEN_PREFIX: &str = "sdt_";
const TOKEN_BYTES: usize = 32;

/// A fresh token. Show it to the operator once; store only [`TokenHash::of`].
pub fn generate() -> SecretString {
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    SecretString::from(format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// Whether `raw` has the shape of a secretd token (not whether it is valid).
pub fn looks_like_token(raw: &str) -> bool {
    raw.len() == TOKEN_PREFIX.len() + 43
        && raw.starts_with(TOKEN_PREFIX)
        && raw[TOKEN_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The SHA-256 of a token, as stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Parses the stored form: 64 hex digits, optionally prefixed `sha256:`.
    pub fn parse(hex: &str) -> Option<Self> {
        let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// Hashes are not secrets, but they are not for logs either.
impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn tokens_are_random_well_formed_and_hash_round_trips() {
        let a = generate();
        let b = generate();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(looks_like_token(a.expose_secret()), "{}", a.expose_secret().len());
        let hash = TokenHash::of(a.expose_secret());
        assert_eq!(TokenHash::parse(&hash.to_hex()), Some(hash));
        assert_eq!(TokenHash::parse(&format!("sha256:{}", hash.to_hex())), Some(hash));
        assert!(hash.ct_eq(&TokenHash::of(a.expose_secret())));
        assert!(!hash.ct_eq(&TokenHash::of(b.expose_secret())));
        assert_eq!(TokenHash::parse("zz"), None);
        assert_eq!(TokenHash::parse(&"g".repeat(64)), None);
        assert!(!looks_like_token("sdt_short"));
        assert!(!format!("{hash:?}").contains(&hash.to_hex()[..8]));
    }
}
