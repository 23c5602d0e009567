//! Where the Vault tests find their server, and the accounts they log in
//! with.
//!
//! `scripts/test.sh` starts OpenBao (the open-source Vault fork, same HTTP
//! API) and sets `SECRETD_TEST_VAULT_ADDR` and `SECRETD_TEST_VAULT_TOKEN`
//! (its root token). Without them a test fails under `CI=true` and
//! otherwise says loudly that it skipped. With the root token the tests
//! enable userpass and AppRole, write a policy limited to KV v2, and make a
//! user and a role for this run, so every auth method is tested with the
//! narrow rights a real deployment would give secretd.

#![allow(dead_code)]

pub mod kubernetes;

use std::time::Duration;

use secrecy::SecretString;
use secretd_core::CredentialSource;
use secretd_vault::{PathPrefix, VaultAuth, VaultOptions, VaultStore};
use tokio::sync::OnceCell;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

pub struct Server {
    pub address: String,
    pub root_token: String,
}

/// The server, or `None` (after a loud note) outside CI.
pub fn server() -> Option<Server> {
    let address = secretd_core::conformance::server_from_env("SECRETD_TEST_VAULT_ADDR")?;
    let root_token = secretd_core::conformance::server_from_env("SECRETD_TEST_VAULT_TOKEN")?;
    Some(Server { address, root_token })
}

pub fn root_client(server: &Server) -> VaultClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(&server.address)
            .token(&server.root_token)
            .ca_certs(Vec::new())
            .identity(None)
            .verify(true)
            .build()
            .unwrap(),
    )
    .unwrap()
}

/// One prefix per test binary and run: the scratch area of this run.
pub fn run_prefix() -> PathPrefix {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| format!("secretd-test/{:016x}", rand::random::<u64>()));
    PathPrefix::new(prefix).unwrap()
}

pub const POLICY: &str = "secretd-test";
pub const PASSWORD: &str = "test-password-of-a-test-user";

/// Credentials made for this run.
#[derive(Clone)]
pub struct Accounts {
    pub username: String,
    pub role_id: String,
    pub secret_id: String,
    /// A role whose tokens live two seconds: every suite run with it sees
    /// its token expire and be replaced many times.
    pub short_role_id: String,
    pub short_secret_id: String,
}

async fn enable(client: &VaultClient, method: &str) {
    match vaultrs::sys::auth::enable(client, method, method, None).await {
        Ok(()) => {}
        // Enabled by an earlier test binary against the same server.
        Err(vaultrs::error::ClientError::APIError { code: 400, errors })
            if errors.iter().any(|e| e.contains("already in use")) => {}
        Err(e) => panic!("enabling {method}: {e:?}"),
    }
}

pub async fn accounts(server: &Server) -> Accounts {
    static ACCOUNTS: OnceCell<Accounts> = OnceCell::const_new();
    ACCOUNTS
        .get_or_init(|| async {
            let root = root_client(server);
            enable(&root, "userpass").await;
            enable(&root, "approle").await;
            vaultrs::sys::policy::set(
                &root,
                POLICY,
                r#"path "secret/data/secretd-test/*" { capabilities = ["create", "read", "update", "delete", "list"] }
                   path "secret/metadata/secretd-test/*" { capabilities = ["create", "read", "update", "delete", "list"] }"#,
            )
            .await
            .expect("policy");
            let suffix = format!("{:08x}", rand::random::<u32>());
            let username = format!("secretd-{suffix}");
            vaultrs::auth::userpass::user::set(
                &root,
                "userpass",
                &username,
                PASSWORD,
                Some(
                    vaultrs::api::auth::userpass::requests::CreateUserRequest::builder()
                        .token_policies(vec![POLICY.to_owned()])
                        .token_ttl("1h"),
                ),
            )
            .await
            .expect("userpass user");
            let mut ids = Vec::new();
            for (role, ttl) in [(format!("secretd-{suffix}"), "1h"), (format!("secretd-short-{suffix}"), "2s")] {
                vaultrs::auth::approle::role::set(
                    &root,
                    "approle",
                    &role,
                    Some(
                        vaultrs::api::auth::approle::requests::SetAppRoleRequest::builder()
                            .token_policies(vec![POLICY.to_owned()])
                            .token_ttl(ttl)
                            .token_max_ttl(ttl),
                    ),
                )
                .await
                .expect("approle role");
                let role_id = vaultrs::auth::approle::role::read_id(&root, "approle", &role).await.unwrap().role_id;
                let secret_id =
                    vaultrs::auth::approle::role::secret::generate(&root, "approle", &role, None).await.unwrap().secret_id;
                ids.push((role_id, secret_id));
            }
            let (short_role_id, short_secret_id) = ids.pop().unwrap();
            let (role_id, secret_id) = ids.pop().unwrap();
            Accounts { username, role_id, secret_id, short_role_id, short_secret_id }
        })
        .await
        .clone()
}

pub fn options(server: &Server, auth: VaultAuth) -> VaultOptions {
    let mut options = VaultOptions::new(server.address.clone(), auth);
    options.path_prefix = run_prefix();
    // The suite reads back every version of 16 concurrent writes; Vault's
    // default keeps 10.
    options.max_versions = Some(100);
    options.connection.timeout = Duration::from_secs(10);
    options
}

pub async fn connect(options: VaultOptions) -> VaultStore {
    VaultStore::connect(options).await.unwrap_or_else(|e| panic!("cannot connect to the test vault: {e}"))
}

pub fn secret(s: &str) -> CredentialSource {
    SecretString::from(s.to_owned()).into()
}
