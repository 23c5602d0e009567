//! The resilience settings: per backend block (`timeout`, `max-attempts`,
//! `circuit-breaker`, `rate-limit`) and the cache's (`stale-if-error`,
//! `refresh-ahead`, `negative-ttl`, `refresh-rate-limit`).

use std::time::Duration;

use serde::Deserialize;

use super::SecretConfig;
use crate::backends::BackendBlocks;
use crate::resilience::Resilience;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// `secret.<type>.circuit-breaker`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CircuitBreakerConfig {
    /// Consecutive failed calls (unreachable, timed out, throttled) that
    /// open the breaker; 0 turns it off.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// How long an open breaker fails calls at once before one probe.
    #[serde(default = "default_open_for", with = "super::de::duration")]
    pub open_for: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: default_failure_threshold(), open_for: default_open_for() }
    }
}

fn default_failure_threshold() -> u32 {
    5
}

fn default_open_for() -> Duration {
    Duration::from_secs(10)
}

/// `secret.<type>.rate-limit` and `secret.cache.refresh-rate-limit`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RateLimitConfig {
    pub requests_per_second: f64,
    /// Calls that may go back to back after a quiet spell; at least 1.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    1
}

pub(super) fn default_stale_if_error() -> Duration {
    Duration::from_secs(3600)
}

pub(super) fn default_refresh_ahead() -> f64 {
    0.2
}

pub(super) fn default_refresh_rate_limit() -> RateLimitConfig {
    RateLimitConfig { requests_per_second: 1.0, burst: 5 }
}

impl SecretConfig {
    /// The resilience settings of the default backend, and the dotted path
    /// of its block for error messages.
    pub fn resilience(&self) -> (Resilience, String) {
        let settings = self.selected().map(|block| block.resilience()).unwrap_or_default();
        (settings, format!("secret.{}", self.backend.as_str()))
    }

    /// Range checks of the cache's resilience settings (each backend
    /// block's are checked with its shared keys).
    pub(super) fn validate_resilience(&self, bad: &mut impl FnMut(&str, &'static str)) {
        // Each bound with its reason in words (reasons are literal text).
        let within = |field: &str,
                      value: Duration,
                      (max, reason): (Duration, &'static str),
                      bad: &mut dyn FnMut(&str, &'static str)| {
            if value > max {
                bad(field, reason);
            }
        };
        let month = (30 * DAY, "must be at most 30 days");
        let cache = &self.cache;
        within("secret.cache.expire-after-write", cache.expire_after_write, month, bad);
        within("secret.cache.stale-if-error", cache.stale_if_error, month, bad);
        within("secret.cache.negative-ttl", cache.negative_ttl, (DAY, "must be at most 1 day"), bad);
        if !(0.0..1.0).contains(&cache.refresh_ahead) {
            bad("secret.cache.refresh-ahead", "must be at least 0 and below 1 (a share of expire-after-write)");
        }
        let limit = cache.refresh_rate_limit;
        check_rate("secret.cache.refresh-rate-limit", limit.requests_per_second, limit.burst, bad);
    }
}

pub(crate) fn check_rate(field: &str, rate: f64, burst: u32, bad: &mut dyn FnMut(&str, &'static str)) {
    if !(rate.is_finite() && rate >= 0.001) {
        bad(&format!("{field}.requests-per-second"), "must be a number of at least 0.001");
    }
    if burst == 0 {
        bad(&format!("{field}.burst"), "must be at least 1");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load_str;

    fn load(yaml: &str) -> Result<crate::config::Config, String> {
        load_str(yaml, Path::new("test.yaml"), &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_a_full_block() {
        let config = load("secret:\n  type: memory\n").unwrap();
        let (r, block) = config.secret.resilience();
        assert_eq!(block, "secret.memory");
        assert_eq!((r.timeout, r.max_attempts, r.failure_threshold), (Duration::from_secs(5), 3, 5));
        assert_eq!(r.open_for, Duration::from_secs(10));
        assert!(r.rate_limit.is_none());
        let cache = &config.secret.cache;
        assert_eq!((cache.stale_if_error, cache.refresh_ahead), (Duration::from_secs(3600), 0.2));
        assert!(cache.negative_ttl.is_zero());

        let config = load(
            "secret:\n  type: vault\n  vault:\n    address: http://127.0.0.1:8200\n    token: {token: t}\n    \
             timeout: 2s\n    max-attempts: 5\n    circuit-breaker: {failure-threshold: 0}\n    \
             rate-limit: {requests-per-second: 250, burst: 20}\n  cache:\n    stale-if-error: 0s\n    \
             negative-ttl: 30s\n",
        )
        .unwrap();
        let (r, block) = config.secret.resilience();
        assert_eq!(block, "secret.vault");
        assert_eq!((r.timeout, r.max_attempts, r.failure_threshold), (Duration::from_secs(2), 5, 0));
        assert_eq!(r.rate_limit, Some((250.0, 20)));
        assert_eq!(config.secret.cache.negative_ttl, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = load(
            "secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n    secret: 0123456789abcdef0123456789abcdef\n    \
             timeout: 0s\n    max-attempts: 0\n    circuit-breaker: {open-for: 0s}\n    \
             rate-limit: {requests-per-second: 0, burst: 0}\n  cache:\n    refresh-ahead: 1.5\n",
        )
        .unwrap_err();
        for field in [
            "secret.jdbc.timeout",
            "secret.jdbc.max-attempts",
            "secret.jdbc.circuit-breaker.open-for",
            "secret.jdbc.rate-limit.requests-per-second",
            "secret.jdbc.rate-limit.burst",
            "secret.cache.refresh-ahead",
        ] {
            assert!(err.contains(field), "{field} missing in {err}");
        }
        let err = load(
            "secret:\n  type: memory\n  memory:\n    timeout: 2h\n  cache:\n    stale-if-error: 100d\n    \
             expire-after-write: 1000000000y\n",
        )
        .unwrap_err();
        for field in ["secret.memory.timeout: must be at most 1h", "secret.cache.stale-if-error", "expire-after-write"]
        {
            assert!(err.contains(field), "{field} missing in {err}");
        }
        let err = load("secret:\n  type: memory\n  memory:\n    rate-limit: {burst: 3}\n").unwrap_err();
        assert!(err.contains("secret.memory.rate-limit") && err.contains("requests-per-second"), "{err}");
        let err = load("secret:\n  type: memory\n  memory:\n    circuit-breaker: {threshold: 3}\n").unwrap_err();
        assert!(err.contains("secret.memory.circuit-breaker") && err.contains("threshold"), "{err}");
    }
}
