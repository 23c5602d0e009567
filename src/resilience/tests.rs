//! The resilience behaviour end to end inside the process: broker, cache
//! and [`ResilientStore`] over a fault-injecting wrapper around the memory
//! store, on tokio's paused clock, so every duration below is exact.

use std::{sync::Arc, time::Duration};

use secretd_core::{
    testing::{Fault, FaultyStore},
    ErrorKind, SecretName, SecretStore, SecretValue, Tags,
};
use secretd_memory::MemoryStore;
use tokio::time::Instant;
use tonic::Code;

use super::{breaker::BreakerState, CallContext, Resilience, ResilientStore};
use crate::{
    auth::Principal,
    broker::{Broker, Limits, Ref, Trail},
    cache::{Freshness, Origin, SecretCache},
    config::{AccessConfig, CacheConfig, IsolationConfig, Permission, RateLimitConfig},
    policy::{Caller, Policy},
};

struct Rig {
    faulty: Arc<FaultyStore>,
    breaker: Arc<super::breaker::CircuitBreaker>,
    broker: Broker,
}

fn rig(cache: CacheConfig, resilience: Resilience) -> Rig {
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let resilient = ResilientStore::new(faulty.clone(), "memory", resilience);
    let breaker = resilient.breaker();
    let broker = Broker::new(
        Arc::new(resilient),
        SecretCache::new(&cache),
        Policy::new(&IsolationConfig::default(), &AccessConfig::default()),
        Limits { max_value_size: 1024, max_batch_size: 10, ..Limits::default() },
    )
    .with_breaker(breaker.clone())
    .with_refresh_limit(RateLimitConfig { requests_per_second: 1.0, burst: 2 });
    Rig { faulty, breaker, broker }
}

fn cache(ttl_secs: u64, stale_secs: u64) -> CacheConfig {
    CacheConfig {
        expire_after_write: Duration::from_secs(ttl_secs),
        stale_if_error: Duration::from_secs(stale_secs),
        refresh_ahead: 0.0,
        ..CacheConfig::default()
    }
}

fn settings(timeout_secs: u64, attempts: u32, threshold: u32) -> Resilience {
    Resilience {
        timeout: Duration::from_secs(timeout_secs),
        max_attempts: attempts,
        failure_threshold: threshold,
        open_for: Duration::from_secs(10),
        rate_limit: None,
    }
}

fn caller(name: &str) -> Caller {
    let principal = Principal {
        name: name.into(),
        service: "WORKER".into(),
        permissions: Permission::ALL.into_iter().collect(),
        namespaces: vec![],
        tenants: vec!["*".into()],
        expires_at: None,
    };
    Caller { principal: Arc::new(principal), peer: "test".into() }
}

fn r(key: &str) -> Ref<'_> {
    Ref { tenant: "", namespace: "team", key, version: "", subkey: "" }
}

impl Rig {
    async fn put(&self, key: &str, value: &[u8]) {
        let value = SecretValue::from_slice(value);
        self.broker.put(&caller("w"), r(key), value, Tags::new(), "", &mut Trail::default()).await.unwrap();
    }

    async fn get(&self, key: &str) -> Result<(Vec<u8>, Origin, Duration), tonic::Status> {
        self.get_with(key, Freshness::default()).await
    }

    async fn get_with(&self, key: &str, freshness: Freshness) -> Result<(Vec<u8>, Origin, Duration), tonic::Status> {
        let got = self.broker.get_with(&caller("w"), r(key), freshness, &mut Trail::default()).await?;
        Ok((got.secret.value.expose().to_vec(), got.origin, got.age))
    }
}

#[tokio::test(start_paused = true)]
async fn an_expired_value_is_served_stale_through_an_outage_within_the_window_only() {
    let rig = rig(cache(10, 60), settings(5, 3, 0));
    rig.put("k", b"v1").await;
    assert_eq!(rig.get("k").await.unwrap().1, Origin::Backend);
    rig.faulty.set(Fault::Fail(ErrorKind::Unavailable));

    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(rig.get("k").await.unwrap(), (b"v1".to_vec(), Origin::Cache, Duration::from_secs(5)));
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(rig.get("k").await.unwrap(), (b"v1".to_vec(), Origin::Stale, Duration::from_secs(10)));
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(rig.get("k").await.unwrap().1, Origin::Stale);
    tokio::time::advance(Duration::from_secs(1)).await;
    let gone = rig.get("k").await.unwrap_err();
    assert_eq!(gone.code(), Code::Unavailable, "past stale-if-error the outage shows");
    assert!(gone.message().starts_with("the secret backend is unavailable"), "{}", gone.message());
    assert!(!gone.message().contains("injected fault"), "backend text stays in the log: {}", gone.message());

    rig.faulty.set(Fault::None);
    assert_eq!(rig.get("k").await.unwrap().1, Origin::Backend);
}

#[tokio::test(start_paused = true)]
async fn stale_is_never_served_for_not_found_permission_errors_or_demanded_freshness() {
    let rig = rig(cache(10, 60), settings(5, 1, 0));
    rig.put("k", b"v1").await;
    rig.get("k").await.unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;
    for (kind, code) in [
        (ErrorKind::NotFound, Code::NotFound),
        (ErrorKind::PermissionDenied, Code::Unavailable),
        (ErrorKind::Corrupt, Code::DataLoss),
    ] {
        rig.faulty.set(Fault::Fail(kind));
        assert_eq!(rig.get("k").await.unwrap_err().code(), code, "{kind}");
    }
    rig.faulty.set(Fault::Fail(ErrorKind::Timeout));
    assert_eq!(rig.get("k").await.unwrap().1, Origin::Stale);
    // A caller that sets max_age or refresh asked for fresh or nothing.
    let max_age = Freshness { max_age: Some(Duration::from_secs(60)), refresh: false };
    assert_eq!(rig.get_with("k", max_age).await.unwrap_err().code(), Code::Unavailable);
    let refresh = Freshness { max_age: None, refresh: true };
    assert_eq!(rig.get_with("k", refresh).await.unwrap_err().code(), Code::Unavailable);
}

#[tokio::test(start_paused = true)]
async fn a_stale_answer_does_not_wait_for_retries_and_concurrent_callers_share_one_attempt() {
    let rig = Arc::new(rig(cache(10, 600), settings(1, 3, 0)));
    rig.put("k", b"v1").await;
    rig.get("k").await.unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    rig.faulty.set(Fault::Hang);
    let calls = rig.faulty.calls();
    let started = Instant::now();
    let answers = futures::future::join_all((0..100).map(|_| {
        let rig = rig.clone();
        async move { rig.get("k").await }
    }))
    .await;
    assert_eq!(started.elapsed(), Duration::from_secs(1), "one attempt's timeout, no retries");
    assert_eq!(rig.faulty.calls(), calls + 1, "100 callers, one backend call");
    for answer in answers {
        assert_eq!(answer.unwrap().1, Origin::Stale);
    }

    // Without a stale value to fall back on, the retries do run.
    let calls = rig.faulty.calls();
    let started = Instant::now();
    assert_eq!(rig.get("never-cached").await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(rig.faulty.calls(), calls + 3);
    assert!(started.elapsed() >= Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_the_callers_deadline() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    faulty.set(Fault::Fail(ErrorKind::Unavailable));
    let store = ResilientStore::new(faulty.clone(), "memory", settings(5, 10, 0));
    let name = SecretName::parse("main", "team", "k").unwrap();

    assert!(store.get(&name, None).await.is_err());
    assert_eq!(faulty.calls(), 10, "no deadline: max-attempts tries");

    let started = Instant::now();
    let deadline = CallContext { deadline: Some(started + Duration::from_millis(200)), single_attempt: false };
    let error = deadline.scope(store.get(&name, None)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
    assert!(faulty.calls() - 10 < 10, "the deadline cut the tries short");

    // A hung backend: the attempt itself is cut at the deadline, which is
    // the caller's, not the backend's failure.
    faulty.set(Fault::Hang);
    let started = Instant::now();
    let deadline = CallContext { deadline: Some(started + Duration::from_millis(300)), single_attempt: false };
    let error = deadline.scope(store.get(&name, None)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn writes_are_retried_after_throttling_only() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let store = ResilientStore::new(faulty.clone(), "memory", settings(1, 3, 0));
    let name = SecretName::parse("main", "team", "k").unwrap();
    let value = SecretValue::from_slice(b"v");
    for (fault, calls) in
        [(Fault::Hang, 1), (Fault::Fail(ErrorKind::Unavailable), 1), (Fault::Fail(ErrorKind::Throttled), 3)]
    {
        faulty.set(fault);
        let before = faulty.calls();
        assert!(store.put(&name, &value, &Tags::new(), None).await.is_err());
        assert_eq!(faulty.calls() - before, calls, "{fault:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_fails_fast_serves_stale_and_one_probe_closes_it() {
    let rig = rig(cache(10, 600), settings(5, 1, 3));
    rig.put("cached", b"v1").await;
    rig.get("cached").await.unwrap();
    rig.faulty.set(Fault::Fail(ErrorKind::Unavailable));
    for i in 0..3 {
        rig.get(&format!("miss-{i}")).await.unwrap_err();
    }
    assert_eq!(rig.breaker.state(), BreakerState::Open);
    let calls = rig.faulty.calls();
    tokio::time::advance(Duration::from_secs(5)).await;
    for i in 0..100 {
        let refused = rig.get(&format!("other-{i}")).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unavailable);
        assert!(refused.message().contains("circuit breaker is open"), "{}", refused.message());
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    // Expired now; the breaker is due a probe, and this read is it.
    assert_eq!(rig.get("cached").await.unwrap().1, Origin::Stale);
    assert_eq!(rig.faulty.calls(), calls + 1, "100 refusals reached nothing; the probe did");
    assert_eq!(rig.breaker.state(), BreakerState::Open, "the probe failed");
    assert_eq!(rig.get("cached").await.unwrap().1, Origin::Stale, "stale without a backend call");
    assert_eq!(rig.faulty.calls(), calls + 1);

    rig.faulty.set(Fault::None);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(rig.get("cached").await.unwrap(), (b"v1".to_vec(), Origin::Backend, Duration::ZERO));
    assert_eq!(rig.breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_health_check_reports_an_open_breaker_without_calling() {
    let rig = rig(cache(10, 600), settings(5, 1, 1));
    rig.faulty.set(Fault::Fail(ErrorKind::Unavailable));
    assert!(rig.broker.store().health().await.is_err());
    assert_eq!(rig.breaker.state(), BreakerState::Open);
    let calls = rig.faulty.calls();
    let refused = rig.broker.store().health().await.unwrap_err();
    assert!(refused.message().contains("circuit breaker"), "{refused}");
    assert_eq!(rig.faulty.calls(), calls);
    rig.faulty.set(Fault::None);
    tokio::time::advance(Duration::from_secs(10)).await;
    rig.broker.store().health().await.unwrap();
    assert_eq!(rig.breaker.state(), BreakerState::Closed, "the health check was the probe");
}

#[tokio::test(start_paused = true)]
async fn rate_limited_callers_go_in_arrival_order_and_a_late_slot_is_refused_at_once() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let name = SecretName::parse("main", "team", "k").unwrap();
    faulty.put(&name, &SecretValue::from_slice(b"v"), &Tags::new(), None).await.unwrap();
    let limited = Resilience { rate_limit: Some((2.0, 1)), ..settings(5, 1, 0) };
    let store = Arc::new(ResilientStore::new(faulty.clone(), "memory", limited));
    let started = Instant::now();
    let finished = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut callers = Vec::new();
    for i in 0..5 {
        let (store, name, finished) = (store.clone(), name.clone(), finished.clone());
        callers.push(tokio::spawn(async move {
            store.get(&name, None).await.unwrap();
            finished.lock().unwrap().push((i, started.elapsed()));
        }));
        // Let caller i reserve its slot before i + 1 arrives.
        tokio::task::yield_now().await;
    }
    // Meanwhile a caller that can wait only 1 s is refused at once: the
    // next free slot is 2.5 s away.
    let impatient = CallContext { deadline: Some(Instant::now() + Duration::from_secs(1)), single_attempt: false };
    let refused = impatient.scope(store.get(&name, None)).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(refused.message().contains("rate limited"), "{refused}");
    for caller in callers {
        caller.await.unwrap();
    }
    let finished = finished.lock().unwrap().clone();
    let expected: Vec<_> = (0..5).map(|i| (i, Duration::from_millis(500 * i as u64))).collect();
    assert_eq!(finished, expected);

    // A caller without a deadline waits at most `timeout` (5 s) for its
    // turn: with 12 slots taken (6 s of queue), the 13th is refused at once.
    for _ in 0..12 {
        store.limiter.as_ref().unwrap().reserve(None).unwrap();
    }
    let started = Instant::now();
    let refused = store.get(&name, None).await.unwrap_err();
    assert!(refused.message().contains("later than this call can wait"), "{refused}");
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn refresh_bypasses_the_cache_within_a_per_caller_limit() {
    let rig = rig(cache(60, 600), settings(5, 1, 0));
    rig.put("k", b"v1").await;
    rig.get("k").await.unwrap();
    let refresh = Freshness { max_age: None, refresh: true };
    let calls = rig.faulty.calls();
    for _ in 0..2 {
        assert_eq!(rig.get_with("k", refresh).await.unwrap().1, Origin::Backend);
    }
    assert_eq!(rig.faulty.calls(), calls + 2);
    let limited = rig.get_with("k", refresh).await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    assert_eq!(rig.faulty.calls(), calls + 2, "a refused refresh reaches nothing");
    // Another caller has its own allowance; time refills this one's.
    let other = rig.broker.get_with(&caller("other"), r("k"), refresh, &mut Trail::default()).await.unwrap();
    assert_eq!(other.origin, Origin::Backend);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(rig.get_with("k", refresh).await.unwrap().1, Origin::Backend);
}

fn within(ms: u64) -> CallContext {
    CallContext { deadline: Some(Instant::now() + Duration::from_millis(ms)), single_attempt: false }
}

/// Issue #12, item 6: a reader with tiny deadlines on uncached keys must
/// not open the breaker for everyone. The backend is slow (200 ms) but
/// healthy; every impatient caller gives up after 1 ms.
#[tokio::test(start_paused = true)]
async fn callers_with_tiny_deadlines_on_a_slow_backend_do_not_open_the_breaker() {
    let rig = rig(cache(60, 0), settings(5, 3, 3));
    for i in 0..20 {
        rig.put(&format!("uncached-{i}"), b"v").await;
    }
    rig.put("later", b"for the patient caller").await;
    rig.faulty.set(Fault::Slow(Duration::from_millis(200)));
    for i in 0..20 {
        let started = Instant::now();
        let gave_up = within(1).scope(rig.get(&format!("uncached-{i}"))).await.unwrap_err();
        assert_eq!(gave_up.code(), Code::DeadlineExceeded, "{gave_up:?}");
        assert_eq!(started.elapsed(), Duration::from_millis(1), "each caller waits under its own deadline only");
    }
    assert_eq!(rig.breaker.state(), BreakerState::Closed, "20 impatient callers are no backend failure");
    let got = rig.get("later").await.expect("a normal caller afterwards is served");
    assert_eq!(got, (b"for the patient caller".to_vec(), Origin::Backend, Duration::ZERO));
    // The reads the impatient callers started went on under the backend's
    // own timeout and were cached for whoever asks next.
    tokio::time::advance(Duration::from_millis(200)).await;
    let calls = rig.faulty.calls();
    for i in 0..20 {
        assert_eq!(rig.get(&format!("uncached-{i}")).await.unwrap().1, Origin::Cache);
    }
    assert_eq!(rig.faulty.calls(), calls);
    assert_eq!(rig.breaker.state(), BreakerState::Closed);
}

/// The shared read does not inherit the deadline of the caller that
/// started it: a patient caller joining it gets the value.
#[tokio::test(start_paused = true)]
async fn an_impatient_caller_does_not_fail_the_shared_read_for_its_joiners() {
    let rig = Arc::new(rig(cache(60, 0), settings(5, 1, 1)));
    rig.put("k", b"v").await;
    rig.faulty.set(Fault::Slow(Duration::from_millis(300)));
    let impatient = {
        let rig = rig.clone();
        tokio::spawn(async move { within(10).scope(rig.get("k")).await })
    };
    tokio::task::yield_now().await;
    let patient = {
        let rig = rig.clone();
        tokio::spawn(async move { within(10_000).scope(rig.get("k")).await })
    };
    assert_eq!(impatient.await.unwrap().unwrap_err().code(), Code::DeadlineExceeded);
    let (value, origin, _) = patient.await.unwrap().expect("the joiner is served by the one shared read");
    assert_eq!((value.as_slice(), origin), (b"v".as_slice(), Origin::Cache));
    assert_eq!(rig.faulty.calls(), 2, "one put, one shared read");
    assert_eq!(rig.breaker.state(), BreakerState::Closed);
}

/// Without the cache (writes, listings, `cache.enabled: false`) a call
/// cut short by its caller's deadline is cancelled, and still not counted.
#[tokio::test(start_paused = true)]
async fn an_attempt_cut_by_the_callers_deadline_is_not_counted_against_the_backend() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let store = ResilientStore::new(faulty.clone(), "memory", settings(5, 3, 2));
    let name = SecretName::parse("main", "team", "k").unwrap();
    faulty.put(&name, &SecretValue::from_slice(b"v"), &Tags::new(), None).await.unwrap();
    faulty.set(Fault::Slow(Duration::from_millis(100)));
    for _ in 0..10 {
        let error = within(1).scope(store.get(&name, None)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::DeadlineExceeded);
        let (value, tags) = (SecretValue::from_slice(b"w"), Tags::new());
        let error = within(1).scope(store.put(&name, &value, &tags, None)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::DeadlineExceeded);
    }
    assert_eq!(store.breaker().state(), BreakerState::Closed);
    assert_eq!(store.get(&name, None).await.unwrap().value.expose(), b"v");
    // The backend's own timeout still counts: a hung backend opens it (two
    // attempts of one read, 5 s each).
    faulty.set(Fault::Hang);
    let started = Instant::now();
    assert_eq!(store.get(&name, None).await.unwrap_err().kind(), ErrorKind::Timeout);
    assert!(started.elapsed() >= Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(store.breaker().state(), BreakerState::Open);
}

/// A store whose listing fans out into `reads` further backend calls, as
/// the Vault store's does (one metadata read per secret), each asking for
/// its turn; the time of each call is kept.
struct FanOutStore {
    inner: MemoryStore,
    reads: usize,
    /// How long the backend then takes to answer the listing itself.
    then: Duration,
    calls: std::sync::Mutex<Vec<Duration>>,
    started: Instant,
}

impl FanOutStore {
    fn new(reads: usize, then: Duration) -> Arc<Self> {
        Arc::new(Self { inner: MemoryStore::new(), reads, then, calls: Default::default(), started: Instant::now() })
    }
}

#[async_trait::async_trait]
impl SecretStore for FanOutStore {
    fn capabilities(&self) -> secretd_core::Capabilities {
        self.inner.capabilities()
    }
    async fn get(
        &self,
        name: &SecretName,
        v: Option<&secretd_core::Version>,
    ) -> Result<secretd_core::Secret, secretd_core::StoreError> {
        self.inner.get(name, v).await
    }
    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        d: Option<&str>,
    ) -> Result<secretd_core::Version, secretd_core::StoreError> {
        self.inner.put(name, value, tags, d).await
    }
    async fn delete(&self, name: &SecretName) -> Result<(), secretd_core::StoreError> {
        self.inner.delete(name).await
    }
    async fn list(
        &self,
        tenant: &secretd_core::Tenant,
        namespace: &secretd_core::Namespace,
        filter: &Tags,
        page: &secretd_core::PageRequest,
    ) -> Result<secretd_core::Page, secretd_core::StoreError> {
        for _ in 0..self.reads {
            secretd_core::pacing::paced().await?;
            self.calls.lock().unwrap().push(self.started.elapsed());
        }
        tokio::time::sleep(self.then).await;
        self.inner.list(tenant, namespace, filter, page).await
    }
    async fn health(&self) -> Result<(), secretd_core::StoreError> {
        Ok(())
    }
}

/// Issue #12, item 18: the calls a listing fans out into go through the
/// backend's rate limit like any call; a listing that needs more of them
/// than fit in its time is refused as soon as its next slot falls past it,
/// which is our limit and not the backend's failure.
#[tokio::test(start_paused = true)]
async fn the_calls_a_listing_fans_out_into_take_their_rate_limit_slots() {
    let fan_out = FanOutStore::new(20, Duration::ZERO);
    let limited = Resilience { rate_limit: Some((10.0, 1)), ..settings(5, 3, 1) };
    let store = ResilientStore::new(fan_out.clone(), "memory", limited);
    let (tenant, namespace) =
        (secretd_core::Tenant::parse("main").unwrap(), secretd_core::Namespace::parse("team").unwrap());
    let page = secretd_core::PageRequest { size: 100, token: None };
    let started = Instant::now();
    store.list(&tenant, &namespace, &Tags::new(), &page).await.unwrap();
    // The listing's own call takes the first slot; its 20 reads the next
    // 20, one every 100 ms.
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let expected: Vec<_> = (1..=20).map(|i| Duration::from_millis(100 * i)).collect();
    assert_eq!(*fan_out.calls.lock().unwrap(), expected);

    // 60 reads need 6 s: more than the timeout (4.95 s). Refused once the
    // next slot falls past it, without opening the breaker (threshold 1).
    let limited = Resilience { timeout: Duration::from_millis(4_950), ..limited };
    let fan_out = FanOutStore::new(60, Duration::ZERO);
    let store = ResilientStore::new(fan_out.clone(), "memory", limited);
    let started = Instant::now();
    let refused = store.list(&tenant, &namespace, &Tags::new(), &page).await.unwrap_err();
    assert!(refused.message().contains("rate limited"), "{refused}");
    assert_eq!(started.elapsed(), Duration::from_millis(4_900), "the 50th slot (5 s) is past the timeout");
    assert_eq!(fan_out.calls.lock().unwrap().len(), 49, "slots within the timeout were served");
    assert_eq!(store.breaker().state(), BreakerState::Closed);
    // Slowed by our own slots until the timeout cut it: not counted either
    // (1 s of waiting, then a backend that would take 10 s).
    let store = ResilientStore::new(FanOutStore::new(10, Duration::from_secs(10)), "memory", limited);
    let refused = store.list(&tenant, &namespace, &Tags::new(), &page).await.unwrap_err();
    assert!(refused.message().contains("rate limited"), "{refused}");
    assert_eq!(store.breaker().state(), BreakerState::Closed);
}
