//! `secret.vault`: HashiCorp Vault (or OpenBao) KV v2. Key names follow the
//! platform's own configuration (`token`, `userpass`, `approle`,
//! `kubernetes`), with its
//! older spellings (`password`, `app-role`) accepted as aliases.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use super::{backend_block, shared::is_http_url, BackendBlock, BackendError, BuiltStore};
use crate::config::Credential;

backend_block! {
    #[derive(Debug)]
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
        /// Versions kept per secret, set on every write; unset leaves the
        /// engine's setting (10 by default).
        pub max_versions: Option<u64>,
        pub token: Option<VaultTokenAuth>,
        #[serde(alias = "password")]
        pub userpass: Option<VaultUserpassAuth>,
        #[serde(alias = "app-role")]
        pub approle: Option<VaultAppRoleAuth>,
        pub kubernetes: Option<VaultKubernetesAuth>,
    }
}

fn default_mount() -> String {
    "secret".into()
}

fn default_path_prefix() -> String {
    "secretd".into()
}

impl VaultConfig {
    /// How many auth blocks are set; exactly one must be.
    pub fn auth_methods(&self) -> usize {
        usize::from(self.token.is_some())
            + usize::from(self.userpass.is_some())
            + usize::from(self.approle.is_some())
            + usize::from(self.kubernetes.is_some())
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

/// Vault's Kubernetes auth: the pod's service account token, re-read at
/// every login because the kubelet rotates it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VaultKubernetesAuth {
    pub role: String,
    /// Where the Kubernetes method is mounted.
    #[serde(default = "default_kubernetes_mount", alias = "path")]
    pub mount: String,
    #[serde(default = "default_service_account_token_file")]
    pub token_file: PathBuf,
}

fn default_kubernetes_mount() -> String {
    "kubernetes".into()
}

fn default_service_account_token_file() -> PathBuf {
    "/var/run/secrets/kubernetes.io/serviceaccount/token".into()
}

const AUTH_METHODS: &str = "needs exactly one of token, userpass, approle or kubernetes";

/// The same rule the Vault store applies, checked here so `config check`
/// reports it without connecting.
fn check_path_prefix(raw: &str) -> Result<(), &'static str> {
    let trimmed = raw.trim_matches('/');
    if !trimmed.is_empty() && trimmed.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err("has an empty, '.' or '..' segment");
    }
    Ok(())
}

#[async_trait]
impl BackendBlock for VaultConfig {
    fn built_in(&self) -> bool {
        cfg!(feature = "vault")
    }

    fn validate(&self, at: &str, bad: &mut dyn FnMut(&str, &'static str)) {
        if !is_http_url(&self.address) {
            bad(&format!("{at}.address"), "must start with http:// or https://");
        }
        if self.auth_methods() != 1 {
            bad(at, AUTH_METHODS);
        }
        if let Some(kubernetes) = &self.kubernetes {
            if kubernetes.role.trim().is_empty() {
                bad(&format!("{at}.kubernetes.role"), "must not be empty");
            }
            if kubernetes.mount.trim_matches('/').is_empty() {
                bad(&format!("{at}.kubernetes.mount"), "must not be empty");
            }
        }
        if self.mount.trim_matches('/').is_empty() {
            bad(&format!("{at}.mount"), "must not be empty");
        }
        if let Err(reason) = check_path_prefix(&self.path_prefix) {
            bad(&format!("{at}.path-prefix"), reason);
        }
        if self.max_versions == Some(0) {
            bad(&format!("{at}.max-versions"), "must be at least 1 (leave it out to keep the engine's setting)");
        }
        if self.ca_certificate.as_ref().is_some_and(|ca| !ca.is_file()) {
            bad(&format!("{at}.ca-certificate"), "is not a readable file");
        }
    }

    fn write_only_settings(&self) -> Vec<&'static str> {
        self.max_versions.map(|_| "max-versions").into_iter().collect()
    }

    fn credentials(&self) -> Vec<&Credential> {
        let mut credentials: Vec<&Credential> = Vec::new();
        credentials.extend(self.token.as_ref().map(|t| &t.token));
        credentials.extend(self.userpass.as_ref().map(|u| &u.password));
        if let Some(approle) = &self.approle {
            credentials.extend([&approle.role_id, &approle.secret_id]);
        }
        credentials
    }

    #[cfg(not(feature = "vault"))]
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        Err(BackendError::not_built_in(at, super::BackendType::Vault))
    }

    #[cfg(feature = "vault")]
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        use secretd_vault::{PathPrefix, VaultAuth, VaultOptions, VaultStore};
        let auth = match (&self.token, &self.userpass, &self.approle, &self.kubernetes) {
            (Some(token), None, None, None) => VaultAuth::Token(token.token.source()),
            (None, Some(up), None, None) => VaultAuth::Userpass {
                mount: up.mount.clone(),
                username: up.username.clone(),
                password: up.password.source(),
            },
            (None, None, Some(ar), None) => VaultAuth::AppRole {
                mount: ar.mount.clone(),
                role_id: secrecy::ExposeSecret::expose_secret(ar.role_id.secret()).to_owned(),
                secret_id: ar.secret_id.source(),
            },
            (None, None, None, Some(k8s)) => VaultAuth::Kubernetes {
                mount: k8s.mount.trim_matches('/').to_owned(),
                role: k8s.role.clone(),
                token_file: k8s.token_file.clone(),
            },
            _ => return Err(BackendError::start(at, AUTH_METHODS)),
        };
        let mut options = VaultOptions::new(self.address.clone(), auth);
        options.mount = self.mount.clone();
        options.path_prefix =
            PathPrefix::new(&self.path_prefix).map_err(|e| BackendError::start(&format!("{at}.path-prefix"), e))?;
        options.connection.namespace = self.namespace.clone();
        options.connection.ca_certificate = self.ca_certificate.clone();
        options.connection.timeout = self.timeout;
        options.max_versions = self.max_versions;
        let store = VaultStore::connect(options).await.map_err(|e| BackendError::start(at, e))?;
        Ok(BuiltStore::plain(store))
    }
}
