//! The blocks of the backends that live on another server: `secret.vault`,
//! `secret.aws-secret-manager`, `secret.google-secret-manager`,
//! `secret.azure-key-vault` and `secret.elasticsearch`. Key names follow the platform's own
//! configuration (`access-key-id`, `secret-key-id`, `session-token`;
//! `token`, `userpass`, `approle` for Vault), with the platform's older
//! spellings accepted as aliases.

use std::{collections::BTreeMap, fmt, path::PathBuf, time::Duration};

use secretd_core::TagScope;
use serde::Deserialize;

use super::{
    resilience::{default_max_attempts, CircuitBreakerConfig, RateLimitConfig},
    tag_scope, Credential,
};

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// `secret.vault`: HashiCorp Vault (or OpenBao) KV v2.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VaultConfig {
    /// `https://vault.example:8200`.
    pub address: String,
    /// The KV v2 mount.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// Folder under the mount that holds secretd's secrets.
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// Vault Enterprise namespace.
    pub namespace: Option<String>,
    /// PEM CA bundle to trust for an `https://` address.
    pub ca_certificate: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "super::de::duration")]
    pub timeout: Duration,
    /// Versions kept per secret, set on every write; unset leaves the
    /// engine's setting (10 by default).
    pub max_versions: Option<u64>,
    pub token: Option<VaultTokenAuth>,
    #[serde(alias = "password")]
    pub userpass: Option<VaultUserpassAuth>,
    #[serde(alias = "app-role")]
    pub approle: Option<VaultAppRoleAuth>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub filter_on_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub excluded_tags: BTreeMap<String, String>,
    /// Tries of a read, the first included (UNAVAILABLE, timeouts and
    /// throttling are tried again, within the caller's deadline).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The circuit breaker of this backend.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// Calls per second to this backend; unlimited when absent.
    pub rate_limit: Option<RateLimitConfig>,
}

fn default_mount() -> String {
    "secret".into()
}

fn default_path_prefix() -> String {
    "secretd".into()
}

impl VaultConfig {
    pub fn scope(&self) -> TagScope {
        tag_scope(&self.tags, &self.filter_on_tags, &self.excluded_tags)
    }

    /// How many auth blocks are set; exactly one must be.
    pub fn auth_methods(&self) -> usize {
        usize::from(self.token.is_some()) + usize::from(self.userpass.is_some()) + usize::from(self.approle.is_some())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VaultTokenAuth {
    pub token: Credential,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VaultUserpassAuth {
    #[serde(alias = "user")]
    pub username: String,
    pub password: Credential,
    /// Where the userpass method is mounted.
    #[serde(default = "default_userpass_mount", alias = "path")]
    pub mount: String,
}

fn default_userpass_mount() -> String {
    "userpass".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VaultAppRoleAuth {
    pub role_id: Credential,
    pub secret_id: Credential,
    /// Where the AppRole method is mounted.
    #[serde(default = "default_approle_mount", alias = "path")]
    pub mount: String,
}

fn default_approle_mount() -> String {
    "approle".into()
}

/// `secret.aws-secret-manager`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AwsConfig {
    pub region: String,
    /// Another endpoint than AWS's (a VPC endpoint, a test server); empty
    /// means AWS's own.
    #[serde(alias = "endpoint-override", default, deserialize_with = "empty_is_none")]
    pub endpoint: Option<String>,
    /// Static credentials; without them the SDK's default chain is used
    /// (environment, profile, web identity, ECS, instance metadata).
    pub access_key_id: Option<Credential>,
    #[serde(alias = "secret-access-key")]
    pub secret_key_id: Option<Credential>,
    pub session_token: Option<Credential>,
    pub kms_key_id: Option<String>,
    /// Put in front of every secret name.
    #[serde(default = "default_name_prefix")]
    pub name_prefix: String,
    /// Days a deleted secret can be restored (7 to 30).
    #[serde(default = "default_recovery_window")]
    pub recovery_window_days: u8,
    /// Delete at once, without a recovery window.
    #[serde(default)]
    pub force_delete: bool,
    #[serde(default = "default_timeout", with = "super::de::duration")]
    pub timeout: Duration,
    /// Tries per call, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub filter_on_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub excluded_tags: BTreeMap<String, String>,
    /// The circuit breaker of this backend.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// Calls per second to this backend; unlimited when absent.
    pub rate_limit: Option<RateLimitConfig>,
}

fn default_name_prefix() -> String {
    "secretd/".into()
}

fn default_recovery_window() -> u8 {
    30
}

impl AwsConfig {
    pub fn scope(&self) -> TagScope {
        tag_scope(&self.tags, &self.filter_on_tags, &self.excluded_tags)
    }
}

/// `${VAR:-}` yields an empty string; for an optional setting that means
/// "not set".
fn empty_is_none<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value.filter(|v| !v.is_empty()))
}

/// `secret.elasticsearch`: an Elasticsearch or OpenSearch index, values
/// encrypted at rest under `secret`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ElasticsearchConfig {
    /// Node URLs, `http://` or `https://`. One may carry `user:password@`
    /// (the backend turns it into basic auth); so `Debug` and every
    /// message show hosts without it.
    pub hosts: Vec<String>,
    #[serde(default = "default_index")]
    pub index: String,
    /// The encryption secret, at least 32 characters; inline or `file:`.
    pub secret: Option<Credential>,
    pub basic_auth: Option<ElasticsearchBasicAuth>,
    /// An encoded API key (`ApiKey` header).
    pub api_key: Option<Credential>,
    /// PEM CA bundle; when set, only it is trusted.
    pub ca_certificate: Option<PathBuf>,
    #[serde(default = "default_es_timeout", with = "super::de::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub filter_on_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub excluded_tags: BTreeMap<String, String>,
    /// Tries of a read, the first included (UNAVAILABLE, timeouts and
    /// throttling are tried again, within the caller's deadline).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The circuit breaker of this backend.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// Calls per second to this backend; unlimited when absent.
    pub rate_limit: Option<RateLimitConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ElasticsearchBasicAuth {
    pub username: String,
    pub password: Credential,
}

fn default_index() -> String {
    "secretd-secrets".into()
}

fn default_es_timeout() -> Duration {
    Duration::from_secs(10)
}

impl ElasticsearchConfig {
    pub fn scope(&self) -> TagScope {
        tag_scope(&self.tags, &self.filter_on_tags, &self.excluded_tags)
    }
}

/// `https://user:pass@es:9200/` as `https://[REDACTED]@es:9200/`.
fn without_userinfo(host: &str) -> String {
    let Some((scheme, rest)) = host.split_once("://") else { return host.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[REDACTED]{}", &rest[at..]),
        None => host.to_owned(),
    }
}

impl fmt::Debug for ElasticsearchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<String> = self.hosts.iter().map(|h| without_userinfo(h)).collect();
        f.debug_struct("ElasticsearchConfig")
            .field("hosts", &hosts)
            .field("index", &self.index)
            .field("secret", &self.secret)
            .field("basic_auth", &self.basic_auth)
            .field("api_key", &self.api_key)
            .field("ca_certificate", &self.ca_certificate)
            .field("timeout", &self.timeout)
            .field("tags", &self.tags)
            .field("filter_on_tags", &self.filter_on_tags)
            .field("excluded_tags", &self.excluded_tags)
            .field("max_attempts", &self.max_attempts)
            .field("circuit_breaker", &self.circuit_breaker)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// `secret.google-secret-manager`, in the platform's shape (`project`,
/// `service-account: |`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GcpConfig {
    pub project: String,
    /// A service-account key as JSON, inline or `file:`; without it,
    /// application default credentials.
    pub service_account: Option<Credential>,
    /// Another endpoint than Google's (a private endpoint, an emulator).
    #[serde(default, deserialize_with = "empty_is_none")]
    pub endpoint: Option<String>,
    /// No credentials at all: for emulators only, with an `endpoint`.
    #[serde(default)]
    pub anonymous: bool,
    #[serde(default)]
    pub replication: GcpReplication,
    #[serde(default = "default_gcp_prefix")]
    pub name_prefix: String,
    #[serde(default = "default_timeout", with = "super::de::duration")]
    pub timeout: Duration,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub filter_on_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub excluded_tags: BTreeMap<String, String>,
    /// The circuit breaker of this backend.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// Calls per second to this backend; unlimited when absent.
    pub rate_limit: Option<RateLimitConfig>,
}

/// `automatic` (the default), or `{locations: [us-east1, ...]}`.
#[derive(Debug, Default)]
pub enum GcpReplication {
    #[default]
    Default,
    Named(GcpReplicationName),
    Locations {
        locations: Vec<String>,
    },
}

#[derive(Debug)]
pub enum GcpReplicationName {
    Automatic,
}

/// By hand rather than `untagged`: serde's untagged error is a free-form
/// message, which configuration errors do not show.
impl<'de> Deserialize<'de> for GcpReplication {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Locations {
            locations: Vec<String>,
        }
        struct ReplicationVisitor;
        impl<'de> serde::de::Visitor<'de> for ReplicationVisitor {
            type Value = GcpReplication;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("automatic, or a block with the key `locations`")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<GcpReplication, E> {
                match name {
                    "automatic" => Ok(GcpReplication::Named(GcpReplicationName::Automatic)),
                    _ => Err(super::de::reason("must be automatic, or a block with the key `locations`")),
                }
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<GcpReplication, A::Error> {
                let Locations { locations } =
                    Locations::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(GcpReplication::Locations { locations })
            }
        }
        deserializer.deserialize_any(ReplicationVisitor)
    }
}

fn default_gcp_prefix() -> String {
    "secretd".into()
}

impl GcpConfig {
    pub fn scope(&self) -> TagScope {
        tag_scope(&self.tags, &self.filter_on_tags, &self.excluded_tags)
    }
}

/// `secret.azure-key-vault`, in the platform's shape (`vault-url`, a
/// `client-secret` block).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AzureConfig {
    /// `https://<vault-name>.vault.azure.net/`.
    pub vault_url: String,
    /// At most one credential block; with none, the default chain
    /// (environment, workload identity, managed identity).
    pub client_secret: Option<AzureClientSecret>,
    pub managed_identity: Option<AzureManagedIdentity>,
    pub workload_identity: Option<AzureWorkloadIdentity>,
    /// Entra ID's host, for sovereign clouds (or a test server).
    #[serde(default, deserialize_with = "empty_is_none")]
    pub authority_host: Option<String>,
    /// PEM CA bundle to trust besides the system roots.
    #[serde(default, deserialize_with = "empty_is_none")]
    pub ca_certificate: Option<String>,
    /// The SDK's check that the vault is under `*.vault.azure.net`; off
    /// only for a private endpoint's custom domain or a test server.
    #[serde(default = "default_true_flag", deserialize_with = "flag")]
    pub verify_challenge_resource: bool,
    #[serde(default = "default_azure_prefix")]
    pub name_prefix: String,
    /// Purge right after deleting, instead of leaving the secret
    /// recoverable for the vault's retention period.
    #[serde(default)]
    pub purge_on_delete: bool,
    #[serde(default = "default_es_timeout", with = "super::de::duration")]
    pub timeout: Duration,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub filter_on_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub excluded_tags: BTreeMap<String, String>,
    /// The circuit breaker of this backend.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// Calls per second to this backend; unlimited when absent.
    pub rate_limit: Option<RateLimitConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AzureClientSecret {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Credential,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AzureManagedIdentity {
    /// A user-assigned identity; the system-assigned one without it.
    pub client_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AzureWorkloadIdentity {
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub token_file: Option<PathBuf>,
}

fn default_azure_prefix() -> String {
    "secretd-".into()
}

fn default_true_flag() -> bool {
    true
}

/// A boolean, or its spelling as a string: `${VAR}` references yield
/// strings, and a switch like `verify-challenge-resource` is one an
/// operator sets per environment.
fn flag<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    struct FlagVisitor;
    impl serde::de::Visitor<'_> for FlagVisitor {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }

        fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<bool, E> {
            Ok(value)
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<bool, E> {
            match text {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(super::de::reason("must be true or false")),
            }
        }
    }
    deserializer.deserialize_any(FlagVisitor)
}

impl AzureConfig {
    pub fn scope(&self) -> TagScope {
        tag_scope(&self.tags, &self.filter_on_tags, &self.excluded_tags)
    }

    pub fn credential_blocks(&self) -> usize {
        usize::from(self.client_secret.is_some())
            + usize::from(self.managed_identity.is_some())
            + usize::from(self.workload_identity.is_some())
    }
}
