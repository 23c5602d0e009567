//! Secret values that wipe themselves and never print.

use std::fmt;

use zeroize::Zeroizing;

/// The bytes of a secret. The memory is zeroed on drop, and `Debug` shows
/// only the length, so a value cannot reach a log through `{:?}`. There is
/// deliberately no `Display`: code that needs the bytes calls [`expose`].
///
/// [`expose`]: SecretValue::expose
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }

    /// The plaintext. Keep the borrow short and never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretValue {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<redacted {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let v = SecretValue::from_slice(b"hunter2-plaintext");
        let shown = format!("{v:?} {:#?}", v);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("17 bytes"));
    }
}
