//! Slows down guessing: each key (for basic auth, an address and a user
//! name) may fail `burst` times, then one more time per `60 / per_minute`
//! seconds. A key over its budget is answered RESOURCE_EXHAUSTED, whether
//! or not its credentials are right this time, so the limiter cannot be
//! used as an oracle.
//!
//! The table is a bounded moka cache rather than a map scanned when full:
//! inserts and evictions are O(1), and its admission policy (TinyLFU)
//! favours keys that keep coming back, so a flood of one-off keys (an
//! attacker cycling user names) does not push out the bucket of the key
//! that is actually guessing, as plain LRU eviction would. A bucket is
//! forgotten once it would have refilled, since a full bucket and no bucket
//! mean the same.

use std::{
    hash::Hash,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use moka::sync::Cache;

/// Keys tracked at once; beyond it moka evicts the least promising.
pub const MAX_TRACKED: u64 = 50_000;

/// The longest a bucket is remembered without failures (a very low
/// `per-minute` would otherwise keep it for days).
const MAX_MEMORY: Duration = Duration::from_secs(24 * 3600);

pub struct FailureLimiter<K> {
    burst: f64,
    refill_per_sec: f64,
    buckets: Cache<K, Arc<Mutex<Bucket>>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> FailureLimiter<K> {
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self::with_capacity(burst, per_minute, MAX_TRACKED)
    }

    pub fn with_capacity(burst: u32, per_minute: u32, capacity: u64) -> Self {
        let burst = f64::from(burst.max(1));
        let refill_per_sec = f64::from(per_minute) / 60.0;
        let refilled_after = if refill_per_sec > 0.0 {
            Duration::try_from_secs_f64(burst / refill_per_sec).unwrap_or(MAX_MEMORY).min(MAX_MEMORY)
        } else {
            MAX_MEMORY
        };
        let buckets = Cache::builder().max_capacity(capacity).time_to_idle(refilled_after).build();
        Self { burst, refill_per_sec, buckets }
    }

    fn level(&self, bucket: Bucket, now: Instant) -> f64 {
        (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.refill_per_sec).min(self.burst)
    }

    /// Whether `key` has used up its failures.
    pub fn is_blocked(&self, key: &K) -> bool {
        self.buckets.get(key).is_some_and(|b| self.level(*lock(&b), Instant::now()) < 1.0)
    }

    /// Spends one failure of `key`'s budget.
    pub fn record_failure(&self, key: &K) {
        let now = Instant::now();
        let bucket =
            self.buckets.get_with(key.clone(), || Arc::new(Mutex::new(Bucket { tokens: self.burst, at: now })));
        let mut bucket = lock(&bucket);
        let level = self.level(*bucket, now);
        *bucket = Bucket { tokens: (level - 1.0).max(0.0), at: now };
    }

    /// Keys tracked now, after moka's pending evictions.
    pub fn tracked(&self) -> u64 {
        self.buckets.run_pending_tasks();
        self.buckets.entry_count()
    }
}

fn lock(bucket: &Mutex<Bucket>) -> std::sync::MutexGuard<'_, Bucket> {
    // Plain data, valid after any panic.
    bucket.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_blocked_per_key() {
        let limiter = FailureLimiter::<&str>::new(3, 0);
        for _ in 0..3 {
            assert!(!limiter.is_blocked(&"a"));
            limiter.record_failure(&"a");
        }
        assert!(limiter.is_blocked(&"a"));
        assert!(!limiter.is_blocked(&"b"), "another key is not slowed");
    }

    #[test]
    fn refills_over_time() {
        let limiter = FailureLimiter::<&str>::new(1, 6000); // 100 per second
        limiter.record_failure(&"a");
        assert!(limiter.is_blocked(&"a"));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!limiter.is_blocked(&"a"));
    }

    /// Issue #12, item 7: the table is bounded, whatever the flood, and the
    /// key that keeps guessing stays blocked through it.
    #[test]
    fn the_table_stays_bounded_under_a_flood_of_distinct_keys() {
        let limiter = FailureLimiter::<u64>::with_capacity(3, 1, 1_000);
        let guesser = u64::MAX;
        for _ in 0..3 {
            limiter.record_failure(&guesser);
        }
        for key in 0..100_000 {
            limiter.record_failure(&key);
            if key % 100 == 0 {
                // The guesser keeps trying (and being refused) meanwhile.
                assert!(limiter.is_blocked(&guesser), "the guesser's bucket was pushed out after {key} keys");
            }
        }
        let tracked = limiter.tracked();
        assert!(tracked <= 1_000, "{tracked} keys tracked, more than the bound");
        assert!(limiter.is_blocked(&guesser));
    }
}
