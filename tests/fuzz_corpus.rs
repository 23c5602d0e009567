//! Replays every committed fuzz corpus file through the same checks the
//! cargo-fuzz targets run (`fuzz/src/lib.rs`, compiled here as a module), so
//! CI guards against every input the fuzzer ever kept without nightly or
//! libFuzzer. See docs/fuzzing.md.
//!
//! The seed files are written by `seeds_are_in_the_corpora`, which
//! otherwise checks that they are all committed:
//!
//!     SECRETD_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_corpus seeds

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::{
    collections::BTreeMap,
    fs,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
};

use checks::Outcome;
use secretd_core::SecretValue;

/// Fewer files than this in a corpus means it was lost or emptied.
const MIN_FILES: usize = 20;
/// The committed corpora stay small (minimised with `cargo fuzz cmin`);
/// room for one seed per example config beside the minimised finds.
const MAX_FILES: usize = 320;
const MAX_BYTES: u64 = 1024 * 1024;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` on every file of its corpus; returns how many were
/// accepted and rejected, and the files whose check panicked.
fn replay(target: &str) -> (BTreeMap<&'static str, usize>, Vec<String>) {
    let mut counts = BTreeMap::new();
    let mut failures = Vec::new();
    for file in corpus_files(target) {
        let data = fs::read(&file).unwrap();
        match panic::catch_unwind(AssertUnwindSafe(|| checks::run(target, &data))) {
            Ok(Outcome::Accepted) => *counts.entry("accepted").or_insert(0) += 1,
            Ok(Outcome::Rejected) => *counts.entry("rejected").or_insert(0) += 1,
            Err(_) => failures.push(file.display().to_string()),
        }
    }
    (counts, failures)
}

fn check_target(target: &str) {
    let files = corpus_files(target);
    let bytes: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    assert!(files.len() >= MIN_FILES, "{target}: only {} corpus files", files.len());
    assert!(files.len() <= MAX_FILES && bytes <= MAX_BYTES, "{target}: corpus too large, run `cargo fuzz cmin`");
    let (counts, failures) = replay(target);
    assert!(failures.is_empty(), "{target}: the check failed on {failures:#?} (the panic is printed above)");
    // A corpus that never gets past the first error, or never hits one,
    // tests only half of the code.
    assert!(counts.get("accepted").copied().unwrap_or(0) >= 1, "{target}: no corpus file is accepted: {counts:?}");
    assert!(counts.get("rejected").copied().unwrap_or(0) >= 1, "{target}: no corpus file is rejected: {counts:?}");
    eprintln!("{target}: {} files replayed: {counts:?}", files.len());
}

#[test]
fn names_corpus() {
    check_target("names");
}

#[test]
fn config_corpus() {
    check_target("config");
}

#[test]
fn envelope_corpus() {
    check_target("envelope");
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for target in checks::TARGETS {
        assert!(root.join("fuzz_targets").join(format!("{target}.rs")).is_file(), "{target}: no fuzz target");
        assert!(corpus_dir(target).is_dir(), "{target}: no corpus");
    }
}

/// The checks themselves catch what they should: a hand-made broken
/// envelope is rejected, the example configuration loads, a bad name is
/// refused. (If these failed, a green corpus replay would mean nothing.)
#[test]
fn checks_see_known_inputs() {
    assert_eq!(checks::names(b"main\0company.team\0db/password\0application=prod"), Outcome::Accepted);
    assert_eq!(checks::names(b"main\0company\0../etc/passwd"), Outcome::Rejected);
    let example = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/secretd.yaml")).unwrap();
    assert_eq!(checks::config(&example), Outcome::Accepted);
    assert_eq!(checks::config(b"secret: [unclosed\n"), Outcome::Rejected);
    // Credentials of the environment where they do not fit: the check
    // refuses an error that quotes them.
    for text in [
        "secret:\n  type: vault\n  vault:\n    address: http://v:8200\n    token: ${VAULT_TOKEN}\n",
        "secret:\n  type: vault\n  vault:\n    address: ${SECRETD_JDBC_URL}\n    token: {token: t}\n",
        "secret:\n  type: memory\n  isolation:\n    denied-services: [\"${SECRETD_ADMIN_PASSWORD}\"]\n",
        "secret:\n  type: elasticsearch\n  elasticsearch:\n    hosts: [\"${AZURE_CLIENT_SECRET}@es\"]\n    secret: ${SECRETD_ES_SECRET}\n",
        "secret:\n  type: memory\n  memory:\n    max-attempts: ${AWS_SECRET_ACCESS_KEY}\n",
    ] {
        assert_eq!(checks::config(text.as_bytes()), Outcome::Rejected, "{text}");
    }
    let sealed = sealed_seed(b"value");
    assert_eq!(checks::envelope(&sealed), Outcome::Accepted);
    assert_eq!(checks::envelope(&sealed[..sealed.len() - 1]), Outcome::Rejected);
}

fn sealed_seed(value: &[u8]) -> Vec<u8> {
    checks::envelope_key()
        .seal(&checks::envelope_name(), checks::ENVELOPE_VERSION, &SecretValue::from_slice(value))
        .unwrap()
}

/// The hand-made seeds, `fuzz/corpus/*/seed-*`: checks that every one is
/// in its committed corpus (by name: the configuration seeds follow
/// `config/*.yaml` as they change, and envelopes get fresh nonces), or with
/// `SECRETD_WRITE_FUZZ_SEEDS=1` writes them (then fuzz and minimise,
/// docs/fuzzing.md).
#[test]
fn seeds_are_in_the_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let writing = std::env::var("SECRETD_WRITE_FUZZ_SEEDS").as_deref() == Ok("1");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus_dir(target);
        let path = dir.join(format!("seed-{name}"));
        if writing {
            fs::create_dir_all(&dir).unwrap();
            fs::write(&path, data).unwrap();
        } else {
            assert!(path.is_file(), "{} is missing from the corpus", path.display());
        }
    };

    // names: tenant NUL namespace NUL key [NUL tag=value]...
    let long_ns = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(63)].join(".");
    let names: Vec<(&str, String)> = vec![
        ("valid-basic", "main\0company.team\0db/password".into()),
        ("valid-default-tenant", "\0company\0DB_PASSWORD".into()),
        ("valid-all-chars", "acme-1_x\0Company.team_1.etl-x\0a.b-c/d_e".into()),
        ("valid-digits", "0\09\0_x".into()),
        ("valid-dots-in-part", "main\0company\0a..b/c.d".into()),
        ("valid-max-lengths", format!("{}\0{long_ns}\0{}", "t".repeat(63), "k".repeat(255))),
        ("valid-tags", "main\0company.etl\0k\0application=prod\0env=\0owner=équipe".into()),
        ("tenant-upper", "Main\0company\0k".into()),
        ("tenant-dash-first", "-a\0company\0k".into()),
        ("tenant-dot", "a.b\0company\0k".into()),
        ("tenant-unicode", "é\0company\0k".into()),
        ("tenant-too-long", format!("{}\0company\0k", "a".repeat(64))),
        ("ns-empty", "main\0\0k".into()),
        ("ns-leading-dot", "main\0.a\0k".into()),
        ("ns-trailing-dot", "main\0a.\0k".into()),
        ("ns-double-dot", "main\0a..b\0k".into()),
        ("ns-dotdot", "main\0..\0k".into()),
        ("ns-slash", "main\0a/b\0k".into()),
        ("ns-underscore-first", "main\0_a\0k".into()),
        ("ns-segment-too-long", format!("main\0{}\0k", "a".repeat(64))),
        ("ns-too-long", format!("main\0{long_ns}.e\0k")),
        ("ns-dotted-i", "main\0company.\u{130}\0k".into()),
        ("ns-wildcard", "main\0company.*\0*".into()),
        ("key-empty", "main\0company\0".into()),
        ("key-leading-slash", "main\0company\0/a".into()),
        ("key-trailing-slash", "main\0company\0a/".into()),
        ("key-double-slash", "main\0company\0a//b".into()),
        ("key-traversal", "main\0company\0a/../b".into()),
        ("key-dot-part", "main\0company\0a/./b".into()),
        ("key-dotdot", "main\0company\0..".into()),
        ("key-etc-passwd", "main\0company\0../../etc/passwd".into()),
        ("key-percent-dotdot", "main\0company\0a/%2e%2e/b".into()),
        ("key-dot-first", "main\0company\0.a".into()),
        ("key-dash-first", "main\0company\0-a".into()),
        ("key-space", "main\0company\0a b".into()),
        ("key-newline", "main\0company\0a\nb".into()),
        ("key-crlf", "main\0company\0k\r\nX-Injected: 1".into()),
        ("key-del", "main\0company\0k\x7f".into()),
        ("key-star", "main\0company\0a*".into()),
        ("key-cyrillic", "main\0company\0ключ".into()),
        ("key-fullwidth", "main\0company\0ｋｅｙ".into()),
        ("key-rtl-override", "main\0company\0k\u{202e}txt.exe".into()),
        ("key-zero-width", "main\0company\0a\u{200d}b".into()),
        ("key-bom", "main\0company\0\u{feff}k".into()),
        ("key-too-long", format!("main\0company\0{}", "k".repeat(256))),
        ("key-huge", format!("main\0company\0{}", "x ".repeat(2000))),
        ("key-huge-unicode", format!("main\0company\0{}", "\u{10ffff}".repeat(200))),
        ("all-wildcards", "*\0*\0*".into()),
        ("only-separators", "\0\0\0\0".into()),
        ("tag-empty-key", "main\0company\0k\0=v".into()),
        ("tag-control-value", "main\0company\0k\0k=a\nb".into()),
        ("tag-key-too-long", format!("main\0company\0k\0{}=v", "k".repeat(129))),
        ("tag-value-too-long", format!("main\0company\0k\0k={}", "é".repeat(257))),
        (
            "tag-too-many",
            format!("main\0company\0k\0{}", (0..51).map(|i| format!("t{i}=v")).collect::<Vec<_>>().join("\0")),
        ),
    ];
    for (name, data) in &names {
        write("names", name, data.as_bytes());
    }
    write("names", "invalid-utf8", b"main\0company\0k\xff\xfe\xc3");

    // config: the example configurations, and hand-made variants.
    for dir in
        ["config", "deploy/systemd", "deploy/kubernetes/overlays/standalone", "deploy/kubernetes/overlays/sidecar"]
    {
        for entry in fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = fs::read_to_string(&path).unwrap();
            if path.extension().is_some_and(|e| e == "yaml") && text.contains("\nsecret:") {
                let name = format!("{}-{}", dir.replace('/', "-"), path.file_stem().unwrap().to_string_lossy());
                write("config", &name, text.as_bytes());
            }
        }
    }
    let jdbc = "secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n    secret: ${SECRETD_JDBC_SECRET}\n";
    let configs: Vec<(&str, String)> = vec![
        ("memory", "secret:\n  type: memory\n".into()),
        ("memory-tags", "secret:\n  type: memory\n  memory:\n    tags: {application: dev}\n".into()),
        ("jdbc", jdbc.into()),
        ("unknown-field", format!("{jdbc}    pasword: x\n")),
        ("missing-env", jdbc.replace("SECRETD_JDBC_SECRET", "UNSET_VAR")),
        ("env-default", jdbc.replace("${SECRETD_JDBC_SECRET}", "${UNSET_VAR:-0123456789abcdef0123456789abcdef}")),
        ("env-escaped", jdbc.replace("${SECRETD_JDBC_SECRET}", "$${LITERAL}-0123456789abcdef0123456789abcdef")),
        ("env-unclosed", jdbc.replace("${SECRETD_JDBC_SECRET}", "${OPEN")),
        ("env-bad-name", jdbc.replace("${SECRETD_JDBC_SECRET}", "${a-b}")),
        ("env-digit-name", jdbc.replace("${SECRETD_JDBC_SECRET}", "\"${1X}\"")),
        ("short-secret", jdbc.replace("${SECRETD_JDBC_SECRET}", "tooshort-value")),
        ("no-secret", "secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n".into()),
        ("bad-url", jdbc.replace("sqlite://x.db", "ftp://x")),
        ("file-credential-missing", jdbc.replace("${SECRETD_JDBC_SECRET}", "file:/nonexistent/secretd-fuzz")),
        ("file-credential-empty", jdbc.replace("${SECRETD_JDBC_SECRET}", "\"file:\"")),
        ("all-problems", "secret:\n  type: jdbc\n  max-batch-size: 0\n  max-value-size: 0\n  cache:\n    maximum-size: 0\n    expire-after-write: 0s\n".into()),
        ("bad-duration", "secret:\n  type: memory\n  cache:\n    expire-after-write: soon\n".into()),
        ("bad-type", "secret:\n  type: nosuch\n".into()),
        ("type-from-env", "secret:\n  type: ${ENV}\n".into()),
        ("unclosed", "secret: [unclosed\n".into()),
        ("lowercase-service", "secret:\n  type: memory\n  isolation:\n    denied-services: [executor]\n".into()),
        ("empty", String::new()),
        ("null", "~\n".into()),
        ("sequence", "- secret\n".into()),
        ("scalar", "42\n".into()),
        ("tab-indent", "secret:\n\ttype: memory\n".into()),
        ("anchors", "x: &a {type: memory}\nsecret: *a\n".into()),
        ("alias-unknown", "secret: *nope\n".into()),
        ("merge-key", "base: &b {type: memory}\nsecret:\n  <<: *b\n".into()),
        ("yaml-tag", "secret: !custom {type: memory}\n".into()),
        ("binary-tag", "secret:\n  type: memory\n  max-value-size: !!binary AAAA\n".into()),
        ("non-string-key", "secret:\n  type: memory\n  ? [a, b]\n  : c\n".into()),
        ("int-key", "secret:\n  type: memory\n  1: x\n".into()),
        ("deep-nesting", format!("secret: {}{}\n", "[".repeat(200), "]".repeat(200))),
        ("huge-number", "secret:\n  type: memory\n  max-value-size: 99999999999999999999999\n".into()),
        ("negative-number", "secret:\n  type: memory\n  max-batch-size: -1\n".into()),
        ("float-size", "secret:\n  type: memory\n  max-value-size: 1.5e3\n".into()),
        ("duplicate-key", "secret:\n  type: memory\n  type: jdbc\n".into()),
        ("unix-socket", "server:\n  listen: unix:///tmp/secretd-fuzz.sock\n  socket:\n    mode: \"0999\"\nsecret:\n  type: memory\n".into()),
        ("listen-garbage", "server:\n  listen: \"[::1\"\nsecret:\n  type: memory\n".into()),
        ("listen-ipv6", "server:\n  listen: \"[::1]:7878\"\n  admin:\n    listen: \"[::1]:7879\"\nsecret:\n  type: memory\n".into()),
        ("bad-regexp", "security:\n  basic-auth:\n    password-regexp: \"(\"\nsecret:\n  type: memory\n".into()),
        ("big-regexp", "security:\n  basic-auth:\n    password-regexp: \"a{1000}{1000}\"\nsecret:\n  type: memory\n".into()),
        ("access-rules", "secret:\n  type: memory\naccess:\n  default-access: deny\n  rules:\n    - services: [WORKER]\n      allow: [\"main/company.*/*\", \"**/../*\", \"\"]\n      deny: [\"*\"]\n".into()),
        ("token-hash-bad", "secret:\n  type: memory\nauth:\n  service-accounts:\n    - name: ops\n      service: ADMIN\n      permissions: [admin]\n      token-sha256: xyz\n".into()),
        ("crlf", "secret:\r\n  type: memory\r\n".into()),
        ("bom", "\u{feff}secret:\n  type: memory\n".into()),
        ("multi-document", "secret:\n  type: memory\n---\nsecret:\n  type: jdbc\n".into()),
    ];
    for (name, text) in &configs {
        write("config", name, text.as_bytes());
    }
    write("config", "invalid-utf8", b"secret:\n  type: mem\xffory\n");

    // envelope: sealed under the target's key, name and version; then
    // truncated, bit-flipped, under another key, name or version, garbage.
    let values: [&[u8]; 5] = [b"", b"v", b"hunter2-plaintext-password", &[0u8; 64], &[0xa5; 1000]];
    for (i, value) in values.iter().enumerate() {
        let sealed = sealed_seed(value);
        write("envelope", &format!("valid-{i}"), &sealed);
        write("envelope", &format!("truncated-{i}"), &sealed[..sealed.len() - 1]);
        write("envelope", &format!("header-only-{i}"), &sealed[..21]);
        for (where_, at) in [("format", 0), ("key-id", 3), ("nonce", 12), ("ciphertext", 21), ("tag", sealed.len() - 1)]
        {
            let mut flipped = sealed.clone();
            flipped[at] ^= 0x01;
            write("envelope", &format!("flipped-{where_}-{i}"), &flipped);
        }
    }
    let name = checks::envelope_name();
    let value = SecretValue::from_slice(b"value");
    let other_key = secretd_core::Envelope::from_secret("another-secret-of-32-characters!!").unwrap();
    write("envelope", "other-key", &other_key.seal(&name, checks::ENVELOPE_VERSION, &value).unwrap());
    write("envelope", "other-version", &checks::envelope_key().seal(&name, "2", &value).unwrap());
    let other_name = secretd_core::SecretName::parse("main", "fuzz.other", "sealed").unwrap();
    write(
        "envelope",
        "other-name",
        &checks::envelope_key().seal(&other_name, checks::ENVELOPE_VERSION, &value).unwrap(),
    );
    write("envelope", "empty", b"");
    write("envelope", "one-byte", b"\x01");
    write("envelope", "format-2", &[2u8; 64]);
    write("envelope", "minimum-length-zeros", &[0u8; 37]);
    write("envelope", "ones", &[1u8; 10]);
    write("envelope", "base64-text", b"AXN0b3JlZCBpbiBiYXNlNjQsIG5vdCByYXcgYnl0ZXMgb2YgdGhlIGVudmVsb3Bl");
}
