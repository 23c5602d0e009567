//! The platform's own configuration files (`kestra:` at the root) given to
//! secretd as they are: every example of its docs under
//! `tests/fixtures/platform/` through `secretd config check`, `config
//! convert`, and a daemon started on the AWS examples (static keys, and an
//! assumed STS role) against moto and on the Vault examples (token and
//! Kubernetes auth) against OpenBao.
//!
//! The servers come from `scripts/test.sh`; without them a daemon test
//! fails under `CI=true` and otherwise says loudly that it skipped.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::{admin_account, get_value, pki::Pki, put, tls_channel, Auth, Daemon, ADMIN_TOKEN};
use secretd::proto::secret_broker_client::SecretBrokerClient;
use secretd_core::{SecretName, SecretStore};

fn env(var: &str) -> Option<String> {
    secretd_core::conformance::server_from_env(var)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/platform").join(name)
}

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// What the fixtures read from the environment: credentials never sit in them.
const CREDENTIALS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIDPLATFORMFIXTURE"),
    ("AWS_SECRET_ACCESS_KEY", "platform-fixture-secret"),
    ("AWS_SESSION_TOKEN", "platform-fixture-session"),
    ("AZURE_CLIENT_SECRET", "platform-fixture-client-secret"),
    ("GOOGLE_SERVICE_ACCOUNT", "{\"type\": \"service_account\"}"),
    ("KESTRA_SECRET_KEY", KEY),
    ("KESTRA_DB_PASSWORD", "Db-Pass-Of-The-Platform"),
    ("ENDPOINTS_PASSWORD", "endpoints-password"),
    ("KESTRA_ENCRYPTION_KEY", "encryption-key"),
    ("KESTRA_ADMIN_PASSWORD", "an-admin-password-long-enough"),
    ("KESTRA_SUPERADMIN_PASSWORD", "super-admin-password"),
    ("KEYSTORE_PASSWORD", "changeit"),
    ("VAULT_ADDR", "http://127.0.0.1:8200"),
    ("VAULT_TOKEN", "platform-fixture-vault-token"),
];

fn secretd(args: &[&str]) -> Output {
    Command::new(common::bin()).args(args).envs(CREDENTIALS.iter().copied()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every fixture: `config check` passes, or fails with exactly the "not
/// supported yet" message naming the key. A fixture added to the directory
/// without a line here fails the test.
#[test]
fn every_platform_example_passes_config_check_or_names_what_is_not_supported() {
    let expected: &[(&str, Option<&str>)] = &[
        ("aws-secret-manager.yaml", None),
        ("aws-sts.yaml", None),
        ("azure-key-vault.yaml", None),
        ("google-secret-manager.yaml", None),
        ("elasticsearch.yaml", None),
        ("jdbc.yaml", None),
        ("tags-and-cache.yaml", None),
        ("security-settings.yaml", None),
        ("ssl-kubernetes.yaml", None),
        ("vault.yaml", None),
        ("vault-kubernetes.yaml", None),
        ("ssl-standalone.yaml", Some("micronaut.server.ssl.trustStore: is not supported by secretd yet")),
    ];
    let mut on_disk: Vec<String> = std::fs::read_dir(fixture(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = expected.iter().map(|(name, _)| (*name).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every fixture needs its expectation here");

    for (name, refusal) in expected {
        let path = fixture(name);
        let out = secretd(&["config", "check", path.to_str().unwrap()]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        match refusal {
            None => {
                assert!(out.status.success(), "{name}: {stderr}");
                assert_eq!(stdout, format!("{}: ok\n", path.display()), "{name}");
            }
            Some(message) => {
                assert!(!out.status.success(), "{name} was accepted");
                assert_eq!(stderr.trim_end(), format!("error: {}: {message}", path.display()), "{name}");
            }
        }
        for (_, value) in CREDENTIALS {
            assert!(!stdout.contains(value) && !stderr.contains(value), "{name}: a credential was printed");
        }
    }
}

/// `config convert` prints secretd's own YAML, which `config check` accepts
/// as it is, with every reference still a reference.
#[test]
fn convert_prints_native_yaml_with_references_as_written() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "jdbc.yaml",
        "vault.yaml",
        "vault-kubernetes.yaml",
        "security-settings.yaml",
        "azure-key-vault.yaml",
        "ssl-kubernetes.yaml",
    ] {
        let out = secretd(&["config", "convert", fixture(name).to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let yaml = text(&out.stdout);
        for (_, value) in CREDENTIALS {
            assert!(!yaml.contains(value), "{name}: a credential was expanded into the output:\n{yaml}");
        }
        let tree: serde_norway::Value = serde_norway::from_str(&yaml).unwrap();
        assert!(tree.get("kestra").is_none() && tree.get("datasources").is_none(), "{name}: {yaml}");
        let native = dir.path().join(name);
        std::fs::write(&native, &yaml).unwrap();
        let check = secretd(&["config", "check", native.to_str().unwrap()]);
        assert!(check.status.success(), "{name}: the converted file fails: {}\n{yaml}", text(&check.stderr));
    }

    let jdbc = text(&secretd(&["config", "convert", fixture("jdbc.yaml").to_str().unwrap()]).stdout);
    let tree: serde_norway::Value = serde_norway::from_str(&jdbc).unwrap();
    assert_eq!(
        tree["secret"]["jdbc"]["url"].as_str(),
        Some("postgres://kestra:${KESTRA_DB_PASSWORD}@127.0.0.1:5432/kestra")
    );
    assert_eq!(tree["secret"]["jdbc"]["secret"].as_str(), Some("${KESTRA_SECRET_KEY}"));
    let out = secretd(&["config", "convert", fixture("jdbc.yaml").to_str().unwrap()]);
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "{}: ignored (secretd has no use for them): kestra.repository, kestra.queue",
            fixture("jdbc.yaml").display()
        )
    );

    let vault = text(&secretd(&["config", "convert", fixture("vault.yaml").to_str().unwrap()]).stdout);
    let tree: serde_norway::Value = serde_norway::from_str(&vault).unwrap();
    let block = &tree["secret"]["vault"];
    assert_eq!(block["token"]["token"].as_str(), Some("${VAULT_TOKEN}"));
    assert_eq!(block["mount"].as_str(), Some("secret"));
    assert_eq!(block["path-prefix"].as_str(), Some("kestra"));
    // connect-timeout + read-timeout: the longest a whole call may take.
    assert_eq!(block["timeout"].as_str(), Some("15000ms"));

    let kubernetes = text(&secretd(&["config", "convert", fixture("vault-kubernetes.yaml").to_str().unwrap()]).stdout);
    let tree: serde_norway::Value = serde_norway::from_str(&kubernetes).unwrap();
    let block = &tree["secret"]["vault"]["kubernetes"];
    assert_eq!((block["path"].as_str(), block["role"].as_str()), (Some("kubernetes"), Some("kestra")));

    let native = dir.path().join("native.yaml");
    std::fs::write(&native, "secret:\n  type: memory\n").unwrap();
    let out = secretd(&["config", "convert", native.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("(top level): has no `kestra` key"), "{}", text(&out.stderr));
}

/// The AWS example, pointed at moto with `endpoint-override`, serves
/// secrets; what it writes is in moto under secretd's name prefix.
#[tokio::test]
async fn daemon_serves_the_aws_example_against_moto() {
    let Some(endpoint) = env("SECRETD_TEST_AWS_ENDPOINT") else { return };
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(fixture("aws-secret-manager.yaml")).unwrap();
    let config = dir.path().join("application.yml");
    std::fs::write(
        &config,
        format!(
            "{example}      endpoint-override: ${{SECRETD_TEST_AWS_ENDPOINT}}\n  queue:\n    type: postgres\n\
             micronaut:\n  application:\n    name: kestra\n{}",
            admin_account()
        ),
    )
    .unwrap();
    let mut environment: Vec<(&str, &str)> = CREDENTIALS.to_vec();
    environment.push(("SECRETD_TEST_AWS_ENDPOINT", &endpoint));
    let daemon = Daemon::start_with_env(
        &["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        dir.path(),
        &environment,
    );
    let ignored: Vec<String> =
        daemon.logs.lock().unwrap().iter().filter(|l| l.contains("are ignored")).cloned().collect();
    assert_eq!(ignored.len(), 1, "{}", daemon.log_text());
    assert!(ignored[0].contains("kestra.queue, micronaut.application"), "{}", ignored[0]);

    let ns = format!("platform.aws{}", rand::random::<u32>());
    let mut client = daemon.client().await;
    put(&mut client, &ns, "db-password", b"from-the-platform-file").await.unwrap();
    assert_eq!(get_value(&mut client, &ns, "db-password").await.unwrap(), b"from-the-platform-file");

    let mut options = secretd_aws::AwsOptions::new("us-east-1");
    options.endpoint = Some(endpoint);
    options.credentials = Some(secretd_aws::StaticCredentials {
        access_key_id: secrecy::SecretString::from("AKIDPLATFORMFIXTURE").into(),
        secret_access_key: secrecy::SecretString::from("x").into(),
        session_token: None,
    });
    let direct = secretd_aws::AwsStore::connect(options).await.unwrap();
    let name = SecretName::parse("main", &ns, "db-password").unwrap();
    assert_eq!(direct.get(&name, None).await.unwrap().value.expose(), b"from-the-platform-file");
}

/// A bad `sts-*` key is named as the platform file writes it, without its
/// value.
#[test]
fn bad_sts_keys_are_named_by_their_platform_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("application.yml");
    std::fs::write(
        &path,
        "kestra:\n  secret:\n    type: aws-secret-manager\n    aws-secret-manager:\n      region: us-east-1\n      \
         sts-role-arn: arn:aws:iam::123456789012:role/k\n      sts-endpoint-override: sts.example.CANARY\n      \
         sts-role-session-duration: PT13H\n",
    )
    .unwrap();
    let out = secretd(&["config", "check", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let at = "kestra.secret.aws-secret-manager";
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "error: {}: {at}.sts-role-session-duration: must be 15 minutes (PT15M) to 12 hours (PT12H); \
             {at}.sts-endpoint-override: must start with http:// or https://",
            path.display()
        )
    );
}

/// The STS example against moto (`endpoint-override` and
/// `sts-endpoint-override` both moto): the daemon assumes the role, and
/// moto files what it writes under the role's account, where a client with
/// the same role reads it and one with the base keys finds nothing.
#[tokio::test]
async fn daemon_serves_the_sts_example_through_the_assumed_role() {
    let Some(endpoint) = env("SECRETD_TEST_AWS_ENDPOINT") else { return };
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(fixture("aws-sts.yaml")).unwrap();
    let config = dir.path().join("application.yml");
    std::fs::write(
        &config,
        format!(
            "{example}      endpoint-override: ${{SECRETD_TEST_AWS_ENDPOINT}}\n      \
             sts-endpoint-override: ${{SECRETD_TEST_AWS_ENDPOINT}}\n{}",
            admin_account()
        ),
    )
    .unwrap();
    let mut environment: Vec<(&str, &str)> = CREDENTIALS.to_vec();
    environment.push(("SECRETD_TEST_AWS_ENDPOINT", &endpoint));
    let daemon = Daemon::start_with_env(
        &["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        dir.path(),
        &environment,
    );
    let ns = format!("platform.sts{}", rand::random::<u32>());
    let mut client = daemon.client().await;
    put(&mut client, &ns, "db-password", b"through-the-role").await.unwrap();
    assert_eq!(get_value(&mut client, &ns, "db-password").await.unwrap(), b"through-the-role");
    // Not even the access key id: the SDK's debug lines that name it are
    // held at info (the daemon logs at debug here).
    for (var, value) in CREDENTIALS {
        assert!(!daemon.log_text().contains(value), "{var} was logged:\n{}", daemon.log_text());
    }

    let connect = |role: Option<secretd_aws::AssumeRole>| {
        let mut options = secretd_aws::AwsOptions::new("us-east-1");
        options.endpoint = Some(endpoint.clone());
        options.credentials = Some(secretd_aws::StaticCredentials {
            access_key_id: secrecy::SecretString::from("AKIDPLATFORMFIXTURE").into(),
            secret_access_key: secrecy::SecretString::from("x").into(),
            session_token: None,
        });
        options.assume_role = role;
        secretd_aws::AwsStore::connect(options)
    };
    let mut role = secretd_aws::AssumeRole::new("arn:aws:iam::210987654321:role/kestra");
    role.sts_endpoint = Some(endpoint.clone());
    let through_role = connect(Some(role)).await.unwrap();
    let base = connect(None).await.unwrap();
    let name = SecretName::parse("main", &ns, "db-password").unwrap();
    assert_eq!(through_role.get(&name, None).await.unwrap().value.expose(), b"through-the-role");
    let missing = base.get(&name, None).await.expect_err("the base keys' account holds nothing");
    assert_eq!(missing.kind(), secretd_core::ErrorKind::NotFound);
}

/// The Vault example against OpenBao: token auth, `root-engine` as the
/// mount and `secret-path-prefix` as the path prefix, checked by reading
/// what the daemon wrote straight from OpenBao under that prefix.
#[tokio::test]
async fn daemon_serves_the_vault_example_against_openbao() {
    let (Some(address), Some(token)) = (env("SECRETD_TEST_VAULT_ADDR"), env("SECRETD_TEST_VAULT_TOKEN")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(fixture("vault.yaml")).unwrap();
    let config = dir.path().join("application.yml");
    std::fs::write(&config, format!("{example}{}", admin_account())).unwrap();
    let mut environment: Vec<(&str, &str)> =
        CREDENTIALS.iter().copied().filter(|(k, _)| !k.starts_with("VAULT_")).collect();
    environment.push(("VAULT_ADDR", &address));
    environment.push(("VAULT_TOKEN", &token));
    let daemon = Daemon::start_with_env(
        &["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        dir.path(),
        &environment,
    );
    assert!(!daemon.log_text().contains("are ignored"), "nothing in this file is ignored: {}", daemon.log_text());

    let ns = format!("platform.vault{}", rand::random::<u32>());
    let mut client = daemon.client().await;
    put(&mut client, &ns, "api-key", b"kept-in-openbao").await.unwrap();
    assert_eq!(get_value(&mut client, &ns, "api-key").await.unwrap(), b"kept-in-openbao");

    let auth = secretd_vault::VaultAuth::Token(secrecy::SecretString::from(token).into());
    let mut options = secretd_vault::VaultOptions::new(address, auth);
    options.path_prefix = secretd_vault::PathPrefix::new("kestra").unwrap();
    let direct = secretd_vault::VaultStore::connect(options).await.unwrap();
    let name = SecretName::parse("main", &ns, "api-key").unwrap();
    assert_eq!(direct.get(&name, None).await.unwrap().value.expose(), b"kept-in-openbao");
}

/// One Vault API call with curl, as the root token: the JSON answer, if any.
fn vault_api(addr: &str, token: &str, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-s", "-X", method, "-H", &format!("X-Vault-Token: {token}"), "-d", &body.to_string()])
        .arg(format!("{addr}/v1/{path}"))
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// A service account JWT (ES256) for `subject` and `audience`, and the PEM
/// public key that verifies it.
fn service_account_token(subject: &str, audience: &str) -> (String, String) {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
    let claims = serde_json::json!({"sub": subject, "aud": [audience], "iat": now, "nbf": now, "exp": now + 3600});
    let signed =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = signer.sign(&rng, signed.as_bytes()).unwrap();
    (format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())), key.public_key_pem())
}

/// The Vault Kubernetes example against OpenBao. OpenBao's `kubernetes`
/// method needs a Kubernetes API to review the token, so the example's
/// `path` points at a `jwt` mount trusting a key made here: the login
/// request (`{role, jwt}` to `auth/<path>/login`) is the same, and what is
/// tested is secretd reading the token file and logging in with it.
#[tokio::test]
async fn daemon_serves_the_vault_kubernetes_example_against_openbao() {
    let (Some(address), Some(root)) = (env("SECRETD_TEST_VAULT_ADDR"), env("SECRETD_TEST_VAULT_TOKEN")) else {
        return;
    };
    let suffix = format!("{:08x}", rand::random::<u32>());
    let (mount, role, policy) = (format!("k8s-jwt-{suffix}"), format!("kestra-{suffix}"), "secretd-platform-k8s");
    let (subject, audience) = ("system:serviceaccount:kestra:kestra", "https://vault.platform.test");
    let (jwt, public_key) = service_account_token(subject, audience);
    vault_api(&address, &root, "POST", &format!("sys/auth/{mount}"), serde_json::json!({"type": "jwt"}));
    vault_api(
        &address,
        &root,
        "POST",
        &format!("auth/{mount}/config"),
        serde_json::json!({"jwt_validation_pubkeys": [public_key]}),
    );
    vault_api(
        &address,
        &root,
        "PUT",
        &format!("sys/policies/acl/{policy}"),
        serde_json::json!({"policy": r#"path "secret/data/secretd/*" { capabilities = ["create", "read", "update", "delete", "list"] }
            path "secret/metadata/secretd/*" { capabilities = ["create", "read", "update", "delete", "list"] }"#}),
    );
    vault_api(
        &address,
        &root,
        "POST",
        &format!("auth/{mount}/role/{role}"),
        serde_json::json!({"role_type": "jwt", "user_claim": "sub", "bound_subject": subject,
            "bound_audiences": [audience], "token_policies": [policy], "token_ttl": "1h"}),
    );
    let configured = vault_api(&address, &root, "GET", &format!("auth/{mount}/role/{role}"), serde_json::json!({}));
    assert_eq!(configured["data"]["bound_subject"].as_str(), Some(subject), "{configured}");

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{jwt}\n")).unwrap();
    let example = std::fs::read_to_string(fixture("vault-kubernetes.yaml")).unwrap();
    let example = example
        .replace("path: kubernetes", &format!("path: {mount}"))
        .replace("role: kestra", &format!("role: {role}\n        token-file: {}", token_file.display()));
    assert!(example.contains(&mount) && example.contains("token-file"), "the fixture changed shape:\n{example}");
    let config = dir.path().join("application.yml");
    std::fs::write(&config, format!("{example}{}", admin_account())).unwrap();
    let mut environment: Vec<(&str, &str)> =
        CREDENTIALS.iter().copied().filter(|(k, _)| !k.starts_with("VAULT_")).collect();
    environment.push(("VAULT_ADDR", &address));
    let daemon = Daemon::start_with_env(
        &["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        dir.path(),
        &environment,
    );

    let ns = format!("platform.k8s{}", rand::random::<u32>());
    let mut client = daemon.client().await;
    put(&mut client, &ns, "api-key", b"kept-via-kubernetes-auth").await.unwrap();
    assert_eq!(get_value(&mut client, &ns, "api-key").await.unwrap(), b"kept-via-kubernetes-auth");
    assert!(!daemon.log_text().contains(&jwt), "the service account token was logged");

    let auth = secretd_vault::VaultAuth::Token(secrecy::SecretString::from(root).into());
    let mut options = secretd_vault::VaultOptions::new(address, auth);
    options.path_prefix = secretd_vault::PathPrefix::new("secretd").unwrap();
    let direct = secretd_vault::VaultStore::connect(options).await.unwrap();
    let name = SecretName::parse("main", &ns, "api-key").unwrap();
    assert_eq!(direct.get(&name, None).await.unwrap().value.expose(), b"kept-via-kubernetes-auth");
}

/// `micronaut.server.ssl` as the platform's Kubernetes example writes it:
/// the daemon serves TLS from the PKCS#12 key store (`path: file:...`,
/// password from the environment) on the port given there, and nothing in
/// plain text.
#[tokio::test]
async fn daemon_serves_tls_from_the_platform_key_store_on_its_port() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let keystore = pki.server_keystore("Platform-Keystore-Password");
    let port = common::free_port_pair();
    let config = dir.path().join("application.yml");
    std::fs::write(
        &config,
        format!(
            "micronaut:\n  server:\n    ssl:\n      enabled: true\n      port: {port}\n      keyStore:\n        \
             path: file:{}\n        password: ${{KEYSTORE_PASSWORD}}\n        type: PKCS12\n\
             kestra:\n  secret:\n    type: jdbc\n    jdbc:\n      url: sqlite://{}\n      secret: ${{KESTRA_SECRET_KEY}}\n  \
             server:\n    termination-grace-period: PT5S\n{}",
            keystore.display(),
            dir.path().join("secrets.db").display(),
            admin_account()
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with_env(
        &["serve", "--config", config.to_str().unwrap()],
        dir.path(),
        &[("KEYSTORE_PASSWORD", "Platform-Keystore-Password"), ("KESTRA_SECRET_KEY", KEY)],
    );
    assert_eq!(daemon.addr, format!("https://0.0.0.0:{port}"), "{}", daemon.log_text());
    let channel = tls_channel(&daemon, &pki.ca, None).await.expect("TLS with the platform's key store");
    let mut client = SecretBrokerClient::with_interceptor(channel, Auth::bearer(ADMIN_TOKEN));
    put(&mut client, "platform.tls", "k", b"over-tls").await.unwrap();
    assert_eq!(get_value(&mut client, "platform.tls", "k").await.unwrap(), b"over-tls");
    let plain = common::connect(&format!("http://127.0.0.1:{port}"), Auth::bearer(ADMIN_TOKEN)).await;
    if let Ok(mut plain) = plain {
        assert!(get_value(&mut plain, "platform.tls", "k").await.is_err(), "plain text was served");
    }
}
