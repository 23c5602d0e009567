//! Bounded retries with exponential backoff and full jitter.
//!
//! Backends call their servers through [`retry`]: a transient failure
//! (`Unavailable`, `Timeout`: throttling, 5xx, a dropped connection) is tried
//! again a few times, after a random pause that doubles each time, so that a
//! fleet of sidecars hitting the same throttled server spreads out instead
//! of retrying in lockstep. Nothing else is retried: a `NotFound` or a
//! permission error will not change by asking again.

use std::{future::Future, time::Duration};

use rand::Rng;

use crate::StoreError;

/// How often and how long to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first included; 1 means no retry.
    pub attempts: u32,
    /// The cap of the first pause; each further pause doubles it.
    pub base_delay: Duration,
    /// No pause is longer than this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 3, base_delay: Duration::from_millis(50), max_delay: Duration::from_secs(1) }
    }
}

impl RetryPolicy {
    pub const NONE: RetryPolicy = RetryPolicy { attempts: 1, base_delay: Duration::ZERO, max_delay: Duration::ZERO };

    /// The pause before try `attempt + 1` (1-based `attempt`): a random
    /// duration between zero and `min(max_delay, base_delay * 2^(attempt-1))`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max_delay);
        if cap.is_zero() {
            return cap;
        }
        Duration::from_nanos(rand::rng().random_range(0..=cap.as_nanos().min(u64::MAX as u128) as u64))
    }
}

/// Runs `op` until it succeeds, fails with a non-transient error, or the
/// policy's tries are used up; the last error is returned.
pub async fn retry<T, F, Fut>(policy: RetryPolicy, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.kind().is_transient() && attempt < policy.attempts.max(1) => {
                tracing::debug!(attempt, kind = %e.kind(), "transient backend error, retrying: {e}");
                tokio::time::sleep(policy.backoff(attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn backoff_is_capped_and_grows() {
        let policy =
            RetryPolicy { attempts: 10, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(40) };
        for attempt in 1..12 {
            let cap = Duration::from_millis(10 * (1 << (attempt - 1)).min(4));
            for _ in 0..50 {
                assert!(policy.backoff(attempt) <= cap, "attempt {attempt}");
            }
        }
        assert_eq!(RetryPolicy::NONE.backoff(3), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_only_and_bounded() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(RetryPolicy::default(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::unavailable("throttled"))
        })
        .await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        calls.store(0, Ordering::SeqCst);
        let result: Result<(), _> = retry(RetryPolicy::default(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::not_found("x"))
        })
        .await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "NotFound is not retried");

        calls.store(0, Ordering::SeqCst);
        let result = retry(RetryPolicy::default(), || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(StoreError::new(ErrorKind::Timeout, "slow"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
    }
}
