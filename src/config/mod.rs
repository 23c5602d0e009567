//! Typed configuration: the YAML file an operator writes, in the shape of
//! the workflow platform's own `secret` block, and the local dev defaults
//! used when there is no file at all.
//!
//! Loading (`load.rs`, through `de.rs`) reads the file, replaces `${VAR}`
//! references from the environment and refuses unknown keys, naming the
//! key and the file; [`Config::validate`] then checks what serde cannot
//! (lengths, ranges, combinations), so a bad config stops the daemon before
//! it listens. No message of either quotes a value: a credential in the
//! wrong place must not end up in a terminal or a log.

mod credential;
pub(crate) mod de;
mod dev;
mod load;
pub mod platform;
mod resilience;
mod security;

use std::{net::SocketAddr, time::Duration};

use crate::{auth::token::TokenHash, backends::BackendBlocks};

use secrecy::ExposeSecret;
use serde::Deserialize;

pub use crate::backends::{
    aws::AwsConfig,
    azure::{AzureClientSecret, AzureConfig, AzureManagedIdentity, AzureWorkloadIdentity},
    elasticsearch::{ElasticsearchBasicAuth, ElasticsearchConfig},
    gcp::{GcpConfig, GcpReplication},
    jdbc::JdbcConfig,
    memory::MemoryConfig,
    vault::{VaultAppRoleAuth, VaultConfig, VaultTokenAuth, VaultUserpassAuth},
    BackendType,
};
pub use credential::{Credential, CredentialFileError};
pub use dev::{dev_config, DevPaths};
pub use load::{convert_file, load_file, load_str, plaintext_credentials, ConfigError};
pub(crate) use resilience::check_rate;
use resilience::{default_refresh_ahead, default_refresh_rate_limit, default_stale_if_error};
pub use resilience::{CircuitBreakerConfig, RateLimitConfig};
pub use security::*;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    pub secret: SecretConfig,
    #[serde(default)]
    pub security: SecurityConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub access: AccessConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub configurations: ConfigurationsConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Where the gRPC API listens. Loopback by default: exposing secretd
    /// beyond the host is a decision, not an accident.
    #[serde(default = "default_listen")]
    pub listen: ListenAddr,
    /// The socket file, when `listen` is `unix://`.
    #[serde(default)]
    pub socket: SocketConfig,
    pub tls: Option<TlsConfig>,
    pub basic_auth: Option<BasicAuthConfig>,
    /// The background health check behind `grpc.health.v1` and `/readyz`.
    #[serde(default)]
    pub liveness: LivenessConfig,
    /// The HTTP listener for probes and metrics.
    #[serde(default)]
    pub admin: AdminConfig,
    /// On SIGTERM or SIGINT, how long in-flight calls may take to finish
    /// before the daemon closes anyway.
    #[serde(default = "default_grace", with = "de::duration")]
    pub termination_grace_period: Duration,
}

/// `server.liveness`, in the platform's shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LivenessConfig {
    #[serde(default = "default_health_interval", with = "de::duration")]
    pub interval: Duration,
    /// A check slower than this counts as failed.
    #[serde(default = "default_health_timeout", with = "de::duration")]
    pub timeout: Duration,
    /// Wait before the first check.
    #[serde(default, with = "de::duration")]
    pub initial_delay: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self { interval: default_health_interval(), timeout: default_health_timeout(), initial_delay: Duration::ZERO }
    }
}

fn default_health_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_grace() -> Duration {
    Duration::from_secs(30)
}

/// `server.admin`: `/livez`, `/readyz` and `/metrics` over plain HTTP.
/// Loopback by default: metrics say how busy secretd is and which callers
/// fail, which is for the operator's scraper, not the network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { enabled: true, listen: default_admin_listen() }
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7879))
}

/// `configurations`: what happens to the configuration files themselves.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigurationsConfig {
    /// Delete the configuration file, and the credential files it names
    /// with `file:`, once loaded, so tasks sharing the host cannot read them
    /// later.
    #[serde(default)]
    pub delete_files_on_start: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            socket: SocketConfig::default(),
            tls: None,
            basic_auth: None,
            liveness: LivenessConfig::default(),
            admin: AdminConfig::default(),
            termination_grace_period: default_grace(),
        }
    }
}

fn default_listen() -> ListenAddr {
    ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 7878)))
}

fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}

crate::backends::with_backend_blocks! {
    /// `secret`: the default backend, the limits of a call, the cache and
    /// isolation.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub struct SecretConfig {
        /// Largest accepted value in bytes.
        #[serde(default = "default_max_value_size")]
        pub max_value_size: usize,
        /// Most refs in one BatchGetSecrets call.
        #[serde(default = "default_max_batch_size")]
        pub max_batch_size: usize,
        /// The deepest namespace a call may name, which bounds the namespaces
        /// one lookup's inheritance walk consults.
        #[serde(default = "default_max_namespace_depth")]
        pub max_namespace_depth: usize,
        /// The most backend reads one call may cause in the worst case (a
        /// batch: the sum over its refs), checked before any read.
        #[serde(default = "default_max_backend_reads_per_call")]
        pub max_backend_reads_per_call: usize,
        /// How many refs of one batch are looked up at once.
        #[serde(default = "default_batch_concurrency")]
        pub batch_concurrency: usize,
        #[serde(default)]
        pub cache: CacheConfig,
        #[serde(default)]
        pub isolation: IsolationConfig,
        /// The default backend refuses writes (the platform's
        /// `secret.read-only`): PutSecret and DeleteSecret are
        /// FAILED_PRECONDITION and no write call reaches it.
        #[serde(default)]
        pub read_only: bool,
        /// Backends that serve one tenant, or one namespace of a tenant and
        /// everything below it, instead of the default one.
        #[serde(default)]
        pub dedicated: Vec<DedicatedConfig>,
    }
}

crate::backends::with_backend_blocks! {
    /// `secret.dedicated[]`: a backend of its own for a tenant or a
    /// namespace.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub struct DedicatedConfig {
        /// Names the backend in metrics, health, audit and the CLI.
        pub name: String,
        /// The tenant it serves; alone, the whole tenant.
        pub tenant: String,
        /// One namespace of the tenant and everything below it.
        pub namespace: Option<String>,
        /// Refuse writes, and never send one to this backend.
        #[serde(default)]
        pub read_only: bool,
        /// Service types refused on this backend's routes, besides the
        /// global `secret.isolation`.
        #[serde(default)]
        pub isolation: IsolationConfig,
        /// Another entry's name, or `default`: a secret this backend does
        /// not have is looked up there (while migrating).
        pub fallback: Option<String>,
        /// Also write a secret found in the fallback into this backend, so
        /// that a migration completes by use.
        #[serde(default)]
        pub copy_on_read: bool,
    }
}

/// The name of the default backend in routes, metrics and the CLI.
pub const DEFAULT_BACKEND_NAME: &str = "default";

fn default_max_value_size() -> usize {
    64 * 1024
}

fn default_max_batch_size() -> usize {
    100
}

pub(crate) fn default_max_namespace_depth() -> usize {
    10
}

pub(crate) fn default_max_backend_reads_per_call() -> usize {
    1000
}

pub(crate) fn default_batch_concurrency() -> usize {
    16
}

/// The deepest `secret.max-namespace-depth` allowed (its validation message
/// says 64): a lookup's readable namespaces are one bit each of a `u64`.
pub const MAX_NAMESPACE_DEPTH: usize = 64;

/// `secret.cache`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_cache_size")]
    pub maximum_size: u64,
    /// The most bytes the cached entries may hold together (values, names,
    /// tags and bookkeeping), beside the entry bound.
    #[serde(default = "default_cache_bytes")]
    pub maximum_bytes: u64,
    #[serde(default = "default_ttl", with = "de::duration")]
    pub expire_after_write: Duration,
    /// How long past `expire-after-write` the last value is still served
    /// when the backend is unavailable or times out; 0 turns it off.
    #[serde(default = "default_stale_if_error", with = "de::duration")]
    pub stale_if_error: Duration,
    /// An entry read in this last share of its time to live is refreshed
    /// in the background; 0 turns it off.
    #[serde(default = "default_refresh_ahead")]
    pub refresh_ahead: f64,
    /// How long a NOT_FOUND answer is remembered; 0 (the default) turns it
    /// off. A put through secretd clears it at once.
    #[serde(default, with = "de::duration")]
    pub negative_ttl: Duration,
    /// Per caller: how often `GetSecretRequest.refresh` may bypass the cache.
    #[serde(default = "default_refresh_rate_limit")]
    pub refresh_rate_limit: RateLimitConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            maximum_size: default_cache_size(),
            maximum_bytes: default_cache_bytes(),
            expire_after_write: default_ttl(),
            stale_if_error: default_stale_if_error(),
            refresh_ahead: default_refresh_ahead(),
            negative_ttl: Duration::ZERO,
            refresh_rate_limit: default_refresh_rate_limit(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_cache_size() -> u64 {
    1000
}

fn default_cache_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_ttl() -> Duration {
    Duration::from_secs(60)
}

/// `secret.isolation`: which service types may not resolve secrets at all.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IsolationConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub denied_services: Vec<String>,
}

/// A check that serde cannot express, failed: the dotted path of the field
/// and why. The reason is a fixed sentence (`&'static str`), so no value of
/// the file can reach the message; a list item is named by its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub reason: &'static str,
}

impl Config {
    /// The files that `file:` credentials were read from, for
    /// `configurations.delete-files-on-start`.
    pub fn credential_files(&self) -> Vec<&std::path::Path> {
        let s = &self.secret;
        let mut credentials: Vec<&Credential> = Vec::new();
        credentials.extend(self.server.basic_auth.as_ref().map(|b| &b.password));
        credentials.extend(self.server.tls.as_ref().and_then(|t| t.keystore_password.as_ref()));
        for blocks in
            std::iter::once(s as &dyn BackendBlocks).chain(s.dedicated.iter().map(|d| d as &dyn BackendBlocks))
        {
            for (_, block) in blocks.present_blocks() {
                credentials.extend(block.credentials());
            }
        }
        let mut files: Vec<&std::path::Path> =
            credentials.into_iter().filter_map(|c| c.file()).map(|p| p.as_path()).collect();
        files.sort();
        files.dedup();
        files
    }

    /// The backends the file chooses that this build of secretd lacks: the
    /// dotted path of each `type`, and the type.
    pub fn backends_not_built_in(&self) -> Vec<(String, BackendType)> {
        let s = &self.secret;
        let entries = std::iter::once(("secret.type".to_owned(), s as &dyn BackendBlocks))
            .chain(s.dedicated.iter().enumerate().map(|(i, d)| (format!("secret.dedicated[{i}].type"), d as _)));
        entries
            .filter(|(_, blocks)| blocks.selected().is_some_and(|block| !block.built_in()))
            .map(|(at, blocks)| (at, blocks.backend_type()))
            .collect()
    }

    /// Checks ranges and combinations. Returns every problem, not just the
    /// first, so an operator fixes the file in one go.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut problems = Vec::new();
        let mut bad = |field: &str, reason: &'static str| problems.push(Invalid { field: field.into(), reason });
        let s = &self.secret;
        if s.max_value_size == 0 || s.max_value_size > 16 * 1024 * 1024 {
            bad("secret.max-value-size", "must be between 1 and 16777216 bytes");
        }
        if s.max_batch_size == 0 || s.max_batch_size > 10_000 {
            bad("secret.max-batch-size", "must be between 1 and 10000");
        }
        if !(1..=MAX_NAMESPACE_DEPTH).contains(&s.max_namespace_depth) {
            bad("secret.max-namespace-depth", "must be between 1 and 64");
        }
        if s.max_backend_reads_per_call < 2 * s.max_namespace_depth {
            bad(
                "secret.max-backend-reads-per-call",
                "must be at least twice secret.max-namespace-depth (one pinned read may take two reads per namespace)",
            );
        }
        if s.batch_concurrency == 0 || s.batch_concurrency > 1000 {
            bad("secret.batch-concurrency", "must be between 1 and 1000");
        }
        if s.cache.enabled && s.cache.maximum_bytes < 1024 * 1024 {
            bad("secret.cache.maximum-bytes", "must be at least 1048576 (1 MiB) when the cache is enabled");
        }
        if s.cache.enabled && s.cache.maximum_size == 0 {
            bad("secret.cache.maximum-size", "must be at least 1 when the cache is enabled");
        }
        if s.cache.enabled && s.cache.expire_after_write.is_zero() {
            bad("secret.cache.expire-after-write", "must be longer than 0s when the cache is enabled");
        }
        for (i, service) in s.isolation.denied_services.iter().enumerate() {
            if !is_service_type(service) {
                bad(
                    &format!("secret.isolation.denied-services[{i}]"),
                    "is not a service type (upper-case letters, digits and '_', like EXECUTOR)",
                );
            }
        }
        validate_backend_blocks("secret", s, &mut bad);
        if s.read_only {
            check_read_only_settings("secret", s, &mut bad);
        }
        validate_dedicated(&s.dedicated, &mut bad);
        s.validate_resilience(&mut bad);
        self.validate_security(&mut bad);
        problems
    }

    fn validate_security(&self, bad: &mut impl FnMut(&str, &'static str)) {
        if let ListenAddr::Unix(_) = self.server.listen {
            if self.server.socket.mode_bits().is_none() {
                bad("server.socket.mode", "is not an octal file mode like \"0660\"");
            }
        }
        if let Some(tls) = &self.server.tls {
            match (&tls.cert, &tls.key, &tls.keystore) {
                (Some(_), Some(_), None) | (None, None, Some(_)) => {}
                _ => bad("server.tls", "needs either cert and key (PEM files) or keystore (PKCS#12), not both"),
            }
            if tls.client_authentication != ClientAuthentication::None && tls.client_ca.is_none() {
                bad("server.tls.client-ca", "is required when client-authentication is want or need");
            }
            if matches!(self.server.listen, ListenAddr::Unix(_)) {
                bad("server.tls", "applies to TCP listeners; a unix socket is authenticated by its peer");
            }
        }
        let password_rule = self.security.basic_auth.compiled();
        if let Err(reason) = &password_rule {
            bad("security.basic-auth.password-regexp", reason);
        }
        if let Some(basic) = &self.server.basic_auth {
            if basic.username.is_empty() || basic.username.contains(':') {
                bad("server.basic-auth.username", "must be non-empty and must not contain ':'");
            }
            let password = basic.password.expose_secret();
            if password.is_empty() {
                bad("server.basic-auth.password", "must not be empty");
            }
            if let Ok(Some(rule)) = &password_rule {
                if !rule.is_match(password) {
                    bad("server.basic-auth.password", "does not match security.basic-auth.password-regexp");
                }
            }
        }
        let check_principal = |block: &str,
                               name: &str,
                               service: &str,
                               namespaces: &[String],
                               tenants: &[String],
                               bad: &mut dyn FnMut(&str, &'static str)| {
            if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                bad(&format!("{block}.name"), "must be 1 to 128 characters without spaces");
            }
            if !is_service_type(service) {
                bad(
                    &format!("{block}.service"),
                    "is not a service type (upper-case letters, digits and '_', like WORKER)",
                );
            }
            for (i, glob) in namespaces.iter().enumerate() {
                if let Err(rule) = crate::auth::mint::check_namespace_glob(glob) {
                    bad(&format!("{block}.namespaces[{i}]"), rule);
                }
            }
            if tenants.is_empty() {
                bad(&format!("{block}.tenants"), "must list at least one tenant glob ([\"*\"] for every tenant)");
            }
            for (i, glob) in tenants.iter().enumerate() {
                if let Err(rule) = crate::auth::mint::check_tenant_glob(glob) {
                    bad(&format!("{block}.tenants[{i}]"), rule);
                }
            }
        };
        for (i, account) in self.auth.service_accounts.iter().enumerate() {
            let field = format!("auth.service-accounts[{i}]");
            check_principal(&field, &account.name, &account.service, &account.namespaces, &account.tenants, bad);
            if TokenHash::parse(&account.token_sha256).is_none() {
                bad(&format!("{field}.token-sha256"), "must be 64 hex digits (`secretd token hash` prints it)");
            }
        }
        for (i, rule) in self.auth.certificates.iter().enumerate() {
            let field = format!("auth.certificates[{i}]");
            if rule.uri_san.is_none() && rule.common_name.is_none() {
                bad(&field, "needs uri-san or common-name");
            }
            let p = &rule.principal;
            check_principal(&format!("{field}.principal"), &p.name, &p.service, &p.namespaces, &p.tenants, bad);
        }
        if !self.auth.certificates.is_empty() && self.server.tls.as_ref().is_none_or(|t| t.client_ca.is_none()) {
            bad(
                "auth.certificates",
                "needs server.tls with a client-ca: no client certificate can be verified otherwise",
            );
        }
        for (i, rule) in self.auth.unix_peers.iter().enumerate() {
            let field = format!("auth.unix-peers[{i}]");
            if rule.uid.is_none() && rule.gid.is_none() {
                bad(&field, "needs uid or gid");
            }
            let p = &rule.principal;
            check_principal(&format!("{field}.principal"), &p.name, &p.service, &p.namespaces, &p.tenants, bad);
        }
        if self.auth.failure_limit.burst == 0 {
            bad("auth.failure-limit.burst", "must be at least 1");
        }
        for (i, rule) in self.access.rules.iter().enumerate() {
            for (list, globs) in [("allow", &rule.allow), ("deny", &rule.deny)] {
                for (j, glob) in globs.iter().enumerate() {
                    if glob.split('/').count() < 3 {
                        bad(
                            &format!("access.rules[{i}].{list}[{j}]"),
                            "must be a TENANT/NAMESPACE/KEY glob, like main/company.*/*",
                        );
                    }
                }
            }
            for (j, service) in rule.services.iter().enumerate() {
                if !is_service_type(service) {
                    bad(
                        &format!("access.rules[{i}].services[{j}]"),
                        "is not a service type (upper-case letters, digits and '_', like WORKER)",
                    );
                }
            }
        }
        if self.audit.sink == AuditSinkKind::File && self.audit.path.is_none() {
            bad("audit.path", "is required when audit.sink is file");
        }
    }
}

/// Service types are upper-case identifiers: WORKER, EXECUTOR, or one an
/// operator defines.
pub fn is_service_type(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A read-only backend's settings that only a write would use: set, they
/// say the operator expects writes there.
fn check_read_only_settings(at: &str, blocks: &dyn BackendBlocks, bad: &mut dyn FnMut(&str, &'static str)) {
    if let Some(block) = blocks.selected() {
        for key in block.write_only_settings() {
            bad(
                &format!("{at}.{}.{key}", blocks.backend_type().as_str()),
                "only applies to writes, and this backend is read-only (remove it, or read-only: false)",
            );
        }
    }
}

/// The `secret.dedicated` entries: names, routes, fallbacks.
fn validate_dedicated(entries: &[DedicatedConfig], bad: &mut dyn FnMut(&str, &'static str)) {
    use secretd_core::{Namespace, Tenant};
    let mut routes: Vec<(usize, &str, Option<&str>)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("secret.dedicated[{i}]");
        validate_backend_blocks(&at, entry, bad);
        let name_ok = !entry.name.is_empty()
            && entry.name.len() <= 63
            && entry.name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && entry.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            bad(
                &format!("{at}.name"),
                "must be 1 to 63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
            );
        } else if entry.name == DEFAULT_BACKEND_NAME {
            bad(&format!("{at}.name"), "is reserved for the default backend");
        } else if entries[..i].iter().any(|other| other.name == entry.name) {
            bad(&format!("{at}.name"), "is used by an earlier entry; each backend needs its own name");
        }
        if Tenant::parse(&entry.tenant).is_err() {
            bad(&format!("{at}.tenant"), "is not a tenant name (1 to 63 characters of a-z, 0-9, '_' and '-')");
        }
        if entry.namespace.as_deref().is_some_and(|ns| Namespace::parse(ns).is_err()) {
            bad(&format!("{at}.namespace"), "is not a namespace (dot-separated segments of A-Z a-z 0-9 _ -)");
        }
        let route = (entry.tenant.as_str(), entry.namespace.as_deref());
        if routes.iter().any(|(_, tenant, namespace)| (*tenant, *namespace) == route) {
            bad(&format!("{at}.namespace"), "routes the same tenant and namespace as an earlier entry");
        }
        routes.push((i, route.0, route.1));
        for (j, service) in entry.isolation.denied_services.iter().enumerate() {
            if !is_service_type(service) {
                bad(
                    &format!("{at}.isolation.denied-services[{j}]"),
                    "is not a service type (upper-case letters, digits and '_', like EXECUTOR)",
                );
            }
        }
        if entry.read_only {
            check_read_only_settings(&at, entry, bad);
            if entry.copy_on_read {
                bad(&format!("{at}.copy-on-read"), "writes into this backend, which is read-only");
            }
        }
        match &entry.fallback {
            None if entry.copy_on_read => bad(&format!("{at}.copy-on-read"), "needs a fallback to copy from"),
            None => {}
            Some(fallback) if fallback == DEFAULT_BACKEND_NAME => {}
            Some(fallback) if fallback == &entry.name => bad(&format!("{at}.fallback"), "names this entry itself"),
            Some(fallback) if !entries.iter().any(|other| &other.name == fallback) => {
                bad(&format!("{at}.fallback"), "names no secret.dedicated entry (nor default)")
            }
            Some(_) => {
                // Follow the chain: it must end at `default` or at an entry
                // without a fallback.
                let mut seen = vec![entry.name.as_str()];
                let mut next = entry.fallback.as_deref();
                while let Some(name) = next.filter(|n| *n != DEFAULT_BACKEND_NAME) {
                    if seen.contains(&name) {
                        bad(&format!("{at}.fallback"), "leads back to this entry: fallbacks must not form a cycle");
                        break;
                    }
                    seen.push(name);
                    next = entries.iter().find(|other| other.name == name).and_then(|other| other.fallback.as_deref());
                }
            }
        }
    }
}

/// Checks the backend blocks of `blocks` (the `secret` block, or a
/// `secret.dedicated` entry at `at`): the one `type` chooses must be there,
/// and every block present must be valid.
fn validate_backend_blocks(at: &str, blocks: &dyn BackendBlocks, bad: &mut dyn FnMut(&str, &'static str)) {
    if blocks.selected().is_none() {
        bad(&format!("{at}.{}", blocks.backend_type().as_str()), "is required: `type` names this backend");
    }
    for (key, block) in blocks.present_blocks() {
        let block_at = format!("{at}.{key}");
        block.validate(&block_at, bad);
        crate::backends::validate_shared(&block_at, block, bad);
    }
}

#[cfg(test)]
mod dedicated_tests {
    use std::path::Path;

    use super::*;

    const HEAD: &str = "secret:\n  type: memory\n  dedicated:\n";

    fn problems(entries: &str) -> String {
        match load_str(&format!("{HEAD}{entries}"), Path::new("d.yaml"), &|_| None) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_good_set_of_routes_passes() {
        let ok = problems(
            "    - {name: acme, tenant: acme, type: memory, read-only: true, isolation: {enabled: true, denied-services: [EXECUTOR]}}\n    \
             - {name: finance, tenant: main, namespace: company.finance, type: memory, fallback: default, copy-on-read: true}\n    \
             - {name: payroll, tenant: main, namespace: company.finance.payroll, type: memory, fallback: finance}\n",
        );
        assert_eq!(ok, "");
    }

    #[test]
    fn each_mistake_names_its_field() {
        let cases = [
            ("    - {name: Bad Name, tenant: main, type: memory}\n", "secret.dedicated[0].name: must be 1 to 63"),
            ("    - {name: default, tenant: main, type: memory}\n", "secret.dedicated[0].name: is reserved"),
            (
                "    - {name: a, tenant: main, type: memory}\n    - {name: a, tenant: acme, type: memory}\n",
                "secret.dedicated[1].name: is used by an earlier entry",
            ),
            ("    - {name: a, tenant: 'Not A Tenant', type: memory}\n", "secret.dedicated[0].tenant: is not a tenant"),
            ("    - {name: a, tenant: main, namespace: 'a..b', type: memory}\n", "secret.dedicated[0].namespace: is not"),
            (
                "    - {name: a, tenant: main, namespace: x, type: memory}\n    - {name: b, tenant: main, namespace: x, type: memory}\n",
                "secret.dedicated[1].namespace: routes the same tenant and namespace",
            ),
            ("    - {name: a, tenant: main, type: memory, fallback: nowhere}\n", "secret.dedicated[0].fallback: names no"),
            ("    - {name: a, tenant: main, type: memory, fallback: a}\n", "secret.dedicated[0].fallback: names this entry"),
            (
                "    - {name: a, tenant: main, type: memory, fallback: b}\n    - {name: b, tenant: acme, type: memory, fallback: a}\n",
                "secret.dedicated[0].fallback: leads back to this entry",
            ),
            ("    - {name: a, tenant: main, type: memory, copy-on-read: true}\n", "copy-on-read: needs a fallback"),
            (
                "    - {name: a, tenant: main, type: memory, read-only: true, fallback: default, copy-on-read: true}\n",
                "secret.dedicated[0].copy-on-read: writes into this backend, which is read-only",
            ),
            ("    - {name: a, tenant: main, type: vault}\n", "secret.dedicated[0].vault: is required"),
            (
                "    - name: a\n      tenant: main\n      type: vault\n      read-only: true\n      vault: {address: http://v:8200, token: {token: t}, max-versions: 3}\n",
                "secret.dedicated[0].vault.max-versions: only applies to writes",
            ),
            (
                "    - name: a\n      tenant: main\n      type: aws-secret-manager\n      read-only: true\n      aws-secret-manager: {region: us-east-1, kms-key-id: k}\n",
                "secret.dedicated[0].aws-secret-manager.kms-key-id: only applies to writes",
            ),
            (
                "    - name: a\n      tenant: main\n      type: vault\n      vault: {address: ftp://v, token: {token: t}, timeout: 0s}\n",
                "secret.dedicated[0].vault.timeout: must be longer than 0s",
            ),
            ("    - {name: a, tenant: main, type: memory, isolation: {enabled: true, denied-services: [worker]}}\n", "isolation.denied-services[0]"),
            ("    - {name: a, tenant: main, type: memory, weight: 3}\n", "unknown field `weight`"),
        ];
        for (entries, want) in cases {
            let got = problems(entries);
            assert!(got.contains(want), "{entries}: want {want:?} in {got}");
        }
    }

    #[test]
    fn the_default_backend_may_be_read_only() {
        let error = load_str(
            "secret:\n  type: vault\n  read-only: true\n  vault: {address: http://v:8200, token: {token: t}, max-versions: 3}\n",
            Path::new("d.yaml"),
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("secret.vault.max-versions: only applies to writes"), "{error}");
    }
}
