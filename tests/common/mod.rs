//! Starts the real `secretd` binary for end-to-end tests and talks to it
//! over gRPC.
//!
//! Each daemon gets its own temp directory and a free loopback port (the
//! daemon binds port 0 and logs the address it got), and is killed when the
//! handle drops. Everything it logs is kept, so tests can inspect it.

#![allow(dead_code)]

pub mod calls;
pub mod pki;

// Not every test binary uses the calls; each one compiles this module.
#[allow(unused_imports)]
pub use calls::*;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

use secretd::proto::{secret_broker_client::SecretBrokerClient, token_admin_client::TokenAdminClient};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{interceptor::InterceptedService, Interceptor},
    transport::Channel,
};

pub const TEST_SECRET: &str = "e2e-test-secret-of-at-least-32-characters";

/// The admin token every test daemon accepts (declared in its config by hash).
pub const ADMIN_TOKEN: &str = "sdt_e2eAdminTokenAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

pub fn token_hash(token: &str) -> String {
    secretd::auth::token::TokenHash::of(token).to_hex()
}

/// The config lines that let [`ADMIN_TOKEN`] in, in every tenant.
pub fn admin_account() -> String {
    format!(
        "auth:\n  service-accounts:\n    - name: test-admin\n      service: ADMIN\n      permissions: [admin]\n      tenants: [\"*\"]\n      token-sha256: {}\n",
        token_hash(ADMIN_TOKEN)
    )
}

/// Sends a fixed `authorization` header, or none.
#[derive(Clone)]
pub struct Auth(pub Option<MetadataValue<Ascii>>);

impl Auth {
    pub fn bearer(token: &str) -> Self {
        Auth(Some(format!("Bearer {token}").parse().unwrap()))
    }

    pub fn raw(header: &str) -> Self {
        Auth(Some(header.parse().unwrap()))
    }

    pub fn none() -> Self {
        Auth(None)
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.0 {
            request.metadata_mut().insert("authorization", h.clone());
        }
        Ok(request)
    }
}

pub type Client = SecretBrokerClient<InterceptedService<Channel, Auth>>;
pub type AdminClient = TokenAdminClient<InterceptedService<Channel, Auth>>;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_secretd")
}

pub struct Daemon {
    child: Child,
    pub addr: String,
    /// The admin listener's address (logged just before `addr`).
    admin: Arc<Mutex<Option<String>>>,
    pub dir: PathBuf,
    pub logs: Arc<Mutex<Vec<String>>>,
    _temp: Option<tempfile::TempDir>,
}

impl Daemon {
    /// A daemon on SQLite in a fresh temp dir; `extra` is YAML spliced into
    /// the `secret:` block (indented by two spaces), `jdbc_extra` into
    /// `secret.jdbc`. It accepts [`ADMIN_TOKEN`].
    pub fn sqlite(extra: &str, jdbc_extra: &str) -> Daemon {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_owned();
        let mut d = Self::sqlite_in(&dir, extra, jdbc_extra);
        d._temp = Some(temp);
        d
    }

    /// Like [`Daemon::sqlite`], in a directory the caller owns (to start a
    /// second daemon on the same database).
    pub fn sqlite_in(dir: &Path, extra: &str, jdbc_extra: &str) -> Daemon {
        Self::configured(dir, "server:\n  listen: 127.0.0.1:0\n", extra, jdbc_extra, &admin_account())
    }

    /// The general form: `server` is the whole `server:` block, `top` more
    /// top-level YAML (auth, access, audit, state).
    pub fn configured(dir: &Path, server: &str, extra: &str, jdbc_extra: &str, top: &str) -> Daemon {
        let db = dir.join("secrets.db");
        let config = format!(
            "{server}secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://{}\n    secret: ${{E2E_JDBC_SECRET}}\n{}{}{top}",
            db.display(),
            indent(jdbc_extra, 4),
            indent(extra, 2)
        );
        let path = dir.join(format!("secretd-{}.yaml", rand::random::<u32>()));
        std::fs::write(&path, config).expect("write config");
        Self::start(&["serve", "--config", path.to_str().unwrap()], dir)
    }

    /// Starts `secretd ARGS` and waits for it to say where it listens.
    pub fn start(args: &[&str], dir: &Path) -> Daemon {
        Self::start_with_env(args, dir, &[])
    }

    pub fn start_with_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(bin())
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .env("E2E_JDBC_SECRET", TEST_SECRET)
            .env("SECRETD_LOG", "debug")
            // Tests run daemons side by side: each gets its own admin port.
            .env("SECRETD_ADMIN_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn secretd");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        let admin = Arc::new(Mutex::new(None));
        let admin_sink = admin.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("secretd listening addr=").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
                if let Some(addr) = line.split("secretd admin listening addr=").nth(1) {
                    *admin_sink.lock().unwrap() = Some(addr.trim().to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("secretd did not start; its log:\n{}", logs.lock().unwrap().join("\n"));
            }
        };
        Daemon { child, addr, admin, dir: dir.to_owned(), logs, _temp: None }
    }

    /// A client authenticated as the test admin.
    pub async fn client(&self) -> Client {
        self.client_as(Auth::bearer(ADMIN_TOKEN)).await
    }

    pub async fn client_as(&self, auth: Auth) -> Client {
        SecretBrokerClient::with_interceptor(self.channel().await, auth)
    }

    pub async fn admin(&self) -> AdminClient {
        TokenAdminClient::with_interceptor(self.channel().await, Auth::bearer(ADMIN_TOKEN))
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.expect("connect to secretd")
    }

    /// `http://host:port` of the admin listener.
    pub fn admin_url(&self) -> String {
        let addr = self.admin.lock().unwrap().clone().expect("the daemon logged its admin address");
        format!("http://{addr}")
    }

    /// Sends SIGTERM, as an orchestrator stopping the pod would.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `timeout`; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The first log line holding `needle`, waiting up to 5 s for it: the
    /// daemon's stderr is read by a thread of its own, so a line written
    /// just before an answer may reach the test just after it.
    pub fn log_line(&self, needle: &str) -> Option<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.logs.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    /// Every test daemon logs at debug level; whatever a test did, its log
    /// must not hold the test's token or encryption secret.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let logs = self.log_text();
            assert!(!logs.contains(&ADMIN_TOKEN[4..]), "a daemon logged the admin token");
            assert!(!logs.contains(TEST_SECRET), "a daemon logged the encryption secret");
        }
    }
}

pub fn indent(text: &str, by: usize) -> String {
    text.lines().map(|l| format!("{}{l}\n", " ".repeat(by))).collect()
}
