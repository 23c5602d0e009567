//! Hardened configuration: credentials by `file:` reference,
//! `configurations.delete-files-on-start`, and `config check` flagging
//! credentials left in plain text.

mod common;

use std::process::Command;

use common::Daemon;
use secretd::proto::{GetSecretRequest, PutSecretRequest};

fn config_with(dir: &std::path::Path, secret_ref: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("secretd.yaml");
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\nsecret:\n  type: jdbc\n  jdbc:\n    url: sqlite://{}/secrets.db\n    secret: {secret_ref}\n{extra}{}",
        dir.display(),
        common::admin_account()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn delete_files_on_start_removes_the_config_and_its_credential_files() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jdbc-secret");
    std::fs::write(&secret_file, format!("{}\n", common::TEST_SECRET)).unwrap();
    let config = config_with(
        dir.path(),
        &format!("file:{}", secret_file.display()),
        "configurations:\n  delete-files-on-start: true\n",
    );
    let daemon = Daemon::start(&["serve", "--config", config.to_str().unwrap()], dir.path());
    assert!(!config.exists(), "the configuration file is still there");
    assert!(!secret_file.exists(), "the credential file is still there");

    // And the daemon works with what it read (the secret without its newline).
    let mut c = daemon.client().await;
    let put =
        PutSecretRequest { namespace: "h".into(), key: "k".into(), value: b"v".to_vec().into(), ..Default::default() };
    c.put_secret(put).await.unwrap();
    let got = c.get_secret(GetSecretRequest { namespace: "h".into(), key: "k".into(), ..Default::default() }).await;
    assert_eq!(&got.unwrap().into_inner().value[..], b"v");
}

#[test]
fn a_file_that_cannot_be_deleted_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    // /proc/version is readable, long enough to serve as a secret, and
    // cannot be deleted, even by root.
    let config = config_with(dir.path(), "file:/proc/version", "configurations:\n  delete-files-on-start: true\n");
    let out = Command::new(common::bin())
        .args(["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("SECRETD_ADMIN_LISTEN", "127.0.0.1:0")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "secretd started although it could not delete a file");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("delete-files-on-start") && err.contains("/proc/version"), "{err}");
}

#[test]
fn config_check_flags_credentials_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), "0123456789abcdef0123456789abcdef-inline", "");
    let out = Command::new(common::bin()).args(["config", "check", config.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "a warning is not an error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret.jdbc.secret holds a credential in plain text"), "{err}");
    assert!(err.contains("${ENV_VAR}") && err.contains("file:"), "{err}");
    assert!(!err.contains("0123456789abcdef0123456789abcdef-inline"), "the warning echoed the credential");

    let config = config_with(dir.path(), "${SECRETD_HARDENING_SECRET}", "");
    let out = Command::new(common::bin())
        .args(["config", "check", config.to_str().unwrap()])
        .env("SECRETD_HARDENING_SECRET", common::TEST_SECRET)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("plain text"));
}
