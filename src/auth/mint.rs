//! What a principal may mint, list and revoke: the rules that keep every
//! token within the principal that made it. Without them a token limited to
//! `company.team` with `admin` could mint one with no limit at all.
//!
//! A new token is refused (PERMISSION_DENIED) unless
//! - each of its permissions is one its creator holds, as
//!   [`Principal::can`] answers (today `admin` holds every permission, as
//!   docs/security.md says, so an admin may grant `write`; what keeps that
//!   token in bounds are the namespace and tenant rules below);
//! - each of its namespace globs is covered by one of the creator's (a
//!   creator without a namespace limit covers everything; a limited creator
//!   cannot mint an unlimited token);
//! - each of its tenant globs is covered by one of the creator's;
//! - it expires no later than its creator (an expiring creator cannot mint
//!   a token that never expires);
//! - its name is not a principal of the configuration (checked by the
//!   [`Authenticator`](super::Authenticator), which knows those names).
//!
//! Coverage is proved, never guessed. General glob containment is hard, so
//! [`glob_covers`] accepts only cases it can show sound and refuses the
//! rest, naming the glob it could not place.
//!
//! A limited admin lists and revokes only the tokens inside its reach (the
//! tokens it could have minted, as far as namespaces and tenants go).

use std::time::{Duration, SystemTime};

use wildmatch::WildMatch;

use super::Principal;
use crate::config::Permission;

/// The longest lifetime a token may be given.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// [`MAX_TOKEN_LIFETIME`] in words, for messages and help.
pub const MAX_TOKEN_LIFETIME_TEXT: &str = "10 years";
/// The tenant glob that reaches every tenant.
pub const ALL_TENANTS: &str = "*";
/// Enough for any real token, and a bound on the stored column.
pub const MAX_TENANT_GLOBS: usize = 32;
/// Glob lengths are bounded like the names they match (tenants 63
/// characters, namespaces 255, as `secretd_core` parses them).
const MAX_TENANT_GLOB_LEN: usize = 63;
const MAX_NAMESPACE_GLOB_LEN: usize = 255;

/// What a new token would hold.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    pub permissions: &'a [Permission],
    /// Empty: no namespace limit.
    pub namespaces: &'a [String],
    /// Empty: no tenant at all.
    pub tenants: &'a [String],
    pub expires_at: Option<SystemTime>,
}

/// Why a principal may not mint a token. The message is for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintRefusal {
    #[error(
        "token name {name:?} is the name of a principal in {section}; access.rules match principals by name, so choose another"
    )]
    ReservedName { name: String, section: &'static str },
    #[error("principal {creator} does not hold the {permission} permission, so it cannot grant it")]
    Permission { creator: String, permission: &'static str },
    #[error(
        "a token without a namespace limit needs a creator without one; principal {creator} is limited to namespaces {limits}"
    )]
    UnlimitedNamespaces { creator: String, limits: String },
    #[error("namespace glob {glob:?} is not within principal {creator}'s namespaces {limits}")]
    Namespace { glob: String, creator: String, limits: String },
    #[error("tenant glob {glob:?} is not within principal {creator}'s tenants {limits}")]
    Tenant { glob: String, creator: String, limits: String },
    #[error("principal {creator} expires at {at}; a token it mints must expire no later (give a shorter --expires)")]
    Expiry { creator: String, at: String },
}

/// Checks everything about `grant` that depends on its creator alone.
pub fn check_grant(creator: &Principal, grant: &Grant<'_>) -> Result<(), MintRefusal> {
    if let Some(p) = grant.permissions.iter().find(|p| !creator.can(**p)) {
        return Err(MintRefusal::Permission { creator: creator.name.clone(), permission: p.as_str() });
    }
    match namespace_gap(&creator.namespaces, grant.namespaces) {
        None => {}
        Some(None) => {
            return Err(MintRefusal::UnlimitedNamespaces {
                creator: creator.name.clone(),
                limits: list(&creator.namespaces),
            })
        }
        Some(Some(glob)) => {
            return Err(MintRefusal::Namespace {
                glob: glob.to_owned(),
                creator: creator.name.clone(),
                limits: list(&creator.namespaces),
            })
        }
    }
    if let Some(glob) = tenant_gap(&creator.tenants, grant.tenants) {
        return Err(MintRefusal::Tenant {
            glob: glob.to_owned(),
            creator: creator.name.clone(),
            limits: list(&creator.tenants),
        });
    }
    if let Some(limit) = creator.expires_at {
        if grant.expires_at.is_none_or(|at| at > limit) {
            return Err(MintRefusal::Expiry { creator: creator.name.clone(), at: rfc3339(limit) });
        }
    }
    Ok(())
}

/// Whether a token limited to `namespaces` and `tenants` lies inside
/// `admin`'s reach, so `admin` may see and revoke it.
pub fn oversees(admin: &Principal, namespaces: &[String], tenants: &[String]) -> bool {
    namespace_gap(&admin.namespaces, namespaces).is_none() && tenant_gap(&admin.tenants, tenants).is_none()
}

/// The first of `new`'s namespace globs that `creator`'s do not cover:
/// `Some(None)` when `new` is unlimited and `creator` is not.
fn namespace_gap<'a>(creator: &[String], new: &'a [String]) -> Option<Option<&'a str>> {
    if creator.is_empty() {
        return None;
    }
    if new.is_empty() {
        return if creator.iter().any(|c| matches_everything(c)) { None } else { Some(None) };
    }
    first_uncovered(creator, new).map(Some)
}

/// Tenants are always listed (`*` for all), so an empty list covers nothing
/// and is covered by anything.
fn tenant_gap<'a>(creator: &[String], new: &'a [String]) -> Option<&'a str> {
    first_uncovered(creator, new)
}

fn first_uncovered<'a>(creator: &[String], new: &'a [String]) -> Option<&'a str> {
    new.iter().find(|n| !creator.iter().any(|c| glob_covers(c, n))).map(String::as_str)
}

/// A time for a message. `humantime` cannot write years past 9999 (its
/// `Display` fails, and `to_string` would panic on that), and a token stored
/// before lifetimes were capped may expire that late.
fn rfc3339(t: SystemTime) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if write!(out, "{}", humantime::format_rfc3339_seconds(t)).is_err() {
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        out = format!("{secs} seconds after the epoch");
    }
    out
}

fn list(globs: &[String]) -> String {
    format!("[{}]", globs.join(", "))
}

fn is_wildcard(c: char) -> bool {
    c == '*' || c == '?'
}

fn matches_everything(glob: &str) -> bool {
    !glob.is_empty() && glob.chars().all(|c| c == '*')
}

/// Whether every name `inner` matches is matched by `outer` too (globs of
/// `*`, any run of characters, and `?`, one character, as `wildmatch`
/// reads them). Sound but not complete: `true` only in cases that are
/// proved here, so `false` means "not proved", not "not covered".
///
/// Proved cases: equal globs; an `outer` of only `*`; a literal `inner` that
/// `outer` matches; and an `outer` of the form `P*S` (one `*`, no `?`, `P`
/// and `S` literal, either may be empty) when `inner`'s literal text before
/// its first wildcard starts with `P` and its literal text after its last
/// wildcard ends with `S`. That last case is sound because every match of
/// `inner` starts with that prefix and ends with that suffix, at positions
/// that do not overlap, so it starts with `P`, ends with `S`, and is at
/// least `|P| + |S|` long.
pub fn glob_covers(outer: &str, inner: &str) -> bool {
    if outer == inner || matches_everything(outer) {
        return true;
    }
    if !inner.contains(is_wildcard) {
        return WildMatch::new(outer).matches(inner);
    }
    if outer.contains('?') || outer.matches('*').count() != 1 {
        return false;
    }
    let Some((prefix, suffix)) = outer.split_once('*') else { return false };
    let (Some(first), Some(last)) = (inner.find(is_wildcard), inner.rfind(is_wildcard)) else { return false };
    inner[..first].starts_with(prefix) && inner[last + 1..].ends_with(suffix)
}

/// A tenant glob as a principal or token may hold it: 1 to 63 characters
/// of the tenant alphabet and the wildcards.
pub fn check_tenant_glob(glob: &str) -> Result<(), &'static str> {
    let ok = !glob.is_empty()
        && glob.len() <= MAX_TENANT_GLOB_LEN
        && glob.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '*' | '?'));
    if ok {
        Ok(())
    } else {
        Err("a tenant glob must be 1 to 63 characters of a-z, 0-9, '_', '-' and the wildcards '*' and '?'")
    }
}

/// A namespace glob: 1 to 255 characters of the namespace alphabet, dots
/// and the wildcards. The message quotes no input: it serves configuration
/// errors too.
pub fn check_namespace_glob(glob: &str) -> Result<(), &'static str> {
    let ok = !glob.is_empty()
        && glob.len() <= MAX_NAMESPACE_GLOB_LEN
        && glob.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '*' | '?'));
    if ok {
        Ok(())
    } else {
        Err("a namespace glob must be 1 to 255 characters of A-Z, a-z, 0-9, '_', '-', '.' and the wildcards '*' and '?'")
    }
}

/// When a token asked to live `seconds` from `now` expires: `None` for 0
/// (never); an error past [`MAX_TOKEN_LIFETIME`] or below 0.
pub fn expiry(now: SystemTime, seconds: i64) -> Result<Option<SystemTime>, String> {
    let too_long =
        || format!("expires_in_seconds must be at most {} ({MAX_TOKEN_LIFETIME_TEXT})", MAX_TOKEN_LIFETIME.as_secs());
    match u64::try_from(seconds) {
        Err(_) => Err("expires_in_seconds must not be negative".into()),
        Ok(0) => Ok(None),
        Ok(s) if s > MAX_TOKEN_LIFETIME.as_secs() => Err(too_long()),
        Ok(s) => now.checked_add(Duration::from_secs(s)).map(Some).ok_or_else(too_long),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::Permission::{self, *};

    #[test]
    fn glob_coverage_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("company.team", "company.team", true),
            ("*", "anything.at.all*", true),
            ("**", "x?y", true),
            ("company.*", "company.team", true),
            ("company.*", "company", false), // company.* needs the dot
            ("company.*", "company.team*", true),
            ("company.*", "company.team.*", true),
            ("company.*", "company.?", true),
            ("company*", "company.*", true),
            ("company.*", "company*", false), // company-x would escape
            ("company.*", "*", false),
            ("company.team", "company.team*", false),
            ("company.team", "company.*", false),
            ("*.prod", "company.*.prod", true),
            ("*.prod", "company.prod", true),
            ("*.prod", "company.*", false),
            ("company.*.prod", "company.team.prod", true),
            ("company.*.prod", "company.x*.prod", true),
            ("company.*.prod", "company.*prod", false), // company.xprod
            ("company.*.prod", "company.*", false),
            ("a*a", "a*", false),
            ("a*a", "a", false), // the literal "a" is too short for both
            ("a*a", "aa", true),
            ("ab*", "a?*", false), // the '?' may be anything
            ("a?", "ab", true),    // a literal is matched directly
            ("a?", "a*", false),   // not proved: outer holds a '?'
            ("c*", "c?", true),
            ("main", "main", true),
            ("main", "*", false),
            ("acme-*", "acme-prod", true),
            ("acme-*", "acme-*", true),
            ("acme-*", "acme*", false),
        ];
        for (outer, inner, expected) in cases {
            assert_eq!(glob_covers(outer, inner), *expected, "{outer:?} covers {inner:?}");
        }
    }

    /// The proved cases must be sound: check them against wildmatch on
    /// every short name over a small alphabet.
    #[test]
    fn glob_coverage_is_sound_by_brute_force() {
        let globs = ["*", "a*", "*a", "a*b", "ab*", "a?", "?a", "a*?", "a?*b", "ab", "a.*", "*.b", "a*.b"];
        let alphabet = ['a', 'b', '.'];
        let mut names = vec![String::new()];
        let mut all = Vec::new();
        for _ in 0..5 {
            names = names.iter().flat_map(|n| alphabet.iter().map(move |c| format!("{n}{c}"))).collect();
            all.extend(names.iter().cloned());
        }
        for outer in globs {
            for inner in globs {
                if !glob_covers(outer, inner) {
                    continue;
                }
                let (o, i) = (WildMatch::new(outer), WildMatch::new(inner));
                for name in &all {
                    assert!(!i.matches(name) || o.matches(name), "{outer:?} claimed to cover {inner:?}, but {name:?}");
                }
            }
        }
    }

    fn principal(
        permissions: &[Permission],
        namespaces: &[&str],
        tenants: &[&str],
        expires_in: Option<u64>,
    ) -> Principal {
        Principal {
            name: "creator".into(),
            service: "ADMIN".into(),
            permissions: permissions.iter().copied().collect::<BTreeSet<_>>(),
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            tenants: tenants.iter().map(|s| s.to_string()).collect(),
            expires_at: expires_in.map(|s| now() + Duration::from_secs(s)),
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)
    }

    #[test]
    fn minting_rules_table() {
        let unlimited = principal(&[Admin], &[], &["*"], None);
        let reader = principal(&[Read, List], &[], &["*"], None);
        let team = principal(&[Read, Admin], &["company.team"], &["main"], Some(3600));
        let prefix = principal(&[Read, List, Admin], &["company.*", "shared"], &["acme-*"], None);
        type Case<'a> =
            (&'a Principal, &'a [Permission], &'a [&'a str], &'a [&'a str], Option<u64>, Result<(), &'a str>);
        let cases: Vec<Case<'_>> = vec![
            (&unlimited, &[Read, Write], &[], &["*"], None, Ok(())),
            // Not an admin (the policy keeps such a principal from minting at
            // all; the rule holds regardless).
            (&reader, &[Read], &[], &["*"], None, Ok(())),
            (&reader, &[Read, Write], &[], &["*"], None, Err("write permission")),
            (&reader, &[Admin], &[], &["*"], None, Err("admin permission")),
            (&unlimited, &[Admin], &["x.*"], &["main", "acme"], Some(10), Ok(())),
            // The review's escalation: no namespace limit from company.team.
            (&team, &[Read], &[], &["main"], Some(60), Err("without a namespace limit")),
            (&team, &[Read], &["company.*"], &["main"], Some(60), Err("\"company.*\"")),
            (&team, &[Read], &["company.team", "company.root"], &["main"], Some(60), Err("\"company.root\"")),
            (&team, &[Read, Write], &["company.team"], &["main"], Some(60), Ok(())), // admin holds write
            (&team, &[Read], &["company.team"], &["main"], Some(7200), Err("expires at")),
            (&team, &[Read], &["company.team"], &["main"], None, Err("expires at")),
            (&team, &[Read], &["company.team"], &["acme"], Some(60), Err("tenant glob \"acme\"")),
            (&team, &[Read], &["company.team"], &["*"], Some(60), Err("tenant glob \"*\"")),
            (&team, &[Read, Admin], &["company.team"], &["main"], Some(3600), Ok(())),
            (&team, &[], &["company.team"], &[], Some(1), Ok(())),
            (&prefix, &[List], &["company.team*", "shared"], &["acme-prod", "acme-*"], None, Ok(())),
            (&prefix, &[List], &["company*"], &["acme-prod"], None, Err("\"company*\"")),
            (&prefix, &[List], &["company.team"], &["acme"], None, Err("tenant glob \"acme\"")),
            (&prefix, &[List], &[], &["acme-x"], None, Err("without a namespace limit")),
        ];
        for (i, (creator, permissions, namespaces, tenants, expires_in, expected)) in cases.into_iter().enumerate() {
            let namespaces: Vec<String> = namespaces.iter().map(|s| s.to_string()).collect();
            let tenants: Vec<String> = tenants.iter().map(|s| s.to_string()).collect();
            let grant = Grant {
                permissions,
                namespaces: &namespaces,
                tenants: &tenants,
                expires_at: expires_in.map(|s| now() + Duration::from_secs(s)),
            };
            let got = check_grant(creator, &grant).map_err(|e| e.to_string());
            match (&got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(message), Err(says)) if message.contains(says) => {}
                _ => panic!("case {i}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn reach_over_existing_tokens() {
        let team = principal(&[Admin], &["company.team*"], &["main"], None);
        let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(oversees(&team, &strings(&["company.team"]), &strings(&["main"])));
        assert!(oversees(&team, &strings(&["company.team.etl"]), &strings(&["main"])));
        assert!(!oversees(&team, &strings(&["company.other"]), &strings(&["main"])));
        assert!(!oversees(&team, &[], &strings(&["main"])), "an unlimited token is outside a limited admin");
        assert!(!oversees(&team, &strings(&["company.team"]), &strings(&["acme"])));
        let root = principal(&[Admin], &[], &["*"], None);
        assert!(oversees(&root, &[], &strings(&["*"])));
    }

    #[test]
    fn expiry_is_capped_and_checked() {
        let cap = MAX_TOKEN_LIFETIME.as_secs() as i64;
        assert_eq!(expiry(now(), 0), Ok(None));
        assert_eq!(expiry(now(), 60), Ok(Some(now() + Duration::from_secs(60))));
        assert_eq!(expiry(now(), cap), Ok(Some(now() + MAX_TOKEN_LIFETIME)));
        for absurd in [cap + 1, i64::MAX, i64::MAX / 1000] {
            assert!(expiry(now(), absurd).unwrap_err().contains("10 years"), "{absurd}");
        }
        assert!(expiry(now(), -1).unwrap_err().contains("negative"));
        // A creator stored before the cap, expiring after the year 9999: a
        // refusal that says when, not a panic.
        let ancient = Principal {
            expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000)),
            ..principal(&[Admin], &[], &["*"], None)
        };
        let grant = Grant { permissions: &[Read], namespaces: &[], tenants: &[], expires_at: None };
        assert!(check_grant(&ancient, &grant).unwrap_err().to_string().contains("400000000000 seconds"));
        // Near the end of representable time, the sum itself overflows.
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 - 10);
        assert!(expiry(far, 60).is_err());
    }

    #[test]
    fn glob_syntax() {
        for good in ["main", "acme-*", "*", "t?", "a_b"] {
            assert_eq!(check_tenant_glob(good), Ok(()), "{good}");
        }
        for bad in ["", "Acme", "a.b", "a/b", &"a".repeat(64)] {
            assert!(check_tenant_glob(bad).is_err(), "{bad}");
        }
        for good in ["company", "company.team*", "*", "Team_1.x-y?"] {
            assert_eq!(check_namespace_glob(good), Ok(()), "{good}");
        }
        for bad in ["", "a b", "a/b", "a\n", &"a".repeat(256)] {
            assert!(check_namespace_glob(bad).is_err(), "{bad:?}");
        }
        assert!(!check_tenant_glob(&"X".repeat(500)).unwrap_err().contains("XXX"), "bad input is not echoed");
    }
}
