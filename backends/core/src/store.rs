//! The `SecretStore` trait: what a backend must do.

use std::{fmt, time::SystemTime};

use async_trait::async_trait;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use crate::{Key, Namespace, SecretName, SecretValue, StoreError, Tags, Tenant};

/// Which secrets a [`SecretStore::scan`] covers: a tenant or all of them,
/// and a namespace with everything below it or all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanSelection {
    pub tenant: Option<Tenant>,
    /// This namespace and its descendants (`a.b` covers `a.b` and `a.b.c`,
    /// not `a.bc`).
    pub namespace: Option<Namespace>,
}

impl ScanSelection {
    /// Every secret of the store.
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn admits(&self, name: &SecretName) -> bool {
        self.tenant.as_ref().is_none_or(|t| &name.tenant == t)
            && self.namespace.as_ref().is_none_or(|ns| name.namespace.is_within(ns))
    }

    /// Whether some namespace within `namespace` can be selected: stores
    /// that walk namespaces as folders skip the others without listing them.
    pub fn admits_namespace(&self, namespace: &Namespace) -> bool {
        self.namespace.as_ref().is_none_or(|ns| namespace.is_within(ns))
    }
}

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

impl Page {
    /// The page of `items` (in page order, read one past `size` so that an
    /// extra item says another page follows), with the token `token` makes
    /// of the page's last item.
    pub fn cut(mut items: Vec<SecretMetadata>, size: usize, token: impl Fn(&SecretMetadata) -> String) -> Page {
        let size = size.max(1);
        let next_token = (items.len() > size).then(|| token(&items[size - 1]));
        items.truncate(size);
        Page { items, next_token }
    }
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

    /// Enumerates the latest metadata of every secret of the selection,
    /// across tenants and namespaces, ordered by name (tenant, namespace,
    /// key, each compared byte by byte), a page at a time. A secret is on
    /// exactly one page of a scan, however the pages are sized; one written
    /// or deleted during the scan may or may not be. This is how a whole
    /// store is copied (`secretd migrate`), so it must reach everything
    /// `get` can read.
    ///
    /// Every backend implements it; the default only serves stores that
    /// cannot enumerate, and every wrapper must forward it.
    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        let _ = (selection, page);
        Err(StoreError::unsupported("this store cannot enumerate its secrets"))
    }

    /// The versions of a secret that `get` can still read pinned, oldest
    /// first. `NotFound` for a missing secret; `Unsupported` where the
    /// store keeps no versions (only the latest can be read then).
    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        let _ = name;
        Err(StoreError::unsupported("this store keeps no versions"))
    }
}

/// The page token of a [`SecretStore::scan`] that pages by name: the last
/// name of the previous page, base64url. Only [`name_after_token`] reads it.
pub fn name_page_token(last: &SecretName) -> String {
    URL_SAFE_NO_PAD.encode(last.to_string())
}

/// The name a [`name_page_token`] names; any other token is `InvalidName`.
pub fn name_after_token(token: &str) -> Result<SecretName, StoreError> {
    let bad = || StoreError::invalid_name("the scan token is not one this store issued").for_callers();
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    // Tenants and namespaces hold no '/', so the first two split the name.
    let mut parts = text.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(tenant), Some(namespace), Some(key)) if !tenant.is_empty() => {
            SecretName::parse(tenant, namespace, key).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// Cuts one page out of a whole, already gathered scan: for stores whose
/// server lists names without an order secretd can page by, or without the
/// metadata. `names` need not be sorted; `describe` gives a candidate's
/// latest metadata, or `None` when it vanished or is not one to list. It is
/// called only for the candidates the page needs, `concurrency` at a time;
/// the ones it drops pull in the next candidates.
pub async fn page_of_names<F, Fut>(
    mut names: Vec<SecretName>,
    page: &PageRequest,
    concurrency: usize,
    describe: F,
) -> Result<Page, StoreError>
where
    F: Fn(SecretName) -> Fut,
    Fut: std::future::Future<Output = Result<Option<SecretMetadata>, StoreError>>,
{
    use futures::{stream, StreamExt, TryStreamExt};
    let after = page.token.as_deref().map(name_after_token).transpose()?;
    let size = page.size.max(1);
    names.sort();
    names.dedup();
    if let Some(after) = &after {
        names.retain(|n| n > after);
    }
    let mut items = Vec::with_capacity(size.min(names.len()));
    let mut consumed = 0;
    while items.len() < size && consumed < names.len() {
        let batch = &names[consumed..(consumed + size - items.len()).min(names.len())];
        let described: Vec<Option<SecretMetadata>> =
            stream::iter(batch.iter().cloned().map(&describe)).buffered(concurrency.max(1)).try_collect().await?;
        consumed += batch.len();
        items.extend(described.into_iter().flatten());
    }
    let next_token = (consumed < names.len()).then(|| name_page_token(&names[consumed - 1]));
    Ok(Page { items, next_token })
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
    fn name_page_tokens_round_trip_and_garbage_is_refused() {
        let name = SecretName::parse("t-1", "a.b", "c/d.e").unwrap();
        assert_eq!(name_after_token(&name_page_token(&name)).unwrap(), name);
        let forged = [URL_SAFE_NO_PAD.encode("a/b"), URL_SAFE_NO_PAD.encode("/a/b"), URL_SAFE_NO_PAD.encode("A/b/c")];
        for garbage in ["not a token!", "", &forged[0], &forged[1], &forged[2]] {
            assert_eq!(name_after_token(garbage).unwrap_err().kind(), crate::ErrorKind::InvalidName, "{garbage:?}");
        }
    }

    #[test]
    fn selection_covers_a_namespace_and_below() {
        let selection = ScanSelection {
            tenant: Some(Tenant::parse("t").unwrap()),
            namespace: Some(Namespace::parse("a.b").unwrap()),
        };
        assert!(selection.admits(&SecretName::parse("t", "a.b", "k").unwrap()));
        assert!(selection.admits(&SecretName::parse("t", "a.b.c", "k").unwrap()));
        assert!(!selection.admits(&SecretName::parse("t", "a.bc", "k").unwrap()));
        assert!(!selection.admits(&SecretName::parse("t", "a", "k").unwrap()));
        assert!(!selection.admits(&SecretName::parse("u", "a.b", "k").unwrap()));
        assert!(ScanSelection::everything().admits(&SecretName::parse("u", "z", "k").unwrap()));
    }

    #[tokio::test]
    async fn pages_of_names_cover_each_name_once() {
        let names: Vec<SecretName> =
            ["b", "a", "c", "d", "e"].iter().map(|k| SecretName::parse("t", "n", k).unwrap()).collect();
        let describe = |name: SecretName| async move {
            // "c" vanished between the listing and its metadata read.
            Ok((name.key.as_str() != "c").then(|| SecretMetadata {
                name,
                version: Version("1".into()),
                tags: Tags::new(),
                created_at: std::time::UNIX_EPOCH,
                updated_at: std::time::UNIX_EPOCH,
            }))
        };
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let page = page_of_names(names.clone(), &PageRequest { size: 2, token }, 2, describe).await.unwrap();
            assert!(page.items.len() <= 2);
            seen.extend(page.items.into_iter().map(|m| m.name.key.as_str().to_owned()));
            match page.next_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["a", "b", "d", "e"]);
    }

    #[test]
    fn key_page_tokens_round_trip_and_garbage_is_refused() {
        let key = Key::parse("a/b.c").unwrap();
        assert_eq!(key_after_token(&key_page_token(&key)).unwrap(), key);
        for garbage in ["not a token!", "\u{0}", "../../etc", ""] {
            assert_eq!(key_after_token(garbage).unwrap_err().kind(), crate::ErrorKind::InvalidName, "{garbage:?}");
        }
    }
}
