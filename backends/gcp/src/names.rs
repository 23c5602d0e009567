//! Where a secret lives in Google Secret Manager, and how its versions and
//! list pages are named.
//!
//! # Secret ids
//! Secret Manager ids allow only `A-Z a-z 0-9 _ -`, at most 255 characters,
//! case-sensitive. secretd's names also hold `.` (namespace segments, keys)
//! and `/` (keys), so `(tenant, namespace, key)` is written as
//!
//! ```text
//! <name-prefix>_-<tenant>_-<namespace>_-<key>      (without a prefix: <tenant>_-<namespace>_-<key>)
//! ```
//!
//! with `_` as the escape character inside each part:
//!
//! | character | written as |
//! |---|---|
//! | `A-Z a-z 0-9 -` | itself |
//! | `_` | `__` |
//! | `.` | `_d` |
//! | `/` | `_s` |
//! | the boundary between two parts | `_-` |
//!
//! so `acme` / `team.etl` / `db/password` is `secretd_-acme_-team_detl_-db_spassword`
//! and `DB_PASSWORD` keeps its case as `DB__PASSWORD`.
//!
//! Why it is injective: every `_` the encoding writes starts a two-character
//! escape whose second character says what it stands for, so reading left
//! to right splits an id back into exactly one sequence of characters and
//! part boundaries; the boundary `_-` cannot come from any character. Two
//! different names therefore never share an id, and nothing is folded
//! (Secret Manager ids are case-sensitive). An id longer than 255
//! characters is refused as `InvalidName`, never shortened.

use secretd_core::{Key, Namespace, SecretName, StoreError, Tenant};

/// Secret Manager's longest secret id.
pub const MAX_ID_LEN: usize = 255;

/// What separates the prefix, tenant, namespace and key inside an id.
const SEPARATOR: &str = "_-";

/// The first part of every id secretd writes, so its secrets stand apart
/// from others in a shared project (and a test run from another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePrefix(String);

impl NamePrefix {
    /// A prefix uses the secret id alphabet (`A-Z a-z 0-9 _ -`), at most 64
    /// characters; empty means none. It is separated from the tenant by
    /// `_-`.
    pub fn new(raw: &str) -> Result<Self, String> {
        if let Some(bad) = raw.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
            return Err(format!("name-prefix {raw:?} holds {bad:?}; secret ids allow A-Z a-z 0-9 _ -"));
        }
        if raw.len() > 64 {
            return Err("name-prefix is longer than 64 characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The secret id of `name`, or `InvalidName` when it would not fit.
    pub fn secret_id(&self, name: &SecretName) -> Result<String, StoreError> {
        let mut id = self.namespace_prefix(&name.tenant, &name.namespace);
        escape_into(&mut id, name.key.as_str());
        if id.len() > MAX_ID_LEN {
            return Err(StoreError::invalid_name(format!(
                "secret {name} maps to a Secret Manager id of {} characters; the limit is {MAX_ID_LEN}",
                id.len()
            )));
        }
        Ok(id)
    }

    /// What every id of one namespace starts with (its boundary included,
    /// so a child namespace, whose next characters are `_d`, never matches).
    pub fn namespace_prefix(&self, tenant: &Tenant, namespace: &Namespace) -> String {
        let mut out = String::with_capacity(MAX_ID_LEN);
        if !self.0.is_empty() {
            out.push_str(&self.0);
            out.push_str(SEPARATOR);
        }
        escape_into(&mut out, tenant.as_str());
        out.push_str(SEPARATOR);
        escape_into(&mut out, namespace.as_str());
        out.push_str(SEPARATOR);
        out
    }

    /// The whole name an id stands for, if it is one this prefix wrote.
    pub fn parse_id(&self, id: &str) -> Option<SecretName> {
        let rest = if self.0.is_empty() { id } else { id.strip_prefix(&self.0)?.strip_prefix(SEPARATOR)? };
        let parts = unescape_parts(rest)?;
        let [tenant, namespace, key] = <[String; 3]>::try_from(parts).ok()?;
        let name =
            SecretName::new(Tenant::parse(&tenant).ok()?, Namespace::parse(&namespace).ok()?, Key::parse(&key).ok()?);
        // `Tenant::parse` reads an empty tenant as `main`: insist on the
        // exact spelling, so one name has one id.
        (name.tenant.as_str() == tenant).then_some(name)
    }
}

/// The key of a listed secret, when its id lies in the namespace whose ids
/// start with `prefix` (compared exactly: nothing else is trusted).
pub fn key_in(prefix: &str, id: &str) -> Option<Key> {
    let parts = unescape_parts(id.strip_prefix(prefix)?)?;
    let [key] = <[String; 1]>::try_from(parts).ok()?;
    Key::parse(&key).ok()
}

fn escape_into(out: &mut String, part: &str) {
    for c in part.chars() {
        match c {
            '_' => out.push_str("__"),
            '.' => out.push_str("_d"),
            '/' => out.push_str("_s"),
            c => out.push(c),
        }
    }
}

/// Splits an id (or its tail) at the part boundaries and undoes the
/// escapes; `None` for anything the encoding cannot have written.
fn unescape_parts(s: &str) -> Option<Vec<String>> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        let current = parts.last_mut()?;
        match c {
            '_' => match chars.next()? {
                '_' => current.push('_'),
                'd' => current.push('.'),
                's' => current.push('/'),
                '-' => parts.push(String::new()),
                _ => return None,
            },
            c if c.is_ascii_alphanumeric() || c == '-' => current.push(c),
            _ => return None,
        }
    }
    Some(parts)
}

/// A pinned version as Secret Manager numbers them: `1`, `2`, ... in their
/// canonical spelling only. Secret Manager (and drongo, which parses with
/// Python's `int`) would read `01`, `+1` or ` 1` as version 1, and `latest`
/// or an alias as whatever they point at; a pinned read names exactly one
/// version, so those are answered `NotFound` without asking.
pub fn parse_version(raw: &str) -> Option<u64> {
    let canonical =
        !raw.is_empty() && raw.len() <= 19 && raw.bytes().all(|b| b.is_ascii_digit()) && !raw.starts_with('0');
    if canonical {
        raw.parse().ok()
    } else {
        None
    }
}

/// The version number at the end of a version's resource name
/// (`projects/p/secrets/s/versions/3`).
pub fn version_of(resource: &str) -> Option<u64> {
    let (_, number) = resource.rsplit_once("/versions/")?;
    parse_version(number)
}

/// The secret id at the end of a secret's resource name
/// (`projects/p/secrets/s`). The project part may be the project number
/// rather than its id, so only the tail is read.
pub fn id_of(resource: &str) -> Option<&str> {
    let (_, id) = resource.rsplit_once("/secrets/")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use secretd_core::ErrorKind;

    use super::*;

    fn prefix(p: &str) -> NamePrefix {
        NamePrefix::new(p).unwrap()
    }

    #[test]
    fn the_documented_example() {
        let name = SecretName::parse("acme", "team.etl", "db/password").unwrap();
        assert_eq!(prefix("secretd").secret_id(&name).unwrap(), "secretd_-acme_-team_detl_-db_spassword");
        assert_eq!(prefix("").secret_id(&name).unwrap(), "acme_-team_detl_-db_spassword");
        let name = SecretName::parse("main", "company", "DB_PASSWORD").unwrap();
        assert_eq!(prefix("secretd").secret_id(&name).unwrap(), "secretd_-main_-company_-DB__PASSWORD");
    }

    #[test]
    fn ids_use_only_the_secret_id_alphabet_and_round_trip() {
        for p in ["", "secretd", "my_app-1"] {
            let p = prefix(p);
            for (t, ns, k) in [
                ("acme", "team.etl", "db/password"),
                ("a_b-c", "A_b.c-D.e", "_x/y.z/__/a-_b"),
                ("0", "x", "_"),
                ("main", "a.b", "c"),
                ("main", "a", "b.c"),
            ] {
                let name = SecretName::parse(t, ns, k).unwrap();
                let id = p.secret_id(&name).unwrap();
                assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{id}");
                assert_eq!(p.parse_id(&id), Some(name.clone()), "{id}");
                let ns_prefix = p.namespace_prefix(&name.tenant, &name.namespace);
                assert_eq!(key_in(&ns_prefix, &id), Some(name.key.clone()), "{id}");
            }
        }
    }

    /// The conformance case `names_differing_in_unstorable_characters_do_not_collide`.
    #[test]
    fn names_differing_in_unstorable_characters_do_not_collide() {
        let p = prefix("secretd");
        let keys = ["a.b", "a_b", "a-b", "a/b", "ab", "A.B", "a--b", "a-2d-b", "a_2e_b", "a.b/c", "a/b.c", "x", "X"];
        let mut names: Vec<SecretName> = keys.iter().map(|k| SecretName::parse("c", "ns", k).unwrap()).collect();
        for ns in ["ns.x-y", "ns.x_y", "ns.x.y"] {
            names.push(SecretName::parse("c", ns, "k").unwrap());
        }
        names.push(SecretName::parse("c", "ns.x.y", "z").unwrap());
        names.push(SecretName::parse("c", "ns.x", "y.z").unwrap());
        names.push(SecretName::parse("c-a", "ns", "k").unwrap());
        names.push(SecretName::parse("c_a", "ns", "k").unwrap());
        let mut seen = BTreeMap::new();
        for name in names {
            let id = p.secret_id(&name).unwrap();
            if let Some(other) = seen.insert(id.clone(), name.clone()) {
                panic!("{name} and {other} share the id {id}");
            }
        }
    }

    #[test]
    fn namespaces_do_not_list_their_children_or_neighbours() {
        let p = prefix("secretd");
        let ns = Namespace::parse("team").unwrap();
        let t = Tenant::parse("acme").unwrap();
        let ns_prefix = p.namespace_prefix(&t, &ns);
        let child = p.secret_id(&SecretName::parse("acme", "team.etl", "k").unwrap()).unwrap();
        let sibling = p.secret_id(&SecretName::parse("acme", "team-2", "k").unwrap()).unwrap();
        let other_tenant = p.secret_id(&SecretName::parse("acme2", "team", "k").unwrap()).unwrap();
        for id in [child, sibling, other_tenant] {
            assert_eq!(key_in(&ns_prefix, &id), None, "{id}");
        }
        // Ids another tool wrote, or that no name encodes to.
        for foreign in ["secretd_-acme_-team_-", "secretd_-acme_-team_-a_xb", "secretd_-acme_-team_-a_-b", "x"] {
            assert_eq!(key_in(&ns_prefix, foreign), None, "{foreign}");
        }
        assert_eq!(p.parse_id("secretd_-_-team_-k"), None, "an empty tenant is not `main`");
        assert_eq!(p.parse_id("other_-acme_-team_-k"), None);
    }

    #[test]
    fn longest_names_are_invalid_or_fit() {
        let p = prefix("secretd");
        let namespace = ["n".repeat(63), "n".repeat(63), "n".repeat(63)].join(".");
        let longest = SecretName::parse(&"t".repeat(63), &namespace, &"k".repeat(255)).unwrap();
        let err = p.secret_id(&longest).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName);
        assert!(err.message().contains("limit is 255"), "{}", err.message());
        // Exactly at the limit: 7 + 2 + 4 + 2 + 4 + 2 + 234 = 255.
        let fits = SecretName::parse("tttt", "nnnn", &"k".repeat(234)).unwrap();
        assert_eq!(p.secret_id(&fits).unwrap().len(), 255);
        let over = SecretName::parse("tttt", "nnnn", &"k".repeat(235)).unwrap();
        assert_eq!(p.secret_id(&over).unwrap_err().kind(), ErrorKind::InvalidName);
        // Escapes count: 117 dots are 234 characters.
        let dotted = SecretName::parse("tttt", "nnnn", &format!("k{}", ".k".repeat(116))).unwrap();
        assert!(p.secret_id(&dotted).is_err());
    }

    #[test]
    fn prefixes() {
        assert!(NamePrefix::new("secretd").is_ok());
        assert!(NamePrefix::new("").is_ok());
        for bad in ["a/b", "a.b", "a b", "é", &"p".repeat(65)] {
            assert!(NamePrefix::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_are_canonical_numbers_only() {
        assert_eq!(parse_version("1"), Some(1));
        assert_eq!(parse_version("42"), Some(42));
        assert_eq!(parse_version("999999999"), Some(999_999_999));
        for bad in
            ["", "0", "01", "+1", " 1", "1 ", "1.0", "1_0", "-1", "latest", "no-such-version", "99999999999999999999"]
        {
            assert_eq!(parse_version(bad), None, "{bad:?}");
        }
        assert_eq!(version_of("projects/p/secrets/s/versions/3"), Some(3));
        assert_eq!(version_of("projects/p/secrets/s/versions/latest"), None);
        assert_eq!(id_of("projects/123456/secrets/secretd_-a_-b_-c"), Some("secretd_-a_-b_-c"));
        assert_eq!(id_of("projects/p/secrets/s/versions/1"), None);
    }
}
