//! Credentials in the configuration: given inline (usually as `${ENV}`), or
//! by reference as `file:/path`, read from a mounted file the way
//! Kubernetes mounts secrets.
//!
//! A file's trailing newline is dropped, since editors and `echo` add one
//! that no password contains. The file is read when the configuration is
//! loaded; an unreadable file is an error that names the field (through
//! serde's path) and the file. The text is held in a `SecretString`, so it
//! never prints.

use std::{fmt, path::PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// A secret configuration value, and where it came from.
#[derive(Clone)]
pub struct Credential {
    value: SecretString,
    source: Option<PathBuf>,
}

impl Credential {
    pub fn inline(value: impl Into<String>) -> Self {
        Self { value: SecretString::from(value.into()), source: None }
    }

    pub fn secret(&self) -> &SecretString {
        &self.value
    }

    /// The file the value was read from, when it was given as `file:`.
    pub fn file(&self) -> Option<&PathBuf> {
        self.source.as_ref()
    }

    /// Resolves `raw`: `file:/path` reads the file, anything else is the
    /// value itself.
    pub fn resolve(raw: &str) -> Result<Self, String> {
        let Some(path) = raw.strip_prefix("file:") else {
            return Ok(Self::inline(raw));
        };
        if path.is_empty() {
            return Err("`file:` needs a path, like file:/run/secrets/vault-password".into());
        }
        let path = PathBuf::from(path);
        let mut text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the credential file {}: {e}", path.display()))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        if text.is_empty() {
            return Err(format!("the credential file {} is empty", path.display()));
        }
        Ok(Self { value: SecretString::from(text), source: Some(path) })
    }
}

impl ExposeSecret<str> for Credential {
    fn expose_secret(&self) -> &str {
        self.value.expose_secret()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(path) => write!(f, "Credential(file:{})", path.display()),
            None => f.write_str("Credential(<redacted>)"),
        }
    }
}

impl<'de> Deserialize<'de> for Credential {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = SecretString::deserialize(deserializer)?;
        Self::resolve(raw.expose_secret()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_file_values() {
        assert_eq!(Credential::resolve("plain").unwrap().secret().expose_secret(), "plain");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret\n").unwrap();
        let c = Credential::resolve(&format!("file:{}", path.display())).unwrap();
        assert_eq!(c.secret().expose_secret(), "s3cret", "one trailing newline is dropped");
        assert_eq!(c.file(), Some(&path));
        assert!(!format!("{c:?}").contains("s3cret"));
        std::fs::write(&path, "two\n\n").unwrap();
        let c = Credential::resolve(&format!("file:{}", path.display())).unwrap();
        assert_eq!(c.secret().expose_secret(), "two\n", "only one newline is dropped");
        let err = Credential::resolve("file:/nonexistent/secretd-test").unwrap_err();
        assert!(err.contains("/nonexistent/secretd-test"), "{err}");
        assert!(Credential::resolve("file:").is_err());
        std::fs::write(&path, "\n").unwrap();
        assert!(Credential::resolve(&format!("file:{}", path.display())).unwrap_err().contains("empty"));
    }
}
