//! Service-account keys end to end: the token is a self-signed JWT made
//! with ring (the client's aws-lc default is compiled out), sent as a
//! Bearer token, from an inline key or a key file. The key is generated per
//! run with the `openssl` command line tool.

mod support;

use std::{io::Write, process::Command, sync::Arc};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use secrecy::SecretString;
use secretd_core::{SecretName, SecretStore, SecretValue, Tags};
use secretd_gcp::{GcpCredentials, GcpOptions, GcpStore};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::Mutex,
};

/// A fresh service-account key as Google's JSON, or `None` (having said
/// so) where `openssl` is missing outside CI.
fn service_account_json() -> Option<String> {
    let out =
        Command::new("openssl").args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]).output();
    let pem = match out {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).expect("PEM is text"),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("openssl is needed to make a test key"),
        _ => {
            eprintln!("\n*** SKIPPED: openssl is not installed; no service-account key could be made ***\n");
            return None;
        }
    };
    Some(
        serde_json::json!({
            "type": "service_account",
            "project_id": "p-1",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": "secretd@p-1.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .to_string(),
    )
}

/// A server that answers every request `200 {}` and keeps the request
/// heads.
async fn recording() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                seen.lock().await.push(String::from_utf8_lossy(&buf[..read]).into_owned());
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await;
            });
        }
    });
    (url, heads)
}

#[tokio::test]
async fn requests_carry_a_jwt_signed_with_ring() {
    let Some(json) = service_account_json() else { return };
    let (url, heads) = recording().await;
    let mut options = GcpOptions::new("p-1", GcpCredentials::ServiceAccountJson(SecretString::from(json)));
    options.endpoint = Some(url);
    let store = GcpStore::connect(options).await.expect("a store with a service-account key");
    store.health().await.expect("the recording server answers 200");
    let heads = heads.lock().await;
    let head = heads.first().expect("one request");
    let token = head
        .lines()
        .find_map(|l| l.strip_prefix("authorization: Bearer ").or_else(|| l.strip_prefix("Authorization: Bearer ")))
        .unwrap_or_else(|| panic!("no bearer token in {head}"));
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT");
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "secretd@p-1.iam.gserviceaccount.com");
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 256, "an RSA-2048 signature");
}

#[tokio::test]
async fn inline_keys_and_key_files_work_against_drongo() {
    let Some(endpoint) = support::endpoint() else { return };
    let Some(json) = service_account_json() else { return };
    let mut file = tempfile();
    file.1.write_all(json.as_bytes()).unwrap();
    let name = SecretName::parse("acme", &format!("sa.r{:08x}", rand::random::<u32>()), "k").unwrap();
    for credentials in [
        GcpCredentials::ServiceAccountJson(SecretString::from(json.clone())),
        GcpCredentials::ServiceAccountFile(file.0.clone()),
    ] {
        let mut options = support::options(&endpoint);
        options.credentials = credentials;
        let store = support::connect(options).await;
        store.put(&name, &SecretValue::from_slice(b"signed"), &Tags::new(), None).await.unwrap();
        assert_eq!(store.get(&name, None).await.unwrap().value.expose(), b"signed");
    }
    let _ = std::fs::remove_file(&file.0);
}

/// A private file for the key (mode 0600), removed by the test.
fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    use std::os::unix::fs::OpenOptionsExt;
    let path = std::env::temp_dir().join(format!("secretd-gcp-key-{:016x}.json", rand::random::<u64>()));
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
    (path, file)
}

/// A key held in a source that changes (a mounted file, in the daemon):
/// requests after the change are signed by the new key.
#[tokio::test]
async fn a_rotated_key_signs_the_next_requests() {
    struct Rotating(std::sync::Mutex<String>);
    impl secretd_core::RotatingSecret for Rotating {
        fn current(&self) -> Result<SecretString, secretd_core::StoreError> {
            Ok(SecretString::from(self.0.lock().unwrap().clone()))
        }
    }
    let Some(first) = service_account_json() else { return };
    let Some(second) = service_account_json() else { return };
    let second = second.replace("\"secretd@p-1.iam.gserviceaccount.com\"", "\"rotated@p-1.iam.gserviceaccount.com\"");
    let (url, heads) = recording().await;
    let key = std::sync::Arc::new(Rotating(std::sync::Mutex::new(first)));
    let source = secretd_core::CredentialSource::rotating(key.clone());
    let mut options = GcpOptions::new("p-1", GcpCredentials::ServiceAccount(source));
    options.endpoint = Some(url);
    let store = GcpStore::connect(options).await.expect("a store with a service-account key");
    store.health().await.expect("the recording server answers 200");
    *key.0.lock().unwrap() = second;
    store.health().await.expect("the recording server answers 200");
    let issuers: Vec<String> = heads
        .lock()
        .await
        .iter()
        .map(|head| {
            let token = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("authorization: Bearer ").or_else(|| l.strip_prefix("Authorization: Bearer "))
                })
                .unwrap_or_else(|| panic!("no bearer token in {head}"));
            let claims = token.trim().split('.').nth(1).unwrap();
            let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
            claims["iss"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(issuers, ["secretd@p-1.iam.gserviceaccount.com", "rotated@p-1.iam.gserviceaccount.com"]);
}
