//! The backend registry: from `secret.type` and its block to a store.
//!
//! Adding a backend touches its own crate, one arm of [`build_store`] and
//! the docs. Every store is wrapped in its tag scope here, so scoping works
//! the same for every backend.

use std::sync::Arc;

use secretd_core::{ScopedStore, SecretStore};

use crate::config::{BackendType, Config};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("secret.type: {0} is not available in this build of secretd")]
    NotBuiltIn(&'static str),
    #[error("secret.{0}: the block is missing")]
    MissingBlock(&'static str),
    #[error("secret.jdbc: {0}")]
    Sql(String),
}

/// Whether this build can serve `backend`.
pub fn is_built_in(backend: BackendType) -> bool {
    // Every type is listed, so adding one to the config forces a decision here.
    match backend {
        BackendType::Memory => true,
        BackendType::Jdbc => true,
        BackendType::AwsSecretManager
        | BackendType::AzureKeyVault
        | BackendType::GoogleSecretManager
        | BackendType::Vault
        | BackendType::Elasticsearch => false,
    }
}

/// Builds the configured store, connected and ready (migrations run).
pub async fn build_store(config: &Config) -> Result<Arc<dyn SecretStore>, BackendError> {
    let secret = &config.secret;
    let (store, scope): (Arc<dyn SecretStore>, _) = match secret.backend {
        BackendType::Memory => {
            let scope = secret.memory.as_ref().map(|m| m.scope()).unwrap_or_default();
            (Arc::new(secretd_memory::MemoryStore::new()), scope)
        }
        BackendType::Jdbc => {
            use secrecy::ExposeSecret;
            let jdbc = secret.jdbc.as_ref().ok_or(BackendError::MissingBlock("jdbc"))?;
            let encryption = jdbc.secret.as_ref().ok_or(BackendError::MissingBlock("jdbc.secret"))?;
            let options = secretd_sql::SqlOptions { max_connections: jdbc.max_connections };
            let store = secretd_sql::SqlStore::connect(jdbc.url.expose_secret(), encryption.expose_secret(), options)
                .await
                .map_err(|e| BackendError::Sql(e.to_string()))?;
            (Arc::new(store), jdbc.scope())
        }
        other => return Err(BackendError::NotBuiltIn(other.as_str())),
    };
    Ok(ScopedStore::wrap(store, scope))
}
