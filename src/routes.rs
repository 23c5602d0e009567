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
