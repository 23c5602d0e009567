//! End to end on the remote backends: the real daemon, started from the
//! example configurations in `config/` as an operator would, on OpenBao
//! (Vault's API), moto (Secrets Manager's API), osmem-server (the
//! Elasticsearch/OpenSearch API), drongo (Google Secret Manager's REST
//! API) and the Key Vault test server in `backends/azure` (in process),
//! called over gRPC.
//!
//! The servers come from `scripts/test.sh` (`SECRETD_TEST_VAULT_*`,
//! `SECRETD_TEST_AWS_ENDPOINT`, `SECRETD_TEST_ELASTICSEARCH_URL`,
//! `SECRETD_TEST_GCP_ENDPOINT`). Without them a test fails under `CI=true`
//! and otherwise says loudly that it skipped.

mod common;

use std::path::Path;

use common::{admin_account, get, put, Client, Daemon};
use secretd::proto::{DeleteSecretRequest, ListSecretsRequest, Source};
use secretd_core::{SecretName, SecretStore};
use tonic::Code;

fn env(var: &str) -> Option<String> {
    secretd_core::conformance::server_from_env(var)
}

/// The example file as shipped, with the test admin account added and a
/// free port; started in a temp dir.
fn start_example(example: &str, env: &[(&str, &str)]) -> (Daemon, tempfile::TempDir) {
    let temp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(example)).unwrap();
    assert!(!text.contains("\nauth:"), "the example grew an auth block; merge instead of appending");
    let path = temp.path().join(example);
    std::fs::write(&path, format!("{text}\n{}", admin_account())).unwrap();
    let daemon = Daemon::start_with_env(
        &["serve", "--config", path.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        temp.path(),
        env,
    );
    (daemon, temp)
}

/// The same story on every backend: write, read from the backend then the
/// cache, inherit from a parent namespace, list, delete. The example
/// configs scope the backend to `application: production`, so every write
/// carries that tag.
async fn exercise(c: &mut Client, ns: &str) -> String {
    let v1 = put(c, ns, "db/password", b"first").await.expect("put");
    let v2 = put(c, ns, "db/password", &[0xff, 0x00, b'x']).await.expect("second put");
    assert_ne!(v1, v2);
    let got = get(c, ns, "db/password").await.expect("get");
    assert_eq!(&got.value[..], &[0xff, 0x00, b'x']);
    assert_eq!(got.version, v2);
    assert_eq!(got.source, Source::Backend as i32);
    assert_eq!(got.tags.get("application").map(String::as_str), Some("production"));
    assert_eq!(get(c, ns, "db/password").await.unwrap().source, Source::Cache as i32);

    let child = format!("{ns}.child");
    let inherited = get(c, &child, "db/password").await.expect("inherited from the parent");
    assert_eq!(inherited.namespace, ns);

    put(c, ns, "api-key", b"k").await.unwrap();
    let listed = c
        .list_secrets(ListSecretsRequest { namespace: ns.into(), page_size: 1, ..Default::default() })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.secrets.len(), 1);
    assert_eq!(listed.secrets[0].key, "api-key");
    assert!(!listed.next_page_token.is_empty());

    c.delete_secret(DeleteSecretRequest { namespace: ns.into(), key: "api-key".into(), ..Default::default() })
        .await
        .expect("delete");
    assert_eq!(get(c, ns, "api-key").await.unwrap_err().code(), Code::NotFound);
    v2
}

fn fresh_namespace(backend: &str) -> String {
    format!("e2e.{backend}.r{:08x}", rand::random::<u32>())
}

#[tokio::test]
async fn vault_example_config_over_grpc() {
    let (Some(addr), Some(root)) = (env("SECRETD_TEST_VAULT_ADDR"), env("SECRETD_TEST_VAULT_TOKEN")) else { return };
    let (daemon, _dir) = start_example("vault.yaml", &[("VAULT_ADDR", &addr), ("VAULT_TOKEN", &root)]);
    let mut c = daemon.client().await;
    let ns = fresh_namespace("vault");
    let version = exercise(&mut c, &ns).await;

    // What Vault holds: the path and metadata the docs promise.
    let mut options = secretd_vault::VaultOptions::new(
        addr.clone(),
        secretd_vault::VaultAuth::Token(secrecy::SecretString::from(root.clone()).into()),
    );
    options.path_prefix = secretd_vault::PathPrefix::new("secretd").unwrap();
    let direct = secretd_vault::VaultStore::connect(options).await.unwrap();
    let secret = direct.get(&SecretName::parse("", &ns, "db/password").unwrap(), None).await.unwrap();
    assert_eq!(secret.metadata.version.as_str(), version);
    assert_eq!(secret.metadata.tags.get("application"), Some("production"));
    assert!(!daemon.log_text().contains(&root), "the daemon logged its Vault token");
}

#[tokio::test]
async fn vault_losing_its_token_is_unavailable_not_permission_denied() {
    let (Some(addr), Some(root)) = (env("SECRETD_TEST_VAULT_ADDR"), env("SECRETD_TEST_VAULT_TOKEN")) else { return };
    // A child token of its own, so the test can revoke it.
    let token = create_child_token(&addr, &root).await;
    let (daemon, _dir) = start_example("vault.yaml", &[("VAULT_ADDR", &addr), ("VAULT_TOKEN", &token)]);
    let mut c = daemon.client().await;
    let ns = fresh_namespace("vault-revoked");
    put(&mut c, &ns, "k", b"v").await.expect("put with a live token");
    revoke_token(&addr, &root, &token).await;
    let err = get(&mut c, &ns, "other").await.expect_err("the backend refuses secretd now");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // The caller is told it is the backend's doing, not what Vault said:
    // that goes to the daemon's log under the correlation id.
    let message = err.message();
    assert!(message.contains("secret backend refused secretd's credentials"), "{message}");
    assert!(!message.contains("vault answered"), "Vault's answer reached the caller: {message}");
    let id = message
        .split("(correlation id ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no correlation id in {message:?}"));
    assert_eq!(err.metadata().get("secretd-correlation-id").and_then(|v| v.to_str().ok()), Some(id));
    let line = daemon.log_line(id).unwrap_or_else(|| panic!("{id} is not in the daemon's log"));
    assert!(line.contains("vault answered 403"), "the log line of {id} holds Vault's answer: {line}");
}

/// One Vault API call with curl: the JSON answer, if any.
fn vault_api(addr: &str, token: &str, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args(["-s", "-X", method, "-H", &format!("X-Vault-Token: {token}"), "-d", &body.to_string()])
        .arg(format!("{addr}/v1/{path}"))
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The password file behind `file:` changes (as when Kubernetes rotates a
/// mounted secret) together with the password in Vault, and the user's
/// tokens are revoked: the next call logs in again with the new password,
/// without a restart.
#[tokio::test]
async fn vault_password_rotated_in_its_file_is_used_at_the_next_login() {
    let (Some(addr), Some(root)) = (env("SECRETD_TEST_VAULT_ADDR"), env("SECRETD_TEST_VAULT_TOKEN")) else { return };
    vault_api(&addr, &root, "POST", "sys/auth/userpass", serde_json::json!({"type": "userpass"}));
    vault_api(
        &addr,
        &root,
        "PUT",
        "sys/policies/acl/secretd-rotation",
        serde_json::json!({"policy": r#"path "secret/data/secretd/*" { capabilities = ["create", "read", "update", "delete", "list"] }
            path "secret/metadata/secretd/*" { capabilities = ["create", "read", "update", "delete", "list"] }"#}),
    );
    let user = format!("rotation-{:08x}", rand::random::<u32>());
    let user_path = format!("auth/userpass/users/{user}");
    vault_api(
        &addr,
        &root,
        "POST",
        &user_path,
        serde_json::json!({"password": "first-password", "token_policies": ["secretd-rotation"]}),
    );

    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("vault-password");
    std::fs::write(&password_file, "first-password\n").unwrap();
    let config = format!(
        "server:\n  listen: 127.0.0.1:0\nsecret:\n  type: vault\n  cache: {{enabled: false}}\n  vault:\n    address: {addr}\n    \
         userpass: {{username: {user}, password: \"file:{}\"}}\n{}",
        password_file.display(),
        admin_account()
    );
    let config_path = dir.path().join("rotation.yaml");
    std::fs::write(&config_path, config).unwrap();
    let daemon = Daemon::start(&["serve", "--config", config_path.to_str().unwrap()], dir.path());
    let mut c = daemon.client().await;
    let ns = fresh_namespace("vault-rotation");
    put(&mut c, &ns, "k", b"before").await.expect("put with the first password");

    vault_api(
        &addr,
        &root,
        "POST",
        &format!("{user_path}/password"),
        serde_json::json!({"password": "second-password"}),
    );
    std::fs::write(&password_file, "second-password\n").unwrap();
    vault_api(
        &addr,
        &root,
        "POST",
        &format!("sys/leases/revoke-prefix/auth/userpass/login/{user}"),
        serde_json::json!({}),
    );

    assert_eq!(&get(&mut c, &ns, "k").await.expect("get after the rotation").value[..], b"before");
    let logs = daemon.log_text();
    assert!(logs.contains("credential file changed"), "{logs}");
    assert!(!logs.contains("second-password") && !logs.contains("first-password"), "a password reached the log");
}

async fn create_child_token(addr: &str, root: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sf", "-X", "POST", "-H", &format!("X-Vault-Token: {root}"), "-d", r#"{"ttl":"10m"}"#])
        .arg(format!("{addr}/v1/auth/token/create"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "token create failed");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    body["auth"]["client_token"].as_str().unwrap().to_owned()
}

async fn revoke_token(addr: &str, root: &str, token: &str) {
    let status = std::process::Command::new("curl")
        .args(["-sf", "-X", "POST", "-H", &format!("X-Vault-Token: {root}")])
        .args(["-d", &serde_json::json!({ "token": token }).to_string()])
        .arg(format!("{addr}/v1/auth/token/revoke"))
        .status()
        .expect("curl");
    assert!(status.success(), "token revoke failed");
}

#[tokio::test]
async fn aws_example_config_over_grpc() {
    let Some(endpoint) = env("SECRETD_TEST_AWS_ENDPOINT") else { return };
    let (daemon, _dir) = start_example(
        "aws.yaml",
        &[
            ("SECRETD_AWS_ENDPOINT", &endpoint),
            ("AWS_ACCESS_KEY_ID", "AKIDSECRETDE2E"),
            ("AWS_SECRET_ACCESS_KEY", "e2e-secret-access-key"),
        ],
    );
    let mut c = daemon.client().await;
    let ns = fresh_namespace("aws");
    let version = exercise(&mut c, &ns).await;

    let mut options = secretd_aws::AwsOptions::new("us-east-1");
    options.endpoint = Some(endpoint);
    options.credentials = Some(secretd_aws::StaticCredentials {
        access_key_id: secrecy::SecretString::from("AKIDSECRETDE2E").into(),
        secret_access_key: secrecy::SecretString::from("x").into(),
        session_token: None,
    });
    let direct = secretd_aws::AwsStore::connect(options).await.unwrap();
    let secret = direct.get(&SecretName::parse("", &ns, "db/password").unwrap(), None).await.unwrap();
    assert_eq!(secret.metadata.version.as_str(), version);
    assert_eq!(secret.metadata.tags.get("application"), Some("production"));
    assert!(!daemon.log_text().contains("e2e-secret-access-key"), "the daemon logged its AWS secret key");
}

#[tokio::test]
async fn elasticsearch_example_config_over_grpc() {
    let Some(url) = env("SECRETD_TEST_ELASTICSEARCH_URL") else { return };
    // The example's index name is fixed; each run on a shared server must not
    // depend on what an earlier run left, which the fresh namespace ensures.
    let (daemon, _dir) =
        start_example("elasticsearch.yaml", &[("SECRETD_ES_HOST", &url), ("SECRETD_ES_SECRET", common::TEST_SECRET)]);
    let mut c = daemon.client().await;
    let ns = fresh_namespace("es");
    let version = exercise(&mut c, &ns).await;

    let options = secretd_elasticsearch::ElasticsearchOptions::new([url.clone()], common::TEST_SECRET.to_owned());
    let direct = secretd_elasticsearch::ElasticsearchStore::connect(options).await.unwrap();
    let secret = direct.get(&SecretName::parse("", &ns, "db/password").unwrap(), None).await.unwrap();
    assert_eq!(secret.metadata.version.as_str(), version);
    assert_eq!(secret.metadata.tags.get("application"), Some("production"));
}

#[tokio::test]
async fn elasticsearch_without_a_long_secret_refuses_to_start() {
    let temp = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/elasticsearch.yaml");
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--config", example.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("SECRETD_ES_SECRET", "too-short")
        .current_dir(temp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret.elasticsearch.secret") && err.contains("at least 32"), "{err}");
    assert!(!err.contains("too-short"), "the error echoed the secret");
}

/// A throwaway service-account key: drongo checks no signature, but the
/// daemon signs every request with the key as it would for Google.
fn service_account_key_file(dir: &Path) -> std::path::PathBuf {
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .expect("openssl makes the test key");
    assert!(out.status.success(), "openssl genpkey failed");
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "secretd-e2e",
        "private_key_id": "0123456789abcdef",
        "private_key": String::from_utf8(out.stdout).unwrap(),
        "client_email": "secretd@secretd-e2e.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    let path = dir.join("gcp-key.json");
    std::fs::write(&path, key.to_string()).unwrap();
    path
}

#[tokio::test]
async fn google_example_config_over_grpc() {
    let Some(endpoint) = env("SECRETD_TEST_GCP_ENDPOINT") else { return };
    let keys = tempfile::tempdir().unwrap();
    let key_file = service_account_key_file(keys.path());
    let project = format!("secretd-e2e-{:08x}", rand::random::<u32>());
    let (daemon, _dir) = start_example(
        "google.yaml",
        &[
            ("SECRETD_GCP_ENDPOINT", &endpoint),
            ("GOOGLE_CLOUD_PROJECT", &project),
            ("GOOGLE_SERVICE_ACCOUNT_KEY_FILE", key_file.to_str().unwrap()),
        ],
    );
    let mut c = daemon.client().await;
    let ns = fresh_namespace("gcp");
    let version = exercise(&mut c, &ns).await;

    let mut options = secretd_gcp::GcpOptions::new(project, secretd_gcp::GcpCredentials::Anonymous);
    options.endpoint = Some(endpoint);
    let direct = secretd_gcp::GcpStore::connect(options).await.unwrap();
    let secret = direct.get(&SecretName::parse("", &ns, "db/password").unwrap(), None).await.unwrap();
    assert_eq!(secret.metadata.version.as_str(), version);
    assert_eq!(secret.metadata.tags.get("application"), Some("production"));
    assert!(!daemon.log_text().contains("PRIVATE KEY"), "the daemon logged the service-account key");
}

/// Key Vault: the daemon logs in with a real client-secret credential
/// against the test server's token endpoint, answers its bearer challenge,
/// and trusts its CA from `ca-certificate`.
#[tokio::test]
async fn azure_example_config_over_grpc() {
    let server = secretd_azure_test_server::TestServer::start().expect("the Key Vault test server starts");
    let keys = tempfile::tempdir().unwrap();
    let ca = keys.path().join("kv-ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let (daemon, _dir) = start_example(
        "azure.yaml",
        &[
            ("AZURE_KEYVAULT_URL", &server.url),
            ("AZURE_AUTHORITY_HOST", &server.url),
            ("AZURE_TENANT_ID", &server.tenant_id),
            ("AZURE_CLIENT_ID", &server.client_id),
            ("AZURE_CLIENT_SECRET", &server.client_secret),
            ("SECRETD_AZURE_CA_FILE", ca.to_str().unwrap()),
            ("SECRETD_AZURE_VERIFY_CHALLENGE", "false"),
        ],
    );
    let mut c = daemon.client().await;
    let ns = fresh_namespace("azure");
    let version = exercise(&mut c, &ns).await;

    let direct = secretd_azure::AzureStore::connect(server.options()).await.unwrap();
    let secret = direct.get(&SecretName::parse("", &ns, "db/password").unwrap(), None).await.unwrap();
    assert_eq!(secret.metadata.version.as_str(), version);
    assert_eq!(secret.metadata.tags.get("application"), Some("production"));
    assert!(!daemon.log_text().contains(&server.client_secret), "the daemon logged its client secret");
}
