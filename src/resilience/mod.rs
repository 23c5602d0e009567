//! Resilience around one backend: what a call does when the backend is
//! slow, down or throttling.
//!
//! [`ResilientStore`] wraps the backend's store, and every call through it
//! goes, in this order:
//!
//! 1. the circuit breaker ([`breaker`]): if the backend is known to be down,
//!    fail at once;
//! 2. the rate limit ([`rate_limit`]), if configured: wait for a slot in
//!    arrival order, or fail at once when the slot is past the caller's
//!    deadline (or, for a caller without one, more than `timeout` away).
//!    An operation that fans out into more backend calls (a Vault listing
//!    reads each secret's metadata) takes a slot for each through
//!    `secretd_core::pacing`, within the attempt's time; a refused slot is
//!    our limit, not the backend's failure;
//! 3. the call itself, under `secret.<type>.timeout` (or less, if the
//!    caller's deadline is nearer). Only the backend's own timeout is a
//!    backend failure: an attempt cut short by the caller's deadline is
//!    answered `DeadlineExceeded` and counted neither by the breaker nor as
//!    a reason to retry, so impatient callers cannot open the breaker for
//!    everyone;
//! 4. on `Unavailable`, `Timeout` or `Throttled`, reads are tried again
//!    (`max-attempts` in all) after a jittered exponential pause, as long as
//!    the caller's deadline allows. Writes are tried again only after
//!    `Throttled`, the one answer that proves the write did not land: a
//!    timed-out put may have created a version, and a second would be a
//!    second version.
//!
//! The caller's deadline (gRPC's `grpc-timeout`) reaches the store through
//! a task-local [`CallContext`], set by the server for each call, so the
//! `SecretStore` trait stays free of transport concerns. Reads the cache
//! shares between callers run without it, under the backend's timeout
//! alone: each caller waits for the shared read under its own deadline
//! instead (see `cache`). The cache also
//! uses it to ask for a single attempt when it holds a stale value to fall
//! back on: that caller is better served stale now than fresh after all the
//! retries.

pub mod breaker;
pub mod rate_limit;

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use futures::future::Either;
use secretd_core::{
    pacing::{self, Pacer},
    Capabilities, ErrorKind, Namespace, Page, PageRequest, RetryPolicy, ScanSelection, Secret, SecretName, SecretStore,
    SecretValue, StoreError, Tags, Tenant, Version,
};
use tokio::time::Instant;

use self::{
    breaker::{BreakerState, CircuitBreaker},
    rate_limit::RateLimiter,
};

/// What one call may spend, set per gRPC call.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallContext {
    /// When the caller stops waiting (from `grpc-timeout`), if it said.
    pub deadline: Option<Instant>,
    /// Try once, without retries (the cache has a stale value to serve).
    pub single_attempt: bool,
}

tokio::task_local! {
    static CALL: CallContext;
}

impl CallContext {
    /// Runs `f` with this context visible to every store call it makes.
    /// An empty context outside any other is what `current` answers
    /// anyway, so most calls (no `grpc-timeout`) skip the task-local, which
    /// would otherwise be swapped in and out on every poll of the request.
    pub async fn scope<F: Future>(self, f: F) -> F::Output {
        let empty = self.deadline.is_none() && !self.single_attempt;
        if empty && CALL.try_with(|_| ()).is_err() {
            return f.await;
        }
        CALL.scope(self, f).await
    }

    /// The context of the running call, or none.
    pub fn current() -> CallContext {
        CALL.try_with(|c| *c).unwrap_or_default()
    }
}

/// `secret.<type>`'s resilience settings.
#[derive(Debug, Clone, Copy)]
pub struct Resilience {
    pub timeout: Duration,
    /// Tries of a read, the first included.
    pub max_attempts: u32,
    /// Consecutive failures that open the breaker; 0 turns it off.
    pub failure_threshold: u32,
    pub open_for: Duration,
    /// Calls per second and burst, if shaped.
    pub rate_limit: Option<(f64, u32)>,
}

impl Default for Resilience {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_attempts: 3,
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
            rate_limit: None,
        }
    }
}

/// A backend's store behind timeouts, retries, a circuit breaker and a
/// rate limit.
pub struct ResilientStore {
    inner: Arc<dyn SecretStore>,
    backend: Arc<str>,
    timeout: Duration,
    retry: RetryPolicy,
    breaker: Arc<CircuitBreaker>,
    limiter: Option<Arc<RateLimiter>>,
}

impl ResilientStore {
    pub fn new(inner: Arc<dyn SecretStore>, backend: impl Into<Arc<str>>, settings: Resilience) -> Self {
        let backend: Arc<str> = backend.into();
        let breaker = Arc::new(CircuitBreaker::for_backend(&backend, settings.failure_threshold, settings.open_for));
        Self {
            inner,
            backend,
            timeout: settings.timeout,
            retry: RetryPolicy { attempts: settings.max_attempts.max(1), ..RetryPolicy::default() },
            breaker,
            limiter: settings.rate_limit.map(|(rate, burst)| Arc::new(RateLimiter::new(rate, burst))),
        }
    }

    /// The breaker, for `/readyz` and the health check to report.
    pub fn breaker(&self) -> Arc<CircuitBreaker> {
        self.breaker.clone()
    }

    /// One call with all of the above. `retry_on` says which failures may
    /// be tried again for this operation.
    async fn call<T, F, Fut>(&self, what: &str, retry_on: fn(ErrorKind) -> bool, op: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let context = CallContext::current();
        let attempts = if context.single_attempt { 1 } else { self.retry.attempts };
        let metrics = crate::metrics::get();
        let mut attempt = 1;
        loop {
            let ticket = self.breaker.admit().map_err(|rejected| {
                metrics.circuit_breaker_rejections.inc();
                let next = if rejected.retry_in.is_zero() {
                    "a probe is testing it now".to_owned()
                } else {
                    format!("the next probe is in {:.1}s", rejected.retry_in.as_secs_f64())
                };
                StoreError::unavailable(format!(
                    "backend {} is failing; its circuit breaker is open and {next}",
                    self.backend
                ))
                .for_callers()
            })?;
            if let Some(limiter) = &self.limiter {
                // Without a deadline of its own, a call waits for its slot
                // no longer than one backend call may take.
                let wait_until = context.deadline.unwrap_or_else(|| Instant::now() + self.timeout);
                limiter.acquire(Some(wait_until)).await.map_err(|refused| {
                    metrics.rate_limit_rejections.inc();
                    StoreError::unavailable(format!(
                        "{} is rate limited (secret.{}.rate-limit): the next slot is in {:.3}s, later than this \
                         call can wait",
                        self.backend,
                        self.backend,
                        refused.wait.as_secs_f64()
                    ))
                    .for_callers()
                })?;
            }
            let backend_deadline = Instant::now() + self.timeout;
            let callers_deadline = context.deadline.filter(|d| *d < backend_deadline);
            let attempt_ends = callers_deadline.unwrap_or(backend_deadline);
            // The further backend calls the operation fans out into take
            // their slots too, within this attempt's time.
            let pacer = self.limiter.as_ref().map(|limiter| {
                Arc::new(FanOutPacer {
                    limiter: limiter.clone(),
                    until: attempt_ends,
                    backend: self.backend.clone(),
                    refused: AtomicBool::new(false),
                    waited: AtomicBool::new(false),
                })
            });
            let attempt_future = match &pacer {
                Some(pacer) => Either::Left(pacing::with_pacer(pacer.clone(), op())),
                None => Either::Right(op()),
            };
            let outcome = tokio::time::timeout_at(attempt_ends, attempt_future).await;
            let paced_out = pacer.as_ref().is_some_and(|p| match &outcome {
                Ok(Ok(_)) => false,
                Ok(Err(_)) => p.refused.load(Ordering::Relaxed),
                // Time spent waiting for our own slots is not the backend's.
                Err(_) => p.refused.load(Ordering::Relaxed) || p.waited.load(Ordering::Relaxed),
            });
            if paced_out {
                // Our own rate limit cut the operation short: no verdict on
                // the backend, and no retry (this attempt's time is spent).
                drop(ticket);
                return Err(match outcome {
                    Ok(Err(refused)) => refused,
                    _ => FanOutPacer::refusal(&self.backend),
                });
            }
            let result = match outcome {
                Ok(result) => result,
                // The caller gave up first: that says nothing about the
                // backend, so the ticket is dropped without a verdict.
                Err(_) if callers_deadline.is_some() => {
                    drop(ticket);
                    metrics.caller_deadline_cuts.inc();
                    return Err(StoreError::new(
                        ErrorKind::DeadlineExceeded,
                        format!("the call's deadline passed before {} answered {what}", self.backend),
                    )
                    .for_callers());
                }
                Err(_) => Err(StoreError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} did not answer {what} within {:?} (secret.{}.timeout)",
                        self.backend, self.timeout, self.backend
                    ),
                )
                .for_callers()),
            };
            let error = match result {
                Ok(value) => {
                    ticket.success();
                    if let Some(limiter) = &self.limiter {
                        limiter.succeeded();
                    }
                    return Ok(value);
                }
                Err(e) => e,
            };
            if error.kind().is_transient() {
                ticket.failure();
            } else {
                ticket.success();
            }
            if error.kind() == ErrorKind::Throttled {
                metrics.backend_throttled.get_or_create(&crate::metrics::BackendLabel::of(&self.backend)).inc();
                if let Some(limiter) = &self.limiter {
                    limiter.throttled();
                }
            }
            // An open breaker would refuse the next try anyway: answer now
            // rather than after a pause.
            if attempt >= attempts || !retry_on(error.kind()) || self.breaker.state() == BreakerState::Open {
                return Err(error);
            }
            let pause = self.retry.backoff(attempt);
            if context.deadline.is_some_and(|d| Instant::now() + pause >= d) {
                return Err(error);
            }
            tracing::debug!(attempt, kind = %error.kind(), "transient backend error during {what}, retrying: {error}");
            metrics.backend_retries.get_or_create(&crate::metrics::BackendLabel::of(&self.backend)).inc();
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}

/// Paces the backend calls one operation fans out into (a Vault listing
/// reads each secret's metadata) by the backend's rate limit, within the
/// attempt's time: a slot past it is refused at once, as for a call.
struct FanOutPacer {
    limiter: Arc<RateLimiter>,
    until: Instant,
    backend: Arc<str>,
    /// Set when a slot was refused, so the failure is not the backend's.
    refused: AtomicBool,
    /// Set when a call had to wait for its slot: if the operation then runs
    /// out of time, the wait (ours) is to blame as much as the backend.
    waited: AtomicBool,
}

impl FanOutPacer {
    fn refusal(backend: &str) -> StoreError {
        StoreError::unavailable(format!(
            "{backend} is rate limited (secret.{backend}.rate-limit): this call needs more backend calls than fit \
             in its time"
        ))
        .for_callers()
    }
}

#[async_trait]
impl Pacer for FanOutPacer {
    async fn next_call(&self) -> Result<(), StoreError> {
        let metrics = crate::metrics::get();
        let start = self.limiter.reserve(Some(self.until)).map_err(|_| {
            metrics.rate_limit_rejections.inc();
            self.refused.store(true, Ordering::Relaxed);
            Self::refusal(&self.backend)
        })?;
        if start > Instant::now() {
            metrics.rate_limit_waits.inc();
            self.waited.store(true, Ordering::Relaxed);
            tokio::time::sleep_until(start).await;
        }
        Ok(())
    }
}

fn read_retry(kind: ErrorKind) -> bool {
    kind.is_transient()
}

fn write_retry(kind: ErrorKind) -> bool {
    kind == ErrorKind::Throttled
}

#[async_trait]
impl SecretStore for ResilientStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        self.call("a read", read_retry, || self.inner.get(name, version)).await
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        description: Option<&str>,
    ) -> Result<Version, StoreError> {
        self.call("a write", write_retry, || self.inner.put(name, value, tags, description)).await
    }

    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        self.call("a delete", write_retry, || self.inner.delete(name)).await
    }

    async fn list(
        &self,
        tenant: &Tenant,
        namespace: &Namespace,
        filter: &Tags,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.call("a listing", read_retry, || self.inner.list(tenant, namespace, filter, page)).await
    }

    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        self.call("a scan", read_retry, || self.inner.scan(selection, page)).await
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        self.call("a version listing", read_retry, || self.inner.versions(name)).await
    }

    /// The periodic health check goes through the breaker too, so that
    /// once `open-for` has passed it can be the probe that closes it, and
    /// while the breaker is open it reports why without calling.
    async fn health(&self) -> Result<(), StoreError> {
        CallContext { deadline: None, single_attempt: true }
            .scope(self.call("a health check", read_retry, || self.inner.health()))
            .await
    }
}

#[cfg(test)]
mod tests;
