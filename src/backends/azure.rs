//! `secret.azure-key-vault`: Azure Key Vault, in the platform's shape
//! (`vault-url`, a `client-secret` block).

use std::{fmt, path::PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use super::{backend_block, shared::empty_is_none, BackendBlock, BackendError, BuiltStore};
use crate::config::Credential;

backend_block! {
    #[derive(Debug)]
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
    }
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
                _ => Err(crate::config::de::reason("must be true or false")),
            }
        }
    }
    deserializer.deserialize_any(FlagVisitor)
}

impl AzureConfig {
    pub fn credential_blocks(&self) -> usize {
        usize::from(self.client_secret.is_some())
            + usize::from(self.managed_identity.is_some())
            + usize::from(self.workload_identity.is_some())
    }
}

#[async_trait]
impl BackendBlock for AzureConfig {
    fn built_in(&self) -> bool {
        cfg!(feature = "azure")
    }

    fn validate(&self, at: &str, bad: &mut dyn FnMut(&str, &'static str)) {
        if !self.vault_url.starts_with("https://") {
            bad(&format!("{at}.vault-url"), "must start with https://");
        }
        if self.credential_blocks() > 1 {
            bad(at, "takes at most one of client-secret, managed-identity, workload-identity");
        }
        if self.ca_certificate.as_ref().is_some_and(|ca| !std::path::Path::new(ca).is_file()) {
            bad(&format!("{at}.ca-certificate"), "is not a readable file");
        }
    }

    fn write_only_settings(&self) -> Vec<&'static str> {
        if self.purge_on_delete {
            vec!["purge-on-delete"]
        } else {
            Vec::new()
        }
    }

    fn credentials(&self) -> Vec<&Credential> {
        self.client_secret.iter().map(|c| &c.client_secret).collect()
    }

    #[cfg(not(feature = "azure"))]
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        Err(BackendError::not_built_in(at, super::BackendType::AzureKeyVault))
    }

    #[cfg(feature = "azure")]
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        use secretd_azure::{AzureCredential, AzureOptions, AzureStore, NamePrefix};
        use secretd_core::RetryPolicy;
        let credential = if let Some(cs) = &self.client_secret {
            AzureCredential::ClientSecret {
                tenant_id: cs.tenant_id.clone(),
                client_id: cs.client_id.clone(),
                client_secret: cs.client_secret.source(),
            }
        } else if let Some(mi) = &self.managed_identity {
            AzureCredential::ManagedIdentity { client_id: mi.client_id.clone() }
        } else if let Some(wi) = &self.workload_identity {
            AzureCredential::WorkloadIdentity {
                tenant_id: wi.tenant_id.clone(),
                client_id: wi.client_id.clone(),
                token_file: wi.token_file.clone(),
            }
        } else {
            AzureCredential::Default
        };
        let mut options = AzureOptions::new(self.vault_url.clone(), credential);
        options.authority_host = self.authority_host.clone();
        if let Some(ca) = &self.ca_certificate {
            options.ca_certificate_pem =
                Some(super::read_pem(&format!("{at}.ca-certificate"), std::path::Path::new(ca))?);
        }
        options.verify_challenge_resource = self.verify_challenge_resource;
        options.name_prefix =
            NamePrefix::new(&self.name_prefix).map_err(|e| BackendError::start(&format!("{at}.name-prefix"), e))?;
        options.purge_on_delete = self.purge_on_delete;
        options.timeout = self.timeout;
        options.retry = RetryPolicy::NONE;
        let store = AzureStore::connect(options).await.map_err(|e| BackendError::start(at, e))?;
        Ok(BuiltStore::plain(store))
    }
}
