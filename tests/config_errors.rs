//! Configuration errors never quote a value: a canary is written into
//! every credential field of every block, in every wrong shape (a string
//! where a block belongs, a block or a list where a string belongs, a
//! number, a boolean, a `${...}` reference around it, a `file:` path), and
//! neither `secretd config check` nor `secretd serve` may print it, while
//! both must still name the file, the field and what was expected.
//!
//! The list of credential fields is checked against the configuration
//! types themselves (`credential_fields_match_the_config_types`), so a new
//! credential field cannot be left out of this test.

mod common;

use std::{
    collections::BTreeSet,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_norway::{Mapping, Value};

/// Alphanumeric, so it is also a valid environment variable name.
const CANARY: &str = "Zq7CanaryXw93kLt";
const CANARY_NUMBER: u64 = 73519468203;
const CANARY_FLOAT: f64 = 7351.9468203;
/// Holds [`CANARY`] in every run.
const CANARY_VAR: &str = "SECRETD_CANARY_VALUE";
const LONG_SECRET: &str = "0123456789abcdef0123456789abcdef-config-errors";

/// A credential field: where it sits, and a configuration in which it is
/// the only thing that can be wrong.
struct Field {
    /// `Struct.field` in `src/config/`, for the completeness check.
    source: &'static str,
    /// The YAML keys that lead to it.
    path: &'static [&'static str],
    /// How many of those keys lead to the block that holds it.
    block: usize,
    /// The rest of a valid configuration, with `{dir}` for a directory.
    base: &'static str,
    /// Not read through `Credential`, so `file:` is no reference there.
    plain_string: bool,
}

const JDBC: &str =
    "secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://{dir}/secrets.db\n    secret: ${SECRETD_TEST_LONG_SECRET}\n";
const VAULT_TOKEN: &str = "secret:\n  type: vault\n  vault:\n    address: http://127.0.0.1:1\n    token: {token: t}\n";
const VAULT_USERPASS: &str =
    "secret:\n  type: vault\n  vault:\n    address: http://127.0.0.1:1\n    userpass: {username: u, password: p}\n";
const VAULT_APPROLE: &str =
    "secret:\n  type: vault\n  vault:\n    address: http://127.0.0.1:1\n    approle: {role-id: r, secret-id: s}\n";
const AWS: &str = "secret:\n  type: aws-secret-manager\n  aws-secret-manager:\n    region: us-east-1\n    endpoint: http://127.0.0.1:1\n    access-key-id: a\n    secret-key-id: b\n    session-token: c\n";
const ES_BASIC: &str = "secret:\n  type: elasticsearch\n  elasticsearch:\n    hosts: [http://127.0.0.1:1]\n    secret: ${SECRETD_TEST_LONG_SECRET}\n    basic-auth: {username: u, password: p}\n";
const ES_KEY: &str = "secret:\n  type: elasticsearch\n  elasticsearch:\n    hosts: [http://127.0.0.1:1]\n    secret: ${SECRETD_TEST_LONG_SECRET}\n    api-key: k\n";
const GCP: &str = "secret:\n  type: google-secret-manager\n  google-secret-manager:\n    project: p\n    endpoint: http://127.0.0.1:1\n    service-account: k\n";
const AZURE: &str = "secret:\n  type: azure-key-vault\n  azure-key-vault:\n    vault-url: https://x.vault.azure.net/\n    client-secret: {tenant-id: t, client-id: c, client-secret: s}\n";
const STATE: &str = "secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://{dir}/secrets.db\n    secret: ${SECRETD_TEST_LONG_SECRET}\nstate:\n  url: sqlite://{dir}/state.db\n";
const BASIC_AUTH: &str = "server:\n  basic-auth: {username: operator, password: a-long-operator-password}\nsecret:\n  type: jdbc\n  jdbc:\n    url: sqlite://{dir}/secrets.db\n    secret: ${SECRETD_TEST_LONG_SECRET}\n";
const KEYSTORE: &str = "server:\n  tls: {keystore: '{dir}/server.p12', keystore-password: changeit}\nsecret:\n  type: jdbc\n  jdbc:\n    url: sqlite://{dir}/secrets.db\n    secret: ${SECRETD_TEST_LONG_SECRET}\n";

const FIELDS: &[Field] = &[
    Field { source: "JdbcConfig.url", path: &["secret", "jdbc", "url"], block: 2, base: JDBC, plain_string: true },
    Field {
        source: "JdbcConfig.secret",
        path: &["secret", "jdbc", "secret"],
        block: 2,
        base: JDBC,
        plain_string: false,
    },
    Field {
        source: "JdbcConfig.previous_secrets",
        path: &["secret", "jdbc", "previous-secrets", "[0]"],
        block: 2,
        base: JDBC,
        plain_string: false,
    },
    Field { source: "StateConfig.url", path: &["state", "url"], block: 1, base: STATE, plain_string: true },
    Field {
        source: "VaultTokenAuth.token",
        path: &["secret", "vault", "token", "token"],
        block: 3,
        base: VAULT_TOKEN,
        plain_string: false,
    },
    Field {
        source: "VaultUserpassAuth.password",
        path: &["secret", "vault", "userpass", "password"],
        block: 3,
        base: VAULT_USERPASS,
        plain_string: false,
    },
    Field {
        source: "VaultAppRoleAuth.role_id",
        path: &["secret", "vault", "approle", "role-id"],
        block: 3,
        base: VAULT_APPROLE,
        plain_string: false,
    },
    Field {
        source: "VaultAppRoleAuth.secret_id",
        path: &["secret", "vault", "approle", "secret-id"],
        block: 3,
        base: VAULT_APPROLE,
        plain_string: false,
    },
    Field {
        source: "AwsConfig.access_key_id",
        path: &["secret", "aws-secret-manager", "access-key-id"],
        block: 2,
        base: AWS,
        plain_string: false,
    },
    Field {
        source: "AwsConfig.secret_key_id",
        path: &["secret", "aws-secret-manager", "secret-key-id"],
        block: 2,
        base: AWS,
        plain_string: false,
    },
    Field {
        source: "AwsConfig.session_token",
        path: &["secret", "aws-secret-manager", "session-token"],
        block: 2,
        base: AWS,
        plain_string: false,
    },
    Field {
        source: "ElasticsearchConfig.secret",
        path: &["secret", "elasticsearch", "secret"],
        block: 2,
        base: ES_KEY,
        plain_string: false,
    },
    Field {
        source: "ElasticsearchConfig.previous_secrets",
        path: &["secret", "elasticsearch", "previous-secrets", "[0]"],
        block: 2,
        base: ES_KEY,
        plain_string: false,
    },
    Field {
        source: "ElasticsearchConfig.api_key",
        path: &["secret", "elasticsearch", "api-key"],
        block: 2,
        base: ES_KEY,
        plain_string: false,
    },
    Field {
        source: "ElasticsearchBasicAuth.password",
        path: &["secret", "elasticsearch", "basic-auth", "password"],
        block: 3,
        base: ES_BASIC,
        plain_string: false,
    },
    Field {
        source: "GcpConfig.service_account",
        path: &["secret", "google-secret-manager", "service-account"],
        block: 2,
        base: GCP,
        plain_string: false,
    },
    Field {
        source: "AzureClientSecret.client_secret",
        path: &["secret", "azure-key-vault", "client-secret", "client-secret"],
        block: 3,
        base: AZURE,
        plain_string: false,
    },
    Field {
        source: "BasicAuthConfig.password",
        path: &["server", "basic-auth", "password"],
        block: 2,
        base: BASIC_AUTH,
        plain_string: false,
    },
    Field {
        source: "TlsConfig.keystore_password",
        path: &["server", "tls", "keystore-password"],
        block: 2,
        base: KEYSTORE,
        plain_string: false,
    },
];

/// Where a wrong value goes, and what the message must then say.
enum At {
    /// Replaces the block that holds the credential.
    Block,
    /// Replaces the credential itself.
    Field,
}

fn wrong_shapes(field: &Field) -> Vec<(&'static str, At, Value, &'static str)> {
    let s = |text: String| Value::String(text);
    let mut map = Mapping::new();
    map.insert(s("value".into()), s(CANARY.into()));
    let mut keyed = Mapping::new();
    keyed.insert(s(CANARY.into()), s("x".into()));
    let mut shapes = vec![
        ("string where a block belongs", At::Block, s(CANARY.into()), "expected a block of settings"),
        ("reference where a block belongs", At::Block, s(format!("${{{CANARY_VAR}}}")), "expected a block of settings"),
        ("block where a string belongs", At::Field, Value::Mapping(map), "found a block of keys, expected a string"),
        ("block keyed by the value", At::Field, Value::Mapping(keyed), "found a block of keys, expected a string"),
        ("list", At::Field, Value::Sequence(vec![s(CANARY.into())]), "found a list, expected a string"),
        ("number", At::Field, Value::Number(CANARY_NUMBER.into()), "found a number, expected a string"),
        ("float", At::Field, Value::Number(CANARY_FLOAT.into()), "found a number, expected a string"),
        ("boolean", At::Field, Value::Bool(true), "found true or false, expected a string"),
        ("unclosed reference", At::Field, s(format!("${{{CANARY_VAR}}}${{")), "malformed reference"),
        ("bad reference", At::Field, s(format!("${{{CANARY_VAR}}} ${{not a name}}")), "malformed reference"),
        (
            "value as a variable name",
            At::Field,
            s(format!("${{{CANARY}}}")),
            "names an environment variable that is not set",
        ),
    ];
    if !field.plain_string {
        shapes.push(("file: path", At::Field, s(format!("file:/nonexistent/{CANARY}")), "does not exist"));
    }
    shapes
}

/// Sets `path` in `root`; a last step `[0]` makes its parent a list of
/// that one item (list fields of credentials, like `previous-secrets`).
fn set(root: &mut Value, path: &[&str], value: Value) {
    let (last, parents) = path.split_last().unwrap();
    if *last == "[0]" {
        return set(root, parents, Value::Sequence(vec![value]));
    }
    let mut node = root;
    for key in parents {
        node = node
            .as_mapping_mut()
            .unwrap()
            .entry(Value::String((*key).into()))
            .or_insert(Value::Mapping(Mapping::new()));
    }
    node.as_mapping_mut().unwrap().insert(Value::String((*last).into()), value);
}

fn write_config(dir: &Path, name: &str, base: &str, path: &[&str], value: Value) -> PathBuf {
    let mut root: Value = serde_norway::from_str(&base.replace("{dir}", &dir.display().to_string())).unwrap();
    set(&mut root, path, value);
    let file = dir.join(name);
    std::fs::write(&file, serde_norway::to_string(&root).unwrap()).unwrap();
    file
}

/// Runs `secretd ARGS`, killing it if it is still up after 30 s (a wrong
/// shape that was accepted starts the daemon: that is a failure too).
fn run(args: &[&str], dir: &Path) -> (bool, String) {
    let mut child = Command::new(common::bin())
        .args(args)
        .current_dir(dir)
        .env(CANARY_VAR, CANARY)
        .env("SECRETD_TEST_LONG_SECRET", LONG_SECRET)
        .env("SECRETD_LOG", "debug")
        .env("SECRETD_ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("SECRETD_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn secretd");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut output = String::new();
    child.stdout.take().unwrap().read_to_string(&mut output).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut output).unwrap();
    (status.is_some_and(|s| s.success()), output)
}

fn assert_quotes_nothing(output: &str, what: &str) {
    for canary in [CANARY.to_owned(), CANARY_NUMBER.to_string(), "9468203".to_owned()] {
        assert!(!output.contains(&canary), "{what}: the output holds the canary {canary}:\n{output}");
    }
}

#[test]
fn no_config_error_quotes_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = 0;
    for field in FIELDS {
        for (i, (shape, at, value, says)) in wrong_shapes(field).into_iter().enumerate() {
            let (path, expected_field) = match at {
                At::Block => (&field.path[..field.block], field.path[..field.block].join(".")),
                // List items are named `previous-secrets[0]`.
                At::Field => (field.path, field.path.join(".").replace(".[", "[")),
            };
            let file = write_config(dir.path(), &format!("case-{cases}-{i}.yaml"), field.base, path, value);
            let file_arg = file.to_str().unwrap();
            let named = format!("{file_arg}: {expected_field}: ");
            for args in
                [vec!["config", "check", file_arg], vec!["serve", "--config", file_arg, "--listen", "127.0.0.1:0"]]
            {
                let what = format!("{} ({}) as {shape}, `secretd {}`", field.source, field.path.join("."), args[0]);
                let (ok, output) = run(&args, dir.path());
                assert!(!ok, "{what}: accepted\n{output}");
                assert_quotes_nothing(&output, &what);
                assert!(output.contains(&named), "{what}: the message does not name {named:?}:\n{output}");
                assert!(output.contains(says), "{what}: the message does not say {says:?}:\n{output}");
            }
            cases += 1;
        }
    }
    assert!(cases >= FIELDS.len() * 11, "only {cases} cases ran");
}

/// Every field of a credential type (`Credential`, `SecretString`) in
/// `src/config/` and the backend blocks of `src/backends/` is in
/// [`FIELDS`], and every entry of it exists.
#[test]
fn credential_fields_match_the_config_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Backend blocks are declared inside `backend_block! { ... }`, so
    // indented.
    let struct_line = regex::Regex::new(r"^\s*pub struct (\w+) \{").unwrap();
    let field_line = regex::Regex::new(r"^\s+pub (\w+): (.+),$").unwrap();
    let mut found = BTreeSet::new();
    for dir in ["src/config", "src/backends"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let mut current = None;
            for line in text.lines() {
                if let Some(c) = struct_line.captures(line) {
                    current = Some(c[1].to_owned());
                } else if line.trim() == "}" {
                    current = None;
                } else if let (Some(name), Some(c)) = (&current, field_line.captures(line)) {
                    if c[2].contains("Credential") || c[2].contains("SecretString") {
                        found.insert(format!("{name}.{}", &c[1]));
                    }
                }
            }
        }
    }
    let listed: BTreeSet<String> = FIELDS.iter().map(|f| f.source.to_owned()).collect();
    assert!(found.len() >= 17, "the scan found too little: {found:?}");
    assert_eq!(found, listed, "credential fields in src/config, src/backends and in this test differ");
}

/// Item 18a: an Elasticsearch host may carry `user:password@` (the backend
/// makes it basic auth), so no message may echo a host.
#[test]
fn elasticsearch_hosts_with_inline_credentials_are_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let s = |text: String| Value::String(text);
    let mut block = Mapping::new();
    block.insert(s("user".into()), s(CANARY.into()));
    let path: &[&str] = &["secret", "elasticsearch", "hosts"];
    let cases = [
        (
            s(format!("https://elastic:{CANARY}@es:9200")),
            "secret.elasticsearch.hosts",
            "found a string, expected a list",
        ),
        (Value::Sequence(vec![Value::Mapping(block)]), "secret.elasticsearch.hosts[0]", "found a block of keys"),
        (
            Value::Sequence(vec![s("http://es-1:9200".into()), s(format!("elastic:{CANARY}@es-2:9200"))]),
            "secret.elasticsearch.hosts[1]",
            "must start with http:// or https://",
        ),
        (
            Value::Sequence(vec![s(format!("${{{CANARY_VAR}}}"))]),
            "secret.elasticsearch.hosts[0]",
            "must start with http:// or https://",
        ),
        (
            Value::Sequence(vec![s(format!("https://elastic:${{{CANARY_VAR}}}${{@es"))]),
            "secret.elasticsearch.hosts[0]",
            "malformed reference",
        ),
    ];
    for (i, (value, field, says)) in cases.into_iter().enumerate() {
        let file = write_config(dir.path(), &format!("es-{i}.yaml"), ES_KEY, path, value);
        let file_arg = file.to_str().unwrap();
        for args in [vec!["config", "check", file_arg], vec!["serve", "--config", file_arg, "--listen", "127.0.0.1:0"]]
        {
            let what = format!("case {i}, `secretd {}`", args[0]);
            let (ok, output) = run(&args, dir.path());
            assert!(!ok, "{what}: accepted\n{output}");
            assert_quotes_nothing(&output, &what);
            assert!(output.contains(&format!("{file_arg}: {field}: {says}")), "{what}:\n{output}");
        }
    }

    // A well-formed host with an inline password: `config check` flags it
    // as a plain-text credential by its index, and `serve`, which cannot
    // reach the node, does not print it either.
    let hosts = Value::Sequence(vec![s(format!("http://elastic:{CANARY}@127.0.0.1:1"))]);
    let file = write_config(dir.path(), "es-inline.yaml", ES_KEY, path, hosts);
    let file_arg = file.to_str().unwrap();
    let (ok, output) = run(&["config", "check", file_arg], dir.path());
    assert!(ok, "{output}");
    assert_quotes_nothing(&output, "config check");
    assert!(output.contains("secret.elasticsearch.hosts[0] holds a credential in plain text"), "{output}");
    let (ok, output) = run(&["serve", "--config", file_arg, "--listen", "127.0.0.1:0"], dir.path());
    assert!(!ok, "{output}");
    assert_quotes_nothing(&output, "serve");
}
