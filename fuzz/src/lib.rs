//! What each fuzz target checks, in one place.
//!
//! The cargo-fuzz targets in `fuzz_targets/` call these functions with the
//! fuzzer's bytes, and the root crate's `tests/fuzz_corpus.rs` compiles this
//! same file (through `#[path]`) to replay every committed corpus file
//! through them in CI. So a corpus file that once found a bug keeps guarding
//! against it without nightly or libFuzzer.
//!
//! Each function panics when an invariant breaks (that is what the fuzzer
//! reports as a crash) and otherwise says whether the input was accepted,
//! so the replay test can check that a corpus reaches both sides.
//!
//! This file is compiled by two crates: it may use only `std`,
//! `secretd` and `secretd_core`.

use std::{path::Path, sync::OnceLock};

use secretd_core::{Envelope, ErrorKind, Key, Namespace, SecretName, SecretValue, StoreError, Tags, Tenant};

/// The targets, named as their `fuzz_targets/*.rs` and `corpus/*` folders.
pub const TARGETS: [&str; 3] = ["names", "config", "envelope"];

/// What a target made of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A valid name, a configuration that loaded, an envelope that opened.
    Accepted,
    /// Refused with an error (which the target checked).
    Rejected,
}

/// Runs target `name` on `data`. Panics on an unknown target.
pub fn run(target: &str, data: &[u8]) -> Outcome {
    match target {
        "names" => names(data),
        "config" => config(data),
        "envelope" => envelope(data),
        other => panic!("no fuzz target named {other:?}"),
    }
}

/// An error message longer than this means something echoed its input
/// without bounds. Names echo at most 80 characters, each at most
/// `\u{10ffff}` (10 bytes) once escaped, plus the rule.
const MAX_NAME_ERROR_LEN: usize = 2048;

// ---------------------------------------------------------------------------
// names

/// `SecretName::parse`, `Tenant::parse`, `Namespace::parse`, `Key::parse`
/// and `Tags::validate`.
///
/// The input, read as UTF-8 (invalid sequences become U+FFFD), is split on
/// NUL: tenant, namespace, key, then any number of `key=value` tags.
///
/// Checks: the full name parses exactly when its three parts do; a refused
/// part is `InvalidName` with a bounded message that names the part and
/// holds no raw control character; an accepted part obeys the documented
/// alphabet and length rules, re-checked here independently of the parser
/// (so no traversal, wildcard or control character gets through); an empty
/// tenant means `main`; a parsed name's `Display` (`tenant/namespace/key`)
/// splits and parses back to an equal name; every ancestor of an accepted
/// namespace is itself valid and contains it; accepted tags obey the tag
/// limits, refused ones are `InvalidName`.
pub fn names(data: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\0');
    let (tenant, namespace, key) =
        (fields.next().unwrap_or(""), fields.next().unwrap_or(""), fields.next().unwrap_or(""));

    let t = Tenant::parse(tenant);
    let n = Namespace::parse(namespace);
    let k = Key::parse(key);
    match &t {
        Ok(t) => {
            assert_eq!(t.as_str(), if tenant.is_empty() { "main" } else { tenant }, "tenant changed in parsing");
            assert!(tenant_follows_rules(t.as_str()), "accepted tenant {t:?} breaks the rules");
        }
        Err(e) => check_name_error(e, "tenant must be"),
    }
    match &n {
        Ok(n) => {
            assert_eq!(n.as_str(), namespace, "namespace changed in parsing");
            assert!(namespace_follows_rules(namespace), "accepted namespace {n:?} breaks the rules");
            check_ancestors(n);
        }
        Err(e) => check_name_error(e, "namespace must be"),
    }
    match &k {
        Ok(k) => {
            assert_eq!(k.as_str(), key, "key changed in parsing");
            assert!(key_follows_rules(key), "accepted key {k:?} breaks the rules");
        }
        Err(e) => check_name_error(e, "key must be"),
    }

    let outcome = match SecretName::parse(tenant, namespace, key) {
        Ok(name) => {
            assert!(t.is_ok() && n.is_ok() && k.is_ok(), "{name:?} parsed but one of its parts does not");
            let shown = name.to_string();
            let mut parts = shown.splitn(3, '/');
            let (a, b, c) = (parts.next().unwrap(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let again =
                SecretName::parse(a, b, c).unwrap_or_else(|e| panic!("{shown:?} does not parse back: {}", e.message()));
            assert_eq!(again, name, "{shown:?} parses back to another name");
            assert_eq!(again.to_string(), shown);
            Outcome::Accepted
        }
        Err(e) => {
            assert!(t.is_err() || n.is_err() || k.is_err(), "the name was refused but each part parses");
            assert_eq!(e.kind(), ErrorKind::InvalidName);
            Outcome::Rejected
        }
    };

    let tags: Tags = fields.map(|f| f.split_once('=').unwrap_or((f, ""))).collect();
    match tags.validate() {
        Ok(()) => {
            assert!(tags.len() <= 50, "{} tags accepted", tags.len());
            for (k, v) in tags.iter() {
                assert!(!k.is_empty() && k.chars().count() <= 128, "tag key {k:?} accepted");
                assert!(v.chars().count() <= 256, "tag value of {} characters accepted", v.chars().count());
                assert!(!k.chars().chain(v.chars()).any(char::is_control), "control character accepted in tag {k:?}");
            }
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidName);
            assert!(e.message().contains("tag"), "{}", e.message());
        }
    }
    outcome
}

fn check_name_error(e: &StoreError, rule: &str) {
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{}", e.message());
    let message = e.message();
    assert!(message.contains(rule), "the error does not state the rule: {message}");
    assert!(message.len() <= MAX_NAME_ERROR_LEN, "unbounded error message ({} bytes)", message.len());
    assert!(!message.chars().any(char::is_control), "raw control character in the error: {message:?}");
}

/// README "Names": 1 to 63 characters of `a-z`, `0-9`, `_`, `-`, starting
/// with a letter or digit.
fn tenant_follows_rules(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Dot-separated segments, at most 255 characters; each segment 1 to 63 of
/// `A-Za-z0-9_-`, starting with a letter or digit.
fn namespace_follows_rules(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.split('.').all(|seg| {
            (1..=63).contains(&seg.len())
                && seg.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// 1 to 255 characters of `A-Za-z0-9_-./`, starting with a letter, digit or
/// `_`; `/`-separated parts are non-empty and never `.` or `..`.
fn key_follows_rules(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        && s.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
}

fn check_ancestors(ns: &Namespace) {
    let chain: Vec<Namespace> = ns.self_and_ancestors().collect();
    assert_eq!(chain.len(), ns.as_str().split('.').count(), "{ns:?} has {} ancestors", chain.len());
    assert_eq!(chain[0], *ns);
    for ancestor in &chain {
        assert_eq!(Namespace::parse(ancestor.as_str()).as_ref().ok(), Some(ancestor), "ancestor {ancestor:?}");
        assert!(ns.is_within(ancestor), "{ns:?} is not within its ancestor {ancestor:?}");
        assert!(ancestor == ns || !ancestor.is_within(ns), "{ancestor:?} is within its descendant {ns:?}");
    }
}

// ---------------------------------------------------------------------------
// config

/// The file name `config` passes to `load_str`; every error must start with it.
pub const CONFIG_FILE: &str = "fuzz/secretd.yaml";

/// The environment the `config` target loads with: realistic values for the
/// variables the example configurations use, nothing for any other (so
/// `${VAR:-default}` takes the default and `${VAR}` is a missing-variable
/// error).
pub fn config_env(var: &str) -> Option<String> {
    CONFIG_ENV.iter().find(|(name, _)| *name == var).map(|(_, value)| (*value).to_owned())
}

/// [`config_env`]'s variables and values. Every value is distinctive, so
/// finding one in an error message means the error quoted the environment.
pub const CONFIG_ENV: &[(&str, &str)] = &[
    ("SECRETD_JDBC_SECRET", "q3Vt1XrU0o9Yc0Jb2m6Zl8TtP5sKx4WnE7aHdG1fR2c="),
    ("SECRETD_ES_SECRET", "q3Vt1XrU0o9Yc0Jb2m6Zl8TtP5sKx4WnE7aHdG1fR2c="),
    ("VAULT_TOKEN", "hvs.fuzz-token-0123456789"),
    ("VAULT_ROLE_ID", "role-0123"),
    ("AWS_ACCESS_KEY_ID", "AKIAFUZZ0123456789"),
    ("AWS_SECRET_ACCESS_KEY", "fuzz/secret+access/key0123456789"),
    ("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000000"),
    ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000000"),
    ("AZURE_CLIENT_SECRET", "fuzz~client~secret"),
    ("SECRETD_ADMIN_PASSWORD", "fuzz-admin-password-0123456789"),
    ("SECRETD_OPS_TOKEN_SHA256", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    ("SECRETD_JDBC_URL", "postgres://secretd:fuzz-db-password@db.internal:5432/secretd"),
    ("SECRETD_STATE_URL", "postgres://secretd:fuzz-db-password@db.internal:5432/secretd_state"),
    ("ENV", "dev"),
];

/// `secretd::config::load_str` (YAML parsing, `${VAR}` substitution, typed
/// deserialisation, `Config::validate`) and `plaintext_credentials`.
///
/// The input is read as UTF-8 (invalid sequences become U+FFFD). Checks:
/// no panic; an error's message starts with the file name it was given
/// (`FILE: ...`, as operators rely on) and holds no value of the
/// environment (configuration errors never quote values, whatever the
/// input put where); a loaded configuration validates again with no
/// problem.
pub fn config(data: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(data);
    let _ = secretd::config::plaintext_credentials(&text);
    match secretd::config::load_str(&text, Path::new(CONFIG_FILE), &config_env) {
        Ok(config) => {
            let problems = config.validate();
            assert!(problems.is_empty(), "a loaded configuration has problems: {problems:?}");
            Outcome::Accepted
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with(&format!("{CONFIG_FILE}: ")), "the error does not name the file: {message}");
            // `dev` is too short to be told from the message's own words.
            for (_, value) in CONFIG_ENV.iter().filter(|(_, value)| value.len() >= 8) {
                assert!(!message.contains(value), "the error quotes the environment: {message}");
            }
            Outcome::Rejected
        }
    }
}

// ---------------------------------------------------------------------------
// envelope

/// The `envelope` target's fixed key, name and version. Seeds that should
/// open were sealed with these (`tests/fuzz_corpus.rs`, `write_envelope_seeds`).
pub const ENVELOPE_SECRET: &str = "secretd-fuzz-envelope-secret-0123456789";
pub const ENVELOPE_VERSION: &str = "1";
pub const ENVELOPE_NAME: (&str, &str, &str) = ("main", "fuzz.envelope", "sealed");

/// The envelope's layout: `0x01 | key id (8) | nonce (12) | ciphertext | tag (16)`.
const ENVELOPE_OVERHEAD: usize = 1 + 8 + 12 + 16;

pub fn envelope_key() -> &'static Envelope {
    static KEY: OnceLock<Envelope> = OnceLock::new();
    KEY.get_or_init(|| Envelope::from_secret(ENVELOPE_SECRET).expect("the fuzz secret is long enough"))
}

pub fn envelope_name() -> SecretName {
    let (t, n, k) = ENVELOPE_NAME;
    SecretName::parse(t, n, k).expect("the fuzz name is valid")
}

/// `Envelope::open` on the input as stored ciphertext, then `seal` and
/// `open` with the input as the value.
///
/// Checks: `open` never panics; it refuses with `Corrupt` (and a message
/// that names the secret) unless the input is a genuine envelope: the
/// format byte, this key's id, and exactly the overhead plus the plaintext
/// length; an envelope that opens does not open under another version or
/// name; sealing the input and opening it gives the input back, the sealed
/// form does not contain a non-trivial plaintext, and one flipped bit
/// (chosen by the input) makes it `Corrupt`.
pub fn envelope(data: &[u8]) -> Outcome {
    let key = envelope_key();
    let name = envelope_name();
    let outcome = match key.open(&name, ENVELOPE_VERSION, data) {
        Ok(value) => {
            assert_eq!(data[0], 1, "opened without the format byte");
            assert_eq!(hex(&data[1..9]), key.key_id(), "opened under another key id");
            assert_eq!(value.len() + ENVELOPE_OVERHEAD, data.len(), "plaintext length does not match");
            let other_version = key.open(&name, "2", data);
            assert_eq!(other_version.map(|_| ()).unwrap_err().kind(), ErrorKind::Corrupt, "opened under version 2");
            let other_name = name.in_namespace(Namespace::parse("fuzz.other").unwrap());
            let other = key.open(&other_name, ENVELOPE_VERSION, data);
            assert_eq!(other.map(|_| ()).unwrap_err().kind(), ErrorKind::Corrupt, "opened under another name");
            Outcome::Accepted
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{}", e.message());
            assert!(e.message().contains(&name.to_string()), "the error does not name the secret: {}", e.message());
            Outcome::Rejected
        }
    };

    let value = SecretValue::from_slice(data);
    let mut sealed = key.seal(&name, ENVELOPE_VERSION, &value).expect("sealing cannot fail");
    assert_eq!(sealed.len(), data.len() + ENVELOPE_OVERHEAD);
    if data.len() >= 16 {
        assert!(!sealed.windows(data.len()).any(|w| w == data), "the plaintext is visible in the envelope");
    }
    let opened = key.open(&name, ENVELOPE_VERSION, &sealed).expect("a fresh envelope opens");
    assert_eq!(opened, value, "seal then open changed the value");

    let at = data.iter().fold(data.len(), |h, &b| h.wrapping_mul(31).wrapping_add(b as usize)) % sealed.len();
    sealed[at] ^= 1 << (data.first().copied().unwrap_or(0) % 8);
    let tampered = key.open(&name, ENVELOPE_VERSION, &sealed);
    assert_eq!(tampered.map(|_| ()).unwrap_err().kind(), ErrorKind::Corrupt, "byte {at} flipped and still opened");
    outcome
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
