//! The `secretd` command: the daemon (`serve`) and the client verbs that
//! talk to a running daemon (`get`, `put`, `list`, `delete`), plus
//! `keygen` and `config check`.
//!
//! Client verbs print results on stdout and nothing else (`get` prints the
//! raw value, so it pipes); errors go to stderr with the gRPC code in words
//! and a non-zero exit.

use std::{
    collections::HashMap,
    io::{IsTerminal, Read, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context};
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use hyper_util::rt::TokioIo;
use secretd::{
    config::{self, DevPaths, ListenAddr},
    proto::{
        self, access_admin_client::AccessAdminClient, secret_broker_client::SecretBrokerClient,
        token_admin_client::TokenAdminClient,
    },
    status::code_name,
};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tower::service_fn;

#[derive(Parser)]
#[command(name = "secretd", version, about = "A pluggable secrets broker daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon. Without a config file: a local dev instance on SQLite under ./data.
    Serve {
        /// The configuration file.
        #[arg(long, env = "SECRETD_CONFIG")]
        config: Option<PathBuf>,
        /// Where the dev instance keeps its files (only without --config).
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Listen here instead of server.listen (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve /livez, /readyz and /metrics here instead of server.admin.listen.
        #[arg(long, env = "SECRETD_ADMIN_LISTEN")]
        admin_listen: Option<SocketAddr>,
    },
    /// Print a secret's raw value on stdout.
    Get {
        #[command(flatten)]
        target: Target,
        /// A pinned version; the latest by default.
        #[arg(long)]
        version: Option<String>,
        /// Do not accept a cached value older than this (like 30s).
        #[arg(long, value_parser = humantime::parse_duration)]
        max_age: Option<std::time::Duration>,
        /// Read the backend, not the cache (rate limited per caller).
        #[arg(long)]
        refresh: bool,
        /// Print only this member of a JSON-object value: a string as its text, anything else as JSON.
        #[arg(long)]
        subkey: Option<String>,
    },
    /// Write a new version of a secret. The value comes from VALUE, --from-file, or stdin.
    Put {
        #[command(flatten)]
        target: Target,
        /// The value. Prefer stdin or --from-file: arguments are visible to other local users.
        value: Option<String>,
        /// Read the value from this file ('-' for stdin).
        #[arg(long, conflicts_with = "value")]
        from_file: Option<PathBuf>,
        /// A tag, as key=value; repeat for more.
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the secrets of a namespace (metadata only).
    List {
        #[command(flatten)]
        conn: Connection,
        /// The namespace to list (children are not included).
        #[arg(long, short = 'n', env = "SECRETD_NAMESPACE", default_value = "default")]
        namespace: String,
        /// Empty means `main`.
        #[arg(long, env = "SECRETD_TENANT", default_value = "")]
        tenant: String,
        /// Only secrets with this tag, as key=value; repeat for more.
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret with all its versions.
    Delete {
        #[command(flatten)]
        target: Target,
    },
    /// Print a fresh random secret, suitable for `secret.jdbc.secret`.
    Keygen,
    /// Manage service-account API tokens (needs the admin permission).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Inspect what the access policy allows (needs the admin permission).
    Access {
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Copy secrets with their tags from one configured backend to another
    /// (`default`, or a secret.dedicated entry's name), while the daemon
    /// may keep serving. Idempotent: a rerun copies only what is missing.
    Migrate {
        /// The configuration file that names both backends.
        #[arg(long, env = "SECRETD_CONFIG")]
        config: PathBuf,
        /// The backend to copy from.
        #[arg(long)]
        from: String,
        /// The backend to copy into.
        #[arg(long)]
        to: String,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this namespace and everything below it.
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Every version, oldest first, instead of the latest only.
        #[arg(long)]
        all_versions: bool,
        /// Say what would be copied, and copy nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write over a secret that the target holds with another value.
        #[arg(long)]
        overwrite: bool,
    },
    /// Re-seal every value stored encrypted (SQL, Elasticsearch) under the
    /// backend's current `secret`, so the old ones can leave
    /// `previous-secrets`. Safe while the daemon serves; a rerun resumes.
    Rekey {
        /// The configuration file.
        #[arg(long, env = "SECRETD_CONFIG")]
        config: PathBuf,
        /// Only this backend (`default` or an entry's name); every
        /// encrypted one by default.
        #[arg(long)]
        backend: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it, alone, on stdout. It is shown this once.
    Create {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        name: String,
        /// The service type: WORKER, EXECUTOR, SCHEDULER, WEBSERVER, INDEXER, or your own.
        #[arg(long)]
        service: String,
        /// Comma-separated: read, list, write, delete, admin.
        #[arg(long, value_delimiter = ',', default_value = "read")]
        permissions: Vec<String>,
        /// A namespace glob the token is limited to, like 'company.*'; repeat for more.
        /// Without one, no namespace limit (only a creator without one may mint that).
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
        /// A tenant glob the token is limited to, like 'acme-*' ('*' is every tenant);
        /// repeat or separate with commas. Default: main.
        #[arg(long = "tenant", value_delimiter = ',')]
        tenants: Vec<String>,
        /// Lifetime, like 30d or 12h, at most 10 years (3650d); no expiry by default.
        /// No later than the creating token's own expiry.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
    },
    /// List tokens (never the tokens themselves).
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Revoke a token by name.
    Revoke {
        #[command(flatten)]
        conn: Connection,
        name: String,
    },
    /// Print the SHA-256 of a token read from stdin, for `auth.service-accounts[].token-sha256`.
    Hash,
}

#[derive(Subcommand)]
enum AccessCommand {
    /// Print each namespace a call would consult, the decision on each and the rule that decided.
    /// Reads no value and asks the backend nothing.
    Explain(ExplainArgs),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("subject").required(true))]
struct ExplainArgs {
    /// The principal, by name: a service account, certificate or Unix-peer rule, the basic-auth user, or a token's name.
    #[arg(long, group = "subject")]
    principal: Option<String>,
    /// Or the principal of the token in this file.
    #[arg(long, group = "subject")]
    token_file: Option<PathBuf>,
    /// The secret's key, like db/password.
    key: String,
    /// The namespace the call names (a read also consults its parents).
    #[arg(long, short = 'n', env = "SECRETD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Empty means `main`.
    #[arg(long, env = "SECRETD_TENANT", default_value = "")]
    tenant: String,
    /// read, list, write or delete.
    #[arg(long, default_value = "read", value_parser = ["read", "list", "write", "delete"])]
    action: String,
    /// The daemon's address: HOST:PORT, https://HOST:PORT (TLS), or unix:///PATH.
    #[arg(long, env = "SECRETD_ADDR", default_value = "127.0.0.1:7878")]
    addr: String,
    /// The admin's own token (also SECRETD_TOKEN); --token-file names the token explained here.
    #[arg(long, env = "SECRETD_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// The admin's basic auth as USER:PASSWORD (also SECRETD_USER).
    #[arg(long, env = "SECRETD_USER", hide_env_values = true, conflicts_with = "api_token")]
    user: Option<String>,
    /// PEM CA bundle to verify the server's certificate (https:// addresses).
    #[arg(long, env = "SECRETD_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate and key, for mutual TLS.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file without starting anything.
    Check {
        #[arg(env = "SECRETD_CONFIG")]
        file: PathBuf,
    },
    /// Print the platform's configuration file (kestra: at its root) as secretd's own YAML.
    /// References (${VAR}, file:) are kept as written, never expanded.
    Convert { file: PathBuf },
}

#[derive(Args)]
struct Connection {
    /// The daemon's address: HOST:PORT, https://HOST:PORT (TLS), or unix:///PATH.
    #[arg(long, env = "SECRETD_ADDR", default_value = "127.0.0.1:7878", global = true)]
    addr: String,
    /// A service-account token (also SECRETD_TOKEN). Prefer --token-file: arguments are visible to other users.
    #[arg(long, env = "SECRETD_TOKEN", hide_env_values = true, global = true)]
    api_token: Option<String>,
    /// Read the token from this file.
    #[arg(long, global = true, conflicts_with = "api_token")]
    token_file: Option<PathBuf>,
    /// Basic auth as USER:PASSWORD, for the operator's admin account (also SECRETD_USER).
    #[arg(long, env = "SECRETD_USER", hide_env_values = true, global = true, conflicts_with_all = ["api_token", "token_file"])]
    user: Option<String>,
    /// PEM CA bundle to verify the server's certificate (https:// addresses).
    #[arg(long, env = "SECRETD_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate and key, for mutual TLS.
    #[arg(long, global = true, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(long, global = true, requires = "client_cert")]
    client_key: Option<PathBuf>,
}

#[derive(Args)]
struct Target {
    #[command(flatten)]
    conn: Connection,
    /// The secret's key, like db/password.
    key: String,
    /// The namespace, like company.team (parents are searched on reads).
    #[arg(long, short = 'n', env = "SECRETD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Empty means `main`.
    #[arg(long, env = "SECRETD_TENANT", default_value = "")]
    tenant: String,
}

fn parse_tag(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| "expected key=value".to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config, data_dir, listen, admin_listen } => {
            serve(config.as_deref(), &data_dir, listen, admin_listen).await
        }
        Command::Migrate { config, from, to, tenant, namespace, all_versions, dry_run, overwrite } => {
            migrate(&config, &from, &to, tenant, namespace, all_versions, dry_run, overwrite).await
        }
        Command::Rekey { config, backend } => rekey(&config, backend.as_deref()).await,
        Command::Keygen => {
            println!("{}", secretd::keygen());
            Ok(())
        }
        Command::Token { command } => token_command(command).await,
        Command::Access { command: AccessCommand::Explain(args) } => explain(args).await,
        Command::Config { command: ConfigCommand::Convert { file } } => {
            let (yaml, ignored) = config::convert_file(&file)?;
            if !ignored.is_empty() {
                eprintln!("{}: ignored (secretd has no use for them): {}", file.display(), ignored.join(", "));
            }
            print!("{yaml}");
            Ok(())
        }
        Command::Config { command: ConfigCommand::Check { file } } => {
            let config = config::load_file(&file)?;
            if let Some((at, backend)) = config.backends_not_built_in().into_iter().next() {
                bail!("{}: {at}: {backend} is valid but not available in this build of secretd", file.display());
            }
            // The file is read again as written, before `${VAR}` references
            // are replaced: a credential typed into it is what to flag.
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for field in config::plaintext_credentials(&text) {
                eprintln!(
                    "{}: warning: {field} holds a credential in plain text; use ${{ENV_VAR}} or file:/path/to/mounted/secret",
                    file.display()
                );
            }
            for loose in secretd::files::loose_credential_files(&config) {
                eprintln!("{}: warning: {loose}", file.display());
            }
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::Get { target, version, max_age, refresh, subkey } => {
            let mut client = connect(&target.conn).await?;
            let max_age = max_age.map(prost_types::Duration::try_from).transpose().context("--max-age is too long")?;
            let response = client
                .get_secret(proto::GetSecretRequest {
                    tenant: target.tenant,
                    namespace: target.namespace,
                    key: target.key,
                    version: version.unwrap_or_default(),
                    max_age,
                    refresh,
                    subkey: subkey.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&response.value)?;
            stdout.flush()?;
            Ok(())
        }
        Command::Put { target, value, from_file, tags, description } => {
            let value = match (value, from_file) {
                (Some(v), _) => v.into_bytes(),
                (None, Some(path)) if path == Path::new("-") => read_stdin()?,
                (None, Some(path)) => std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                (None, None) => read_stdin()?,
            };
            let mut client = connect(&target.conn).await?;
            let response = client
                .put_secret(proto::PutSecretRequest {
                    tenant: target.tenant,
                    namespace: target.namespace,
                    key: target.key,
                    value: value.into(),
                    tags: tags.into_iter().collect(),
                    description,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("version {}", response.version);
            Ok(())
        }
        Command::List { conn, namespace, tenant, tags, json } => {
            let mut client = connect(&conn).await?;
            let filter: HashMap<String, String> = tags.into_iter().collect();
            let mut token = String::new();
            let mut stdout = std::io::stdout().lock();
            if !json {
                writeln!(stdout, "KEY\tVERSION\tUPDATED\tTAGS")?;
            }
            loop {
                let page = client
                    .list_secrets(proto::ListSecretsRequest {
                        tenant: tenant.clone(),
                        namespace: namespace.clone(),
                        tags: filter.clone(),
                        page_size: 500,
                        page_token: token,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                for s in page.secrets {
                    let updated = s.updated_at.map(format_time).unwrap_or_default();
                    let mut tags: Vec<_> = s.tags.into_iter().collect();
                    tags.sort();
                    if json {
                        let line = serde_json::json!({
                            "tenant": s.tenant, "namespace": s.namespace, "key": s.key,
                            "version": s.version, "updated_at": updated,
                            "tags": tags.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                        });
                        writeln!(stdout, "{line}")?;
                    } else {
                        let tags: Vec<String> = tags.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
                        writeln!(stdout, "{}\t{}\t{}\t{}", s.key, s.version, updated, tags.join(","))?;
                    }
                }
                if page.next_page_token.is_empty() {
                    return Ok(());
                }
                token = page.next_page_token;
            }
        }
        Command::Delete { target } => {
            let mut client = connect(&target.conn).await?;
            client
                .delete_secret(proto::DeleteSecretRequest {
                    tenant: target.tenant,
                    namespace: target.namespace,
                    key: target.key,
                })
                .await
                .map_err(status_error)?;
            Ok(())
        }
    }
}

/// `humantime` cannot write years past 9999 (`to_string` would panic), and a
/// token stored before lifetimes were capped may expire that late.
fn format_time(t: prost_types::Timestamp) -> String {
    let Ok(secs) = u64::try_from(t.seconds) else { return String::new() };
    let mut out = String::new();
    let time = std::time::UNIX_EPOCH.checked_add(Duration::from_secs(secs));
    match time
        .map(|time| std::fmt::Write::write_fmt(&mut out, format_args!("{}", humantime::format_rfc3339_seconds(time))))
    {
        Some(Ok(())) => out,
        _ => format!("{secs}s after the epoch"),
    }
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("reading the value from stdin; end with Ctrl-D");
    }
    let mut buf = Vec::new();
    stdin.read_to_end(&mut buf).context("reading the value from stdin")?;
    Ok(buf)
}

fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", code_name(status.code()), status.message())
}

type Authed = InterceptedService<Channel, Credentials>;

async fn connect(conn: &Connection) -> anyhow::Result<SecretBrokerClient<Authed>> {
    Ok(SecretBrokerClient::with_interceptor(channel(conn).await?, credentials(conn)?))
}

async fn connect_admin(conn: &Connection) -> anyhow::Result<TokenAdminClient<Authed>> {
    Ok(TokenAdminClient::with_interceptor(channel(conn).await?, credentials(conn)?))
}

/// Adds the caller's credentials to every request.
#[derive(Clone)]
struct Credentials(Option<MetadataValue<Ascii>>);

impl Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.0 {
            request.metadata_mut().insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// The dev instance's admin token, used when no credentials are given and
/// the daemon is on this host (see [`is_local_addr`]).
const DEV_ADMIN_TOKEN: &str = "./data/admin.token";

/// Whether `--addr` names this host: a Unix socket, or a loopback address
/// written as `127.0.0.1`, `::1` or `localhost` (any port, with or without
/// `http://` or `https://`). Only there may the dev admin token go without
/// being asked for: anything else could be another machine, and a token
/// sent there is a token given away.
fn is_local_addr(addr: &str) -> bool {
    if addr.starts_with("unix://") {
        return true;
    }
    let rest = addr.strip_prefix("http://").or_else(|| addr.strip_prefix("https://")).unwrap_or(addr);
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, port)) if port.is_empty() || port.starts_with(':') => host,
            _ => return false,
        },
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "::1"
}

fn credentials(conn: &Connection) -> anyhow::Result<Credentials> {
    let read_token = |path: &Path| -> anyhow::Result<String> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(text.trim().to_owned())
    };
    let header = if let Some(token) = &conn.api_token {
        Some(format!("Bearer {}", token.trim()))
    } else if let Some(path) = &conn.token_file {
        Some(format!("Bearer {}", read_token(path)?))
    } else if let Some(user) = &conn.user {
        if !user.contains(':') {
            bail!("--user: expected USER:PASSWORD");
        }
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user)))
    } else if conn.client_cert.is_some() || !Path::new(DEV_ADMIN_TOKEN).exists() {
        // A client certificate is credentials enough.
        None
    } else if is_local_addr(&conn.addr) {
        Some(format!("Bearer {}", read_token(Path::new(DEV_ADMIN_TOKEN))?))
    } else {
        bail!(
            "not sending the dev admin token {DEV_ADMIN_TOKEN} to {}: it goes only to 127.0.0.1, ::1, localhost or a \
             unix:// socket; pass --api-token (or SECRETD_TOKEN), --token-file or --user for this address",
            conn.addr
        );
    };
    let value = header
        .map(|h| MetadataValue::try_from(h).context("the credentials hold characters a header cannot carry"))
        .transpose()?;
    Ok(Credentials(value))
}

async fn channel(conn: &Connection) -> anyhow::Result<Channel> {
    let addr = conn.addr.as_str();
    if let Some(path) = addr.strip_prefix("unix://") {
        let path = PathBuf::from(path);
        // The URI is a placeholder: the connector dials the socket.
        return Endpoint::from_static("http://secretd.local")
            .connect_with_connector(service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
            .map_err(|e| anyhow::anyhow!("UNAVAILABLE: cannot connect to secretd at {addr}: {e}"));
    }
    let uri = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
    let mut endpoint = Channel::from_shared(uri.clone())
        .with_context(|| format!("--addr {addr}: not a valid address"))?
        .connect_timeout(Duration::from_secs(5));
    if uri.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &conn.ca_cert {
            let pem = std::fs::read(ca).with_context(|| format!("--ca-cert {}", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&conn.client_cert, &conn.client_key) {
            let cert = std::fs::read(cert).with_context(|| format!("--client-cert {}", cert.display()))?;
            let key = std::fs::read(key).with_context(|| format!("--client-key {}", key.display()))?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(tls).context("TLS settings")?;
    }
    endpoint.connect().await.map_err(|e| anyhow::anyhow!("UNAVAILABLE: cannot connect to secretd at {uri}: {e}"))
}

async fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let ExplainArgs {
        principal,
        token_file,
        key,
        namespace,
        tenant,
        action,
        addr,
        api_token,
        user,
        ca_cert,
        client_cert,
        client_key,
    } = args;
    let subject = match (principal, token_file) {
        (Some(name), _) => proto::explain_access_request::Subject::Principal(name),
        (None, Some(path)) => {
            let token = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            proto::explain_access_request::Subject::Token(token.trim().to_owned())
        }
        (None, None) => bail!("name a principal with --principal or a token with --token-file"),
    };
    let conn = Connection { addr, api_token, token_file: None, user, ca_cert, client_cert, client_key };
    let mut client = AccessAdminClient::with_interceptor(channel(&conn).await?, credentials(&conn)?);
    let answer = client
        .explain_access(proto::ExplainAccessRequest { subject: Some(subject), tenant, namespace, key, action })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "principal {} (service {})", answer.principal, answer.service)?;
    writeln!(stdout, "NAMESPACE\tDECISION\tSTEP\tBACKEND\tREASON")?;
    for d in answer.decisions {
        let decision = if d.allowed { "allow" } else { "deny" };
        writeln!(stdout, "{}\t{decision}\t{}\t{}\t{}", d.namespace, d.step, d.backend, d.reason)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn migrate(
    file: &Path,
    from: &str,
    to: &str,
    tenant: Option<String>,
    namespace: Option<String>,
    all_versions: bool,
    dry_run: bool,
    overwrite: bool,
) -> anyhow::Result<()> {
    if from == to {
        bail!("--from and --to name the same backend ({from})");
    }
    let config = config::load_file(file)?;
    let selection = secretd_core::ScanSelection {
        tenant: tenant.as_deref().map(secretd_core::Tenant::parse).transpose().context("--tenant")?,
        namespace: namespace.as_deref().map(secretd_core::Namespace::parse).transpose().context("--namespace")?,
    };
    let source = secretd::routes::build_named(&config, from).await.with_context(|| format!("{}", file.display()))?;
    let target = secretd::routes::build_named(&config, to).await.with_context(|| format!("{}", file.display()))?;
    let options =
        secretd::migrate::MigrateOptions { selection, all_versions, dry_run, overwrite, ..Default::default() };
    let progress = secretd::migrate::TerminalProgress::new();
    let report = secretd::migrate::migrate_with_progress(&*source.store, &*target.store, &options, &progress).await;
    drop(progress);
    eprintln!("migrate {from} -> {to}: {}", report.summary(20));
    if !report.succeeded() {
        bail!("migrate {from} -> {to}: not everything was copied; see above (a rerun copies only what is missing)");
    }
    Ok(())
}

async fn rekey(file: &Path, only: Option<&str>) -> anyhow::Result<()> {
    let config = config::load_file(file)?;
    let names: Vec<String> = match only {
        Some(name) => vec![name.to_owned()],
        None => secretd::routes::configured_backends(&config).into_iter().map(|(n, _, _)| n.to_owned()).collect(),
    };
    let mut resealed = 0;
    let mut incomplete = Vec::new();
    for name in names {
        let backend =
            secretd::routes::build_named(&config, &name).await.with_context(|| format!("{}", file.display()))?;
        let Some(store) = backend.reseal else {
            if only.is_some() {
                bail!("backend {name} keeps no values sealed by secretd (only jdbc and elasticsearch do): nothing to re-key");
            }
            continue;
        };
        let run = secretd::rekey::run(&*store, &name, std::io::stderr().is_terminal()).await?;
        for line in run.failure_lines() {
            eprintln!("{line}");
        }
        eprintln!("{}", run.summary());
        if !run.is_complete() {
            incomplete.push(name);
        }
        resealed += 1;
    }
    if resealed == 0 {
        bail!("{}: no backend keeps values sealed by secretd (only jdbc and elasticsearch do)", file.display());
    }
    if !incomplete.is_empty() {
        bail!("rekey: {} not done; run it again to go on", incomplete.join(", "));
    }
    Ok(())
}

async fn token_command(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { conn, name, service, permissions, namespaces, tenants, expires } => {
            let mut client = connect_admin(&conn).await?;
            let response = client
                .create_token(proto::CreateTokenRequest {
                    name,
                    service,
                    permissions,
                    namespaces,
                    tenants,
                    // Saturated rather than wrapped, so the server names its cap.
                    expires_in_seconds: expires.map_or(0, |d| i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX)),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{}", response.token);
            Ok(())
        }
        TokenCommand::List { conn } => {
            let mut client = connect_admin(&conn).await?;
            let tokens =
                client.list_tokens(proto::ListTokensRequest {}).await.map_err(status_error)?.into_inner().tokens;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "NAME\tSERVICE\tPERMISSIONS\tNAMESPACES\tTENANTS\tCREATED\tEXPIRES\tLAST USED\tSTATUS")?;
            for t in tokens {
                let when = |ts: Option<prost_types::Timestamp>| ts.map(format_time).unwrap_or_else(|| "-".into());
                let status = if t.revoked_at.is_some() { "revoked" } else { "active" };
                writeln!(
                    stdout,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{status}",
                    t.name,
                    t.service,
                    t.permissions.join(","),
                    if t.namespaces.is_empty() { "*".to_owned() } else { t.namespaces.join(",") },
                    t.tenants.join(","),
                    when(t.created_at),
                    when(t.expires_at),
                    when(t.last_used_at),
                )?;
            }
            Ok(())
        }
        TokenCommand::Revoke { conn, name } => {
            let mut client = connect_admin(&conn).await?;
            client.revoke_token(proto::RevokeTokenRequest { name }).await.map_err(status_error)?;
            Ok(())
        }
        TokenCommand::Hash => {
            let token = String::from_utf8(read_stdin()?).context("the token is not UTF-8")?;
            println!("{}", secretd::auth::token::TokenHash::of(token.trim()).to_hex());
            Ok(())
        }
    }
}

async fn serve(
    config_path: Option<&Path>,
    data_dir: &Path,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
) -> anyhow::Result<()> {
    init_logging();
    let mut dev = None;
    let mut config = match config_path {
        Some(path) => {
            let config = config::load_file(path)?;
            tracing::info!(config = %path.display(), backend = config.secret.backend.as_str(), "configuration loaded");
            for loose in secretd::files::loose_credential_files(&config) {
                tracing::warn!("{loose}");
            }
            if config.configurations.delete_files_on_start {
                delete_config_files(path, &config)?;
            }
            config
        }
        None => {
            let paths = DevPaths::new(data_dir);
            let config = config::dev_config(&paths)
                .with_context(|| format!("preparing the dev data directory {}", paths.data_dir.display()))?;
            tracing::warn!(
                data_dir = %paths.data_dir.display(),
                database = %paths.database.display(),
                encryption_secret_file = %paths.secret_file.display(),
                admin_token_file = %paths.admin_token.display(),
                audit_log = %paths.audit_log.display(),
                "DEV MODE: no configuration file given; serving a local SQLite store on loopback only. \
                 Pass --config (or SECRETD_CONFIG) for anything else."
            );
            dev = Some(paths);
            config
        }
    };
    if let Some(listen) = listen {
        config.server.listen = ListenAddr::Tcp(listen);
    }
    if let Some(admin) = admin_listen {
        config.server.admin.listen = admin;
    }
    if let ListenAddr::Tcp(addr) = &config.server.listen {
        if !addr.ip().is_loopback() && config.server.tls.is_none() {
            tracing::warn!(listen = %addr, "listening beyond loopback without TLS: tokens travel in clear text");
        }
    }
    let services = secretd::build_services(&config).await?;
    if let Some(paths) = &dev {
        secretd::ensure_dev_admin_token(&services, paths).await?;
    }
    let listener = secretd::bind(&config).await?;
    let shown = match &listener {
        secretd::server::Listener::Tcp(tcp, tls) => {
            format!("{}{}", if tls.is_some() { "https://" } else { "" }, tcp.local_addr()?)
        }
        secretd::server::Listener::Unix(_) => config.server.listen.to_string(),
    };
    let admin = secretd::bind_admin(&config).await?;
    if let Some(admin) = &admin {
        let addr = admin.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(admin = %addr, "the admin listener (probes, metrics) is reachable beyond loopback");
        }
        tracing::info!(addr = %addr, "secretd admin listening");
    }
    tracing::info!(addr = %shown, "secretd listening");
    let options = secretd::server::RunOptions {
        liveness: config.server.liveness.clone(),
        admin,
        grace_period: config.server.termination_grace_period,
    };
    secretd::server::run(services, listener, options, shutdown_signal()).await?;
    tracing::info!("secretd stopped");
    Ok(())
}

/// `configurations.delete-files-on-start`: the file and the credential
/// files it named are read; remove them, so nothing sharing the host can
/// read them later. A file that cannot be removed stops the start: the
/// operator asked for it gone.
fn delete_config_files(config_path: &Path, config: &config::Config) -> anyhow::Result<()> {
    // The configuration file last: if a credential file cannot go, the
    // operator still has the file to see why.
    let mut files = config.credential_files();
    files.push(config_path);
    for file in files {
        match std::fs::remove_file(file) {
            Ok(()) => tracing::info!(file = %file.display(), "deleted (configurations.delete-files-on-start)"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!(
                "{}: configurations.delete-files-on-start: cannot delete {}: {e}",
                config_path.display(),
                file.display()
            ),
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight calls");
}

fn init_logging() {
    // vaultrs and rustify log every error answer (a 404 for a missing
    // secret included, and four lines per refused connection during an
    // outage) at ERROR; secretd reports what matters itself. They stay off
    // unless SECRETD_LOG names them.
    // The AWS SDK's debug lines name the access key id it signs with (and
    // the one an assumed role got): a credential, so they stop at info.
    let quiet = ",rustify=off,vaultrs=off,aws_smithy_runtime=info,aws_smithy_runtime_api=info,aws_config=info,\
                 aws_sigv4=info,aws_credential_types=info";
    let directives = match std::env::var("SECRETD_LOG") {
        Ok(own) if own.contains("rustify") || own.contains("vaultrs") || own.contains("aws_") => own,
        Ok(own) => format!("{own}{quiet}"),
        Err(_) => format!("info{quiet}"),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info{quiet}")));
    let json = std::env::var("SECRETD_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::{format_time, is_local_addr};

    #[test]
    fn times_past_the_year_9999_print_without_a_panic() {
        let at = |seconds| format_time(prost_types::Timestamp { seconds, nanos: 0 });
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(400_000_000_000), "400000000000s after the epoch");
        assert_eq!(at(i64::MAX), format!("{}s after the epoch", i64::MAX));
        assert_eq!(at(-1), "");
    }

    #[test]
    fn the_dev_token_goes_to_this_host_only() {
        for local in [
            "127.0.0.1:7878",
            "http://127.0.0.1:7878",
            "https://localhost:7878",
            "localhost:1",
            "LOCALHOST:1",
            "[::1]:7878",
            "http://[::1]:7878/",
            "unix:///run/secretd/secretd.sock",
        ] {
            assert!(is_local_addr(local), "{local}");
        }
        for remote in [
            "10.0.0.5:7878",
            "secretd.internal:7878",
            "https://secretd.example.com",
            "0.0.0.0:7878",
            "127.0.0.1.evil.example:7878",
            "localhost.evil.example:7878",
            "http://127.0.0.1@evil.example:7878",
            "[::1].evil:7878",
            "[::2]:7878",
            "",
        ] {
            assert!(!is_local_addr(remote), "{remote}");
        }
    }
}
