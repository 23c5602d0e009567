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
use clap::{Args, Parser, Subcommand};
use secretd::{
    config::{self, DevPaths},
    proto::{self, secret_broker_client::SecretBrokerClient},
    status::code_name,
};
use tonic::transport::Channel;

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
    },
    /// Print a secret's raw value on stdout.
    Get {
        #[command(flatten)]
        target: Target,
        /// A pinned version; the latest by default.
        #[arg(long)]
        version: Option<String>,
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
        #[arg(long, short = 'n', env = "SECRETD_NAMESPACE", default_value = "default")]
        namespace: String,
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
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file without starting anything.
    Check {
        #[arg(env = "SECRETD_CONFIG")]
        file: PathBuf,
    },
}

#[derive(Args)]
struct Connection {
    /// The daemon's address.
    #[arg(long, env = "SECRETD_ADDR", default_value = "127.0.0.1:7878", global = true)]
    addr: String,
}

#[derive(Args)]
struct Target {
    #[command(flatten)]
    conn: Connection,
    /// The secret's key, like db/password.
    key: String,
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
        Command::Serve { config, data_dir, listen } => serve(config.as_deref(), &data_dir, listen).await,
        Command::Keygen => {
            println!("{}", secretd::keygen());
            Ok(())
        }
        Command::Config { command: ConfigCommand::Check { file } } => {
            let config = config::load_file(&file)?;
            if !secretd::backends::is_built_in(config.secret.backend) {
                bail!(
                    "{}: secret.type: {} is valid but not available in this build of secretd",
                    file.display(),
                    config.secret.backend.as_str()
                );
            }
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::Get { target, version } => {
            let mut client = connect(&target.conn).await?;
            let response = client
                .get_secret(proto::GetSecretRequest {
                    tenant: target.tenant,
                    namespace: target.namespace,
                    key: target.key,
                    version: version.unwrap_or_default(),
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

fn format_time(t: prost_types::Timestamp) -> String {
    let Ok(secs) = u64::try_from(t.seconds) else { return String::new() };
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
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

async fn connect(conn: &Connection) -> anyhow::Result<SecretBrokerClient<Channel>> {
    let uri = if conn.addr.contains("://") { conn.addr.clone() } else { format!("http://{}", conn.addr) };
    let channel = Channel::from_shared(uri.clone())
        .with_context(|| format!("--addr {}: not a valid address", conn.addr))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("UNAVAILABLE: cannot connect to secretd at {uri}: {e}"))?;
    Ok(SecretBrokerClient::new(channel))
}

async fn serve(config_path: Option<&Path>, data_dir: &Path, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    init_logging();
    let mut config = match config_path {
        Some(path) => {
            let config = config::load_file(path)?;
            tracing::info!(config = %path.display(), backend = config.secret.backend.as_str(), "configuration loaded");
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
                "DEV MODE: no configuration file given; serving a local SQLite store on loopback only. \
                 Pass --config (or SECRETD_CONFIG) for anything else."
            );
            config
        }
    };
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    if !config.server.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.server.listen, "listening beyond loopback without TLS or authentication");
    }
    let broker = secretd::build_broker(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("server.listen: cannot listen on {}", config.server.listen))?;
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(addr = %local, "secretd listening");
    secretd::server::run(broker, listener, config.server.health_check_interval, shutdown_signal()).await?;
    tracing::info!("secretd stopped");
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("SECRETD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
