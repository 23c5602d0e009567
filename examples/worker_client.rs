//! A worker reads one secret from secretd: the smallest complete client.
//!
//! ```sh
//! # Over the local Unix socket (the sidecar setup), with a service-account token:
//! SECRETD_TOKEN=sdt_... cargo run --example worker_client -- -n company.team.etl db/password
//! # Over TCP with TLS; add --client-cert/--client-key for mutual TLS:
//! cargo run --example worker_client -- --addr https://secretd.internal:7878 --ca-cert ca.pem \
//!     --token-file /run/secrets/secretd.token -n company.team.etl db/password
//! ```
//!
//! Exit codes (the Python client in examples/python uses the same): 0 the value was printed,
//! 3 NOT_FOUND, 4 PERMISSION_DENIED, 5 UNAUTHENTICATED, 6 UNAVAILABLE, 1 anything else,
//! 2 bad arguments.

use std::{io::Write, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{CommandFactory, Parser};
use hyper_util::rt::TokioIo;
use secretd::proto::{secret_broker_client::SecretBrokerClient, GetSecretRequest};
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
    Code,
};

/// For connecting, and for the whole call.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(name = "worker_client", about = "Read one secret from secretd and print its value")]
struct Args {
    /// `unix:///PATH`, or `https://HOST:PORT` (needs --ca-cert), or `http://HOST:PORT` (loopback dev only).
    #[arg(long, env = "SECRETD_ADDR", default_value = "unix:///run/secretd/secretd.sock")]
    addr: String,
    /// The CA that signed the daemon's certificate (PEM), for https://.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// This worker's certificate (PEM), when the daemon asks for mutual TLS.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The private key of --client-cert (PEM).
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// A file holding the token. Otherwise SECRETD_TOKEN; with neither, no token is sent and the
    /// daemon goes by the socket peer's uid or the client certificate.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Where to look first; the parent namespaces are searched after it.
    #[arg(short, long, env = "SECRETD_NAMESPACE")]
    namespace: String,
    /// Empty means `main`.
    #[arg(long, env = "SECRETD_TENANT", default_value = "")]
    tenant: String,
    /// The secret's key, like `db/password`.
    key: String,
}

/// A channel to the daemon: a Unix socket, or TCP with (optionally mutual) TLS. It connects
/// lazily, on the first call, so an unreachable daemon is that call's UNAVAILABLE; an error
/// here is a configuration mistake.
fn channel(args: &Args) -> anyhow::Result<Channel> {
    if let Some(path) = args.addr.strip_prefix("unix://") {
        // The URI is a placeholder; the connector dials the socket instead.
        let path = PathBuf::from(path);
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        });
        return Ok(Endpoint::from_static("http://secretd.local")
            .timeout(TIMEOUT)
            .connect_with_connector_lazy(connector));
    }
    let mut endpoint = Endpoint::from_shared(args.addr.clone())
        .with_context(|| format!("--addr {}: expected unix://, https:// or http://", args.addr))?
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT);
    if args.addr.starts_with("https://") {
        let ca = args.ca_cert.as_ref().context("https:// needs --ca-cert")?; // checked in main
        let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    Ok(endpoint.connect_lazy())
}

/// `Bearer <token>` from --token-file or SECRETD_TOKEN, or nothing. Never take a token as an
/// argument: other local users can read the process list.
fn token_header(args: &Args) -> anyhow::Result<Option<MetadataValue<Ascii>>> {
    let token = match &args.token_file {
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("--token-file {}", path.display()))?),
        None => std::env::var("SECRETD_TOKEN").ok(),
    };
    let header = token.map(|t| MetadataValue::try_from(format!("Bearer {}", t.trim())));
    header.transpose().context("the token holds characters a header cannot carry")
}

/// A message a worker's operator can act on, and an exit code a supervisor can branch on.
fn explain(status: &tonic::Status, args: &Args) -> (String, u8) {
    let (ns, key) = (&args.namespace, &args.key);
    let (what, code) = match status.code() {
        Code::NotFound => (format!("no secret {key} in {ns} or its parent namespaces"), 3),
        Code::PermissionDenied => (format!("this worker may not read {ns}/{key}"), 4),
        Code::Unauthenticated => ("the token is missing, unknown, expired or revoked".to_owned(), 5),
        Code::Unavailable => (format!("secretd at {} or its backend cannot be reached; retry later", args.addr), 6),
        _ => ("the call failed".to_owned(), 1),
    };
    (format!("{}: {what} ({})", secretd::status::code_name(status.code()), status.message()), code)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.addr.starts_with("https://") && args.ca_cert.is_none() {
        Args::command().error(clap::error::ErrorKind::MissingRequiredArgument, "https:// needs --ca-cert").exit();
    }
    let header = match token_header(&args) {
        Ok(header) => header,
        Err(e) => return fail(&format!("{e:#}"), 1),
    };
    let channel = match channel(&args) {
        Ok(channel) => channel,
        Err(e) => return fail(&format!("{e:#}"), 1),
    };
    // Every call carries `authorization: Bearer <token>`.
    let mut client = SecretBrokerClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(header) = &header {
            req.metadata_mut().insert("authorization", header.clone());
        }
        Ok(req)
    });
    let request = GetSecretRequest {
        tenant: args.tenant.clone(),
        namespace: args.namespace.clone(),
        key: args.key.clone(),
        version: String::new(), // the latest
        ..Default::default()    // no max_age, no refresh: the cache may answer
    };
    match client.get_secret(request).await {
        // Printing the value is this example's whole point. A real worker keeps it in memory,
        // hands it to what needs it, and never prints or logs it.
        Ok(response) => {
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(&response.into_inner().value).and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&format!("writing the value: {e}"), 1),
            }
        }
        Err(status) => {
            let (message, code) = explain(&status, &args);
            fail(&message, code)
        }
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}
