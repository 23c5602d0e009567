//! The reference store: everything in one process's memory.
//!
//! It defines the expected behaviour of the [`SecretStore`] contract in the
//! fewest lines, runs the conformance suite in a plain `cargo test`, and
//! backs broker tests that need no server. It keeps nothing across restarts,
//! so the daemon never uses it for real secrets.

use std::{collections::BTreeMap, time::SystemTime};

use async_trait::async_trait;
use secretd_core::{
    Capabilities, Namespace, Page, PageRequest, ScanSelection, Secret, SecretMetadata, SecretName, SecretStore,
    SecretValue, StoreError, Tags, Tenant, Version,
};
use tokio::sync::RwLock;

struct StoredVersion {
    value: SecretValue,
    tags: Tags,
    written_at: SystemTime,
}

struct Entry {
    /// Version `n` is at index `n - 1`; versions only grow.
    versions: Vec<StoredVersion>,
}

impl Entry {
    fn metadata(&self, name: &SecretName, index: usize) -> SecretMetadata {
        let v = &self.versions[index];
        SecretMetadata {
            name: name.clone(),
            version: Version((index + 1).to_string()),
            tags: v.tags.clone(),
            created_at: self.versions[0].written_at,
            updated_at: v.written_at,
        }
    }
}

/// An in-memory [`SecretStore`] with versions and tags.
#[derive(Default)]
pub struct MemoryStore {
    // A BTreeMap keeps listings ordered by (tenant, namespace, key).
    secrets: RwLock<BTreeMap<SecretName, Entry>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::FULL
    }

    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        let secrets = self.secrets.read().await;
        let entry = secrets.get(name).ok_or_else(|| StoreError::not_found(name))?;
        let index = match version {
            None => entry.versions.len() - 1,
            // Only the exact spelling this store issued names a version.
            Some(v) => match v.as_str().parse::<usize>() {
                Ok(n) if n >= 1 && n <= entry.versions.len() && n.to_string() == v.as_str() => n - 1,
                _ => return Err(StoreError::not_found(format!("{name} version {v}"))),
            },
        };
        Ok(Secret { metadata: entry.metadata(name, index), value: entry.versions[index].value.clone() })
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        _description: Option<&str>,
    ) -> Result<Version, StoreError> {
        let mut secrets = self.secrets.write().await;
        let entry = secrets.entry(name.clone()).or_insert_with(|| Entry { versions: Vec::new() });
        entry.versions.push(StoredVersion { value: value.clone(), tags: tags.clone(), written_at: SystemTime::now() });
        Ok(Version(entry.versions.len().to_string()))
    }

    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        match self.secrets.write().await.remove(name) {
            Some(_) => Ok(()),
            None => Err(StoreError::not_found(name)),
        }
    }

    async fn list(
        &self,
        tenant: &Tenant,
        namespace: &Namespace,
        filter: &Tags,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        let size = page.size.max(1);
        let secrets = self.secrets.read().await;
        // The page token is the last key of the previous page.
        let after = match page.token.as_deref() {
            None => None,
            Some(token) => match secretd_core::Key::parse(token) {
                Ok(_) => Some(token),
                Err(_) => return Err(StoreError::new(secretd_core::ErrorKind::InvalidName, "invalid page token")),
            },
        };
        let mut matching = secrets
            .iter()
            .filter(|(n, _)| &n.tenant == tenant && &n.namespace == namespace)
            .filter(|(n, _)| after.is_none_or(|a| n.key.as_str() > a))
            .filter(|(_, e)| e.versions.last().is_some_and(|v| v.tags.contains_all(filter)))
            .map(|(n, e)| e.metadata(n, e.versions.len() - 1));
        let items: Vec<SecretMetadata> = matching.by_ref().take(size).collect();
        let next_token = match (items.last(), matching.next()) {
            (Some(last), Some(_)) => Some(last.name.key.as_str().to_owned()),
            _ => None,
        };
        Ok(Page { items, next_token })
    }

    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        use std::ops::Bound;
        let size = page.size.max(1);
        let after = page.token.as_deref().map(secretd_core::name_after_token).transpose()?;
        let secrets = self.secrets.read().await;
        let start = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
        let mut matching = secrets
            .range((start, Bound::Unbounded))
            .filter(|(n, _)| selection.admits(n))
            .map(|(n, e)| e.metadata(n, e.versions.len() - 1));
        let items: Vec<SecretMetadata> = matching.by_ref().take(size).collect();
        let next_token = match (items.last(), matching.next()) {
            (Some(last), Some(_)) => Some(secretd_core::name_page_token(&last.name)),
            _ => None,
        };
        Ok(Page { items, next_token })
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        let secrets = self.secrets.read().await;
        let entry = secrets.get(name).ok_or_else(|| StoreError::not_found(name))?;
        Ok((1..=entry.versions.len()).map(|n| Version(n.to_string())).collect())
    }
}
