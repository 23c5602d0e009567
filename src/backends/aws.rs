//! `secret.aws-secret-manager`: AWS Secrets Manager, in the platform's
//! shape (`access-key-id`, `secret-key-id`, `session-token`).

use async_trait::async_trait;

use super::{
    backend_block,
    shared::{empty_is_none, is_http_url},
    BackendBlock, BackendError, BuiltStore,
};
use crate::config::Credential;

backend_block! {
    #[derive(Debug)]
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
    }
}

fn default_name_prefix() -> String {
    "secretd/".into()
}

fn default_recovery_window() -> u8 {
    30
}

#[async_trait]
impl BackendBlock for AwsConfig {
    fn built_in(&self) -> bool {
        cfg!(feature = "aws")
    }

    fn validate(&self, at: &str, bad: &mut dyn FnMut(&str, &'static str)) {
        if self.region.is_empty() {
            bad(&format!("{at}.region"), "must not be empty");
        }
        match (&self.access_key_id, &self.secret_key_id) {
            (Some(_), Some(_)) | (None, None) => {}
            _ => {
                bad(at, "access-key-id and secret-key-id go together (leave both out for the default credential chain)")
            }
        }
        if self.session_token.is_some() && self.access_key_id.is_none() {
            bad(&format!("{at}.session-token"), "needs access-key-id and secret-key-id");
        }
        if !self.name_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c)) {
            bad(
                &format!("{at}.name-prefix"),
                "holds a character that secret names do not allow (A-Z a-z 0-9 / _ + = . @ -)",
            );
        }
        if !self.force_delete && !(7..=30).contains(&self.recovery_window_days) {
            bad(&format!("{at}.recovery-window-days"), "must be 7 to 30");
        }
        if self.endpoint.as_deref().is_some_and(|e| !is_http_url(e)) {
            bad(&format!("{at}.endpoint"), "must start with http:// or https://");
        }
    }

    fn write_only_settings(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.kms_key_id.is_some() {
            keys.push("kms-key-id");
        }
        if self.force_delete {
            keys.push("force-delete");
        }
        if self.recovery_window_days != default_recovery_window() {
            keys.push("recovery-window-days");
        }
        keys
    }

    fn credentials(&self) -> Vec<&Credential> {
        [&self.access_key_id, &self.secret_key_id, &self.session_token].into_iter().flatten().collect()
    }

    #[cfg(not(feature = "aws"))]
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        Err(BackendError::not_built_in(at, super::BackendType::AwsSecretManager))
    }

    #[cfg(feature = "aws")]
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        use secretd_aws::{AwsOptions, AwsStore, DeletePolicy, NamePrefix, StaticCredentials};
        let mut options = AwsOptions::new(self.region.clone());
        options.endpoint = self.endpoint.clone();
        options.credentials = match (&self.access_key_id, &self.secret_key_id) {
            (Some(id), Some(key)) => Some(StaticCredentials {
                access_key_id: id.source(),
                secret_access_key: key.source(),
                session_token: self.session_token.as_ref().map(|t| t.source()),
            }),
            _ => None,
        };
        options.kms_key_id = self.kms_key_id.clone();
        options.name_prefix =
            NamePrefix::new(&self.name_prefix).map_err(|e| BackendError::start(&format!("{at}.name-prefix"), e))?;
        options.delete = if self.force_delete {
            DeletePolicy::Force
        } else {
            DeletePolicy::RecoveryWindow(self.recovery_window_days)
        };
        options.timeout = self.timeout;
        options.max_attempts = 1;
        let store = AwsStore::connect(options).await.map_err(|e| BackendError::start(at, e))?;
        Ok(BuiltStore::plain(store))
    }
}
