//! Slows down guessing: each peer may fail authentication `burst` times,
//! then one more time per `60 / per_minute` seconds. A peer over its budget
//! is answered RESOURCE_EXHAUSTED before its credentials are even looked at.
//! Only failures spend the budget, so callers that authenticate never wait.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

/// Peers tracked at once; beyond it the fullest buckets are forgotten.
const MAX_PEERS: usize = 10_000;

pub struct FailureLimiter<K> {
    burst: f64,
    refill_per_sec: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
    /// Set once any failure was recorded, so that while nobody has failed
    /// (the normal case) a call takes no lock here at all.
    any_failures: AtomicBool,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            burst: burst.max(1) as f64,
            refill_per_sec: per_minute as f64 / 60.0,
            buckets: Mutex::new(HashMap::new()),
            any_failures: AtomicBool::new(false),
        }
    }

    fn level(&self, bucket: Bucket, now: Instant) -> f64 {
        (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.refill_per_sec).min(self.burst)
    }

    /// Whether `peer` has used up its failures.
    pub fn is_blocked(&self, peer: &K) -> bool {
        if !self.any_failures.load(Ordering::Relaxed) {
            return false;
        }
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.get(peer).is_some_and(|b| self.level(*b, Instant::now()) < 1.0)
    }

    /// Spends one failure of `peer`'s budget.
    pub fn record_failure(&self, peer: &K) {
        self.any_failures.store(true, Ordering::Relaxed);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_PEERS && !buckets.contains_key(peer) {
            let (burst, rate) = (self.burst, self.refill_per_sec);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let level = buckets.get(peer).map_or(self.burst, |b| self.level(*b, now));
        buckets.insert(peer.clone(), Bucket { tokens: (level - 1.0).max(0.0), at: now });
    }

    /// How long until `peer` may try again (for logs).
    pub fn retry_after(&self, peer: &K) -> Duration {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        match buckets.get(peer) {
            Some(b) if self.refill_per_sec > 0.0 => {
                Duration::from_secs_f64(((1.0 - self.level(*b, Instant::now())) / self.refill_per_sec).max(0.0))
            }
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_blocked_per_peer() {
        let limiter = FailureLimiter::<&str>::new(3, 0);
        for _ in 0..3 {
            assert!(!limiter.is_blocked(&"a"));
            limiter.record_failure(&"a");
        }
        assert!(limiter.is_blocked(&"a"));
        assert!(!limiter.is_blocked(&"b"), "another peer is not slowed");
    }

    #[test]
    fn refills_over_time() {
        let limiter = FailureLimiter::<&str>::new(1, 6000); // 100 per second
        limiter.record_failure(&"a");
        assert!(limiter.is_blocked(&"a"));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!limiter.is_blocked(&"a"));
    }
}
