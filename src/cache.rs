//! The secret cache: a bounded moka cache with expire-after-write, where
//! many concurrent misses for one secret make one backend call.
//!
//! Entries are keyed by what the caller asked for (tenant, requested
//! namespace, key, pinned version), and hold the secret wherever namespace
//! inheritance found it. A write to `company/db` must therefore also drop
//! the entries of `company.team/db`, which may have resolved to it: writes
//! invalidate every entry of the same tenant and key whose requested
//! namespace is the written one or below it.
//!
//! One race needs care: a miss that read the old value from the backend,
//! then lost the CPU while a write landed and invalidated, would insert the
//! old value after the invalidation. Writes therefore bump `writes_started`
//! before they touch the backend; a loader that sees the counter moved
//! during its load drops the entry it just inserted (its caller still gets
//! the value it read, which was current when the read began).
//!
//! The cache never decides who may read: the broker authorizes every call
//! before it asks the cache, hits included.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use moka::future::Cache;
use secretd_core::{Secret, SecretName, StoreError, Version};

use crate::config::CacheConfig;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    requested: SecretName,
    version: Option<Version>,
}

/// Whether an answer came from the cache or from a backend call made for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cache,
    Backend,
}

pub struct SecretCache {
    entries: Option<Cache<CacheKey, Arc<Secret>>>,
    writes_started: AtomicU64,
}

impl SecretCache {
    pub fn new(config: &CacheConfig) -> Self {
        let entries = config.enabled.then(|| {
            Cache::builder()
                .max_capacity(config.maximum_size)
                .time_to_live(config.expire_after_write)
                .support_invalidation_closures()
                .eviction_listener(|_, _, cause| {
                    // Size and age; invalidations after writes are not
                    // evictions.
                    if matches!(
                        cause,
                        moka::notification::RemovalCause::Size | moka::notification::RemovalCause::Expired
                    ) {
                        crate::metrics::get().cache_evictions.inc();
                    }
                })
                .build()
        });
        Self { entries, writes_started: AtomicU64::new(0) }
    }

    pub fn disabled() -> Self {
        Self::new(&CacheConfig { enabled: false, maximum_size: 0, expire_after_write: Duration::ZERO })
    }

    /// Returns the cached secret for this request, or runs `load` once for
    /// all concurrent callers of the same request and caches its success.
    /// Errors are not cached.
    pub async fn get_or_load<F>(
        &self,
        requested: &SecretName,
        version: Option<&Version>,
        load: F,
    ) -> Result<(Arc<Secret>, Origin), Arc<StoreError>>
    where
        F: std::future::Future<Output = Result<Secret, StoreError>>,
    {
        let Some(entries) = &self.entries else {
            return load.await.map(|s| (Arc::new(s), Origin::Backend)).map_err(Arc::new);
        };
        let key = CacheKey { requested: requested.clone(), version: version.cloned() };
        let metrics = crate::metrics::get();
        // A hit is one lookup; only a miss goes through the single-flight
        // path, where a caller that did not load joined another's load.
        if let Some(secret) = entries.get(&key).await {
            metrics.cache_hits.inc();
            return Ok((secret, Origin::Cache));
        }
        let loaded_here = AtomicBool::new(false);
        let started = self.writes_started.load(Ordering::SeqCst);
        let secret = entries
            .try_get_with_by_ref(&key, async {
                loaded_here.store(true, Ordering::Relaxed);
                load.await.map(Arc::new)
            })
            .await?;
        if !loaded_here.load(Ordering::Relaxed) {
            metrics.single_flight_joins.inc();
            return Ok((secret, Origin::Cache));
        }
        metrics.cache_misses.inc();
        if self.writes_started.load(Ordering::SeqCst) != started {
            entries.invalidate(&key).await;
        }
        Ok((secret, Origin::Backend))
    }

    /// Call before a write reaches the backend.
    pub fn write_started(&self) {
        self.writes_started.fetch_add(1, Ordering::SeqCst);
    }

    /// Call after a write (successful or not: a failed call may still have
    /// landed). Drops every entry that may have resolved to `written`.
    pub fn invalidate(&self, written: &SecretName) {
        let Some(entries) = &self.entries else { return };
        let written = written.clone();
        let registered = entries.invalidate_entries_if(move |k, _| {
            k.requested.tenant == written.tenant
                && k.requested.key == written.key
                && k.requested.namespace.is_within(&written.namespace)
        });
        if registered.is_err() {
            // Only possible if the builder lost support_invalidation_closures;
            // correctness beats hit rate.
            entries.invalidate_all();
        }
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.as_ref().map_or(0, |c| c.entry_count())
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use secretd_core::{testing::CountingStore, SecretStore, SecretValue, Tags};
    use secretd_memory::MemoryStore;

    use super::*;

    fn name(ns: &str, key: &str) -> SecretName {
        SecretName::parse("main", ns, key).unwrap()
    }

    fn cache(ttl: Duration) -> SecretCache {
        SecretCache::new(&CacheConfig { enabled: true, maximum_size: 100, expire_after_write: ttl })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_concurrent_misses_make_one_backend_call() {
        let memory: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        memory.put(&name("a", "k"), &SecretValue::from_slice(b"v"), &Tags::new(), None).await.unwrap();
        let store = Arc::new(CountingStore::new(memory, Duration::from_millis(50)));
        let cache = Arc::new(cache(Duration::from_secs(60)));
        let calls = (0..1000).map(|_| {
            let (store, cache) = (store.clone(), cache.clone());
            tokio::spawn(async move {
                let n = name("a", "k");
                cache.get_or_load(&n, None, store.get(&n, None)).await.map(|(s, o)| (s.value.expose().to_vec(), o))
            })
        });
        let results = futures::future::join_all(calls).await;
        assert_eq!(store.gets(), 1, "1,000 concurrent misses must make exactly one backend call");
        let mut origins = (0, 0);
        for r in results {
            let (value, origin) = r.unwrap().unwrap();
            assert_eq!(value, b"v");
            match origin {
                Origin::Backend => origins.0 += 1,
                Origin::Cache => origins.1 += 1,
            }
        }
        assert_eq!(origins, (1, 999));
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let store = Arc::new(CountingStore::new(Arc::new(MemoryStore::new()), Duration::ZERO));
        let cache = cache(Duration::from_secs(60));
        let n = name("a", "missing");
        for _ in 0..3 {
            assert!(cache.get_or_load(&n, None, store.get(&n, None)).await.is_err());
        }
        assert_eq!(store.gets(), 3);
    }

    #[tokio::test]
    async fn entries_expire_after_write() {
        let memory: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        memory.put(&name("a", "k"), &SecretValue::from_slice(b"v"), &Tags::new(), None).await.unwrap();
        let store = CountingStore::new(memory, Duration::ZERO);
        let cache = cache(Duration::from_millis(100));
        let n = name("a", "k");
        cache.get_or_load(&n, None, store.get(&n, None)).await.unwrap();
        assert_eq!(cache.get_or_load(&n, None, store.get(&n, None)).await.unwrap().1, Origin::Cache);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(cache.get_or_load(&n, None, store.get(&n, None)).await.unwrap().1, Origin::Backend);
        assert_eq!(store.gets(), 2);
    }

    #[tokio::test]
    async fn invalidation_covers_descendant_requests_only() {
        let cache = cache(Duration::from_secs(60));
        let fake = |ns: &str| {
            let n = name(ns, "k");
            async move {
                Ok(Secret {
                    metadata: secretd_core::SecretMetadata {
                        name: n,
                        version: Version("1".into()),
                        tags: Tags::new(),
                        created_at: std::time::SystemTime::UNIX_EPOCH,
                        updated_at: std::time::SystemTime::UNIX_EPOCH,
                    },
                    value: SecretValue::from_slice(b"x"),
                })
            }
        };
        for ns in ["company", "company.team", "company.team.etl", "other", "companyx"] {
            cache.get_or_load(&name(ns, "k"), None, fake(ns)).await.unwrap();
        }
        cache.get_or_load(&name("company.team", "other-key"), None, fake("company.team")).await.unwrap();
        cache.write_started();
        cache.invalidate(&name("company.team", "k"));
        let origin = |ns: &'static str, key: &'static str| {
            let cache = &cache;
            async move { cache.get_or_load(&name(ns, key), None, fake(ns)).await.unwrap().1 }
        };
        assert_eq!(origin("company", "k").await, Origin::Cache);
        assert_eq!(origin("company.team", "k").await, Origin::Backend);
        assert_eq!(origin("company.team.etl", "k").await, Origin::Backend);
        assert_eq!(origin("other", "k").await, Origin::Cache);
        assert_eq!(origin("companyx", "k").await, Origin::Cache);
        assert_eq!(origin("company.team", "other-key").await, Origin::Cache);
    }

    #[tokio::test]
    async fn disabled_cache_always_loads() {
        let memory: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        memory.put(&name("a", "k"), &SecretValue::from_slice(b"v"), &Tags::new(), None).await.unwrap();
        let store = CountingStore::new(memory, Duration::ZERO);
        let cache = SecretCache::disabled();
        let n = name("a", "k");
        for _ in 0..3 {
            assert_eq!(cache.get_or_load(&n, None, store.get(&n, None)).await.unwrap().1, Origin::Backend);
        }
        assert_eq!(store.gets(), 3);
    }
}
