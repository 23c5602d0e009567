//! A logged-in Vault client that stays logged in.
//!
//! secretd logs in once at start (token, userpass, AppRole or Kubernetes)
//! and then keeps the token alive: before two thirds of its lease have
//! passed, the next call renews it (a plain token) or logs in again
//! (userpass, AppRole, Kubernetes, whose credentials can always make a fresh
//! token, even past the token's max TTL). A token that dies anyway (revoked, or the server restarted) shows as
//! a 403; the call that sees it logs in again and is tried once more.
//!
//! The client in use is swapped atomically; calls in flight keep the one
//! they started with. Only one login runs at a time: callers that find the
//! token stale while another is logging in wait for that login instead of
//! starting their own.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use secrecy::{zeroize::Zeroizing, ExposeSecret, SecretString};
use secretd_core::{retry, CredentialSource, ErrorKind, RetryPolicy, StoreError};
use vaultrs::{
    client::{Client, VaultClient, VaultClientSettingsBuilder},
    error::ClientError,
};

use crate::error::map;

/// How secretd proves itself to Vault. Secrets are read from their source
/// at every login, so a rotated password, secret id or token file is
/// picked up by the next login without a restart.
#[derive(Clone)]
pub enum VaultAuth {
    /// A token given by the operator.
    Token(CredentialSource),
    /// `auth/<mount>/login/<username>`.
    Userpass { mount: String, username: String, password: CredentialSource },
    /// `auth/<mount>/login` with a role id and a secret id.
    AppRole { mount: String, role_id: String, secret_id: CredentialSource },
    /// `auth/<mount>/login` with a role and the pod's service account JWT,
    /// read from `token_file` at every login because the kubelet rotates it.
    Kubernetes { mount: String, role: String, token_file: PathBuf },
}

impl VaultAuth {
    pub fn method(&self) -> &'static str {
        match self {
            VaultAuth::Token(_) => "token",
            VaultAuth::Userpass { .. } => "userpass",
            VaultAuth::AppRole { .. } => "approle",
            VaultAuth::Kubernetes { .. } => "kubernetes",
        }
    }
}

impl std::fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token(<redacted>)"),
            VaultAuth::Userpass { mount, username, .. } => {
                f.debug_struct("Userpass").field("mount", mount).field("username", username).finish_non_exhaustive()
            }
            VaultAuth::AppRole { mount, role_id, .. } => {
                f.debug_struct("AppRole").field("mount", mount).field("role_id", role_id).finish_non_exhaustive()
            }
            VaultAuth::Kubernetes { mount, role, token_file } => f
                .debug_struct("Kubernetes")
                .field("mount", mount)
                .field("role", role)
                .field("token_file", token_file)
                .finish(),
        }
    }
}

/// Where Vault is and how to reach it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub address: String,
    /// Vault Enterprise namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// PEM CA bundle file to trust for `https://` addresses.
    pub ca_certificate: Option<std::path::PathBuf>,
    pub timeout: Duration,
}

/// One token and the client that sends it.
pub struct Login {
    pub client: VaultClient,
    /// The operator's token this login used (token auth only), to tell a
    /// rotated token from the same one due for renewal.
    given_token: Option<SecretString>,
    /// When to renew or log in again; `None` for a token that never expires.
    refresh_at: Option<Instant>,
    generation: u64,
}

pub struct Session {
    connection: Connection,
    auth: VaultAuth,
    retry: RetryPolicy,
    current: RwLock<Arc<Login>>,
    login_lock: tokio::sync::Mutex<()>,
}

impl Session {
    /// Logs in, so that bad credentials fail the start with a clear error.
    pub async fn start(connection: Connection, auth: VaultAuth, retry: RetryPolicy) -> Result<Self, StoreError> {
        let login = retry_login(&connection, &auth, retry, 1).await?;
        Ok(Self { connection, auth, retry, current: RwLock::new(Arc::new(login)), login_lock: Default::default() })
    }

    pub fn method(&self) -> &'static str {
        self.auth.method()
    }

    /// The client to use now, renewed first if its token is due.
    async fn login(&self) -> Result<Arc<Login>, StoreError> {
        let login = self.snapshot();
        match login.refresh_at {
            Some(at) if Instant::now() >= at => self.replace(login.generation).await,
            _ => Ok(login),
        }
    }

    fn snapshot(&self) -> Arc<Login> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Renews or logs in again, unless another caller already replaced
    /// login `generation`.
    async fn replace(&self, generation: u64) -> Result<Arc<Login>, StoreError> {
        let _one_at_a_time = self.login_lock.lock().await;
        let current = self.snapshot();
        if current.generation != generation {
            return Ok(current);
        }
        let fresh = match &self.auth {
            VaultAuth::Token(source) => {
                let token = source.current()?;
                let same = current.given_token.as_ref().is_some_and(|t| t.expose_secret() == token.expose_secret());
                if same {
                    renew(&current, &self.connection, token, generation + 1).await?
                } else {
                    retry_login(&self.connection, &self.auth, self.retry, generation + 1).await?
                }
            }
            _ => retry_login(&self.connection, &self.auth, self.retry, generation + 1).await?,
        };
        let fresh = Arc::new(fresh);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        tracing::info!(method = self.auth.method(), "vault token refreshed");
        Ok(fresh)
    }

    /// Runs one Vault call with a live token: retried on transient errors
    /// (bounded, with jittered backoff), and once more after logging in
    /// again when Vault refuses a token that has died.
    pub async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, StoreError>
    where
        F: Fn(Arc<Login>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        retry(self.retry, || async {
            let login = self.login().await?;
            match op(login.clone()).await {
                // A token given by the operator cannot be renewed past its
                // death, but its file may hold a new one by now.
                Err(e) if is_forbidden(&e) => {
                    tracing::debug!(method = self.auth.method(), "vault refused the token; logging in again");
                    let fresh = self.replace(login.generation).await?;
                    op(fresh).await.map_err(|e| denied_or(map(e, what)))
                }
                result => result.map_err(|e| denied_or(map(e, what))),
            }
        })
        .await
    }
}

fn is_forbidden(e: &ClientError) -> bool {
    matches!(e, ClientError::APIError { code: 403, .. })
}

/// A 403 that survives a fresh login is the token's policy, not the
/// caller's: say which, so an operator is not sent hunting in secretd's own
/// access rules.
fn denied_or(e: StoreError) -> StoreError {
    if e.kind() == ErrorKind::PermissionDenied {
        StoreError::new(
            ErrorKind::PermissionDenied,
            format!("{e} (secretd's vault token lacks a policy for this path, or its credentials are no longer valid)"),
        )
    } else {
        e
    }
}

fn client(connection: &Connection, token: &str) -> Result<VaultClient, StoreError> {
    // Every setting is given, so vaultrs reads nothing from VAULT_*
    // environment variables behind the configuration's back.
    let mut settings = VaultClientSettingsBuilder::default();
    settings
        .address(connection.address.as_str())
        .token(token)
        .timeout(Some(connection.timeout))
        .verify(true)
        .identity(None)
        .ca_certs(connection.ca_certificate.iter().map(|p| p.display().to_string()).collect());
    if let Some(namespace) = &connection.namespace {
        settings.namespace(Some(namespace.clone()));
    }
    let settings = settings
        .build()
        .map_err(|e| StoreError::invalid_name(format!("vault address {:?}: {e}", connection.address)))?;
    VaultClient::new(settings).map_err(|e| StoreError::internal(format!("cannot build the vault client: {e}")))
}

/// Renew at two thirds of the lease, so a slow call still lands in time.
fn refresh_at(lease: Duration) -> Option<Instant> {
    (!lease.is_zero()).then(|| Instant::now() + lease * 2 / 3)
}

async fn retry_login(
    connection: &Connection,
    auth: &VaultAuth,
    policy: RetryPolicy,
    generation: u64,
) -> Result<Login, StoreError> {
    retry(policy, || log_in(connection, auth, generation)).await
}

async fn log_in(connection: &Connection, auth: &VaultAuth, generation: u64) -> Result<Login, StoreError> {
    let what = format!("logging in with {}", auth.method());
    let (token, lease) = match auth {
        VaultAuth::Token(source) => {
            let token = source.current()?;
            let client = client(connection, token.expose_secret())?;
            let info = vaultrs::token::lookup_self(&client).await.map_err(|e| refused_login(e, &what))?;
            let lease = if info.renewable.unwrap_or(false) { info.ttl } else { 0 };
            return Ok(Login {
                client,
                given_token: Some(token),
                refresh_at: refresh_at(Duration::from_secs(lease)),
                generation,
            });
        }
        VaultAuth::Userpass { mount, username, password } => {
            let anonymous = client(connection, "")?;
            let password = password.current()?;
            let info = vaultrs::auth::userpass::login(&anonymous, mount, username, password.expose_secret())
                .await
                .map_err(|e| refused_login(e, &what))?;
            (info.client_token, info.lease_duration)
        }
        VaultAuth::AppRole { mount, role_id, secret_id } => {
            let anonymous = client(connection, "")?;
            let secret_id = secret_id.current()?;
            let info = vaultrs::auth::approle::login(&anonymous, mount, role_id, secret_id.expose_secret())
                .await
                .map_err(|e| refused_login(e, &what))?;
            (info.client_token, info.lease_duration)
        }
        VaultAuth::Kubernetes { mount, role, token_file } => {
            let anonymous = client(connection, "")?;
            let jwt = service_account_token(token_file)?;
            let info = vaultrs::auth::kubernetes::login(&anonymous, mount, role, jwt.expose_secret())
                .await
                .map_err(|e| refused_login(e, &what))?;
            (info.client_token, info.lease_duration)
        }
    };
    let token = SecretString::from(token);
    let client = client(connection, token.expose_secret())?;
    Ok(Login { client, given_token: None, refresh_at: refresh_at(Duration::from_secs(lease)), generation })
}

/// Vault answers a login it refuses (wrong password, a JWT it cannot
/// verify, an unknown role) with 400: that is a denial, not a bad name.
fn refused_login(e: ClientError, what: &str) -> StoreError {
    let e = map(e, what);
    if e.kind() == ErrorKind::InvalidName {
        StoreError::new(ErrorKind::PermissionDenied, e.to_string())
    } else {
        e
    }
}

/// The service account JWT as the kubelet last wrote it. Errors name the
/// file and what is wrong with it, never its content.
fn service_account_token(path: &Path) -> Result<SecretString, StoreError> {
    let raw = std::fs::read(path).map(Zeroizing::new).map_err(|e| {
        StoreError::new(
            ErrorKind::PermissionDenied,
            format!("cannot read the kubernetes service account token file {}: {}", path.display(), e.kind()),
        )
    })?;
    let jwt = std::str::from_utf8(&raw).map(str::trim).unwrap_or_default();
    if jwt.is_empty() {
        return Err(StoreError::new(
            ErrorKind::PermissionDenied,
            format!("the kubernetes service account token file {} is empty or not text", path.display()),
        ));
    }
    Ok(SecretString::from(jwt.to_owned()))
}

/// Renews an operator-given token; past its max TTL nothing can be done but
/// keep using it until Vault refuses it (or its file holds a new one).
async fn renew(
    current: &Login,
    connection: &Connection,
    token: SecretString,
    generation: u64,
) -> Result<Login, StoreError> {
    let client = client(connection, token.expose_secret())?;
    let refresh = match current.client.renew(None).await {
        Ok(info) => refresh_at(Duration::from_secs(info.lease_duration)),
        Err(e) => {
            tracing::warn!("cannot renew the vault token: {}", map(e, "renewing the token"));
            None
        }
    };
    Ok(Login { client, given_token: Some(token), refresh_at: refresh, generation })
}
