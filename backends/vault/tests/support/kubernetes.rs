//! A service account issuer and a `jwt` auth mount standing in for
//! Vault's Kubernetes auth (see `kubernetes_auth.rs` for why).

use std::path::{Path, PathBuf};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ring::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use secretd_vault::VaultAuth;
use tokio::sync::OnceCell;
use vaultrs::{
    api::{
        auth::oidc::requests::{SetConfigurationRequest, SetRoleRequest},
        token::{requests::ListAccessorRequest, responses::ListAccessorResponse},
    },
    client::VaultClient,
};

use super::Server;

const AUDIENCE: &str = "https://vault.secretd.test";
const SUBJECT: &str = "system:serviceaccount:secretd:secretd";

/// A signing key as a cluster's service account issuer holds it.
pub struct Issuer {
    public_pem: String,
    signer: EcdsaKeyPair,
}

impl Issuer {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &SystemRandom::new())
                .unwrap();
        Self { public_pem: key.public_key_pem(), signer }
    }

    /// A service account token as the kubelet writes it, valid for an hour.
    pub fn token(&self) -> String {
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
pub struct Mount {
    pub path: String,
    pub role: String,
}

pub async fn mount(root: &VaultClient, issuer: &Issuer, token_ttl: &str) -> Mount {
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
                .token_policies(vec![super::POLICY.to_owned()])
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
pub async fn trust(root: &VaultClient, mount: &Mount, issuer: &Issuer) {
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
pub async fn revoke_tokens_of(root: &VaultClient, mount: &Mount) -> usize {
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

pub fn write_token(path: &Path, token: &str) {
    // The kubelet swaps the file atomically; a rename does the same here.
    let staged = path.with_extension("new");
    std::fs::write(&staged, format!("{token}\n")).unwrap();
    std::fs::rename(staged, path).unwrap();
}

pub fn kubernetes(mount: &Mount, token_file: &Path) -> VaultAuth {
    VaultAuth::Kubernetes { mount: mount.path.clone(), role: mount.role.clone(), token_file: token_file.to_owned() }
}

/// One mount, role and token file for the whole test binary: what the
/// conformance suite logs in with for each of its cases.
pub async fn shared_auth(server: &Server) -> VaultAuth {
    static SHARED: OnceCell<(Mount, PathBuf)> = OnceCell::const_new();
    let (mount, token_file) = SHARED
        .get_or_init(|| async {
            super::accounts(server).await;
            let issuer = Issuer::new();
            let mount = mount(&super::root_client(server), &issuer, "1h").await;
            let token_file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-token", mount.path));
            write_token(&token_file, &issuer.token());
            (mount, token_file)
        })
        .await;
    kubernetes(mount, token_file)
}
