//! `subkey` reads end to end: the real daemon on SQLite, over gRPC and
//! through `secretd get --subkey`, and on OpenBao with a secret written
//! natively in Vault with several fields.

mod common;

use std::process::{Command, Output};

use common::{
    admin_account, audit_lines, bin, create_token, get, get_subkey, put, put_tagged, Auth, Daemon, ADMIN_TOKEN,
};
use secretd::proto::{batch_get_result::Result as ItemResult, BatchGetSecretsRequest, SecretRef, Source};
use tonic::Code;

const DOC: &str = r#"{"DATABASE_PASSWORD": "s3cr\"et\u00e9", "DATABASE_USER": "app", "port": 5432,
 "options": {"ssl": true, "hosts": ["a", "b"]}, "enabled": false, "none": null}"#;

/// A SQLite daemon with the cache on, EXECUTOR isolated, and an audit file.
fn daemon(dir: &std::path::Path) -> Daemon {
    let top = format!("{}audit:\n  sink: file\n  path: {}\n", admin_account(), dir.join("audit.log").display());
    let extra =
        "cache:\n  enabled: true\n  expire-after-write: 5m\nisolation:\n  enabled: true\n  denied-services: [EXECUTOR]";
    Daemon::configured(dir, "server:\n  listen: 127.0.0.1:0\n", extra, "", &top)
}

fn cli(addr: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("SECRETD_ADDR", addr)
        .env("SECRETD_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("run secretd")
}

#[tokio::test]
async fn subkeys_over_grpc_share_one_read_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let mut c = daemon.client().await;
    let version = put_tagged(&mut c, "company", "db", DOC.as_bytes(), &[("team", "platform")]).await.unwrap();

    let password = get_subkey(&mut c, "company.team", "db", "DATABASE_PASSWORD").await.unwrap();
    assert_eq!(std::str::from_utf8(&password.value).unwrap(), "s3cr\"eté");
    assert_eq!(password.source, Source::Backend as i32);
    assert_eq!((password.version.as_str(), password.namespace.as_str()), (version.as_str(), "company"));
    assert_eq!(password.tags.get("team").map(String::as_str), Some("platform"));
    assert_eq!(password.backend, "default");
    // Every other member, and the whole value, come from the same cache entry.
    for (subkey, want) in [
        ("DATABASE_USER", "app"),
        ("port", "5432"),
        ("options", r#"{"ssl": true, "hosts": ["a", "b"]}"#),
        ("enabled", "false"),
        ("none", "null"),
    ] {
        let got = get_subkey(&mut c, "company.team", "db", subkey).await.unwrap();
        assert_eq!((std::str::from_utf8(&got.value).unwrap(), got.source), (want, Source::Cache as i32), "{subkey}");
    }
    let whole = get(&mut c, "company.team", "db").await.unwrap();
    assert_eq!((&whole.value[..], whole.source), (DOC.as_bytes(), Source::Cache as i32));

    // The errors: each its own code, none quoting the value.
    put(&mut c, "company", "plain", b"hunter2").await.unwrap();
    let cases = [
        ("db", "missing", Code::NotFound),
        ("plain", "DATABASE_PASSWORD", Code::FailedPrecondition),
        ("db", "bad\nname", Code::InvalidArgument),
        ("absent", "x", Code::NotFound),
    ];
    for (key, subkey, code) in cases {
        let err = get_subkey(&mut c, "company", key, subkey).await.unwrap_err();
        assert_eq!(err.code(), code, "{key}/{subkey:?}: {}", err.message());
        for leak in ["hunter2", "s3cr", "5432", "app"] {
            assert!(!err.message().contains(leak), "{key}/{subkey:?}: {}", err.message());
        }
    }
    let missing = get_subkey(&mut c, "company", "db", "missing").await.unwrap_err();
    assert!(missing.message().contains("\"missing\""), "the member is named: {}", missing.message());
    let plain = get_subkey(&mut c, "company", "plain", "x").await.unwrap_err();
    assert!(plain.message().contains("not a JSON object"), "{}", plain.message());

    // A batch: per-ref subkeys, each item its own answer.
    let r = |key: &str, subkey: &str| SecretRef {
        namespace: "company".into(),
        key: key.into(),
        subkey: subkey.into(),
        ..Default::default()
    };
    let refs = vec![r("db", "DATABASE_USER"), r("db", "nope"), r("plain", "x"), r("db", "")];
    let results = c.batch_get_secrets(BatchGetSecretsRequest { refs }).await.unwrap().into_inner().results;
    let answers: Vec<_> = results
        .iter()
        .map(|item| match item.result.as_ref().unwrap() {
            ItemResult::Secret(s) => Ok(String::from_utf8(s.value.to_vec()).unwrap()),
            ItemResult::Error(e) => Err(e.code),
        })
        .collect();
    assert_eq!(
        answers,
        [Ok("app".to_owned()), Err(Code::NotFound as i32), Err(Code::FailedPrecondition as i32), Ok(DOC.to_owned())]
    );
    assert_eq!(results[0].r#ref.as_ref().unwrap().subkey, "DATABASE_USER", "the ref comes back as asked");

    // A denied caller learns nothing of the value's shape or members.
    let executor = create_token(&daemon, "e", "EXECUTOR", &["read"], &[], 0).await;
    let mut e = daemon.client_as(Auth::bearer(&executor)).await;
    for (key, subkey) in [("db", "DATABASE_PASSWORD"), ("db", "missing"), ("plain", "x")] {
        let err = get_subkey(&mut e, "company", key, subkey).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{key}/{subkey}");
    }

    // The audit names the subkey of each read, and no value.
    let audit_path = dir.path().join("audit.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let records = loop {
        let records = audit_lines(&audit_path);
        let denied = records.iter().filter(|r| r["code"] == "PERMISSION_DENIED").count();
        if denied == 3 || std::time::Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let subkey_reads = |subkey: &str| records.iter().filter(|r| r["subkey"] == subkey).count();
    assert_eq!(subkey_reads("DATABASE_PASSWORD"), 3, "the admin's two reads (db, plain) and the denied one");
    assert_eq!(subkey_reads("DATABASE_USER"), 2, "GetSecret and the batch item");
    let first = records.iter().find(|r| r["subkey"] == "DATABASE_PASSWORD").unwrap();
    assert_eq!((first["key"].as_str(), first["code"].as_str()), (Some("db"), Some("OK")));
    assert_eq!(first["found_in"], "company");
    let whole_reads = records.iter().filter(|r| r["method"] == "GetSecret" && r.get("subkey").is_none()).count();
    assert_eq!(whole_reads, 1, "a read of the whole value carries no subkey field");
    let text = std::fs::read_to_string(&audit_path).unwrap();
    for leak in ["hunter2", "s3cr", "5432"] {
        assert!(!text.contains(leak), "the audit holds {leak}");
        assert!(!daemon.log_text().contains(leak), "the log holds {leak}");
    }
}

#[tokio::test]
async fn cli_get_subkey_prints_the_member_raw() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let mut c = daemon.client().await;
    put(&mut c, "company.team", "db", DOC.as_bytes()).await.unwrap();
    put(&mut c, "company.team", "plain", b"hunter2").await.unwrap();
    let addr = daemon.addr.as_str();
    let get = |subkey: &str, key: &str| cli(addr, &["get", "-n", "company.team", key, "--subkey", subkey]);

    let password = get("DATABASE_PASSWORD", "db");
    assert!(password.status.success(), "{}", String::from_utf8_lossy(&password.stderr));
    assert_eq!(password.stdout, "s3cr\"eté".as_bytes(), "the text, raw: no quotes, no newline");
    let options = get("options", "db");
    assert_eq!(options.stdout, br#"{"ssl": true, "hosts": ["a", "b"]}"#);

    let missing = get("missing", "db");
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("NOT_FOUND") && stderr.contains("\"missing\""), "{stderr}");
    assert!(missing.stdout.is_empty());
    let plain = get("x", "plain");
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success() && stderr.contains("FAILED_PRECONDITION"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// A Vault secret with several fields, written by another tool (here the
/// Vault API itself) where secretd's layout puts `company.team/db`, reads
/// as the JSON of its fields: each field is a subkey.
#[tokio::test]
async fn a_native_multi_field_vault_secret_answers_each_field() {
    let env = secretd_core::conformance::server_from_env;
    let (Some(addr), Some(root)) = (env("SECRETD_TEST_VAULT_ADDR"), env("SECRETD_TEST_VAULT_TOKEN")) else { return };
    let ns = format!("e2e.subkeys.r{:08x}", rand::random::<u32>());
    let path = format!("secretd/main/{ns}/db");
    vault_api(
        &addr,
        &root,
        "POST",
        &format!("secret/data/{path}"),
        serde_json::json!({"data": {"DATABASE_PASSWORD": "vault-pw", "DATABASE_USER": "app", "port": 5432}}),
    );
    // The example config scopes the backend to `application: production`.
    vault_api(
        &addr,
        &root,
        "POST",
        &format!("secret/metadata/{path}"),
        serde_json::json!({"custom_metadata": {"application": "production"}}),
    );

    let temp = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/vault.yaml");
    let config = temp.path().join("vault.yaml");
    std::fs::write(&config, format!("{}\n{}", std::fs::read_to_string(example).unwrap(), admin_account())).unwrap();
    let daemon = Daemon::start_with_env(
        &["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        temp.path(),
        &[("VAULT_ADDR", &addr), ("VAULT_TOKEN", &root)],
    );
    let mut c = daemon.client().await;
    let child = format!("{ns}.etl");
    let password = get_subkey(&mut c, &child, "db", "DATABASE_PASSWORD").await.unwrap();
    assert_eq!((&password.value[..], password.source), (&b"vault-pw"[..], Source::Backend as i32));
    assert_eq!((password.version.as_str(), password.namespace.as_str()), ("1", ns.as_str()));
    let user = get_subkey(&mut c, &child, "db", "DATABASE_USER").await.unwrap();
    assert_eq!((&user.value[..], user.source), (&b"app"[..], Source::Cache as i32));
    assert_eq!(&get_subkey(&mut c, &ns, "db", "port").await.unwrap().value[..], b"5432");
    let missing = get_subkey(&mut c, &ns, "db", "DATABASE_HOST").await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(!missing.message().contains("vault-pw"), "{}", missing.message());

    // A single-field secret written through secretd is its text, not an object.
    put_tagged(&mut c, &ns, "plain", b"just text", &[("application", "production")]).await.unwrap();
    assert_eq!(get_subkey(&mut c, &ns, "plain", "value").await.unwrap_err().code(), Code::FailedPrecondition);
    let json = br#"{"token": "t0k"}"#;
    put_tagged(&mut c, &ns, "written", json, &[("application", "production")]).await.unwrap();
    assert_eq!(&get_subkey(&mut c, &ns, "written", "token").await.unwrap().value[..], b"t0k");
    assert!(!daemon.log_text().contains("vault-pw"), "the daemon logged a value");
}

/// One Vault API call with curl; a failed call fails the test.
fn vault_api(addr: &str, token: &str, method: &str, path: &str, body: serde_json::Value) {
    let out = Command::new("curl")
        .args(["-sf", "-X", method, "-H", &format!("X-Vault-Token: {token}"), "-d", &body.to_string()])
        .arg(format!("{addr}/v1/{path}"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "vault {method} {path}: {}", String::from_utf8_lossy(&out.stdout));
}
