//! The broker: every call, in the order that is the security model.
//!
//! validate the request → authorize the caller → cache → backend.
//!
//! Nothing reaches the cache before the caller is allowed, so a denied
//! caller is refused even when the value sits in the cache. Names are
//! validated first so that the policy and the cache only ever see valid
//! names. The gRPC layer (`server`) only converts messages; this module
//! holds the behaviour, so tests can drive it without a network.
//!
//! A `subkey` read is a read of the secret in every step (policy, cache,
//! backend); only its answer is cut down to one member, last ([`subkey`]).

pub(crate) mod subkey;

use std::sync::Arc;

use futures::StreamExt;
use secretd_core::{
    ErrorKind, Namespace, Page, PageRequest, Secret, SecretName, SecretStore, SecretValue, StoreError, Tags, Tenant,
    Version,
};
use tonic::Status;

use crate::{
    cache::{Freshness, Origin, Readable, SecretCache, Served},
    config::{RateLimitConfig, DEFAULT_BACKEND_NAME},
    policy::{Action, Caller, Decision, Denial, Policy, Step, Target, Verdict},
    resilience::{breaker::CircuitBreaker, rate_limit::RateLimiter},
    routes::{Route, Routes},
    status::{self, from_store_error},
};
use subkey::Subkey;

/// Request limits from `secret.*`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_value_size: usize,
    pub max_batch_size: usize,
    /// The deepest namespace a call may name.
    pub max_namespace_depth: usize,
    /// Worst-case backend reads per call, checked before any read.
    pub max_backend_reads_per_call: usize,
    /// Refs of one batch looked up at once.
    pub batch_concurrency: usize,
}

impl Limits {
    pub fn from_config(secret: &crate::config::SecretConfig) -> Self {
        Self {
            max_value_size: secret.max_value_size,
            max_batch_size: secret.max_batch_size,
            max_namespace_depth: secret.max_namespace_depth,
            max_backend_reads_per_call: secret.max_backend_reads_per_call,
            batch_concurrency: secret.batch_concurrency,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_size: 64 * 1024,
            max_batch_size: 100,
            max_namespace_depth: crate::config::default_max_namespace_depth(),
            max_backend_reads_per_call: crate::config::default_max_backend_reads_per_call(),
            batch_concurrency: crate::config::default_batch_concurrency(),
        }
    }
}

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;
const MAX_VERSION_LEN: usize = 128;
const MAX_DESCRIPTION_LEN: usize = 1024;
const MAX_PAGE_TOKEN_LEN: usize = 2048;

/// A secret as answered to a caller.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub secret: Arc<Served>,
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
    /// The parent namespace whose secret answered a read, when namespace
    /// inheritance found it above the one asked for.
    pub found_in: Option<Namespace>,
    /// The backend that answered a read, or that a write went to.
    pub backend: Option<Arc<str>>,
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

/// One reference of a batch: tenant, namespace, key, version (empty = latest),
/// subkey (empty = the whole value).
pub struct Ref<'a> {
    pub tenant: &'a str,
    pub namespace: &'a str,
    pub key: &'a str,
    pub version: &'a str,
    pub subkey: &'a str,
}

pub struct Broker {
    routes: Arc<Routes>,
    /// [`Routes::any_isolation`], once: read on every namespace of every read.
    any_route_isolation: bool,
    cache: SecretCache,
    policy: Policy,
    limits: Limits,
    /// `refresh = true` calls, per principal.
    refresh_limits: moka::sync::Cache<Arc<str>, Arc<RateLimiter>>,
    refresh_limit: RateLimitConfig,
}

impl Broker {
    /// A broker with one backend for everything.
    pub fn new(store: Arc<dyn SecretStore>, cache: SecretCache, policy: Policy, limits: Limits) -> Self {
        Self::with_routes(Routes::single(Route::plain(DEFAULT_BACKEND_NAME, store)), cache, policy, limits)
    }

    /// A broker over several backends, each namespace routed to one.
    pub fn with_routes(routes: Routes, cache: SecretCache, policy: Policy, limits: Limits) -> Self {
        Self {
            any_route_isolation: routes.any_isolation(),
            routes: Arc::new(routes),
            cache,
            policy,
            limits,
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

    /// The default backend's circuit breaker, for the health reports.
    /// Only while building: the routes are not shared yet.
    pub fn with_breaker(mut self, breaker: Arc<CircuitBreaker>) -> Self {
        if let Some(routes) = Arc::get_mut(&mut self.routes) {
            routes.default_route_mut().breaker = Some(breaker);
        }
        self
    }

    /// The default backend's circuit breaker.
    pub fn breaker(&self) -> Option<&Arc<CircuitBreaker>> {
        self.routes.default_route().breaker.as_ref()
    }

    /// Every backend, with its routes.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Entries in the cache, for the metrics.
    pub fn cache_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// The default backend's store.
    pub fn store(&self) -> &Arc<dyn SecretStore> {
        &self.routes.default_route().store
    }

    pub fn cache(&self) -> &SecretCache {
        &self.cache
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
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
        let name = self.parse_name(r.tenant, r.namespace, r.key)?;
        let version = parse_version(r.version)?;
        let subkey = Subkey::parse(r.subkey).map_err(|e| status::invalid_request(e.to_string()))?;
        let readable = self.authorize_lookup(caller, &name, trail)?;
        // A value refused for its age costs a backend read like `refresh`
        // does, so both spend the same per-caller allowance.
        let bypasses_cache = freshness.refresh
            || match freshness.max_age {
                Some(max_age) => self.cache.refused_for_age(&name, version.as_ref(), readable, max_age).await,
                None => false,
            };
        if bypasses_cache && !self.refresh_allowed(caller) {
            crate::metrics::get().refresh_rejections.inc();
            return Err(status::rate_limited(format!(
                "refresh = true and a max_age the cached value is older than are limited to {} per second per \
                 caller (burst {}; secret.cache.refresh-rate-limit); the cached value is still available without them",
                self.refresh_limit.requests_per_second, self.refresh_limit.burst
            )));
        }
        let started = std::time::Instant::now();
        let load = || -> crate::cache::Load {
            let (routes, name, version) = (self.routes.clone(), name.clone(), version.clone());
            Box::pin(async move { resolve(&routes, &name, version.as_ref(), readable).await })
        };
        let result = self.cache.get_or_load(&name, version.as_ref(), readable, freshness, load).await;
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => {
                trail.backend_latency = Some(started.elapsed());
                return Err(from_store_error(&e));
            }
        };
        trail.cache_hit = Some(answer.origin != Origin::Backend);
        trail.backend = Some(answer.secret.backend.clone());
        trail.origin = Some(answer.origin);
        if answer.origin != Origin::Cache {
            trail.backend_latency = Some(started.elapsed());
        }
        let found = &answer.secret.metadata.name;
        if found.namespace != name.namespace {
            // The audit names the namespace that answered, and the rule
            // that admitted it.
            if let Ok(reason) = self.decide_on_route(caller, Action::Read, found) {
                trail.reason = Some(reason.into());
            }
            trail.found_in = Some(found.namespace.clone());
        }
        let secret = match subkey {
            None => answer.secret,
            Some(subkey) => Arc::new(member_of(&answer.secret, &subkey)?),
        };
        Ok(Resolved { secret, origin: answer.origin, age: answer.age })
    }

    /// The policy's decision on every namespace a read of `name` may
    /// consult: the requested one and each parent. A namespace the caller
    /// may not read counts as absent, so the walk passes over it; only a
    /// caller who may read none of them is refused, with the decision on
    /// the namespace it asked for.
    fn authorize_lookup(&self, caller: &Caller, name: &SecretName, trail: &mut Trail) -> Result<Readable, Status> {
        let requested = self.decide_on_route(caller, Action::Read, name);
        let mut readable = if requested.is_ok() { Readable::NONE.with(0) } else { Readable::NONE };
        // Isolation and permissions refuse the caller, not a namespace: no
        // parent would be judged differently.
        if !requested.as_ref().is_err_and(Denial::is_caller_wide) {
            for (level, namespace) in name.namespace.self_and_ancestors().enumerate().skip(1) {
                let parent = name.in_namespace(namespace);
                if self.decide_on_route(caller, Action::Read, &parent).is_ok() {
                    readable = readable.with(level);
                }
            }
        }
        match requested {
            Err(_) if !readable.is_empty() => {
                trail.allowed = Some(true);
                trail.reason =
                    Some(format!("{} is not readable by this caller; its readable parents are", name.namespace).into());
            }
            decision => self.record(decision, trail)?,
        }
        Ok(readable)
    }

    fn refresh_allowed(&self, caller: &Caller) -> bool {
        let key: Arc<str> = Arc::from(caller.principal.name.as_str());
        let limit = self.refresh_limit;
        self.refresh_limits
            .get_with(key, || Arc::new(RateLimiter::new(limit.requests_per_second, limit.burst)))
            .try_acquire()
    }

    /// Each item is answered on its own: one failing ref does not fail the
    /// batch. Only a batch that is too large fails as a whole: more refs
    /// than `max-batch-size`, or more backend reads in the worst case than
    /// `max-backend-reads-per-call`. At most `batch-concurrency` refs are
    /// looked up at once.
    #[allow(clippy::type_complexity)]
    pub async fn batch_get(
        &self,
        caller: &Caller,
        refs: Vec<Ref<'_>>,
    ) -> Result<Vec<(Result<Resolved, Status>, Trail)>, Status> {
        if refs.len() > self.limits.max_batch_size {
            return Err(status::invalid_request(format!(
                "a batch may hold at most {} refs (secret.max-batch-size), got {}",
                self.limits.max_batch_size,
                refs.len()
            )));
        }
        let worst_case: usize = refs.iter().map(|r| self.worst_case_reads(r)).sum();
        if worst_case > self.limits.max_backend_reads_per_call {
            return Err(status::invalid_request(format!(
                "this batch could take {worst_case} backend reads (one per namespace its lookups may consult, two \
                 with a pinned version); at most {} are allowed per call (secret.max-backend-reads-per-call)",
                self.limits.max_backend_reads_per_call
            )));
        }
        // The lookups are made before the stream, not by a closure inside
        // it: a closure's higher-ranked lifetimes would keep the handler's
        // future from being `Send`.
        let lookups: Vec<_> = refs.into_iter().map(|r| self.batch_item(caller, r)).collect();
        Ok(futures::stream::iter(lookups).buffered(self.limits.batch_concurrency.max(1)).collect().await)
    }

    async fn batch_item(&self, caller: &Caller, r: Ref<'_>) -> (Result<Resolved, Status>, Trail) {
        let mut trail = Trail::default();
        let result = self.get(caller, r, &mut trail).await;
        (result, trail)
    }

    /// The most backend reads one ref's lookup can make (an invalid ref
    /// makes none).
    fn worst_case_reads(&self, r: &Ref<'_>) -> usize {
        let depth = Namespace::parse(r.namespace).map_or(0, |ns| namespace_depth(&ns));
        let per_namespace = if r.version.is_empty() { 1 } else { 2 };
        depth.min(self.limits.max_namespace_depth) * per_namespace * self.routes.longest_chain()
    }

    pub async fn list(&self, caller: &Caller, q: ListQuery<'_>, trail: &mut Trail) -> Result<Page, Status> {
        let ListQuery { tenant, namespace, filter, page_size, page_token } = q;
        let tenant = Tenant::parse(tenant).map_err(invalid)?;
        let namespace = Namespace::parse(namespace).map_err(invalid)?;
        filter.validate().map_err(invalid)?;
        let size = match page_size {
            n if n < 0 => return Err(status::invalid_request("page_size must not be negative")),
            0 => DEFAULT_PAGE_SIZE,
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        if page_token.len() > MAX_PAGE_TOKEN_LEN {
            return Err(status::invalid_request("page_token is not one this server issued"));
        }
        let token = (!page_token.is_empty()).then(|| page_token.to_owned());
        self.check_depth(&namespace)?;
        self.authorize(caller, Action::List, Target::Namespace(&tenant, &namespace), trail)?;
        let route = self.routes.route(&tenant, &namespace);
        if let Err(denial) = route_isolation(route, caller) {
            return Err(self.record(Err(denial), trail).unwrap_err());
        }
        trail.backend = Some(route.name.clone());
        let started = std::time::Instant::now();
        let result = route.store.list(&tenant, &namespace, &filter, &PageRequest { size, token }).await;
        trail.backend_latency = Some(started.elapsed());
        let mut page = result.map_err(|e| from_store_error(&e))?;
        // A key the caller may not list stays unseen, names and tags alike;
        // a page may come back shorter than asked, with its next token.
        page.items.retain(|item| self.policy.decide(caller, Action::List, Target::Secret(&item.name)).is_ok());
        Ok(page)
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
        let name = self.parse_name(r.tenant, r.namespace, r.key)?;
        if value.is_empty() || value.len() > self.limits.max_value_size {
            return Err(status::invalid_request(format!(
                "value must be 1 to {} bytes (secret.max-value-size), got {}",
                self.limits.max_value_size,
                value.len()
            )));
        }
        tags.validate().map_err(invalid)?;
        if description.chars().count() > MAX_DESCRIPTION_LEN || description.chars().any(char::is_control) {
            return Err(status::invalid_request(format!(
                "description must be at most {MAX_DESCRIPTION_LEN} characters without control characters"
            )));
        }
        let route = self.writable_route(caller, Action::Write, &name, trail)?;
        self.cache.write_started();
        let started = std::time::Instant::now();
        let result = route.store.put(&name, &value, &tags, (!description.is_empty()).then_some(description)).await;
        trail.backend_latency = Some(started.elapsed());
        // Invalidate even on failure: a call that timed out may have landed.
        self.cache.invalidate(&name);
        result.map_err(|e| from_store_error(&e))
    }

    pub async fn delete(&self, caller: &Caller, r: Ref<'_>, trail: &mut Trail) -> Result<(), Status> {
        let name = self.parse_name(r.tenant, r.namespace, r.key)?;
        let route = self.writable_route(caller, Action::Delete, &name, trail)?;
        self.cache.write_started();
        let started = std::time::Instant::now();
        let result = delete_everywhere(&self.routes, route, &name).await;
        trail.backend_latency = Some(started.elapsed());
        self.cache.invalidate(&name);
        result.map_err(|e| from_store_error(&e))
    }

    /// The policy's decision on `name`, and the isolation of the backend
    /// that serves it.
    fn decide_on_route(&self, caller: &Caller, action: Action, name: &SecretName) -> Decision {
        let decision = self.policy.decide(caller, action, Target::Secret(name))?;
        if !self.any_route_isolation {
            return Ok(decision);
        }
        let route = self.routes.route_id(&name.tenant, &name.namespace);
        // A fallback's secrets stay under its isolation when another
        // backend serves them.
        for id in self.routes.chain(route) {
            route_isolation(self.routes.get(id), caller)?;
        }
        Ok(decision)
    }

    /// Authorizes a write or delete of `name` and returns the backend it
    /// goes to; a read-only backend refuses it before any call.
    fn writable_route(
        &self,
        caller: &Caller,
        action: Action,
        name: &SecretName,
        trail: &mut Trail,
    ) -> Result<&Route, Status> {
        self.record(self.decide_on_route(caller, action, name), trail)?;
        let route = self.routes.route(&name.tenant, &name.namespace);
        trail.backend = Some(route.name.clone());
        if route.read_only {
            return Err(status::read_only_backend(&route.name));
        }
        Ok(route)
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
        self.record(self.policy.decide(caller, action, target), trail)
    }

    /// Notes a decision in the trail and the metrics; a refusal becomes
    /// the caller's PERMISSION_DENIED.
    fn record(&self, decision: Decision, trail: &mut Trail) -> Result<(), Status> {
        trail.allowed = Some(decision.is_ok());
        match decision {
            Ok(reason) => {
                trail.reason = Some(reason.into());
                Ok(())
            }
            Err(denial) => {
                crate::metrics::get().denials.get_or_create(&crate::metrics::RuleLabel { rule: denial.rule }).inc();
                let status = status::denied(denial.reason.clone());
                trail.reason = Some(denial.reason.into());
                Err(status)
            }
        }
    }

    /// How the policy judges `action` on `name` by `caller`, namespace by
    /// namespace, without touching the cache or the backend: for a read,
    /// every namespace of the inheritance walk, in order; for the other
    /// actions, the one namespace they act on.
    pub fn explain(&self, caller: &Caller, action: Action, name: &SecretName) -> Result<Vec<Explained>, Status> {
        self.check_depth(&name.namespace)?;
        let explained = |namespace: &Namespace, target: Target<'_>| {
            let mut verdict = self.policy.judge(caller, action, target);
            let mut reason = match (self.policy.decide(caller, action, target), verdict.step) {
                (Err(denial), _) => denial.reason,
                (Ok(_), step @ Step::Rule { .. }) => {
                    format!("allowed by {}", self.policy.rule_text(step).unwrap_or_default())
                }
                (Ok(_), Step::DefaultAccess) => "no access rule matches; access.default-access: allow".into(),
                (Ok(reason), _) => reason.into(),
            };
            let route = self.routes.route_id(&name.tenant, namespace);
            if verdict.allowed {
                // The backend's own isolation, as the call would apply it.
                if let Some(denial) = self
                    .routes
                    .chain(route)
                    .into_iter()
                    .find_map(|id| route_isolation(self.routes.get(id), caller).err())
                {
                    verdict = Verdict { allowed: false, step: Step::BackendIsolation };
                    reason = denial.reason;
                }
            }
            Explained { namespace: namespace.clone(), verdict, reason, backend: self.routes.get(route).name.clone() }
        };
        Ok(match action {
            Action::Read => name
                .namespace
                .self_and_ancestors()
                .map(|ns| {
                    let candidate = name.in_namespace(ns);
                    explained(&candidate.namespace, Target::Secret(&candidate))
                })
                .collect(),
            Action::List => vec![explained(&name.namespace, Target::Namespace(&name.tenant, &name.namespace))],
            Action::Write | Action::Delete | Action::Admin => vec![explained(&name.namespace, Target::Secret(name))],
        })
    }

    /// Validates a name, within `secret.max-namespace-depth`.
    fn parse_name(&self, tenant: &str, namespace: &str, key: &str) -> Result<SecretName, Status> {
        let name = parse_name(tenant, namespace, key)?;
        self.check_depth(&name.namespace)?;
        Ok(name)
    }

    fn check_depth(&self, namespace: &Namespace) -> Result<(), Status> {
        let depth = namespace_depth(namespace);
        if depth > self.limits.max_namespace_depth {
            return Err(status::invalid_request(format!(
                "namespace {namespace} has {depth} levels; at most {} are allowed (secret.max-namespace-depth)",
                self.limits.max_namespace_depth
            )));
        }
        Ok(())
    }
}

/// The policy's decision on one namespace a call would consult.
#[derive(Debug, Clone)]
pub struct Explained {
    pub namespace: Namespace,
    /// The backend that serves the namespace.
    pub backend: Arc<str>,
    pub verdict: Verdict,
    /// The deciding step in words, naming the rule.
    pub reason: String,
}

/// How many namespaces an inheritance walk from `namespace` consults.
fn namespace_depth(namespace: &Namespace) -> usize {
    namespace.as_str().bytes().filter(|&b| b == b'.').count() + 1
}

/// Namespace inheritance: the requested namespace, then each parent the
/// caller may read (`readable`); the first namespace that has the key
/// answers. Each namespace is looked up in the backend that serves it, then
/// in that backend's fallbacks. A pinned version applies to that namespace:
/// if the key exists there without that version, the answer is NOT_FOUND
/// rather than a parent's version.
async fn resolve(
    routes: &Routes,
    name: &SecretName,
    version: Option<&Version>,
    readable: Readable,
) -> Result<Served, StoreError> {
    let mut looked_in = Vec::new();
    for (level, namespace) in name.namespace.self_and_ancestors().enumerate() {
        if !readable.includes(level) {
            continue;
        }
        let candidate = name.in_namespace(namespace);
        let chain = routes.chain(routes.route_id(&candidate.tenant, &candidate.namespace));
        for (i, id) in chain.iter().enumerate() {
            let route = routes.get(*id);
            match route.store.get(&candidate, version).await {
                Ok(secret) => {
                    if i > 0 && version.is_none() {
                        copy_on_read(routes.get(chain[0]), &secret).await;
                    }
                    return Ok(Served::new(secret, route.name.clone()));
                }
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                Err(e) => {
                    if let Some(v) = version {
                        if route.store.get(&candidate, None).await.is_ok() {
                            // In our words: the store's may quote the backend.
                            let message = format!("secret {candidate} has no version {v}");
                            return Err(StoreError::new(ErrorKind::NotFound, message).for_callers().with_source(e));
                        }
                    }
                }
            }
        }
        looked_in.push(candidate.namespace.to_string());
    }
    Err(StoreError::new(
        ErrorKind::NotFound,
        match version {
            None => format!("secret {name} not found (looked in {})", looked_in.join(", ")),
            Some(v) => format!("secret {name} version {v} not found (looked in {})", looked_in.join(", ")),
        },
    )
    .for_callers())
}

/// A route with `copy-on-read` keeps what its fallback answered, tags
/// included, so that a migration completes by use. A failed copy is
/// logged and the read still answered: the fallback still has it.
async fn copy_on_read(route: &Route, secret: &Secret) {
    if !route.copy_on_read || route.read_only {
        return;
    }
    let name = &secret.metadata.name;
    match route.store.put(name, &secret.value, &secret.metadata.tags, None).await {
        Ok(version) => {
            tracing::info!(backend = %route.name, secret = %name, %version, "copied on read from the fallback")
        }
        Err(e) => tracing::warn!(backend = %route.name, secret = %name, error = %e, "copy on read failed"),
    }
}

/// Deletes `name` from its route's backend and from every writable
/// fallback, so a migrated secret does not come back through one. NOT_FOUND
/// only when none had it.
async fn delete_everywhere(routes: &Routes, route: &Route, name: &SecretName) -> Result<(), StoreError> {
    let mut deleted = false;
    let mut not_found = None;
    let chain = routes.chain(routes.route_id(&name.tenant, &name.namespace));
    for id in chain {
        let backend = routes.get(id);
        // A read-only fallback gets no write call.
        if backend.read_only && !std::ptr::eq(backend, route) {
            continue;
        }
        match backend.store.delete(name).await {
            Ok(()) => deleted = true,
            Err(e) if e.kind() == ErrorKind::NotFound => not_found = Some(e),
            Err(e) => return Err(e),
        }
    }
    match (deleted, not_found) {
        (false, Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// The isolation of the backend `route` serves: its own
/// `denied-services`, besides the global ones.
fn route_isolation(route: &Route, caller: &Caller) -> Result<(), crate::policy::Denial> {
    let service = &caller.principal.service;
    if route.denies(service) {
        return Err(crate::policy::Denial {
            rule: Step::BackendIsolation.label(),
            reason: format!(
                "service type {service} may not use the secrets of backend {} (its isolation.denied-services)",
                route.name
            ),
        });
    }
    Ok(())
}

/// The secret as `served`, its value cut down to the member `subkey`. The
/// cached entry keeps the whole value, for the next subkey.
fn member_of(served: &Served, subkey: &Subkey) -> Result<Served, Status> {
    let value = subkey::member(&served.value, subkey)
        .map_err(|e| status::no_such_member(&served.metadata.name, subkey.as_str(), e))?;
    let secret = Secret { metadata: served.metadata.clone(), value };
    Ok(Served::new(secret, served.backend.clone()))
}

fn invalid(e: StoreError) -> Status {
    status::invalid_input(&e)
}

fn parse_name(tenant: &str, namespace: &str, key: &str) -> Result<SecretName, Status> {
    SecretName::parse(tenant, namespace, key).map_err(invalid)
}

fn parse_version(raw: &str) -> Result<Option<Version>, Status> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > MAX_VERSION_LEN || !raw.chars().all(|c| c.is_ascii_graphic()) {
        return Err(status::invalid_request(format!(
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
            Limits { max_value_size: 16, max_batch_size: 3, ..Limits::default() },
        )
    }

    fn r<'a>(ns: &'a str, key: &'a str) -> Ref<'a> {
        Ref { tenant: "", namespace: ns, key, version: "", subkey: "" }
    }

    fn caller(name: &str, service: &str) -> Caller {
        let principal = Principal {
            name: name.into(),
            service: service.into(),
            permissions: Permission::ALL.into_iter().collect(),
            namespaces: vec![],
            tenants: vec!["*".into()],
            expires_at: None,
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
        let pinned = |version| Ref { tenant: "", namespace: "company.team", key: "k", version, subkey: "" };
        assert_eq!(broker.get(&me, pinned("1"), &mut Trail::default()).await.unwrap().secret.value.expose(), b"c1");
        assert_eq!(broker.get(&me, pinned("3"), &mut Trail::default()).await.unwrap_err().code(), Code::NotFound);
        let deeper = Ref { tenant: "", namespace: "company.other", key: "k", version: "2", subkey: "" };
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

    fn member<'a>(ns: &'a str, key: &'a str, subkey: &'a str) -> Ref<'a> {
        Ref { subkey, ..r(ns, key) }
    }

    fn text(resolved: &Resolved) -> &str {
        std::str::from_utf8(resolved.secret.value.expose()).unwrap()
    }

    const DOC: &str = r#"{"DATABASE_PASSWORD": "pa\"ss", "port": 5432, "opts": {"ssl": true}, "hosts": ["a", "b"], "on": false, "none": null}"#;

    /// A broker whose values may be as large as `DOC`, over a counting store.
    fn subkey_broker() -> (Broker, Arc<CountingStore>) {
        let memory: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        let counting = Arc::new(CountingStore::new(memory, Duration::ZERO));
        let isolation = IsolationConfig { enabled: true, denied_services: vec!["EXECUTOR".into()] };
        let broker = broker_with(counting.clone(), isolation);
        let broker = Broker { limits: Limits { max_value_size: 1024, ..broker.limits }, ..broker };
        (broker, counting)
    }

    #[tokio::test]
    async fn subkeys_answer_one_member_from_one_backend_read() {
        let (broker, counting) = subkey_broker();
        let me = caller("me", "WORKER");
        let tags: Tags = [("team", "db")].into_iter().collect();
        let version = broker.put(&me, r("company", "db"), v(DOC.as_bytes()), tags, "", &mut Trail::default()).await;
        let version = version.unwrap();
        let mut after_first_read = None;
        let cases = [
            ("DATABASE_PASSWORD", "pa\"ss"),
            ("port", "5432"),
            ("opts", r#"{"ssl": true}"#),
            ("hosts", r#"["a", "b"]"#),
            ("on", "false"),
            ("none", "null"),
        ];
        for (i, (subkey, want)) in cases.into_iter().enumerate() {
            let mut trail = Trail::default();
            let got = broker.get(&me, member("company.team", "db", subkey), &mut trail).await.unwrap();
            assert_eq!(text(&got), want, "{subkey}");
            // The answer is the secret's, found in the parent namespace.
            assert_eq!(got.secret.metadata.version, version);
            assert_eq!(got.secret.metadata.tags.get("team"), Some("db"));
            assert_eq!(got.secret.metadata.name.namespace.as_str(), "company");
            assert_eq!(&*got.secret.backend, DEFAULT_BACKEND_NAME);
            assert_eq!(got.origin, if i == 0 { Origin::Backend } else { Origin::Cache }, "{subkey}");
            assert_eq!(trail.allowed, Some(true));
            after_first_read.get_or_insert(counting.gets());
        }
        let after_first_read = after_first_read.unwrap();
        // The whole value is the same cache entry.
        let whole = broker.get(&me, r("company.team", "db"), &mut Trail::default()).await.unwrap();
        assert_eq!((text(&whole), whole.origin), (DOC, Origin::Cache));
        // (The first read asked company.team, then company.)
        assert_eq!(counting.gets(), after_first_read, "one backend read serves every subkey and the whole value");
        // And a batch of several subkeys still costs no read.
        let refs = vec![member("company.team", "db", "port"), member("company.team", "db", "DATABASE_PASSWORD")];
        let batch = broker.batch_get(&me, refs).await.unwrap();
        assert_eq!(text(batch[0].0.as_ref().unwrap()), "5432");
        assert_eq!(text(batch[1].0.as_ref().unwrap()), "pa\"ss");
        assert_eq!(counting.gets(), after_first_read);
    }

    #[tokio::test]
    async fn subkey_errors_name_the_member_never_the_value() {
        let (broker, _) = subkey_broker();
        let me = caller("me", "WORKER");
        for (key, value) in [
            ("doc", DOC),
            ("plain", "hunter2-plain"),
            ("broken", r#"{"a": "hunter2-broken""#),
            ("list", r#"["hunter2"]"#),
        ] {
            broker.put(&me, r("a", key), v(value.as_bytes()), Tags::new(), "", &mut Trail::default()).await.unwrap();
        }
        let cases = [
            ("doc", "missing", Code::NotFound),
            ("doc", "port\u{1}", Code::InvalidArgument),
            ("plain", "a", Code::FailedPrecondition),
            ("broken", "a", Code::FailedPrecondition),
            ("list", "a", Code::FailedPrecondition),
        ];
        for (key, subkey, code) in cases {
            let err = broker.get(&me, member("a", key, subkey), &mut Trail::default()).await.unwrap_err();
            assert_eq!(err.code(), code, "{key}/{subkey}: {}", err.message());
            for leak in ["hunter2", "pa\"ss", "5432"] {
                assert!(!err.message().contains(leak), "{key}/{subkey}: {}", err.message());
            }
        }
        let missing = broker.get(&me, member("a", "doc", "missing"), &mut Trail::default()).await.unwrap_err();
        assert_eq!(missing.message(), r#"secret main/a/doc has no member "missing""#);
        let plain = broker.get(&me, member("a", "plain", "a"), &mut Trail::default()).await.unwrap_err();
        assert!(plain.message().contains("not a JSON object"), "{}", plain.message());
        let long = "k".repeat(256);
        let err = broker.get(&me, member("a", "doc", &long), &mut Trail::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("subkey"), "{}", err.message());
        // A missing secret stays NOT_FOUND for the secret, whatever the subkey.
        let absent = broker.get(&me, member("a", "absent", "x"), &mut Trail::default()).await.unwrap_err();
        assert_eq!(absent.code(), Code::NotFound);
        assert!(absent.message().contains("secret main/a/absent not found"), "{}", absent.message());
        // Each batch item has its own code.
        let refs = vec![member("a", "doc", "port"), member("a", "doc", "nope"), member("a", "plain", "x")];
        let codes: Vec<_> = broker
            .batch_get(&me, refs)
            .await
            .unwrap()
            .into_iter()
            .map(|(answer, _)| answer.map(|a| text(&a).to_owned()).map_err(|e| e.code()))
            .collect();
        assert_eq!(codes, [Ok("5432".to_owned()), Err(Code::NotFound), Err(Code::FailedPrecondition)]);
    }

    #[tokio::test]
    async fn a_denied_subkey_read_is_refused_before_the_value_is_looked_at() {
        let (broker, counting) = subkey_broker();
        let worker = caller("w", "WORKER");
        let executor = caller("e", "EXECUTOR");
        broker.put(&worker, r("a", "plain"), v(b"not json"), Tags::new(), "", &mut Trail::default()).await.unwrap();
        broker.put(&worker, r("a", "doc"), v(DOC.as_bytes()), Tags::new(), "", &mut Trail::default()).await.unwrap();
        broker.get(&worker, member("a", "doc", "port"), &mut Trail::default()).await.unwrap();
        let gets = counting.gets();
        // Neither the shape of the value nor the existence of a member
        // shows through a denial, cached or not.
        for (key, subkey) in [("doc", "port"), ("doc", "missing"), ("plain", "x"), ("absent", "x")] {
            let mut trail = Trail::default();
            let err = broker.get(&executor, member("a", key, subkey), &mut trail).await.unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{key}/{subkey}");
            assert_eq!(trail.allowed, Some(false));
        }
        let batch = broker.batch_get(&executor, vec![member("a", "doc", "port")]).await.unwrap();
        assert_eq!(batch[0].0.as_ref().unwrap_err().code(), Code::PermissionDenied);
        assert_eq!(counting.gets(), gets, "a denied call reached the backend");
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

/// The policy decides on every namespace a lookup consults, with the rules
/// `config/tls.yaml` ships.
#[cfg(test)]
mod inheritance_policy {
    use std::time::Duration;

    use secretd_memory::MemoryStore;
    use tonic::Code;

    use super::*;
    use crate::{
        auth::Principal,
        config::{AccessConfig, AccessRule, CacheConfig, IsolationConfig, Permission},
    };

    /// `access` and `secret.isolation` exactly as `config/tls.yaml` has
    /// them, plus `extra` rules.
    fn shipped_policy(extra: Vec<AccessRule>) -> Policy {
        let doc: serde_norway::Value = serde_norway::from_str(include_str!("../config/tls.yaml")).unwrap();
        let mut access: AccessConfig = serde_norway::from_value(doc["access"].clone()).unwrap();
        let isolation: IsolationConfig = serde_norway::from_value(doc["secret"]["isolation"].clone()).unwrap();
        access.rules.extend(extra);
        Policy::new(&isolation, &access)
    }

    fn caller(name: &str, service: &str, permissions: &[Permission], namespaces: &[&str]) -> Caller {
        let principal = Principal {
            name: name.into(),
            service: service.into(),
            permissions: permissions.iter().copied().collect(),
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            tenants: vec!["main".into()],
            expires_at: None,
        };
        Caller { principal: Arc::new(principal), peer: "test".into() }
    }

    fn r<'a>(ns: &'a str, key: &'a str) -> Ref<'a> {
        Ref { tenant: "", namespace: ns, key, version: "", subkey: "" }
    }

    fn ops() -> Caller {
        caller("ops", "SCHEDULER", &Permission::ALL, &[])
    }

    async fn seeded_broker(cache: CacheConfig) -> Broker {
        let ops_rule = AccessRule { principals: vec!["ops".into()], allow: vec!["*/*/*".into()], ..Default::default() };
        let broker = Broker::new(
            Arc::new(MemoryStore::new()),
            SecretCache::new(&cache),
            shipped_policy(vec![ops_rule]),
            Limits::default(),
        );
        for (ns, key, value) in [
            ("company", "db", "company-db"),
            ("company", "root", "company-root"),
            ("company.finance", "db", "finance-db"),
            ("company.team", "db", "team-db"),
            ("company.team", "root-pw", "team-root-pw"),
        ] {
            let value = SecretValue::from_slice(value.as_bytes());
            broker.put(&ops(), r(ns, key), value, Tags::new(), "", &mut Trail::default()).await.unwrap();
        }
        broker
    }

    fn cache_on() -> CacheConfig {
        CacheConfig { expire_after_write: Duration::from_secs(60), ..CacheConfig::default() }
    }

    #[tokio::test]
    async fn every_namespace_of_the_walk_is_authorized() {
        let broker = seeded_broker(cache_on()).await;
        let worker = caller("w", "WORKER", &[Permission::Read], &[]);
        let etl_token = caller("etl", "WORKER", &[Permission::Read], &["company.etl.*"]);
        let etl_certs = caller("etl-workers", "WORKER", &[Permission::Read], &["company.etl", "company.etl.*"]);
        let executor = caller("e", "EXECUTOR", &[Permission::Read], &[]);
        let ops = ops();
        // (caller, asked namespace, key, the value and where it was found, or the code)
        type Case<'a> = (&'a Caller, &'a str, &'a str, Result<(&'a str, &'a str), Code>);
        let cases: Vec<Case> = vec![
            // The review's first case: company.finance answered for company.finance.x.
            (&worker, "company.finance.x", "db", Err(Code::NotFound)),
            (&worker, "company.finance", "db", Err(Code::PermissionDenied)),
            (&worker, "company.team.etl", "db", Ok(("team-db", "company.team"))),
            (&worker, "company.team", "db", Ok(("team-db", "company.team"))),
            // `company` itself is outside `main/company.*/*`.
            (&worker, "company.other", "db", Err(Code::NotFound)),
            (&worker, "company", "db", Err(Code::PermissionDenied)),
            // The review's second case: a token for company.etl.* read company/root.
            (&etl_token, "company.etl.a", "root", Err(Code::NotFound)),
            (&etl_token, "company.etl", "root", Err(Code::PermissionDenied)),
            (&etl_certs, "company.etl.a.b", "db", Err(Code::NotFound)),
            // Isolation refuses the caller whatever the namespace.
            (&executor, "company.team", "db", Err(Code::PermissionDenied)),
            (&ops, "company.finance.x", "db", Ok(("finance-db", "company.finance"))),
            (&ops, "company.etl.a", "root", Ok(("company-root", "company"))),
        ];
        for round in ["backend", "cache"] {
            for (i, (c, ns, key, want)) in cases.iter().enumerate() {
                let mut trail = Trail::default();
                let got = broker.get(c, r(ns, key), &mut trail).await;
                let got = got
                    .as_ref()
                    .map(|s| {
                        (
                            std::str::from_utf8(s.secret.value.expose()).unwrap(),
                            s.secret.metadata.name.namespace.as_str(),
                        )
                    })
                    .map_err(Status::code);
                assert_eq!(&got, want, "{round} case {i}: {} reads {ns}/{key}", c.principal.name);
                if let Ok((_, found_in)) = want {
                    let audited = trail.found_in.as_ref().map_or(*ns, Namespace::as_str);
                    assert_eq!(audited, *found_in, "case {i}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_cached_answer_never_serves_a_caller_the_policy_judges_differently() {
        let broker = seeded_broker(cache_on()).await;
        let worker = caller("w", "WORKER", &[Permission::Read], &[]);
        // ops fills the cache with company.finance's value for company.finance.x ...
        let seen = broker.get(&ops(), r("company.finance.x", "db"), &mut Trail::default()).await.unwrap();
        assert_eq!(seen.secret.value.expose(), b"finance-db");
        assert_eq!(
            broker.get(&ops(), r("company.finance.x", "db"), &mut Trail::default()).await.unwrap().origin,
            Origin::Cache
        );
        // ... which the worker, who may not read company.finance, must not get.
        let err = broker.get(&worker, r("company.finance.x", "db"), &mut Trail::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert!(!err.message().contains("company.finance,"), "the answer names no unreadable namespace: {err:?}");
        let batch = broker.batch_get(&worker, vec![r("company.finance.x", "db"), r("company.etl.a", "root")]).await;
        for (result, _) in batch.unwrap() {
            assert_eq!(result.unwrap_err().code(), Code::NotFound);
        }
        // And the other way round: the worker's answer does not hide ops's.
        let ops_again = broker.get(&ops(), r("company.finance.x", "db"), &mut Trail::default()).await.unwrap();
        assert_eq!(ops_again.secret.value.expose(), b"finance-db");
    }

    #[tokio::test]
    async fn listing_shows_only_the_keys_the_caller_may_list() {
        let broker = seeded_broker(cache_on()).await;
        let policy = shipped_policy(vec![
            AccessRule { principals: vec!["ops".into()], allow: vec!["*/*/*".into()], ..Default::default() },
            AccessRule {
                services: vec!["WORKER".into()],
                deny: vec!["main/company.team/root-*".into()],
                ..Default::default()
            },
        ]);
        let broker = Broker { policy, ..broker };
        let worker = caller("w", "WORKER", &[Permission::List], &[]);
        let query =
            || ListQuery { tenant: "", namespace: "company.team", filter: Tags::new(), page_size: 0, page_token: "" };
        let keys: Vec<String> = broker
            .list(&worker, query(), &mut Trail::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|m| m.name.key.as_str().to_owned())
            .collect();
        assert_eq!(keys, ["db"], "root-pw is denied to workers: it must not be listed");
        let all = broker.list(&ops(), query(), &mut Trail::default()).await.unwrap().items.len();
        assert_eq!(all, 2);
    }

    #[tokio::test]
    async fn max_age_that_refuses_a_cached_value_spends_the_refresh_allowance() {
        let broker = seeded_broker(cache_on())
            .await
            .with_refresh_limit(RateLimitConfig { requests_per_second: 0.001, burst: 2 });
        let worker = caller("w", "WORKER", &[Permission::Read], &[]);
        broker.get(&worker, r("company.team", "db"), &mut Trail::default()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let zero = Freshness { max_age: Some(Duration::ZERO), refresh: false };
        let mut codes = Vec::new();
        for _ in 0..4 {
            let got = broker.get_with(&worker, r("company.team", "db"), zero, &mut Trail::default()).await;
            codes.push(got.map(|s| s.origin).map_err(|e| e.code()));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            codes,
            [Ok(Origin::Backend), Ok(Origin::Backend), Err(Code::ResourceExhausted), Err(Code::ResourceExhausted)],
            "max_age: 0s bypasses the cache like refresh = true, under the same limit"
        );
        // A max_age the cached value meets costs nothing.
        let lenient = Freshness { max_age: Some(Duration::from_secs(60)), refresh: false };
        assert_eq!(
            broker.get_with(&worker, r("company.team", "db"), lenient, &mut Trail::default()).await.unwrap().origin,
            Origin::Cache
        );
    }

    #[tokio::test]
    async fn deep_namespaces_and_costly_batches_are_refused_before_any_read() {
        let memory: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        let counting = Arc::new(secretd_core::testing::CountingStore::new(memory, Duration::ZERO));
        let limits =
            Limits { max_namespace_depth: 4, max_backend_reads_per_call: 20, max_batch_size: 100, ..Limits::default() };
        let broker = Broker::new(
            counting.clone(),
            SecretCache::new(&cache_on()),
            Policy::new(&IsolationConfig::default(), &AccessConfig::default()),
            limits,
        );
        let me = ops();
        let deep = "a.b.c.d.e";
        let err = broker.get(&me, r(deep, "k"), &mut Trail::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("secret.max-namespace-depth"), "{}", err.message());
        let mut trail = Trail::default();
        let put = broker.put(&me, r(deep, "k"), SecretValue::from_slice(b"x"), Tags::new(), "", &mut trail);
        assert_eq!(put.await.unwrap_err().code(), Code::InvalidArgument, "nothing is written where no read may reach");
        // 3 refs × 4 namespaces × 2 (pinned) = 24 > 20.
        let pinned = |_| Ref { tenant: "", namespace: "a.b.c.d", key: "k", version: "1", subkey: "" };
        let err = broker.batch_get(&me, (0..3).map(pinned).collect()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("secret.max-backend-reads-per-call"), "{}", err.message());
        assert_eq!(counting.gets(), 0, "refused before any backend read");
        // 2 refs × 4 × 2 = 16 fits: each namespace is read (and found missing).
        let answers = broker.batch_get(&me, (0..2).map(pinned).collect()).await.unwrap();
        assert!(answers.iter().all(|(a, _)| a.as_ref().unwrap_err().code() == Code::NotFound));
        assert!(counting.gets() <= 16, "{} reads", counting.gets());
    }

    #[tokio::test]
    async fn a_batch_looks_up_at_most_batch_concurrency_refs_at_once() {
        let memory: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        let gauge = Arc::new(secretd_core::testing::CountingStore::new(memory, Duration::from_millis(20)));
        let limits = Limits { batch_concurrency: 3, max_batch_size: 100, ..Limits::default() };
        let broker = Broker::new(
            gauge.clone(),
            SecretCache::new(&cache_on()),
            Policy::new(&IsolationConfig::default(), &AccessConfig::default()),
            limits,
        );
        let keys: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
        let refs = keys.iter().map(|k| r("a", k)).collect();
        let answers = broker.batch_get(&ops(), refs).await.unwrap();
        assert_eq!(answers.len(), 12);
        assert_eq!(gauge.peak_concurrent_gets(), 3, "at most batch-concurrency lookups at once");
    }
}
