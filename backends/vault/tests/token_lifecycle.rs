//! Tokens that expire or die: secretd must log in again by itself, and bad
//! credentials must fail clearly at start.

mod support;

use std::time::{Duration, Instant};

use secretd_core::{ErrorKind, SecretName, SecretStore, SecretValue, Tags};
use secretd_vault::{VaultAuth, VaultStore};
use vaultrs::api::token::requests::ListAccessorRequest;

fn name(key: &str) -> SecretName {
    SecretName::parse("lifecycle", &format!("run-{:08x}", rand::random::<u32>()), key).unwrap()
}

/// A two-second token that cannot be renewed past two seconds: over six
/// seconds of calls it dies at least twice, and no call may notice.
#[tokio::test]
async fn expiring_tokens_are_replaced_without_failing_a_call() {
    let Some(server) = support::server() else { return };
    let accounts = support::accounts(&server).await;
    let auth = VaultAuth::AppRole {
        mount: "approle".into(),
        role_id: accounts.short_role_id,
        secret_id: support::secret(&accounts.short_secret_id),
    };
    let store = support::connect(support::options(&server, auth)).await;
    let n = name("ticking");
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed() < Duration::from_secs(6) {
        let value = format!("value-{calls}");
        store.put(&n, &SecretValue::from_slice(value.as_bytes()), &Tags::new(), None).await.expect("put");
        let read = store.get(&n, None).await.expect("get");
        assert_eq!(read.value.expose(), value.as_bytes());
        calls += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(calls > 20, "only {calls} rounds in six seconds");
}

/// A token revoked behind secretd's back answers 403; the call that sees it
/// logs in again and succeeds.
#[tokio::test]
async fn a_revoked_token_is_replaced_on_the_first_403() {
    let Some(server) = support::server() else { return };
    let accounts = support::accounts(&server).await;
    let auth = VaultAuth::Userpass {
        mount: "userpass".into(),
        username: accounts.username.clone(),
        password: support::secret(support::PASSWORD),
    };
    let store = support::connect(support::options(&server, auth)).await;
    let n = name("survivor");
    store.put(&n, &SecretValue::from_slice(b"before"), &Tags::new(), None).await.unwrap();

    let root = support::root_client(&server);
    let accessors: Vec<String> =
        vaultrs::api::exec_with_result(&root, ListAccessorRequest::builder().build().unwrap()).await.unwrap().keys;
    let mut revoked = 0;
    for accessor in accessors {
        let Ok(token) = vaultrs::token::lookup_accessor(&root, &accessor).await else { continue };
        if token.meta.as_ref().and_then(|m| m.get("username")) == Some(&accounts.username) {
            vaultrs::token::revoke_accessor(&root, &accessor).await.unwrap();
            revoked += 1;
        }
    }
    assert!(revoked >= 1, "found no token of the test user to revoke");

    assert_eq!(store.get(&n, None).await.expect("get after revocation").value.expose(), b"before");
}

#[tokio::test]
async fn bad_credentials_fail_the_start_with_permission_denied() {
    let Some(server) = support::server() else { return };
    let accounts = support::accounts(&server).await;
    let cases = [
        VaultAuth::Token(support::secret("s.not-a-real-token")),
        VaultAuth::Userpass {
            mount: "userpass".into(),
            username: accounts.username.clone(),
            password: support::secret("wrong password"),
        },
        VaultAuth::AppRole {
            mount: "approle".into(),
            role_id: accounts.role_id.clone(),
            secret_id: support::secret("00000000-0000-0000-0000-000000000000"),
        },
    ];
    for auth in cases {
        let method = auth.method();
        let err = VaultStore::connect(support::options(&server, auth)).await.expect_err(method);
        assert!(
            matches!(err.kind(), ErrorKind::PermissionDenied | ErrorKind::InvalidName),
            "{method}: {:?} {err}",
            err.kind()
        );
        assert!(err.to_string().contains(method), "{method}: the error should say how secretd logged in: {err}");
        assert!(!err.to_string().contains("wrong password"), "the error leaked the password");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let options = secretd_vault::VaultOptions::new(
        "http://127.0.0.1:9", // discard port: nothing listens
        VaultAuth::Token(support::secret("t")),
    );
    let err = VaultStore::connect(options).await.expect_err("nothing listens there");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}
