//! The command line: the dev instance with no config, the client verbs,
//! `keygen` and `config check`, as an operator would type them.

mod common;

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
};

use common::{bin, Daemon};

fn secretd(addr: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    secretd_in(Path::new("."), addr, args, stdin)
}

/// Runs the CLI in `dir`, where it finds a dev instance's ./data/admin.token.
fn secretd_in(dir: &Path, addr: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("SECRETD_TOKEN")
        .env("SECRETD_ADDR", addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn dev_instance_quick_start() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&["serve", "--listen", "127.0.0.1:0"], dir.path());
    assert!(daemon.log_text().contains("DEV MODE"), "{}", daemon.log_text());
    let secret_file = dir.path().join("data/jdbc.secret");
    assert!(secret_file.exists(), "the dev secret was not generated under ./data");
    assert!(dir.path().join("data/secrets.db").exists());
    let admin_token = dir.path().join("data/admin.token");
    assert!(admin_token.exists(), "the dev admin token was not created");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&admin_token).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let addr = daemon.addr.as_str();
    let put = secretd_in(dir.path(), addr, &["put", "-n", "company.team", "db/password"], Some(b"s3cr3t\n"));
    assert!(put.status.success(), "{}", stderr(&put));
    assert_eq!(String::from_utf8_lossy(&put.stdout).trim(), "version 1");
    let put = secretd_in(dir.path(), addr, &["put", "-n", "company", "api", "inline-value", "--tag", "env=dev"], None);
    assert!(put.status.success(), "{}", stderr(&put));

    // `get` prints the raw value and nothing else, so it pipes.
    let get = secretd_in(dir.path(), addr, &["get", "-n", "company.team", "db/password"], None);
    assert!(get.status.success(), "{}", stderr(&get));
    assert_eq!(get.stdout, b"s3cr3t\n");
    let inherited = secretd_in(dir.path(), addr, &["get", "-n", "company.team", "api"], None);
    assert_eq!(inherited.stdout, b"inline-value");
    // The dev admin token reaches every tenant.
    let acme = secretd_in(dir.path(), addr, &["put", "--tenant", "acme", "-n", "company", "api", "acme-value"], None);
    assert!(acme.status.success(), "{}", stderr(&acme));
    let acme = secretd_in(dir.path(), addr, &["get", "--tenant", "acme", "-n", "company", "api"], None);
    assert_eq!(acme.stdout, b"acme-value", "{}", stderr(&acme));

    let list = secretd_in(dir.path(), addr, &["list", "-n", "company", "--json"], None);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("\"key\":\"api\"") && text.contains("\"env\":\"dev\""), "{text}");
    assert!(!text.contains("inline-value"), "list printed a value");

    let delete = secretd_in(dir.path(), addr, &["delete", "-n", "company.team", "db/password"], None);
    assert!(delete.status.success(), "{}", stderr(&delete));
    let gone = secretd_in(dir.path(), addr, &["get", "-n", "company.team", "db/password"], None);
    assert!(!gone.status.success());
    assert!(gone.stdout.is_empty());
    assert!(stderr(&gone).contains("NOT_FOUND"), "{}", stderr(&gone));

    // Without the dev token (run from elsewhere), nothing gets through.
    let anonymous = secretd(addr, &["get", "-n", "company", "api"], None);
    assert!(!anonymous.status.success());
    assert!(stderr(&anonymous).contains("UNAUTHENTICATED"), "{}", stderr(&anonymous));

    // Tokens: create one for a worker, use it, revoke it.
    let created = secretd_in(
        dir.path(),
        addr,
        &[
            "token",
            "create",
            "--name",
            "w1",
            "--service",
            "WORKER",
            "--permissions",
            "read,list",
            "--namespace",
            "company*",
        ],
        None,
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("sdt_") && !token.contains('\n'), "token create must print the token alone");
    let as_worker = secretd(addr, &["get", "-n", "company", "api", "--api-token", &token], None);
    assert_eq!(as_worker.stdout, b"inline-value", "{}", stderr(&as_worker));
    let worker_put = secretd(addr, &["put", "-n", "company", "x", "v", "--api-token", &token], None);
    assert!(stderr(&worker_put).contains("PERMISSION_DENIED"), "{}", stderr(&worker_put));
    let listed = secretd_in(dir.path(), addr, &["token", "list"], None);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("w1\tWORKER\tread,list\tcompany*\tmain\t"), "{listed}");
    assert!(listed.contains("dev-admin\tADMIN\tadmin\t*\t*\t"), "{listed}");
    assert!(!listed.contains(&token), "token list printed the token");
    let revoked = secretd_in(dir.path(), addr, &["token", "revoke", "w1"], None);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let refused = secretd(addr, &["get", "-n", "company", "api", "--api-token", &token], None);
    assert!(stderr(&refused).contains("UNAUTHENTICATED"), "{}", stderr(&refused));

    let bad = secretd_in(dir.path(), addr, &["get", "-n", "company..team", "x"], None);
    assert!(
        stderr(&bad).contains("INVALID_ARGUMENT") && stderr(&bad).contains("namespace must be"),
        "{}",
        stderr(&bad)
    );

    // A restart finds the same secrets with the same generated key.
    drop(daemon);
    let daemon = Daemon::start(&["serve", "--listen", "127.0.0.1:0"], dir.path());
    let get = secretd_in(dir.path(), &daemon.addr, &["get", "-n", "company", "api"], None);
    assert_eq!(get.stdout, b"inline-value", "{}", stderr(&get));

    // A reset state store under an old token file: the next start issues a new token.
    drop(daemon);
    let old_token = std::fs::read_to_string(&admin_token).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("data/state.db{suffix}")));
    }
    let daemon = Daemon::start(&["serve", "--listen", "127.0.0.1:0"], dir.path());
    assert_ne!(std::fs::read_to_string(&admin_token).unwrap(), old_token);
    let get = secretd_in(dir.path(), &daemon.addr, &["get", "-n", "company", "api"], None);
    assert_eq!(get.stdout, b"inline-value", "{}", stderr(&get));
}

/// Issue #12, item 17: the dev admin token goes to a loopback address or a
/// Unix socket only, never to whatever `--addr` names.
#[test]
fn the_dev_token_goes_only_to_loopback() {
    let dir = tempfile::tempdir().unwrap();
    // Listening on every interface, so the same daemon answers under a name
    // that is not loopback: connecting to 0.0.0.0 reaches this host.
    let daemon = Daemon::start(&["serve", "--listen", "0.0.0.0:0"], dir.path());
    let port = daemon.addr.rsplit(':').next().unwrap().to_owned();
    let put = secretd_in(dir.path(), &format!("127.0.0.1:{port}"), &["put", "-n", "company", "k", "v"], None);
    assert!(put.status.success(), "{}", stderr(&put));
    for local in [format!("localhost:{port}"), format!("http://127.0.0.1:{port}")] {
        let get = secretd_in(dir.path(), &local, &["get", "-n", "company", "k"], None);
        assert_eq!(get.stdout, b"v", "{local}: {}", stderr(&get));
    }
    let audit = dir.path().join("data/audit.log");
    // The audit trail is written off the request path: let it catch up.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let records_before = std::fs::read_to_string(&audit).unwrap_or_default().lines().count();

    for remote in [format!("0.0.0.0:{port}"), format!("http://0.0.0.0:{port}")] {
        let out = secretd_in(dir.path(), &remote, &["get", "-n", "company", "k"], None);
        assert!(!out.status.success(), "{remote}: the dev token was sent: {:?}", out.stdout);
        let err = stderr(&out);
        assert!(err.contains("--api-token") && err.contains("--token-file"), "{remote}: {err}");
        assert!(err.contains("admin.token"), "{remote}: {err}");
    }
    // Explicit credentials still go anywhere.
    let token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let explicit = secretd_in(
        dir.path(),
        &format!("0.0.0.0:{port}"),
        &["get", "-n", "company", "k", "--api-token", token.trim()],
        None,
    );
    assert_eq!(explicit.stdout, b"v", "{}", stderr(&explicit));
    // The refused calls never reached the daemon: one record more, the explicit call's.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let records_after = std::fs::read_to_string(&audit).unwrap_or_default().lines().count();
    assert_eq!(records_after, records_before + 1, "calls without explicit credentials reached the daemon");
}

/// A dev admin token from before tenants (migrated to `main` only) is
/// replaced at the next start by one for every tenant.
#[test]
fn a_dev_token_from_before_tenants_is_replaced() {
    use secrecy::{ExposeSecret, SecretString};
    use secretd::auth::state::{NewToken, TokenStore};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let old = runtime.block_on(async {
        let url = SecretString::from(format!("sqlite://{}", data.join("state.db").display()));
        let store = TokenStore::open(&url).await.unwrap();
        let new = NewToken {
            name: "dev-admin".into(),
            service: "ADMIN".into(),
            permissions: vec![secretd::config::Permission::Admin],
            namespaces: vec![],
            tenants: vec!["main".into()],
            expires_at: None,
        };
        store.create(&new).await.unwrap().expose_secret().to_owned()
    });
    std::fs::write(data.join("admin.token"), format!("{old}\n")).unwrap();
    // As secretd writes it: a token file others may read stops the start.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data.join("admin.token"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = Daemon::start(&["serve", "--listen", "127.0.0.1:0"], dir.path());
    let now = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert!(now.trim() != old, "the main-only dev token was kept");
    let put = secretd_in(dir.path(), &daemon.addr, &["put", "--tenant", "acme", "-n", "company", "k", "v"], None);
    assert!(put.status.success(), "{}", stderr(&put));
}

#[test]
fn unreachable_daemon_is_unavailable() {
    let out = secretd("127.0.0.1:1", &["get", "-n", "a", "k"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("UNAVAILABLE"), "{}", stderr(&out));
}

#[test]
fn keygen_prints_a_usable_secret() {
    let a = secretd("unused", &["keygen"], None);
    let b = secretd("unused", &["keygen"], None);
    let a = String::from_utf8(a.stdout).unwrap();
    assert!(a.trim().len() >= 32);
    assert_ne!(a, String::from_utf8(b.stdout).unwrap());
}

#[test]
fn config_errors_name_the_field_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let short =
        write("short.yaml", "secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n    secret: too-short-1234\n");
    let out = secretd("unused", &["config", "check", &short], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&short) && err.contains("secret.jdbc.secret") && err.contains("at least 32"), "{err}");
    assert!(!err.contains("too-short-1234"), "the error echoed the secret: {err}");

    // `serve` refuses to start on the same file, with the same message.
    let out = secretd("unused", &["serve", "--config", &short], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("secret.jdbc.secret"), "{}", stderr(&out));

    let missing = write("missing.yaml", "secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n");
    let err = stderr(&secretd("unused", &["serve", "--config", &missing], None));
    assert!(err.contains("secret.jdbc.secret: is required"), "{err}");

    let unknown = write("unknown.yaml", "secret:\n  type: jdbc\n  cache:\n    ttl: 5s\n");
    let err = stderr(&secretd("unused", &["config", "check", &unknown], None));
    assert!(err.contains(&unknown) && err.contains("secret.cache") && err.contains("unknown field `ttl`"), "{err}");

    let env = write(
        "env.yaml",
        "secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n    secret: ${SECRETD_E2E_UNSET_VAR}\n",
    );
    let err = stderr(&secretd("unused", &["config", "check", &env], None));
    // The field, not the variable: what sits between `${` and `}` may be
    // a value typed there by mistake.
    assert!(err.contains("secret.jdbc.secret: names an environment variable that is not set"), "{err}");
    assert!(!err.contains("SECRETD_E2E_UNSET_VAR"), "{err}");

    let good = write(
        "good.yaml",
        "secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://x.db\n    secret: 0123456789abcdef0123456789abcdef\n",
    );
    let out = secretd("unused", &["config", "check", &good], None);
    assert!(out.status.success(), "{}", stderr(&out));

    let check_example = |example: &str| {
        let path = format!("{}/config/{example}", env!("CARGO_MANIFEST_DIR"));
        Command::new(bin())
            .args(["config", "check", &path])
            .env("SECRETD_JDBC_SECRET", common::TEST_SECRET)
            .env("SECRETD_OPS_TOKEN_SHA256", common::token_hash(common::ADMIN_TOKEN))
            .env("SECRETD_ADMIN_PASSWORD", "a-long-operator-password-1234")
            .envs([("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c"), ("AZURE_CLIENT_SECRET", "s")])
            .envs([("VAULT_TOKEN", "s.example"), ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("AWS_SECRET_ACCESS_KEY", "x")])
            .env("SECRETD_ES_SECRET", common::TEST_SECRET)
            .env("GOOGLE_SERVICE_ACCOUNT_KEY_FILE", format!("{}/Cargo.toml", env!("CARGO_MANIFEST_DIR")))
            .env_remove("SECRETD_CONFIG")
            .output()
            .unwrap()
    };
    for example in [
        "secretd.yaml",
        "postgres.yaml",
        "mysql.yaml",
        "sidecar.yaml",
        "tls.yaml",
        "vault.yaml",
        "aws.yaml",
        "elasticsearch.yaml",
    ] {
        let out = check_example(example);
        assert!(out.status.success(), "{example}: {}", stderr(&out));
    }
}
