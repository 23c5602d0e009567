//! The `SecretStore` trait: what a backend must do.

use std::{fmt, time::SystemTime};

use async_trait::async_trait;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use crate::{Key, Namespace, SecretName, SecretValue, StoreError, Tags, Tenant};

/// A version id, opaque to the broker: `"3"` in SQL, a UUID in AWS.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(pub String);

impl Version {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a store can do, so the broker and the conformance suite know which
/// behaviour to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Every put keeps the previous versions readable by id.
    pub versions: bool,
    /// Tags are stored and can be filtered on.
    pub tags: bool,
    /// Each version keeps the tags it was written with (SQL, Key Vault).
    /// Without it, tags belong to the secret and every version carries the
    /// secret's current tags, which is how AWS, Google and Vault's
    /// `custom_metadata` work: a tag scope then admits or hides a secret
    /// with all its versions.
    pub tags_per_version: bool,
    /// The store can list a namespace.
    pub list: bool,
    /// The store refuses writes.
    pub read_only: bool,
}

impl Capabilities {
    pub const FULL: Capabilities =
        Capabilities { versions: true, tags: true, tags_per_version: true, list: true, read_only: false };
}

/// Everything about a secret except its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMetadata {
    pub name: SecretName,
    pub version: Version,
    pub tags: Tags,
    /// When the secret was first created.
    pub created_at: SystemTime,
    /// When the version described here was written.
    pub updated_at: SystemTime,
}

/// A secret with its value. `Debug` is safe: the value prints redacted.
#[derive(Debug, Clone)]
pub struct Secret {
    pub metadata: SecretMetadata,
    pub value: SecretValue,
}

/// Which page of a listing to return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many items; at least 1.
    pub size: usize,
    /// The `next_token` of the previous page. Opaque to everybody but the
    /// store that made it.
    pub token: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<SecretMetadata>,
    /// `None` on the last page.
    pub next_token: Option<String>,
}

/// A place secrets live. One implementation per backend; the broker adds
/// authentication, policy and caching in front, so a store only speaks to
/// its server and maps names, tags and errors.
///
/// Names arrive validated. A store whose server cannot hold a valid name
/// (too long for its alphabet, say) answers `InvalidName`; it never maps two
/// names onto one backend name.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    fn capabilities(&self) -> Capabilities;

    /// Reads the latest version, or the pinned one. A missing secret or
    /// version is `NotFound`; a store without versions answers a pinned read
    /// with `Unsupported`.
    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError>;

    /// Writes a new version and returns its id. A write is all or nothing.
    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        description: Option<&str>,
    ) -> Result<Version, StoreError>;

    /// Deletes the secret with all its versions; `NotFound` if it is missing.
    async fn delete(&self, name: &SecretName) -> Result<(), StoreError>;

    /// Lists the latest metadata of the secrets of exactly one namespace
    /// (not its children) that carry every tag of `filter`, ordered by key.
    async fn list(
        &self,
        tenant: &Tenant,
        namespace: &Namespace,
        filter: &Tags,
        page: &PageRequest,
    ) -> Result<Page, StoreError>;

    /// Answers `Ok` when the backend can serve requests.
    async fn health(&self) -> Result<(), StoreError>;
}

/// The page token of stores that page by key: the last key of the previous
/// page, base64url. Opaque to callers; only [`key_after_token`] reads it.
pub fn key_page_token(last_key: &Key) -> String {
    URL_SAFE_NO_PAD.encode(last_key.as_str())
}

/// The key a [`key_page_token`] names. A token this store could not have
/// issued is `InvalidName`, never a listing from some other point.
pub fn key_after_token(token: &str) -> Result<Key, StoreError> {
    let bad = || StoreError::invalid_name("the page token is not one this store issued").for_callers();
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    Key::parse(&String::from_utf8(bytes).map_err(|_| bad())?).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_page_tokens_round_trip_and_garbage_is_refused() {
        let key = Key::parse("a/b.c").unwrap();
        assert_eq!(key_after_token(&key_page_token(&key)).unwrap(), key);
        for garbage in ["not a token!", "\u{0}", "../../etc", ""] {
            assert_eq!(key_after_token(garbage).unwrap_err().kind(), crate::ErrorKind::InvalidName, "{garbage:?}");
        }
    }
}
