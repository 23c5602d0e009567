//! The secret cache: a bounded moka cache where many concurrent misses for
//! one secret make one backend call, and which keeps serving when the
//! backend fails.
//!
//! Entries are keyed by what the caller asked for (tenant, requested
//! namespace, key, pinned version), and hold the secret wherever namespace
//! inheritance found it, with the time it was read. Their life:
//!
//! - **fresh** for `expire-after-write`: answered from the cache. A read in
//!   the last `refresh-ahead` share of that time starts one background
//!   refresh, so a hot key is replaced before it expires and its readers
//!   never wait on the backend;
//! - **stale** for `stale-if-error` after that: a read goes to the backend
//!   (one attempt, no retries), and if the backend is unavailable or times
//!   out, the stale value is the answer, marked as such. A `NotFound` or a
//!   permission error is answered as it is: only an outage is papered over;
//! - then gone (moka's time to live, so memory stays bounded).
//!
//! `NotFound` answers are remembered for `negative-ttl` (off by default).
//!
//! All backend reads, misses and background refreshes alike, go through one
//! single-flight table: a read for a key that is already being read joins
//! it. Each read runs in its own task, under the backend's timeout and not
//! the deadline of the caller that started it, so a caller that gives up
//! (or whose deadline passes: it is answered `DeadlineExceeded`) neither
//! cancels nor fails the read the others wait for, and the task itself
//! stores its result.
//!
//! Writes invalidate. A write to `company/db` must also drop the entries of
//! `company.team/db`, which may have resolved to it: writes invalidate every
//! entry, cached or being read, of the same tenant and key whose requested
//! namespace is the written one or below it. A read that began before a
//! write and ends after it does not store what it read (`writes_started`
//! moved), since that may be older than the write.
//!
//! Ages are measured on tokio's clock, so tests can move time with
//! `tokio::time::pause`; moka's expiry only bounds how long an entry may be
//! kept at all.
//!
//! The cache never decides who may read: the broker authorizes every call
//! before it asks the cache, hits included.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures::future::{BoxFuture, FutureExt, Shared};
use moka::future::Cache;
use secretd_core::{ErrorKind, Secret, SecretName, StoreError, Version};
use tokio::time::Instant;

use crate::{config::CacheConfig, resilience::CallContext};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    requested: SecretName,
    version: Option<Version>,
    readable: Readable,
}

/// Which namespaces of a lookup's inheritance walk the caller may read: bit
/// `i` stands for the `i`-th namespace of `self_and_ancestors` (the
/// requested one is bit 0). It is part of the cache key, so callers whose
/// lookups the policy judges differently never share an answer; callers who
/// may read the same namespaces do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Readable(u64);

impl Readable {
    pub const NONE: Readable = Readable(0);

    /// Every namespace of a walk `depth` namespaces long.
    pub fn all(depth: usize) -> Self {
        Readable(if depth >= 64 { u64::MAX } else { (1u64 << depth) - 1 })
    }

    pub fn with(self, level: usize) -> Self {
        Readable(self.0 | 1u64.checked_shl(level as u32).unwrap_or(0))
    }

    pub fn includes(self, level: usize) -> bool {
        level < 64 && self.0 & (1 << level) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl CacheKey {
    fn resolved_by_write_to(&self, written: &SecretName) -> bool {
        self.requested.tenant == written.tenant
            && self.requested.key == written.key
            && self.requested.namespace.is_within(&written.namespace)
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Fresh from the cache, or from another caller's backend read.
    Cache,
    /// Read from the backend for this call.
    Backend,
    /// Expired, served because the backend failed.
    Stale,
}

/// What a caller asked of the cache besides the name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Freshness {
    /// A cached value older than this is not used, not even stale.
    pub max_age: Option<Duration>,
    /// Read the backend whatever the cache holds.
    pub refresh: bool,
}

/// A secret as the cache holds it: with the name of the backend that
/// answered (a route's own, or its fallback's).
#[derive(Debug)]
pub struct Served {
    pub secret: Secret,
    pub backend: Arc<str>,
}

impl Served {
    pub fn new(secret: Secret, backend: impl Into<Arc<str>>) -> Self {
        Self { secret, backend: backend.into() }
    }
}

impl std::ops::Deref for Served {
    type Target = Secret;

    fn deref(&self) -> &Secret {
        &self.secret
    }
}

/// A cached answer: the secret, where it came from, and its age (the time
/// since it was read from the backend).
#[derive(Debug, Clone)]
pub struct Answer {
    pub secret: Arc<Served>,
    pub origin: Origin,
    pub age: Duration,
}

#[derive(Debug)]
enum Cached {
    Found(Arc<Served>),
    Missing(Arc<StoreError>),
}

impl CacheKey {
    /// Bytes this key holds, roughly: the name's strings plus the struct.
    fn weight(&self) -> u32 {
        let n = &self.requested;
        let strings = n.tenant.as_str().len()
            + n.namespace.as_str().len()
            + n.key.as_str().len()
            + self.version.as_ref().map_or(0, |v| v.0.len());
        (strings + std::mem::size_of::<Self>()).min(u32::MAX as usize) as u32
    }
}

#[derive(Debug)]
struct Entry {
    cached: Cached,
    read_at: Instant,
    /// A background refresh has been started for this entry.
    refreshing: AtomicBool,
}

impl Entry {
    /// Bytes this entry holds, roughly: the value, the answer's name,
    /// version, tags and description, plus moka's own bookkeeping.
    fn weight(&self) -> u32 {
        const OVERHEAD: usize = 160;
        let held = match &self.cached {
            Cached::Found(secret) => {
                let m = &secret.metadata;
                secret.value.len()
                    + m.name.tenant.as_str().len()
                    + m.name.namespace.as_str().len()
                    + m.name.key.as_str().len()
                    + m.version.0.len()
                    + m.tags.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                    + secret.backend.len()
                    + std::mem::size_of::<Served>()
            }
            Cached::Missing(e) => e.message().len() + std::mem::size_of::<StoreError>(),
        };
        (held + std::mem::size_of::<Self>() + OVERHEAD).min(u32::MAX as usize) as u32
    }
}

/// The outcome of one shared backend read.
type Read = Result<(Arc<Served>, Instant), Arc<StoreError>>;

/// A backend read that several callers await.
type SharedRead = Shared<BoxFuture<'static, Read>>;

/// The reads in progress, each with its id.
type Reads = HashMap<CacheKey, (u64, SharedRead)>;

/// A backend read for one key, started by the cache's caller.
pub type Load = BoxFuture<'static, Result<Served, StoreError>>;

struct Inner {
    entries: Cache<CacheKey, Arc<Entry>>,
    /// Backend reads in progress, each with an id so that a finished read
    /// removes only itself (an invalidation may have replaced it).
    reading: Mutex<Reads>,
    next_read_id: AtomicU64,
    writes_started: AtomicU64,
    /// Invalidations so far. A read stores its answer only if no write
    /// started or finished while it ran: a write may have landed between
    /// the backend answering and the answer being stored.
    writes_finished: AtomicU64,
    ttl: Duration,
    stale_if_error: Duration,
    /// Age from which a read starts a background refresh.
    refresh_from: Option<Duration>,
    negative_ttl: Duration,
}

pub struct SecretCache {
    /// None when the cache is off.
    inner: Option<Arc<Inner>>,
}

impl SecretCache {
    pub fn new(config: &CacheConfig) -> Self {
        if !config.enabled {
            return Self { inner: None };
        }
        let ttl = config.expire_after_write;
        // Two bounds with one weigher: every entry weighs at least its share
        // of the byte bound per entry, so the total weight stays under
        // `maximum-bytes` only if there are at most `maximum-size` entries
        // and they hold at most `maximum-bytes` between them.
        let floor = config.maximum_bytes.div_ceil(config.maximum_size.max(1)).min(u64::from(u32::MAX)) as u32;
        let entries = Cache::builder()
            .max_capacity(config.maximum_bytes)
            .weigher(move |key: &CacheKey, entry: &Arc<Entry>| key.weight().saturating_add(entry.weight()).max(floor))
            // One time to live for every entry, through its stale window: a
            // remembered NOT_FOUND is judged by its age like any entry, and a
            // per-entry expiry (moka's `expire_after`) cost ~10% of cached
            // reads' throughput in the benchmark.
            .time_to_live(ttl.saturating_add(config.stale_if_error).max(config.negative_ttl))
            .support_invalidation_closures()
            .eviction_listener(|_, _, cause| {
                // Size and age; invalidations after writes are not
                // evictions.
                if matches!(cause, moka::notification::RemovalCause::Size | moka::notification::RemovalCause::Expired) {
                    crate::metrics::get().cache_evictions.inc();
                }
            })
            .build();
        let refresh_from = (config.refresh_ahead > 0.0).then(|| ttl.mul_f64(1.0 - config.refresh_ahead));
        Self {
            inner: Some(Arc::new(Inner {
                entries,
                reading: Mutex::new(HashMap::new()),
                next_read_id: AtomicU64::new(0),
                writes_started: AtomicU64::new(0),
                writes_finished: AtomicU64::new(0),
                ttl,
                stale_if_error: config.stale_if_error,
                refresh_from,
                negative_ttl: config.negative_ttl,
            })),
        }
    }

    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Answers a read: from the cache when it may, otherwise by a backend
    /// read shared with every concurrent caller of the same request
    /// (`load` makes that read; it is called at most once, and only when a
    /// read is needed).
    pub async fn get_or_load(
        &self,
        requested: &SecretName,
        version: Option<&Version>,
        readable: Readable,
        freshness: Freshness,
        load: impl FnOnce() -> Load,
    ) -> Result<Answer, Arc<StoreError>> {
        let Some(inner) = &self.inner else {
            let secret = load().await.map_err(Arc::new)?;
            return Ok(Answer { secret: Arc::new(secret), origin: Origin::Backend, age: Duration::ZERO });
        };
        let metrics = crate::metrics::get();
        let key = CacheKey { requested: requested.clone(), version: version.cloned(), readable };
        let mut fallback = None;
        let cached = if freshness.refresh { None } else { inner.entries.get(&key).await };
        if let Some(entry) = cached {
            let age = entry.read_at.elapsed();
            match &entry.cached {
                Cached::Missing(not_found) if age < inner.negative_ttl => {
                    metrics.negative_hits.inc();
                    return Err(not_found.clone());
                }
                Cached::Missing(_) => {}
                Cached::Found(secret) => {
                    if age < inner.ttl && freshness.max_age.is_none_or(|max| age <= max) {
                        metrics.cache_hits.inc();
                        if inner.refresh_from.is_some_and(|from| age >= from)
                            && !entry.refreshing.swap(true, Ordering::Relaxed)
                        {
                            metrics.refreshes_ahead.inc();
                            // Detached: the task stores what it reads.
                            drop(inner.read(key, load, CallContext::default()));
                        }
                        return Ok(Answer { secret: secret.clone(), origin: Origin::Cache, age });
                    }
                    if freshness.max_age.is_none() && age < inner.ttl.saturating_add(inner.stale_if_error) {
                        fallback = Some((secret.clone(), age));
                    }
                }
            }
        }
        // With a stale value to fall back on, one attempt: this caller is
        // better served stale now than fresh after every retry. The read is
        // shared, so it runs under the backend's timeout, not this caller's
        // deadline: an impatient caller must neither fail it for the
        // callers that join it nor have it counted as a backend failure.
        let shared = CallContext { deadline: None, single_attempt: fallback.is_some() };
        let (read, started_here) = inner.read(key, load, shared);
        let outcome = match CallContext::current().deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    metrics.caller_deadline_cuts.inc();
                    return Err(Arc::new(
                        StoreError::new(
                            ErrorKind::DeadlineExceeded,
                            "the call's deadline passed while the backend read was in progress (the read goes on, \
                         and its answer is cached)",
                        )
                        .for_callers(),
                    ));
                }
            },
            None => read.await,
        };
        match outcome {
            Ok((secret, read_at)) => {
                if started_here {
                    metrics.cache_misses.inc();
                    Ok(Answer { secret, origin: Origin::Backend, age: Duration::ZERO })
                } else {
                    metrics.single_flight_joins.inc();
                    Ok(Answer { secret, origin: Origin::Cache, age: read_at.elapsed() })
                }
            }
            Err(e) if e.kind().is_transient() => match fallback {
                Some((secret, age)) => {
                    metrics.stale_serves.inc();
                    tracing::debug!(kind = %e.kind(), age = ?age, "serving a stale value: {e}");
                    Ok(Answer { secret, origin: Origin::Stale, age })
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Call before a write reaches the backend.
    pub fn write_started(&self) {
        if let Some(inner) = &self.inner {
            inner.writes_started.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The age of a cached value that is still fresh but older than
    /// `max_age`: a read with that `max_age` would bypass it.
    pub async fn refused_for_age(
        &self,
        requested: &SecretName,
        version: Option<&Version>,
        readable: Readable,
        max_age: Duration,
    ) -> bool {
        let Some(inner) = &self.inner else { return false };
        let key = CacheKey { requested: requested.clone(), version: version.cloned(), readable };
        inner.entries.get(&key).await.is_some_and(|entry| {
            let age = entry.read_at.elapsed();
            matches!(entry.cached, Cached::Found(_)) && age < inner.ttl && age > max_age
        })
    }

    /// Call after a write (successful or not: a failed call may still have
    /// landed). Drops every entry, and every read in progress, that may
    /// have resolved to `written`.
    pub fn invalidate(&self, written: &SecretName) {
        let Some(inner) = &self.inner else { return };
        // Before the entries go: a read that stores after this point sees
        // the count move and takes its own entry back (see `Inner::read`).
        inner.writes_finished.fetch_add(1, Ordering::SeqCst);
        inner.lock_reading().retain(|key, _| !key.resolved_by_write_to(written));
        let written = written.clone();
        let registered = inner.entries.invalidate_entries_if(move |k, _| k.resolved_by_write_to(&written));
        if registered.is_err() {
            // Only possible if the builder lost support_invalidation_closures;
            // correctness beats hit rate.
            inner.entries.invalidate_all();
        }
    }

    /// Whether an outage of the backend is covered by stale values.
    pub fn serves_stale(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| !i.stale_if_error.is_zero())
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.as_ref().map_or(0, |c| c.entries.entry_count())
    }
}

impl Inner {
    /// Joins the read of `key` in progress, or starts one in its own task.
    /// Returns the shared read and whether this call started it.
    fn read(self: &Arc<Self>, key: CacheKey, load: impl FnOnce() -> Load, context: CallContext) -> (SharedRead, bool) {
        let mut reading = self.lock_reading();
        if let Some((_, read)) = reading.get(&key) {
            return (read.clone(), false);
        }
        let id = self.next_read_id.fetch_add(1, Ordering::Relaxed);
        let writes_before = self.write_count();
        let load = load();
        let inner = self.clone();
        let task_key = key.clone();
        let task = tokio::spawn(context.scope(async move {
            let result = load.await;
            let read_at = Instant::now();
            let cached = match result {
                Ok(secret) => Ok(Cached::Found(Arc::new(secret))),
                Err(e) if e.kind() == ErrorKind::NotFound && !inner.negative_ttl.is_zero() => {
                    Ok(Cached::Missing(Arc::new(e)))
                }
                Err(e) => Err(Arc::new(e)),
            };
            let answer = match &cached {
                Ok(Cached::Found(secret)) => Ok((secret.clone(), read_at)),
                Ok(Cached::Missing(e)) | Err(e) => Err(e.clone()),
            };
            if let Ok(cached) = cached {
                if inner.write_count() == writes_before {
                    let entry = Entry { cached, read_at, refreshing: AtomicBool::new(false) };
                    inner.entries.insert(task_key.clone(), Arc::new(entry)).await;
                    // An invalidation between the check and the insert did
                    // not see this entry: take it back ourselves.
                    if inner.write_count() != writes_before {
                        inner.entries.invalidate(&task_key).await;
                    }
                }
            }
            let mut reading = inner.lock_reading();
            if reading.get(&task_key).is_some_and(|(current, _)| *current == id) {
                reading.remove(&task_key);
            }
            answer
        }));
        let read = async move {
            task.await
                .unwrap_or_else(|_| Err(Arc::new(StoreError::internal("the backend read was cancelled").for_callers())))
        }
        .boxed()
        .shared();
        reading.insert(key, (id, read.clone()));
        (read, true)
    }

    /// Writes started plus writes finished: unchanged over a read only if
    /// no write overlapped it.
    fn write_count(&self) -> (u64, u64) {
        (self.writes_started.load(Ordering::SeqCst), self.writes_finished.load(Ordering::SeqCst))
    }

    fn lock_reading(&self) -> std::sync::MutexGuard<'_, Reads> {
        // The map holds no invariant a panic could break.
        self.reading.lock().unwrap_or_else(|p| p.into_inner())
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
        SecretCache::new(&CacheConfig { expire_after_write: ttl, refresh_ahead: 0.0, ..CacheConfig::default() })
    }

    /// A backend read of `n` from `store`, as the broker makes one.
    pub(crate) fn read_of(store: &Arc<impl SecretStore + ?Sized>, n: &SecretName) -> impl FnOnce() -> Load {
        let (store, n) = (store.clone(), n.clone());
        move || async move { store.get(&n, None).await.map(|s| Served::new(s, "default")) }.boxed()
    }

    async fn origin(cache: &SecretCache, store: &Arc<CountingStore>, n: &SecretName) -> Origin {
        cache.get_or_load(n, None, Readable::all(1), Freshness::default(), read_of(store, n)).await.unwrap().origin
    }

    async fn seeded(value: &[u8]) -> Arc<CountingStore> {
        let memory: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        memory.put(&name("a", "k"), &SecretValue::from_slice(value), &Tags::new(), None).await.unwrap();
        Arc::new(CountingStore::new(memory, Duration::from_millis(50)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_concurrent_misses_make_one_backend_call() {
        let store = seeded(b"v").await;
        let cache = Arc::new(cache(Duration::from_secs(60)));
        let calls = (0..1000).map(|_| {
            let (store, cache) = (store.clone(), cache.clone());
            tokio::spawn(async move {
                let n = name("a", "k");
                cache
                    .get_or_load(&n, None, Readable::all(1), Freshness::default(), read_of(&store, &n))
                    .await
                    .map(|a| (a.secret.value.expose().to_vec(), a.origin))
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
                Origin::Stale => panic!("nothing failed"),
            }
        }
        assert_eq!(origins, (1, 999));
    }

    #[tokio::test]
    async fn errors_are_not_cached_unless_negative_ttl_is_set() {
        let store = Arc::new(CountingStore::new(Arc::new(MemoryStore::new()), Duration::ZERO));
        let cache = cache(Duration::from_secs(60));
        let n = name("a", "missing");
        for _ in 0..3 {
            assert!(cache
                .get_or_load(&n, None, Readable::all(1), Freshness::default(), read_of(&store, &n))
                .await
                .is_err());
        }
        assert_eq!(store.gets(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn not_found_is_remembered_for_negative_ttl_and_a_write_clears_it() {
        let store = Arc::new(CountingStore::new(Arc::new(MemoryStore::new()), Duration::ZERO));
        let cache = SecretCache::new(&CacheConfig { negative_ttl: Duration::from_secs(5), ..CacheConfig::default() });
        let n = name("a", "k");
        let get = || cache.get_or_load(&n, None, Readable::all(1), Freshness::default(), read_of(&store, &n));
        for _ in 0..3 {
            assert_eq!(get().await.unwrap_err().kind(), ErrorKind::NotFound);
        }
        assert_eq!(store.gets(), 1, "NOT_FOUND answered from the cache within negative-ttl");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(get().await.unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(store.gets(), 2, "and read again after it");

        // A put through secretd clears the remembered NOT_FOUND at once.
        cache.write_started();
        store.put(&n, &SecretValue::from_slice(b"now"), &Tags::new(), None).await.unwrap();
        cache.invalidate(&n);
        assert_eq!(get().await.unwrap().secret.value.expose(), b"now");
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_write() {
        let store = seeded(b"v").await;
        let cache = cache(Duration::from_secs(10));
        let n = name("a", "k");
        assert_eq!(origin(&cache, &store, &n).await, Origin::Backend);
        tokio::time::advance(Duration::from_millis(9_900)).await;
        let hit =
            cache.get_or_load(&n, None, Readable::all(1), Freshness::default(), read_of(&store, &n)).await.unwrap();
        assert_eq!((hit.origin, hit.age), (Origin::Cache, Duration::from_millis(9_900)));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(origin(&cache, &store, &n).await, Origin::Backend);
        assert_eq!(store.gets(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn max_age_and_refresh_go_to_the_backend() {
        let store = seeded(b"v").await;
        let cache = cache(Duration::from_secs(60));
        let n = name("a", "k");
        origin(&cache, &store, &n).await;
        tokio::time::advance(Duration::from_secs(10)).await;
        let get = |freshness| cache.get_or_load(&n, None, Readable::all(1), freshness, read_of(&store, &n));
        let young_enough = Freshness { max_age: Some(Duration::from_secs(30)), refresh: false };
        assert_eq!(get(young_enough).await.unwrap().origin, Origin::Cache);
        let too_old = Freshness { max_age: Some(Duration::from_secs(5)), refresh: false };
        assert_eq!(get(too_old).await.unwrap().origin, Origin::Backend);
        assert_eq!(get(Freshness { max_age: None, refresh: true }).await.unwrap().origin, Origin::Backend);
        assert_eq!(store.gets(), 3);
        // The refreshed value is cached for everyone.
        assert_eq!(get(Freshness::default()).await.unwrap().origin, Origin::Cache);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_near_expiry_refreshes_once_in_the_background() {
        let store = seeded(b"v").await;
        let cache = SecretCache::new(&CacheConfig {
            expire_after_write: Duration::from_secs(10),
            refresh_ahead: 0.2,
            ..CacheConfig::default()
        });
        let n = name("a", "k");
        origin(&cache, &store, &n).await;
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(origin(&cache, &store, &n).await, Origin::Cache);
        assert_eq!(store.gets(), 1, "not yet in the last 20%");
        tokio::time::advance(Duration::from_millis(1_500)).await;
        for _ in 0..10 {
            assert_eq!(origin(&cache, &store, &n).await, Origin::Cache, "callers never wait for the refresh");
        }
        // Let the one background read (50 ms) finish.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.gets(), 2, "ten reads near expiry started one refresh");
        // The entry was replaced: well past the old expiry it is still fresh.
        tokio::time::advance(Duration::from_secs(5)).await;
        let hit =
            cache.get_or_load(&n, None, Readable::all(1), Freshness::default(), read_of(&store, &n)).await.unwrap();
        assert_eq!(hit.origin, Origin::Cache);
        assert!(hit.age < Duration::from_secs(6), "{:?}", hit.age);
        assert_eq!(store.gets(), 2);
    }

    #[tokio::test]
    async fn invalidation_covers_descendant_requests_only() {
        let cache = cache(Duration::from_secs(60));
        let fake = |ns: &str| {
            let n = name(ns, "k");
            move || -> Load {
                async move {
                    Ok(Served::new(
                        Secret {
                            metadata: secretd_core::SecretMetadata {
                                name: n,
                                version: Version("1".into()),
                                tags: Tags::new(),
                                created_at: std::time::SystemTime::UNIX_EPOCH,
                                updated_at: std::time::SystemTime::UNIX_EPOCH,
                            },
                            value: SecretValue::from_slice(b"x"),
                        },
                        "default",
                    ))
                }
                .boxed()
            }
        };
        let get = |ns: &'static str, key: &'static str| {
            let cache = &cache;
            async move {
                cache
                    .get_or_load(&name(ns, key), None, Readable::all(1), Freshness::default(), fake(ns))
                    .await
                    .unwrap()
                    .origin
            }
        };
        for ns in ["company", "company.team", "company.team.etl", "other", "companyx"] {
            get(ns, "k").await;
        }
        get("company.team", "other-key").await;
        cache.write_started();
        cache.invalidate(&name("company.team", "k"));
        assert_eq!(get("company", "k").await, Origin::Cache);
        assert_eq!(get("company.team", "k").await, Origin::Backend);
        assert_eq!(get("company.team.etl", "k").await, Origin::Backend);
        assert_eq!(get("other", "k").await, Origin::Cache);
        assert_eq!(get("companyx", "k").await, Origin::Cache);
        assert_eq!(get("company.team", "other-key").await, Origin::Cache);
    }

    #[tokio::test]
    async fn a_read_that_overlaps_a_write_is_not_cached() {
        let store = seeded(b"old").await;
        let cache = cache(Duration::from_secs(60));
        let n = name("a", "k");
        let slow_read = cache.get_or_load(&n, None, Readable::all(1), Freshness::default(), read_of(&store, &n));
        let write = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            cache.write_started();
            store.put(&n, &SecretValue::from_slice(b"new"), &Tags::new(), None).await.unwrap();
            cache.invalidate(&n);
        };
        let (read, ()) = tokio::join!(slow_read, write);
        assert_eq!(read.unwrap().origin, Origin::Backend);
        let after =
            cache.get_or_load(&n, None, Readable::all(1), Freshness::default(), read_of(&store, &n)).await.unwrap();
        assert_eq!(after.origin, Origin::Backend, "what a read overlapping a write found is not kept");
        assert_eq!(after.secret.value.expose(), b"new");
    }

    /// A read held open at the backend: it has read the value and waits
    /// for `release` before answering, as a slow network would make it.
    fn held_read(
        store: &Arc<dyn SecretStore>,
        n: &SecretName,
        has_read: tokio::sync::oneshot::Sender<()>,
        release: tokio::sync::oneshot::Receiver<()>,
    ) -> impl FnOnce() -> Load {
        let (store, n) = (store.clone(), n.clone());
        move || {
            async move {
                let answer = store.get(&n, None).await;
                let _ = has_read.send(());
                let _ = release.await;
                answer.map(|s| Served::new(s, "default"))
            }
            .boxed()
        }
    }

    /// The write has started (as the broker marks it before calling the
    /// backend) when the read begins, and lands while the read is held
    /// open: what the read found is the old value, and must not be kept.
    async fn write_lands_under_a_held_read(write: impl AsyncFnOnce(&Arc<dyn SecretStore>, &SecretName)) {
        let memory: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        let n = name("a", "k");
        memory.put(&n, &SecretValue::from_slice(b"old"), &Tags::new(), None).await.unwrap();
        let cache = cache(Duration::from_secs(60));
        cache.write_started();
        let (has_read, read_done) = tokio::sync::oneshot::channel();
        let (release, released) = tokio::sync::oneshot::channel();
        let read = cache.get_or_load(
            &n,
            None,
            Readable::all(1),
            Freshness::default(),
            held_read(&memory, &n, has_read, released),
        );
        let write = async {
            read_done.await.unwrap();
            write(&memory, &n).await;
            cache.invalidate(&n);
            release.send(()).unwrap();
        };
        let (old, ()) = tokio::join!(read, write);
        assert_eq!(old.unwrap().secret.value.expose(), b"old", "the overlapping read answers what it found");
        // Let the read's task finish storing (or not) what it found.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        let counting = Arc::new(CountingStore::new(memory, Duration::ZERO));
        let after = cache.get_or_load(&n, None, Readable::all(1), Freshness::default(), read_of(&counting, &n)).await;
        assert_eq!(counting.gets(), 1, "the value read before the write landed was cached");
        match after {
            Ok(a) => assert_eq!(a.secret.value.expose(), b"new"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound),
        }
    }

    #[tokio::test]
    async fn a_delete_that_lands_under_a_held_read_is_never_served_again() {
        write_lands_under_a_held_read(async |store, n| store.delete(n).await.unwrap()).await;
    }

    #[tokio::test]
    async fn a_put_that_lands_under_a_held_read_is_seen_by_the_next_read() {
        write_lands_under_a_held_read(async |store, n| {
            store.put(n, &SecretValue::from_slice(b"new"), &Tags::new(), None).await.unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn entries_are_bounded_by_bytes_as_well_as_by_count() {
        let memory: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        let big = vec![7u8; 64 * 1024];
        let names: Vec<SecretName> = (0..40).map(|i| name("a", &format!("k{i}"))).collect();
        for n in &names {
            memory.put(n, &SecretValue::from_slice(&big), &Tags::new(), None).await.unwrap();
        }
        // 1 MiB holds at most 15 values of 64 KiB, although 1,000 entries are allowed.
        let cache = SecretCache::new(&CacheConfig {
            maximum_size: 1000,
            maximum_bytes: 1024 * 1024,
            refresh_ahead: 0.0,
            ..CacheConfig::default()
        });
        for n in &names {
            cache.get_or_load(n, None, Readable::all(1), Freshness::default(), read_of(&memory, n)).await.unwrap();
        }
        let inner = cache.inner.as_ref().unwrap();
        inner.entries.run_pending_tasks().await;
        let held = inner.entries.entry_count();
        assert!((1..=15).contains(&held), "{held} entries of 64 KiB in a 1 MiB cache");
        assert!(inner.entries.weighted_size() <= 1024 * 1024);
        // Small values: the entry bound decides.
        let small = SecretCache::new(&CacheConfig { maximum_size: 10, refresh_ahead: 0.0, ..CacheConfig::default() });
        for i in 0..50 {
            let n = name("b", &format!("k{i}"));
            memory.put(&n, &SecretValue::from_slice(b"v"), &Tags::new(), None).await.unwrap();
            small.get_or_load(&n, None, Readable::all(1), Freshness::default(), read_of(&memory, &n)).await.unwrap();
        }
        let inner = small.inner.as_ref().unwrap();
        inner.entries.run_pending_tasks().await;
        assert!(inner.entries.entry_count() <= 10, "{} entries", inner.entries.entry_count());
    }

    #[tokio::test]
    async fn disabled_cache_always_loads() {
        let store = seeded(b"v").await;
        let cache = SecretCache::disabled();
        let n = name("a", "k");
        for _ in 0..3 {
            assert_eq!(origin(&cache, &store, &n).await, Origin::Backend);
        }
        assert_eq!(store.gets(), 3);
    }
}
