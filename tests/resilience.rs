//! Resilience against real backends that go away and come back: the real
//! daemon on a dedicated OpenBao (Vault's API) or moto (Secrets Manager's
//! API) that each test starts itself, SIGKILLs and starts again on the same
//! port.
//!
//! - During an outage, expired cache entries are served stale
//!   (`SOURCE_STALE`, with their age), under load, without a single error.
//! - Once the circuit breaker is open, keys with nothing cached fail fast
//!   with UNAVAILABLE.
//! - When the backend is back, fresh values are read again, without
//!   restarting the daemon.
//! - A thousand concurrent misses of one key make one read on the server,
//!   counted in OpenBao's own audit log.
//! - Callers whose `grpc-timeout` is shorter than a slow backend's answer
//!   (PostgreSQL behind a delaying proxy) do not open the breaker.
//!
//! The server binaries come from `scripts/test.sh` (`SECRETD_TEST_BAO`,
//! `SECRETD_TEST_MOTO`, and `SECRETD_TEST_POSTGRES_URL`). Without them a test fails under `CI=true` and
//! otherwise says loudly that it skipped.

mod common;

use std::{
    collections::BTreeSet,
    fs::File,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use common::{admin_account, free_port_pair, get, indent, put, Client, Daemon};
use secretd::proto::{GetSecretRequest, GetSecretResponse, PutSecretRequest, Source};
use secretd_core::{ErrorKind, SecretName, SecretStore, SecretValue, Tags};
use tonic::Code;

/// The dev server's root token (fixed, so a restarted server takes the
/// daemon's token again).
const ROOT_TOKEN: &str = "resilience-root";
/// One segment: no parent namespace to fall back to.
const NAMESPACE: &str = "resilience";
const KEYS: usize = 100;
const STALE_CALLS: usize = 10_000;
const CONCURRENCY: usize = 50;
const CHANNELS: usize = 5;
/// `secret.cache.expire-after-write` of the outage tests.
const TTL: Duration = Duration::from_secs(1);
/// `circuit-breaker.open-for` of the outage tests.
const OPEN_FOR: Duration = Duration::from_secs(1);
/// What "fail fast" means for a key with nothing cached.
const FAST: Duration = Duration::from_millis(100);
/// How long the daemon may take to read fresh values once the backend is
/// back.
const RECOVERY: Duration = Duration::from_secs(10);
/// The outage tests' per-backend settings, in the backend's block.
const BREAKER: &str = "timeout: 500ms\ncircuit-breaker: {failure-threshold: 3, open-for: 1s}\n";

fn server_binary(var: &str) -> Option<String> {
    server_from_env(var)
}

fn server_from_env(var: &str) -> Option<String> {
    secretd_core::conformance::server_from_env(var)
}

fn key(i: usize) -> String {
    format!("key-{i:03}")
}

fn old_value(i: usize) -> String {
    format!("before-the-outage-{i}")
}

fn new_value(i: usize) -> String {
    format!("after-the-outage-{i}")
}

/// One plain HTTP/1.0 request: status and body, or `None` when nothing
/// answers.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Option<(u16, String)> {
    let addr = addr.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok())?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// A GET on the daemon's admin listener.
fn admin_get(daemon: &Daemon, path: &str) -> (u16, String) {
    http(&daemon.admin_url(), "GET", path, &[], "").expect("the admin listener answers")
}

/// The value of the first sample of `name` (with or without labels).
fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn breaker_state(daemon: &Daemon) -> Option<f64> {
    metric(&admin_get(daemon, "/metrics").1, "secretd_circuit_breaker_state{backend=\"default\"}")
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

fn age(response: &GetSecretResponse) -> Duration {
    response.age.map(|a| Duration::try_from(a).expect("a non-negative age")).unwrap_or_default()
}

fn source_name(source: i32) -> String {
    Source::try_from(source).map(|s| s.as_str_name().to_owned()).unwrap_or_else(|_| format!("unknown source {source}"))
}

/// Starts a daemon on `secret_block` (the backend's part of `secret:`)
/// with `cache` as `secret.cache`, health-checking the backend every 200 ms.
fn start_daemon(dir: &Path, secret_block: &str, cache: &str) -> Daemon {
    let config = format!(
        "server:\n  listen: 127.0.0.1:0\n  liveness: {{interval: 200ms, timeout: 1s}}\nsecret:\n{}  cache:\n{}{}",
        indent(secret_block, 2),
        indent(cache, 4),
        admin_account()
    );
    let path = dir.join("resilience.yaml");
    std::fs::write(&path, config).unwrap();
    Daemon::start(&["serve", "--config", path.to_str().unwrap()], dir)
}

/// Clients on `n` connections of their own.
async fn clients(daemon: &Daemon, n: usize) -> Vec<Client> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        all.push(daemon.client().await);
    }
    all
}

/// A server process of the test's own, on a fixed port, so that it can be
/// killed and started again where the daemon expects it. Killed on drop.
struct Server {
    what: &'static str,
    program: String,
    args: Vec<String>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn new(what: &'static str, program: &str, args: Vec<String>, port: u16, dir: &Path) -> Server {
        let log = dir.join(format!("{what}-{port}.log"));
        Server { what, program: program.to_owned(), args, port, log, child: None }
    }

    fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is running already", self.what);
        let log = File::options().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({}): {e}", self.what, self.program));
        self.child = Some(child);
    }

    /// SIGKILL, by PID: the server says no goodbye to the daemon.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until `ready` holds, failing early if the process died.
    async fn wait_ready(&mut self, timeout: Duration, mut ready: impl FnMut(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        let addr = self.addr();
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("{} exited ({status}); its log:\n{}", self.what, self.log_tail());
            }
            if ready(&addr) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not become ready in {timeout:?}; its log:\n{}", self.what, self.log_tail());
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A dedicated OpenBao dev server (in memory, KV v2 at `secret/`) with a
/// fixed root token; `config` is an extra configuration file, if any.
async fn start_bao(binary: &str, dir: &Path, config: Option<&Path>) -> Server {
    let port = free_port_pair();
    let mut args = vec![
        "server".to_owned(),
        "-dev".to_owned(),
        format!("-dev-root-token-id={ROOT_TOKEN}"),
        format!("-dev-listen-address=127.0.0.1:{port}"),
    ];
    if let Some(config) = config {
        args.push(format!("-config={}", config.display()));
    }
    let mut bao = Server::new("bao", binary, args, port, dir);
    bao_up(&mut bao).await;
    bao
}

/// Starts (or restarts) bao and waits until its KV v2 mount answers.
async fn bao_up(bao: &mut Server) {
    bao.spawn();
    bao.wait_ready(Duration::from_secs(30), |addr| {
        http(addr, "GET", "/v1/secret/config", &[("X-Vault-Token", ROOT_TOKEN)], "").is_some_and(|(s, _)| s == 200)
    })
    .await;
}

/// A dedicated moto server (in memory).
async fn start_moto(binary: &str, dir: &Path) -> Server {
    let port = free_port_pair();
    let args = vec!["-H".to_owned(), "127.0.0.1".to_owned(), "-p".to_owned(), port.to_string()];
    let mut moto = Server::new("moto", binary, args, port, dir);
    moto_up(&mut moto).await;
    moto
}

/// Starts (or restarts) moto and waits until Secrets Manager answers
/// through the SDK: its first call loads the service, which takes longer
/// than the daemon's 500 ms timeout.
async fn moto_up(moto: &mut Server) {
    moto.spawn();
    moto.wait_ready(Duration::from_secs(30), |addr| http(addr, "GET", "/moto-api/", &[], "").is_some()).await;
    let store = aws_store(&moto.addr()).await;
    let probe = SecretName::parse("", NAMESPACE, "warm-up").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.get(&probe, None).await {
            Err(e) if e.kind() == ErrorKind::NotFound => return,
            other => assert!(Instant::now() < deadline, "moto does not answer Secrets Manager calls: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn vault_store(addr: &str) -> secretd_vault::VaultStore {
    let mut options = secretd_vault::VaultOptions::new(
        addr.to_owned(),
        secretd_vault::VaultAuth::Token(secrecy::SecretString::from(ROOT_TOKEN.to_owned()).into()),
    );
    options.path_prefix = secretd_vault::PathPrefix::new("secretd").unwrap();
    secretd_vault::VaultStore::connect(options).await.expect("connect to bao")
}

async fn aws_store(endpoint: &str) -> secretd_aws::AwsStore {
    let mut options = secretd_aws::AwsOptions::new("us-east-1");
    options.endpoint = Some(endpoint.to_owned());
    options.credentials = Some(secretd_aws::StaticCredentials {
        access_key_id: secrecy::SecretString::from("AKIDSECRETDE2E").into(),
        secret_access_key: secrecy::SecretString::from("e2e-secret-access-key").into(),
        session_token: None,
    });
    secretd_aws::AwsStore::connect(options).await.expect("an AWS client for moto")
}

/// Writes `entries` (key, value) straight into the backend, where the
/// daemon reads them, retrying each until the server takes it.
async fn write_directly(store: &impl SecretStore, entries: &[(String, String)]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for (key, value) in entries {
        let name = SecretName::parse("", NAMESPACE, key).unwrap();
        let value = SecretValue::new(value.as_bytes().to_vec());
        loop {
            match store.put(&name, &value, &Tags::new(), None).await {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "writing {key} straight to the backend: {e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The backend under the outage story.
enum Backend {
    Vault(Server),
    Aws(Server),
}

impl Backend {
    fn server(&mut self) -> &mut Server {
        match self {
            Backend::Vault(s) | Backend::Aws(s) => s,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Vault(_) => "vault",
            Backend::Aws(_) => "aws",
        }
    }

    /// The backend's part of the daemon's `secret:` block.
    fn secret_block(&mut self) -> String {
        let addr = self.server().addr();
        match self {
            Backend::Vault(_) => format!(
                "type: vault\nvault:\n  address: {addr}\n  mount: secret\n  path-prefix: secretd\n  \
                 token: {{token: {ROOT_TOKEN}}}\n{}",
                indent(BREAKER, 2)
            ),
            Backend::Aws(_) => format!(
                "type: aws-secret-manager\naws-secret-manager:\n  region: us-east-1\n  endpoint: {addr}\n  \
                 access-key-id: AKIDSECRETDE2E\n  secret-key-id: e2e-secret-access-key\n  name-prefix: secretd/\n{}",
                indent(BREAKER, 2)
            ),
        }
    }

    /// Starts the killed server again on the same port; being in memory,
    /// it comes back empty.
    async fn restart(&mut self) {
        match self {
            Backend::Vault(s) => bao_up(s).await,
            Backend::Aws(s) => moto_up(s).await,
        }
    }

    async fn write_directly(&mut self, entries: &[(String, String)]) {
        let addr = self.server().addr();
        match self {
            Backend::Vault(_) => write_directly(&vault_store(&addr).await, entries).await,
            Backend::Aws(_) => write_directly(&aws_store(&addr).await, entries).await,
        }
    }
}

/// What a burst of reads during the outage saw.
#[derive(Default)]
struct Tally {
    calls: usize,
    errors: usize,
    not_stale: usize,
    wrong_value: usize,
    min_age: Option<Duration>,
    max_latency: Duration,
    /// The first few problems, for the failure message.
    examples: Vec<String>,
}

impl Tally {
    fn note(&mut self, problem: String) {
        if self.examples.len() < 10 {
            self.examples.push(problem);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.not_stale += other.not_stale;
        self.wrong_value += other.wrong_value;
        self.min_age = match (self.min_age, other.min_age) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_latency = self.max_latency.max(other.max_latency);
        for e in other.examples {
            self.note(e);
        }
    }
}

/// `STALE_CALLS` reads over the `KEYS` keys, `CONCURRENCY` at a time over
/// the given connections; each must be the value read before the outage.
async fn stale_burst(clients: &[Client]) -> Tally {
    let mut workers = Vec::new();
    for w in 0..CONCURRENCY {
        let mut c = clients[w % clients.len()].clone();
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for call in (w..STALE_CALLS).step_by(CONCURRENCY) {
                let i = call % KEYS;
                let started = Instant::now();
                let answer = get(&mut c, NAMESPACE, &key(i)).await;
                tally.max_latency = tally.max_latency.max(started.elapsed());
                tally.calls += 1;
                match answer {
                    Err(e) => {
                        tally.errors += 1;
                        tally.note(format!("{}: {:?} {}", key(i), e.code(), e.message()));
                    }
                    Ok(got) => {
                        if got.value != old_value(i).as_bytes() {
                            tally.wrong_value += 1;
                            tally.note(format!("{}: value {:?}", key(i), String::from_utf8_lossy(&got.value)));
                        }
                        if got.source != Source::Stale as i32 {
                            tally.not_stale += 1;
                            tally.note(format!("{}: source {}", key(i), source_name(got.source)));
                        }
                        let age = age(&got);
                        tally.min_age = Some(tally.min_age.map_or(age, |m| m.min(age)));
                    }
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for w in workers {
        total.merge(w.await.expect("a reader task panicked"));
    }
    total
}

/// The whole story on one backend: values read, backend killed, stale
/// answers under load, fail-fast misses with the breaker open, backend back
/// with new values, fresh reads without a daemon restart.
async fn outage_story(mut backend: Backend) {
    let name = backend.name();
    let dir = tempfile::tempdir().unwrap();
    let daemon =
        start_daemon(dir.path(), &backend.secret_block(), "enabled: true\nexpire-after-write: 1s\nrefresh-ahead: 0\n");
    let clients = clients(&daemon, CHANNELS).await;
    let mut c = clients[0].clone();

    // Values through the daemon, each then read once from the backend.
    let warm = Instant::now();
    for i in 0..KEYS {
        put(&mut c, NAMESPACE, &key(i), old_value(i).as_bytes())
            .await
            .unwrap_or_else(|e| panic!("put {}: {e:?}", key(i)));
    }
    for i in 0..KEYS {
        let got = get(&mut c, NAMESPACE, &key(i)).await.unwrap_or_else(|e| panic!("get {}: {e:?}", key(i)));
        assert_eq!(got.value, old_value(i).as_bytes());
        assert_eq!(got.source, Source::Backend as i32, "the first read after a put comes from the backend");
    }
    eprintln!("[{name}] {KEYS} puts and reads through the daemon in {:?}", warm.elapsed());
    let before = admin_get(&daemon, "/metrics").1;

    // The outage: every cache entry expires while the backend is gone.
    backend.server().kill();
    tokio::time::sleep(TTL + Duration::from_millis(500)).await;

    let started = Instant::now();
    let tally = stale_burst(&clients).await;
    let took = started.elapsed();
    eprintln!(
        "[{name}] {} stale reads in {took:?} ({:.0}/s), slowest {:?}, youngest age {:?}",
        tally.calls,
        tally.calls as f64 / took.as_secs_f64(),
        tally.max_latency,
        tally.min_age
    );
    assert_eq!(tally.calls, STALE_CALLS);
    assert_eq!(
        (tally.errors, tally.not_stale, tally.wrong_value),
        (0, 0, 0),
        "(errors, answers not SOURCE_STALE, wrong values) during the outage; first problems: {:#?}",
        tally.examples
    );
    let youngest = tally.min_age.expect("ages were seen");
    assert!(youngest >= TTL, "a stale answer claims age {youngest:?}, but every value was read over {TTL:?} ago");

    let metrics = admin_get(&daemon, "/metrics").1;
    let stale_serves = metric(&metrics, "secretd_stale_serves_total").expect("secretd_stale_serves_total is exported")
        - metric(&before, "secretd_stale_serves_total").unwrap_or(0.0);
    assert!(stale_serves >= STALE_CALLS as f64, "secretd_stale_serves_total moved by {stale_serves} only");

    // Ready while stale serving covers the outage, saying what is wrong.
    let mut statuses = BTreeSet::new();
    wait_until("/readyz to mention the backend outage", Duration::from_secs(10), || {
        let (status, body) = admin_get(&daemon, "/readyz");
        statuses.insert(status);
        body.contains("backend unavailable")
    })
    .await;
    assert_eq!(statuses, BTreeSet::from([200]), "/readyz must stay 200 while stale values are served");
    let (_, why) = admin_get(&daemon, "/readyz");
    eprintln!("[{name}] /readyz during the outage: {}", why.trim());

    // Keys nothing was cached for: the breaker is open, so UNAVAILABLE at
    // once. First make sure it is open; then let `open-for` pass, so that
    // a probe (this call or the daemon's health check) fails and opens it
    // again for a full `open-for`, within which the measured calls fall.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while breaker_state(&daemon) != Some(2.0) {
        assert!(Instant::now() < deadline, "the circuit breaker did not open: {:?}", breaker_state(&daemon));
        // Nothing is asserted of these: they only feed the breaker.
        let _ = get(&mut c, NAMESPACE, &format!("never-cached-opening-{n}")).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(OPEN_FOR + Duration::from_millis(200)).await;
    let probe = get(&mut c, NAMESPACE, "never-cached-probe").await.expect_err("the backend is still down");
    assert_eq!(probe.code(), Code::Unavailable, "{probe:?}");
    wait_until("a failed probe to open the breaker again", Duration::from_secs(2), || {
        breaker_state(&daemon) == Some(2.0)
    })
    .await;
    let mut latencies = Vec::new();
    for n in 0..20 {
        let started = Instant::now();
        let err = get(&mut c, NAMESPACE, &format!("never-cached-{n}")).await.expect_err("nothing cached, backend down");
        latencies.push(started.elapsed());
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    }
    eprintln!("[{name}] fail-fast misses with the breaker open: {latencies:?}");
    assert!(
        latencies.iter().all(|l| *l < FAST),
        "with the breaker open, a miss must fail in under {FAST:?}: {latencies:?}"
    );

    // The backend comes back empty, on the same port; new values are written
    // to it directly, so only reads through the daemon can bring them.
    backend.restart().await;
    let fresh: Vec<(String, String)> = (0..KEYS).map(|i| (key(i), new_value(i))).collect();
    backend.write_directly(&fresh).await;
    let back = Instant::now();
    let mut pending: BTreeSet<usize> = (0..KEYS).collect();
    let mut sources = BTreeSet::new();
    while !pending.is_empty() && back.elapsed() < RECOVERY {
        for i in pending.clone() {
            let got = get(&mut c, NAMESPACE, &key(i))
                .await
                .unwrap_or_else(|e| panic!("a cached key failed: {}: {e:?}", key(i)));
            if got.source == Source::Stale as i32 {
                assert_eq!(got.value, old_value(i).as_bytes(), "a stale answer is the last value read");
                continue;
            }
            assert!(
                got.source == Source::Backend as i32 || got.source == Source::Cache as i32,
                "{}: source {}",
                key(i),
                source_name(got.source)
            );
            assert_eq!(
                String::from_utf8_lossy(&got.value),
                new_value(i),
                "{}: a fresh ({}) answer with an old value",
                key(i),
                source_name(got.source)
            );
            assert!(age(&got) < TTL, "{}: a fresh answer aged {:?}", key(i), age(&got));
            sources.insert(source_name(got.source));
            pending.remove(&i);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        pending.is_empty(),
        "{} of {KEYS} keys still not fresh {RECOVERY:?} after the backend came back (e.g. {})",
        pending.len(),
        key(*pending.first().unwrap())
    );
    eprintln!("[{name}] all {KEYS} keys fresh {:?} after the backend came back ({sources:?})", back.elapsed());
    wait_until("the circuit breaker to close", Duration::from_secs(5), || breaker_state(&daemon) == Some(0.0)).await;
    wait_until("/readyz to clear", Duration::from_secs(10), || {
        let (status, body) = admin_get(&daemon, "/readyz");
        status == 200 && !body.contains("unavailable")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_outage_serves_stale_then_recovers() {
    let Some(binary) = server_binary("SECRETD_TEST_BAO") else { return };
    let dir = tempfile::tempdir().unwrap();
    let bao = start_bao(&binary, dir.path(), None).await;
    outage_story(Backend::Vault(bao)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_outage_serves_stale_then_recovers() {
    let Some(binary) = server_binary("SECRETD_TEST_MOTO") else { return };
    let dir = tempfile::tempdir().unwrap();
    let moto = start_moto(&binary, dir.path()).await;
    outage_story(Backend::Aws(moto)).await;
}

/// Request entries of `operation` on `path` in a file audit log (one JSON
/// object a line).
fn audited(log: &str, operation: &str, path: &str) -> usize {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "request" && e["request"]["path"] == path && e["request"]["operation"] == operation)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_misses_make_one_vault_call() {
    let Some(binary) = server_binary("SECRETD_TEST_BAO") else { return };
    let dir = tempfile::tempdir().unwrap();
    // OpenBao refuses audit devices through the API: it is declared in
    // the server's configuration instead.
    let audit_log = dir.path().join("audit.log");
    let hcl = dir.path().join("audit.hcl");
    std::fs::write(
        &hcl,
        format!(
            "audit \"file\" \"resilience\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
            audit_log.display()
        ),
    )
    .unwrap();
    let bao = start_bao(&binary, dir.path(), Some(&hcl)).await;
    let data_path = format!("secret/data/secretd/main/{NAMESPACE}/db/password");
    let daemon = start_daemon(
        dir.path(),
        &format!("type: vault\nvault:\n  address: {}\n  timeout: 5s\n  token: {{token: {ROOT_TOKEN}}}\n", bao.addr()),
        "enabled: true\n",
    );
    let clients = clients(&daemon, 10).await;
    let mut c = clients[0].clone();

    // The write invalidates the daemon's cache: the next read is a miss.
    put(&mut c, NAMESPACE, "db/password", b"the-one-value").await.expect("put");
    let before = std::fs::read_to_string(&audit_log).expect("bao writes its audit log");
    assert!(
        audited(&before, "create", &data_path) + audited(&before, "update", &data_path) >= 1,
        "the audit log sees the put"
    );

    let burst = 1000;
    let barrier = Arc::new(tokio::sync::Barrier::new(burst));
    let started = Instant::now();
    let mut calls = Vec::new();
    for n in 0..burst {
        let mut c = clients[n % clients.len()].clone();
        let barrier = barrier.clone();
        calls.push(tokio::spawn(async move {
            barrier.wait().await;
            get(&mut c, NAMESPACE, "db/password").await
        }));
    }
    let mut sources = std::collections::BTreeMap::new();
    for call in calls {
        let got = call.await.unwrap().expect("every concurrent read succeeds");
        assert_eq!(got.value, b"the-one-value".as_slice());
        *sources.entry(source_name(got.source)).or_insert(0) += 1;
    }
    eprintln!("{burst} concurrent reads in {:?}: {sources:?}", started.elapsed());

    let after = std::fs::read_to_string(&audit_log).unwrap();
    // From the last complete line before the burst on.
    let burst_log = &after[before.rfind('\n').map_or(0, |i| i + 1)..];
    let data_reads = audited(burst_log, "read", &data_path);
    let metadata_reads = audited(burst_log, "read", &data_path.replacen("/data/", "/metadata/", 1));
    assert_eq!(
        data_reads, 1,
        "{burst} concurrent misses of one key made {data_reads} reads of {data_path} on the server \
         ({metadata_reads} of its metadata)"
    );
    eprintln!("bao's audit log: {data_reads} data read, {metadata_reads} metadata read for {burst} calls");
}

/// A TCP proxy that hands everything the server sends to the client
/// `delay` late (in order, without slowing the stream down otherwise): a
/// slow but healthy backend. It counts the connections open through it.
struct DelayingProxy {
    addr: std::net::SocketAddr,
    max_open: Arc<std::sync::atomic::AtomicUsize>,
}

impl DelayingProxy {
    /// The most connections that were open through it at once.
    fn max_open(&self) -> usize {
        self.max_open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn delaying_proxy(upstream: String, delay: Duration) -> DelayingProxy {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (open, max_open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counted = max_open.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { continue };
            max_open.fetch_max(open.fetch_add(1, SeqCst) + 1, SeqCst);
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
            let (late, mut due) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
            let open = open.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                    if late.send((tokio::time::Instant::now() + delay, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                open.fetch_sub(1, SeqCst);
            });
            tokio::spawn(async move {
                while let Some((at, bytes)) = due.recv().await {
                    tokio::time::sleep_until(at).await;
                    if client_write.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    DelayingProxy { addr, max_open: counted }
}

/// Issue #12, item 6, over gRPC: callers whose `grpc-timeout` runs out
/// before a slow but healthy backend answers (PostgreSQL behind a proxy
/// that adds 150 ms) do not open the circuit breaker, so a normal caller
/// afterwards is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_grpc_timeouts_on_a_slow_backend_do_not_open_the_breaker() {
    let Some(url) = server_from_env("SECRETD_TEST_POSTGRES_URL") else { return };
    let (scheme_user, rest) = url.split_once('@').expect("postgres://user@host:port/db");
    let (host_port, database) = rest.split_once('/').expect("postgres://user@host:port/db");
    let proxy = delaying_proxy(host_port.to_owned(), Duration::from_millis(150)).await.addr;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "server:\n  listen: 127.0.0.1:0\nsecret:\n  type: jdbc\n  jdbc:\n    url: {scheme_user}@{proxy}/{database}\n    \
         secret: ${{E2E_JDBC_SECRET}}\n    timeout: 5s\n    circuit-breaker: {{failure-threshold: 3, open-for: 60s}}\n{}",
        admin_account()
    );
    let path = dir.path().join("slow.yaml");
    std::fs::write(&path, config).unwrap();
    let daemon = Daemon::start(&["serve", "--config", path.to_str().unwrap()], dir.path());
    let mut c = daemon.client().await;
    let namespace = format!("slow-{}", rand::random::<u32>());
    let request = |key: String| GetSecretRequest { namespace: namespace.clone(), key, ..Default::default() };
    for key in (0..10).map(key).chain(["patient".to_owned()]) {
        let put = PutSecretRequest {
            namespace: namespace.clone(),
            key: key.clone(),
            value: format!("value of {key}").into_bytes().into(),
            ..Default::default()
        };
        c.put_secret(put).await.expect("put");
    }

    let mut codes = BTreeSet::new();
    for i in 0..10 {
        let mut impatient = tonic::Request::new(request(key(i)));
        impatient.set_timeout(Duration::from_millis(30));
        let refused = c.get_secret(impatient).await.expect_err("30 ms is shorter than the backend takes");
        codes.insert(format!("{:?}", refused.code()));
    }
    assert!(!codes.contains("Unavailable"), "a caller's own deadline is not the backend's failure: {codes:?}");
    assert_eq!(breaker_state(&daemon), Some(0.0), "ten impatient callers left the breaker closed");
    let got = c.get_secret(request("patient".into())).await.expect("a normal caller afterwards is served");
    assert_eq!(got.into_inner().value, b"value of patient".as_slice());
    // The reads the impatient callers started went on, and were cached.
    let got = c.get_secret(request(key(0))).await.expect("the read started by an impatient caller");
    assert_eq!(got.into_inner().source, Source::Cache as i32);
    assert_eq!(breaker_state(&daemon), Some(0.0));
}

/// Issue #12, item 18: a Vault listing reads each secret's metadata (for
/// its tags). Those reads go through the backend's rate limit like any
/// call, and at most 16 are in flight at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_listing_is_paced_by_the_rate_limit_and_bounded_in_concurrency() {
    let Some(binary) = server_binary("SECRETD_TEST_BAO") else { return };
    const SECRETS: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let bao = start_bao(&binary, dir.path(), None).await;
    let entries: Vec<(String, String)> = (0..SECRETS).map(|i| (key(i), old_value(i))).collect();
    write_directly(&vault_store(&bao.addr()).await, &entries).await;
    let block = |address: &str, extra: &str| {
        format!(
            "type: vault\nvault:\n  address: {address}\n  mount: secret\n  path-prefix: secretd\n  \
             token: {{token: {ROOT_TOKEN}}}\n{extra}"
        )
    };
    let list = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            let request = secretd::proto::ListSecretsRequest {
                namespace: NAMESPACE.into(),
                page_size: 1000,
                ..Default::default()
            };
            c.list_secrets(request).await.expect("the listing").into_inner().secrets.len()
        }
    };

    // Through a proxy that adds 20 ms to each answer, so reads overlap.
    let proxy = delaying_proxy(bao.addr().trim_start_matches("http://").to_owned(), Duration::from_millis(20)).await;
    let daemon = start_daemon(dir.path(), &block(&format!("http://{}", proxy.addr), ""), "enabled: true\n");
    let mut c = daemon.client().await;
    assert_eq!(list(&mut c).await, SECRETS);
    // 16 reads, plus the health checker's and the listing's own connection.
    let open = proxy.max_open();
    eprintln!("listing {SECRETS} secrets opened at most {open} connections to vault at once");
    assert!(open <= 18, "{open} connections at once: the listing's reads are not bounded");
    drop(daemon);

    // With rate-limit 20/s (burst 1), 60 reads take 3 s at least.
    let limited = block(&bao.addr(), "  rate-limit: {requests-per-second: 20, burst: 1}\n  timeout: 10s\n");
    let daemon = start_daemon(dir.path(), &limited, "enabled: true\n");
    let mut c = daemon.client().await;
    let started = Instant::now();
    assert_eq!(list(&mut c).await, SECRETS);
    let took = started.elapsed();
    eprintln!("listing {SECRETS} secrets at 20 backend calls a second took {took:?}");
    assert!(took >= Duration::from_millis(2_900), "the listing's reads bypassed the rate limit: {took:?}");
}
