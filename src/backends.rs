//! The backend registry: from `secret.type` and its block to a store.
//!
//! Adding a backend touches its own crate, one arm of [`build_store`] and
//! the docs. Every store is wrapped here, the same way for every backend:
//! its tag scope outermost, then the resilience layer (timeouts, retries,
//! circuit breaker, rate limit), then the metrics, so that each attempt
//! that reaches the backend is measured and a call the breaker refused is
//! not counted as a backend call.
//!
//! The resilience layer owns retries: the cloud SDKs are built with a
//! single attempt, so one `max-attempts` bounds the tries of a call, and
//! the caller's deadline bounds them all.

use std::sync::Arc;

use secrecy::ExposeSecret;
use secretd_core::{ScopedStore, SecretStore};

use crate::{
    config::{BackendType, Config},
    resilience::{breaker::CircuitBreaker, ResilientStore},
};

/// The store the broker calls, and its circuit breaker for the health
/// reports.
pub struct Backend {
    pub store: Arc<dyn SecretStore>,
    pub breaker: Arc<CircuitBreaker>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("secret.type: {0} is not available in this build of secretd")]
    NotBuiltIn(&'static str),
    #[error("secret.{0}: the block is missing")]
    MissingBlock(&'static str),
    /// The backend refused to start: `secret.<block>: why`.
    #[error("secret.{block}: {message}")]
    Start { block: &'static str, message: String },
}

impl BackendError {
    fn start(block: &'static str, e: impl std::fmt::Display) -> Self {
        BackendError::Start { block, message: e.to_string() }
    }
}

/// Whether this build can serve `backend`.
pub fn is_built_in(backend: BackendType) -> bool {
    // Every type is listed, so adding one to the config forces a decision here.
    match backend {
        BackendType::Memory => true,
        BackendType::Jdbc => true,
        BackendType::Vault => cfg!(feature = "vault"),
        BackendType::AwsSecretManager => cfg!(feature = "aws"),
        BackendType::Elasticsearch => cfg!(feature = "elasticsearch"),
        BackendType::GoogleSecretManager => cfg!(feature = "gcp"),
        BackendType::AzureKeyVault => cfg!(feature = "azure"),
    }
}

/// Builds the configured store, connected and ready (migrations run, logged
/// in).
pub async fn build_store(config: &Config) -> Result<Backend, BackendError> {
    let secret = &config.secret;
    let (store, scope): (Arc<dyn SecretStore>, _) = match secret.backend {
        BackendType::Memory => {
            let scope = secret.memory.as_ref().map(|m| m.scope()).unwrap_or_default();
            (Arc::new(secretd_memory::MemoryStore::new()), scope)
        }
        BackendType::Jdbc => {
            let jdbc = secret.jdbc.as_ref().ok_or(BackendError::MissingBlock("jdbc"))?;
            let encryption = jdbc.secret.as_ref().ok_or(BackendError::MissingBlock("jdbc.secret"))?;
            let options = secretd_sql::SqlOptions { max_connections: jdbc.max_connections };
            let store =
                secretd_sql::SqlStore::connect(jdbc.url.expose_secret(), encryption.secret().expose_secret(), options)
                    .await
                    .map_err(|e| BackendError::start("jdbc", e))?;
            (Arc::new(store), jdbc.scope())
        }
        #[cfg(feature = "vault")]
        BackendType::Vault => {
            let vault = secret.vault.as_ref().ok_or(BackendError::MissingBlock("vault"))?;
            (vault::build(vault).await?, vault.scope())
        }
        #[cfg(feature = "aws")]
        BackendType::AwsSecretManager => {
            let aws = secret.aws_secret_manager.as_ref().ok_or(BackendError::MissingBlock("aws-secret-manager"))?;
            (aws::build(aws).await?, aws.scope())
        }
        #[cfg(feature = "elasticsearch")]
        BackendType::Elasticsearch => {
            let es = secret.elasticsearch.as_ref().ok_or(BackendError::MissingBlock("elasticsearch"))?;
            (elasticsearch::build(es).await?, es.scope())
        }
        #[cfg(feature = "gcp")]
        BackendType::GoogleSecretManager => {
            let gcp =
                secret.google_secret_manager.as_ref().ok_or(BackendError::MissingBlock("google-secret-manager"))?;
            (gcp::build(gcp).await?, gcp.scope())
        }
        #[cfg(feature = "azure")]
        BackendType::AzureKeyVault => {
            let azure = secret.azure_key_vault.as_ref().ok_or(BackendError::MissingBlock("azure-key-vault"))?;
            (azure::build(azure).await?, azure.scope())
        }
        #[allow(unreachable_patterns)]
        other => return Err(BackendError::NotBuiltIn(other.as_str())),
    };
    let (settings, _) = secret.resilience();
    let resilient =
        ResilientStore::new(crate::metrics::InstrumentedStore::wrap(store), secret.backend.as_str(), settings);
    let breaker = resilient.breaker();
    Ok(Backend { store: ScopedStore::wrap(Arc::new(resilient), scope), breaker })
}

#[cfg(feature = "vault")]
mod vault {
    use std::sync::Arc;

    use secretd_core::SecretStore;
    use secretd_vault::{PathPrefix, VaultAuth, VaultOptions, VaultStore};

    use super::BackendError;
    use crate::config::VaultConfig;

    pub async fn build(config: &VaultConfig) -> Result<Arc<dyn SecretStore>, BackendError> {
        let auth = match (&config.token, &config.userpass, &config.approle) {
            (Some(token), None, None) => VaultAuth::Token(token.token.source()),
            (None, Some(up), None) => VaultAuth::Userpass {
                mount: up.mount.clone(),
                username: up.username.clone(),
                password: up.password.source(),
            },
            (None, None, Some(ar)) => VaultAuth::AppRole {
                mount: ar.mount.clone(),
                role_id: secrecy::ExposeSecret::expose_secret(ar.role_id.secret()).to_owned(),
                secret_id: ar.secret_id.source(),
            },
            _ => return Err(BackendError::start("vault", "needs exactly one of token, userpass or approle")),
        };
        let mut options = VaultOptions::new(config.address.clone(), auth);
        options.mount = config.mount.clone();
        options.path_prefix =
            PathPrefix::new(&config.path_prefix).map_err(|e| BackendError::start("vault.path-prefix", e))?;
        options.connection.namespace = config.namespace.clone();
        options.connection.ca_certificate = config.ca_certificate.clone();
        options.connection.timeout = config.timeout;
        options.max_versions = config.max_versions;
        let store = VaultStore::connect(options).await.map_err(|e| BackendError::start("vault", e))?;
        Ok(Arc::new(store))
    }
}

#[cfg(feature = "aws")]
mod aws {
    use std::sync::Arc;

    use secretd_aws::{AwsOptions, AwsStore, DeletePolicy, NamePrefix, StaticCredentials};
    use secretd_core::SecretStore;

    use super::BackendError;
    use crate::config::AwsConfig;

    pub async fn build(config: &AwsConfig) -> Result<Arc<dyn SecretStore>, BackendError> {
        let mut options = AwsOptions::new(config.region.clone());
        options.endpoint = config.endpoint.clone();
        options.credentials = match (&config.access_key_id, &config.secret_key_id) {
            (Some(id), Some(key)) => Some(StaticCredentials {
                access_key_id: id.source(),
                secret_access_key: key.source(),
                session_token: config.session_token.as_ref().map(|t| t.source()),
            }),
            _ => None,
        };
        options.kms_key_id = config.kms_key_id.clone();
        options.name_prefix = NamePrefix::new(&config.name_prefix)
            .map_err(|e| BackendError::start("aws-secret-manager.name-prefix", e))?;
        options.delete = if config.force_delete {
            DeletePolicy::Force
        } else {
            DeletePolicy::RecoveryWindow(config.recovery_window_days)
        };
        options.timeout = config.timeout;
        options.max_attempts = 1;
        let store = AwsStore::connect(options).await.map_err(|e| BackendError::start("aws-secret-manager", e))?;
        Ok(Arc::new(store))
    }
}

#[cfg(feature = "elasticsearch")]
mod elasticsearch {
    use std::sync::Arc;

    use secretd_core::SecretStore;
    use secretd_elasticsearch::{Auth, ElasticsearchOptions, ElasticsearchStore};

    use super::BackendError;
    use crate::config::ElasticsearchConfig;

    pub async fn build(config: &ElasticsearchConfig) -> Result<Arc<dyn SecretStore>, BackendError> {
        let secret = config.secret.as_ref().ok_or(BackendError::MissingBlock("elasticsearch.secret"))?;
        let mut options = ElasticsearchOptions::new(config.hosts.clone(), secret.secret().clone())
            .with_index(config.index.clone())
            .with_timeout(config.timeout);
        if let Some(basic) = &config.basic_auth {
            options =
                options.with_auth(Auth::Basic { username: basic.username.clone(), password: basic.password.source() });
        } else if let Some(key) = &config.api_key {
            options = options.with_auth(Auth::ApiKey(key.source()));
        }
        if let Some(ca) = &config.ca_certificate {
            let pem = std::fs::read(ca).map_err(|e| {
                BackendError::start("elasticsearch.ca-certificate", format!("cannot read {}: {e}", ca.display()))
            })?;
            options = options.with_ca_certificate_pem(pem);
        }
        let store = ElasticsearchStore::connect(options).await.map_err(|e| BackendError::start("elasticsearch", e))?;
        Ok(Arc::new(store))
    }
}

#[cfg(feature = "gcp")]
mod gcp {
    use std::sync::Arc;

    use secretd_core::{RetryPolicy, SecretStore};
    use secretd_gcp::{GcpCredentials, GcpOptions, GcpStore, NamePrefix, Replication};

    use super::BackendError;
    use crate::config::{GcpConfig, GcpReplication};

    pub async fn build(config: &GcpConfig) -> Result<Arc<dyn SecretStore>, BackendError> {
        let credentials = match (&config.service_account, config.anonymous) {
            (Some(key), _) => GcpCredentials::ServiceAccount(key.source()),
            (None, true) => GcpCredentials::Anonymous,
            (None, false) => GcpCredentials::ApplicationDefault,
        };
        let mut options = GcpOptions::new(config.project.clone(), credentials);
        options.endpoint = config.endpoint.clone();
        options.replication = match &config.replication {
            GcpReplication::Locations { locations } => Replication::UserManaged(locations.clone()),
            GcpReplication::Default | GcpReplication::Named(_) => Replication::Automatic,
        };
        options.name_prefix = NamePrefix::new(&config.name_prefix)
            .map_err(|e| BackendError::start("google-secret-manager.name-prefix", e))?;
        options.timeout = config.timeout;
        options.retry = RetryPolicy::NONE;
        let store = GcpStore::connect(options).await.map_err(|e| BackendError::start("google-secret-manager", e))?;
        Ok(Arc::new(store))
    }
}

#[cfg(feature = "azure")]
mod azure {
    use std::sync::Arc;

    use secretd_azure::{AzureCredential, AzureOptions, AzureStore, NamePrefix};
    use secretd_core::{RetryPolicy, SecretStore};

    use super::BackendError;
    use crate::config::AzureConfig;

    pub async fn build(config: &AzureConfig) -> Result<Arc<dyn SecretStore>, BackendError> {
        let credential = if let Some(cs) = &config.client_secret {
            AzureCredential::ClientSecret {
                tenant_id: cs.tenant_id.clone(),
                client_id: cs.client_id.clone(),
                client_secret: cs.client_secret.source(),
            }
        } else if let Some(mi) = &config.managed_identity {
            AzureCredential::ManagedIdentity { client_id: mi.client_id.clone() }
        } else if let Some(wi) = &config.workload_identity {
            AzureCredential::WorkloadIdentity {
                tenant_id: wi.tenant_id.clone(),
                client_id: wi.client_id.clone(),
                token_file: wi.token_file.clone(),
            }
        } else {
            AzureCredential::Default
        };
        let mut options = AzureOptions::new(config.vault_url.clone(), credential);
        options.authority_host = config.authority_host.clone();
        if let Some(ca) = &config.ca_certificate {
            let pem = std::fs::read(ca)
                .map_err(|e| BackendError::start("azure-key-vault.ca-certificate", format!("cannot read {ca}: {e}")))?;
            options.ca_certificate_pem = Some(pem);
        }
        options.verify_challenge_resource = config.verify_challenge_resource;
        options.name_prefix =
            NamePrefix::new(&config.name_prefix).map_err(|e| BackendError::start("azure-key-vault.name-prefix", e))?;
        options.purge_on_delete = config.purge_on_delete;
        options.timeout = config.timeout;
        options.retry = RetryPolicy::NONE;
        let store = AzureStore::connect(options).await.map_err(|e| BackendError::start("azure-key-vault", e))?;
        Ok(Arc::new(store))
    }
}
