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

use std::{path::Path, sync::Arc, time::Duration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ring::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use secretd_core::{ErrorKind, SecretName, SecretStore, SecretValue, Tags};
use secretd_vault::{VaultAuth, VaultStore};
use vaultrs::{
    api::{
        auth::oidc::requests::{SetConfigurationRequest, SetRoleRequest},
        token::{requests::ListAccessorRequest, responses::ListAccessorResponse},
    },
    client::VaultClient,
};

const AUDIENCE: &str = "https://vault.secretd.test";
const SUBJECT: &str = "system:serviceaccount:secretd:secretd";

/// A signing key as a cluster's service account issuer holds it.
struct Issuer {
    public_pem: String,
    signer: EcdsaKeyPair,
}

impl Issuer {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &SystemRandom::new())
                .unwrap();
        Self { public_pem: key.public_key_pem(), signer }
    }

    /// A service account token as the kubelet writes it, valid for an hour.
    fn token(&self) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": "https://kubernetes.default.svc",
            "sub": SUBJECT,
            "aud": [AUDIENCE],
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "jti": format!("{:016x}", rand::random::<u64>()),
        });
        let signed =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.signer.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// A `jwt` mount and a role of this run, trusting only `issuer`'s key.
struct Mount {
    path: String,
    role: String,
}

async fn mount(root: &VaultClient, issuer: &Issuer, token_ttl: &str) -> Mount {
    let suffix = format!("{:08x}", rand::random::<u32>());
    let mount = Mount { path: format!("k8s-jwt-{suffix}"), role: format!("secretd-{suffix}") };
    vaultrs::sys::auth::enable(root, &mount.path, "jwt", None).await.expect("enabling jwt");
    trust(root, &mount, issuer).await;
    vaultrs::auth::oidc::role::set(
        root,
        &mount.path,
        &mount.role,
        "sub",
        Vec::new(),
        Some(
            SetRoleRequest::builder()
                .role_type("jwt")
                .bound_audiences(vec![AUDIENCE.to_owned()])
                .bound_subject(SUBJECT)
                .token_policies(vec![support::POLICY.to_owned()])
                .token_ttl(token_ttl)
                .token_max_ttl(token_ttl),
        ),
    )
    .await
    .expect("jwt role");
    mount
}

/// Makes the mount trust `issuer`'s key and no other: a cluster whose
/// service account signing key was rotated.
async fn trust(root: &VaultClient, mount: &Mount, issuer: &Issuer) {
    vaultrs::auth::oidc::config::set(
        root,
        &mount.path,
        Some(SetConfigurationRequest::builder().jwt_validation_pubkeys(vec![issuer.public_pem.clone()])),
    )
    .await
    .expect("jwt config");
}

/// Revokes every token the mount issued, as an operator (or a server
/// restart without persistence) would.
async fn revoke_tokens_of(root: &VaultClient, mount: &Mount) -> usize {
    let listed: ListAccessorResponse =
        vaultrs::api::exec_with_result(root, ListAccessorRequest::builder().build().unwrap()).await.unwrap();
    let mut revoked = 0;
    for accessor in listed.keys {
        let Ok(token) = vaultrs::token::lookup_accessor(root, &accessor).await else { continue };
        if token.path.starts_with(&format!("auth/{}/", mount.path)) {
            vaultrs::token::revoke_accessor(root, &accessor).await.unwrap();
            revoked += 1;
        }
    }
    revoked
}

fn write_token(path: &Path, token: &str) {
    // The kubelet swaps the file atomically; a rename does the same here.
    let staged = path.with_extension("new");
    std::fs::write(&staged, format!("{token}\n")).unwrap();
    std::fs::rename(staged, path).unwrap();
}

fn kubernetes(mount: &Mount, token_file: &Path) -> VaultAuth {
    VaultAuth::Kubernetes { mount: mount.path.clone(), role: mount.role.clone(), token_file: token_file.to_owned() }
}

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
