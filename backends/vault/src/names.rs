//! Where a secret lives in Vault.
//!
//! `(tenant, namespace, key)` maps to the KV v2 path
//! `<path-prefix>/<tenant>/<namespace>/<key>` under the mount. Tenants and
//! namespaces never contain `/`, so the first two segments after the prefix
//! are always the tenant and the namespace and the rest is the key, which
//! may itself hold `/` (`db/password`): two different names never share a
//! path. Every character a name may hold (letters, digits, `_ - . /`) is one
//! Vault stores as is, and paths are case-sensitive, so nothing is escaped.

use secretd_core::{Namespace, SecretName, Tenant};

/// The prefix under the mount, without leading or trailing slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix(String);

impl PathPrefix {
    /// Trims slashes; refuses empty segments and `.`/`..`, which Vault would
    /// resolve to another path.
    pub fn new(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim_matches('/');
        if !trimmed.is_empty() && trimmed.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(format!("path-prefix {raw:?} has an empty, '.' or '..' segment"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    fn join(&self, rest: &str) -> String {
        if self.0.is_empty() {
            rest.to_owned()
        } else {
            format!("{}/{rest}", self.0)
        }
    }

    /// The KV v2 path of a secret (relative to the mount).
    pub fn secret_path(&self, name: &SecretName) -> String {
        self.join(&format!("{}/{}/{}", name.tenant, name.namespace, name.key))
    }

    /// The folder holding every tenant, with a trailing slash (empty for
    /// the mount's root).
    pub fn root_folder(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            format!("{}/", self.0)
        }
    }

    /// The folder holding the namespaces of one tenant, with a trailing slash.
    pub fn tenant_folder(&self, tenant: &Tenant) -> String {
        self.join(&format!("{tenant}/"))
    }

    /// The folder holding the keys of one namespace, with a trailing slash.
    pub fn namespace_folder(&self, tenant: &Tenant, namespace: &Namespace) -> String {
        self.join(&format!("{tenant}/{namespace}/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let name = SecretName::parse("acme", "team.etl", "db/password").unwrap();
        assert_eq!(PathPrefix::new("/secretd/").unwrap().secret_path(&name), "secretd/acme/team.etl/db/password");
        assert_eq!(PathPrefix::new("").unwrap().secret_path(&name), "acme/team.etl/db/password");
        assert_eq!(
            PathPrefix::new("a/b").unwrap().namespace_folder(&name.tenant, &name.namespace),
            "a/b/acme/team.etl/"
        );
        assert_eq!(PathPrefix::new("a/b").unwrap().root_folder(), "a/b/");
        assert_eq!(PathPrefix::new("").unwrap().root_folder(), "");
        assert_eq!(PathPrefix::new("a").unwrap().tenant_folder(&name.tenant), "a/acme/");
        assert!(PathPrefix::new("a//b").is_err());
        assert!(PathPrefix::new("a/../b").is_err());
    }
}
