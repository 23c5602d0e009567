//! Who may read what, end to end: tokens (valid, missing, malformed,
//! expired, revoked), isolation on cached secrets, access rules, basic auth,
//! failure rate limiting, TLS and mutual TLS, a Unix socket with peer
//! credentials, the audit trail, and a scan for planted secrets in
//! everything secretd says.

mod common;

use std::time::Duration;

use common::{
    admin_account, audit_lines, create_token, get_value, pki::Pki, put, tls_channel, token_hash, unix_channel, Auth,
    Daemon, ADMIN_TOKEN,
};
use hyper_util::rt::TokioIo;
use secretd::proto::{
    secret_broker_client::SecretBrokerClient, BatchGetSecretsRequest, ListSecretsRequest, RevokeTokenRequest, SecretRef,
};
use tonic::{
    transport::{Channel, Endpoint},
    Code,
};
use tower::service_fn;

#[tokio::test]
async fn tokens_valid_missing_malformed_expired_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::sqlite_in(dir.path(), "", "");
    put(&mut daemon.client().await, "company", "db", b"v").await.unwrap();

    let worker = create_token(&daemon, "worker-1", "WORKER", &["read"], &[], 0).await;
    assert_eq!(get_value(&mut daemon.client_as(Auth::bearer(&worker)).await, "company", "db").await.unwrap(), b"v");

    for (what, auth) in [
        ("missing", Auth::none()),
        ("malformed token", Auth::bearer("not-a-token")),
        ("unknown token", Auth::bearer(&format!("sdt_{}", "x".repeat(43)))),
        ("wrong scheme", Auth::raw("Token abc")),
        ("bad basic", Auth::raw("Basic !!!")),
    ] {
        let err = get_value(&mut daemon.client_as(auth).await, "company", "db").await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{what}");
        assert_eq!(err.message(), "authentication required", "{what}: the message must not hint at the cause");
    }

    // Expiry is checked per call.
    let short = create_token(&daemon, "short-lived", "WORKER", &["read"], &[], 1).await;
    assert!(get_value(&mut daemon.client_as(Auth::bearer(&short)).await, "company", "db").await.is_ok());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = get_value(&mut daemon.client_as(Auth::bearer(&short)).await, "company", "db").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Revocation reaches a second replica sharing the state store within a second.
    let replica = Daemon::sqlite_in(dir.path(), "", "");
    let mut on_replica = replica.client_as(Auth::bearer(&worker)).await;
    assert!(get_value(&mut on_replica, "company", "db").await.is_ok());
    daemon.admin().await.revoke_token(RevokeTokenRequest { name: "worker-1".into() }).await.unwrap();
    let err = get_value(&mut daemon.client_as(Auth::bearer(&worker)).await, "company", "db").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "revoked on the replica that revoked it: at once");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(get_value(&mut on_replica, "company", "db").await.unwrap_err().code(), Code::Unauthenticated);

    // Token management needs admin.
    let mut as_worker = secretd::proto::token_admin_client::TokenAdminClient::with_interceptor(
        daemon.channel().await,
        Auth::bearer(&create_token(&daemon, "worker-2", "WORKER", &["read"], &[], 0).await),
    );
    let err = as_worker.list_tokens(secretd::proto::ListTokensRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let listed = daemon.admin().await.list_tokens(secretd::proto::ListTokensRequest {}).await.unwrap().into_inner();
    let names: Vec<&str> = listed.tokens.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"worker-1") && names.contains(&"short-lived"), "{names:?}");
    assert!(listed.tokens.iter().find(|t| t.name == "worker-1").unwrap().revoked_at.is_some());
    assert!(listed.tokens.iter().find(|t| t.name == "worker-2").unwrap().revoked_at.is_none());
}

#[tokio::test]
async fn isolation_refuses_denied_services_even_on_cached_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::sqlite_in(dir.path(), "isolation:\n  enabled: true\n  denied-services: [EXECUTOR]", "");
    let mut admin = daemon.client().await;
    put(&mut admin, "company", "db", b"cached").await.unwrap();
    let worker = create_token(&daemon, "w", "WORKER", &["read", "list"], &[], 0).await;
    let executor = create_token(&daemon, "e", "EXECUTOR", &["read", "list", "write"], &[], 0).await;
    let mut w = daemon.client_as(Auth::bearer(&worker)).await;
    assert_eq!(get_value(&mut w, "company", "db").await.unwrap(), b"cached");
    let mut e = daemon.client_as(Auth::bearer(&executor)).await;
    for key in ["db", "does-not-exist"] {
        let err = get_value(&mut e, "company", key).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{key}");
        assert!(err.message().contains("denied-services"), "{}", err.message());
    }
    let batch = e
        .batch_get_secrets(BatchGetSecretsRequest {
            refs: vec![SecretRef { namespace: "company".into(), key: "db".into(), ..Default::default() }],
        })
        .await
        .unwrap()
        .into_inner();
    match &batch.results[0].result {
        Some(secretd::proto::batch_get_result::Result::Error(err)) => {
            assert_eq!(err.code, Code::PermissionDenied as i32)
        }
        other => panic!("a denied service got {other:?}"),
    }
    let list = e.list_secrets(ListSecretsRequest { namespace: "company".into(), ..Default::default() }).await;
    assert_eq!(list.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(put(&mut e, "company", "x", b"v").await.unwrap_err().code(), Code::PermissionDenied);
}

#[tokio::test]
async fn access_rules_allow_and_deny_globs() {
    let dir = tempfile::tempdir().unwrap();
    let top = format!(
        "{}access:\n  default-access: deny\n  rules:\n    - services: [WORKER]\n      allow: [\"main/company.*/*\"]\n      deny: [\"main/company.finance/*\", \"*/*/root-*\"]\n    - principals: [test-admin]\n      allow: [\"*/*/*\"]\n",
        admin_account()
    );
    let daemon = Daemon::configured(dir.path(), "server:\n  listen: 127.0.0.1:0\n", "", "", &top);
    let mut admin = daemon.client().await;
    for (ns, key) in [("company.team", "db"), ("company.team", "root-pw"), ("company.finance", "db"), ("other", "db")] {
        put(&mut admin, ns, key, b"v").await.unwrap();
    }
    let worker = create_token(&daemon, "w", "WORKER", &["read", "list"], &[], 0).await;
    let mut w = daemon.client_as(Auth::bearer(&worker)).await;
    assert!(get_value(&mut w, "company.team", "db").await.is_ok());
    for (ns, key) in [("company.team", "root-pw"), ("company.finance", "db"), ("other", "db"), ("other", "absent")] {
        let err = get_value(&mut w, ns, key).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{ns}/{key}");
    }
    let scheduler = create_token(&daemon, "s", "SCHEDULER", &["read"], &[], 0).await;
    let err = get_value(&mut daemon.client_as(Auth::bearer(&scheduler)).await, "company.team", "db").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "default-access: deny");
}

#[tokio::test]
async fn basic_auth_admin_and_password_rules() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        "server:\n  listen: 127.0.0.1:0\n  basic-auth:\n    username: operator\n    password: ${E2E_ADMIN_PASSWORD}\n";
    let rules = "security:\n  basic-auth:\n    password-regexp: \"[A-Za-z0-9-]{16,}\"\n";
    let daemon = {
        let config = dir.path().join("basic.yaml");
        let db = dir.path().join("secrets.db");
        std::fs::write(
            &config,
            format!("{server}secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://{}\n    secret: ${{E2E_JDBC_SECRET}}\n{rules}", db.display()),
        )
        .unwrap();
        Daemon::start_with_env(
            &["serve", "--config", config.to_str().unwrap()],
            dir.path(),
            &[("E2E_ADMIN_PASSWORD", "Correct-Horse-Battery-9")],
        )
    };
    let basic = |user_password: &str| {
        use base64::Engine;
        Auth::raw(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_password)))
    };
    let mut operator = daemon.client_as(basic("operator:Correct-Horse-Battery-9")).await;
    put(&mut operator, "company", "db", b"v").await.unwrap();
    for wrong in ["operator:wrong", "someone:Correct-Horse-Battery-9", "operator"] {
        let err = get_value(&mut daemon.client_as(basic(wrong)).await, "company", "db").await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{wrong}");
    }
    // A password that breaks the rule stops the daemon at start, naming the field.
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--config", dir.path().join("basic.yaml").to_str().unwrap()])
        .current_dir(dir.path())
        .env("E2E_JDBC_SECRET", common::TEST_SECRET)
        .env("E2E_ADMIN_PASSWORD", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.basic-auth.password: does not match security.basic-auth.password-regexp"), "{err}");
    assert!(!err.contains("short\n") && !err.contains("\"short\""), "the error echoed the password: {err}");
}

/// A channel to `addr` whose connections come from `source` (another
/// loopback address), to tell peers apart on one machine.
async fn channel_from(source: &str, addr: &str) -> Channel {
    let source: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    let target: std::net::SocketAddr = addr.parse().unwrap();
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(service_fn(move |_: tonic::transport::Uri| async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(source)?;
            Ok::<_, std::io::Error>(TokioIo::new(socket.connect(target).await?))
        }))
        .await
        .unwrap()
}

/// Issue #12, item 7: guessing the operator's password from one address
/// locks out that user there, and nobody else: not the valid token of a
/// caller behind the same address, not another user name, not the operator
/// elsewhere. Invalid tokens (256-bit guesses) do not count at all.
#[tokio::test]
async fn repeated_basic_auth_failures_lock_out_that_user_at_that_address_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = "server:\n  listen: 127.0.0.1:0\n  basic-auth: {username: operator, password: right-password}\n";
    let top = format!("{}  failure-limit:\n    burst: 5\n    per-minute: 1\n", admin_account());
    let daemon = Daemon::configured(dir.path(), server, "", "", &top);
    put(&mut daemon.client().await, "company", "db", b"v").await.unwrap();
    let from = |source: &'static str, auth: Auth| {
        let addr = daemon.addr.clone();
        async move { SecretBrokerClient::with_interceptor(channel_from(source, &addr).await, auth) }
    };
    let basic = |user: &str, password: &str| {
        use base64::Engine;
        Auth::raw(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))))
    };
    let mut attacker = from("127.0.0.2", basic("operator", "guess")).await;
    for _ in 0..5 {
        assert_eq!(get_value(&mut attacker, "company", "db").await.unwrap_err().code(), Code::Unauthenticated);
    }
    for _ in 0..3 {
        assert_eq!(get_value(&mut attacker, "company", "db").await.unwrap_err().code(), Code::ResourceExhausted);
    }
    // The right password from there waits out the penalty too, or the
    // limiter would tell a right guess from a wrong one ...
    let mut operator_there = from("127.0.0.2", basic("operator", "right-password")).await;
    assert_eq!(get_value(&mut operator_there, "company", "db").await.unwrap_err().code(), Code::ResourceExhausted);
    // ... but bad tokens from that address are no guesses worth counting,
    let mut bad_tokens = from("127.0.0.2", Auth::bearer(&format!("sdt_{}", "g".repeat(43)))).await;
    for _ in 0..20 {
        assert_eq!(get_value(&mut bad_tokens, "company", "db").await.unwrap_err().code(), Code::Unauthenticated);
    }
    // and a valid token behind the same address is served at once.
    let mut neighbour = from("127.0.0.2", Auth::bearer(ADMIN_TOKEN)).await;
    assert_eq!(get_value(&mut neighbour, "company", "db").await.unwrap(), b"v");
    let mut other_user = from("127.0.0.2", basic("someone-else", "guess")).await;
    assert_eq!(get_value(&mut other_user, "company", "db").await.unwrap_err().code(), Code::Unauthenticated);
    let mut operator_here = from("127.0.0.1", basic("operator", "right-password")).await;
    assert_eq!(get_value(&mut operator_here, "company", "db").await.unwrap(), b"v");
    let started = std::time::Instant::now();
    let mut good = daemon.client().await;
    for _ in 0..20 {
        assert_eq!(get_value(&mut good, "company", "db").await.unwrap(), b"v");
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

fn tls_server_block(pki: &Pki, client_auth: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n    client-authentication: {client_auth}\n    client-ca: {}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display()
    )
}

fn cert_rules() -> String {
    format!(
        "{}  certificates:\n    - uri-san: \"spiffe://example.org/ns/etl/sa/*\"\n      principal:\n        name: etl-worker\n        service: WORKER\n        permissions: [read]\n",
        admin_account()
    )
}

#[tokio::test]
async fn mutual_tls_want() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let daemon = Daemon::configured(dir.path(), &tls_server_block(&pki, "want"), "", "", &cert_rules());
    assert!(daemon.addr.starts_with("https://"), "{}", daemon.addr);
    let mut admin = SecretBrokerClient::with_interceptor(
        tls_channel(&daemon, &pki.ca, None).await.unwrap(),
        Auth::bearer(ADMIN_TOKEN),
    );
    put(&mut admin, "company", "db", b"over tls").await.unwrap();

    // A mapped certificate is enough on its own.
    let cert = pki.client("worker-7", Some("spiffe://example.org/ns/etl/sa/worker"));
    let mut by_cert =
        SecretBrokerClient::with_interceptor(tls_channel(&daemon, &pki.ca, Some(cert)).await.unwrap(), Auth::none());
    assert_eq!(get_value(&mut by_cert, "company", "db").await.unwrap(), b"over tls");
    assert_eq!(put(&mut by_cert, "company", "x", b"v").await.unwrap_err().code(), Code::PermissionDenied);

    // Without a certificate, want still demands a token.
    let mut bare =
        SecretBrokerClient::with_interceptor(tls_channel(&daemon, &pki.ca, None).await.unwrap(), Auth::none());
    assert_eq!(get_value(&mut bare, "company", "db").await.unwrap_err().code(), Code::Unauthenticated);
    // An unmapped certificate is no credential either.
    let stranger = pki.client("stranger", Some("spiffe://example.org/ns/web/sa/x"));
    let mut unmapped = SecretBrokerClient::with_interceptor(
        tls_channel(&daemon, &pki.ca, Some(stranger)).await.unwrap(),
        Auth::none(),
    );
    assert_eq!(get_value(&mut unmapped, "company", "db").await.unwrap_err().code(), Code::Unauthenticated);
}

#[tokio::test]
async fn tls_from_a_pkcs12_keystore() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let keystore = pki.server_keystore("changeit");
    let server = format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    keystore: {}\n    keystore-password: ${{E2E_KEYSTORE_PASSWORD}}\n",
        keystore.display()
    );
    let config = dir.path().join("p12.yaml");
    std::fs::write(
        &config,
        format!(
            "{server}secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://{}\n    secret: ${{E2E_JDBC_SECRET}}\n{}",
            dir.path().join("secrets.db").display(),
            admin_account()
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with_env(
        &["serve", "--config", config.to_str().unwrap()],
        dir.path(),
        &[("E2E_KEYSTORE_PASSWORD", "changeit")],
    );
    let mut admin = SecretBrokerClient::with_interceptor(
        tls_channel(&daemon, &pki.ca, None).await.unwrap(),
        Auth::bearer(ADMIN_TOKEN),
    );
    put(&mut admin, "company", "db", b"p12").await.unwrap();
    assert_eq!(get_value(&mut admin, "company", "db").await.unwrap(), b"p12");
    drop(daemon);
    // A wrong password stops the daemon with a message that names the setting.
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .current_dir(dir.path())
        .env("E2E_JDBC_SECRET", common::TEST_SECRET)
        .env("E2E_KEYSTORE_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server.tls.keystore"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn mutual_tls_need() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let daemon = Daemon::configured(dir.path(), &tls_server_block(&pki, "need"), "", "", &cert_rules());
    let cert = pki.client("worker-7", Some("spiffe://example.org/ns/etl/sa/worker"));
    let mut admin = SecretBrokerClient::with_interceptor(
        tls_channel(&daemon, &pki.ca, Some(cert.clone())).await.unwrap(),
        Auth::bearer(ADMIN_TOKEN),
    );
    put(&mut admin, "company", "db", b"v").await.unwrap();
    let mut worker =
        SecretBrokerClient::with_interceptor(tls_channel(&daemon, &pki.ca, Some(cert)).await.unwrap(), Auth::none());
    assert_eq!(get_value(&mut worker, "company", "db").await.unwrap(), b"v");
    // No certificate: the handshake fails, whatever token comes with it.
    match tls_channel(&daemon, &pki.ca, None).await {
        Err(_) => {}
        Ok(channel) => {
            let mut c = SecretBrokerClient::with_interceptor(channel, Auth::bearer(ADMIN_TOKEN));
            assert!(get_value(&mut c, "company", "db").await.is_err(), "need admitted a caller without a certificate");
        }
    }
    // Plain text to a TLS port goes nowhere.
    let port = daemon.addr.rsplit(':').next().unwrap();
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await;
    if let Ok(channel) = plain {
        let mut c = SecretBrokerClient::with_interceptor(channel, Auth::bearer(ADMIN_TOKEN));
        assert!(get_value(&mut c, "company", "db").await.is_err());
    }
}

#[tokio::test]
async fn unix_socket_peers_are_identified_by_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("secretd.sock");
    let uid = unsafe_free_uid();
    let top = format!(
        "{}  unix-peers:\n    - uid: {uid}\n      principal:\n        name: sidecar-peer\n        service: WORKER\n        permissions: [read, write]\n",
        admin_account()
    );
    let server = format!("server:\n  listen: unix://{}\n  socket:\n    mode: \"0600\"\n", socket.display());
    let daemon = Daemon::configured(dir.path(), &server, "", "", &top);
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let channel = unix_channel(&socket).await;
    // No token: the kernel vouches for our uid.
    let mut peer = SecretBrokerClient::with_interceptor(channel, Auth::none());
    put(&mut peer, "company", "db", b"via socket").await.unwrap();
    assert_eq!(get_value(&mut peer, "company", "db").await.unwrap(), b"via socket");
    drop(daemon);

    // A peer no rule names gets nothing without a token.
    let top = format!(
        "{}  unix-peers:\n    - uid: {}\n      principal:\n        name: someone-else\n        service: WORKER\n",
        admin_account(),
        uid + 1
    );
    let daemon = Daemon::configured(dir.path(), &server, "", "", &top);
    let channel = unix_channel(&socket).await;
    let mut stranger = SecretBrokerClient::with_interceptor(channel, Auth::none());
    assert_eq!(get_value(&mut stranger, "company", "db").await.unwrap_err().code(), Code::Unauthenticated);
    drop(daemon);
}

/// This process's uid, from the owner of a file it creates.
fn unsafe_free_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().metadata().unwrap().uid()
}

#[tokio::test]
async fn audit_records_every_decision_and_nothing_secret() {
    const PLANTED: &[u8] = b"PLANTED-VALUE-5e1f0c-must-never-leak";
    const PLANTED_TOKEN: &str = "sdt_PLANTEDtokenPLANTEDtokenPLANTEDtokenPLANTED";
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let top = format!(
        "{}    - name: planted\n      service: EXECUTOR\n      permissions: [read]\n      token-sha256: {}\naudit:\n  sink: file\n  path: {}\n",
        admin_account(),
        token_hash(PLANTED_TOKEN),
        audit.display()
    );
    let daemon = Daemon::configured(
        dir.path(),
        "server:\n  listen: 127.0.0.1:0\n",
        "max-value-size: 100\nisolation:\n  enabled: true\n  denied-services: [EXECUTOR]",
        "",
        &top,
    );
    let mut admin = daemon.client().await;
    let mut said: Vec<String> = Vec::new();
    put(&mut admin, "company.team", "db", PLANTED).await.unwrap();
    assert_eq!(get_value(&mut admin, "company.team", "db").await.unwrap(), PLANTED);
    assert_eq!(get_value(&mut admin, "company.team.etl", "db").await.unwrap(), PLANTED);
    let batch = admin
        .batch_get_secrets(BatchGetSecretsRequest {
            refs: vec![
                SecretRef { namespace: "company.team".into(), key: "db".into(), ..Default::default() },
                SecretRef {
                    namespace: "company.team".into(),
                    key: "db".into(),
                    version: "99".into(),
                    ..Default::default()
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    // The batch legitimately carries the value once; its error item must not.
    for result in &batch.results {
        if let Some(secretd::proto::batch_get_result::Result::Error(e)) = &result.result {
            said.push(e.message.clone());
        }
    }
    let mut denied = daemon.client_as(Auth::bearer(PLANTED_TOKEN)).await;
    said.push(get_value(&mut denied, "company.team", "db").await.unwrap_err().message().to_owned());
    let mut wrong = daemon.client_as(Auth::bearer(&PLANTED_TOKEN.replace('P', "Q"))).await;
    said.push(get_value(&mut wrong, "company.team", "db").await.unwrap_err().message().to_owned());
    // Values in refused requests must not come back in the error either.
    let mut too_big = PLANTED.to_vec();
    too_big.extend_from_slice(&[b'x'; 100]);
    said.push(put(&mut admin, "company.team", "big", &too_big).await.unwrap_err().message().to_owned());
    said.push(put(&mut admin, "company..team", "db", PLANTED).await.unwrap_err().message().to_owned());
    let listed = admin
        .list_secrets(ListSecretsRequest { namespace: "company.team".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    said.push(format!("{listed:?}"));
    tokio::time::sleep(Duration::from_millis(300)).await; // let the audit writer catch up

    let records = audit_lines(&audit);
    let find = |method: &str, decision: &str| {
        records.iter().find(|r| r["method"] == method && r["decision"] == decision).cloned()
    };
    let allowed = find("GetSecret", "allow").expect("an allowed GetSecret record");
    for field in ["time", "principal", "service", "peer", "tenant", "namespace", "key", "reason", "code"] {
        assert!(!allowed[field].is_null(), "audit records carry {field}: {allowed}");
    }
    assert_eq!(allowed["principal"], "test-admin");
    assert!(
        records.iter().any(|r| r["method"] == "BatchGetSecrets" && r["cache_hit"] == true),
        "cache hits are recorded"
    );
    let refused = find("GetSecret", "deny").expect("a denial record");
    assert_eq!(refused["service"], "EXECUTOR");
    assert_eq!(refused["code"], "PERMISSION_DENIED");
    assert!(refused["reason"].as_str().unwrap().contains("denied-services"));
    let failed = find("GetSecret", "unauthenticated").expect("an authentication failure record");
    assert_eq!(failed["reason"], "unknown or revoked token");
    assert_eq!(records.iter().filter(|r| r["method"] == "BatchGetSecrets").count(), 2, "one record per batch item");

    // The scan: logs at debug level, the audit trail, every message returned.
    let logs = daemon.log_text();
    drop(daemon);
    let planted = std::str::from_utf8(PLANTED).unwrap();
    for (source, text) in
        [("logs", logs.clone()), ("audit", std::fs::read_to_string(&audit).unwrap()), ("responses", said.join("\n"))]
    {
        assert!(!text.contains(planted), "the planted value leaked into the {source}");
        assert!(!text.contains(&PLANTED_TOKEN[4..]), "the planted token leaked into the {source}");
        assert!(!text.contains(&ADMIN_TOKEN[4..]), "the admin token leaked into the {source}");
        assert!(!text.contains(common::TEST_SECRET), "the encryption secret leaked into the {source}");
    }
    assert!(logs.contains("DEBUG"), "the scan needs debug logs to mean something");
}

/// The server certificate is renewed in place (as cert-manager does): the
/// next connection gets the new one, without a restart.
#[tokio::test]
async fn a_renewed_server_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let daemon = Daemon::configured(dir.path(), &tls_server_block(&pki, "none"), "", "", &common::admin_account());
    let mut before = SecretBrokerClient::with_interceptor(
        tls_channel(&daemon, &pki.ca, None).await.unwrap(),
        Auth::bearer(ADMIN_TOKEN),
    );
    put(&mut before, "renewal", "k", b"v").await.unwrap();

    // A new CA and a new certificate, written over the old files.
    let renewed_dir = tempfile::tempdir().unwrap();
    let renewed = Pki::new(renewed_dir.path());
    std::fs::copy(&renewed.server_key, &pki.server_key).unwrap();
    std::fs::copy(&renewed.server_cert, &pki.server_cert).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    let mut after = SecretBrokerClient::with_interceptor(
        tls_channel(&daemon, &renewed.ca, None).await.expect("the renewed certificate is served"),
        Auth::bearer(ADMIN_TOKEN),
    );
    assert_eq!(get_value(&mut after, "renewal", "k").await.unwrap(), b"v");
    assert!(tls_channel(&daemon, &pki.ca, None).await.is_err(), "the old CA still validates the served certificate");
    assert!(daemon.log_text().contains("TLS certificate files changed"));
}
