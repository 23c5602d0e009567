//! The workflow platform's own configuration file, read as secretd's: a
//! file whose root holds `kestra:` (with `micronaut:` and `datasources:`
//! beside it) is turned into secretd's native tree before [`super::de`]
//! reads it.
//!
//! The conversion works on the parsed YAML tree and never expands `${VAR}`
//! or `file:` references, so `config convert` can print the result with
//! credentials still written as references. It keeps a map from each
//! native path it wrote back to the platform's path it came from, so that
//! every later error names the key as the operator wrote it
//! (`kestra.secret.aws-secret-manager.prefix`, not `...name-prefix`).
//!
//! Three kinds of platform key: those that map onto a secretd setting; those
//! secretd has no use for (`kestra.queue`, `kestra.storage`, ...), listed
//! in [`Converted::ignored`] by name; and those whose meaning secretd cannot
//! honour yet (Vault's `engine-version: 1`, ...), which are
//! refused, since ignoring them would change who can read what.

use serde_norway::{Mapping, Value};

/// The reason given for a platform key secretd cannot honour yet.
pub const NOT_SUPPORTED: &str = "is not supported by secretd yet";

/// Keys of a native file, which may sit beside `kestra:` and pass as they are.
const NATIVE_ROOT_KEYS: &[&str] =
    &["server", "secret", "security", "state", "auth", "access", "audit", "configurations"];

/// A platform key that cannot be used: its platform path and a fixed reason.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct PlatformError {
    pub field: String,
    pub reason: &'static str,
}

fn refuse<T>(field: impl Into<String>, reason: &'static str) -> Result<T, PlatformError> {
    Err(PlatformError { field: field.into(), reason })
}

/// The native tree, where its parts came from, and what was left out.
/// Its `Debug` shows paths only: the tree holds credentials as written.
pub struct Converted {
    pub native: Value,
    /// Native path → platform path, for every value the conversion moved.
    origins: Vec<(String, String)>,
    /// Platform keys secretd has no use for, by dotted path.
    pub ignored: Vec<String>,
}

impl std::fmt::Debug for Converted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Converted")
            .field("origins", &self.origins)
            .field("ignored", &self.ignored)
            .finish_non_exhaustive()
    }
}

impl Converted {
    /// The path the operator wrote for a native path: the longest moved
    /// prefix replaced by its platform path.
    pub fn platform_path(&self, native: &str) -> String {
        let at_boundary = |prefix: &str| {
            native == prefix
                || (native.starts_with(prefix) && matches!(native.as_bytes().get(prefix.len()), Some(b'.' | b'[')))
        };
        self.origins
            .iter()
            .filter(|(from, _)| at_boundary(from))
            .max_by_key(|(from, _)| from.len())
            .map_or_else(|| native.to_owned(), |(from, to)| format!("{to}{}", &native[from.len()..]))
    }
}

/// Whether the file is the platform's: its root has a `kestra` key.
pub fn is_platform(root: &Value) -> bool {
    root.as_mapping().is_some_and(|map| map.contains_key("kestra"))
}

/// Turns the platform's tree into secretd's.
pub fn convert(root: Value) -> Result<Converted, PlatformError> {
    let Value::Mapping(root) = root else { return refuse("", "must be a block of settings") };
    let mut out = Out { native: Mapping::new(), origins: Vec::new(), ignored: Vec::new() };
    let mut datasources = None;
    let mut kestra = None;
    let mut micronaut = None;
    for (key, value) in root {
        let name = key_name(&key);
        match name.as_str() {
            "kestra" => kestra = Some(value),
            "micronaut" => micronaut = Some(value),
            "datasources" => datasources = Some(value),
            native if NATIVE_ROOT_KEYS.contains(&native) => {
                out.native.insert(key, value);
            }
            _ => out.ignored.push(name),
        }
    }
    let mut kestra = mapping(kestra.unwrap_or(Value::Null), "kestra")?;
    let mut context = Context { datasources, elasticsearch: kestra.remove("elasticsearch"), used_datasources: false };
    for (key, value) in kestra {
        let name = key_name(&key);
        let at = format!("kestra.{name}");
        match name.as_str() {
            "secret" => secret(&mut out, value, &mut context)?,
            "server" => server(&mut out, value)?,
            "security" => security(&mut out, value)?,
            "configurations" => {
                for (key, value) in mapping(value, &at)? {
                    let name = key_name(&key);
                    match name.as_str() {
                        "delete-files-on-start" => {
                            out.put(&["configurations", "delete-files-on-start"], value, &format!("{at}.{name}"))?
                        }
                        _ => out.ignored.push(format!("{at}.{name}")),
                    }
                }
            }
            _ => out.ignored.push(at),
        }
    }
    if let Some(elasticsearch) = context.elasticsearch {
        // `client` is left here when no elasticsearch backend took it.
        for (key, _) in mapping(elasticsearch, "kestra.elasticsearch")? {
            out.ignored.push(format!("kestra.elasticsearch.{}", key_name(&key)));
        }
    }
    if let Some(micronaut) = micronaut {
        micronaut_settings(&mut out, micronaut)?;
    }
    // The platform runs without `kestra.secret` (its secrets then come from
    // its environment); secretd has nothing to serve without a backend.
    if !out.native.contains_key("secret") {
        return refuse("kestra.secret", "is required: it names the backend secretd serves secrets from");
    }
    if context.datasources.is_some() && !context.used_datasources {
        out.ignored.push("datasources".into());
    }
    Ok(Converted { native: Value::Mapping(out.native), origins: out.origins, ignored: out.ignored })
}

/// The tree being built.
struct Out {
    native: Mapping,
    origins: Vec<(String, String)>,
    ignored: Vec<String>,
}

impl Out {
    /// Sets the native value at `path`, remembering the platform path it
    /// came from. A value already there (secretd's own key beside the
    /// platform's) is refused rather than silently overwritten.
    fn put(&mut self, path: &[&str], value: Value, from: &str) -> Result<(), PlatformError> {
        let (last, parents) = path.split_last().expect("a native path has at least one key");
        let mut map = &mut self.native;
        for key in parents {
            let entry = map.entry(Value::String((*key).to_owned())).or_insert_with(|| Value::Mapping(Mapping::new()));
            if !entry.is_mapping() {
                return refuse(from, "is set twice: by the platform's key and by secretd's own");
            }
            map = entry.as_mapping_mut().expect("checked to be a mapping");
        }
        if map.contains_key(*last) {
            return refuse(from, "is set twice: by the platform's key and by secretd's own");
        }
        map.insert(Value::String((*last).to_owned()), value);
        self.origins.push((path.join("."), from.to_owned()));
        Ok(())
    }
}

/// What backend blocks take from elsewhere in the platform's file.
struct Context {
    datasources: Option<Value>,
    elasticsearch: Option<Value>,
    used_datasources: bool,
}

/// A key as paths and the ignored list name it. Keys are named only when
/// shaped like a setting name (the platform's are kebab-case or camelCase):
/// a key shaped like anything else may be a value typed in the wrong place.
fn key_name(key: &Value) -> String {
    match key.as_str() {
        Some(name)
            if (1..=64).contains(&name.len())
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            name.to_owned()
        }
        _ => "(a key not shown)".to_owned(),
    }
}

fn mapping(value: Value, at: &str) -> Result<Mapping, PlatformError> {
    match value {
        Value::Mapping(map) => Ok(map),
        Value::Null => Ok(Mapping::new()),
        _ => refuse(at, "must be a block of settings"),
    }
}

/// `kestra.secret` → `secret`.
fn secret(out: &mut Out, value: Value, context: &mut Context) -> Result<(), PlatformError> {
    let secret = mapping(value, "kestra.secret")?;
    out.put(&["secret"], Value::Mapping(Mapping::new()), "kestra.secret")?;
    let mut block_read_only = None;
    for (key, value) in secret {
        let name = key_name(&key);
        let at = format!("kestra.secret.{name}");
        match name.as_str() {
            "aws-secret-manager"
            | "azure-key-vault"
            | "google-secret-manager"
            | "vault"
            | "jdbc"
            | "elasticsearch"
            | "memory" => {
                let native = backend_block(out, &name, value, &at, context, &mut block_read_only)?;
                out.put(&["secret", &name], Value::Mapping(native), &at)?;
            }
            // `type`, `read-only`, `cache`, `isolation` have the same names and
            // shapes; anything else goes on as written, so an unknown key is
            // refused by name when the native tree is read.
            _ => out.put(&["secret", &name], value, &at)?,
        }
    }
    if let Some(from) = block_read_only {
        // The stricter of the two wins: a read-only Vault block makes the
        // default backend read-only even if `kestra.secret.read-only` is false.
        let secret = out.native.get_mut("secret").and_then(Value::as_mapping_mut).expect("put above");
        secret.insert(Value::String("read-only".into()), Value::Bool(true));
        out.origins.push(("secret.read-only".into(), from));
    }
    Ok(())
}

/// A backend block under the platform's key names → the native block.
fn backend_block(
    out: &mut Out,
    backend: &str,
    value: Value,
    at: &str,
    context: &mut Context,
    block_read_only: &mut Option<String>,
) -> Result<Mapping, PlatformError> {
    let (renames, unsupported): (&[(&str, &str)], &[&str]) = match backend {
        "aws-secret-manager" => (
            &[("prefix", "name-prefix"), ("endpoint-override", "endpoint"), ("sts-endpoint-override", "sts-endpoint")],
            &[],
        ),
        "azure-key-vault" => (
            &[("key-vault-uri", "vault-url"), ("prefix", "name-prefix")],
            &["managed-identity-resource-id", "additionally-allowed-tenants"],
        ),
        "google-secret-manager" => (&[("prefix", "name-prefix")], &[]),
        "vault" => (
            &[
                ("root-engine", "mount"),
                ("secret-path-prefix", "path-prefix"),
                ("password", "userpass"),
                ("app-role", "approle"),
            ],
            &[],
        ),
        _ => (&[], &[]),
    };
    let native_at = format!("secret.{backend}");
    let mut native = Mapping::new();
    let mut timeouts: Vec<(String, Value)> = Vec::new();
    let moved = |native: &mut Mapping, origins: &mut Vec<(String, String)>, key: &str, value, from: String| {
        if native.contains_key(key) {
            return refuse(from, "is set twice: by the platform's key and by secretd's own");
        }
        native.insert(Value::String(key.to_owned()), value);
        origins.push((format!("{native_at}.{key}"), from));
        Ok(())
    };
    for (key, value) in mapping(value, at)? {
        let name = key_name(&key);
        let from = format!("{at}.{name}");
        if unsupported.contains(&name.as_str()) || name == "filter-on-prefix" {
            return refuse(from, NOT_SUPPORTED);
        }
        if name == "filter-on-tags" && value.as_mapping().is_some_and(|m| m.contains_key("tags")) {
            return refuse(from, NOT_SUPPORTED);
        }
        if let Some((_, to)) = renames.iter().find(|(platform, _)| *platform == name) {
            moved(&mut native, &mut out.origins, to, value, from)?;
            continue;
        }
        match (backend, name.as_str()) {
            ("azure-key-vault", "vault-name") => {
                let url = vault_name_url(&value).ok_or(PlatformError {
                    field: from.clone(),
                    reason: "must be a Key Vault name: 3 to 24 letters, digits and dashes",
                })?;
                moved(&mut native, &mut out.origins, "vault-url", Value::String(url), from)?;
            }
            ("azure-key-vault", "managed-identity-client-id") => {
                let block = Mapping::from_iter([(Value::String("client-id".into()), value)]);
                moved(&mut native, &mut out.origins, "managed-identity", Value::Mapping(block), from)?;
            }
            ("azure-key-vault", "workload-identity-client-id") => {
                let block = Mapping::from_iter([(Value::String("client-id".into()), value)]);
                moved(&mut native, &mut out.origins, "workload-identity", Value::Mapping(block), from)?;
            }
            ("vault", "engine-version") => match value.as_u64() {
                Some(2) => {}
                Some(1) => return refuse(from, NOT_SUPPORTED),
                _ => return refuse(from, "must be 1 or 2"),
            },
            ("vault", "read-only") => match value.as_bool() {
                Some(true) => *block_read_only = Some(from),
                Some(false) => {}
                None => return refuse(from, "must be true or false"),
            },
            ("vault", "connect-timeout" | "read-timeout") => timeouts.push((from, value)),
            _ => moved(&mut native, &mut out.origins, &name, value, from)?,
        }
    }
    if !timeouts.is_empty() {
        let (from, timeout) = vault_timeout(timeouts)?;
        moved(&mut native, &mut out.origins, "timeout", timeout, from)?;
    }
    if backend == "jdbc" && !native.contains_key("url") {
        if let Some((url, from)) = jdbc_url(context)? {
            moved(&mut native, &mut out.origins, "url", Value::String(url), from)?;
        }
    }
    if backend == "elasticsearch" && !native.contains_key("hosts") {
        elasticsearch_client(&mut native, &mut out.origins, &native_at, context)?;
    }
    Ok(native)
}

/// `vault-name` → `https://NAME.vault.azure.net/`. A `${VAR}` reference is
/// kept as one, to be replaced when the native tree is read.
fn vault_name_url(value: &Value) -> Option<String> {
    let name = value.as_str()?;
    let reference = name.starts_with("${") && name.ends_with('}');
    let valid = (3..=24).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    (reference || valid).then(|| format!("https://{name}.vault.azure.net/"))
}

/// Vault's `connect-timeout` and `read-timeout` → secretd's `timeout`,
/// which bounds one whole call: connecting and then reading. Their sum is
/// the longest a call could take under the platform's two limits, so it
/// refuses no call the platform would have let finish. Either alone is
/// taken as written.
fn vault_timeout(timeouts: Vec<(String, Value)>) -> Result<(String, Value), PlatformError> {
    if timeouts.len() == 1 {
        return Ok(timeouts.into_iter().next().expect("one"));
    }
    let mut total = std::time::Duration::ZERO;
    let mut first = None;
    for (from, value) in timeouts {
        let Some(text) = value.as_str() else { return refuse(from, "must be a duration like 5s or PT5S") };
        let timeout =
            super::de::duration::parse(text).map_err(|reason| PlatformError { field: from.clone(), reason })?;
        total = total
            .checked_add(timeout)
            .ok_or(PlatformError { field: from.clone(), reason: "is too long a duration" })?;
        first.get_or_insert(from);
    }
    let millis = u64::try_from(total.as_millis()).unwrap_or(u64::MAX);
    Ok((first.expect("two timeouts"), Value::String(format!("{millis}ms"))))
}

/// `jdbc`'s database: the platform's only `datasources.<name>`, its JDBC URL
/// turned into secretd's, with the user and password in it.
fn jdbc_url(context: &mut Context) -> Result<Option<(String, String)>, PlatformError> {
    let Some(datasources) = context.datasources.as_ref().and_then(Value::as_mapping) else { return Ok(None) };
    let mut entries = datasources.iter();
    let (Some((name, source)), None) = (entries.next(), entries.next()) else {
        return refuse(
            "datasources",
            "must hold exactly one datasource for the jdbc backend (or give kestra.secret.jdbc.url)",
        );
    };
    context.used_datasources = true;
    let at = format!("datasources.{}", key_name(name));
    let field = |key: &str| source.get(key).and_then(Value::as_str);
    let url_at = format!("{at}.url");
    let Some(jdbc) = field("url") else { return refuse(url_at, "is required, a JDBC URL") };
    let Some(rest) = jdbc.strip_prefix("jdbc:") else {
        return refuse(url_at, "must be a JDBC URL (jdbc:postgresql://..., jdbc:mysql://..., jdbc:mariadb://...)");
    };
    let (scheme, location) = match rest.split_once("://") {
        Some(("postgresql", location)) => ("postgres", location),
        Some(("mysql", location)) => ("mysql", location),
        Some(("mariadb", location)) => ("mariadb", location),
        _ if rest.starts_with("h2:") => {
            return refuse(
                url_at,
                "is an H2 database, which secretd cannot open: use PostgreSQL, MySQL or MariaDB, or give kestra.secret.jdbc.url",
            )
        }
        _ => return refuse(url_at, "must be a PostgreSQL, MySQL or MariaDB JDBC URL"),
    };
    let mut userinfo = String::new();
    if let Some(user) = field("username") {
        userinfo.push_str(&userinfo_part(user));
        if let Some(password) = field("password").filter(|p| !p.is_empty()) {
            userinfo.push(':');
            userinfo.push_str(&userinfo_part(password));
        }
        userinfo.push('@');
    }
    Ok(Some((format!("{scheme}://{userinfo}{location}"), url_at)))
}

/// A user or password for a URL: percent-encoded, except a `${VAR}`
/// reference, which is replaced only when the native tree is read.
fn userinfo_part(text: &str) -> String {
    if text.starts_with("${") && text.ends_with('}') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `elasticsearch`'s cluster: the platform's `kestra.elasticsearch.client`
/// (`http-hosts`, `basic-auth`).
fn elasticsearch_client(
    native: &mut Mapping,
    origins: &mut Vec<(String, String)>,
    native_at: &str,
    context: &mut Context,
) -> Result<(), PlatformError> {
    let Some(client) = context.elasticsearch.as_mut().and_then(Value::as_mapping_mut).and_then(|m| m.remove("client"))
    else {
        return Ok(());
    };
    let at = "kestra.elasticsearch.client";
    for (key, value) in mapping(client, at)? {
        let name = key_name(&key);
        let from = format!("{at}.{name}");
        let (to, value) = match name.as_str() {
            "http-hosts" => match value {
                // The platform takes one comma-separated string too.
                Value::String(hosts) => {
                    ("hosts", Value::Sequence(hosts.split(',').map(|h| Value::String(h.trim().to_owned())).collect()))
                }
                other => ("hosts", other),
            },
            "basic-auth" => ("basic-auth", value),
            _ => return refuse(from, NOT_SUPPORTED),
        };
        native.insert(Value::String(to.into()), value);
        origins.push((format!("{native_at}.{to}"), from));
    }
    Ok(())
}

/// `kestra.server` → `server`.
fn server(out: &mut Out, value: Value) -> Result<(), PlatformError> {
    for (key, value) in mapping(value, "kestra.server")? {
        let name = key_name(&key);
        let at = format!("kestra.server.{name}");
        match name.as_str() {
            "basic-auth" => {
                let mut block = mapping(value, &at)?;
                let enabled = match block.remove("enabled") {
                    None => true,
                    Some(Value::Bool(enabled)) => enabled,
                    Some(_) => return refuse(format!("{at}.enabled"), "must be true or false"),
                };
                if !enabled {
                    continue;
                }
                let mut native = Mapping::new();
                for (key, value) in block {
                    let name = key_name(&key);
                    match name.as_str() {
                        "username" | "password" => {
                            native.insert(Value::String(name.clone()), value);
                            out.origins.push((format!("server.basic-auth.{name}"), format!("{at}.{name}")));
                        }
                        // Paths of the platform's HTTP API; secretd has none.
                        _ => out.ignored.push(format!("{at}.{name}")),
                    }
                }
                out.put(&["server", "basic-auth"], Value::Mapping(native), &at)?;
            }
            "termination-grace-period" => out.put(&["server", "termination-grace-period"], value, &at)?,
            "liveness" => {
                let mut native = Mapping::new();
                for (key, value) in mapping(value, &at)? {
                    let name = key_name(&key);
                    let from = format!("{at}.{name}");
                    match name.as_str() {
                        "enabled" => match value.as_bool() {
                            Some(true) => {}
                            Some(false) => return refuse(from, NOT_SUPPORTED),
                            None => return refuse(from, "must be true or false"),
                        },
                        // How often the platform's services report to each other.
                        "heartbeat-interval" => out.ignored.push(from),
                        _ => {
                            native.insert(Value::String(name.clone()), value);
                            out.origins.push((format!("server.liveness.{name}"), from));
                        }
                    }
                }
                out.put(&["server", "liveness"], Value::Mapping(native), &at)?;
            }
            _ => out.ignored.push(at),
        }
    }
    Ok(())
}

/// `kestra.security` → `security`: only the password rule applies.
fn security(out: &mut Out, value: Value) -> Result<(), PlatformError> {
    for (key, value) in mapping(value, "kestra.security")? {
        let name = key_name(&key);
        let at = format!("kestra.security.{name}");
        if name != "basic-auth" {
            out.ignored.push(at);
            continue;
        }
        for (key, value) in mapping(value, &at)? {
            let name = key_name(&key);
            let from = format!("{at}.{name}");
            if name == "password-regexp" {
                out.put(&["security", "basic-auth", "password-regexp"], value, &from)?;
            } else {
                out.ignored.push(from);
            }
        }
    }
    Ok(())
}

/// `micronaut.server.ssl` → `server.tls` and the listen port.
fn micronaut_settings(out: &mut Out, value: Value) -> Result<(), PlatformError> {
    for (key, value) in mapping(value, "micronaut")? {
        let name = key_name(&key);
        if name != "server" {
            out.ignored.push(format!("micronaut.{name}"));
            continue;
        }
        for (key, value) in mapping(value, "micronaut.server")? {
            let name = key_name(&key);
            if name == "ssl" {
                ssl(out, value)?;
            } else {
                out.ignored.push(format!("micronaut.server.{name}"));
            }
        }
    }
    Ok(())
}

fn ssl(out: &mut Out, value: Value) -> Result<(), PlatformError> {
    const AT: &str = "micronaut.server.ssl";
    let mut ssl = mapping(value, AT)?;
    match ssl.remove("enabled") {
        None | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            out.ignored.push(AT.into());
            return Ok(());
        }
        Some(_) => return refuse(format!("{AT}.enabled"), "must be true or false"),
    }
    // Micronaut's own default for the TLS port.
    let mut port = 8443;
    let mut port_from = format!("{AT}.port");
    let mut tls = Mapping::new();
    let put = |tls: &mut Mapping, origins: &mut Vec<(String, String)>, key: &str, value: Value, from: String| {
        tls.insert(Value::String(key.into()), value);
        origins.push((format!("server.tls.{key}"), from));
    };
    for (key, value) in ssl {
        let name = key_name(&key);
        let from = format!("{AT}.{name}");
        match name.as_str() {
            "port" => {
                port = value
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0)
                    .ok_or(PlatformError { field: from.clone(), reason: "must be a port number from 1 to 65535" })?;
                port_from = from;
            }
            "clientAuthentication" | "client-authentication" => {
                let Some(mode) = value.as_str() else { return refuse(from, "must be none, want or need") };
                put(
                    &mut tls,
                    &mut out.origins,
                    "client-authentication",
                    Value::String(mode.to_ascii_lowercase()),
                    from,
                );
            }
            "keyStore" | "key-store" => {
                for (key, value) in mapping(value, &from)? {
                    let name = key_name(&key);
                    let at = format!("{from}.{name}");
                    match name.as_str() {
                        "path" => {
                            let Some(path) = value.as_str() else { return refuse(at, "must be a file path") };
                            if path.starts_with("classpath:") {
                                return refuse(at, NOT_SUPPORTED);
                            }
                            let path = path.strip_prefix("file:").unwrap_or(path);
                            put(&mut tls, &mut out.origins, "keystore", Value::String(path.into()), at);
                        }
                        "password" => put(&mut tls, &mut out.origins, "keystore-password", value, at),
                        "type" => {
                            if !value.as_str().is_some_and(|t| t.eq_ignore_ascii_case("PKCS12")) {
                                return refuse(at, NOT_SUPPORTED);
                            }
                        }
                        _ => return refuse(at, NOT_SUPPORTED),
                    }
                }
            }
            // A trust store (JKS or otherwise), ciphers, protocols: TLS
            // settings that would be weakened if left out, so refused.
            _ => return refuse(from, NOT_SUPPORTED),
        }
    }
    out.put(&["server", "tls"], Value::Mapping(tls), AT)?;
    // The platform listens on every interface; the operator's TLS port
    // says the same of secretd.
    out.put(&["server", "listen"], Value::String(format!("0.0.0.0:{port}")), &port_from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converted(yaml: &str) -> Converted {
        convert(serde_norway::from_str(yaml).unwrap()).unwrap()
    }

    fn refused(yaml: &str) -> (String, &'static str) {
        let e = convert(serde_norway::from_str(yaml).unwrap()).unwrap_err();
        (e.field, e.reason)
    }

    fn native(yaml: &str) -> Value {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn backend_keys_move_to_native_names_and_paths_lead_back() {
        let out = converted(
            "kestra:\n  secret:\n    type: aws-secret-manager\n    read-only: true\n    aws-secret-manager:\n      \
             region: us-east-1\n      prefix: kestra/\n      endpoint-override: http://localhost:5000\n  queue: {type: postgres}\n",
        );
        assert_eq!(
            out.native,
            native(
                "secret:\n  type: aws-secret-manager\n  read-only: true\n  aws-secret-manager:\n    region: us-east-1\n    \
                 name-prefix: kestra/\n    endpoint: http://localhost:5000\n"
            )
        );
        assert_eq!(out.ignored, ["kestra.queue"]);
        assert_eq!(
            out.platform_path("secret.aws-secret-manager.name-prefix"),
            "kestra.secret.aws-secret-manager.prefix"
        );
        assert_eq!(out.platform_path("secret.aws-secret-manager.region"), "kestra.secret.aws-secret-manager.region");
        assert_eq!(out.platform_path("secret.cache.maximum-size"), "kestra.secret.cache.maximum-size");
        assert_eq!(out.platform_path("server.listen"), "server.listen");
    }

    #[test]
    fn aws_sts_role_keys_keep_their_names_and_lead_back() {
        let out = converted(
            "kestra:\n  secret:\n    type: aws-secret-manager\n    aws-secret-manager:\n      region: eu-west-1\n      \
             sts-role-arn: arn:aws:iam::123456789012:role/kestra\n      sts-role-external-id: ext-1\n      \
             sts-role-session-name: kestra-secrets\n      sts-role-session-duration: PT1H\n      \
             sts-endpoint-override: https://sts.eu-west-1.amazonaws.com\n",
        );
        assert_eq!(
            out.native,
            native(
                "secret:\n  type: aws-secret-manager\n  aws-secret-manager:\n    region: eu-west-1\n    \
                 sts-role-arn: arn:aws:iam::123456789012:role/kestra\n    sts-role-external-id: ext-1\n    \
                 sts-role-session-name: kestra-secrets\n    sts-role-session-duration: PT1H\n    \
                 sts-endpoint: https://sts.eu-west-1.amazonaws.com\n"
            )
        );
        assert_eq!(
            out.platform_path("secret.aws-secret-manager.sts-endpoint"),
            "kestra.secret.aws-secret-manager.sts-endpoint-override"
        );
        assert_eq!(
            out.platform_path("secret.aws-secret-manager.sts-role-session-duration"),
            "kestra.secret.aws-secret-manager.sts-role-session-duration"
        );
    }

    #[test]
    fn azure_vault_name_and_identities() {
        let out = converted(
            "kestra:\n  secret:\n    type: azure-key-vault\n    azure-key-vault:\n      vault-name: my-vault\n      \
             managed-identity-client-id: abc\n      prefix: k-\n",
        );
        assert_eq!(
            out.native,
            native(
                "secret:\n  type: azure-key-vault\n  azure-key-vault:\n    vault-url: https://my-vault.vault.azure.net/\n    \
                 managed-identity: {client-id: abc}\n    name-prefix: k-\n"
            )
        );
        let (field, reason) = refused("kestra:\n  secret:\n    azure-key-vault:\n      vault-name: \"a/b@c\"\n");
        assert_eq!(field, "kestra.secret.azure-key-vault.vault-name");
        assert!(reason.starts_with("must be a Key Vault name"), "{reason}");
        let (field, _) = refused(
            "kestra:\n  secret:\n    azure-key-vault:\n      vault-name: abc\n      key-vault-uri: https://x/\n",
        );
        assert_eq!(field, "kestra.secret.azure-key-vault.key-vault-uri");
    }

    #[test]
    fn vault_keys_timeouts_and_read_only() {
        let out = converted(
            "kestra:\n  secret:\n    type: vault\n    vault:\n      address: http://v:8200\n      engine-version: 2\n      \
             root-engine: kv\n      secret-path-prefix: kestra\n      password: {user: u, password: \"${P}\"}\n      \
             connect-timeout: PT2S\n      read-timeout: 3s\n      read-only: true\n",
        );
        assert_eq!(
            out.native,
            native(
                "secret:\n  type: vault\n  vault:\n    address: http://v:8200\n    mount: kv\n    path-prefix: kestra\n    \
                 userpass: {user: u, password: \"${P}\"}\n    timeout: 5000ms\n  read-only: true\n"
            )
        );
        assert_eq!(out.platform_path("secret.read-only"), "kestra.secret.vault.read-only");
        assert_eq!(out.platform_path("secret.vault.timeout"), "kestra.secret.vault.connect-timeout");
        assert_eq!(out.platform_path("secret.vault.userpass.password"), "kestra.secret.vault.password.password");
        let (field, reason) = refused(
            "kestra:\n  secret:\n    vault:\n      connect-timeout: P170000000000000D\n      read-timeout: P170000000000000D\n",
        );
        assert_eq!((field.as_str(), reason), ("kestra.secret.vault.read-timeout", "is too long a duration"));
    }

    #[test]
    fn vault_kubernetes_auth_passes_to_the_native_block() {
        let out = converted(
            "kestra:\n  secret:\n    type: vault\n    vault:\n      address: http://v:8200\n      \
             kubernetes: {path: k8s, role: kestra}\n",
        );
        assert_eq!(
            out.native,
            native("secret:\n  type: vault\n  vault:\n    address: http://v:8200\n    kubernetes: {path: k8s, role: kestra}\n")
        );
        assert_eq!(out.platform_path("secret.vault.kubernetes.role"), "kestra.secret.vault.kubernetes.role");
    }

    #[test]
    fn keys_not_supported_yet_are_refused_by_name() {
        let cases = [
            ("vault:\n      engine-version: 1", "kestra.secret.vault.engine-version"),
            (
                "azure-key-vault:\n      managed-identity-resource-id: x",
                "kestra.secret.azure-key-vault.managed-identity-resource-id",
            ),
            (
                "azure-key-vault:\n      additionally-allowed-tenants: [x]",
                "kestra.secret.azure-key-vault.additionally-allowed-tenants",
            ),
            ("jdbc:\n      filter-on-prefix: {prefix: x}", "kestra.secret.jdbc.filter-on-prefix"),
            (
                "google-secret-manager:\n      filter-on-tags: {tags: {a: b}}",
                "kestra.secret.google-secret-manager.filter-on-tags",
            ),
        ];
        for (block, field) in cases {
            let (at, reason) = refused(&format!("kestra:\n  secret:\n    {block}\n"));
            assert_eq!((at.as_str(), reason), (field, NOT_SUPPORTED), "{block}");
        }
        // The native flat form of filter-on-tags is secretd's own.
        converted("kestra:\n  secret:\n    jdbc:\n      filter-on-tags: {a: b}\n");
    }

    #[test]
    fn jdbc_takes_its_database_from_the_datasource() {
        let out = converted(
            "datasources:\n  postgres:\n    url: jdbc:postgresql://db:5432/kestra?sslmode=disable\n    \
             driver-class-name: org.postgresql.Driver\n    username: kestra\n    password: \"p@ss:w/rd\"\n\
             kestra:\n  secret:\n    type: jdbc\n    jdbc: {secret: \"${S}\"}\n",
        );
        assert_eq!(
            out.native,
            native(
                "secret:\n  type: jdbc\n  jdbc:\n    secret: \"${S}\"\n    \
                 url: postgres://kestra:p%40ss%3Aw%2Frd@db:5432/kestra?sslmode=disable\n"
            )
        );
        assert_eq!(out.platform_path("secret.jdbc.url"), "datasources.postgres.url");
        assert!(out.ignored.is_empty(), "{:?}", out.ignored);
        let out = converted(
            "datasources:\n  mysql: {url: \"jdbc:mysql://db:3306/kestra\", username: k, password: \"${DB_PASSWORD}\"}\n\
             kestra:\n  secret:\n    jdbc: {}\n",
        );
        let url = &out.native["secret"]["jdbc"]["url"];
        assert_eq!(url.as_str(), Some("mysql://k:${DB_PASSWORD}@db:3306/kestra"));
        let (field, reason) = refused(
            "datasources:\n  h2: {url: \"jdbc:h2:mem:public;DB_CLOSE_DELAY=-1\", username: sa}\nkestra:\n  secret:\n    jdbc: {}\n",
        );
        assert_eq!(field, "datasources.h2.url");
        assert!(reason.starts_with("is an H2 database, which secretd cannot open"), "{reason}");
    }

    #[test]
    fn server_security_configurations_and_tls() {
        let out = converted(
            "micronaut:\n  security: {x509: {enabled: false}}\n  server:\n    ssl:\n      port: 8443\n      enabled: true\n      \
             clientAuthentication: want\n      keyStore: {path: \"file:/app/ssl/server.p12\", password: changeit, type: PKCS12}\n\
             kestra:\n  server:\n    basic-auth: {username: admin@kestra.io, password: \"${PW}\", open-urls: [/x]}\n    \
             termination-grace-period: 5m\n    liveness: {enabled: true, interval: 5s, timeout: 45s, initial-delay: 45s, heartbeat-interval: 3s}\n    \
             worker-task-restart-strategy: NEVER\n  security:\n    basic-auth: {password-regexp: \"^.{12,}$\"}\n    super-admin: {username: u}\n  \
             configurations: {delete-files-on-start: true}\n  secret: {type: memory}\n",
        );
        assert_eq!(
            out.native,
            native(
                "server:\n  basic-auth: {username: admin@kestra.io, password: \"${PW}\"}\n  termination-grace-period: 5m\n  \
                 liveness: {interval: 5s, timeout: 45s, initial-delay: 45s}\n  \
                 tls: {client-authentication: want, keystore: /app/ssl/server.p12, keystore-password: changeit}\n  \
                 listen: 0.0.0.0:8443\n\
                 security:\n  basic-auth: {password-regexp: \"^.{12,}$\"}\nconfigurations: {delete-files-on-start: true}\n\
                 secret: {type: memory}\n"
            )
        );
        assert_eq!(
            out.ignored,
            [
                "kestra.server.basic-auth.open-urls",
                "kestra.server.liveness.heartbeat-interval",
                "kestra.server.worker-task-restart-strategy",
                "kestra.security.super-admin",
                "micronaut.security",
            ]
        );
        let (field, reason) = refused(
            "micronaut:\n  server:\n    ssl:\n      trustStore: {path: \"file:/t.jks\", type: JKS}\nkestra: {secret: {type: memory}}\n",
        );
        assert_eq!((field.as_str(), reason), ("micronaut.server.ssl.trustStore", NOT_SUPPORTED));
        let out = converted(
            "kestra:\n  server:\n    basic-auth: {enabled: false, username: a, password: b}\n  secret: {type: memory}\n",
        );
        assert_eq!(out.native, native("secret: {type: memory}\n"));
        let (field, reason) = refused("kestra:\n  repository: {type: postgres}\n");
        assert_eq!(field, "kestra.secret");
        assert!(reason.starts_with("is required"), "{reason}");
    }

    #[test]
    fn keys_not_shaped_like_settings_are_not_named() {
        let canary = "Zq7Canary Xw93kLt";
        let out = converted(&format!("kestra:\n  \"{canary}\": x\n  secret: {{type: memory}}\n\"{canary}\": y\n"));
        assert_eq!(out.ignored, ["(a key not shown)", "kestra.(a key not shown)"]);
        assert!(!format!("{out:?}").contains("Zq7"), "{out:?}");
    }

    #[test]
    fn native_keys_beside_the_platform_pass_but_never_twice() {
        let out = converted("auth: {service-accounts: []}\nkestra:\n  secret: {type: memory}\n");
        assert_eq!(out.native, native("auth: {service-accounts: []}\nsecret: {type: memory}\n"));
        let (field, reason) = refused("secret: {type: memory}\nkestra:\n  secret: {type: memory}\n");
        assert_eq!(field, "kestra.secret");
        assert!(reason.starts_with("is set twice"), "{reason}");
    }
}
