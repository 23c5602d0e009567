//! The admin HTTP listener: what Kubernetes probes and Prometheus scrape.
//!
//! - `GET /livez`: the process is alive and its runtime answers. Always
//!   200 while it can answer at all; a restart cures nothing else.
//! - `GET /readyz`: 200 when the backend passed its last health check, the
//!   state store answered its last refresh, and the daemon is not draining;
//!   503 with the reason otherwise, so traffic moves elsewhere while the
//!   process stays up. A backend outage is the exception while the cache
//!   serves stale values (`secret.cache.stale-if-error`): 200, with the body
//!   saying `degraded` and why, since every replica shares the backend and
//!   taking them all out would turn stale answers into none.
//! - `GET /metrics`: Prometheus text format (see [`crate::metrics`]).
//!
//! Plain HTTP on its own address (127.0.0.1:7879 by default), apart from
//! the gRPC port: probes and scrapers need no token, and none of these
//! answers carries a secret.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use tokio::net::TcpListener;

use crate::{resilience::breaker::BreakerState, server::Services};

/// What `/readyz` reports, kept current by the health check and the
/// shutdown path.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Each backend at the last health check, the default first; empty
    /// before the first.
    backends: Mutex<Vec<BackendHealth>>,
    serves_stale: AtomicBool,
    draining: AtomicBool,
}

/// One backend at the last health check.
#[derive(Debug, Clone)]
pub struct BackendHealth {
    pub name: Arc<str>,
    pub ok: bool,
    pub breaker: Option<BreakerState>,
}

impl BackendHealth {
    /// Why it is not ready, in fixed words and its name.
    fn problem(&self, default: bool) -> Option<String> {
        let breaker = match self.breaker {
            Some(BreakerState::Open) => "; circuit breaker open",
            Some(BreakerState::HalfOpen) => "; circuit breaker half-open",
            _ => "",
        };
        // The default backend keeps the words it always had.
        let who = if default { "backend".to_owned() } else { format!("backend {}", self.name) };
        (!self.ok).then(|| format!("{who} unavailable{breaker}"))
    }
}

impl Readiness {
    pub fn set_backends(&self, backends: Vec<BackendHealth>, serves_stale: bool) {
        *self.backends.lock().unwrap_or_else(|e| e.into_inner()) = backends;
        self.serves_stale.store(serves_stale, Ordering::Relaxed);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AdminState {
    services: Services,
    readiness: Arc<Readiness>,
}

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    readiness: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState { services, readiness });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let readiness = &state.readiness;
    let mut problems = Vec::new();
    if readiness.is_draining() {
        problems.push("shutting down".to_owned());
    }
    let backends = readiness.backends.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Before the first check nothing is known to be up.
    let default = match backends.first() {
        Some(first) => first.problem(true),
        None => Some("backend unavailable".to_owned()),
    };
    let serves_stale = readiness.serves_stale.load(Ordering::Relaxed);
    let mut degraded: Vec<String> = Vec::new();
    match default {
        Some(why) if serves_stale => {
            degraded.push(format!("{why}; cached values are served stale within secret.cache.stale-if-error"))
        }
        Some(why) => problems.push(why),
        None => {}
    }
    // A dedicated backend that is down fails its own routes only.
    degraded
        .extend(backends.iter().skip(1).filter_map(|b| b.problem(false)).map(|why| format!("{why}; its routes fail")));
    if !state.services.auth.state_store_reachable() {
        problems.push("state store unreachable".to_owned());
    }
    match (problems.is_empty(), degraded.is_empty()) {
        (true, true) => (StatusCode::OK, "ok\n".to_owned()),
        (true, false) => (StatusCode::OK, format!("degraded: {}\n", degraded.join("; "))),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", problems.join("; "))),
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let m = crate::metrics::get();
    m.cache_entries.set(i64::try_from(state.services.broker.cache_entries()).unwrap_or(i64::MAX));
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.encode())
}
