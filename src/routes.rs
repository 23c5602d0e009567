//! Which backend serves a tenant and namespace: the default backend, and
//! the `secret.dedicated` entries that take a whole tenant or one namespace
//! (and everything below it) for themselves.
//!
//! A (tenant, namespace) goes to the most specific entry: the longest
//! namespace match by segments, then the tenant's own entry, then the
//! default. The broker routes each namespace of an inheritance walk on its
//! own, so `company.finance.etl` may be looked up in a dedicated backend
//! and its parent `company` in the default one.

use std::{collections::HashMap, sync::Arc};

use secretd_core::{Namespace, SecretStore, Tenant};

use crate::{
    backends::{build_backend, BackendError},
    config::{Config, DEFAULT_BACKEND_NAME},
    resilience::breaker::CircuitBreaker,
};

/// Where a route's lookups go when its backend answers NOT_FOUND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteId(usize);

impl RouteId {
    pub const DEFAULT: RouteId = RouteId(0);
}

/// One backend and how its routes behave.
pub struct Route {
    /// `default`, or the entry's `name`.
    pub name: Arc<str>,
    pub store: Arc<dyn SecretStore>,
    pub breaker: Option<Arc<CircuitBreaker>>,
    pub read_only: bool,
    /// Service types refused on this route, besides the global isolation.
    pub denied_services: Vec<String>,
    pub fallback: Option<RouteId>,
    pub copy_on_read: bool,
}

impl Route {
    /// A writable route without fallback or isolation of its own.
    pub fn plain(name: &str, store: Arc<dyn SecretStore>) -> Self {
        Self {
            name: name.into(),
            store,
            breaker: None,
            read_only: false,
            denied_services: Vec::new(),
            fallback: None,
            copy_on_read: false,
        }
    }

    pub fn denies(&self, service: &str) -> bool {
        self.denied_services.iter().any(|s| s == service)
    }
}

/// Which route serves a (tenant, namespace), as pure data: the unit the
/// table tests exercise.
#[derive(Debug, Default)]
pub struct RouteTable {
    tenants: HashMap<String, TenantRoutes>,
}

#[derive(Debug, Default)]
struct TenantRoutes {
    whole: Option<RouteId>,
    /// Longest (most segments) first.
    namespaces: Vec<(Namespace, RouteId)>,
}

impl RouteTable {
    /// Adds an entry; `namespace` None takes the whole tenant. Config
    /// validation refuses two entries with the same tenant and namespace;
    /// here the first one wins.
    pub fn add(&mut self, tenant: &str, namespace: Option<Namespace>, id: RouteId) {
        let routes = self.tenants.entry(tenant.to_owned()).or_default();
        match namespace {
            None => {
                routes.whole.get_or_insert(id);
            }
            Some(ns) => {
                if !routes.namespaces.iter().any(|(n, _)| *n == ns) {
                    routes.namespaces.push((ns, id));
                    routes.namespaces.sort_by_key(|(n, _)| std::cmp::Reverse(segments(n)));
                }
            }
        }
    }

    /// The route of `namespace` in `tenant`.
    pub fn route(&self, tenant: &Tenant, namespace: &Namespace) -> RouteId {
        let Some(routes) = self.tenants.get(tenant.as_str()) else { return RouteId::DEFAULT };
        routes
            .namespaces
            .iter()
            .find(|(prefix, _)| is_within(namespace, prefix))
            .map(|(_, id)| *id)
            .or(routes.whole)
            .unwrap_or(RouteId::DEFAULT)
    }
}

fn segments(namespace: &Namespace) -> usize {
    namespace.as_str().split('.').count()
}

/// `namespace` is `prefix` or below it, by whole segments.
fn is_within(namespace: &Namespace, prefix: &Namespace) -> bool {
    let (ns, prefix) = (namespace.as_str(), prefix.as_str());
    ns == prefix || (ns.starts_with(prefix) && ns.as_bytes().get(prefix.len()) == Some(&b'.'))
}

/// Every backend of the daemon, and the table that picks one.
pub struct Routes {
    routes: Vec<Route>,
    table: RouteTable,
}

impl Routes {
    /// Whether any backend has an isolation of its own: without one, no
    /// lookup needs to walk the routes for it (the common case, on every
    /// read).
    pub fn any_isolation(&self) -> bool {
        self.routes.iter().any(|r| !r.denied_services.is_empty())
    }
}

impl Routes {
    /// One backend for everything.
    pub fn single(route: Route) -> Self {
        Self { routes: vec![route], table: RouteTable::default() }
    }

    /// The default route first, then the others; `entries` route them.
    pub fn new(default: Route, others: Vec<(Route, String, Option<Namespace>)>) -> Self {
        let mut routes = vec![default];
        let mut table = RouteTable::default();
        for (route, tenant, namespace) in others {
            table.add(&tenant, namespace, RouteId(routes.len()));
            routes.push(route);
        }
        Self { routes, table }
    }

    /// Resolves the `fallback` names of the entries, once all are known.
    pub fn set_fallback(&mut self, of: &str, to: &str) {
        let to = self.id_of(to);
        if let (Some(route), Some(to)) = (self.routes.iter_mut().find(|r| &*r.name == of), to) {
            route.fallback = Some(to);
        }
    }

    pub fn route(&self, tenant: &Tenant, namespace: &Namespace) -> &Route {
        self.get(self.table.route(tenant, namespace))
    }

    pub fn get(&self, id: RouteId) -> &Route {
        &self.routes[id.0]
    }

    pub fn default_route(&self) -> &Route {
        &self.routes[0]
    }

    pub fn default_route_mut(&mut self) -> &mut Route {
        &mut self.routes[0]
    }

    /// The most backends one namespace's lookup may consult.
    pub fn longest_chain(&self) -> usize {
        (0..self.routes.len()).map(|i| self.chain(RouteId(i)).len()).max().unwrap_or(1)
    }

    pub fn id_of(&self, name: &str) -> Option<RouteId> {
        self.routes.iter().position(|r| &*r.name == name).map(RouteId)
    }

    pub fn by_name(&self, name: &str) -> Option<&Route> {
        self.id_of(name).map(|id| self.get(id))
    }

    pub fn all(&self) -> &[Route] {
        &self.routes
    }

    /// The routes a lookup on `route` consults, in order: itself, then its
    /// fallbacks (config validation refuses cycles; the walk stops at one
    /// anyway).
    pub fn chain(&self, start: RouteId) -> Vec<RouteId> {
        let mut chain = vec![start];
        let mut next = self.get(start).fallback;
        while let Some(id) = next.filter(|id| !chain.contains(id)) {
            chain.push(id);
            next = self.get(id).fallback;
        }
        chain
    }

    pub fn route_id(&self, tenant: &Tenant, namespace: &Namespace) -> RouteId {
        self.table.route(tenant, namespace)
    }
}

/// The configured backends by name: `default`, then each
/// `secret.dedicated` entry, with the dotted path of each.
pub fn configured_backends(config: &Config) -> Vec<(&str, String, &dyn crate::backends::BackendBlocks)> {
    let secret = &config.secret;
    std::iter::once((DEFAULT_BACKEND_NAME, "secret".to_owned(), secret as &dyn crate::backends::BackendBlocks))
        .chain(
            secret
                .dedicated
                .iter()
                .enumerate()
                .map(|(i, d)| (d.name.as_str(), format!("secret.dedicated[{i}]"), d as _)),
        )
        .collect()
}

/// Builds one configured backend by its name (`default`, or an entry's),
/// for the CLI verbs that work on a backend directly (`migrate`, `rekey`).
pub async fn build_named(config: &Config, name: &str) -> Result<crate::backends::Backend, NamedBackendError> {
    let backends = configured_backends(config);
    let Some((name, at, blocks)) = backends.iter().find(|(n, _, _)| *n == name) else {
        let known = backends.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", ");
        return Err(NamedBackendError::Unknown { name: name.to_owned(), known });
    };
    Ok(build_backend(*blocks, at, name).await?)
}

#[derive(Debug, thiserror::Error)]
pub enum NamedBackendError {
    #[error("no backend is named {name}; the configuration has {known}")]
    Unknown { name: String, known: String },
    #[error(transparent)]
    Build(#[from] BackendError),
}

/// Builds every configured backend, connected, and the routes to them.
pub async fn build_routes(config: &Config) -> Result<Routes, BackendError> {
    let secret = &config.secret;
    let default = build_backend(secret, "secret", DEFAULT_BACKEND_NAME).await?;
    let mut default_route = Route::plain(DEFAULT_BACKEND_NAME, default.store);
    default_route.breaker = Some(default.breaker);
    default_route.read_only = secret.read_only;
    let mut others = Vec::new();
    for (i, entry) in secret.dedicated.iter().enumerate() {
        let built = build_backend(entry, &format!("secret.dedicated[{i}]"), &entry.name).await?;
        let mut route = Route::plain(&entry.name, built.store);
        route.breaker = Some(built.breaker);
        route.read_only = entry.read_only;
        route.copy_on_read = entry.copy_on_read;
        if entry.isolation.enabled {
            route.denied_services = entry.isolation.denied_services.clone();
        }
        // Validation refused a bad namespace before this runs.
        let namespace = entry.namespace.as_deref().and_then(|ns| Namespace::parse(ns).ok());
        others.push((route, entry.tenant.clone(), namespace));
    }
    let mut routes = Routes::new(default_route, others);
    for entry in &secret.dedicated {
        if let Some(fallback) = &entry.fallback {
            routes.set_fallback(&entry.name, fallback);
        }
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> Namespace {
        Namespace::parse(s).unwrap()
    }

    fn tenant(s: &str) -> Tenant {
        Tenant::parse(s).unwrap()
    }

    #[test]
    fn the_most_specific_entry_serves() {
        let mut table = RouteTable::default();
        table.add("acme", None, RouteId(1));
        table.add("main", Some(ns("company.finance")), RouteId(2));
        table.add("main", Some(ns("company.finance.payroll")), RouteId(3));
        table.add("acme", Some(ns("legal")), RouteId(4));
        let cases = [
            ("main", "company", 0),
            ("main", "company.finance", 2),
            ("main", "company.finance.etl", 2),
            ("main", "company.finance.payroll", 3),
            ("main", "company.finance.payroll.eu", 3),
            // Whole segments only: `company.financeX` is not below it.
            ("main", "company.financeX", 0),
            ("main", "company.finance-eu", 0),
            ("main", "other", 0),
            ("acme", "company.finance", 1),
            ("acme", "legal", 4),
            ("acme", "legal.contracts", 4),
            ("acme", "legalese", 1),
            ("other", "company.finance", 0),
        ];
        for (t, n, want) in cases {
            assert_eq!(table.route(&tenant(t), &ns(n)), RouteId(want), "{t}/{n}");
        }
    }

    #[test]
    fn the_order_of_entries_does_not_matter() {
        let mut forward = RouteTable::default();
        forward.add("main", Some(ns("a")), RouteId(1));
        forward.add("main", Some(ns("a.b.c")), RouteId(2));
        let mut backward = RouteTable::default();
        backward.add("main", Some(ns("a.b.c")), RouteId(2));
        backward.add("main", Some(ns("a")), RouteId(1));
        for n in ["a", "a.b", "a.b.c", "a.b.c.d"] {
            assert_eq!(forward.route(&tenant("main"), &ns(n)), backward.route(&tenant("main"), &ns(n)), "{n}");
        }
        assert_eq!(forward.route(&tenant("main"), &ns("a.b.c.d")), RouteId(2));
        assert_eq!(forward.route(&tenant("main"), &ns("a.b")), RouteId(1));
    }

    #[test]
    fn fallback_chains_stop_at_a_cycle() {
        let store = || -> Arc<dyn SecretStore> { Arc::new(secretd_memory::MemoryStore::new()) };
        let mut routes = Routes::new(
            Route::plain("default", store()),
            vec![
                (Route::plain("a", store()), "main".into(), Some(ns("a"))),
                (Route::plain("b", store()), "main".into(), Some(ns("b"))),
            ],
        );
        routes.set_fallback("a", "b");
        routes.set_fallback("b", "default");
        let a = routes.id_of("a").unwrap();
        let names: Vec<_> = routes.chain(a).into_iter().map(|id| routes.get(id).name.to_string()).collect();
        assert_eq!(names, ["a", "b", "default"]);
        routes.set_fallback("b", "a");
        assert_eq!(routes.chain(a).len(), 2);
    }
}

/// The broker over several routes: inheritance across backends, read-only
/// routes, fallbacks, copy-on-read and each route's isolation.
#[cfg(test)]
mod broker_tests {
    use std::time::Duration;

    use secretd_core::{testing::FaultyStore, SecretName, SecretValue, Tags};
    use secretd_memory::MemoryStore;
    use tonic::Code;

    use super::*;
    use crate::{
        auth::Principal,
        broker::{Broker, Limits, Ref, Trail},
        cache::SecretCache,
        config::{AccessConfig, CacheConfig, IsolationConfig, Permission},
        policy::{Caller, Policy},
    };

    struct Rig {
        broker: Broker,
        default: Arc<FaultyStore>,
        finance: Arc<FaultyStore>,
        archive: Arc<FaultyStore>,
    }

    /// default; `finance` for main/company.finance (falling back to default,
    /// copying on read, EXECUTOR refused); `archive`, read-only, for the
    /// whole tenant `acme`.
    fn rig() -> Rig {
        let store = || Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
        let (default, finance, archive) = (store(), store(), store());
        let mut finance_route = Route::plain("finance", finance.clone());
        finance_route.copy_on_read = true;
        finance_route.denied_services = vec!["EXECUTOR".into()];
        let mut archive_route = Route::plain("archive", archive.clone());
        archive_route.read_only = true;
        let mut routes = Routes::new(
            Route::plain("default", default.clone()),
            vec![
                (finance_route, "main".into(), Some(Namespace::parse("company.finance").unwrap())),
                (archive_route, "acme".into(), None),
            ],
        );
        routes.set_fallback("finance", "default");
        let cache =
            SecretCache::new(&CacheConfig { expire_after_write: Duration::from_secs(60), ..CacheConfig::default() });
        let policy = Policy::new(&IsolationConfig::default(), &AccessConfig::default());
        Rig { broker: Broker::with_routes(routes, cache, policy, Limits::default()), default, finance, archive }
    }

    fn caller(service: &str) -> Caller {
        let principal = Principal {
            name: format!("a-{}", service.to_lowercase()),
            service: service.into(),
            permissions: Permission::ALL.into_iter().collect(),
            namespaces: vec![],
            tenants: vec!["*".into()],
            expires_at: None,
        };
        Caller { principal: Arc::new(principal), peer: "test".into() }
    }

    fn r<'a>(tenant: &'a str, ns: &'a str, key: &'a str) -> Ref<'a> {
        Ref { tenant, namespace: ns, key, version: "", subkey: "" }
    }

    async fn seed(store: &dyn SecretStore, tenant: &str, ns: &str, key: &str, value: &str) {
        let name = SecretName::parse(tenant, ns, key).unwrap();
        store.put(&name, &SecretValue::from_slice(value.as_bytes()), &Tags::new(), None).await.unwrap();
    }

    async fn read(rig: &Rig, who: &Caller, reference: Ref<'_>) -> Result<(String, String, String), Code> {
        let mut trail = Trail::default();
        let answer = rig.broker.get(who, reference, &mut trail).await.map_err(|s| s.code())?;
        let value = String::from_utf8(answer.secret.value.expose().to_vec()).unwrap();
        assert_eq!(trail.backend.as_deref(), Some(&*answer.secret.backend), "the audit names the answering backend");
        Ok((value, answer.secret.metadata.name.namespace.to_string(), answer.secret.backend.to_string()))
    }

    #[tokio::test]
    async fn each_namespace_of_the_walk_is_looked_up_in_its_own_backend() {
        let rig = rig();
        seed(&*rig.default, "main", "company", "shared", "from-default").await;
        seed(&*rig.finance, "main", "company.finance", "db", "from-finance").await;
        let worker = caller("WORKER");
        // company.finance.etl and company.finance go to finance, company to default.
        assert_eq!(
            read(&rig, &worker, r("main", "company.finance.etl", "db")).await.unwrap(),
            ("from-finance".into(), "company.finance".into(), "finance".into())
        );
        assert_eq!(
            read(&rig, &worker, r("main", "company.finance.etl", "shared")).await.unwrap(),
            ("from-default".into(), "company".into(), "default".into())
        );
        // A put goes to the route's backend only.
        let mut trail = Trail::default();
        let value = SecretValue::from_slice(b"new");
        rig.broker
            .put(&worker, r("main", "company.finance.etl", "k"), value, Tags::new(), "", &mut trail)
            .await
            .unwrap();
        assert_eq!(trail.backend.as_deref(), Some("finance"));
        let name = SecretName::parse("main", "company.finance.etl", "k").unwrap();
        assert!(rig.finance.get(&name, None).await.is_ok());
        assert!(rig.default.get(&name, None).await.is_err());
    }

    #[tokio::test]
    async fn a_read_only_backend_gets_no_write_call() {
        let rig = rig();
        seed(&*rig.archive, "acme", "legal", "contract", "signed").await;
        let before = rig.archive.calls();
        let worker = caller("WORKER");
        for i in 0..50 {
            let key = format!("k{i}");
            let mut trail = Trail::default();
            let value = SecretValue::from_slice(b"v");
            let put = rig.broker.put(&worker, r("acme", "legal", &key), value, Tags::new(), "", &mut trail).await;
            let status = put.unwrap_err();
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert!(status.message().contains("backend archive is read-only"), "{}", status.message());
            let deleted = rig.broker.delete(&worker, r("acme", "legal", "contract"), &mut Trail::default()).await;
            assert_eq!(deleted.unwrap_err().code(), Code::FailedPrecondition);
        }
        assert_eq!(rig.archive.calls(), before, "a refused write reached the read-only backend");
        // Reads and listings work as before.
        assert_eq!(read(&rig, &worker, r("acme", "legal", "contract")).await.unwrap().0, "signed");
    }

    #[tokio::test]
    async fn a_miss_is_looked_up_in_the_fallback_and_copied_on_read() {
        let rig = rig();
        seed(&*rig.default, "main", "company.finance", "db", "old-home").await;
        let worker = caller("WORKER");
        let (value, _, backend) = read(&rig, &worker, r("main", "company.finance", "db")).await.unwrap();
        assert_eq!((value.as_str(), backend.as_str()), ("old-home", "default"));
        // copy-on-read wrote it, value and tags, into the route's backend.
        let name = SecretName::parse("main", "company.finance", "db").unwrap();
        assert_eq!(rig.finance.get(&name, None).await.unwrap().value.expose(), b"old-home");
        rig.broker.cache().invalidate(&name);
        assert_eq!(read(&rig, &worker, r("main", "company.finance", "db")).await.unwrap().2, "finance");
        // A delete removes it from both, so the fallback cannot bring it back.
        rig.broker.delete(&worker, r("main", "company.finance", "db"), &mut Trail::default()).await.unwrap();
        assert!(rig.finance.get(&name, None).await.is_err() && rig.default.get(&name, None).await.is_err());
        assert_eq!(read(&rig, &worker, r("main", "company.finance", "db")).await.unwrap_err(), Code::NotFound);
        let again = rig.broker.delete(&worker, r("main", "company.finance", "db"), &mut Trail::default()).await;
        assert_eq!(again.unwrap_err().code(), Code::NotFound);
    }

    #[tokio::test]
    async fn a_backends_isolation_holds_on_its_routes_only() {
        let rig = rig();
        seed(&*rig.default, "main", "company", "shared", "ok-for-all").await;
        seed(&*rig.finance, "main", "company.finance", "db", "finance-only").await;
        let (worker, executor) = (caller("WORKER"), caller("EXECUTOR"));
        // The worker caches the finance answer first: the executor must not
        // get it from the cache either.
        assert_eq!(read(&rig, &worker, r("main", "company.finance", "db")).await.unwrap().0, "finance-only");
        let gets = rig.finance.calls();
        // Its namespaces count as absent to the executor, as a namespace an
        // access rule denies does: the walk goes on to `company`.
        assert_eq!(read(&rig, &executor, r("main", "company.finance", "db")).await.unwrap_err(), Code::NotFound);
        // The walk passes over the finance namespaces to the default's parent.
        assert_eq!(read(&rig, &executor, r("main", "company.finance.etl", "shared")).await.unwrap().0, "ok-for-all");
        assert_eq!(read(&rig, &executor, r("main", "company.finance.etl", "db")).await.unwrap_err(), Code::NotFound);
        assert_eq!(rig.finance.calls(), gets, "an isolated caller's lookup reached the backend");
        let mut trail = Trail::default();
        let value = SecretValue::from_slice(b"v");
        let put =
            rig.broker.put(&executor, r("main", "company.finance", "x"), value, Tags::new(), "", &mut trail).await;
        assert_eq!(put.unwrap_err().code(), Code::PermissionDenied);
        assert_eq!(read(&rig, &executor, r("main", "company", "shared")).await.unwrap().0, "ok-for-all");
    }

    #[test]
    fn explain_shows_the_backend_and_its_isolation() {
        let rig = rig();
        let name = SecretName::parse("main", "company.finance.etl", "db").unwrap();
        let explained = rig.broker.explain(&caller("EXECUTOR"), crate::policy::Action::Read, &name).unwrap();
        let rows: Vec<_> = explained
            .iter()
            .map(|e| (e.namespace.to_string(), e.verdict.allowed, e.verdict.step.label(), &*e.backend))
            .collect();
        assert_eq!(
            rows,
            [
                ("company.finance.etl".to_owned(), false, "backend_isolation", "finance"),
                ("company.finance".to_owned(), false, "backend_isolation", "finance"),
                ("company".to_owned(), true, "default_access", "default"),
            ]
        );
        let worker = rig.broker.explain(&caller("WORKER"), crate::policy::Action::Read, &name).unwrap();
        assert!(worker.iter().all(|e| e.verdict.allowed), "{worker:?}");
    }
}
