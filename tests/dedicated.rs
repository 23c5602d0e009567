//! Several backends in one daemon, end to end: `config/dedicated.yaml` as
//! shipped, on SQLite (the default backend), OpenBao (a read-only tenant),
//! moto (a namespace migrating from the default backend, with fallback and
//! copy-on-read) and PostgreSQL (a deeper namespace), called over gRPC.
//!
//! The servers come from `scripts/test.sh`; without them a test fails
//! under `CI=true` and otherwise says loudly that it skipped.

mod common;

use std::path::Path;

use common::{admin_account, create_token_in, http_get, put_in as put, Client, Daemon};
use secretd::proto::{DeleteSecretRequest, GetSecretRequest, ListSecretsRequest};
use secretd_core::{SecretName, SecretStore, SecretValue, Tags};
use tonic::Code;

fn env(var: &str) -> Option<String> {
    secretd_core::conformance::server_from_env(var)
}

struct Servers {
    vault: String,
    vault_token: String,
    aws: String,
    postgres: String,
}

fn servers() -> Option<Servers> {
    Some(Servers {
        vault: env("SECRETD_TEST_VAULT_ADDR")?,
        vault_token: env("SECRETD_TEST_VAULT_TOKEN")?,
        aws: env("SECRETD_TEST_AWS_ENDPOINT")?,
        postgres: env("SECRETD_TEST_POSTGRES_URL")?,
    })
}

const AWS_KEY_ID: &str = "AKIDSECRETDDEDICATED";

/// `config/dedicated.yaml` with the test admin account, in `dir`.
fn start(dir: &Path, s: &Servers) -> Daemon {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dedicated.yaml");
    let text = std::fs::read_to_string(example).unwrap();
    let path = dir.join("dedicated.yaml");
    let audit = format!("audit:\n  sink: file\n  path: {}\n", dir.join("audit.log").display());
    std::fs::write(&path, format!("{text}\n{}{audit}", admin_account())).unwrap();
    Daemon::start_with_env(
        &["serve", "--config", path.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        dir,
        &[
            ("SECRETD_JDBC_SECRET", common::TEST_SECRET),
            ("VAULT_ADDR", &s.vault),
            ("VAULT_TOKEN", &s.vault_token),
            ("SECRETD_AWS_ENDPOINT", &s.aws),
            ("AWS_ACCESS_KEY_ID", AWS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", "dedicated-e2e-secret"),
            ("SECRETD_PAYROLL_URL", &s.postgres),
        ],
    )
}

async fn sqlite_default(dir: &Path) -> secretd_sql::SqlStore {
    let url = format!("sqlite://{}", dir.join("data/secrets.db").display());
    secretd_sql::SqlStore::connect(&url, common::TEST_SECRET, secretd_sql::SqlOptions { max_connections: 2 })
        .await
        .unwrap()
}

async fn vault_direct(s: &Servers) -> secretd_vault::VaultStore {
    let auth = secretd_vault::VaultAuth::Token(secrecy::SecretString::from(s.vault_token.clone()).into());
    let mut options = secretd_vault::VaultOptions::new(s.vault.clone(), auth);
    options.path_prefix = secretd_vault::PathPrefix::new("secretd").unwrap();
    secretd_vault::VaultStore::connect(options).await.unwrap()
}

async fn aws_direct(s: &Servers) -> secretd_aws::AwsStore {
    let mut options = secretd_aws::AwsOptions::new("us-east-1");
    options.endpoint = Some(s.aws.clone());
    options.credentials = Some(secretd_aws::StaticCredentials {
        access_key_id: secrecy::SecretString::from(AWS_KEY_ID).into(),
        secret_access_key: secrecy::SecretString::from("x").into(),
        session_token: None,
    });
    secretd_aws::AwsStore::connect(options).await.unwrap()
}

fn name(tenant: &str, ns: &str, key: &str) -> SecretName {
    SecretName::parse(tenant, ns, key).unwrap()
}

async fn seed(store: &dyn SecretStore, n: &SecretName, value: &str, tags: &[(&str, &str)]) {
    let tags: Tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    store.put(n, &SecretValue::from_slice(value.as_bytes()), &tags, None).await.unwrap();
}

async fn get(
    c: &mut Client,
    tenant: &str,
    ns: &str,
    key: &str,
    refresh: bool,
) -> Result<secretd::proto::GetSecretResponse, tonic::Status> {
    let req = GetSecretRequest {
        tenant: tenant.into(),
        namespace: ns.into(),
        key: key.into(),
        refresh,
        ..Default::default()
    };
    c.get_secret(req).await.map(|r| r.into_inner())
}

/// Write requests (create, update, delete) in OpenBao's audit log whose
/// path holds `marker`.
fn vault_writes(log: &Path, marker: &str) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["type"] == "request")
        .filter(|entry| matches!(entry["request"]["operation"].as_str(), Some("create" | "update" | "delete")))
        .filter(|entry| entry["request"]["path"].as_str().is_some_and(|p| p.contains(marker)))
        .count()
}

#[tokio::test]
async fn each_namespace_is_served_by_its_own_backend() {
    let Some(s) = servers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = format!("r{:08x}", rand::random::<u32>());
    let (finance_ns, payroll_ns) = (format!("company.finance.{run}"), format!("company.finance.payroll.{run}"));
    let daemon = start(dir.path(), &s);
    let mut c = daemon.client().await;

    // The default backend (SQLite) holds what everybody inherits.
    let default = sqlite_default(dir.path()).await;
    seed(&default, &name("main", "company", &format!("shared-{run}")), "from-sqlite", &[]).await;

    // A put under company.finance.* goes to AWS, under the payroll
    // namespace to PostgreSQL; neither lands in SQLite.
    put(&mut c, "main", &finance_ns, "api-key", b"in-aws").await.expect("put to finance");
    put(&mut c, "main", &payroll_ns, "salary-db", b"in-postgres").await.expect("put to payroll");
    let aws = aws_direct(&s).await;
    assert_eq!(aws.get(&name("main", &finance_ns, "api-key"), None).await.unwrap().value.expose(), b"in-aws");
    let payroll = secretd_sql::SqlStore::connect(
        &s.postgres,
        common::TEST_SECRET,
        secretd_sql::SqlOptions { max_connections: 2 },
    )
    .await
    .unwrap();
    assert_eq!(
        payroll.get(&name("main", &payroll_ns, "salary-db"), None).await.unwrap().value.expose(),
        b"in-postgres"
    );
    assert!(default.get(&name("main", &finance_ns, "api-key"), None).await.is_err());

    // Inheritance crosses backends: each namespace of the walk in its own.
    let from_payroll = get(&mut c, "main", &format!("{payroll_ns}.eu"), "salary-db", false).await.unwrap();
    assert_eq!((&from_payroll.value[..], from_payroll.backend.as_str()), (&b"in-postgres"[..], "payroll"));
    let inherited = get(&mut c, "main", &format!("{payroll_ns}.eu"), &format!("shared-{run}"), false).await.unwrap();
    assert_eq!((&inherited.value[..], inherited.namespace.as_str()), (&b"from-sqlite"[..], "company"));
    assert_eq!(inherited.backend, "default");

    // Metrics and health name each backend.
    let metrics = http_get(&daemon.admin_url(), "/metrics").1;
    for backend in ["default", "finance", "payroll", "acme-vault"] {
        assert!(metrics.contains(&format!("secretd_backend_up{{backend=\"{backend}\"}} 1")), "{backend}: {metrics}");
    }
    assert!(metrics.contains("backend=\"payroll\",operation=\"put\""), "{metrics}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(daemon.channel().await);
    for service in
        ["secretd.backend.default", "secretd.backend.finance", "secretd.backend.payroll", "secretd.backend.acme-vault"]
    {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .unwrap_or_else(|e| panic!("{service}: {e}"))
            .into_inner()
            .status;
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service}");
    }
}

/// A migration by use: a secret still in the default backend is answered
/// from there (and says so), copied into AWS with its tags, and answered
/// from AWS afterwards; a delete removes it from both.
#[tokio::test]
async fn a_fallback_answers_and_copy_on_read_moves_the_secret() {
    let Some(s) = servers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = format!("r{:08x}", rand::random::<u32>());
    let ns = format!("company.finance.{run}");
    let daemon = start(dir.path(), &s);
    let mut c = daemon.client().await;
    let default = sqlite_default(dir.path()).await;
    let n = name("main", &ns, "db/password");
    seed(&default, &n, "not-moved-yet", &[("team", "finance")]).await;

    let first = get(&mut c, "main", &ns, "db/password", false).await.expect("found in the fallback");
    assert_eq!((&first.value[..], first.backend.as_str()), (&b"not-moved-yet"[..], "default"));
    let aws = aws_direct(&s).await;
    let copied = aws.get(&n, None).await.expect("copy-on-read wrote it to AWS");
    assert_eq!(copied.value.expose(), b"not-moved-yet");
    assert_eq!(copied.metadata.tags.get("team"), Some("finance"));
    let again = get(&mut c, "main", &ns, "db/password", true).await.unwrap();
    assert_eq!(again.backend, "finance");

    // The audit says which backend answered (its records are written
    // behind the answers).
    let answered_by = |backend: &str| {
        let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap_or_default();
        audit.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).any(|record| {
            record["method"] == "GetSecret" && record["namespace"] == ns.as_str() && record["backend"] == backend
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(answered_by("default") && answered_by("finance")) {
        assert!(std::time::Instant::now() < deadline, "the audit does not name the answering backends");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let req = DeleteSecretRequest { tenant: "main".into(), namespace: ns.clone(), key: "db/password".into() };
    c.delete_secret(req).await.expect("delete");
    assert!(default.get(&n, None).await.is_err(), "the fallback still has it");
    assert_eq!(aws.get(&n, None).await.unwrap_err().kind(), secretd_core::ErrorKind::NotFound);
    assert_eq!(get(&mut c, "main", &ns, "db/password", true).await.unwrap_err().code(), Code::NotFound);
}

/// An OpenBao dev server of this test's own, with a file audit device
/// (OpenBao only takes them from its configuration file).
struct AuditedBao {
    child: std::process::Child,
    addr: String,
    log: std::path::PathBuf,
}

impl AuditedBao {
    fn start(binary: &str, dir: &Path) -> AuditedBao {
        let log = dir.join("bao-audit.log");
        let config = dir.join("bao.hcl");
        std::fs::write(
            &config,
            format!("audit \"file\" \"e2e\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n", log.display()),
        )
        .unwrap();
        // The dev listener also binds the next port.
        let port = common::free_port_pair();
        let child = std::process::Command::new(binary)
            .args(["server", "-dev", "-dev-root-token-id=audited-root"])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg(format!("-config={}", config.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start bao");
        let addr = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "bao did not listen");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        AuditedBao { child, addr, log }
    }
}

impl Drop for AuditedBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A read-only backend: reads and listings work, writes are
/// FAILED_PRECONDITION naming it, and OpenBao's own audit log shows that
/// not one write request reached it under a burst of refused puts.
#[tokio::test]
async fn a_read_only_backend_receives_no_write_at_all() {
    let (Some(mut s), Some(binary)) = (servers(), env("SECRETD_TEST_BAO")) else { return };
    let dir = tempfile::tempdir().unwrap();
    let bao = AuditedBao::start(&binary, dir.path());
    (s.vault, s.vault_token) = (bao.addr.clone(), "audited-root".to_owned());
    let run = format!("r{:08x}", rand::random::<u32>());
    let ns = format!("legal.{run}");
    let vault = vault_direct(&s).await;
    seed(&vault, &name("acme", &ns, "contract"), "signed", &[]).await;
    let seeded = vault_writes(&bao.log, &run);
    assert!(seeded >= 1, "the audit log does not show writes; the count below would prove nothing");

    let daemon = start(dir.path(), &s);
    let mut c = daemon.client().await;
    for i in 0..25 {
        let refused = put(&mut c, "acme", &ns, &format!("k{i}"), b"v").await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert!(refused.message().contains("backend acme-vault is read-only"), "{}", refused.message());
        let req = DeleteSecretRequest { tenant: "acme".into(), namespace: ns.clone(), key: "contract".into() };
        assert_eq!(c.delete_secret(req).await.unwrap_err().code(), Code::FailedPrecondition);
    }
    let got = get(&mut c, "acme", &ns, "contract", false).await.expect("reads work");
    assert_eq!((&got.value[..], got.backend.as_str()), (&b"signed"[..], "acme-vault"));
    let listed = c
        .list_secrets(ListSecretsRequest { tenant: "acme".into(), namespace: ns.clone(), ..Default::default() })
        .await
        .expect("listing works")
        .into_inner();
    assert_eq!(listed.secrets.len(), 1);
    assert_eq!(vault_writes(&bao.log, &run), seeded, "a refused write reached the read-only backend");

    // The route's isolation refuses executors, besides the global one.
    let executor = create_token_in(&daemon, "acme-executor", "EXECUTOR", &["acme"]).await;
    let mut as_executor = daemon.client_as(common::Auth::bearer(&executor)).await;
    let denied = get(&mut as_executor, "acme", &ns, "contract", false).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
}

#[test]
fn the_example_passes_config_check() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dedicated.yaml");
    let out = std::process::Command::new(common::bin())
        .args(["config", "check", example.to_str().unwrap()])
        .env("SECRETD_JDBC_SECRET", common::TEST_SECRET)
        .env("VAULT_TOKEN", "t")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A dedicated backend that is down fails its own routes only: the
/// daemon stays ready, `/readyz` says which backend is degraded, and the
/// default backend's routes answer as before.
#[tokio::test]
async fn a_dedicated_backend_that_is_down_degrades_its_routes_only() {
    let dedicated = "dedicated:\n  - name: gone\n    tenant: main\n    namespace: company.gone\n    \
                     type: aws-secret-manager\n    aws-secret-manager:\n      region: us-east-1\n      \
                     endpoint: http://127.0.0.1:1\n      access-key-id: a\n      secret-key-id: b\n      \
                     timeout: 1s\n      max-attempts: 1\n";
    let daemon = Daemon::sqlite(dedicated, "");
    let mut c = daemon.client().await;
    put(&mut c, "main", "company", "k", b"v").await.expect("the default backend serves");
    let inherited = get(&mut c, "main", "company.other", "k", false).await.expect("its routes answer");
    assert_eq!(inherited.backend, "default");
    let failed = get(&mut c, "main", "company.gone", "x", false).await.unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, ready) = http_get(&daemon.admin_url(), "/readyz");
        if ready.contains("backend gone unavailable") {
            assert_eq!(status, 200, "{ready}");
            assert!(ready.contains("degraded: backend gone unavailable; its routes fail"), "{ready}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "readyz never named the failing backend: {ready}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(daemon.channel().await);
    let check = |service: &str| tonic_health::pb::HealthCheckRequest { service: service.into() };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_ne!(health.check(check("secretd.backend.gone")).await.unwrap().into_inner().status, serving);
    assert_eq!(health.check(check("")).await.unwrap().into_inner().status, serving);
    assert_eq!(health.check(check("secretd.backend.default")).await.unwrap().into_inner().status, serving);
}
