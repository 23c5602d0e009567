//! The broker: every call, in the order that is the security model.
//!
//! validate the request → authorize the caller → cache → backend.
//!
//! Nothing reaches the cache before the caller is allowed, so a denied
//! caller is refused even when the value sits in the cache. Names are
//! validated first so that the policy and the cache only ever see valid
//! names. The gRPC layer (`server`) only converts messages; this module
//! holds the behaviour, so tests can drive it without a network.

use std::sync::Arc;

use futures::future::join_all;
use secretd_core::{
    ErrorKind, Namespace, Page, PageRequest, Secret, SecretName, SecretStore, SecretValue, StoreError, Tags, Tenant,
    Version,
};
use tonic::Status;

use crate::{
    cache::{Freshness, Origin, SecretCache},
    config::RateLimitConfig,
    policy::{Action, Caller, Policy, Target},
    resilience::{breaker::CircuitBreaker, rate_limit::RateLimiter},
    status::from_store_error,
};

/// Request limits from `secret.*`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_value_size: usize,
    pub max_batch_size: usize,
}

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;
const MAX_VERSION_LEN: usize = 128;
const MAX_DESCRIPTION_LEN: usize = 1024;
const MAX_PAGE_TOKEN_LEN: usize = 2048;

/// A secret as answered to a caller.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub secret: Arc<Secret>,
    pub origin: Origin,
    /// Time since it was read from the backend.
    pub age: std::time::Duration,
}

/// What the broker learned while handling one decision, for its audit
/// record: the policy's reason, whether the cache answered, how long the
/// backend took.
#[derive(Debug, Clone, Default)]
pub struct Trail {
    pub allowed: Option<bool>,
    pub reason: Option<std::borrow::Cow<'static, str>>,
    pub cache_hit: Option<bool>,
    /// Where a read's answer came from.
    pub origin: Option<Origin>,
    pub backend_latency: Option<std::time::Duration>,
}

/// What a listing asks for.
pub struct ListQuery<'a> {
    pub tenant: &'a str,
    pub namespace: &'a str,
    pub filter: Tags,
    /// 0 means the default page size; capped at the maximum.
    pub page_size: i32,
    pub page_token: &'a str,
}

/// One reference of a batch: tenant, namespace, key, version (empty = latest).
pub struct Ref<'a> {
    pub tenant: &'a str,
    pub namespace: &'a str,
    pub key: &'a str,
    pub version: &'a str,
}

pub struct Broker {
    store: Arc<dyn SecretStore>,
    cache: SecretCache,
    policy: Policy,
    limits: Limits,
    breaker: Option<Arc<CircuitBreaker>>,
    /// `refresh = true` calls, per principal.
    refresh_limits: moka::sync::Cache<Arc<str>, Arc<RateLimiter>>,
    refresh_limit: RateLimitConfig,
}

impl Broker {
    pub fn new(store: Arc<dyn SecretStore>, cache: SecretCache, policy: Policy, limits: Limits) -> Self {
        Self {
            store,
            cache,
            policy,
            limits,
            breaker: None,
            // A principal idle for ten minutes starts again with a full
            // bucket; the bound keeps a flood of principals from growing it.
            refresh_limits: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(std::time::Duration::from_secs(600))
                .build(),
            refresh_limit: RateLimitConfig { requests_per_second: 1.0, burst: 5 },
        }
    }

    /// The per-principal limit on `refresh = true`.
    pub fn with_refresh_limit(mut self, limit: RateLimitConfig) -> Self {
        self.refresh_limit = limit;
        self
    }

    /// The backend's circuit breaker, for the health reports.
    pub fn with_breaker(mut self, breaker: Arc<CircuitBreaker>) -> Self {
        self.breaker = Some(breaker);
        self
    }

    pub fn breaker(&self) -> Option<&Arc<CircuitBreaker>> {
        self.breaker.as_ref()
    }

    /// Entries in the cache, for the metrics.
    pub fn cache_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    pub fn store(&self) -> &Arc<dyn SecretStore> {
        &self.store
    }

    pub fn cache(&self) -> &SecretCache {
        &self.cache
    }

    pub async fn get(&self, caller: &Caller, r: Ref<'_>, trail: &mut Trail) -> Result<Resolved, Status> {
        self.get_with(caller, r, Freshness::default(), trail).await
    }

    /// A read with the caller's freshness demands (`max_age`, `refresh`).
    pub async fn get_with(
        &self,
        caller: &Caller,
        r: Ref<'_>,
        freshness: Freshness,
        trail: &mut Trail,
    ) -> Result<Resolved, Status> {
        let name = parse_name(r.tenant, r.namespace, r.key)?;
        let version = parse_version(r.version)?;
        self.authorize(caller, Action::Read, Target::Secret(&name), trail)?;
        if freshness.refresh && !self.refresh_allowed(caller) {
            crate::metrics::get().refresh_rejections.inc();
            return Err(Status::resource_exhausted(format!(
                "refresh = true is limited to {} per second per caller (burst {}; secret.cache.refresh-rate-limit); \
                 the cached value is still available without it",
                self.refresh_limit.requests_per_second, self.refresh_limit.burst
            )));
        }
        let started = std::time::Instant::now();
        let load = || -> crate::cache::Load {
            let (store, name, version) = (self.store.clone(), name.clone(), version.clone());
            Box::pin(async move { resolve(&*store, &name, version.as_ref()).await })
        };
        let result = self.cache.get_or_load(&name, version.as_ref(), freshness, load).await;
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => {
                trail.backend_latency = Some(started.elapsed());
                return Err(from_store_error(&e));
            }
        };
        trail.cache_hit = Some(answer.origin != Origin::Backend);
        trail.origin = Some(answer.origin);
        if answer.origin != Origin::Cache {
            trail.backend_latency = Some(started.elapsed());
        }
        Ok(Resolved { secret: answer.secret, origin: answer.origin, age: answer.age })
    }

    fn refresh_allowed(&self, caller: &Caller) -> bool {
        let key: Arc<str> = Arc::from(caller.principal.name.as_str());
        let limit = self.refresh_limit;
        self.refresh_limits
            .get_with(key, || Arc::new(RateLimiter::new(limit.requests_per_second, limit.burst)))
            .try_acquire()
    }

    /// Each item is answered on its own: one failing ref does not fail the
    /// batch. Only a batch that is too large fails as a whole.
    #[allow(clippy::type_complexity)]
    pub async fn batch_get(
        &self,
        caller: &Caller,
        refs: Vec<Ref<'_>>,
    ) -> Result<Vec<(Result<Resolved, Status>, Trail)>, Status> {
        if refs.len() > self.limits.max_batch_size {
            return Err(Status::invalid_argument(format!(
                "a batch may hold at most {} refs (secret.max-batch-size), got {}",
                self.limits.max_batch_size,
                refs.len()
            )));
        }
        Ok(join_all(refs.into_iter().map(|r| async move {
            let mut trail = Trail::default();
            let result = self.get(caller, r, &mut trail).await;
            (result, trail)
        }))
        .await)
    }

    pub async fn list(&self, caller: &Caller, q: ListQuery<'_>, trail: &mut Trail) -> Result<Page, Status> {
        let ListQuery { tenant, namespace, filter, page_size, page_token } = q;
        let tenant = Tenant::parse(tenant).map_err(invalid)?;
        let namespace = Namespace::parse(namespace).map_err(invalid)?;
        filter.validate().map_err(invalid)?;
        let size = match page_size {
            n if n < 0 => return Err(Status::invalid_argument("page_size must not be negative")),
            0 => DEFAULT_PAGE_SIZE,
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        if page_token.len() > MAX_PAGE_TOKEN_LEN {
            return Err(Status::invalid_argument("page_token is not one this server issued"));
        }
        let token = (!page_token.is_empty()).then(|| page_token.to_owned());
        self.authorize(caller, Action::List, Target::Namespace(&tenant, &namespace), trail)?;
        let started = std::time::Instant::now();
        let result = self.store.list(&tenant, &namespace, &filter, &PageRequest { size, token }).await;
        trail.backend_latency = Some(started.elapsed());
        result.map_err(|e| from_store_error(&e))
    }

    pub async fn put(
        &self,
        caller: &Caller,
        r: Ref<'_>,
        value: SecretValue,
        tags: Tags,
        description: &str,
        trail: &mut Trail,
    ) -> Result<Version, Status> {
        let name = parse_name(r.tenant, r.namespace, r.key)?;
        if value.is_empty() || value.len() > self.limits.max_value_size {
            return Err(Status::invalid_argument(format!(
                "value must be 1 to {} bytes (secret.max-value-size), got {}",
                self.limits.max_value_size,
                value.len()
            )));
        }
        tags.validate().map_err(invalid)?;
        if description.chars().count() > MAX_DESCRIPTION_LEN || description.chars().any(char::is_control) {
            return Err(Status::invalid_argument(format!(
                "description must be at most {MAX_DESCRIPTION_LEN} characters without control characters"
            )));
        }
        self.authorize(caller, Action::Write, Target::Secret(&name), trail)?;
        self.cache.write_started();
        let started = std::time::Instant::now();
        let result = self.store.put(&name, &value, &tags, (!description.is_empty()).then_some(description)).await;
        trail.backend_latency = Some(started.elapsed());
        // Invalidate even on failure: a call that timed out may have landed.
        self.cache.invalidate(&name);
        result.map_err(|e| from_store_error(&e))
    }

    pub async fn delete(&self, caller: &Caller, r: Ref<'_>, trail: &mut Trail) -> Result<(), Status> {
        let name = parse_name(r.tenant, r.namespace, r.key)?;
        self.authorize(caller, Action::Delete, Target::Secret(&name), trail)?;
        self.cache.write_started();
        let started = std::time::Instant::now();
        let result = self.store.delete(&name).await;
        trail.backend_latency = Some(started.elapsed());
        self.cache.invalidate(&name);
        result.map_err(|e| from_store_error(&e))
    }

    /// Runs the policy and notes its reason. Public for the token
    /// administration service, which has no secret to name.
    pub fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        target: Target<'_>,
        trail: &mut Trail,
    ) -> Result<(), Status> {
        let decision = self.policy.decide(caller, action, target);
        trail.allowed = Some(decision.is_ok());
        match decision {
            Ok(reason) => {
                trail.reason = Some(reason.into());
                Ok(())
            }
            Err(denial) => {
                crate::metrics::get().denials.get_or_create(&crate::metrics::RuleLabel { rule: denial.rule }).inc();
                let status = Status::permission_denied(denial.reason.clone());
                trail.reason = Some(denial.reason.into());
                Err(status)
            }
        }
    }
}

/// Namespace inheritance: the requested namespace, then each parent;
/// the first namespace that has the key answers. A pinned version
/// applies to that namespace: if the key exists there without that
/// version, the answer is NOT_FOUND rather than a parent's version.
async fn resolve(store: &dyn SecretStore, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
    for namespace in name.namespace.self_and_ancestors() {
        let candidate = name.in_namespace(namespace);
        match store.get(&candidate, version).await {
            Ok(secret) => return Ok(secret),
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            Err(e) => {
                if let Some(v) = version {
                    if store.get(&candidate, None).await.is_ok() {
                        // In our words: the store's may quote the backend.
                        let message = format!("secret {candidate} has no version {v}");
                        return Err(StoreError::new(ErrorKind::NotFound, message).for_callers().with_source(e));
                    }
                }
            }
        }
    }
    let looked_in: Vec<String> = name.namespace.self_and_ancestors().map(|n| n.to_string()).collect();
    Err(StoreError::new(
        ErrorKind::NotFound,
        match version {
            None => format!("secret {name} not found (looked in {})", looked_in.join(", ")),
            Some(v) => format!("secret {name} version {v} not found (looked in {})", looked_in.join(", ")),
        },
    )
    .for_callers())
}

fn invalid(e: StoreError) -> Status {
    Status::invalid_argument(e.message().to_owned())
}

fn parse_name(tenant: &str, namespace: &str, key: &str) -> Result<SecretName, Status> {
    SecretName::parse(tenant, namespace, key).map_err(invalid)
}

fn parse_version(raw: &str) -> Result<Option<Version>, Status> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > MAX_VERSION_LEN || !raw.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Status::invalid_argument(format!(
            "version must be at most {MAX_VERSION_LEN} printable ASCII characters"
        )));
    }
    Ok(Some(Version(raw.to_owned())))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secretd_core::testing::CountingStore;
    use secretd_memory::MemoryStore;
    use tonic::Code;

    use super::*;
    use crate::{
        auth::Principal,
        config::{AccessConfig, CacheConfig, IsolationConfig, Permission},
    };

    fn broker_with(store: Arc<dyn SecretStore>, isolation: IsolationConfig) -> Broker {
        let cache = SecretCache::new(&CacheConfig {
            maximum_size: 100,
            expire_after_write: Duration::from_secs(60),
            ..CacheConfig::default()
        });
        Broker::new(
            store,
            cache,
            Policy::new(&isolation, &AccessConfig::default()),
            Limits { max_value_size: 16, max_batch_size: 3 },
        )
    }

    fn r<'a>(ns: &'a str, key: &'a str) -> Ref<'a> {
        Ref { tenant: "", namespace: ns, key, version: "" }
    }

    fn caller(name: &str, service: &str) -> Caller {
        let principal = Principal {
            name: name.into(),
            service: service.into(),
            permissions: Permission::ALL.into_iter().collect(),
            namespaces: vec![],
        };
        Caller { principal: Arc::new(principal), peer: "test".into() }
    }

    fn v(bytes: &[u8]) -> SecretValue {
        SecretValue::from_slice(bytes)
    }

    #[tokio::test]
    async fn inheritance_and_invalidation_through_parents() {
        let broker = broker_with(Arc::new(MemoryStore::new()), IsolationConfig::default());
        let me = caller("me", "WORKER");
        broker.put(&me, r("company", "db"), v(b"parent"), Tags::new(), "", &mut Trail::default()).await.unwrap();
        let got = broker.get(&me, r("company.team.etl", "db"), &mut Trail::default()).await.unwrap();
        assert_eq!(got.secret.value.expose(), b"parent");
        assert_eq!(got.secret.metadata.name.namespace.as_str(), "company");
        assert_eq!(
            broker.get(&me, r("company.team.etl", "db"), &mut Trail::default()).await.unwrap().origin,
            Origin::Cache
        );
        // A closer secret appears: the cached inherited answer must go.
        broker.put(&me, r("company.team", "db"), v(b"closer"), Tags::new(), "", &mut Trail::default()).await.unwrap();
        let got = broker.get(&me, r("company.team.etl", "db"), &mut Trail::default()).await.unwrap();
        assert_eq!(got.secret.value.expose(), b"closer");
        assert_eq!(got.origin, Origin::Backend);
        // And when it goes, the parent shows through again.
        broker.delete(&me, r("company.team", "db"), &mut Trail::default()).await.unwrap();
        assert_eq!(
            broker.get(&me, r("company.team.etl", "db"), &mut Trail::default()).await.unwrap().secret.value.expose(),
            b"parent"
        );
        let missing = broker.get(&me, r("company.team.etl", "nope"), &mut Trail::default()).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        assert!(missing.message().contains("company.team.etl, company.team, company"), "{}", missing.message());
    }

    #[tokio::test]
    async fn pinned_version_stays_in_the_namespace_that_has_the_key() {
        let broker = broker_with(Arc::new(MemoryStore::new()), IsolationConfig::default());
        let me = caller("me", "WORKER");
        for value in [b"p1", b"p2", b"p3"] {
            broker.put(&me, r("company", "k"), v(value), Tags::new(), "", &mut Trail::default()).await.unwrap();
        }
        broker.put(&me, r("company.team", "k"), v(b"c1"), Tags::new(), "", &mut Trail::default()).await.unwrap();
        let pinned = |version| Ref { tenant: "", namespace: "company.team", key: "k", version };
        assert_eq!(broker.get(&me, pinned("1"), &mut Trail::default()).await.unwrap().secret.value.expose(), b"c1");
        assert_eq!(broker.get(&me, pinned("3"), &mut Trail::default()).await.unwrap_err().code(), Code::NotFound);
        let deeper = Ref { tenant: "", namespace: "company.other", key: "k", version: "2" };
        assert_eq!(broker.get(&me, deeper, &mut Trail::default()).await.unwrap().secret.value.expose(), b"p2");
    }

    #[tokio::test]
    async fn bad_input_is_invalid_argument_and_writes_nothing() {
        let broker = broker_with(Arc::new(MemoryStore::new()), IsolationConfig::default());
        let me = caller("me", "WORKER");
        let code = |s: Status| s.code();
        assert_eq!(
            code(broker.put(&me, r("a", "k"), v(b""), Tags::new(), "", &mut Trail::default()).await.unwrap_err()),
            Code::InvalidArgument
        );
        let too_big =
            broker.put(&me, r("a", "k"), v(&[0; 17]), Tags::new(), "", &mut Trail::default()).await.unwrap_err();
        assert_eq!(too_big.code(), Code::InvalidArgument);
        assert!(too_big.message().contains("secret.max-value-size"));
        assert_eq!(
            code(broker.put(&me, r("a..b", "k"), v(b"x"), Tags::new(), "", &mut Trail::default()).await.unwrap_err()),
            Code::InvalidArgument
        );
        let bad_tags: Tags = [("", "x")].into_iter().collect();
        assert_eq!(
            code(broker.put(&me, r("a", "k"), v(b"x"), bad_tags, "", &mut Trail::default()).await.unwrap_err()),
            Code::InvalidArgument
        );
        assert_eq!(
            code(broker.get(&me, r("a", "k"), &mut Trail::default()).await.unwrap_err()),
            Code::NotFound,
            "a refused put wrote"
        );
        let refs = (0..4).map(|_| r("a", "k")).collect();
        assert_eq!(code(broker.batch_get(&me, refs).await.unwrap_err()), Code::InvalidArgument);
        assert_eq!(
            code(
                broker
                    .list(
                        &me,
                        ListQuery { tenant: "", namespace: "a", filter: Tags::new(), page_size: -1, page_token: "" },
                        &mut Trail::default()
                    )
                    .await
                    .unwrap_err()
            ),
            Code::InvalidArgument
        );
    }

    #[tokio::test]
    async fn denied_service_is_refused_before_cache_and_backend() {
        let memory: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        let counting = Arc::new(CountingStore::new(memory, Duration::ZERO));
        let isolation = IsolationConfig { enabled: true, denied_services: vec!["EXECUTOR".into()] };
        let broker = broker_with(counting.clone(), isolation);
        let worker = caller("w", "WORKER");
        let executor = caller("e", "EXECUTOR");
        broker.put(&worker, r("a", "k"), v(b"x"), Tags::new(), "", &mut Trail::default()).await.unwrap();
        broker.get(&worker, r("a", "k"), &mut Trail::default()).await.unwrap();
        let gets = counting.gets();
        // The value is cached now; the executor must still be refused, for
        // existing and missing secrets alike, without a backend call.
        for key in ["k", "missing"] {
            let err = broker.get(&executor, r("a", key), &mut Trail::default()).await.unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied);
        }
        let batch = broker.batch_get(&executor, vec![r("a", "k")]).await.unwrap();
        assert_eq!(batch[0].0.as_ref().unwrap_err().code(), Code::PermissionDenied);
        assert_eq!(counting.gets(), gets, "a denied call reached the backend");
        assert_eq!(
            broker.delete(&executor, r("a", "k"), &mut Trail::default()).await.unwrap_err().code(),
            Code::PermissionDenied
        );
        assert_eq!(broker.get(&worker, r("a", "k"), &mut Trail::default()).await.unwrap().secret.value.expose(), b"x");
    }

    #[tokio::test]
    async fn batch_answers_each_item_in_order() {
        let broker = broker_with(Arc::new(MemoryStore::new()), IsolationConfig::default());
        let me = caller("me", "WORKER");
        broker.put(&me, r("a", "one"), v(b"1"), Tags::new(), "", &mut Trail::default()).await.unwrap();
        let results = broker.batch_get(&me, vec![r("a", "one"), r("a", "missing"), r("a", "bad key")]).await.unwrap();
        assert_eq!(results[0].0.as_ref().unwrap().secret.value.expose(), b"1");
        assert_eq!(results[1].0.as_ref().unwrap_err().code(), Code::NotFound);
        assert_eq!(results[2].0.as_ref().unwrap_err().code(), Code::InvalidArgument);
    }
}
