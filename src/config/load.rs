//! Reading a configuration file: YAML, `${VAR}` references, unknown keys.
//!
//! References are replaced inside string values after parsing, never in the
//! raw text, so an environment variable holding `:` or a newline cannot
//! change the file's structure. Every error names the file and the dotted
//! path of the field.

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
    #[error("{file}: {field}: environment variable {var} is not set")]
    MissingEnv { file: PathBuf, field: String, var: String },
    #[error("{file}: {field}: malformed reference: {reason}")]
    BadReference { file: PathBuf, field: String, reason: String },
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

/// Reads, parses and validates a configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    // A configuration is a few KiB; the bound turns `--config /dev/zero`
    // into an error instead of an out-of-memory abort.
    let text = super::credential::read_bounded(path, 16 * 1024 * 1024)
        .map_err(|source| ConfigError::Read { file: path.into(), source })?;
    load_str(&text, path, &|var| std::env::var(var).ok())
}

/// Parses and validates configuration text; `file` is only used in errors.
pub fn load_str(text: &str, file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut value: Value =
        serde_norway::from_str(text).map_err(|e| ConfigError::Syntax { file: file.into(), message: e.to_string() })?;
    substitute(&mut value, &mut Vec::new(), file, env)?;
    let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { "(top level)".to_owned() } else { field };
        ConfigError::Field { file: file.into(), field, message: e.into_inner().to_string() }
    })?;
    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid { file: file.into(), problems })
    }
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
/// `file:` reference, and URLs with an inline password. For `config check`,
/// which warns about each.
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
            let inline_password = key == "url"
                && s.split_once("://")
                    .and_then(|(_, rest)| rest.split_once('@'))
                    .and_then(|(userinfo, _)| userinfo.split_once(':'))
                    .is_some_and(|(_, password)| !password.is_empty() && !password.starts_with("${"));
            if (CREDENTIAL_KEYS.contains(&key) && !by_reference) || inline_password {
                found.push(path.join("."));
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

/// Replaces `${VAR}` and `${VAR:-default}` in every string value; `$${`
/// stands for a literal `${`.
fn substitute(
    value: &mut Value,
    path: &mut Vec<String>,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = expand(s, env).map_err(|e| match e {
                ExpandError::Missing(var) => ConfigError::MissingEnv { file: file.into(), field: path.join("."), var },
                ExpandError::Malformed(reason) => {
                    ConfigError::BadReference { file: file.into(), field: path.join("."), reason }
                }
            })?;
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                path.push(k.as_str().map(str::to_owned).unwrap_or_else(|| format!("{k:?}")));
                substitute(v, path, file, env)?;
                path.pop();
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                substitute(v, path, file, env)?;
                path.pop();
            }
        }
        Value::Tagged(tagged) => substitute(&mut tagged.value, path, file, env)?,
        _ => {}
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum ExpandError {
    Missing(String),
    Malformed(String),
}

fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| ExpandError::Malformed("'${' without a closing '}'".into()))?;
            let (var, default) = match body[..end].split_once(":-") {
                Some((var, default)) => (var, Some(default)),
                None => (&body[..end], None),
            };
            let valid = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ExpandError::Malformed(format!("{var:?} is not an environment variable name")));
            }
            match (env(var), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(ExpandError::Missing(var.to_owned())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::BackendType;

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
                    state:\n  url: postgres://app:${PW}@db/state\n";
        assert_eq!(plaintext_credentials(text), vec!["secret.jdbc.url", "secret.jdbc.secret"]);
    }

    #[test]
    fn expand_rules() {
        assert_eq!(expand("x${JDBC_SECRET}y", &env).unwrap(), format!("x{SECRET}y"));
        assert_eq!(expand("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand("$${JDBC_SECRET} and $5", &env).unwrap(), "${JDBC_SECRET} and $5");
        assert_eq!(expand("${NOPE}", &env).unwrap_err(), ExpandError::Missing("NOPE".into()));
        assert!(matches!(expand("${OPEN", &env), Err(ExpandError::Malformed(_))));
        assert!(matches!(expand("${a-b}", &env), Err(ExpandError::Malformed(_))));
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
    fn missing_env_names_var_and_field() {
        let err = load("secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n    secret: ${MISSING_VAR}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "test.yaml: secret.jdbc.secret: environment variable MISSING_VAR is not set");
    }

    #[test]
    fn short_or_missing_secret_names_field_without_echoing_it() {
        let err = load("secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n    secret: tooshort-value\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret.jdbc.secret: must be at least 32 characters long, got 14"), "{err}");
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

    #[test]
    fn bad_types_and_syntax() {
        let err = load("secret:\n  type: jdbc\n  cache:\n    expire-after-write: soon\n").unwrap_err().to_string();
        assert!(err.contains("secret.cache.expire-after-write"), "{err}");
        let err = load("secret:\n  type: nosuch\n").unwrap_err().to_string();
        assert!(err.contains("secret.type") && err.contains("nosuch"), "{err}");
        let err = load("secret: [unclosed\n").unwrap_err().to_string();
        assert!(err.starts_with("test.yaml: not valid YAML"), "{err}");
        let err =
            load("secret:\n  type: jdbc\n  isolation:\n    denied-services: [executor]\n").unwrap_err().to_string();
        assert!(err.contains("secret.isolation.denied-services"), "{err}");
    }
}
