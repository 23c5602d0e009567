//! Vault over TLS: secretd trusts exactly the CA it is given. The test
//! starts its own OpenBao in dev-TLS mode (`SECRETD_TEST_BAO`, the binary
//! scripts/servers/openbao.sh installs), which writes a fresh CA and leaf
//! certificate into a temp dir.

mod support;

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use secretd_core::{ErrorKind, SecretName, SecretStore, SecretValue, Tags};
use secretd_vault::{VaultAuth, VaultOptions, VaultStore};

struct Bao(Child);

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port whose successor is free too: dev mode binds both.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair");
}

#[tokio::test]
async fn tls_with_the_configured_ca_and_only_with_it() {
    if support::server().is_none() {
        return;
    }
    let bao = std::env::var("SECRETD_TEST_BAO").expect("SECRETD_TEST_BAO is set by scripts/servers/openbao.sh");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_pair();
    let _server = Bao(Command::new(bao)
        .args(["server", "-dev", "-dev-tls", "-dev-root-token-id=tls-root"])
        .arg(format!("-dev-tls-cert-dir={}", dir.path().display()))
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bao"));
    let ca = dir.path().join("vault-ca.pem");
    let address = format!("https://127.0.0.1:{port}");
    let options = |ca: Option<std::path::PathBuf>| {
        let mut o = VaultOptions::new(address.clone(), VaultAuth::Token(support::secret("tls-root")));
        o.connection.ca_certificate = ca;
        o
    };

    let started = Instant::now();
    let store = loop {
        match (ca.exists(), VaultStore::connect(options(Some(ca.clone()))).await) {
            (true, Ok(store)) => break store,
            (_, result) => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "bao with TLS did not come up: {:?}",
                    result.err()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let name = SecretName::parse("tls", "over.tls", "k").unwrap();
    store.put(&name, &SecretValue::from_slice(b"encrypted in transit"), &Tags::new(), None).await.unwrap();
    assert_eq!(store.get(&name, None).await.unwrap().value.expose(), b"encrypted in transit");

    // Without the CA the server's certificate is not trusted.
    let err = VaultStore::connect(options(None)).await.expect_err("an untrusted certificate");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}
