//! Where a secret lives in Key Vault: an injective, reversible mapping of
//! `(tenant, namespace, key)` onto Key Vault's narrow alphabet.
//!
//! Key Vault secret names are 1 to 127 characters of letters, digits and
//! `-`, and the service compares them **case-insensitively** (`Db` and `DB`
//! are one secret). secretd names hold upper- and lower-case letters and
//! `_ - . /`, so they are escaped, with `-` as the escape character:
//!
//! ```text
//! <name-prefix><enc(tenant)>--<enc(namespace)>--<enc(key)>
//! ```
//!
//! `enc` writes only `a-z`, `0-9` and `-`, one character (or one escape) at
//! a time. It reads the part with a *case mode* that starts as lower case:
//!
//! | input | written as |
//! |---|---|
//! | `0`-`9` | itself |
//! | a letter in the current mode's case | itself, in lower case |
//! | a letter in the other case | `-` then the letter in lower case |
//! | `.` `_` `-` `/` | `-0` `-1` `-2` `-3` |
//! | (switch the mode) | `-4` |
//!
//! The encoder switches the mode (`-4`) before a run of letters of the
//! other case when that is shorter than escaping each of them, so
//! environment-style keys stay short: `DB_PASSWORD` is `-4db-1password`,
//! `MyKey` is `-my-key`, `db/password` is `db-3password`, `company.team` is
//! `company-0team`. `acme` / `team.etl` / `db/password` under the default
//! prefix is `secretd-acme--team-0etl--db-3password`.
//!
//! Why this is injective: every `-` inside a part starts a two-character
//! escape whose second character (`0`-`4` or a letter) is never `-`, so
//! `--` can only be the separator between the parts, and the escapes
//! (`-0`..`-4`, `-a`..`-z`) are distinct from each other and from the plain
//! characters. [`decode`] reads a name back left to right and
//! `decode(encode(n)) == n` for every name (the tests below prove it on the
//! tricky cases and on random names), so two names never share an encoding;
//! and since the encoding holds no upper-case letter, Key Vault's case
//! folding cannot merge two of them either. `x` is `x` and `X` is `-x`;
//! `a.b`, `a_b`, `a-b`, `a/b`, `a--b` and `a-2d-b` are `a-0b`, `a-1b`,
//! `a-2b`, `a-3b`, `a-2-2b` and `a-22d-2b`.
//!
//! A name whose encoding is longer than 127 characters is refused as
//! `InvalidName`, never shortened. [`decode`] also refuses any name that is
//! not exactly what [`encode`] would write for what it decodes to (another
//! tool's secret in the same vault, say), so a listing never shows a key
//! that a get would look up under another name.

use secretd_core::{Key, Namespace, SecretName, StoreError, Tenant};

/// Key Vault's longest secret name.
pub const MAX_NAME_LEN: usize = 127;

/// What separates the encoded tenant, namespace and key.
const SEPARATOR: &str = "--";
/// The escape that switches the case mode.
const TOGGLE: char = '4';

/// A fixed start of every secret name secretd writes, so that secretd's
/// secrets are told apart from others in a shared vault. Letters, digits
/// and `-`, at most 64 characters; compared without regard to case, like
/// Key Vault's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePrefix(String);

impl NamePrefix {
    pub fn new(raw: &str) -> Result<Self, String> {
        if let Some(bad) = raw.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(format!(
                "name-prefix {raw:?} holds {bad:?}; Key Vault names allow only letters, digits and '-'"
            ));
        }
        if raw.len() > 64 {
            return Err("name-prefix is longer than 64 characters".into());
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Key Vault name of a secret, or `InvalidName` when it would be
    /// longer than Key Vault allows.
    pub fn secret_name(&self, name: &SecretName) -> Result<String, StoreError> {
        let full = format!(
            "{}{}{SEPARATOR}{}{SEPARATOR}{}",
            self.0,
            encode(name.tenant.as_str()),
            encode(name.namespace.as_str()),
            encode(name.key.as_str())
        );
        if full.len() > MAX_NAME_LEN {
            return Err(StoreError::invalid_name(format!(
                "secret {name} maps to a Key Vault name of {} characters; Key Vault allows at most {MAX_NAME_LEN} \
                 (upper-case letters and '.', '_', '-', '/' take two characters each, see the azure backend's name mapping)",
                full.len()
            )));
        }
        Ok(full)
    }

    /// The secretd name a Key Vault name stands for, if it is one this
    /// prefix and encoding produce exactly.
    pub fn parse_secret_name(&self, azure_name: &str) -> Option<SecretName> {
        let lower = azure_name.to_ascii_lowercase();
        let rest = lower.strip_prefix(&self.0)?;
        let parts = decode(rest)?;
        let [tenant, namespace, key]: [String; 3] = parts.try_into().ok()?;
        let name =
            SecretName::new(Tenant::parse(&tenant).ok()?, Namespace::parse(&namespace).ok()?, Key::parse(&key).ok()?);
        // Tenant::parse turns "" into the default tenant; a canonical
        // re-encoding rules that out along with every other spelling.
        (self.secret_name(&name).ok()? == lower).then_some(name)
    }
}

impl Default for NamePrefix {
    fn default() -> Self {
        Self("secretd-".into())
    }
}

/// One part (tenant, namespace or key) in Key Vault's alphabet; see the
/// module docs.
pub fn encode(part: &str) -> String {
    let chars: Vec<char> = part.chars().collect();
    let mut out = String::with_capacity(part.len() + 8);
    let mut upper_mode = false;
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '.' => out.push_str("-0"),
            '_' => out.push_str("-1"),
            '-' => out.push_str("-2"),
            '/' => out.push_str("-3"),
            c if c.is_ascii_alphabetic() => {
                let upper = c.is_ascii_uppercase();
                if upper != upper_mode {
                    if switch_pays(&chars[i..], upper) {
                        out.push('-');
                        out.push(TOGGLE);
                        upper_mode = upper;
                    } else {
                        out.push('-');
                    }
                }
                out.push(c.to_ascii_lowercase());
            }
            // Digits, and (defensively) anything else names never hold.
            c => out.push(c),
        }
    }
    out
}

/// Whether switching the case mode before `rest[0]` costs fewer characters
/// than escaping each letter of its run: a switch costs two, plus two to
/// switch back if a letter of the other case follows the run.
fn switch_pays(rest: &[char], upper: bool) -> bool {
    let letters = || rest.iter().filter(|c| c.is_ascii_alphabetic());
    let run = letters().take_while(|c| c.is_ascii_uppercase() == upper).count();
    let other_follows = letters().count() > run;
    let switch_cost = if other_follows { 4 } else { 2 };
    switch_cost < run
}

/// Splits and decodes a name written by [`encode`] and joined with `--`
/// (without the prefix). `None` when it is not in that form.
pub fn decode(name: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut upper_mode = false;
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '-' => match chars.next()? {
                '-' => {
                    if part.is_empty() {
                        return None;
                    }
                    parts.push(std::mem::take(&mut part));
                    upper_mode = false;
                }
                '0' => part.push('.'),
                '1' => part.push('_'),
                '2' => part.push('-'),
                '3' => part.push('/'),
                TOGGLE => upper_mode = !upper_mode,
                l if l.is_ascii_lowercase() => part.push(if upper_mode { l } else { l.to_ascii_uppercase() }),
                _ => return None,
            },
            d if d.is_ascii_digit() => part.push(d),
            l if l.is_ascii_lowercase() => part.push(if upper_mode { l.to_ascii_uppercase() } else { l }),
            _ => return None,
        }
    }
    if part.is_empty() {
        return None;
    }
    parts.push(part);
    Some(parts)
}

/// Key Vault version ids are 32 lower-case hex digits. Anything else names
/// no version, so it is refused before asking (and never reaches the
/// request path).
pub fn is_version_id(raw: &str) -> bool {
    raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::{Rng, SeedableRng};

    use super::*;

    fn name(t: &str, ns: &str, k: &str) -> SecretName {
        SecretName::parse(t, ns, k).unwrap()
    }

    #[test]
    fn documented_examples() {
        for (raw, enc) in [
            ("DB_PASSWORD", "-4db-1password"),
            ("MyKey", "-my-key"),
            ("db/password", "db-3password"),
            ("company.team", "company-0team"),
            ("x", "x"),
            ("X", "-x"),
            ("a.b", "a-0b"),
            ("a_b", "a-1b"),
            ("a-b", "a-2b"),
            ("a/b", "a-3b"),
            ("a--b", "a-2-2b"),
            ("a-2d-b", "a-22d-2b"),
            ("apiKEY", "api-4key"),
            ("ABCdef", "-a-b-cdef"),
            ("AWS_SECRET_ACCESS_KEY", "-4aws-1secret-1access-1key"),
        ] {
            assert_eq!(encode(raw), enc, "{raw}");
            assert_eq!(decode(enc), Some(vec![raw.to_owned()]), "{enc}");
        }
        let prefix = NamePrefix::default();
        assert_eq!(
            prefix.secret_name(&name("acme", "team.etl", "db/password")).unwrap(),
            "secretd-acme--team-0etl--db-3password"
        );
    }

    #[test]
    fn conformance_lookalikes_stay_apart_even_case_folded() {
        let prefix = NamePrefix::default();
        let keys = ["a.b", "a_b", "a-b", "a/b", "ab", "A.B", "a--b", "a-2d-b", "a_2e_b", "a.b/c", "a/b.c", "x", "X"];
        let mut seen = HashMap::new();
        for key in keys {
            let n = name("conformance", "conf.ns", key);
            let azure = prefix.secret_name(&n).unwrap();
            assert!(azure.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{azure}");
            assert_eq!(prefix.parse_secret_name(&azure), Some(n.clone()));
            // Key Vault folds case: the folded forms must differ too.
            assert!(seen.insert(azure.to_ascii_lowercase(), key).is_none(), "{key} collided");
        }
        // The boundaries between the parts are part of the name too.
        let splits = [
            name("conformance", "ns.x.y", "z"),
            name("conformance", "ns.x", "y.z"),
            name("conformance", "ns.x-y", "k"),
            name("conformance", "ns.x_y", "k"),
            name("conformance-a", "ns", "k"),
            name("conformance", "a.ns", "k"),
            name("a", "b", "c--d"),
            name("a", "b--c", "d"),
            name("a-b", "c", "d"),
            name("a", "b-c", "d"),
            name("a", "b", "_c"),
            name("a", "b", "_c"),
        ];
        let mut seen = HashMap::new();
        for n in splits {
            let azure = prefix.secret_name(&n).unwrap();
            assert_eq!(prefix.parse_secret_name(&azure).as_ref(), Some(&n), "{azure}");
            if let Some(other) = seen.insert(azure.clone(), n.clone()) {
                assert_eq!(other, n, "{azure} is shared");
            }
        }
    }

    #[test]
    fn random_names_round_trip_and_never_collide() {
        const ALPHABET: &[u8] = b"aAbBzZ09_-./";
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let prefix = NamePrefix::new("").unwrap();
        let mut seen: HashMap<String, String> = HashMap::new();
        for _ in 0..20_000 {
            let len = rng.random_range(1..12);
            let raw: String = (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
            let encoded = encode(&raw);
            assert_eq!(decode(&encoded), Some(vec![raw.clone()]), "{raw:?} -> {encoded}");
            assert!(!encoded.contains("--"), "{raw:?} -> {encoded}");
            assert!(!encoded.ends_with('-'));
            if let Some(other) = seen.insert(encoded.clone(), raw.clone()) {
                assert_eq!(other, raw, "{other:?} and {raw:?} share {encoded}");
            }
            if let Ok(key) = Key::parse(&raw) {
                let n = SecretName::new(Tenant::parse("t").unwrap(), Namespace::parse("n").unwrap(), key);
                if let Ok(azure) = prefix.secret_name(&n) {
                    assert_eq!(prefix.parse_secret_name(&azure), Some(n));
                }
            }
        }
    }

    #[test]
    fn every_short_string_round_trips() {
        // Exhaustive over a small alphabet: every string up to 4 characters.
        const ALPHABET: [char; 7] = ['a', 'B', 'c', 'D', '_', '.', '9'];
        let mut seen = HashMap::new();
        let mut current = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for s in &current {
                for c in ALPHABET {
                    let t = format!("{s}{c}");
                    let e = encode(&t);
                    assert_eq!(decode(&e), Some(vec![t.clone()]), "{t:?} -> {e}");
                    assert!(seen.insert(e, t.clone()).is_none(), "{t:?}");
                    next.push(t);
                }
            }
            current = next;
        }
    }

    #[test]
    fn longest_names_are_refused_not_shortened() {
        let prefix = NamePrefix::default();
        let long = SecretName::new(
            Tenant::parse(&"t".repeat(63)).unwrap(),
            Namespace::parse(&"n".repeat(63)).unwrap(),
            Key::parse(&"k".repeat(255)).unwrap(),
        );
        let err = prefix.secret_name(&long).unwrap_err();
        assert_eq!(err.kind(), secretd_core::ErrorKind::InvalidName);
        assert!(err.message().contains("127"), "{}", err.message());
        // Exactly at the limit is fine.
        let fixed = "secretd-t--n--".len();
        let key = "k".repeat(MAX_NAME_LEN - fixed);
        let n = name("t", "n", &key);
        assert_eq!(prefix.secret_name(&n).unwrap().len(), MAX_NAME_LEN);
        let n = name("t", "n", &format!("{key}k"));
        assert!(prefix.secret_name(&n).is_err());
    }

    #[test]
    fn foreign_and_non_canonical_names_are_not_ours() {
        let prefix = NamePrefix::default();
        for foreign in [
            "other-secret",
            "secretd-",
            "secretd-main",
            "secretd-main--ns",
            "secretd-main--ns--",
            "secretd---ns--k",
            "secretd-main----k",
            "secretd-main--ns--k--extra",
            "secretd-main--ns--k-9",
            "secretd-main--ns--k-",
            // Decodes to main/ns/AB, which is written "-a-b": not canonical.
            "secretd-main--ns---4ab",
            // Upper-case tenants do not exist.
            "secretd--main--ns--k",
            // A key starting with '.' is not a valid key.
            "secretd-main--ns---0k",
        ] {
            assert_eq!(prefix.parse_secret_name(foreign), None, "{foreign}");
        }
        // Key Vault may hand a name back in another case: still ours.
        assert_eq!(prefix.parse_secret_name("SECRETD-MAIN--NS--K"), Some(name("main", "ns", "k")));
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(NamePrefix::new("team-a-").is_ok());
        assert_eq!(NamePrefix::new("Team-").unwrap().as_str(), "team-");
        assert!(NamePrefix::new("a_b").is_err());
        assert!(NamePrefix::new(&"a".repeat(65)).is_err());
    }
}
