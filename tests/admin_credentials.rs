//! The daemon's own credentials are credentials like every other:
//! `server.basic-auth.password` and `server.tls.keystore-password` take
//! `${ENV}` or `file:`, a `file:` one is read (never taken literally) and
//! re-read when it is rotated, and `config check` flags them in plain text.

mod common;

use std::{path::Path, process::Command, time::Duration};

use base64::Engine;
use common::{admin_account, pki::Pki, tls_channel, Auth, Daemon, ADMIN_TOKEN};
use secretd::proto::{secret_broker_client::SecretBrokerClient, GetSecretRequest, PutSecretRequest};
use tonic::Code;

fn basic(user_password: &str) -> Auth {
    Auth::raw(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_password)))
}

/// Reads company/db as `auth`.
async fn read_db(daemon: &Daemon, auth: Auth) -> Result<Vec<u8>, tonic::Status> {
    common::get_value(&mut daemon.client_as(auth).await, "company", "db").await
}

/// Rewrites a mounted credential file as Kubernetes does: the new content
/// appears at once (here: a sibling file renamed over it).
fn rotate(file: &Path, content: &str) {
    let next = file.with_extension("next");
    std::fs::write(&next, content).unwrap();
    std::fs::rename(&next, file).unwrap();
}

#[tokio::test]
async fn basic_auth_password_from_a_file_is_read_and_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("admin-password");
    std::fs::write(&password_file, "First-Operator-Password-1\n").unwrap();
    let reference = format!("file:{}", password_file.display());
    let server =
        format!("server:\n  listen: 127.0.0.1:0\n  basic-auth:\n    username: operator\n    password: {reference}\n");
    let top = format!("{}security:\n  basic-auth:\n    password-regexp: \"[A-Za-z0-9-]{{16,}}\"\n", admin_account());
    let daemon = Daemon::configured(dir.path(), &server, "", "", &top);
    let put = PutSecretRequest {
        namespace: "company".into(),
        key: "db".into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    };
    daemon.client_as(basic("operator:First-Operator-Password-1")).await.put_secret(put).await.unwrap();
    assert_eq!(read_db(&daemon, basic("operator:First-Operator-Password-1")).await.unwrap(), b"v");
    let literal = read_db(&daemon, basic(&format!("operator:{reference}"))).await.unwrap_err();
    assert_eq!(literal.code(), Code::Unauthenticated, "the `file:` reference itself was accepted as the password");

    // Rotated: the new password works, the old one no longer does.
    rotate(&password_file, "Second-Operator-Password-22\n");
    assert_eq!(read_db(&daemon, basic("operator:Second-Operator-Password-22")).await.unwrap(), b"v");
    let old = read_db(&daemon, basic("operator:First-Operator-Password-1")).await.unwrap_err();
    assert_eq!(old.code(), Code::Unauthenticated, "the old password still works after rotation");

    // A rotation to a password that breaks password-regexp is refused:
    // the previous password stays in use.
    rotate(&password_file, "short\n");
    let short = read_db(&daemon, basic("operator:short")).await.unwrap_err();
    assert_eq!(short.code(), Code::Unauthenticated, "a password breaking password-regexp was taken");
    assert_eq!(read_db(&daemon, basic("operator:Second-Operator-Password-22")).await.unwrap(), b"v");
    let logs = daemon.log_text();
    assert!(logs.contains("does not match security.basic-auth.password-regexp"), "{logs}");
    for password in ["First-Operator-Password-1", "Second-Operator-Password-22"] {
        assert!(!logs.contains(password), "the daemon logged a password");
    }
}

#[test]
fn config_check_flags_a_plain_text_admin_password_only() {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("admin-password");
    std::fs::write(&password_file, "An-Operator-Password-1\n").unwrap();
    let check = |password: &str| {
        let config = dir.path().join("check.yaml");
        std::fs::write(
            &config,
            format!(
                "server:\n  basic-auth: {{username: operator, password: \"{password}\"}}\nsecret:\n  type: jdbc\n  jdbc:\n    \
                 url: sqlite://x.db\n    secret: ${{E2E_JDBC_SECRET}}\n"
            ),
        )
        .unwrap();
        let out = Command::new(common::bin())
            .args(["config", "check", config.to_str().unwrap()])
            .env("E2E_JDBC_SECRET", common::TEST_SECRET)
            .env("E2E_ADMIN_PASSWORD", "An-Operator-Password-1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let plain = check("An-Operator-Password-1");
    assert!(plain.contains("server.basic-auth.password holds a credential in plain text"), "{plain}");
    assert!(!plain.contains("An-Operator-Password-1"), "the warning echoed the password: {plain}");
    for by_reference in [format!("file:{}", password_file.display()), "${E2E_ADMIN_PASSWORD}".to_owned()] {
        let err = check(&by_reference);
        assert!(!err.contains("plain text"), "{by_reference}: {err}");
    }
    // A `file:` naming no file is an error, not a password.
    let config = dir.path().join("missing.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  basic-auth: {{username: operator, password: \"file:{}/nope\"}}\nsecret:\n  type: memory\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(common::bin()).args(["config", "check", config.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.basic-auth.password: the file named after `file:` does not exist"), "{err}");
}

fn tls_block(keystore: &Path, password: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    keystore: {}\n    keystore-password: \"{password}\"\n",
        keystore.display()
    )
}

#[tokio::test]
async fn keystore_password_from_a_file_is_read_and_rotated_with_the_keystore() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let keystore = pki.server_keystore("First-Keystore-Password");
    let password_file = dir.path().join("keystore-password");
    std::fs::write(&password_file, "First-Keystore-Password\n").unwrap();
    let reference = format!("file:{}", password_file.display());
    let daemon = Daemon::configured(dir.path(), &tls_block(&keystore, &reference), "", "", &admin_account());
    let mut admin = SecretBrokerClient::with_interceptor(
        tls_channel(&daemon, &pki.ca, None).await.unwrap(),
        Auth::bearer(ADMIN_TOKEN),
    );
    let put = PutSecretRequest {
        namespace: "tls".into(),
        key: "k".into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    };
    admin.put_secret(put).await.unwrap();

    // A renewed keystore under a new password (a new CA, to tell them
    // apart): password first, then the keystore, as a renewal job might.
    let renewed_dir = tempfile::tempdir().unwrap();
    let renewed = Pki::new(renewed_dir.path());
    let renewed_keystore = renewed.server_keystore("Second-Keystore-Password-2");
    rotate(&password_file, "Second-Keystore-Password-2\n");
    std::fs::copy(&renewed_keystore, keystore.with_extension("next")).unwrap();
    std::fs::rename(keystore.with_extension("next"), &keystore).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let mut after = SecretBrokerClient::with_interceptor(
        tls_channel(&daemon, &renewed.ca, None).await.expect("the renewed keystore is served"),
        Auth::bearer(ADMIN_TOKEN),
    );
    let req = GetSecretRequest { namespace: "tls".into(), key: "k".into(), ..Default::default() };
    assert_eq!(&after.get_secret(req).await.unwrap().into_inner().value[..], b"v");
    assert!(tls_channel(&daemon, &pki.ca, None).await.is_err(), "the old certificate is still served");
    let logs = daemon.log_text();
    assert!(logs.contains("TLS certificate files changed"), "{logs}");
    assert!(!logs.contains("Keystore-Password"), "the daemon logged a keystore password");
}

/// `keystore-password: file:PATH` is never the string `file:PATH`: a
/// keystore locked with that very string does not open.
#[test]
fn the_literal_file_reference_is_no_keystore_password() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let password_file = dir.path().join("keystore-password");
    std::fs::write(&password_file, "The-Real-Password\n").unwrap();
    let reference = format!("file:{}", password_file.display());
    let keystore = pki.server_keystore(&reference);
    let config = dir.path().join("literal.yaml");
    std::fs::write(
        &config,
        format!(
            "{}secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://{}/secrets.db\n    secret: ${{E2E_JDBC_SECRET}}\n",
            tls_block(&keystore, &reference),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(common::bin())
        .args(["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("E2E_JDBC_SECRET", common::TEST_SECRET)
        .env("SECRETD_ADMIN_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A daemon that opened the keystore keeps running: give it a bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!started && !out.status.success(), "the keystore opened with the literal `file:` string: {err}");
    assert!(err.contains("server.tls.keystore: cannot open the keystore"), "{err}");
}
