//! The worker client examples (issue 6), end to end: the Python client
//! (examples/python/worker_client.py, grpcio, stubs generated from the proto
//! for this run), the Node one (examples/node/worker_client.js,
//! @grpc/grpc-js) and the Rust one (examples/worker_client.rs) read a secret
//! from the real daemon over a Unix socket with a token, and over TCP with
//! TLS (a token, or a client certificate), and fail with the documented exit
//! code and message on a wrong token, a missing secret, a refused namespace
//! and an unreachable daemon.
//!
//! The Python and Node clients open their Unix socket channel with no option
//! at all (issue 12, item 5): grpcio sends the %-encoded socket path as the
//! HTTP/2 `:authority`, which secretd must accept on its socket.
//!
//! The Python client needs SECRETD_TEST_PYTHON, an interpreter with
//! examples/python/requirements.txt installed (`scripts/python-client-deps.sh`
//! installs them into .venv-test and prints it); the Node client needs
//! SECRETD_TEST_NODE, the node binary, with examples/node's packages
//! installed (`scripts/node-client-deps.sh`). Without one the test fails
//! under CI=true and skips that client loudly otherwise.
//!
//! The Rust example runs from target/<profile>/examples/worker_client,
//! which `cargo build --example worker_client` makes (scripts/test.sh runs
//! it before the tests). Cargo gives tests no CARGO_BIN_EXE_ for examples;
//! `cargo test --all-targets` compiles examples only as test harnesses (so it
//! proves the example compiles, not that it works); and a cargo run from
//! inside a test contends for the target directory's lock and rebuilds
//! dependencies under the test's environment. So when that binary is missing
//! or older than its source, the Rust half fails under CI=true and is skipped
//! loudly otherwise.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::{admin_account, pki::Pki, token_hash, unix_channel, Auth, Client, Daemon, ADMIN_TOKEN};
use secretd::proto::secret_broker_client::SecretBrokerClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// What the workers read: not ASCII, to show the value comes out byte for byte.
const VALUE: &str = "s3cr3t value: ünïcödé ✓";

fn worker_token() -> String {
    format!("sdt_{:A<43}", "workerTokenForTheClientExamples")
}

fn wrong_token() -> String {
    format!("sdt_{:B<43}", "notTheWorkerToken")
}

/// The admin and a worker token limited to `company.team*`.
fn accounts() -> String {
    format!(
        "{}    - name: etl-worker\n      service: WORKER\n      permissions: [read]\n      namespaces: [\"company.team*\"]\n      token-sha256: {}\n",
        admin_account(),
        token_hash(&worker_token())
    )
}

/// Those, and client certificates of the etl service account (TLS only).
fn accounts_and_certificates() -> String {
    format!(
        "{}  certificates:\n    - uri-san: \"spiffe://example.org/ns/etl/sa/*\"\n      principal:\n        name: etl-cert\n        service: WORKER\n        permissions: [read]\n",
        accounts()
    )
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One of the two example clients, ready to be given arguments.
enum Example {
    Python { python: PathBuf, stubs: PathBuf },
    Node(PathBuf),
    Rust(PathBuf),
}

struct Outcome {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Example {
    fn name(&self) -> &'static str {
        match self {
            Example::Python { .. } => "python",
            Example::Node(_) => "node",
            Example::Rust(_) => "rust",
        }
    }

    /// Runs the client with `args`, and SECRETD_TOKEN set to `token` when given.
    fn run(&self, args: &[&str], token: Option<&str>) -> Outcome {
        let mut cmd = match self {
            Example::Python { python, stubs } => {
                let mut cmd = Command::new(python);
                cmd.arg(root().join("examples/python/worker_client.py")).env("SECRETD_PY_STUBS", stubs);
                cmd
            }
            Example::Node(node) => {
                let mut cmd = Command::new(node);
                cmd.arg(root().join("examples/node/worker_client.js"));
                cmd
            }
            Example::Rust(bin) => Command::new(bin),
        };
        for var in ["SECRETD_TOKEN", "SECRETD_ADDR", "SECRETD_NAMESPACE", "SECRETD_TENANT", "GRPC_VERBOSITY"] {
            cmd.env_remove(var);
        }
        if let Some(token) = token {
            cmd.env("SECRETD_TOKEN", token);
        }
        let out = cmd.args(args).output().unwrap_or_else(|e| panic!("running the {} client: {e}", self.name()));
        Outcome {
            code: out.status.code().expect("the client exited by itself"),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Expects the value on stdout and nothing on stderr.
    fn reads(&self, what: &str, args: &[&str], token: Option<&str>) {
        let out = self.run(args, token);
        assert_eq!(
            (out.code, String::from_utf8_lossy(&out.stdout).as_ref(), out.stderr.as_str()),
            (0, VALUE, ""),
            "{} client, {what}",
            self.name()
        );
    }

    /// Expects exit `code` and one `error: CODE_NAME: ...` line on stderr, no value.
    fn fails(&self, what: &str, args: &[&str], token: Option<&str>, code: i32, code_name: &str) {
        let out = self.run(args, token);
        let ctx = format!("{} client, {what}: exit {}, stderr {:?}", self.name(), out.code, out.stderr);
        assert_eq!(out.code, code, "{ctx}");
        assert!(out.stdout.is_empty(), "{ctx}: printed {:?}", String::from_utf8_lossy(&out.stdout));
        assert!(out.stderr.starts_with(&format!("error: {code_name}: ")), "{ctx}");
        assert_eq!(out.stderr.trim_end().lines().count(), 1, "{ctx}");
        assert!(!out.stderr.contains(&worker_token()[4..]) && !out.stderr.contains(VALUE), "{ctx}: a secret leaked");
    }
}

/// The clients to run: Python when SECRETD_TEST_PYTHON is set (generating its
/// stubs into `stubs` with examples/python/generate.sh), Node when
/// SECRETD_TEST_NODE is set, Rust when built; under CI=true all three, or the
/// test fails.
fn examples(stubs: &Path) -> Vec<Example> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut found = Vec::new();
    match std::env::var_os("SECRETD_TEST_PYTHON").filter(|p| !p.is_empty()) {
        Some(python) => {
            let out = Command::new("bash")
                .arg(root().join("examples/python/generate.sh"))
                .arg(stubs)
                .env("PYTHON", &python)
                .output()
                .expect("running examples/python/generate.sh");
            assert!(out.status.success(), "generate.sh failed: {}", String::from_utf8_lossy(&out.stderr));
            assert!(stubs.join("secretd/v1/broker_pb2_grpc.py").is_file(), "generate.sh made no stubs");
            found.push(Example::Python { python: python.into(), stubs: stubs.to_owned() });
        }
        None if ci => panic!(
            "SECRETD_TEST_PYTHON is not set: CI must test the Python client (scripts/python-client-deps.sh installs it)"
        ),
        None => eprintln!(
            "\n*** SKIPPING the Python client: SECRETD_TEST_PYTHON is not set. Run `export $(scripts/python-client-deps.sh)` first. ***\n"
        ),
    }
    match std::env::var_os("SECRETD_TEST_NODE").filter(|p| !p.is_empty()) {
        Some(node) => {
            let modules = root().join("examples/node/node_modules/@grpc/grpc-js/package.json");
            assert!(modules.is_file(), "{} is missing: run scripts/node-client-deps.sh", modules.display());
            found.push(Example::Node(node.into()));
        }
        None if ci => panic!(
            "SECRETD_TEST_NODE is not set: CI must test the Node client (scripts/node-client-deps.sh installs it)"
        ),
        None => eprintln!(
            "\n*** SKIPPING the Node client: SECRETD_TEST_NODE is not set. Run `export $(scripts/node-client-deps.sh)` first. ***\n"
        ),
    }
    let bin = Path::new(common::bin()).parent().unwrap().join("examples/worker_client");
    let fresh = |bin: &Path| {
        let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok()?;
        let source = std::fs::metadata(root().join("examples/worker_client.rs")).and_then(|m| m.modified()).ok()?;
        (built >= source).then_some(())
    };
    match fresh(&bin) {
        Some(()) => found.push(Example::Rust(bin)),
        None if ci => panic!(
            "{} is missing or older than its source: CI must run the Rust example (`cargo build --example worker_client` first)",
            bin.display()
        ),
        None => eprintln!(
            "\n*** SKIPPING the Rust example: {} is missing or older than its source; run `cargo build --example worker_client` first. ***\n",
            bin.display()
        ),
    }
    found
}

async fn put_as_admin(channel: Channel, ns: &str, key: &str) {
    let mut admin: Client = SecretBrokerClient::with_interceptor(channel, Auth::bearer(ADMIN_TOKEN));
    common::put(&mut admin, ns, key, VALUE.as_bytes()).await.expect("the admin puts the secret");
}

#[tokio::test]
async fn worker_clients_read_a_secret_over_a_unix_socket_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let clients = examples(&dir.path().join("stubs"));
    if clients.is_empty() {
        return;
    }
    let socket = dir.path().join("secretd.sock");
    let server = format!("server:\n  listen: unix://{}\n", socket.display());
    let daemon = Daemon::configured(dir.path(), &server, "", "", &accounts());
    // Stored in company.team, read from company.team.etl: found in the parent.
    put_as_admin(unix_channel(&socket).await, "company.team", "db/password").await;
    put_as_admin(unix_channel(&socket).await, "other", "db/password").await;

    let addr = format!("unix://{}", socket.display());
    let token = worker_token();
    let (token_file, wrong_file) = (dir.path().join("worker.token"), dir.path().join("wrong.token"));
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::write(&wrong_file, wrong_token()).unwrap();
    let (token_file, wrong_file) = (token_file.to_str().unwrap(), wrong_file.to_str().unwrap());
    let read = ["--addr", &addr, "-n", "company.team.etl", "db/password"];
    let with_file = |file| [&["--token-file", file][..], &read[..]].concat();
    for client in &clients {
        client.reads("token from SECRETD_TOKEN", &read, Some(&token));
        client.reads("token from --token-file", &with_file(token_file), None);
        client.fails("a wrong token", &with_file(wrong_file), None, 5, "UNAUTHENTICATED");
        client.fails("no token", &read, None, 5, "UNAUTHENTICATED");
        let missing = ["--addr", &addr, "-n", "company.team.etl", "absent"];
        client.fails("a missing secret", &missing, Some(&token), 3, "NOT_FOUND");
        let other = ["--addr", &addr, "-n", "other", "db/password"];
        client.fails("outside its namespaces", &other, Some(&token), 4, "PERMISSION_DENIED");
        let gone = ["--addr", "unix:///nonexistent/secretd.sock", "-n", "company.team", "db/password"];
        client.fails("no daemon at that socket", &gone, Some(&token), 6, "UNAVAILABLE");
    }
    drop(daemon);
}

#[tokio::test]
async fn worker_clients_read_a_secret_over_tls_with_a_token_or_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let clients = examples(&dir.path().join("stubs"));
    if clients.is_empty() {
        return;
    }
    let pki = Pki::new(dir.path());
    let server = format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n    client-authentication: want\n    client-ca: {}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display()
    );
    let daemon = Daemon::configured(dir.path(), &server, "", "", &accounts_and_certificates());
    let port = daemon.addr.rsplit(':').next().unwrap().to_owned();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()))
        .domain_name("localhost");
    let endpoint = Endpoint::from_shared(format!("https://localhost:{port}")).unwrap().tls_config(tls).unwrap();
    put_as_admin(endpoint.connect().await.expect("connect over TLS"), "company.team", "db/password").await;

    let (cert, key) = pki.client("etl-7", Some("spiffe://example.org/ns/etl/sa/worker"));
    let (cert_file, key_file) = (dir.path().join("worker.pem"), dir.path().join("worker.key"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let addr = format!("https://localhost:{port}");
    let ca = pki.ca.to_str().unwrap();
    let tls_args = ["--addr", &addr, "--ca-cert", ca, "-n", "company.team.etl", "db/password"];
    let (cert_file, key_file) = (cert_file.to_str().unwrap(), key_file.to_str().unwrap());
    let mtls_args = [&tls_args[..], &["--client-cert", cert_file, "--client-key", key_file]].concat();
    // A CA that did not sign the daemon's certificate: no connection at all.
    let stranger = dir.path().join("stranger");
    std::fs::create_dir_all(&stranger).unwrap();
    let other_ca = Pki::new(&stranger).ca;
    let bad_ca = ["--addr", &addr, "--ca-cert", other_ca.to_str().unwrap(), "-n", "company.team", "db/password"];
    let token = worker_token();
    for client in &clients {
        client.reads("TLS and a token", &tls_args, Some(&token));
        client.reads("mutual TLS, no token", &mtls_args, None);
        client.fails("TLS and a wrong token", &tls_args, Some(&wrong_token()), 5, "UNAUTHENTICATED");
        client.fails("TLS without credentials", &tls_args, None, 5, "UNAUTHENTICATED");
        client.fails("an unknown server certificate", &bad_ca, Some(&token), 6, "UNAVAILABLE");
    }
    drop(daemon);
}
