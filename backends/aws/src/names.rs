//! Where a secret lives in AWS Secrets Manager.
//!
//! `(tenant, namespace, key)` maps to the secret name
//! `<name-prefix><tenant>/<namespace>/<key>`. Tenants and namespaces never
//! contain `/`, so the first two `/` after the prefix split the name back
//! into its three parts, and the key may hold `/` itself (`db/password`):
//! two different names never share a secret. Every character a name may
//! hold (letters, digits, `_ - . /`) is in Secrets Manager's alphabet
//! (`A-Za-z0-9/_+=.@-`) and names are case-sensitive, so nothing is
//! escaped. A name longer than Secrets Manager's 512 characters is refused
//! as `InvalidName` rather than shortened.

use secretd_core::{Key, Namespace, SecretName, StoreError, Tenant};

/// Secrets Manager's longest secret name.
pub const MAX_NAME_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePrefix(String);

impl NamePrefix {
    /// A prefix uses the secret-name alphabet; it is used as given (end it
    /// with `/` to make a folder of it).
    pub fn new(raw: &str) -> Result<Self, String> {
        if let Some(bad) = raw.chars().find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c))) {
            return Err(format!("name-prefix {raw:?} holds {bad:?}; secret names allow A-Z a-z 0-9 / _ + = . @ -"));
        }
        if raw.len() > 256 {
            return Err("name-prefix is longer than 256 characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn secret_name(&self, name: &SecretName) -> Result<String, StoreError> {
        let full = format!("{}{}/{}/{}", self.0, name.tenant, name.namespace, name.key);
        if full.len() > MAX_NAME_LEN {
            return Err(StoreError::invalid_name(format!(
                "secret {name} maps to a Secrets Manager name of {} characters; the limit is {MAX_NAME_LEN}",
                full.len()
            )));
        }
        Ok(full)
    }

    /// What every secret name of one namespace starts with.
    pub fn namespace_prefix(&self, tenant: &Tenant, namespace: &Namespace) -> String {
        format!("{}{tenant}/{namespace}/", self.0)
    }
}

/// The key of a listed secret, when its name lies in the namespace whose
/// names start with `prefix` (compared exactly: the server's name filter
/// ignores case).
pub fn key_in(prefix: &str, aws_name: &str) -> Option<Key> {
    Key::parse(aws_name.strip_prefix(prefix)?).ok()
}

/// The name of a listed secret, when it lies under `prefix` (compared
/// exactly) and splits into a valid tenant, namespace and key.
pub fn name_in(prefix: &NamePrefix, aws_name: &str) -> Option<SecretName> {
    let rest = aws_name.strip_prefix(prefix.as_str())?;
    let mut parts = rest.splitn(3, '/');
    SecretName::parse(parts.next().filter(|t| !t.is_empty())?, parts.next()?, parts.next()?).ok()
}

/// What the name of every secret of a scan starts with: as much of the
/// selection as a name prefix can say (the namespace's own text also starts
/// lookalikes such as `team.etlx`, so answers are checked exactly).
pub fn scan_prefix(prefix: &NamePrefix, selection: &secretd_core::ScanSelection) -> String {
    match (&selection.tenant, &selection.namespace) {
        (Some(tenant), Some(namespace)) => format!("{}{tenant}/{namespace}", prefix.as_str()),
        (Some(tenant), None) => format!("{}{tenant}/", prefix.as_str()),
        (None, _) => prefix.as_str().to_owned(),
    }
}

/// Version ids are the client request tokens secretd (or another client)
/// chose: 32 to 64 characters of letters, digits and `-`. Anything else
/// names no version, so it is refused before asking.
pub fn plausible_version_id(raw: &str) -> bool {
    (32..=64).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_back_into_their_parts() {
        let prefix = NamePrefix::new("secretd/").unwrap();
        let name = SecretName::parse("acme", "team.etl", "db/password").unwrap();
        let aws = prefix.secret_name(&name).unwrap();
        assert_eq!(aws, "secretd/acme/team.etl/db/password");
        let ns_prefix = prefix.namespace_prefix(&name.tenant, &name.namespace);
        assert_eq!(key_in(&ns_prefix, &aws).unwrap(), name.key);
        assert!(key_in(&ns_prefix, "secretd/acme/team.etl.child/x").is_none());
        assert!(key_in(&ns_prefix, "SECRETD/acme/team.etl/x").is_none(), "the server's filter ignores case; we don't");
        assert!(NamePrefix::new("bad prefix").is_err());
    }

    #[test]
    fn scanned_names_split_exactly() {
        let prefix = NamePrefix::new("secretd/").unwrap();
        let name = SecretName::parse("acme", "team.etl", "db/password").unwrap();
        assert_eq!(name_in(&prefix, "secretd/acme/team.etl/db/password").unwrap(), name);
        for foreign in ["other/acme/team.etl/k", "secretd/acme/team.etl", "secretd//team/k", "secretd/ACME/team/k"] {
            assert!(name_in(&prefix, foreign).is_none(), "{foreign}");
        }
        let selection = secretd_core::ScanSelection { tenant: Some(name.tenant.clone()), namespace: None };
        assert_eq!(scan_prefix(&prefix, &selection), "secretd/acme/");
    }

    #[test]
    fn over_long_names_are_invalid() {
        let prefix = NamePrefix::new("p/").unwrap();
        let namespace = ["n".repeat(63), "n".repeat(63), "n".repeat(63)].join(".");
        let name = SecretName::parse(&"t".repeat(63), &namespace, &"k".repeat(255)).unwrap();
        assert_eq!(prefix.secret_name(&name).unwrap_err().kind(), secretd_core::ErrorKind::InvalidName);
    }

    #[test]
    fn version_ids() {
        assert!(plausible_version_id("6b0a7a0e-2c5c-4f7e-9d1f-0c9a4b1e2f3a"));
        for bad in
            ["", "0", "999999999", " 6b0a7a0e-2c5c-4f7e-9d1f-0c9a4b1e2f3a", "+6b0a7a0e-2c5c-4f7e-9d1f-0c9a4b1e2f3a"]
        {
            assert!(!plausible_version_id(bad), "{bad:?}");
        }
    }
}
