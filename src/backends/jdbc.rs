//! `secret.jdbc`: the SQL store (SQLite, PostgreSQL, MySQL/MariaDB), values
//! encrypted at rest under `secret`.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use super::{
    backend_block,
    shared::{check_encryption_secret, check_previous_secrets},
    BackendBlock, BackendError, BuiltStore,
};
use crate::config::Credential;

backend_block! {
    #[derive(Debug)]
    pub struct JdbcConfig {
        /// `sqlite://path`, `postgres://...`, `mysql://...` or `mariadb://...`.
        pub url: SecretString,
        /// The encryption secret, at least 32 characters; inline or `file:`.
        pub secret: Option<Credential>,
        /// Secrets that values may still be sealed under (after a rotation of
        /// `secret`): they open values, never seal one. `secretd rekey`
        /// re-seals everything under `secret`, after which they can go.
        #[serde(default)]
        pub previous_secrets: Vec<Credential>,
        #[serde(default = "default_max_connections")]
        pub max_connections: u32,
    }
}

pub(crate) fn default_max_connections() -> u32 {
    10
}

const URL_SCHEMES: [&str; 5] = ["sqlite:", "postgres:", "postgresql:", "mysql:", "mariadb:"];

#[async_trait]
impl BackendBlock for JdbcConfig {
    fn built_in(&self) -> bool {
        true
    }

    fn validate(&self, at: &str, bad: &mut dyn FnMut(&str, &'static str)) {
        check_encryption_secret(&format!("{at}.secret"), self.secret.as_ref(), bad);
        check_previous_secrets(&format!("{at}.previous-secrets"), self.secret.as_ref(), &self.previous_secrets, bad);
        let url = self.url.expose_secret();
        if !URL_SCHEMES.iter().any(|p| url.starts_with(p)) {
            bad(&format!("{at}.url"), "must start with sqlite:, postgres:, postgresql:, mysql: or mariadb:");
        }
        if self.max_connections == 0 {
            bad(&format!("{at}.max-connections"), "must be at least 1");
        }
    }

    fn write_only_settings(&self) -> Vec<&'static str> {
        Vec::new()
    }

    fn credentials(&self) -> Vec<&Credential> {
        self.secret.iter().chain(&self.previous_secrets).collect()
    }

    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        let encryption = self.secret.as_ref().ok_or_else(|| BackendError::MissingBlock(format!("{at}.secret")))?;
        let url = self.url.expose_secret();
        if let Some(path) = url.strip_prefix("sqlite://") {
            // As for the state store: the database's folder is made private
            // when secretd creates it.
            let file = std::path::Path::new(path.split('?').next().unwrap_or(path));
            if let Some(folder) = file.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                crate::files::create_private_dir(folder)
                    .map_err(|e| BackendError::start(&format!("{at}.url"), format!("cannot create its folder: {e}")))?;
            }
        }
        let options = secretd_sql::SqlOptions { max_connections: self.max_connections };
        let previous: Vec<SecretString> = self.previous_secrets.iter().map(|p| p.secret().clone()).collect();
        let keys = secretd_core::Keyring::new(encryption.secret().expose_secret(), &previous)
            .map_err(|e| BackendError::start(at, e))?;
        let store = secretd_sql::SqlStore::connect_with_keys(url, keys, options)
            .await
            .map_err(|e| BackendError::start(at, e))?;
        Ok(BuiltStore::sealed(store))
    }
}
