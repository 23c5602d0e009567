//! What the Google Secret Manager store is configured with, and how its
//! credentials become a client's.
//!
//! The daemon's `secret.google-secret-manager` block maps onto
//! [`GcpOptions`] one key each: `project`, `service-account` (the key's
//! JSON, inline as in the platform's config or as `file:`), `endpoint`,
//! `replication`, `name-prefix`, `timeout`, `max-attempts`. Anything wrong
//! is refused by [`crate::GcpStore::connect`] with a message naming the
//! option, before any request is sent.

use std::{fmt, path::PathBuf, time::Duration};

use google_cloud_auth::credentials::{self, Credentials};
use secrecy::{ExposeSecret, SecretString};
use secretd_core::{CredentialSource, RetryPolicy, StoreError};
use serde_json::Value;

use crate::names::NamePrefix;

/// How secretd proves itself to Google.
#[derive(Clone)]
#[non_exhaustive]
pub enum GcpCredentials {
    /// A service-account key as JSON: the platform's inline
    /// `service-account: |` block, or the contents of the key file.
    ServiceAccountJson(SecretString),
    /// A service-account key as JSON, read from its source again before
    /// each request's headers are made: a key rotated in its file is used
    /// from then on, without a restart.
    ServiceAccount(CredentialSource),
    /// A service-account key file, read by [`crate::GcpStore::connect`].
    ServiceAccountFile(PathBuf),
    /// Application Default Credentials: the file named by
    /// `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's application-default
    /// login, or the metadata server (GCE, GKE workload identity, Cloud Run).
    ApplicationDefault,
    /// No credentials at all. For emulators and test servers only, and
    /// only together with an `endpoint`: Google refuses such requests.
    Anonymous,
}

impl fmt::Debug for GcpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GcpCredentials::ServiceAccountJson(_) => f.write_str("ServiceAccountJson(<redacted>)"),
            GcpCredentials::ServiceAccount(source) => f.debug_tuple("ServiceAccount").field(source).finish(),
            GcpCredentials::ServiceAccountFile(path) => f.debug_tuple("ServiceAccountFile").field(path).finish(),
            GcpCredentials::ApplicationDefault => f.write_str("ApplicationDefault"),
            GcpCredentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// Where new secrets keep their data. It is fixed when a secret is
/// created; changing it affects only secrets created afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Replication {
    /// Google chooses the locations.
    #[default]
    Automatic,
    /// Exactly these locations (`us-east1`, `europe-west1`, ...).
    UserManaged(Vec<String>),
}

/// What [`crate::GcpStore::connect`] needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GcpOptions {
    /// The project id (or number) the secrets live in.
    pub project: String,
    pub credentials: GcpCredentials,
    /// Another endpoint than `https://secretmanager.googleapis.com` (a
    /// private or regional endpoint, an emulator); plain `http` is allowed.
    pub endpoint: Option<String>,
    pub replication: Replication,
    /// The first part of every secret id (see [`crate::names`]); `secretd`
    /// by default.
    pub name_prefix: NamePrefix,
    /// Each attempt's deadline.
    pub timeout: Duration,
    /// Retries of throttled, unavailable and timed-out calls.
    pub retry: RetryPolicy,
}

impl GcpOptions {
    pub fn new(project: impl Into<String>, credentials: GcpCredentials) -> Self {
        Self {
            project: project.into(),
            credentials,
            endpoint: None,
            replication: Replication::Automatic,
            name_prefix: NamePrefix::new("secretd").unwrap_or_else(|_| unreachable!("a valid prefix")),
            timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }

    /// Refuses options that cannot work, naming the option.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let p = &self.project;
        // Project ids (`my-project-123`), numbers, and the older
        // domain-scoped ids (`example.com:my-project`).
        let plausible = (1..=100).contains(&p.len())
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':'));
        if !plausible {
            return Err(StoreError::invalid_name(format!(
                "project {p:?} is not a Google Cloud project id (lowercase letters, digits and '-')"
            )));
        }
        if let Replication::UserManaged(locations) = &self.replication {
            if locations.is_empty() {
                return Err(StoreError::invalid_name("user-managed replication needs at least one location"));
            }
            if let Some(bad) = locations
                .iter()
                .find(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            {
                return Err(StoreError::invalid_name(format!(
                    "replication location {bad:?} is not a Google Cloud location (like us-east1)"
                )));
            }
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                return Err(StoreError::invalid_name(format!(
                    "endpoint {endpoint:?} must be an http:// or https:// URL"
                )));
            }
        }
        if matches!(self.credentials, GcpCredentials::Anonymous) && self.endpoint.is_none() {
            return Err(StoreError::invalid_name(
                "anonymous credentials are for emulators only: they need an endpoint",
            ));
        }
        if self.timeout.is_zero() {
            return Err(StoreError::invalid_name("the timeout must be longer than zero"));
        }
        Ok(())
    }
}

/// Builds the client's credentials. A service-account key is checked here
/// (its fields, and that its private key loads), so a broken key stops the
/// daemon at start rather than failing every call.
pub(crate) async fn build_credentials(credentials: &GcpCredentials) -> Result<Credentials, StoreError> {
    match credentials {
        GcpCredentials::Anonymous => Ok(credentials::anonymous::Builder::new().build()),
        GcpCredentials::ApplicationDefault => credentials::Builder::default().build().map_err(|e| {
            StoreError::new(
                secretd_core::ErrorKind::PermissionDenied,
                format!("application default credentials cannot be used: {e}"),
            )
        }),
        GcpCredentials::ServiceAccountJson(json) => service_account(json.expose_secret(), "service-account"),
        GcpCredentials::ServiceAccount(source) => {
            let json = source.current()?;
            let credentials = service_account(json.expose_secret(), "service-account")?;
            Ok(Credentials::from(RotatingServiceAccount {
                source: source.clone(),
                current: std::sync::Mutex::new((json, credentials)),
            }))
        }
        GcpCredentials::ServiceAccountFile(path) => {
            let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                StoreError::invalid_name(format!("cannot read the service-account key file {}: {e}", path.display()))
            })?;
            service_account(&text, &format!("the service-account key file {}", path.display()))
        }
    }
}

/// Service-account credentials that follow their key's source.
struct RotatingServiceAccount {
    source: CredentialSource,
    current: std::sync::Mutex<(SecretString, Credentials)>,
}

impl fmt::Debug for RotatingServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RotatingServiceAccount(<redacted>)")
    }
}

impl RotatingServiceAccount {
    /// The credentials of the current key; a changed key that cannot be
    /// used is logged and the previous one kept.
    fn credentials(&self) -> Credentials {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match self.source.current() {
            Ok(json) if json.expose_secret() != current.0.expose_secret() => {
                match service_account(json.expose_secret(), "the rotated service-account key") {
                    Ok(credentials) => {
                        tracing::info!("the service-account key changed; using the new one");
                        *current = (json, credentials);
                    }
                    Err(e) => tracing::warn!("{e}; keeping the previous key"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot read the service-account key: {e}; keeping the previous key"),
        }
        current.1.clone()
    }
}

impl google_cloud_auth::credentials::CredentialsProvider for RotatingServiceAccount {
    fn headers(
        &self,
        extensions: http::Extensions,
    ) -> impl std::future::Future<
        Output = Result<
            google_cloud_auth::credentials::CacheableResource<http::HeaderMap>,
            google_cloud_auth::errors::CredentialsError,
        >,
    > + Send {
        let credentials = self.credentials();
        async move { credentials.headers(extensions).await }
    }

    fn universe_domain(&self) -> impl std::future::Future<Output = Option<String>> + Send {
        let credentials = self.credentials();
        async move { credentials.universe_domain().await }
    }
}

/// Error messages name the field at fault, never the key's contents (a
/// JSON parser's message can quote them).
fn service_account(json: &str, what: &str) -> Result<Credentials, StoreError> {
    let bad = |why: String| StoreError::invalid_name(format!("{what} is not a usable service-account key: {why}"));
    let key: Value =
        serde_json::from_str(json).map_err(|e| bad(format!("not JSON (line {}, column {})", e.line(), e.column())))?;
    let Some(fields) = key.as_object() else { return Err(bad("not a JSON object".into())) };
    match fields.get("type").and_then(Value::as_str) {
        Some("service_account") | None => {}
        Some(other) => return Err(bad(format!("its type is {other:?}, not \"service_account\""))),
    }
    for field in ["client_email", "private_key_id", "private_key", "project_id"] {
        if !fields.get(field).is_some_and(Value::is_string) {
            return Err(bad(format!("the field {field:?} is missing or not a string")));
        }
    }
    let pem = fields.get("private_key").and_then(Value::as_str).unwrap_or_default();
    check_private_key(pem).map_err(bad)?;
    credentials::service_account::Builder::new(key).build().map_err(|e| bad(format!("{e}")))
}

/// Loads the key the way the token signer will (PKCS#8 RSA through the
/// process's rustls provider, ring), so a bad key is caught at start.
fn check_private_key(pem: &str) -> Result<(), String> {
    use rustls::pki_types::{pem::PemObject, PrivateKeyDer};
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| "the private_key is not a PEM private key".to_owned())?;
    if !matches!(der, PrivateKeyDer::Pkcs8(_)) {
        return Err("the private_key is not PKCS#8 (BEGIN PRIVATE KEY)".into());
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()));
    let key = provider.key_provider.load_private_key(der).map_err(|_| "the private_key cannot be loaded".to_owned())?;
    key.choose_scheme(&[rustls::SignatureScheme::RSA_PKCS1_SHA256])
        .map(|_| ())
        .ok_or_else(|| "the private_key is not an RSA key".to_owned())
}

#[cfg(test)]
mod tests {
    use secretd_core::ErrorKind;

    use super::*;

    #[test]
    fn debug_never_prints_keys() {
        let mut options = GcpOptions::new(
            "my-project",
            GcpCredentials::ServiceAccountJson(SecretString::from(r#"{"private_key": "hunter2-key"}"#)),
        );
        options.endpoint = Some("http://127.0.0.1:1".into());
        let shown = format!("{options:?} {options:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("my-project"));
    }

    #[test]
    fn validation_names_the_option() {
        let ok = GcpOptions::new("my-project-123", GcpCredentials::ApplicationDefault);
        assert!(ok.validate().is_ok());
        for project in ["", "My-Project", "a b", "-x", "projects/p"] {
            let err = GcpOptions::new(project, GcpCredentials::ApplicationDefault).validate().unwrap_err();
            assert!(err.message().contains("project"), "{}", err.message());
        }
        let mut o = ok.clone();
        o.replication = Replication::UserManaged(vec![]);
        assert!(o.validate().unwrap_err().message().contains("location"));
        o.replication = Replication::UserManaged(vec!["us-east1".into(), "Europe West".into()]);
        assert!(o.validate().unwrap_err().message().contains("Europe West"));
        o.replication = Replication::UserManaged(vec!["us-east1".into()]);
        assert!(o.validate().is_ok());
        let anonymous = GcpOptions::new("p-1", GcpCredentials::Anonymous);
        assert!(anonymous.validate().unwrap_err().message().contains("endpoint"));
        let mut o = ok.clone();
        o.endpoint = Some("127.0.0.1:8080".into());
        assert!(o.validate().unwrap_err().message().contains("endpoint"));
    }

    #[tokio::test]
    async fn broken_service_account_keys_are_refused_without_quoting_them() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        for (json, why) in [
            ("not json hunter2", "not JSON"),
            ("[\"hunter2\"]", "not a JSON object"),
            (r#"{"type": "authorized_user", "refresh_token": "hunter2"}"#, "authorized_user"),
            (r#"{"client_email": "a@b", "private_key_id": "1", "project_id": "p"}"#, "private_key"),
            (
                r#"{"client_email": "a@b", "private_key_id": "1", "project_id": "p", "private_key": "hunter2"}"#,
                "not a PEM private key",
            ),
            (
                r#"{"client_email": "a@b", "private_key_id": "1", "project_id": "p",
                    "private_key": "-----BEGIN PRIVATE KEY-----\naHVudGVyMg==\n-----END PRIVATE KEY-----\n"}"#,
                "cannot be loaded",
            ),
        ] {
            let credentials = GcpCredentials::ServiceAccountJson(SecretString::from(json));
            let err = build_credentials(&credentials).await.expect_err("a broken key");
            assert_eq!(err.kind(), ErrorKind::InvalidName);
            assert!(err.message().contains(why), "{why}: {}", err.message());
            assert!(!err.message().contains("hunter2"), "{}", err.message());
        }
        let missing = GcpCredentials::ServiceAccountFile("/nonexistent/key.json".into());
        let err = build_credentials(&missing).await.expect_err("a missing file");
        assert!(err.message().contains("/nonexistent/key.json"), "{}", err.message());
    }
}
