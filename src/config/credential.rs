//! Credentials in the configuration: given inline (usually as `${ENV}`), or
//! by reference as `file:/path`, read from a mounted file the way
//! Kubernetes mounts secrets.
//!
//! A file's trailing newline is dropped, since editors and `echo` add one
//! that no password contains. The file is read when the configuration is
//! loaded; an unreadable file is an error that names the field and why,
//! not the path (which is a value of the file like any other: a password
//! typed after `file:` by mistake must not be printed). The text is held
//! in a `SecretString`, so it never prints.
//!
//! Rotation: backends take a [`CredentialSource`] from
//! [`Credential::source`], and a `file:` one re-reads its file whenever the
//! file's modification time or size changed since the last read (Kubernetes
//! swaps a mounted secret's files atomically, so a read never sees half a
//! value). A read that fails mid-rotation keeps the last good value.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use secrecy::{ExposeSecret, SecretString};
use secretd_core::{CredentialSource, RotatingSecret, StoreError};
use serde::{Deserialize, Deserializer};

/// A secret configuration value, and where it came from.
#[derive(Clone)]
pub struct Credential {
    value: SecretString,
    source: Option<PathBuf>,
}

impl Credential {
    /// What a backend should log in with: the fixed value, or for `file:`
    /// the file's current content.
    pub fn source(&self) -> CredentialSource {
        match &self.source {
            None => CredentialSource::fixed(self.value.clone()),
            Some(path) => CredentialSource::rotating(Arc::new(FileCredential {
                path: path.clone(),
                last: Mutex::new((stamp(path), self.value.clone())),
            })),
        }
    }

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
    pub fn resolve(raw: &str) -> Result<Self, CredentialFileError> {
        let Some(path) = raw.strip_prefix("file:") else {
            return Ok(Self::inline(raw));
        };
        if path.is_empty() {
            return Err(CredentialFileError::NoPath);
        }
        let path = PathBuf::from(path);
        let value = read_credential_file(&path)?;
        Ok(Self { value, source: Some(path) })
    }
}

/// Far above any real credential (a service-account key is ~2 KiB), far
/// below what could exhaust memory: `file:/dev/zero` is an error, not an
/// out-of-memory abort.
const MAX_CREDENTIAL_FILE: u64 = 1024 * 1024;

/// Why a `file:` credential could not be read. Each message is fixed
/// text: neither the path nor anything read from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.as_str())]
pub enum CredentialFileError {
    NoPath,
    NotFound,
    PermissionDenied,
    TooLarge,
    NotText,
    Empty,
    Unreadable,
}

impl CredentialFileError {
    /// The message; `'static`, so it can be a configuration error's reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoPath => "`file:` needs a path, like file:/run/secrets/vault-password",
            Self::NotFound => "the file named after `file:` does not exist",
            Self::PermissionDenied => "the file named after `file:` may not be read by secretd (permission denied)",
            Self::TooLarge => "the file named after `file:` is larger than 1 MiB",
            Self::NotText => "the file named after `file:` is not UTF-8 text",
            Self::Empty => "the file named after `file:` is empty",
            Self::Unreadable => "the file named after `file:` cannot be read",
        }
    }
}

fn read_credential_file(path: &Path) -> Result<SecretString, CredentialFileError> {
    use std::io::ErrorKind;
    let mut text = read_bounded(path, MAX_CREDENTIAL_FILE).map_err(|e| match e.kind() {
        ErrorKind::NotFound => CredentialFileError::NotFound,
        ErrorKind::PermissionDenied => CredentialFileError::PermissionDenied,
        ErrorKind::FileTooLarge => CredentialFileError::TooLarge,
        ErrorKind::InvalidData => CredentialFileError::NotText,
        _ => CredentialFileError::Unreadable,
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(CredentialFileError::Empty);
    }
    Ok(SecretString::from(text))
}

/// Reads a UTF-8 file of at most `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, format!("it is larger than {max} bytes")));
    }
    Ok(text)
}

/// When the file last changed, as far as a cheap `stat` tells.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A `file:` credential, re-read when the file changes.
struct FileCredential {
    path: PathBuf,
    last: Mutex<(Option<(SystemTime, u64)>, SecretString)>,
}

impl RotatingSecret for FileCredential {
    fn current(&self) -> Result<SecretString, StoreError> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp(&self.path);
        if now.is_some() && now != last.0 {
            match read_credential_file(&self.path) {
                Ok(value) => {
                    tracing::info!(file = %self.path.display(), "credential file changed; using its new content");
                    *last = (now, value);
                }
                Err(e) => tracing::warn!(file = %self.path.display(), "{e}; keeping the credential read before"),
            }
        }
        Ok(last.1.clone())
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
        Self::resolve(raw.expose_secret()).map_err(|e| super::de::reason(e.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_or_huge_files_are_refused_not_read_whole() {
        assert_eq!(Credential::resolve("file:/dev/zero").unwrap_err(), CredentialFileError::TooLarge);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 1024 * 1024 + 1]).unwrap();
        assert!(Credential::resolve(&format!("file:{}", path.display())).is_err());
    }

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
        assert_eq!(err, CredentialFileError::NotFound);
        assert!(!err.to_string().contains("secretd-test"), "the error names the path: {err}");
        assert_eq!(Credential::resolve("file:").unwrap_err(), CredentialFileError::NoPath);
        std::fs::write(&path, "\n").unwrap();
        let err = Credential::resolve(&format!("file:{}", path.display())).unwrap_err();
        assert_eq!(err, CredentialFileError::Empty);
        std::fs::write(&path, b"\xff\xfe").unwrap();
        let err = Credential::resolve(&format!("file:{}", path.display())).unwrap_err();
        assert_eq!(err, CredentialFileError::NotText);
    }

    #[test]
    fn file_sources_follow_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "first\n").unwrap();
        let source = Credential::resolve(&format!("file:{}", path.display())).unwrap().source();
        assert_eq!(source.current().unwrap().expose_secret(), "first");
        // A different size is a change even within the clock's resolution.
        std::fs::write(&path, "second-value\n").unwrap();
        assert_eq!(source.current().unwrap().expose_secret(), "second-value");
        // Mid-rotation the file may vanish for an instant: keep the last.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(source.current().unwrap().expose_secret(), "second-value");
        let fixed = Credential::inline("inline").source();
        assert_eq!(fixed.current().unwrap().expose_secret(), "inline");
    }
}
