//! Tag scoping: one secret manager serving several environments.
//!
//! A backend configured with `tags: {application: prod}` must only see and
//! write secrets carrying those tags. The rule is the same for every
//! backend, so it lives here once, as a wrapper that the daemon puts around
//! each store it builds. Backends still receive the scope's tags in their
//! list filter, so those that can filter on the server (AWS, GCP) do; the
//! wrapper re-checks every answer on the client, so scoping holds even
//! against a server that filters loosely.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    Capabilities, ErrorKind, Namespace, Page, PageRequest, ScanSelection, Secret, SecretName, SecretStore, SecretValue,
    StoreError, Tags, Tenant, Version,
};

/// Which secrets a store may see and write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagScope {
    /// `tags`: stamped on every write and required on every read, list and
    /// delete.
    pub tags: Tags,
    /// `filter-on-tags`: required on reads, lists and deletes, not stamped.
    pub filter_on_tags: Tags,
    /// `excluded-tags`: a secret carrying any of these is invisible.
    pub excluded_tags: Tags,
}

impl TagScope {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.filter_on_tags.is_empty() && self.excluded_tags.is_empty()
    }

    /// Whether a secret with these tags is inside the scope.
    pub fn admits(&self, tags: &Tags) -> bool {
        tags.contains_all(&self.tags)
            && tags.contains_all(&self.filter_on_tags)
            && !tags.contains_any(&self.excluded_tags)
    }

    /// The tags a put writes: the caller's plus the scope's. A caller tag
    /// that contradicts the scope is refused rather than silently
    /// overwritten, and so is a write that the scope itself would hide.
    fn stamp(&self, caller: &Tags) -> Result<Tags, StoreError> {
        let mut merged = caller.clone();
        for (k, v) in self.tags.iter() {
            if let Some(existing) = merged.insert(k, v) {
                if existing != v {
                    return Err(StoreError::new(
                        ErrorKind::InvalidName,
                        format!("tag {k:?} is fixed to {v:?} by this backend's tag scope"),
                    )
                    .for_callers());
                }
            }
        }
        if merged.contains_any(&self.excluded_tags) {
            return Err(StoreError::new(
                ErrorKind::InvalidName,
                "the secret's tags match this backend's excluded-tags, so it could never be read back",
            )
            .for_callers());
        }
        Ok(merged)
    }

    /// The filter to pass to the backend: the caller's plus the scope's
    /// required tags, or `None` when the two contradict (nothing can match).
    fn list_filter(&self, caller: &Tags) -> Option<Tags> {
        let mut merged = caller.clone();
        for (k, v) in self.tags.iter().chain(self.filter_on_tags.iter()) {
            if let Some(existing) = merged.insert(k, v) {
                if existing != v {
                    return None;
                }
            }
        }
        Some(merged)
    }
}

/// A store seen through a [`TagScope`]. Secrets outside the scope behave
/// exactly as if they did not exist: `NotFound` on get and delete, absent
/// from lists.
pub struct ScopedStore {
    inner: Arc<dyn SecretStore>,
    scope: TagScope,
}

impl ScopedStore {
    pub fn new(inner: Arc<dyn SecretStore>, scope: TagScope) -> Self {
        Self { inner, scope }
    }

    /// Wraps `inner` only when the scope restricts anything.
    pub fn wrap(inner: Arc<dyn SecretStore>, scope: TagScope) -> Arc<dyn SecretStore> {
        if scope.is_empty() {
            inner
        } else {
            Arc::new(Self::new(inner, scope))
        }
    }
}

#[async_trait]
impl SecretStore for ScopedStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        let secret = self.inner.get(name, version).await?;
        if self.scope.admits(&secret.metadata.tags) {
            Ok(secret)
        } else {
            Err(StoreError::not_found(name))
        }
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        description: Option<&str>,
    ) -> Result<Version, StoreError> {
        let stamped = self.scope.stamp(tags)?;
        // A secret of the same name that belongs to another scope (another
        // environment sharing this backend) must not be taken over: a new
        // version would hide it from its own environment.
        match self.inner.get(name, None).await {
            Ok(existing) if !self.scope.admits(&existing.metadata.tags) => {
                return Err(StoreError::new(
                    ErrorKind::AlreadyExists,
                    format!("secret {name} exists in the backend outside this backend's tag scope"),
                )
                .for_callers());
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.inner.put(name, value, &stamped, description).await
    }

    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        let existing = self.inner.get(name, None).await?;
        if !self.scope.admits(&existing.metadata.tags) {
            return Err(StoreError::not_found(name));
        }
        self.inner.delete(name).await
    }

    async fn list(
        &self,
        tenant: &Tenant,
        namespace: &Namespace,
        filter: &Tags,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        let Some(filter) = self.scope.list_filter(filter) else {
            return Ok(Page::default());
        };
        let mut page = self.inner.list(tenant, namespace, &filter, page).await?;
        page.items.retain(|m| self.scope.admits(&m.tags) && m.tags.contains_all(&filter));
        Ok(page)
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }

    /// As a listing: out-of-scope secrets are left out, so a page may hold
    /// fewer items than asked (none, even) and still have a next one.
    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        let Some(required) = self.scope.list_filter(&Tags::new()) else {
            return Ok(Page::default());
        };
        let mut page = self.inner.scan(selection, page).await?;
        page.items.retain(|m| self.scope.admits(&m.tags) && m.tags.contains_all(&required));
        Ok(page)
    }

    /// Only the versions a pinned `get` through the scope answers: all of
    /// an in-scope secret's where tags belong to the secret, and those
    /// written with in-scope tags where each version keeps its own.
    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        self.get(name, None).await?;
        let versions = self.inner.versions(name).await?;
        if !self.inner.capabilities().tags_per_version {
            return Ok(versions);
        }
        let mut admitted = Vec::with_capacity(versions.len());
        for version in versions {
            match self.inner.get(name, Some(&version)).await {
                Ok(secret) if self.scope.admits(&secret.metadata.tags) => admitted.push(version),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(admitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().copied().collect()
    }

    #[test]
    fn admits() {
        let scope = TagScope {
            tags: tags(&[("application", "prod")]),
            filter_on_tags: tags(&[("team", "data")]),
            excluded_tags: tags(&[("retired", "true")]),
        };
        assert!(scope.admits(&tags(&[("application", "prod"), ("team", "data"), ("x", "y")])));
        assert!(!scope.admits(&tags(&[("application", "prod")])));
        assert!(!scope.admits(&tags(&[("application", "dev"), ("team", "data")])));
        assert!(!scope.admits(&tags(&[("application", "prod"), ("team", "data"), ("retired", "true")])));
    }

    #[test]
    fn stamp_refuses_contradictions() {
        let scope = TagScope { tags: tags(&[("application", "prod")]), ..Default::default() };
        assert_eq!(scope.stamp(&tags(&[("x", "1")])).unwrap(), tags(&[("application", "prod"), ("x", "1")]));
        assert_eq!(scope.stamp(&tags(&[("application", "dev")])).unwrap_err().kind(), ErrorKind::InvalidName);
        let scope = TagScope { excluded_tags: tags(&[("retired", "true")]), ..Default::default() };
        assert!(scope.stamp(&tags(&[("retired", "true")])).is_err());
    }

    #[test]
    fn list_filter_merges_or_gives_up() {
        let scope = TagScope { tags: tags(&[("application", "prod")]), ..Default::default() };
        assert_eq!(scope.list_filter(&tags(&[("x", "1")])).unwrap(), tags(&[("application", "prod"), ("x", "1")]));
        assert!(scope.list_filter(&tags(&[("application", "dev")])).is_none());
    }
}
