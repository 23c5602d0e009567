//! The circuit breaker of one backend.
//!
//! Closed: calls go through, and consecutive transient failures are
//! counted. At `failure-threshold` the breaker opens: for `open-for`, calls
//! fail at once instead of waiting on a backend that is known to be down
//! (the cache can then answer stale without delay). After that, the breaker
//! is half-open: exactly one call at a time goes through as a probe; its
//! success closes the breaker, its failure opens it for another period.
//!
//! Only failures that say the backend is unwell count (`Unavailable`,
//! `Timeout`, `Throttled`); a `NotFound` is a healthy backend answering.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

/// What `secretd_circuit_breaker_state` and `/readyz` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half-open",
            BreakerState::Open => "open",
        }
    }

    /// The gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    /// 0 turns the breaker off.
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
    /// The backend's name, for the `circuit_breaker_state` gauge.
    backend: String,
}

/// Why a call was not let through: the breaker is open (or a probe is
/// already out), and when the next probe may go.
#[derive(Debug, Clone, Copy)]
pub struct Rejected {
    pub retry_in: Duration,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self::for_backend("default", threshold, open_for)
    }

    /// A breaker whose state the metrics report under `backend`.
    pub fn for_backend(backend: &str, threshold: u32, open_for: Duration) -> Self {
        let breaker =
            Self { threshold, open_for, state: Mutex::new(State::Closed { failures: 0 }), backend: backend.to_owned() };
        crate::metrics::get().breaker_state(&breaker.backend).set(BreakerState::Closed.gauge());
        breaker
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Lets a call through, or says why not. The ticket must be settled
    /// with [`Ticket::success`] or [`Ticket::failure`]; dropping it unsettled
    /// (a cancelled call) frees the probe slot without a verdict.
    pub fn admit(&self) -> Result<Ticket<'_>, Rejected> {
        if self.threshold == 0 {
            return Ok(Ticket { breaker: self, probe: false, settled: false });
        }
        let mut state = self.lock();
        let now = Instant::now();
        match *state {
            State::Closed { .. } => Ok(Ticket { breaker: self, probe: false, settled: false }),
            State::Open { until } if now < until => Err(Rejected { retry_in: until - now }),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                drop(state);
                self.publish(BreakerState::HalfOpen);
                Ok(Ticket { breaker: self, probe: true, settled: false })
            }
            State::HalfOpen { probing: true } => Err(Rejected { retry_in: Duration::ZERO }),
        }
    }

    fn settle(&self, probe: bool, healthy: bool) {
        if self.threshold == 0 {
            return;
        }
        let mut state = self.lock();
        let open = || State::Open { until: Instant::now() + self.open_for };
        let (next, changed) = match (&*state, healthy) {
            (State::Closed { .. }, true) => (State::Closed { failures: 0 }, None),
            (State::Closed { failures }, false) if failures + 1 >= self.threshold => (open(), Some(BreakerState::Open)),
            (State::Closed { failures }, false) => (State::Closed { failures: failures + 1 }, None),
            (State::HalfOpen { .. }, true) if probe => (State::Closed { failures: 0 }, Some(BreakerState::Closed)),
            (State::HalfOpen { .. }, false) if probe => (open(), Some(BreakerState::Open)),
            // A call admitted while closed that ends after the breaker
            // moved on says nothing about the present.
            _ => return,
        };
        *state = next;
        drop(state);
        if let Some(new) = changed {
            self.publish(new);
        }
    }

    fn release_probe(&self) {
        let mut state = self.lock();
        if let State::HalfOpen { probing } = &mut *state {
            *probing = false;
        }
    }

    fn publish(&self, state: BreakerState) {
        crate::metrics::get().breaker_state(&self.backend).set(state.gauge());
        let backend = &self.backend;
        match state {
            BreakerState::Open => tracing::warn!(
                backend,
                open_for = ?self.open_for,
                "circuit breaker open: backend calls fail fast until a probe succeeds"
            ),
            BreakerState::HalfOpen => tracing::info!(backend, "circuit breaker half-open: probing the backend"),
            BreakerState::Closed => tracing::info!(backend, "circuit breaker closed: the backend answers again"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain data, valid after any panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One admitted call.
#[must_use]
pub struct Ticket<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    settled: bool,
}

impl Ticket<'_> {
    /// The backend answered (with a value or a definite error).
    pub fn success(mut self) {
        self.settled = true;
        self.breaker.settle(self.probe, true);
    }

    /// The backend was unreachable, slow or throttling.
    pub fn failure(mut self) {
        self.settled = true;
        self.breaker.settle(self.probe, false);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.breaker.release_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_one_probe_decides() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            breaker.admit().unwrap().failure();
        }
        // A success in between resets the count.
        breaker.admit().unwrap().success();
        for _ in 0..2 {
            breaker.admit().unwrap().failure();
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.admit().unwrap().failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        let rejected = breaker.admit().err().expect("open breaker lets nothing through");
        assert_eq!(rejected.retry_in, Duration::from_secs(10));

        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let probe = breaker.admit().unwrap();
        assert!(breaker.admit().is_err(), "only one probe at a time");
        probe.failure();
        assert_eq!(breaker.state(), BreakerState::Open, "a failed probe opens it again");

        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = breaker.admit().unwrap();
        drop(probe);
        // A cancelled probe frees the slot without a verdict.
        let probe = breaker.admit().unwrap();
        probe.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.admit().unwrap().success();
    }

    #[tokio::test(start_paused = true)]
    async fn late_answers_of_calls_admitted_while_closed_do_not_close_an_open_breaker() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(5));
        let slow = breaker.admit().unwrap();
        breaker.admit().unwrap().failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        slow.success();
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn threshold_zero_turns_it_off() {
        let breaker = CircuitBreaker::new(0, Duration::from_secs(5));
        for _ in 0..100 {
            breaker.admit().unwrap().failure();
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
