//! Building the Key Vault client: the HTTP transport, the retry policy and
//! the credential.
//!
//! The SDK gets a reqwest client made here rather than its default one, so
//! that TLS is rustls on ring (like the rest of the daemon, no aws-lc or
//! OpenSSL), an extra CA can be trusted (a TLS-inspecting proxy, or the
//! test server), each attempt has a deadline, and names can be pinned to
//! addresses. The same client serves the credential's token requests, so
//! Entra ID is reached the same way.
//!
//! Retries are the SDK's retry loop driven by secretd's [`RetryPolicy`]:
//! bounded tries, exponential backoff with full jitter (the SDK's own adds
//! at most 255 ms of jitter, so a fleet of sidecars would retry nearly in
//! step), on 408, 429, 500, 502, 503, 504 and dropped connections, per
//! request (so one page of a long listing is retried, not the listing). A
//! server's `Retry-After` is honoured up to [`MAX_RETRY_AFTER`].

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use azure_core::{
    cloud::{CloudConfiguration, CustomConfiguration},
    credentials::TokenCredential,
    http::{
        headers::{RETRY_AFTER, RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS},
        policies::RetryHeaders,
        ClientOptions, RetryOptions, StatusCode, Transport,
    },
};
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use secrecy::{ExposeSecret, SecretString};
use secretd_core::{CredentialSource, ErrorKind, RetryPolicy, StoreError};

use crate::{AzureCredential, AzureOptions};

/// The longest pause a server's `Retry-After` can impose on one retry.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

fn config_error(message: impl Into<String>) -> StoreError {
    StoreError::new(ErrorKind::InvalidName, message)
}

/// The HTTP client for the vault and for the credential.
pub fn http_client(options: &AzureOptions) -> Result<reqwest::Client, StoreError> {
    // reqwest is built without a bundled crypto provider; ring is the one
    // the rest of the daemon uses. A provider already installed is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(options.timeout)
        .connect_timeout(options.timeout.min(Duration::from_secs(10)))
        // Key Vault does not redirect; a redirect would carry the bearer
        // token elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("secretd-azure/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &options.ca_certificate_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| config_error("ca-certificate: not a PEM certificate or bundle").with_source(e))?;
        if certs.is_empty() {
            return Err(config_error("ca-certificate: the PEM holds no certificate"));
        }
        // Added to the platform's roots, not instead of them: the same
        // client reaches Entra ID (login.microsoftonline.com), whose
        // certificate a public CA signs.
        builder = builder.tls_certs_merge(certs);
    }
    for (host, addr) in &options.resolve {
        builder = builder.resolve(host, *addr);
    }
    builder.build().map_err(|e| config_error("cannot build the HTTP client (TLS setup failed)").with_source(e))
}

/// Client options for the vault client and the credential: our transport,
/// our retries, and the authority host if one is set.
pub fn client_options(
    http: &reqwest::Client,
    retry: RetryPolicy,
    authority_host: Option<&str>,
) -> Result<ClientOptions, StoreError> {
    let mut options = ClientOptions {
        transport: Some(Transport::new(Arc::new(http.clone()))),
        retry: RetryOptions::custom(Arc::new(JitteredRetry::new(retry))),
        ..Default::default()
    };
    if let Some(host) = authority_host {
        let url = url::Url::parse(host).map_err(|_| config_error(format!("authority-host {host:?} is not a URL")))?;
        if url.scheme() != "https" {
            return Err(config_error(format!("authority-host {host:?} must be an https:// URL")));
        }
        let mut custom = CustomConfiguration::default();
        custom.authority_host = host.trim_end_matches('/').to_owned();
        options.cloud = Some(Arc::new(CloudConfiguration::from(custom)));
    }
    Ok(options)
}

/// A client-secret credential whose secret is read from its source before
/// each token request: a secret rotated in its file is used for the next
/// token, without a restart. (The SDK's credential holds its secret for
/// life, so a new one is made when the secret changes.)
struct RotatingClientSecret {
    tenant_id: String,
    client_id: String,
    source: CredentialSource,
    options: ClientOptions,
    current: std::sync::Mutex<(SecretString, Arc<ClientSecretCredential>)>,
}

impl std::fmt::Debug for RotatingClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingClientSecret")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl RotatingClientSecret {
    fn new(
        tenant_id: String,
        client_id: String,
        source: CredentialSource,
        options: ClientOptions,
    ) -> Result<Self, StoreError> {
        let secret = source.current()?;
        let credential = Self::build(&tenant_id, &client_id, &secret, &options)?;
        Ok(Self { tenant_id, client_id, source, options, current: std::sync::Mutex::new((secret, credential)) })
    }

    fn build(
        tenant_id: &str,
        client_id: &str,
        secret: &SecretString,
        options: &ClientOptions,
    ) -> Result<Arc<ClientSecretCredential>, StoreError> {
        ClientSecretCredential::new(
            tenant_id,
            client_id.to_owned(),
            secret.expose_secret().to_owned().into(),
            Some(ClientSecretCredentialOptions { client_options: options.clone() }),
        )
        .map_err(|e| {
            config_error(format!("cannot set up the client-secret credential: {}", error_text(&e))).with_source(e)
        })
    }

    fn credential(&self) -> azure_core::Result<Arc<ClientSecretCredential>> {
        let secret = self.source.current().map_err(|e| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e.message().to_owned())
        })?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.0.expose_secret() != secret.expose_secret() {
            match Self::build(&self.tenant_id, &self.client_id, &secret, &self.options) {
                Ok(credential) => {
                    tracing::info!("the Key Vault client secret changed; using the new one");
                    *current = (secret, credential);
                }
                Err(e) => tracing::warn!("cannot use the changed Key Vault client secret, keeping the old one: {e}"),
            }
        }
        Ok(current.1.clone())
    }
}

#[async_trait]
impl TokenCredential for RotatingClientSecret {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let credential = self.credential()?;
        credential.get_token(scopes, options).await
    }
}

/// The token credential the options describe.
pub fn credential(
    credential: &AzureCredential,
    options: impl Fn() -> Result<ClientOptions, StoreError>,
) -> Result<Arc<dyn TokenCredential>, StoreError> {
    let sdk = |what: &str, e: azure_core::Error| {
        config_error(format!("cannot set up the {what} credential: {}", error_text(&e))).with_source(e)
    };
    Ok(match credential {
        AzureCredential::ClientSecret { tenant_id, client_id, client_secret } => Arc::new(RotatingClientSecret::new(
            tenant_id.clone(),
            client_id.clone(),
            client_secret.clone(),
            options()?,
        )?),
        AzureCredential::ManagedIdentity { client_id } => {
            let o = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options: options()?,
            };
            ManagedIdentityCredential::new(Some(o)).map_err(|e| sdk("managed identity", e))?
        }
        AzureCredential::WorkloadIdentity { tenant_id, client_id, token_file } => {
            let mut o = WorkloadIdentityCredentialOptions {
                client_id: client_id.clone(),
                tenant_id: tenant_id.clone(),
                token_file_path: token_file.clone(),
                ..Default::default()
            };
            o.credential_options.client_options = options()?;
            WorkloadIdentityCredential::new(Some(o)).map_err(|e| sdk("workload identity", e))?
        }
        AzureCredential::Default => return self::credential(&default_chain(&|k| std::env::var(k).ok()), options),
        AzureCredential::Token(custom) => custom.clone(),
    })
}

/// What the default chain resolves to, from the environment the Azure SDKs
/// use: a service principal's secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
/// `AZURE_CLIENT_SECRET`), else workload identity (AKS sets
/// `AZURE_FEDERATED_TOKEN_FILE`), else managed identity (user-assigned when
/// `AZURE_CLIENT_ID` is set). It is decided once, at start, rather than by
/// trying each in turn on every token request.
pub fn default_chain(env: &dyn Fn(&str) -> Option<String>) -> AzureCredential {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if let (Some(tenant_id), Some(client_id), Some(secret)) =
        (var("AZURE_TENANT_ID"), var("AZURE_CLIENT_ID"), var("AZURE_CLIENT_SECRET"))
    {
        return AzureCredential::ClientSecret { tenant_id, client_id, client_secret: secret.into() };
    }
    if var("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        return AzureCredential::WorkloadIdentity { tenant_id: None, client_id: None, token_file: None };
    }
    AzureCredential::ManagedIdentity { client_id: var("AZURE_CLIENT_ID") }
}

/// An SDK error's message with its causes.
fn error_text(e: &azure_core::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

/// The SDK's retry loop with secretd's policy; see the module docs.
#[derive(Debug)]
struct JitteredRetry {
    policy: RetryPolicy,
    headers: RetryHeaders,
}

impl JitteredRetry {
    fn new(policy: RetryPolicy) -> Self {
        Self { policy, headers: RetryHeaders { retry_headers: vec![X_MS_RETRY_AFTER_MS, RETRY_AFTER_MS, RETRY_AFTER] } }
    }
}

#[async_trait]
impl azure_core::http::policies::RetryPolicy for JitteredRetry {
    fn is_expired(&self, _since_start: azure_core::time::Duration, retry_count: u32) -> bool {
        retry_count.saturating_add(1) >= self.policy.attempts.max(1)
    }

    fn retry_headers(&self) -> Option<&RetryHeaders> {
        Some(&self.headers)
    }

    fn retry_status_codes(&self) -> &[StatusCode] {
        // Empty means the SDK's list: 408, 429, 500, 502, 503, 504.
        &[]
    }

    fn sleep_duration(&self, retry_count: u32) -> azure_core::time::Duration {
        azure_core::time::Duration::try_from(self.policy.backoff(retry_count))
            .unwrap_or(azure_core::time::Duration::ZERO)
    }

    async fn wait(&self, retry_count: u32, retry_after: Option<azure_core::time::Duration>) {
        let mut pause = self.policy.backoff(retry_count);
        if let Some(asked) = retry_after.and_then(|d| Duration::try_from(d).ok()) {
            pause = pause.max(asked.min(MAX_RETRY_AFTER));
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use azure_core::http::policies::RetryPolicy as _;

    use super::*;

    #[test]
    fn default_chain_follows_the_environment() {
        let env = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            default_chain(&move |k| map.get(k).cloned())
        };
        let sp = env(&[("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c"), ("AZURE_CLIENT_SECRET", "s")]);
        assert!(matches!(sp, AzureCredential::ClientSecret { ref tenant_id, .. } if tenant_id == "t"));
        let wi = env(&[("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"), ("AZURE_CLIENT_ID", "c")]);
        assert!(matches!(wi, AzureCredential::WorkloadIdentity { .. }));
        let user = env(&[("AZURE_CLIENT_ID", "c")]);
        assert!(matches!(user, AzureCredential::ManagedIdentity { client_id: Some(ref c) } if c == "c"));
        let system = env(&[("AZURE_CLIENT_SECRET", "")]);
        assert!(matches!(system, AzureCredential::ManagedIdentity { client_id: None }));
        // The secret never shows in Debug.
        assert!(!format!("{sp:?}").contains("\"s\""), "{sp:?}");
    }

    #[test]
    fn retries_are_bounded_by_attempts() {
        let retry = JitteredRetry::new(RetryPolicy { attempts: 3, ..Default::default() });
        assert!(!retry.is_expired(azure_core::time::Duration::ZERO, 0));
        assert!(!retry.is_expired(azure_core::time::Duration::ZERO, 1));
        assert!(retry.is_expired(azure_core::time::Duration::ZERO, 2));
        assert!(JitteredRetry::new(RetryPolicy::NONE).is_expired(azure_core::time::Duration::ZERO, 0));
    }

    #[test]
    fn authority_hosts_must_be_https() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().build().unwrap();
        assert!(client_options(&http, RetryPolicy::NONE, Some("http://login.example")).is_err());
        assert!(client_options(&http, RetryPolicy::NONE, Some("not a url")).is_err());
        assert!(client_options(&http, RetryPolicy::NONE, Some("https://login.example/")).unwrap().cloud.is_some());
    }
}
