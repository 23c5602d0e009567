//! The local dev instance: what `secretd serve` runs with no config file.
//!
//! SQLite under `./data/` (mode 0700), an encryption secret generated on
//! first start and kept in `./data/jdbc.secret` (mode 0600, and refused if
//! it is found readable by others: see [`crate::files`]), loopback only.
//! Nothing to install, and a second start finds the same secrets.

use std::time::Duration;
use std::{
    fs,
    path::{Path, PathBuf},
};

use secrecy::SecretString;

use crate::files::{check_own_secret_file, create_private_dir, write_private_file};

use super::{
    AuditConfig, AuditSinkKind, BackendType, CacheConfig, Config, Credential, IsolationConfig, JdbcConfig,
    SecretConfig, ServerConfig, StateConfig,
};

/// Where the dev instance keeps its files.
#[derive(Debug, Clone)]
pub struct DevPaths {
    pub data_dir: PathBuf,
    pub database: PathBuf,
    pub secret_file: PathBuf,
    pub state_database: PathBuf,
    /// The admin token, created on first start (mode 0600); the CLI reads it.
    pub admin_token: PathBuf,
    pub audit_log: PathBuf,
}

impl DevPaths {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            database: data_dir.join("secrets.db"),
            secret_file: data_dir.join("jdbc.secret"),
            state_database: data_dir.join("state.db"),
            admin_token: data_dir.join("admin.token"),
            audit_log: data_dir.join("audit.log"),
        }
    }
}

/// Builds the dev configuration, creating the data directory and the
/// encryption secret on first use.
pub fn dev_config(paths: &DevPaths) -> std::io::Result<Config> {
    create_private_dir(&paths.data_dir)?;
    check_own_secret_file(&paths.secret_file)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))?;
    let secret = match fs::read_to_string(&paths.secret_file) {
        Ok(existing) => existing.trim_end().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let fresh = crate::keygen();
            write_private_file(&paths.secret_file, format!("{fresh}\n").as_bytes())?;
            fresh
        }
        Err(e) => return Err(e),
    };
    Ok(Config {
        server: ServerConfig::default(),
        secret: SecretConfig {
            backend: BackendType::Jdbc,
            max_value_size: 64 * 1024,
            max_batch_size: 100,
            max_namespace_depth: super::default_max_namespace_depth(),
            max_backend_reads_per_call: super::default_max_backend_reads_per_call(),
            batch_concurrency: super::default_batch_concurrency(),
            jdbc: Some(JdbcConfig {
                url: SecretString::from(format!("sqlite://{}", paths.database.display())),
                secret: Some(Credential::inline(secret)),
                previous_secrets: Vec::new(),
                max_connections: 10,
                tags: Default::default(),
                filter_on_tags: Default::default(),
                excluded_tags: Default::default(),
                timeout: Duration::from_secs(5),
                max_attempts: 3,
                circuit_breaker: Default::default(),
                rate_limit: None,
            }),
            memory: None,
            aws_secret_manager: None,
            azure_key_vault: None,
            google_secret_manager: None,
            vault: None,
            elasticsearch: None,
            cache: CacheConfig::default(),
            isolation: IsolationConfig::default(),
            read_only: false,
            dedicated: Vec::new(),
        },
        security: Default::default(),
        state: StateConfig {
            url: Some(SecretString::from(format!("sqlite://{}", paths.state_database.display()))),
            ..Default::default()
        },
        auth: Default::default(),
        access: Default::default(),
        audit: AuditConfig { sink: AuditSinkKind::File, path: Some(paths.audit_log.clone()) },
        configurations: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn secret_generated_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DevPaths::new(&dir.path().join("data"));
        let first = dev_config(&paths).unwrap();
        let second = dev_config(&paths).unwrap();
        let secret = |c: &Config| c.secret.jdbc.as_ref().unwrap().secret.as_ref().unwrap().expose_secret().to_owned();
        assert_eq!(secret(&first), secret(&second));
        assert!(secret(&first).len() >= 32);
        assert!(first.validate().is_empty(), "{:?}", first.validate());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&paths.secret_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(first.server.listen, crate::config::ListenAddr::Tcp(a) if a.ip().is_loopback()));
    }
}
