//! What the conformance suite does not cover: authentication (the
//! challenge, mis-set credentials), TLS, retries, Key Vault's limits, soft
//! delete and purge, and the names secretd writes. All against the Key
//! Vault test server (not Azure), through the real SDK.

mod support;

use std::{sync::Arc, time::Duration};

use secretd_azure::{AzureCredential, AzureStore, NamePrefix};
use secretd_azure_test_server::{StaticToken, KEY_VAULT_MAX_VALUE_CHARS};
use secretd_core::{ErrorKind, SecretName, SecretStore, SecretValue, Tags, Version};

fn name(key: &str) -> SecretName {
    SecretName::parse("main", "team.etl", key).unwrap()
}

fn value(s: &str) -> SecretValue {
    SecretValue::from_slice(s.as_bytes())
}

#[tokio::test]
async fn a_mis_set_credential_is_a_clean_permission_error() {
    let server = support::server();
    let wrong = AzureCredential::Token(Arc::new(StaticToken("not-the-token-hunter2".into())));
    let store = support::connect(support::fast(server.options_with(wrong))).await;
    for result in [store.health().await.map(|_| ()), store.get(&name("k"), None).await.map(|_| ())] {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(err.message().contains("refused secretd's credentials (401)"), "{err}");
        assert!(err.message().contains("AKV10032"), "{err}");
        assert!(!err.message().contains("hunter2"), "{err}");
    }
    // A denied call is not retried: one challenge and one refused token per call.
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn a_wrong_client_secret_is_a_clean_permission_error() {
    let server = support::server();
    let mut options = server.client_secret_options();
    if let AzureCredential::ClientSecret { client_secret, .. } = &mut options.credential {
        *client_secret = "wrong-secret-hunter2".to_owned().into();
    }
    let store = support::connect(support::fast(options)).await;
    let err = store.put(&name("k"), &value("v"), &Tags::new(), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("AADSTS7000215"), "{err}");
    assert!(!err.message().contains("hunter2"), "{err}");
    // Nothing was written, and the vault never saw a token.
    assert!(server.secret_names().is_empty());
    assert!(server.requests().iter().filter(|r| r.path.starts_with("/secrets")).all(|r| r.status == 401));
}

#[tokio::test]
async fn a_client_secret_credential_gets_its_token_from_the_authority_host() {
    let server = support::server();
    let store = support::connect(server.client_secret_options()).await;
    store.put(&name("k"), &value("v"), &Tags::new(), None).await.unwrap();
    assert_eq!(store.get(&name("k"), None).await.unwrap().value.expose(), b"v");
    let token_path = format!("/{}/oauth2/v2.0/token", server.tenant_id);
    let tokens = server.requests().iter().filter(|r| r.path == token_path).count();
    assert_eq!(tokens, 1, "the credential caches its token");
}

#[tokio::test]
async fn the_first_request_gets_the_challenge() {
    let server = support::server();
    let store = support::connect(server.options()).await;
    store.put(&name("k"), &value("v"), &Tags::new(), None).await.unwrap();
    let log = server.requests();
    // The store's first request (a one-secret listing, sent alone so that
    // concurrent first requests cannot race in the SDK's challenge handling)
    // goes without a token, is challenged, and is sent again with the token;
    // the put's own requests then carry the token at once.
    let shape: Vec<(&str, &str, bool, u16)> =
        log.iter().map(|r| (r.method.as_str(), r.path.as_str(), r.authorization, r.status)).collect();
    assert_eq!(
        shape,
        [
            ("GET", "/secrets", false, 401),
            ("GET", "/secrets", true, 200),
            ("GET", "/secrets/secretd-main--team-0etl--k/", true, 404),
            ("PUT", "/secrets/secretd-main--team-0etl--k", true, 200),
        ],
        "{log:?}"
    );
    // Once the challenge is known, later calls are authorized at once.
    store.get(&name("k"), None).await.unwrap();
    assert!(server.requests()[4..].iter().all(|r| r.authorization && r.status == 200));
}

#[tokio::test]
async fn an_untrusted_certificate_is_unavailable_not_a_hang() {
    let server = support::server();
    let mut options = support::fast(server.options());
    options.ca_certificate_pem = None;
    let store = support::connect(options).await;
    let started = std::time::Instant::now();
    let err = store.health().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("cannot reach Key Vault"), "{err}");
    assert!(err.message().to_lowercase().contains("certificate"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(server.requests().is_empty(), "no request got through TLS");
}

#[tokio::test]
async fn a_bad_ca_certificate_is_refused_at_start() {
    let server = support::server();
    let mut options = server.options();
    options.ca_certificate_pem = Some(b"not a certificate".to_vec());
    let err = AzureStore::connect(options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName);
    assert!(err.message().starts_with("ca-certificate"), "{err}");
    for url in ["http://localhost:1/", "https://v.vault.azure.net/secrets"] {
        let err =
            AzureStore::connect(secretd_azure::AzureOptions::new(url, AzureCredential::Token(server.credential())))
                .await
                .unwrap_err();
        assert!(err.message().starts_with("vault-url"), "{err}");
    }
}

#[tokio::test]
async fn the_challenge_check_can_stay_on_for_a_vault_azure_net_name() {
    let server = support::server();
    let (url, pin) = server.vault_azure_net("secretd-test");
    let mut options = server.options();
    options.vault_url = url;
    options.resolve = vec![pin];
    options.verify_challenge_resource = true;
    let store = support::connect(options).await;
    store.put(&name("k"), &value("v"), &Tags::new(), None).await.unwrap();
    assert_eq!(store.get(&name("k"), None).await.unwrap().value.expose(), b"v");

    // The same check refuses a vault whose host is not under vault.azure.net.
    let mut options = server.options();
    options.verify_challenge_resource = true;
    let err = support::connect(options).await.health().await.unwrap_err();
    assert!(err.message().contains("challenge resource"), "{err}");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_then_unavailable() {
    let server = support::server();
    let store = support::connect(support::fast(server.options())).await;
    store.health().await.unwrap();
    let before = server.requests().len();
    server.fail_next(2, 503);
    store.put(&name("k"), &value("v"), &Tags::new(), None).await.expect("two 503s are retried");
    assert_eq!(server.requests().len() - before, 4, "2 failed reads, the read, the write");

    server.fail_next(3, 429);
    let err = store.get(&name("k"), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled, "{err}");
    assert!(err.message().contains("429"), "{err}");
    assert_eq!(store.get(&name("k"), None).await.unwrap().value.expose(), b"v");
}

#[tokio::test]
async fn values_beyond_key_vaults_limit_are_too_large() {
    let server = support::server();
    server.set_max_value_chars(Some(KEY_VAULT_MAX_VALUE_CHARS));
    let store = support::connect(server.options()).await;
    let at_limit = "a".repeat(KEY_VAULT_MAX_VALUE_CHARS);
    store.put(&name("fits"), &value(&at_limit), &Tags::new(), None).await.unwrap();
    let err = store.put(&name("too-big"), &value(&format!("{at_limit}a")), &Tags::new(), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(!err.message().contains("aaaa"), "{err}");
}

#[tokio::test]
async fn delete_is_soft_unless_purge_on_delete() {
    let server = support::server();
    let store = support::connect(server.options()).await;
    let n = name("db/password");
    store.put(&n, &value("v"), &Tags::new(), None).await.unwrap();
    store.delete(&n).await.unwrap();
    assert_eq!(server.secret_names(), vec![("secretd-main--team-0etl--db-3password".to_owned(), true)]);
    assert_eq!(store.delete(&n).await.unwrap_err().kind(), ErrorKind::NotFound);

    let mut options = server.options();
    options.purge_on_delete = true;
    let purging = support::connect(options).await;
    let other = name("other");
    purging.put(&other, &value("v"), &Tags::new(), None).await.unwrap();
    purging.delete(&other).await.unwrap();
    assert_eq!(server.secret_names().len(), 1, "purged at once: {:?}", server.secret_names());
}

#[tokio::test]
async fn a_put_over_a_deleted_name_purges_it_first() {
    let server = support::server();
    let store = support::connect(server.options()).await;
    let n = name("phoenix");
    let v1 = store.put(&n, &value("old"), &[("gen", "1")].into_iter().collect(), None).await.unwrap();
    store.delete(&n).await.unwrap();
    store.put(&n, &value("new"), &Tags::new(), None).await.unwrap();
    assert_eq!(server.version_count("secretd-main--team-0etl--phoenix"), 1, "purged, then written afresh");
    assert_eq!(store.get(&n, Some(&v1)).await.unwrap_err().kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn with_purge_protection_a_put_over_a_deleted_name_recovers_it() {
    let server = support::server();
    server.set_purge_protection(true);
    let store = support::connect(server.options()).await;
    let n = name("phoenix");
    let v1 = store.put(&n, &value("old"), &[("gen", "1")].into_iter().collect(), None).await.unwrap();
    store.delete(&n).await.unwrap();
    let v2 = store.put(&n, &value("new"), &Tags::new(), None).await.unwrap();
    let latest = store.get(&n, None).await.unwrap();
    assert_eq!((latest.value.expose(), &latest.metadata.version), (&b"new"[..], &v2));
    assert!(latest.metadata.tags.is_empty(), "the old tags do not come back on the new version");
    // The documented cost of recovering: the old version is readable again.
    assert_eq!(store.get(&n, Some(&v1)).await.unwrap().value.expose(), b"old");
}

#[tokio::test]
async fn concurrent_puts_over_a_deleted_name_all_land() {
    let server = support::server();
    let store = Arc::new(support::connect(server.options()).await);
    let n = name("contended");
    store.put(&n, &value("old"), &Tags::new(), None).await.unwrap();
    store.delete(&n).await.unwrap();
    let writes = (0..8).map(|i| {
        let (store, n) = (store.clone(), n.clone());
        tokio::spawn(async move { store.put(&n, &value(&format!("w{i}")), &Tags::new(), None).await })
    });
    let versions: Vec<Version> = futures_join(writes).await;
    let unique: std::collections::BTreeSet<_> = versions.iter().collect();
    assert_eq!(unique.len(), 8);
    for v in &versions {
        store.get(&n, Some(v)).await.unwrap();
    }
}

async fn futures_join(
    handles: impl Iterator<Item = tokio::task::JoinHandle<Result<Version, secretd_core::StoreError>>>,
) -> Vec<Version> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap().unwrap());
    }
    out
}

#[tokio::test]
async fn other_secrets_in_the_vault_are_left_alone() {
    let server = support::server();
    let store = support::connect(server.options()).await;
    let mut options = server.options();
    options.name_prefix = NamePrefix::new("").unwrap();
    let unprefixed = support::connect(options).await;
    unprefixed.put(&name("k"), &value("not secretd's"), &Tags::new(), None).await.unwrap();
    store.put(&name("k"), &value("secretd's"), &Tags::new(), None).await.unwrap();
    let tenant = secretd_core::Tenant::parse("main").unwrap();
    let ns = secretd_core::Namespace::parse("team.etl").unwrap();
    let page =
        store.list(&tenant, &ns, &Tags::new(), &secretd_core::PageRequest { size: 10, token: None }).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(store.get(&name("k"), None).await.unwrap().value.expose(), b"secretd's");
    let mut names: Vec<String> = server.secret_names().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, ["main--team-0etl--k", "secretd-main--team-0etl--k"]);
}

#[tokio::test]
async fn debug_output_holds_no_credentials() {
    let server = support::server();
    let options = server.client_secret_options();
    let shown = format!("{options:?}");
    assert!(!shown.contains(&server.client_secret), "{shown}");
    let store = support::connect(options).await;
    let shown = format!("{store:?}");
    assert!(!shown.contains(&server.client_secret) && !shown.contains(&server.token), "{shown}");
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_a_timeout() {
    let server = support::server();
    let mut options = support::fast(server.options());
    options.timeout = Duration::from_millis(300);
    options.retry.attempts = 2;
    let store = support::connect(options).await;
    store.health().await.unwrap();
    server.stall_next(2, Duration::from_secs(3));
    let started = std::time::Instant::now();
    let err = store.get(&name("k"), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn listing_follows_next_links_through_the_whole_vault() {
    let server = support::server();
    let store = support::connect(server.options()).await;
    for i in 0..12 {
        store.put(&name(&format!("k{i:02}")), &value("v"), &Tags::new(), None).await.unwrap();
        let other = SecretName::parse("main", "other", &format!("k{i:02}")).unwrap();
        store.put(&other, &value("v"), &Tags::new(), None).await.unwrap();
    }
    let before = server.requests().len();
    let tenant = secretd_core::Tenant::parse("main").unwrap();
    let ns = secretd_core::Namespace::parse("team.etl").unwrap();
    let page =
        store.list(&tenant, &ns, &Tags::new(), &secretd_core::PageRequest { size: 100, token: None }).await.unwrap();
    assert_eq!(page.items.len(), 12);
    assert!(page.next_token.is_none());
    let list_calls = server.requests()[before..].iter().filter(|r| r.path == "/secrets").count();
    // 24 secrets at the test server's 5 per page.
    assert_eq!(list_calls, 5);
}

#[tokio::test]
async fn deletes_that_key_vault_finishes_later_are_waited_for() {
    let server = support::server();
    server.set_busy_after_delete(3);
    let mut options = server.options();
    options.purge_on_delete = true;
    let store = support::connect(options).await;
    let n = name("slow");
    store.put(&n, &value("v"), &Tags::new(), None).await.unwrap();
    store.delete(&n).await.unwrap();
    assert!(server.secret_names().is_empty(), "purged once Key Vault had finished deleting");

    // A put right after a delete waits the same way, then starts afresh.
    let store = support::connect(server.options()).await;
    store.put(&n, &value("old"), &Tags::new(), None).await.unwrap();
    store.delete(&n).await.unwrap();
    store.put(&n, &value("new"), &Tags::new(), None).await.unwrap();
    assert_eq!(store.get(&n, None).await.unwrap().value.expose(), b"new");
    assert_eq!(server.version_count("secretd-main--team-0etl--slow"), 1);
    let conflicts = server.requests().iter().filter(|r| r.status == 409).count();
    assert!(conflicts >= 6, "{conflicts} conflicts");
}

/// A client secret held in a source that changes (a mounted file, in the
/// daemon): the first token request uses the wrong one and fails; once the
/// source holds the right one, the next request succeeds without a new
/// store.
#[tokio::test]
async fn a_rotated_client_secret_is_used_for_the_next_token() {
    struct Rotating(std::sync::Mutex<String>);
    impl secretd_core::RotatingSecret for Rotating {
        fn current(&self) -> Result<secrecy::SecretString, secretd_core::StoreError> {
            Ok(secrecy::SecretString::from(self.0.lock().unwrap().clone()))
        }
    }
    let server = support::server();
    let rotating = Arc::new(Rotating(std::sync::Mutex::new("the-old-secret".into())));
    let mut options = server.client_secret_options();
    if let AzureCredential::ClientSecret { client_secret, .. } = &mut options.credential {
        *client_secret = secretd_core::CredentialSource::rotating(rotating.clone());
    }
    let store = support::connect(support::fast(options)).await;
    let err = store.put(&name("rotated"), &value("v"), &Tags::new(), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    *rotating.0.lock().unwrap() = server.client_secret.clone();
    store.put(&name("rotated"), &value("v"), &Tags::new(), None).await.expect("the rotated secret is used");
}
