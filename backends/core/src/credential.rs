//! Credentials a backend logs in with, which may change while the daemon
//! runs: a password in a file that Kubernetes rotates, say. A backend asks
//! [`CredentialSource::current`] each time it logs in (or signs), instead
//! of keeping the value it started with.

use std::{fmt, sync::Arc};

use secrecy::SecretString;

use crate::StoreError;

/// Something that yields the current value of one credential.
pub trait RotatingSecret: Send + Sync {
    fn current(&self) -> Result<SecretString, StoreError>;
}

/// One credential: fixed, or re-read when its source changes. Cheap to
/// clone; `Debug` never shows the value.
#[derive(Clone)]
pub struct CredentialSource(Source);

#[derive(Clone)]
enum Source {
    Fixed(SecretString),
    Rotating(Arc<dyn RotatingSecret>),
}

impl CredentialSource {
    pub fn fixed(value: SecretString) -> Self {
        Self(Source::Fixed(value))
    }

    pub fn rotating(source: Arc<dyn RotatingSecret>) -> Self {
        Self(Source::Rotating(source))
    }

    /// The value to use now.
    pub fn current(&self) -> Result<SecretString, StoreError> {
        match &self.0 {
            Source::Fixed(value) => Ok(value.clone()),
            Source::Rotating(source) => source.current(),
        }
    }
}

impl From<&str> for CredentialSource {
    fn from(value: &str) -> Self {
        Self::fixed(SecretString::from(value.to_owned()))
    }
}

impl From<String> for CredentialSource {
    fn from(value: String) -> Self {
        Self::fixed(SecretString::from(value))
    }
}

impl From<SecretString> for CredentialSource {
    fn from(value: SecretString) -> Self {
        Self::fixed(value)
    }
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Fixed(_) => f.write_str("CredentialSource(fixed, <redacted>)"),
            Source::Rotating(_) => f.write_str("CredentialSource(rotating, <redacted>)"),
        }
    }
}
