//! Reading a configuration file: YAML, `${VAR}` references, unknown keys.
//!
//! Every error names the file and the dotted path of the field, and never
//! quotes a value of the file or of the environment: the typed
//! configuration is read through [`super::de`], whose errors are built
//! from kinds and expectations only, and validation reasons are fixed
//! sentences ([`Invalid`]). YAML syntax errors keep libyaml's description
//! and position only when it cannot hold input (see [`syntax_message`]).

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde_norway::Value;

use super::{Config, Invalid};

/// Why a configuration could not be used. `Display` is the operator-facing
/// message: `FILE: FIELD: what is wrong`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the configuration file: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not valid YAML: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{file}: {field}: {message}")]
    Field { file: PathBuf, field: String, message: String },
    #[error("{file}: {}", Problems(.problems))]
    Invalid { file: PathBuf, problems: Vec<Invalid> },
}

struct Problems<'a>(&'a [Invalid]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", p.field, p.reason)?;
        }
        Ok(())
    }
}

/// Reads, parses and validates a configuration file. A platform file
/// (`kestra:` at its root) is read through [`super::platform`]; the keys
/// secretd has no use for are logged once, by name.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = read_text(path)?;
    let (config, ignored) = load_any(&text, path, &|var| std::env::var(var).ok())?;
    if !ignored.is_empty() {
        tracing::warn!(
            file = %path.display(),
            keys = %ignored.join(", "),
            "the platform's keys secretd has no use for are ignored"
        );
    }
    Ok(config)
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    // A configuration is a few KiB; the bound turns `--config /dev/zero`
    // into an error instead of an out-of-memory abort.
    super::credential::read_bounded(path, 16 * 1024 * 1024)
        .map_err(|source| ConfigError::Read { file: path.into(), source })
}

/// Parses and validates configuration text; `file` is only used in errors.
pub fn load_str(text: &str, file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    load_any(text, file, env).map(|(config, _)| config)
}

/// The configuration, and the platform keys it ignored.
fn load_any(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let value = parse(text, file)?;
    let (value, converted) = if super::platform::is_platform(&value) {
        let converted = super::platform::convert(value).map_err(|e| platform_error(file, e))?;
        (converted.native.clone(), Some(converted))
    } else {
        (value, None)
    };
    // Errors name the key as the operator wrote it.
    let written = |native: &str| converted.as_ref().map_or_else(|| native.to_owned(), |c| c.platform_path(native));
    let config: Config = super::de::from_tree(value, env).map_err(|e| ConfigError::Field {
        file: file.into(),
        field: written(e.field()),
        message: e.to_string(),
    })?;
    let mut problems = config.validate();
    for problem in &mut problems {
        problem.field = written(&problem.field);
    }
    if problems.is_empty() {
        Ok((config, converted.map(|c| c.ignored).unwrap_or_default()))
    } else {
        Err(ConfigError::Invalid { file: file.into(), problems })
    }
}

fn parse(text: &str, file: &Path) -> Result<Value, ConfigError> {
    serde_norway::from_str(text).map_err(|e| ConfigError::Syntax { file: file.into(), message: syntax_message(&e) })
}

fn platform_error(file: &Path, e: super::platform::PlatformError) -> ConfigError {
    let field = if e.field.is_empty() { "(top level)".to_owned() } else { e.field };
    ConfigError::Field { file: file.into(), field, message: e.reason.to_owned() }
}

/// A platform file as secretd's native YAML, for `config convert`, with the
/// keys it ignored. References (`${VAR}`, `file:`) stay as written: nothing
/// is read from the environment or from files.
pub fn convert_file(path: &Path) -> Result<(String, Vec<String>), ConfigError> {
    let value = parse(&read_text(path)?, path)?;
    if !super::platform::is_platform(&value) {
        return Err(ConfigError::Field {
            file: path.into(),
            field: "(top level)".into(),
            message: "has no `kestra` key: it is not the platform's file (secretd reads it as it is)".into(),
        });
    }
    let converted = super::platform::convert(value).map_err(|e| platform_error(path, e))?;
    let yaml = serde_norway::to_string(&converted.native).map_err(|_| ConfigError::Field {
        file: path.into(),
        field: "(top level)".into(),
        message: "the converted configuration cannot be written as YAML".into(),
    })?;
    Ok((yaml, converted.ignored))
}

/// A YAML syntax error in words that cannot hold the input. libyaml's
/// problems are fixed phrases ("mapping values are not allowed in this
/// context"); what serde_norway adds may quote a key (`duplicate entry with
/// key "..."`). So the phrase is kept only when it is made of letters and
/// the punctuation libyaml uses, and the position is always given.
fn syntax_message(error: &serde_norway::Error) -> String {
    let position =
        error.location().map(|at| format!(" (line {}, column {})", at.line(), at.column())).unwrap_or_default();
    let text = error.to_string();
    if text.contains("duplicate entry") {
        return format!("a key appears twice in one block{position}");
    }
    // Positions are given separately; what remains must be a fixed phrase.
    let phrase = strip_positions(&text);
    let fixed = phrase.chars().all(|c| c.is_ascii_alphabetic() || " ',:[]{}()-".contains(c));
    if fixed && !phrase.trim().is_empty() {
        format!("{}{position}", phrase.trim())
    } else {
        format!("the file cannot be parsed{position}")
    }
}

/// `... at line 3 column 7, while parsing ... at line 2 column 1` without
/// the positions.
fn strip_positions(text: &str) -> String {
    fn number(s: &str) -> Option<&str> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        (digits > 0).then(|| &s[digits..])
    }
    fn position(s: &str) -> Option<&str> {
        if let Some(rest) = s.strip_prefix("line ") {
            let rest = number(rest)?;
            return Some(rest.strip_prefix(" column ").and_then(number).unwrap_or(rest));
        }
        number(s.strip_prefix("position ")?)
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" at ") {
        out.push_str(&rest[..at]);
        match position(&rest[at + 4..]) {
            Some(tail) => rest = tail,
            None => {
                out.push_str(" at ");
                rest = &rest[at + 4..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Fields that hold credentials, by their last key. A value there should
/// come from the environment or a mounted file, not sit in the file.
const CREDENTIAL_KEYS: &[&str] = &[
    "secret",
    "password",
    "token",
    "role-id",
    "secret-id",
    "secret-key-id",
    "secret-access-key",
    "session-token",
    "access-key-id",
    "api-key",
    "client-secret",
    "keystore-password",
    "service-account",
];

/// Credentials written into the file in plain text, as dotted field paths:
/// a credential field whose raw value is neither a `${VAR}` reference nor a
/// `file:` reference, and URLs (`url`, Elasticsearch `hosts`) with an
/// inline password. For `config check`, which warns about each.
pub fn plaintext_credentials(text: &str) -> Vec<String> {
    let Ok(value) = serde_norway::from_str::<Value>(text) else { return Vec::new() };
    let mut found = Vec::new();
    walk_plaintext(&value, &mut Vec::new(), &mut found);
    found
}

fn walk_plaintext(value: &Value, path: &mut Vec<String>, found: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            let key = path.last().map(String::as_str).unwrap_or_default();
            let by_reference = s.is_empty() || s.starts_with("file:") || (s.starts_with("${") && s.ends_with('}'));
            // An Elasticsearch host may carry `user:password@`.
            let in_hosts = path.len() >= 2 && path[path.len() - 2] == "hosts";
            let inline_password = (key == "url" || in_hosts)
                && s.split_once("://")
                    .and_then(|(_, rest)| rest.split_once('@'))
                    .and_then(|(userinfo, _)| userinfo.split_once(':'))
                    .is_some_and(|(_, password)| !password.is_empty() && !password.starts_with("${"));
            if (CREDENTIAL_KEYS.contains(&key) && !by_reference) || inline_password {
                // `hosts[1]`, as configuration errors write list items.
                found.push(path.join(".").replace(".[", "["));
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map {
                path.push(k.as_str().map(str::to_owned).unwrap_or_default());
                walk_plaintext(v, path, found);
                path.pop();
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                walk_plaintext(v, path, found);
                path.pop();
            }
        }
        Value::Tagged(tagged) => walk_plaintext(&tagged.value, path, found),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::{backends::SharedKeys, config::BackendType};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn env(var: &str) -> Option<String> {
        match var {
            "JDBC_SECRET" => Some(SECRET.into()),
            "WEIRD" => Some("a: b\nc: [d".into()),
            _ => None,
        }
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        load_str(text, Path::new("test.yaml"), &env)
    }

    #[test]
    fn finds_plaintext_credentials() {
        let text = "secret:\n  jdbc:\n    url: postgres://app:hunter2@db/secretd\n    secret: inline-and-long-enough-0123456789abcdef\n\
                    \n  vault:\n    token: {token: \"${VAULT_TOKEN}\"}\n    userpass: {username: u, password: file:/run/p}\n\
                    \n  elasticsearch:\n    hosts: [\"https://es-1:9200\", \"https://elastic:hunter2@es-2:9200\", \"https://e:${P}@es-3\"]\n\
                    server:\n  basic-auth: {username: operator, password: hunter2}\n  tls: {keystore-password: file:/run/ks}\n\
                    state:\n  url: postgres://app:${PW}@db/state\n";
        assert_eq!(
            plaintext_credentials(text),
            vec![
                "secret.jdbc.url",
                "secret.jdbc.secret",
                "secret.elasticsearch.hosts[1]",
                "server.basic-auth.password"
            ]
        );
    }

    #[test]
    fn vault_kubernetes_defaults_and_checks() {
        let config =
            load("secret:\n  type: vault\n  vault:\n    address: http://v:8200\n    kubernetes: {role: secretd}\n")
                .unwrap();
        let kubernetes = config.secret.vault.unwrap().kubernetes.unwrap();
        assert_eq!((kubernetes.role.as_str(), kubernetes.mount.as_str()), ("secretd", "kubernetes"));
        assert_eq!(kubernetes.token_file, Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token"));
        let config = load(
            "secret:\n  type: vault\n  vault:\n    address: http://v:8200\n    \
             kubernetes: {role: r, path: k8s/prod, token-file: /run/sa/token}\n",
        )
        .unwrap();
        let kubernetes = config.secret.vault.unwrap().kubernetes.unwrap();
        assert_eq!(
            (kubernetes.mount.as_str(), kubernetes.token_file.as_path()),
            ("k8s/prod", Path::new("/run/sa/token"))
        );
        let err = load(
            "secret:\n  type: vault\n  vault:\n    address: http://v:8200\n    kubernetes: {role: \" \", mount: /}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("secret.vault.kubernetes.role: must not be empty"), "{err}");
        assert!(err.contains("secret.vault.kubernetes.mount: must not be empty"), "{err}");
        let err = load("secret:\n  type: vault\n  vault:\n    address: http://v:8200\n    kubernetes: {mount: k}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret.vault.kubernetes: missing field `role`"), "{err}");
    }

    #[test]
    fn full_file() {
        let config = load(
            "server:\n  listen: 127.0.0.1:9999\nsecret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n    secret: ${JDBC_SECRET}\n    tags:\n      application: prod\n  cache:\n    maximum-size: 10\n    expire-after-write: 5m\n  isolation:\n    enabled: true\n    denied-services: [EXECUTOR]\n",
        )
        .unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:9999");
        assert_eq!(config.secret.backend, BackendType::Jdbc);
        let jdbc = config.secret.jdbc.as_ref().unwrap();
        assert_eq!(jdbc.secret.as_ref().unwrap().expose_secret(), SECRET);
        assert_eq!(jdbc.scope().tags.get("application"), Some("prod"));
        assert_eq!(config.secret.cache.expire_after_write.as_secs(), 300);
        assert_eq!(config.secret.isolation.denied_services, ["EXECUTOR"]);
    }

    #[test]
    fn env_value_cannot_change_structure() {
        let config =
            load("secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n    secret: \"${JDBC_SECRET}${WEIRD}\"\n")
                .unwrap();
        assert!(config.secret.jdbc.unwrap().secret.unwrap().expose_secret().ends_with("a: b\nc: [d"));
    }

    #[test]
    fn unknown_key_names_key_path_and_file() {
        let err = load(
            "secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n    secret: ${JDBC_SECRET}\n    pasword: x\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("test.yaml: secret.jdbc"), "{err}");
        assert!(err.contains("unknown field `pasword`"), "{err}");
    }

    #[test]
    fn missing_env_names_the_field_not_the_variable() {
        let err = load("secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n    secret: ${MISSING_VAR}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.yaml: secret.jdbc.secret: names an environment variable that is not set"),
            "{err}"
        );
        assert!(!err.contains("MISSING_VAR"), "{err}");
    }

    #[test]
    fn short_or_missing_secret_names_field_without_echoing_it() {
        let err = load("secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n    secret: tooshort-value\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret.jdbc.secret: must be at least 32 characters long"), "{err}");
        assert!(!err.contains("tooshort-value"), "{err}");
        let err = load("secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n").unwrap_err().to_string();
        assert!(err.contains("secret.jdbc.secret: is required"), "{err}");
    }

    #[test]
    fn all_problems_reported_together() {
        let err = load("secret:\n  type: jdbc\n  max-batch-size: 0\n  cache:\n    maximum-size: 0\n")
            .unwrap_err()
            .to_string();
        for field in ["secret.max-batch-size", "secret.cache.maximum-size", "secret.jdbc: is required"] {
            assert!(err.contains(field), "{field} missing in {err}");
        }
    }

    /// A config error never quotes the file or the environment: one test
    /// per place a value could slip in (serde's shapes are covered in
    /// `de.rs`).
    #[test]
    fn errors_quote_no_value() {
        let canary = "Zq7CanaryXw93kLt";
        let env = |var: &str| (var == "CANARY").then(|| canary.to_owned());
        let cases = [
            // The example: a reference where the token block belongs.
            "secret:\n  type: vault\n  vault:\n    address: http://v:8200\n    token: ${CANARY}\n".to_owned(),
            format!("secret:\n  type: vault\n  vault:\n    address: {canary}\n    token: {{token: t}}\n"),
            format!("secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x\n    secret: file:/nonexistent/{canary}\n"),
            format!("secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x\n    secret: {SECRET}\n  isolation:\n    denied-services: [{canary}]\n"),
            format!("server:\n  listen: {canary}\nsecret:\n  type: memory\n"),
            format!("server:\n  socket: {{mode: {canary}}}\n  listen: unix:///run/s.sock\nsecret:\n  type: memory\n"),
            format!("secret:\n  type: memory\n  memory:\n    tags: {{{canary}: \"\\u0007\"}}\n"),
            format!("secret:\n  type: memory\n  memory:\n    tags: {{a: b, a: {canary}}}\n"),
            format!("secret:\n  type: memory\n  memory:\n    tags: {{{canary}: x, {canary}: y}}\n"),
            format!("secret:\n  type: memory\n  cache: {{expire-after-write: 5{canary}}}\n"),
            format!("secret:\n  type: memory\naccess:\n  rules: [{{allow: [{canary}]}}]\n"),
            format!("secret:\n  type: memory\nsecurity:\n  basic-auth: {{password-regexp: \"({canary}\"}}\n"),
            format!("secret:\n  type: elasticsearch\n  elasticsearch:\n    hosts: [\"elastic:{canary}@es:9200\"]\n    secret: {SECRET}\n"),
            format!("secret:\n  type: aws-secret-manager\n  aws-secret-manager:\n    region: r\n    name-prefix: \"{canary}%\"\n    endpoint: {canary}\n"),
            format!("secret:\n  type: azure-key-vault\n  azure-key-vault:\n    vault-url: {canary}\n    verify-challenge-resource: {canary}\n"),
            format!("secret:\n  type: google-secret-manager\n  google-secret-manager:\n    project: p\n    replication: {canary}\n"),
            format!("secret:\n  type: memory\nauth:\n  service-accounts: [{{name: \"{canary} x\", service: {canary}, token-sha256: {canary}}}]\n"),
            format!("secret: {{type: memory}}\n{canary}: [\n"),
        ];
        for text in cases {
            let err = load_str(&text, Path::new("test.yaml"), &env).unwrap_err().to_string();
            assert!(!err.contains(canary), "the error quotes the input: {err}\n--- from:\n{text}");
            assert!(err.starts_with("test.yaml: "), "{err}");
        }
    }

    /// Every credential in its right shape, the Elasticsearch host and the
    /// SQL URL with inline passwords: none shows in the loaded
    /// configuration's `Debug`.
    #[test]
    fn debug_output_shows_no_credential() {
        let canary = "Zq7CanaryXw93kLt";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, format!("{canary}-from-a-file\n")).unwrap();
        let long = format!("{canary}-0123456789abcdef0123456789");
        let text = format!(
            "server:\n  basic-auth: {{username: operator, password: {canary}}}\n  \
             tls: {{keystore: /k.p12, keystore-password: {canary}}}\n\
             secret:\n  type: jdbc\n  jdbc:\n    url: postgres://u:{canary}@db/s\n    secret: {long}\n  \
             vault:\n    address: http://v:8200\n    token: {{token: {canary}}}\n  \
             aws-secret-manager:\n    region: r\n    access-key-id: {canary}\n    secret-key-id: {canary}\n    session-token: {canary}\n  \
             elasticsearch:\n    hosts: [\"https://elastic:{canary}@es:9200\"]\n    secret: {long}\n    \
             basic-auth: {{username: u, password: \"file:{}\"}}\n  \
             google-secret-manager: {{project: p, service-account: {canary}}}\n  \
             azure-key-vault:\n    vault-url: https://v.vault.azure.net/\n    \
             client-secret: {{tenant-id: t, client-id: c, client-secret: {canary}}}\n\
             state:\n  url: postgres://u:{canary}@db/state\n",
            file.display()
        );
        let config = load(&text).unwrap();
        let shown = format!("{config:?}");
        assert!(shown.contains("https://[REDACTED]@es:9200"), "{shown}");
        assert!(!shown.contains(canary), "Debug shows a credential: {shown}");
    }

    #[test]
    fn bad_types_and_syntax() {
        let err = load("secret:\n  type: jdbc\n  cache:\n    expire-after-write: soon\n").unwrap_err().to_string();
        assert!(err.contains("secret.cache.expire-after-write"), "{err}");
        let err = load("secret:\n  type: nosuch\n").unwrap_err().to_string();
        assert!(err.contains("secret.type: is not a known choice, expected one of `jdbc`, `memory`"), "{err}");
        assert!(!err.contains("nosuch"), "{err}");
        let err = load("secret: [unclosed\n").unwrap_err().to_string();
        assert!(err.starts_with("test.yaml: not valid YAML: did not find expected"), "{err}");
        assert!(err.contains("(line 2, column 1)"), "{err}");
        let err =
            load("secret:\n  type: jdbc\n  isolation:\n    denied-services: [executor]\n").unwrap_err().to_string();
        assert!(err.contains("secret.isolation.denied-services"), "{err}");
    }

    #[test]
    fn platform_file_errors_name_the_platform_keys() {
        let err = load("kestra:\n  secret:\n    type: aws-secret-manager\n    aws-secret-manager:\n      region: \"\"\n      prefix: \"a b\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kestra.secret.aws-secret-manager.region: must not be empty"), "{err}");
        assert!(err.contains("kestra.secret.aws-secret-manager.prefix: holds a character"), "{err}");
        let err =
            load("kestra:\n  secret:\n    type: jdbc\n    jdbc: {secret: x, url: \"sqlite://x\"}\n    pasword: x\n")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("test.yaml: kestra.secret: unknown field `pasword`"), "{err}");
        let err = load("kestra:\n  secret:\n    type: memory\n    cache: {expire-after-write: P1M}\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.yaml: kestra.secret.cache.expire-after-write: uses months or years"), "{err}");
        let err = load(
            "kestra:\n  secret:\n    type: vault\n    vault:\n      address: http://v\n      kubernetes: {role: r, jwt-path: x}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("test.yaml: kestra.secret.vault.kubernetes: unknown field `jwt-path`"), "{err}");
        let err = load(
            "kestra:\n  secret:\n    type: vault\n    vault:\n      address: http://v\n      kubernetes: {role: r}\n      \
             token: {token: t}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("kestra.secret.vault: needs exactly one of token, userpass, approle or kubernetes"),
            "{err}"
        );
    }

    #[test]
    fn platform_file_loads_with_iso_durations_and_its_datasource() {
        let config = load(
            "datasources:\n  postgres: {url: \"jdbc:postgresql://db:5432/kestra\", username: kestra, password: \"${JDBC_SECRET}\"}\n\
             kestra:\n  secret:\n    type: jdbc\n    jdbc: {secret: \"${JDBC_SECRET}\"}\n    cache: {enabled: true, maximum-size: 10, expire-after-write: PT15M}\n  \
             server: {termination-grace-period: PT1M}\n  repository: {type: postgres}\n",
        )
        .unwrap();
        assert_eq!(config.secret.cache.expire_after_write.as_secs(), 900);
        assert_eq!(config.server.termination_grace_period.as_secs(), 60);
        let url = config.secret.jdbc.as_ref().unwrap().url.expose_secret().to_owned();
        assert_eq!(url, format!("postgres://kestra:{SECRET}@db:5432/kestra"));
        assert!(!format!("{config:?}").contains(SECRET));
    }

    #[test]
    fn platform_file_errors_quote_no_value() {
        let canary = "Zq7CanaryXw93kLt";
        let cases = [
            format!("kestra:\n  secret:\n    type: azure-key-vault\n    azure-key-vault: {{vault-name: \"{canary}/x\"}}\n"),
            format!("datasources:\n  h2: {{url: \"jdbc:h2:{canary}\"}}\nkestra:\n  secret: {{type: jdbc, jdbc: {{}}}}\n"),
            format!("datasources:\n  p: {{url: \"{canary}\"}}\nkestra:\n  secret: {{type: jdbc, jdbc: {{}}}}\n"),
            format!("kestra:\n  secret:\n    type: vault\n    vault: {{address: a, connect-timeout: 1s, read-timeout: \"{canary}\"}}\n"),
            format!("micronaut:\n  server:\n    ssl: {{port: \"{canary}\"}}\nkestra: {{secret: {{type: memory}}}}\n"),
            format!("kestra:\n  server:\n    liveness: {{interval: \"{canary}\"}}\n  secret: {{type: memory}}\n"),
        ];
        for text in cases {
            let err = load(&text).unwrap_err().to_string();
            assert!(!err.contains(canary), "the error quotes the input: {err}\n--- from:\n{text}");
            assert!(err.starts_with("test.yaml: "), "{err}");
        }
    }
}
