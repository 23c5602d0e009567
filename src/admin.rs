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
    atomic::{AtomicBool, AtomicU8, Ordering},
    Arc,
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use tokio::net::TcpListener;

use crate::{resilience::breaker::BreakerState, server::Services};

/// What `/readyz` reports, kept current by the health check and the
/// shutdown path.
#[derive(Debug, Default)]
pub struct Readiness {
    backend_ok: AtomicBool,
    serves_stale: AtomicBool,
    /// The circuit breaker at the last health check: 0 closed, 1 half-open,
    /// 2 open.
    breaker: AtomicU8,
    draining: AtomicBool,
}

impl Readiness {
    pub fn set_backend(&self, ok: bool, serves_stale: bool, breaker: Option<BreakerState>) {
        self.backend_ok.store(ok, Ordering::Relaxed);
        self.serves_stale.store(serves_stale, Ordering::Relaxed);
        self.breaker.store(breaker.map_or(0, |b| b.gauge() as u8), Ordering::Relaxed);
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
    let backend =
        (!readiness.backend_ok.load(Ordering::Relaxed)).then(|| match readiness.breaker.load(Ordering::Relaxed) {
            2 => "backend unavailable; circuit breaker open",
            1 => "backend unavailable; circuit breaker half-open",
            _ => "backend unavailable",
        });
    let degraded = backend.filter(|_| readiness.serves_stale.load(Ordering::Relaxed));
    if let (Some(backend), None) = (backend, degraded) {
        problems.push(backend.to_owned());
    }
    if !state.services.auth.state_store_reachable() {
        problems.push("state store unreachable".to_owned());
    }
    match (problems.is_empty(), degraded) {
        (true, None) => (StatusCode::OK, "ok\n".to_owned()),
        (true, Some(why)) => (
            StatusCode::OK,
            format!("degraded: {why}; cached values are served stale within secret.cache.stale-if-error\n"),
        ),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", problems.join("; "))),
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let m = crate::metrics::get();
    m.cache_entries.set(i64::try_from(state.services.broker.cache_entries()).unwrap_or(i64::MAX));
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.encode())
}
