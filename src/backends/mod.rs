//! The backend registry: every backend secretd knows, each one unit.
//!
//! A backend lives in one file of this folder: its configuration block
//! (declared with [`backend_block!`], which adds the keys every block
//! shares), its checks, the credential files it reads, and how it is built.
//! [`BackendBlock`] is what each file implements; [`BackendType`] and
//! [`with_backend_blocks!`] list them once. Adding a backend is a variant
//! there, a field in the macro and a file here: the compiler refuses the
//! variant until the macro's match has its arm, and the block until it
//! implements every method of [`BackendBlock`].
//!
//! Every store is wrapped here, the same way for every backend: its tag
//! scope outermost, then the resilience layer (timeouts, retries, circuit
//! breaker, rate limit), then the metrics, so that each attempt that
//! reaches the backend is measured and a call the breaker refused is not
//! counted as a backend call.
//!
//! The resilience layer owns retries: the cloud SDKs are built with a
//! single attempt, so one `max-attempts` bounds the tries of a call, and
//! the caller's deadline bounds them all.

pub mod aws;
pub mod azure;
pub mod elasticsearch;
pub mod gcp;
pub mod jdbc;
pub mod memory;
mod shared;
pub mod vault;

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use secretd_core::{Reseal, ScopedStore, SecretStore};
use serde::Deserialize;

pub(crate) use shared::backend_block;
pub use shared::{validate_shared, SharedKeys, DEFAULT_TIMEOUT};

use crate::{
    config::Credential,
    resilience::{breaker::CircuitBreaker, ResilientStore},
};

/// The secret backends, by their `type` name. Every type the platform
/// knows is accepted here so that configuration files can be checked
/// before a backend is built in; [`BackendBlock::built_in`] says whether
/// this build can serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendType {
    Jdbc,
    Memory,
    AwsSecretManager,
    AzureKeyVault,
    GoogleSecretManager,
    Vault,
    Elasticsearch,
}

impl BackendType {
    /// The `type` value, which is also the key of the block.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendType::Jdbc => "jdbc",
            BackendType::Memory => "memory",
            BackendType::AwsSecretManager => "aws-secret-manager",
            BackendType::AzureKeyVault => "azure-key-vault",
            BackendType::GoogleSecretManager => "google-secret-manager",
            BackendType::Vault => "vault",
            BackendType::Elasticsearch => "elasticsearch",
        }
    }
}

impl fmt::Display for BackendType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Adds `type` and one optional block per backend to a configuration
/// struct (`secret`, and each `secret.dedicated` entry), and implements
/// [`BackendBlocks`] for it. serde cannot refuse unknown keys through
/// `flatten`, so the fields are written into the struct itself.
macro_rules! with_backend_blocks {
    ($(#[$attr:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$attr])*
        pub struct $name {
            $($fields)*
            /// Which backend serves; its block is the one of the same name.
            #[serde(rename = "type")]
            pub backend: $crate::backends::BackendType,
            pub jdbc: Option<$crate::backends::jdbc::JdbcConfig>,
            pub memory: Option<$crate::backends::memory::MemoryConfig>,
            pub aws_secret_manager: Option<$crate::backends::aws::AwsConfig>,
            pub azure_key_vault: Option<$crate::backends::azure::AzureConfig>,
            pub google_secret_manager: Option<$crate::backends::gcp::GcpConfig>,
            pub vault: Option<$crate::backends::vault::VaultConfig>,
            pub elasticsearch: Option<$crate::backends::elasticsearch::ElasticsearchConfig>,
        }

        impl $crate::backends::BackendBlocks for $name {
            fn backend_type(&self) -> $crate::backends::BackendType {
                self.backend
            }

            fn block(&self, backend: $crate::backends::BackendType) -> Option<&dyn $crate::backends::BackendBlock> {
                use $crate::backends::BackendType as T;
                fn dyn_block<B: $crate::backends::BackendBlock>(b: &B) -> &dyn $crate::backends::BackendBlock {
                    b
                }
                match backend {
                    T::Jdbc => self.jdbc.as_ref().map(dyn_block),
                    T::Memory => Some(self.memory.as_ref().map_or($crate::backends::memory::default_block(), dyn_block)),
                    T::AwsSecretManager => self.aws_secret_manager.as_ref().map(dyn_block),
                    T::AzureKeyVault => self.azure_key_vault.as_ref().map(dyn_block),
                    T::GoogleSecretManager => self.google_secret_manager.as_ref().map(dyn_block),
                    T::Vault => self.vault.as_ref().map(dyn_block),
                    T::Elasticsearch => self.elasticsearch.as_ref().map(dyn_block),
                }
            }

            fn present_blocks(&self) -> Vec<(&'static str, &dyn $crate::backends::BackendBlock)> {
                let mut blocks: Vec<(&'static str, &dyn $crate::backends::BackendBlock)> = Vec::new();
                macro_rules! push {
                    ($field:ident, $key:literal) => {
                        if let Some(b) = &self.$field {
                            blocks.push(($key, b));
                        }
                    };
                }
                push!(jdbc, "jdbc");
                push!(memory, "memory");
                push!(aws_secret_manager, "aws-secret-manager");
                push!(azure_key_vault, "azure-key-vault");
                push!(google_secret_manager, "google-secret-manager");
                push!(vault, "vault");
                push!(elasticsearch, "elasticsearch");
                blocks
            }
        }
    };
}
pub(crate) use with_backend_blocks;

/// A configuration struct that names a backend and holds its block.
pub trait BackendBlocks {
    fn backend_type(&self) -> BackendType;

    /// The block of `backend`, when the file has one (`memory` needs none).
    fn block(&self, backend: BackendType) -> Option<&dyn BackendBlock>;

    /// Every block the file holds, chosen or not, with its key: each is
    /// checked, and its credential files count.
    fn present_blocks(&self) -> Vec<(&'static str, &dyn BackendBlock)>;

    /// The block `type` chooses.
    fn selected(&self) -> Option<&dyn BackendBlock> {
        self.block(self.backend_type())
    }
}

/// One backend's block: what only it knows. The keys all blocks share
/// come with [`backend_block!`] ([`SharedKeys`]).
#[async_trait]
pub trait BackendBlock: SharedKeys + fmt::Debug + Send + Sync {
    /// Whether this build of secretd has the backend (its cargo feature).
    fn built_in(&self) -> bool;

    /// Checks what serde cannot; `at` is the block's dotted path
    /// (`secret.vault`, `secret.dedicated[0].vault`).
    fn validate(&self, at: &str, bad: &mut dyn FnMut(&str, &'static str));

    /// The credentials the block holds, for `delete-files-on-start` and the
    /// permission checks of their files.
    fn credentials(&self) -> Vec<&Credential>;

    /// The keys set in this block that only a write uses (`kms-key-id`,
    /// `max-versions`): a read-only backend must not have them.
    fn write_only_settings(&self) -> Vec<&'static str>;

    /// Connects the store, ready to serve (migrations run, logged in).
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError>;
}

/// A store as its block builds it, and, for a store whose values secretd
/// seals at rest (SQL, Elasticsearch), the same store as `secretd rekey`
/// drives it.
pub struct BuiltStore {
    pub store: Arc<dyn SecretStore>,
    pub reseal: Option<Arc<dyn Reseal>>,
}

impl BuiltStore {
    pub fn plain(store: impl SecretStore) -> Self {
        Self { store: Arc::new(store), reseal: None }
    }

    pub fn sealed<S: SecretStore + Reseal>(store: S) -> Self {
        let store = Arc::new(store);
        Self { store: store.clone(), reseal: Some(store) }
    }
}

/// The store the broker calls, and its circuit breaker for the health
/// reports.
pub struct Backend {
    pub store: Arc<dyn SecretStore>,
    pub breaker: Arc<CircuitBreaker>,
    /// The store itself, unwrapped, when its values are sealed by secretd.
    pub reseal: Option<Arc<dyn Reseal>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{at}: {backend} is not available in this build of secretd")]
    NotBuiltIn { at: String, backend: &'static str },
    #[error("{0}: the block is missing")]
    MissingBlock(String),
    /// The backend refused to start: `secret.<block>: why`.
    #[error("{at}: {message}")]
    Start { at: String, message: String },
}

impl BackendError {
    pub(crate) fn start(at: &str, e: impl fmt::Display) -> Self {
        BackendError::Start { at: at.to_owned(), message: e.to_string() }
    }

    pub(crate) fn not_built_in(at: &str, backend: BackendType) -> Self {
        BackendError::NotBuiltIn { at: at.to_owned(), backend: backend.as_str() }
    }
}

/// Builds the backend `blocks` chooses, connected and wrapped; `at` is the
/// dotted path of the struct that holds the blocks (`secret`), `name`
/// names it in metrics, health and messages.
pub async fn build_backend(blocks: &dyn BackendBlocks, at: &str, name: &str) -> Result<Backend, BackendError> {
    let backend = blocks.backend_type();
    let block_at = format!("{at}.{}", backend.as_str());
    let block = blocks.selected().ok_or_else(|| BackendError::MissingBlock(block_at.clone()))?;
    if !block.built_in() {
        return Err(BackendError::not_built_in(&format!("{at}.type"), backend));
    }
    let BuiltStore { store, reseal } = block.build(&block_at).await?;
    if let Some(sealed) = &reseal {
        // A wrong secret, or one taken out of previous-secrets too early,
        // stops the start rather than failing reads one by one.
        sealed.check_keys().await.map_err(|e| BackendError::start(&format!("{block_at}.secret"), e))?;
    }
    let resilient = ResilientStore::new(crate::metrics::InstrumentedStore::wrap(store, name), name, block.resilience());
    let breaker = resilient.breaker();
    Ok(Backend { store: ScopedStore::wrap(Arc::new(resilient), block.scope()), breaker, reseal })
}

/// Reads a PEM file a block names, for its TLS trust.
#[cfg(any(feature = "elasticsearch", feature = "azure"))]
fn read_pem(at: &str, path: &std::path::Path) -> Result<Vec<u8>, BackendError> {
    std::fs::read(path).map_err(|e| BackendError::start(at, format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load_str;

    /// The smallest valid block of each backend.
    const MINIMAL: [(&str, &str); 7] = [
        ("jdbc", "url: sqlite://x.db\n    secret: 0123456789abcdef0123456789abcdef"),
        ("memory", "max-attempts: 3"),
        ("aws-secret-manager", "region: us-east-1"),
        ("azure-key-vault", "vault-url: https://x.vault.azure.net/"),
        ("google-secret-manager", "project: p"),
        ("vault", "address: http://127.0.0.1:8200\n    token: {token: t}"),
        ("elasticsearch", "hosts: [http://127.0.0.1:9200]\n    secret: 0123456789abcdef0123456789abcdef"),
    ];

    #[test]
    fn every_block_shares_the_same_keys_and_defaults() {
        for (key, block) in MINIMAL {
            let yaml = format!("secret:\n  type: {key}\n  {key}:\n    {block}\n");
            let config = load_str(&yaml, Path::new("t.yaml"), &|_| None).unwrap_or_else(|e| panic!("{key}: {e}"));
            let chosen = config.secret.selected().expect("the block is there");
            let r = chosen.resilience();
            assert_eq!((r.timeout, r.max_attempts), (DEFAULT_TIMEOUT, 3), "{key}");
            assert_eq!((r.failure_threshold, r.open_for, r.rate_limit), (5, std::time::Duration::from_secs(10), None));
            assert!(chosen.scope().is_empty(), "{key}");

            // Each shared key is accepted, and checked, in every block.
            let yaml = format!(
                "secret:\n  type: {key}\n  {key}:\n    {block}\n    tags: {{env: prod}}\n    filter-on-tags: {{team: a}}\n    \
                 excluded-tags: {{old: 'yes'}}\n    timeout: 2h\n    \
                 circuit-breaker: {{failure-threshold: 2, open-for: 0s}}\n    rate-limit: {{requests-per-second: 0}}\n"
            );
            let error = load_str(&yaml, Path::new("t.yaml"), &|_| None).unwrap_err().to_string();
            for field in ["timeout: must be at most 1h", "circuit-breaker.open-for", "rate-limit.requests-per-second"] {
                assert!(error.contains(&format!("secret.{key}.{field}")), "{key}: {field} missing in {error}");
            }
        }
    }

    #[test]
    fn a_type_without_its_block_names_the_block() {
        let error = load_str("secret:\n  type: vault\n", Path::new("t.yaml"), &|_| None).unwrap_err().to_string();
        assert!(error.contains("secret.vault: is required"), "{error}");
        // `memory` needs no block.
        assert!(load_str("secret:\n  type: memory\n", Path::new("t.yaml"), &|_| None).is_ok());
    }

    #[test]
    fn previous_secrets_are_checked_like_the_secret() {
        const A: &str = "0123456789abcdef0123456789abcdef";
        const B: &str = "fedcba9876543210fedcba9876543210";
        for key in ["jdbc", "elasticsearch"] {
            let head = match key {
                "jdbc" => "url: sqlite://x.db",
                _ => "hosts: [http://127.0.0.1:9200]",
            };
            let yaml = format!(
                "secret:\n  type: {key}\n  {key}:\n    {head}\n    secret: {A}\n    previous-secrets: [short, {A}, {B}, {B}]\n"
            );
            let error = load_str(&yaml, Path::new("t.yaml"), &|_| None).unwrap_err().to_string();
            for (i, why) in [(0, "at least 32"), (1, "is the current secret"), (3, "is listed twice")] {
                let field = format!("secret.{key}.previous-secrets[{i}]: ");
                assert!(error.contains(&field) && error.contains(why), "{field}{why} missing in {error}");
            }
            assert!(!error.contains("previous-secrets[2]"), "{error}");
            assert!(!error.contains(A) && !error.contains(B), "a secret was quoted: {error}");
            let ok =
                format!("secret:\n  type: {key}\n  {key}:\n    {head}\n    secret: {A}\n    previous-secrets: [{B}]\n");
            let config = load_str(&ok, Path::new("t.yaml"), &|_| None).unwrap();
            assert_eq!(
                config.secret.selected().unwrap().credentials().len(),
                2,
                "{key}: the previous secret is a credential"
            );
        }
    }
}
