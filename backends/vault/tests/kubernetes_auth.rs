//! Kubernetes auth against OpenBao, through its `jwt` auth method.
//!
//! OpenBao's `kubernetes` method validates a JWT by asking a Kubernetes API
//! server (TokenReview), which the tests cannot run. Its `jwt` method,
//! configured with a local public key, takes the same login request
//! (`POST auth/<mount>/login {role, jwt}`), so secretd's Kubernetes login is
//! pointed at a `jwt` mount: what is tested is secretd's side of the flow
//! (reading the service account token file at each login, logging in,
//! logging in again with the rotated file), not Kubernetes' validation.

mod support;

use std::{sync::Arc, time::Duration};

use secretd_core::{ErrorKind, SecretName, SecretStore, SecretValue, Tags};
use secretd_vault::VaultStore;
use support::kubernetes::{kubernetes, mount, revoke_tokens_of, trust, write_token, Issuer};

fn name(key: &str) -> SecretName {
    SecretName::parse("k8s", &format!("run-{:08x}", rand::random::<u32>()), key).unwrap()
}

async fn put_and_read(store: &VaultStore, name: &SecretName, text: &str) {
    store.put(name, &SecretValue::from_slice(text.as_bytes()), &Tags::new(), None).await.unwrap();
    let read = store.get(name, None).await.unwrap();
    assert_eq!(read.value.expose(), text.as_bytes());
}

#[tokio::test]
async fn logs_in_with_the_token_file_and_reads_it_again_after_rotation() {
    let Some(server) = support::server() else { return };
    support::accounts(&server).await;
    let root = support::root_client(&server);
    let first_key = Issuer::new();
    let mount = mount(&root, &first_key, "1h").await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let first_token = first_key.token();
    write_token(&token_file, &first_token);

    let store = support::connect(support::options(&server, kubernetes(&mount, &token_file))).await;
    assert!(!format!("{store:?}").contains(&first_token));
    let secret = name("db-password");
    put_and_read(&store, &secret, "first").await;

    // The cluster rotates its signing key and the kubelet has not yet
    // written a token signed with the new one: once Vault forgets
    // secretd's token, the old file cannot log in again.
    let second_key = Issuer::new();
    trust(&root, &mount, &second_key).await;
    assert!(revoke_tokens_of(&root, &mount).await >= 1, "secretd's token was issued by {}", mount.path);
    let refused = store.get(&secret, None).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::PermissionDenied, "{refused}");
    assert!(!refused.to_string().contains(&first_token), "{refused}");

    // The kubelet writes the new token: the next call logs in with it.
    write_token(&token_file, &second_key.token());
    assert_eq!(store.get(&secret, None).await.unwrap().value.expose(), b"first");
    put_and_read(&store, &secret, "second").await;
    store.delete(&secret).await.unwrap();
}

#[tokio::test]
async fn logs_in_again_when_the_token_expires() {
    let Some(server) = support::server() else { return };
    support::accounts(&server).await;
    let root = support::root_client(&server);
    let key = Issuer::new();
    let mount = mount(&root, &key, "2s").await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    write_token(&token_file, &key.token());
    let store = Arc::new(support::connect(support::options(&server, kubernetes(&mount, &token_file))).await);
    let secret = name("api-key");
    put_and_read(&store, &secret, "before expiry").await;

    // Past the 2 s max TTL only a new login gives a working token; the
    // file holds a fresh JWT, as it would after the kubelet's rotation.
    write_token(&token_file, &key.token());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(store.get(&secret, None).await.unwrap().value.expose(), b"before expiry");
    store.delete(&secret).await.unwrap();
}

#[tokio::test]
async fn an_unreadable_or_empty_token_file_fails_the_start_by_its_path() {
    let Some(server) = support::server() else { return };
    support::accounts(&server).await;
    let root = support::root_client(&server);
    let key = Issuer::new();
    let mount = mount(&root, &key, "1h").await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-token");
    let error = VaultStore::connect(support::options(&server, kubernetes(&mount, &missing))).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied);
    assert!(error.to_string().contains(&missing.display().to_string()), "{error}");

    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let error = VaultStore::connect(support::options(&server, kubernetes(&mount, &empty))).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied);
    assert!(error.to_string().contains("is empty"), "{error}");

    // A JWT the mount does not trust is refused by Vault, and the message
    // does not quote it.
    let forged = Issuer::new().token();
    let forged_file = dir.path().join("forged-token");
    write_token(&forged_file, &forged);
    let error = VaultStore::connect(support::options(&server, kubernetes(&mount, &forged_file))).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    assert!(!error.to_string().contains(&forged), "{error}");
    assert!(error.to_string().contains("logging in with kubernetes"), "{error}");
}
