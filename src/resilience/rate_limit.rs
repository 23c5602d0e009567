//! Rate limits: the backend's `rate-limit` (callers wait their turn) and
//! the per-caller limit on `refresh = true` (callers are refused).
//!
//! Both are a token bucket kept as one "theoretical arrival time" (GCRA):
//! a call reserves the next free slot under a short lock and then sleeps
//! until it, so reservations, and therefore waits, are served strictly in
//! arrival order, and a caller knows before waiting whether its slot falls
//! within its deadline. A caller that would wait past its deadline reserves
//! nothing and is answered UNAVAILABLE at once.
//!
//! The backend limiter adapts: a throttling answer from the backend halves
//! the rate (at most once a second, so one burst of throttled answers
//! counts once); each further second without one gives back a tenth of the
//! configured rate, until it is whole again (additive increase,
//! multiplicative decrease, as TCP does).
//!
//! Why not `governor`: it has no way to change the rate of a live limiter,
//! and its waiting is not first-come first-served nor deadline-aware.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

/// The rate may not fall below this share of the configured one.
const MIN_RATE_SHARE: f64 = 1.0 / 64.0;
/// How often the rate may halve, and how often it recovers a step.
const ADAPT_EVERY: Duration = Duration::from_secs(1);
/// Each recovery step gives back this share of the configured rate.
const RECOVERY_STEP_SHARE: f64 = 0.1;

#[derive(Debug)]
pub struct RateLimiter {
    configured: f64,
    burst: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Calls per second right now: `configured`, or less after throttling.
    rate: f64,
    /// When the bucket would be empty again if nothing more came: the
    /// arrival time of the next call that must wait.
    tat: Instant,
    last_adapted: Instant,
}

/// The wait would end after the caller's deadline.
#[derive(Debug, Clone, Copy)]
pub struct WouldExceedDeadline {
    pub wait: Duration,
}

impl RateLimiter {
    /// `per_second` > 0, `burst` ≥ 1 (checked by the config).
    pub fn new(per_second: f64, burst: u32) -> Self {
        let now = Instant::now();
        Self {
            configured: per_second,
            burst: burst.max(1),
            state: Mutex::new(State { rate: per_second, tat: now, last_adapted: now }),
        }
    }

    /// Reserves the next slot and returns when it starts, or refuses if
    /// that is after `deadline` (nothing is reserved then).
    pub fn reserve(&self, deadline: Option<Instant>) -> Result<Instant, WouldExceedDeadline> {
        let now = Instant::now();
        let mut state = self.lock();
        let interval = Duration::from_secs_f64(1.0 / state.rate);
        // A full bucket lets `burst` calls through back to back.
        let tolerance = interval.mul_f64(f64::from(self.burst - 1));
        let tat = state.tat.max(now);
        let start = (tat.checked_sub(tolerance).unwrap_or(now)).max(now);
        // A call that need not wait goes, whatever its deadline (a caller
        // asking "now?" passes a deadline a hair before our `now`).
        if let Some(deadline) = deadline.filter(|_| start > now) {
            if start > deadline {
                return Err(WouldExceedDeadline { wait: start - now });
            }
        }
        state.tat = tat + interval;
        Ok(start)
    }

    /// Waits for a slot, or refuses at once if it would come too late.
    pub async fn acquire(&self, deadline: Option<Instant>) -> Result<(), WouldExceedDeadline> {
        let start = self.reserve(deadline)?;
        if start > Instant::now() {
            crate::metrics::get().rate_limit_waits.inc();
            tokio::time::sleep_until(start).await;
        }
        Ok(())
    }

    /// A call without waiting: true if a slot is free now.
    pub fn try_acquire(&self) -> bool {
        self.reserve(Some(Instant::now())).is_ok()
    }

    /// The backend said it is throttling us.
    pub fn throttled(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        if now.duration_since(state.last_adapted) < ADAPT_EVERY && state.rate < self.configured {
            return;
        }
        let halved = (state.rate / 2.0).max(self.configured * MIN_RATE_SHARE);
        tracing::warn!(from = state.rate, to = halved, "backend throttled secretd: halving its rate limit");
        state.rate = halved;
        state.last_adapted = now;
    }

    /// A call went through unthrottled: recover a step if one is due.
    pub fn succeeded(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        if state.rate >= self.configured || now.duration_since(state.last_adapted) < ADAPT_EVERY {
            return;
        }
        state.rate = (state.rate + self.configured * RECOVERY_STEP_SHARE).min(self.configured);
        state.last_adapted = now;
        if state.rate >= self.configured {
            tracing::info!(rate = state.rate, "backend rate limit fully recovered");
        }
    }

    /// Calls per second allowed right now.
    pub fn current_rate(&self) -> f64 {
        self.lock().rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate_in_arrival_order() {
        let limiter = Arc::new(RateLimiter::new(10.0, 5));
        let started = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.reserve(None).unwrap(), started, "the burst goes at once");
        }
        // Then one every 100 ms, each later than the one before.
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiters: Vec<_> = (0..5)
            .map(|i| {
                let (limiter, order) = (limiter.clone(), order.clone());
                let start = limiter.reserve(None).unwrap();
                tokio::spawn(async move {
                    tokio::time::sleep_until(start).await;
                    order.lock().unwrap().push((i, Instant::now() - started));
                    let _ = limiter;
                })
            })
            .collect();
        for w in waiters {
            w.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let expected: Vec<_> = (0..5).map(|i| (i, Duration::from_millis(100 * (i as u64 + 1)))).collect();
        assert_eq!(order, expected);
    }

    /// On a running clock "now" moves between the caller's reading and
    /// the limiter's: a full bucket must still grant.
    #[test]
    fn try_acquire_grants_the_burst_on_a_running_clock() {
        let limiter = RateLimiter::new(0.01, 3);
        assert!((0..3).all(|_| limiter.try_acquire()));
        assert!(!limiter.try_acquire());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_deadline_is_refused_at_once_and_reserves_nothing() {
        let limiter = RateLimiter::new(1.0, 1);
        limiter.acquire(None).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(500);
        let refused = limiter.reserve(Some(deadline)).unwrap_err();
        assert_eq!(refused.wait, Duration::from_secs(1));
        // The refused caller took no slot: the next one is still 1 s away.
        assert_eq!(limiter.reserve(None).unwrap(), Instant::now() + Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_once_per_second_and_recovers_step_by_step() {
        let limiter = RateLimiter::new(100.0, 10);
        limiter.throttled();
        limiter.throttled();
        assert_eq!(limiter.current_rate(), 50.0, "one burst of throttled answers halves once");
        tokio::time::advance(ADAPT_EVERY).await;
        limiter.throttled();
        assert_eq!(limiter.current_rate(), 25.0);
        for _ in 0..200 {
            limiter.throttled();
        }
        tokio::time::advance(ADAPT_EVERY * 20).await;
        for _ in 0..20 {
            limiter.throttled();
            tokio::time::advance(ADAPT_EVERY).await;
        }
        assert!(limiter.current_rate() >= 100.0 / 64.0, "the rate has a floor");
        let floor = limiter.current_rate();
        // Recovery: +10 per second without throttling, up to the configured.
        limiter.succeeded();
        assert_eq!(limiter.current_rate(), floor + 10.0);
        limiter.succeeded();
        assert_eq!(limiter.current_rate(), floor + 10.0, "one step per second");
        for _ in 0..20 {
            tokio::time::advance(ADAPT_EVERY).await;
            limiter.succeeded();
        }
        assert_eq!(limiter.current_rate(), 100.0);
    }
}
