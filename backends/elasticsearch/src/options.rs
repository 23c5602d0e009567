//! What an operator configures: the cluster's addresses, the index, the
//! credentials, the CA and the encryption secret.
//!
//! These are plain data with a constructor for the two settings that have
//! no sensible default (where the cluster is and the encryption secret) and
//! setters for the rest. `Debug` never prints a credential, a secret or a
//! userinfo part of a host URL, because options end up in logs.

use std::{fmt, time::Duration};

use secrecy::SecretString;
use secretd_core::CredentialSource;

/// The index secretd writes to unless told otherwise.
pub const DEFAULT_INDEX: &str = "secretd-secrets";

/// How long one HTTP request may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How secretd authenticates to the cluster.
#[derive(Clone, Default)]
pub enum Auth {
    /// No `Authorization` header: a cluster without security, or one
    /// behind a proxy that authenticates.
    #[default]
    None,
    /// HTTP basic authentication with a native or file-realm user.
    Basic { username: String, password: CredentialSource },
    /// An API key in its encoded form, the `encoded` field Elasticsearch
    /// returns when the key is created (base64 of `id:api_key`); sent as
    /// `Authorization: ApiKey <encoded>`.
    ApiKey(CredentialSource),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { username, .. } => {
                f.debug_struct("Basic").field("username", username).field("password", &"[REDACTED]").finish()
            }
            Auth::ApiKey(_) => f.write_str("ApiKey([REDACTED])"),
        }
    }
}

/// Settings of an [`ElasticsearchStore`](crate::ElasticsearchStore).
///
/// Built with [`ElasticsearchOptions::new`] and adjusted with the `with_*`
/// setters or by assigning the public fields.
#[derive(Clone)]
#[non_exhaustive]
pub struct ElasticsearchOptions {
    /// Base URLs of the cluster's nodes, `http://` or `https://`, e.g.
    /// `https://es-1.internal:9200`. Requests rotate over them, so a node
    /// that is down costs one retry, not an outage.
    pub hosts: Vec<String>,
    /// The index holding the secrets; created with secretd's mapping on
    /// first start. Default `secretd-secrets`.
    pub index: String,
    pub auth: Auth,
    /// PEM of the CA (or CAs) that signed the cluster's certificates. When
    /// set, only these are trusted; otherwise the platform's roots are.
    pub ca_certificate_pem: Option<Vec<u8>>,
    /// The encryption secret, at least 32 characters; values are sealed
    /// under a key derived from it before they leave the process.
    pub secret: SecretString,
    /// Earlier secrets, each at least 32 characters: values sealed under
    /// them still open, and `rekey` moves them to `secret`. Empty by
    /// default.
    pub previous_secrets: Vec<SecretString>,
    /// The limit for one HTTP request (connect, send and read).
    pub timeout: Duration,
}

impl ElasticsearchOptions {
    pub fn new<H, S>(hosts: impl IntoIterator<Item = H>, secret: S) -> Self
    where
        H: Into<String>,
        S: Into<SecretString>,
    {
        Self {
            hosts: hosts.into_iter().map(Into::into).collect(),
            index: DEFAULT_INDEX.to_owned(),
            auth: Auth::None,
            ca_certificate_pem: None,
            secret: secret.into(),
            previous_secrets: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn with_index(mut self, index: impl Into<String>) -> Self {
        self.index = index.into();
        self
    }

    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    pub fn with_ca_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificate_pem = Some(pem.into());
        self
    }

    pub fn with_previous_secrets(mut self, previous: impl IntoIterator<Item = SecretString>) -> Self {
        self.previous_secrets = previous.into_iter().collect();
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl fmt::Debug for ElasticsearchOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<String> = self.hosts.iter().map(|h| redact_userinfo(h)).collect();
        f.debug_struct("ElasticsearchOptions")
            .field("hosts", &hosts)
            .field("index", &self.index)
            .field("auth", &self.auth)
            .field("ca_certificate_pem", &self.ca_certificate_pem.as_ref().map(|pem| format!("{} bytes", pem.len())))
            .field("secret", &"[REDACTED]")
            .field("previous_secrets", &format!("{} [REDACTED]", self.previous_secrets.len()))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `https://user:pass@host` as `https://[REDACTED]@host`, for logs.
pub(crate) fn redact_userinfo(host: &str) -> String {
    match host.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://[REDACTED]@{}", &rest[at + 1..]),
                None => host.to_owned(),
            }
        }
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials_and_secret() {
        let options = ElasticsearchOptions::new(
            ["https://elastic:hunter2-url@es:9200/"],
            "s3cr3t-encryption-key-0123456789abcdef",
        )
        .with_auth(Auth::Basic { username: "elastic".into(), password: "hunter2-password".into() })
        .with_ca_certificate_pem(b"-----BEGIN CERTIFICATE-----".to_vec())
        .with_previous_secrets([SecretString::from("0ld-encryption-key-0123456789abcdef")]);
        let shown = format!("{options:?}");
        for hidden in
            ["hunter2-url", "hunter2-password", "s3cr3t-encryption-key", "BEGIN CERTIFICATE", "0ld-encryption"]
        {
            assert!(!shown.contains(hidden), "{hidden} leaked into {shown}");
        }
        assert!(shown.contains("elastic") && shown.contains("es:9200"), "{shown}");
        let api = format!("{:?}", Auth::ApiKey("VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==".into()));
        assert_eq!(api, "ApiKey([REDACTED])");
    }

    #[test]
    fn defaults() {
        let options = ElasticsearchOptions::new(["http://127.0.0.1:9200"], "x".repeat(32));
        assert_eq!(options.index, DEFAULT_INDEX);
        assert_eq!(options.timeout, DEFAULT_TIMEOUT);
        assert!(matches!(options.auth, Auth::None));
    }

    #[test]
    fn userinfo_redaction() {
        assert_eq!(redact_userinfo("http://a:b@h:1/p@x"), "http://[REDACTED]@h:1/p@x");
        assert_eq!(redact_userinfo("http://h:1"), "http://h:1");
        assert_eq!(redact_userinfo("no scheme"), "no scheme");
    }
}
