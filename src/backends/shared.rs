//! The keys every backend block shares, declared once: the tag scope
//! (`tags`, `filter-on-tags`, `excluded-tags`) and the resilience settings
//! (`timeout`, `max-attempts`, `circuit-breaker`, `rate-limit`), with one
//! default and one check each.

use std::time::Duration;

use secretd_core::TagScope;

use crate::resilience::Resilience;

/// The longest wait for one backend call, unless a block says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Tries of a call, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

pub(crate) fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

pub(crate) fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

/// Declares a backend's configuration block: its own keys as written,
/// then the shared ones. serde cannot refuse unknown keys through
/// `flatten`, so the shared fields are written into each struct by this
/// macro rather than held in a struct of their own.
macro_rules! backend_block {
    ($(#[$attr:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$attr])*
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct $name {
            $($fields)*
            /// Stamped on every write, required on every read.
            #[serde(default)]
            pub tags: std::collections::BTreeMap<String, String>,
            /// Required on reads, not stamped on writes.
            #[serde(default)]
            pub filter_on_tags: std::collections::BTreeMap<String, String>,
            /// Secrets carrying any of these are invisible.
            #[serde(default)]
            pub excluded_tags: std::collections::BTreeMap<String, String>,
            /// Longest wait for one backend call.
            #[serde(default = "crate::backends::shared::default_timeout", with = "crate::config::de::duration")]
            pub timeout: std::time::Duration,
            /// Tries of a call, the first included (UNAVAILABLE, timeouts
            /// and throttling are tried again, within the caller's
            /// deadline).
            #[serde(default = "crate::backends::shared::default_max_attempts")]
            pub max_attempts: u32,
            /// The circuit breaker of this backend.
            #[serde(default)]
            pub circuit_breaker: crate::config::CircuitBreakerConfig,
            /// Calls per second to this backend; unlimited when absent.
            pub rate_limit: Option<crate::config::RateLimitConfig>,
        }

        impl crate::backends::SharedKeys for $name {
            fn scope(&self) -> secretd_core::TagScope {
                crate::backends::shared::tag_scope(&self.tags, &self.filter_on_tags, &self.excluded_tags)
            }

            fn resilience(&self) -> crate::resilience::Resilience {
                crate::resilience::Resilience {
                    timeout: self.timeout,
                    max_attempts: self.max_attempts,
                    failure_threshold: self.circuit_breaker.failure_threshold,
                    open_for: self.circuit_breaker.open_for,
                    rate_limit: self.rate_limit.map(|r| (r.requests_per_second, r.burst)),
                }
            }
        }
    };
}
pub(crate) use backend_block;

/// What [`backend_block!`] gives every block.
pub trait SharedKeys {
    /// The tag scope of `tags`, `filter-on-tags` and `excluded-tags`.
    fn scope(&self) -> TagScope;

    /// The settings of `timeout`, `max-attempts`, `circuit-breaker` and
    /// `rate-limit`.
    fn resilience(&self) -> Resilience;
}

pub(crate) fn tag_scope(
    tags: &std::collections::BTreeMap<String, String>,
    filter_on_tags: &std::collections::BTreeMap<String, String>,
    excluded_tags: &std::collections::BTreeMap<String, String>,
) -> TagScope {
    use secretd_core::Tags;
    TagScope {
        tags: Tags::from(tags.clone()),
        filter_on_tags: Tags::from(filter_on_tags.clone()),
        excluded_tags: Tags::from(excluded_tags.clone()),
    }
}

/// The tag rules of `secretd_core::Tags`, in words that quote no tag.
const TAG_RULES: &str = "breaks the tag rules: at most 50 tags; keys of 1 to 128 characters, values of at most 256, \
                         no control characters";

const HOUR: Duration = Duration::from_secs(3600);

/// Checks the shared keys of the block at `at`.
pub fn validate_shared(at: &str, block: &dyn SharedKeys, bad: &mut dyn FnMut(&str, &'static str)) {
    let scope = block.scope();
    for (field, tags) in
        [("tags", &scope.tags), ("filter-on-tags", &scope.filter_on_tags), ("excluded-tags", &scope.excluded_tags)]
    {
        // The core's message quotes the offending key; here it is user data
        // of the configuration file.
        if tags.validate().is_err() {
            bad(&format!("{at}.{field}"), TAG_RULES);
        }
    }
    let r = block.resilience();
    if r.timeout.is_zero() {
        bad(&format!("{at}.timeout"), "must be longer than 0s");
    }
    // Upper bounds keep every deadline computed from them representable.
    if r.timeout > HOUR {
        bad(&format!("{at}.timeout"), "must be at most 1h");
    }
    if r.open_for > HOUR {
        bad(&format!("{at}.circuit-breaker.open-for"), "must be at most 1h");
    }
    if !(1..=10).contains(&r.max_attempts) {
        bad(&format!("{at}.max-attempts"), "must be 1 to 10");
    }
    if r.failure_threshold > 0 && r.open_for.is_zero() {
        bad(&format!("{at}.circuit-breaker.open-for"), "must be longer than 0s");
    }
    if let Some((rate, burst)) = r.rate_limit {
        crate::config::check_rate(&format!("{at}.rate-limit"), rate, burst, bad);
    }
}

/// SQL and Elasticsearch values are encrypted at rest under the backend's
/// `secret`; without a long enough one the backend must not start.
pub(crate) fn check_encryption_secret(
    field: &str,
    secret: Option<&crate::config::Credential>,
    bad: &mut dyn FnMut(&str, &'static str),
) {
    use secrecy::ExposeSecret;
    // The reasons are literal text; the test below keeps the figure in step
    // with MIN_SECRET_LEN.
    match secret {
        None => bad(
            field,
            "is required: the backend's values are encrypted at rest with it; it must be at least 32 characters \
             (`secretd keygen` prints one)",
        ),
        Some(secret) if secret.expose_secret().chars().count() < secretd_core::MIN_SECRET_LEN => {
            bad(field, "must be at least 32 characters long (`secretd keygen` prints one)")
        }
        Some(_) => {}
    }
}

/// `previous-secrets`: each as long as a secret must be, none the current
/// secret again, none twice.
pub(crate) fn check_previous_secrets(
    field: &str,
    current: Option<&crate::config::Credential>,
    previous: &[crate::config::Credential],
    bad: &mut dyn FnMut(&str, &'static str),
) {
    use secrecy::ExposeSecret;
    for (i, secret) in previous.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let text = secret.expose_secret();
        if text.chars().count() < secretd_core::MIN_SECRET_LEN {
            bad(&at, "must be at least 32 characters long, as the secret it was");
        } else if current.is_some_and(|c| c.expose_secret() == text) {
            bad(&at, "is the current secret: list only the ones it replaced");
        } else if previous[..i].iter().any(|p| p.expose_secret() == text) {
            bad(&at, "is listed twice");
        }
    }
}

/// `${VAR:-}` yields an empty string; for an optional setting that means
/// "not set".
pub(crate) fn empty_is_none<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = <Option<String> as serde::Deserialize>::deserialize(deserializer)?;
    Ok(value.filter(|v| !v.is_empty()))
}

/// `http://` or `https://`, for the URL-valued keys of the blocks.
pub(crate) fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_encryption_secret_rule_states_the_real_minimum() {
        assert_eq!(secretd_core::MIN_SECRET_LEN, 32, "update the reasons in check_encryption_secret");
    }
}
