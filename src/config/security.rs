//! The security parts of the configuration: how callers authenticate
//! (`server.tls`, `server.basic-auth`, `auth`), what they may do
//! (`access`), and where decisions are recorded (`audit`).

use std::{fmt, path::PathBuf, str::FromStr};

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use super::Credential;

/// Where the gRPC API listens: `127.0.0.1:7878` or `unix:///run/secretd/secretd.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    /// A fixed sentence, so it can be a configuration error.
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err("a unix socket path must be absolute, like unix:///run/secretd/secretd.sock");
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        s.parse().map(ListenAddr::Tcp).map_err(|_| "is neither IP:PORT nor unix:///PATH")
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(super::de::reason)
    }
}

/// `server.socket`: the Unix socket file, when `server.listen` is `unix://`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SocketConfig {
    /// Octal file mode, like "0660".
    #[serde(default = "default_socket_mode")]
    pub mode: String,
    /// Numeric owner uid and gid to give the socket (needs the privilege to chown).
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

impl Default for SocketConfig {
    fn default() -> Self {
        Self { mode: default_socket_mode(), owner: None, group: None }
    }
}

fn default_socket_mode() -> String {
    "0660".into()
}

impl SocketConfig {
    pub fn mode_bits(&self) -> Option<u32> {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8).ok().filter(|m| *m <= 0o777)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuthentication {
    /// No client certificates are asked for.
    #[default]
    None,
    /// A certificate is asked for; a caller without one must present a token.
    Want,
    /// A connection without a valid client certificate is refused.
    Need,
}

/// `server.tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Or a PKCS#12 keystore holding the key and its certificate chain.
    pub keystore: Option<PathBuf>,
    /// Inline (best as `${ENV}`) or `file:`; a file is re-read when it
    /// changes, with the keystore.
    pub keystore_password: Option<Credential>,
    #[serde(default)]
    pub client_authentication: ClientAuthentication,
    /// PEM bundle of the CAs trusted for client certificates.
    pub client_ca: Option<PathBuf>,
}

/// `server.basic-auth`: the operator's admin account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BasicAuthConfig {
    pub username: String,
    /// Inline (best as `${ENV}`) or `file:`; a file is re-read when it
    /// changes, so the password rotates without a restart.
    pub password: Credential,
}

/// `security`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecurityConfig {
    #[serde(default)]
    pub basic_auth: PasswordRules,
}

/// `security.basic-auth`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PasswordRules {
    /// The admin password must match this regular expression.
    pub password_regexp: Option<String>,
}

impl PasswordRules {
    /// `password-regexp` as a regex that must match the whole password.
    /// The error is a fixed sentence: regex's own quotes the pattern.
    pub fn compiled(&self) -> Result<Option<regex::Regex>, &'static str> {
        match &self.password_regexp {
            None => Ok(None),
            Some(pattern) => regex::Regex::new(&format!("^(?:{pattern})$"))
                .map(Some)
                .map_err(|_| "is not a valid regular expression"),
        }
    }
}

/// `state`: the broker's own database (service accounts and tokens).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateConfig {
    /// Default: `sqlite://./data/state.db`.
    pub url: Option<SecretString>,
    /// How often replicas re-read the tokens (revocations apply within it).
    #[serde(default = "default_state_refresh", with = "super::de::duration")]
    pub refresh_interval: std::time::Duration,
}

fn default_state_refresh() -> std::time::Duration {
    std::time::Duration::from_millis(500)
}

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    Read,
    List,
    Write,
    Delete,
    /// Everything, including managing tokens.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 5] =
        [Permission::Read, Permission::List, Permission::Write, Permission::Delete, Permission::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::List => "list",
            Permission::Write => "write",
            Permission::Delete => "delete",
            Permission::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// What every way of naming a principal in the config shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PrincipalSpec {
    pub name: String,
    /// WORKER, EXECUTOR, SCHEDULER, WEBSERVER, INDEXER, or one you define.
    pub service: String,
    #[serde(default = "default_permissions")]
    pub permissions: Vec<Permission>,
    /// Namespace globs the principal is limited to (empty: all).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Tenant globs the principal is limited to; `main` unless listed,
    /// `["*"]` for every tenant.
    #[serde(default = "default_tenants")]
    pub tenants: Vec<String>,
}

fn default_permissions() -> Vec<Permission> {
    vec![Permission::Read]
}

/// A principal that does not say reaches the default tenant only: a config
/// written before tenants existed must not reach them all.
fn default_tenants() -> Vec<String> {
    vec![secretd_core::DEFAULT_TENANT.to_owned()]
}

/// `auth.service-accounts[]`: a token declared in the file, by its hash
/// (`secretd token hash` prints one), for stateless sidecars.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StaticAccount {
    pub name: String,
    pub service: String,
    #[serde(default = "default_permissions")]
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default = "default_tenants")]
    pub tenants: Vec<String>,
    /// SHA-256 of the token, 64 hex digits (optionally `sha256:`-prefixed).
    pub token_sha256: String,
}

/// `auth.certificates[]`: a client certificate matched by URI SAN or CN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CertificateRule {
    /// Glob over the certificate's URI SANs, like `spiffe://example.org/ns/etl/sa/*`.
    pub uri_san: Option<String>,
    /// Glob over the subject's common name.
    pub common_name: Option<String>,
    pub principal: PrincipalSpec,
}

/// `auth.unix-peers[]`: a Unix socket peer matched by uid and/or gid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PeerRule {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub principal: PrincipalSpec,
}

/// `auth.failure-limit`: how many wrong basic-auth passwords one user name
/// may be tried with from one address (IPv6: one /64).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FailureLimit {
    /// Failures allowed in a burst.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Failures forgiven per minute afterwards.
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
}

impl Default for FailureLimit {
    fn default() -> Self {
        Self { burst: default_burst(), per_minute: default_per_minute() }
    }
}

fn default_burst() -> u32 {
    10
}

fn default_per_minute() -> u32 {
    30
}

/// `auth`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthConfig {
    #[serde(default)]
    pub service_accounts: Vec<StaticAccount>,
    #[serde(default)]
    pub certificates: Vec<CertificateRule>,
    #[serde(default)]
    pub unix_peers: Vec<PeerRule>,
    #[serde(default)]
    pub failure_limit: FailureLimit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultAccess {
    #[default]
    Allow,
    Deny,
}

/// `access.rules[]`: globs over `tenant/namespace/key` for some principals
/// or service types. Deny wins over allow.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccessRule {
    /// Principal names this rule applies to (with `services`: either matches;
    /// both empty: everyone).
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// `access`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccessConfig {
    #[serde(default)]
    pub default_access: DefaultAccess,
    #[serde(default)]
    pub rules: Vec<AccessRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditSinkKind {
    Off,
    #[default]
    Stdout,
    File,
}

/// `audit`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuditConfig {
    #[serde(default)]
    pub sink: AuditSinkKind,
    /// The file, with `sink: file` (JSON lines, appended, mode 0600).
    pub path: Option<PathBuf>,
}
