//! `secret.elasticsearch`: an Elasticsearch or OpenSearch index, values
//! encrypted at rest under `secret`.

use std::{fmt, path::PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    backend_block,
    shared::{check_encryption_secret, check_previous_secrets, is_http_url},
    BackendBlock, BackendError, BuiltStore,
};
use crate::config::Credential;

backend_block! {
    #[derive(Debug)]
    pub struct ElasticsearchConfig {
        /// Node URLs, `http://` or `https://`. One may carry `user:password@`
        /// (the backend turns it into basic auth).
        pub hosts: Hosts,
        #[serde(default = "default_index")]
        pub index: String,
        /// The encryption secret, at least 32 characters; inline or `file:`.
        pub secret: Option<Credential>,
        /// Secrets that values may still be sealed under (after a rotation of
        /// `secret`): they open values, never seal one. `secretd rekey`
        /// re-seals everything under `secret`, after which they can go.
        #[serde(default)]
        pub previous_secrets: Vec<Credential>,
        pub basic_auth: Option<ElasticsearchBasicAuth>,
        /// An encoded API key (`ApiKey` header).
        pub api_key: Option<Credential>,
        /// PEM CA bundle; when set, only it is trusted.
        pub ca_certificate: Option<PathBuf>,
    }
}

/// The node URLs. `Debug` shows them without `user:password@`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Hosts(pub Vec<String>);

impl fmt::Debug for Hosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|h| without_userinfo(h))).finish()
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ElasticsearchBasicAuth {
    pub username: String,
    pub password: Credential,
}

fn default_index() -> String {
    "secretd-secrets".into()
}

#[async_trait]
impl BackendBlock for ElasticsearchConfig {
    fn built_in(&self) -> bool {
        cfg!(feature = "elasticsearch")
    }

    fn validate(&self, at: &str, bad: &mut dyn FnMut(&str, &'static str)) {
        check_encryption_secret(&format!("{at}.secret"), self.secret.as_ref(), bad);
        check_previous_secrets(&format!("{at}.previous-secrets"), self.secret.as_ref(), &self.previous_secrets, bad);
        if self.hosts.0.is_empty() {
            bad(&format!("{at}.hosts"), "needs at least one node URL");
        }
        // A host may carry `user:password@`: it is never quoted, only its
        // index.
        for (i, host) in self.hosts.0.iter().enumerate() {
            if !is_http_url(host) {
                bad(&format!("{at}.hosts[{i}]"), "must start with http:// or https://");
            }
        }
        if self.basic_auth.is_some() && self.api_key.is_some() {
            bad(at, "takes basic-auth or api-key, not both");
        }
        if self.ca_certificate.as_ref().is_some_and(|ca| !ca.is_file()) {
            bad(&format!("{at}.ca-certificate"), "is not a readable file");
        }
    }

    fn write_only_settings(&self) -> Vec<&'static str> {
        Vec::new()
    }

    fn credentials(&self) -> Vec<&Credential> {
        let mut credentials: Vec<&Credential> = Vec::new();
        credentials.extend(self.secret.as_ref());
        credentials.extend(&self.previous_secrets);
        credentials.extend(self.api_key.as_ref());
        credentials.extend(self.basic_auth.as_ref().map(|b| &b.password));
        credentials
    }

    #[cfg(not(feature = "elasticsearch"))]
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        Err(BackendError::not_built_in(at, super::BackendType::Elasticsearch))
    }

    #[cfg(feature = "elasticsearch")]
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        use secretd_elasticsearch::{Auth, ElasticsearchOptions, ElasticsearchStore};
        let secret = self.secret.as_ref().ok_or_else(|| BackendError::MissingBlock(format!("{at}.secret")))?;
        let mut options = ElasticsearchOptions::new(self.hosts.0.clone(), secret.secret().clone())
            .with_index(self.index.clone())
            .with_previous_secrets(self.previous_secrets.iter().map(|p| p.secret().clone()))
            .with_timeout(self.timeout);
        if let Some(basic) = &self.basic_auth {
            options =
                options.with_auth(Auth::Basic { username: basic.username.clone(), password: basic.password.source() });
        } else if let Some(key) = &self.api_key {
            options = options.with_auth(Auth::ApiKey(key.source()));
        }
        if let Some(ca) = &self.ca_certificate {
            options = options.with_ca_certificate_pem(super::read_pem(&format!("{at}.ca-certificate"), ca)?);
        }
        let store = ElasticsearchStore::connect(options).await.map_err(|e| BackendError::start(at, e))?;
        Ok(BuiltStore::sealed(store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_hosts_without_their_password() {
        let hosts = Hosts(vec!["https://elastic:hunter2@es:9200/".into(), "http://es2:9200".into()]);
        let shown = format!("{hosts:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("elastic:"), "{shown}");
        assert!(shown.contains("https://[REDACTED]@es:9200/") && shown.contains("http://es2:9200"), "{shown}");
    }
}
