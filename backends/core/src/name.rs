//! Validated secret names: tenant, namespace and key.
//!
//! The rules are deliberately narrow so that every backend can map a name
//! into its own alphabet without ambiguity, and so that a name can never
//! smuggle a path traversal, a wildcard or a control character into a
//! backend query. The README's "Names" section documents them; keep the two
//! in step.

use std::fmt;

use crate::StoreError;

/// The tenant used when a request leaves it empty.
pub const DEFAULT_TENANT: &str = "main";

pub const MAX_TENANT_LEN: usize = 63;
pub const MAX_NAMESPACE_LEN: usize = 255;
pub const MAX_NAMESPACE_SEGMENT_LEN: usize = 63;
pub const MAX_KEY_LEN: usize = 255;

/// A tenant id: 1 to 63 characters of `a-z`, `0-9`, `_` and `-`, starting
/// with a letter or digit. Empty input means [`DEFAULT_TENANT`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(String);

impl Tenant {
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        let raw = if raw.is_empty() { DEFAULT_TENANT } else { raw };
        const RULE: &str =
            "tenant must be 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit";
        if raw.len() > MAX_TENANT_LEN
            || !raw.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            || !raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err(StoreError::invalid_name(format!("invalid tenant {:?}: {RULE}", truncate(raw))));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A namespace: dot-separated segments such as `company.team.etl`, at most
/// 255 characters. Each segment is 1 to 63 characters of `A-Z`, `a-z`,
/// `0-9`, `_` and `-`, starting with a letter or digit.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        const RULE: &str = "namespace must be dot-separated segments (like company.team), at most 255 characters; \
                            each segment 1 to 63 characters of A-Z, a-z, 0-9, '_' and '-', starting with a letter or digit";
        let valid_segment = |s: &str| {
            !s.is_empty()
                && s.len() <= MAX_NAMESPACE_SEGMENT_LEN
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if raw.is_empty() || raw.len() > MAX_NAMESPACE_LEN || !raw.split('.').all(valid_segment) {
            return Err(StoreError::invalid_name(format!("invalid namespace {:?}: {RULE}", truncate(raw))));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This namespace, then each parent up to the root segment:
    /// `a.b.c`, `a.b`, `a`. This is the order of namespace inheritance.
    pub fn self_and_ancestors(&self) -> impl Iterator<Item = Namespace> + '_ {
        let s = self.0.as_str();
        std::iter::once(s)
            .chain(s.char_indices().rev().filter(|&(_, c)| c == '.').map(move |(i, _)| &s[..i]))
            .map(|p| Namespace(p.to_owned()))
    }

    /// True if `self` is `other` or one of its descendants.
    pub fn is_within(&self, other: &Namespace) -> bool {
        self.0 == other.0
            || (self.0.len() > other.0.len()
                && self.0.starts_with(&other.0)
                && self.0.as_bytes()[other.0.len()] == b'.')
    }
}

/// A secret key: 1 to 255 characters of `A-Z`, `a-z`, `0-9`, `_`, `-`, `.`
/// and `/`, starting with a letter, digit or `_`. `/` separates path-like
/// parts (`db/password`); empty parts and `.`/`..` parts are refused.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        const RULE: &str = "key must be 1 to 255 characters of A-Z, a-z, 0-9, '_', '-', '.' and '/', starting with a letter, digit or '_'; \
                            '/' separates non-empty parts that are not '.' or '..'";
        let valid = !raw.is_empty()
            && raw.len() <= MAX_KEY_LEN
            && raw.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
            && raw.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
        if !valid {
            return Err(StoreError::invalid_name(format!("invalid key {:?}: {RULE}", truncate(raw))));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The full name of a secret.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName {
    pub tenant: Tenant,
    pub namespace: Namespace,
    pub key: Key,
}

impl SecretName {
    pub fn new(tenant: Tenant, namespace: Namespace, key: Key) -> Self {
        Self { tenant, namespace, key }
    }

    /// Validates all three parts; an empty tenant means [`DEFAULT_TENANT`].
    pub fn parse(tenant: &str, namespace: &str, key: &str) -> Result<Self, StoreError> {
        Ok(Self::new(Tenant::parse(tenant)?, Namespace::parse(namespace)?, Key::parse(key)?))
    }

    /// The same key in another namespace of the same tenant.
    pub fn in_namespace(&self, namespace: Namespace) -> Self {
        Self { tenant: self.tenant.clone(), namespace, key: self.key.clone() }
    }
}

/// Names are not secret: they appear in logs and errors as `tenant/namespace/key`.
impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant.0, self.namespace.0, self.key.0)
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    )*};
}
display_as_str!(Tenant, Namespace, Key);

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretName({self})")
    }
}

/// Keeps error messages short when someone sends a megabyte as a name.
pub(crate) fn truncate(raw: &str) -> String {
    const MAX: usize = 80;
    if raw.chars().count() <= MAX {
        raw.to_owned()
    } else {
        let mut s: String = raw.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_rules() {
        assert_eq!(Tenant::parse("").unwrap().as_str(), "main");
        for ok in ["main", "acme-1", "a_b", "0"] {
            assert!(Tenant::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["Main", "-a", "a.b", "a b", "é", &"a".repeat(64)] {
            let err = Tenant::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidName);
            assert!(err.message().contains("tenant must be"), "{}", err.message());
        }
    }

    #[test]
    fn namespace_rules() {
        for ok in ["company", "company.team", "Company.team_1.etl-x", &"a".repeat(63)] {
            assert!(Namespace::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a/b", "a b", "_a", "a.-b", &"a".repeat(64), &["ab"; 90].join(".")] {
            let err = Namespace::parse(bad).unwrap_err();
            assert!(err.message().contains("namespace must be"), "{bad}: {}", err.message());
        }
    }

    #[test]
    fn key_rules() {
        for ok in ["DB_PASSWORD", "db/password", "_x", "a.b-c/d_e", "a..b"] {
            assert!(Key::parse(ok).is_ok(), "{ok}");
        }
        for bad in
            ["", "/a", "a/", "a//b", "a/../b", "a/./b", ".a", "-a", "a b", "a\nb", "a*", "ключ", &"a".repeat(256)]
        {
            let err = Key::parse(bad).unwrap_err();
            assert!(err.message().contains("key must be"), "{bad:?}: {}", err.message());
        }
    }

    #[test]
    fn ancestors_in_inheritance_order() {
        let ns = Namespace::parse("company.team.etl").unwrap();
        let chain: Vec<String> = ns.self_and_ancestors().map(|n| n.as_str().to_owned()).collect();
        assert_eq!(chain, ["company.team.etl", "company.team", "company"]);
    }

    #[test]
    fn within() {
        let p = |s| Namespace::parse(s).unwrap();
        assert!(p("a.b").is_within(&p("a")));
        assert!(p("a").is_within(&p("a")));
        assert!(!p("ab").is_within(&p("a")));
        assert!(!p("a").is_within(&p("a.b")));
    }

    #[test]
    fn long_input_is_truncated_in_messages() {
        let err = Key::parse(&"x ".repeat(10_000)).unwrap_err();
        assert!(err.message().len() < 500);
    }
}
