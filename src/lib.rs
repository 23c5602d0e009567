//! secretd: a pluggable secrets broker daemon.
//!
//! Services call secretd over gRPC instead of holding cloud credentials.
//! Each call is authenticated ([`auth`]), then goes through [`broker`]:
//! validation, authorization ([`policy`]), the [`cache`], then the backend
//! built by [`backends`] from the [`config`]; every decision leaves an
//! [`audit`] record. [`server`] is the gRPC face; `main.rs` the CLI,
//! with [`rekey`] driving `secretd rekey`.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod backends;
pub mod broker;
pub mod cache;
pub mod config;
pub mod files;
pub mod metrics;
pub mod migrate;
pub mod policy;
pub mod rekey;
pub mod resilience;
pub mod routes;
pub mod server;
pub mod status;
pub mod tls;
pub mod unix_authority;

/// Generated gRPC code for `proto/secretd/v1/*.proto`.
pub mod proto {
    #![allow(clippy::all)]
    tonic::include_proto!("secretd.v1");
    /// For gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("secretd_descriptor");
}

use std::{path::Path, sync::Arc};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use crate::{
    audit::{AuditLog, AuditSink},
    auth::{
        state::{NewToken, StateError, TokenStore},
        Authenticator, ADMIN_SERVICE,
    },
    broker::{Broker, Limits},
    cache::SecretCache,
    config::{AuditSinkKind, Config, DevPaths, ListenAddr, Permission},
    policy::Policy,
    server::{Listener, Services},
};

/// A fresh random secret for `jdbc.secret` (256 bits, base64: 44 characters).
pub fn keygen() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Why the daemon could not start. Each message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Backend(#[from] backends::BackendError),
    #[error("state.url: {0}")]
    State(#[source] secretd_sql::SqlError),
    #[error("state store: {0}")]
    StateQuery(#[from] StateError),
    #[error("audit.path: cannot open {path}: {source}")]
    Audit {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: cannot read {path}: {source}")]
    ReadFile {
        field: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server.listen: {0}")]
    Listen(String),
    #[error(transparent)]
    ExposedSecretFile(#[from] files::ExposedSecretFile),
    #[error("dev admin token {path}: {source}")]
    AdminToken {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The default state store: beside the dev data.
const DEFAULT_STATE_URL: &str = "sqlite://./data/state.db";

/// Builds everything a server needs from `config`: the backend (connected,
/// migrated), the state store and its token refresher, the authenticator,
/// the policy and the audit log.
pub async fn build_services(config: &Config) -> Result<Services, StartError> {
    let routes = routes::build_routes(config).await?;
    let limits = Limits::from_config(&config.secret);
    let broker = Arc::new(
        Broker::with_routes(
            routes,
            SecretCache::new(&config.secret.cache),
            Policy::new(&config.secret.isolation, &config.access),
            limits,
        )
        .with_refresh_limit(config.secret.cache.refresh_rate_limit),
    );

    let state_url = config.state.url.clone().unwrap_or_else(|| SecretString::from(DEFAULT_STATE_URL.to_owned()));
    if let Some(path) = state_url.expose_secret().strip_prefix("sqlite://") {
        let file = Path::new(path.split('?').next().unwrap_or(path));
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            files::create_private_dir(dir).map_err(|source| StartError::ReadFile {
                field: "state.url",
                path: dir.display().to_string(),
                source,
            })?;
        }
    }
    let tokens = Arc::new(TokenStore::open(&state_url).await.map_err(StartError::State)?);
    // Validation refused a bad pattern already; `ok()` cannot drop one.
    let password_rule = config.security.basic_auth.compiled().ok().flatten();
    let auth = Arc::new(
        Authenticator::new(&config.auth, config.server.basic_auth.as_ref(), Some(tokens))
            .with_password_rule(password_rule),
    );
    auth.refresh().await?;
    tokio::spawn(auth.clone().refresh_loop(config.state.refresh_interval));

    let sink = match config.audit.sink {
        AuditSinkKind::Off => AuditSink::Off,
        AuditSinkKind::Stdout => AuditSink::Stdout,
        AuditSinkKind::File => AuditSink::File(config.audit.path.clone().unwrap_or_default()),
    };
    let audit = AuditLog::open(&sink).map_err(|source| StartError::Audit {
        path: config.audit.path.as_deref().unwrap_or(Path::new("")).display().to_string(),
        source,
    })?;
    Ok(Services { broker, auth, audit })
}

/// In dev mode, makes sure an admin token exists and is in
/// `paths.admin_token` (mode 0600), where the CLI finds it. It reaches every
/// tenant; one from before tenants existed (migrated to `main` only) is
/// replaced.
pub async fn ensure_dev_admin_token(services: &Services, paths: &DevPaths) -> Result<(), StartError> {
    let Some(store) = services.auth.store() else { return Ok(()) };
    files::check_own_secret_file(&paths.admin_token)?;
    if let Ok(existing) = std::fs::read_to_string(&paths.admin_token) {
        let hash = auth::token::TokenHash::of(existing.trim());
        let all_tenants = [auth::mint::ALL_TENANTS.to_owned()];
        let active = store.active().await?;
        if active.iter().any(|t| t.hash == hash && t.tenants == all_tenants) {
            return Ok(());
        }
        // The state store was reset under the file, or the token predates
        // tenants: issue a new token.
        tracing::warn!(file = %paths.admin_token.display(), "the dev admin token is unknown to the state store or not for every tenant; replacing it");
        std::fs::remove_file(&paths.admin_token)
            .map_err(|source| StartError::AdminToken { path: paths.admin_token.display().to_string(), source })?;
    }
    let new = NewToken {
        name: "dev-admin".into(),
        service: ADMIN_SERVICE.into(),
        permissions: vec![Permission::Admin],
        namespaces: Vec::new(),
        tenants: vec![auth::mint::ALL_TENANTS.to_owned()],
        expires_at: None,
    };
    // A leftover from a deleted token file: replace it.
    let token = match store.create(&new).await {
        Err(StateError::AlreadyExists(_)) => {
            store.revoke(&new.name).await?;
            store.create(&new).await?
        }
        other => other?,
    };
    files::write_private_file(&paths.admin_token, format!("{}\n", token.expose_secret()).as_bytes())
        .map_err(|source| StartError::AdminToken { path: paths.admin_token.display().to_string(), source })?;
    services.auth.refresh().await?;
    Ok(())
}

/// Reads a PKCS#12 keystore's private key and certificate chain.
/// Binds the admin listener, unless `server.admin.enabled` is false.
pub async fn bind_admin(config: &Config) -> Result<Option<tokio::net::TcpListener>, StartError> {
    if !config.server.admin.enabled {
        return Ok(None);
    }
    let addr = config.server.admin.listen;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Listen(format!("server.admin.listen: cannot listen on {addr}: {e}")))?;
    Ok(Some(tcp))
}

/// Binds the configured listener: TCP (with TLS when `server.tls` is set)
/// or a Unix socket that appears only with its configured mode and owner.
pub async fn bind(config: &Config) -> Result<Listener, StartError> {
    match &config.server.listen {
        ListenAddr::Tcp(addr) => {
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| StartError::Listen(format!("cannot listen on {addr}: {e}")))?;
            let tls = match &config.server.tls {
                None => None,
                Some(tls) => Some(tls::server_config(tls).map_err(StartError::Listen)?),
            };
            Ok(Listener::Tcp(tcp, tls))
        }
        ListenAddr::Unix(path) => {
            let unix = files::bind_unix_socket(path, &config.server.socket).map_err(StartError::Listen)?;
            Ok(Listener::Unix(unix))
        }
    }
}
