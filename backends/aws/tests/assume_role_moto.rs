//! Assuming a role through moto's STS: the base credentials sign only
//! `AssumeRole`, the role's temporary credentials sign every Secrets
//! Manager call, and they are fetched again before they expire.
//!
//! moto files what an assumed role writes under the role's account, so a
//! secret written through the role is missing to the base credentials;
//! moto's request recorder shows which access key signed each call.

mod support;

use std::time::Duration;

use base64::Engine;
use secretd_aws::{AssumeRole, AwsOptions, DeletePolicy};
use secretd_core::{ErrorKind, SecretName, SecretStore, SecretValue, Tags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// moto has one recorder per server: one test records at a time.
static RECORDER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BASE_ACCESS_KEY: &str = "AKIDTESTSECRETD";

/// A role in an account of its own (never moto's default 123456789012).
fn role_arn() -> String {
    let account = 200_000_000_000 + rand::random::<u64>() % 700_000_000_000;
    format!("arn:aws:iam::{account}:role/secretd-test-reader")
}

fn role_options(endpoint: &str, role: AssumeRole) -> AwsOptions {
    let mut options = support::options(endpoint, DeletePolicy::Force);
    options.assume_role = Some(role);
    options
}

/// A plain HTTP/1.1 call to moto's own API, which needs no signature.
async fn moto_api(endpoint: &str, method: &str, path: &str) -> String {
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(authority).await.expect("moto is reachable");
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).expect("moto answers in UTF-8");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"), "{method} {path}: {head}");
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return dechunk(body);
    }
    body.to_owned()
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// One recorded request: its target (Secrets Manager's `X-Amz-Target`, or
/// STS's `Action`), the access key that signed it, and its body.
struct Recorded {
    secrets_manager: bool,
    access_key: String,
    body: String,
}

fn recording(text: &str) -> Vec<Recorded> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).expect("a recorded request");
            let header = |name: &str| {
                entry["headers"]
                    .as_object()
                    .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                    .and_then(|(_, v)| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let raw = entry["body"].as_str().unwrap_or_default();
            let body = if entry["body_encoded"].as_bool() == Some(true) {
                String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(raw).unwrap()).into_owned()
            } else {
                raw.to_owned()
            };
            let authorization = header("Authorization");
            let access_key = authorization
                .split("Credential=")
                .nth(1)
                .and_then(|c| c.split('/').next())
                .unwrap_or_default()
                .to_owned();
            Recorded { secrets_manager: header("X-Amz-Target").starts_with("secretsmanager."), access_key, body }
        })
        .collect()
}

fn unique(label: &str) -> String {
    format!("{label}-{:08x}", rand::random::<u32>())
}

#[tokio::test]
async fn secrets_manager_calls_are_signed_with_the_assumed_role() {
    let Some(endpoint) = support::endpoint() else { return };
    let _recording = RECORDER.lock().await;
    let arn = role_arn();
    let session = unique("secretd-sts");
    let mut role = AssumeRole::new(&arn);
    role.session_name = session.clone();
    role.external_id = Some("secretd-external-id".into());
    role.sts_endpoint = Some(endpoint.clone());
    let through_role = support::connect(role_options(&endpoint, role)).await;
    let base = support::connect(support::options(&endpoint, DeletePolicy::Force)).await;
    let key = unique("assumed");
    let name = SecretName::parse("sts", "roles", &key).unwrap();

    moto_api(&endpoint, "POST", "/moto-api/recorder/start-recording").await;
    let written = through_role.put(&name, &SecretValue::from_slice(b"through the role"), &Tags::new(), None).await;
    let read = through_role.get(&name, None).await;
    let read_by_base = base.get(&name, None).await;
    moto_api(&endpoint, "POST", "/moto-api/recorder/stop-recording").await;
    let recorded = recording(&moto_api(&endpoint, "GET", "/moto-api/recorder/download-recording").await);

    written.expect("a put through the role");
    assert_eq!(read.expect("a read through the role").value.expose(), b"through the role");
    assert_eq!(read_by_base.expect_err("the role's account is not the base credentials'").kind(), ErrorKind::NotFound);
    let assumes: Vec<&Recorded> = recorded.iter().filter(|r| r.body.contains(&session)).collect();
    assert_eq!(assumes.len(), 1, "one AssumeRole for the session");
    assert!(assumes[0].body.contains("Action=AssumeRole"), "{}", assumes[0].body);
    assert!(assumes[0].body.contains("ExternalId=secretd-external-id"));
    assert_eq!(assumes[0].access_key, BASE_ACCESS_KEY, "the base credentials sign AssumeRole");
    let through: Vec<&Recorded> = recorded
        .iter()
        .filter(|r| r.secrets_manager && r.body.contains(&key) && r.access_key != BASE_ACCESS_KEY)
        .collect();
    let by_base: Vec<&Recorded> = recorded
        .iter()
        .filter(|r| r.secrets_manager && r.body.contains(&key) && r.access_key == BASE_ACCESS_KEY)
        .collect();
    assert!(through.len() >= 3, "the put and the read went through the role: {}", through.len());
    assert!(through.iter().all(|r| r.access_key == through[0].access_key), "one set of temporary credentials");
    assert!(!through[0].access_key.is_empty());
    assert_eq!(by_base.len(), 2, "only the base store's read (value and describe) is signed with the base key");

    through_role.delete(&name).await.expect("a delete through the role");
}

#[tokio::test]
async fn credentials_are_fetched_again_before_they_expire() {
    let Some(endpoint) = support::endpoint() else { return };
    let _recording = RECORDER.lock().await;
    let session = unique("secretd-renew");
    let mut role = AssumeRole::new(role_arn());
    role.session_name = session.clone();
    // Below STS's 15-minute floor, which moto does not enforce. The
    // client's cache takes credentials as stale 5 to 10 seconds (jittered)
    // before they expire: these are stale after 7 seconds at the latest,
    // and still valid until 12.
    role.session_duration = Duration::from_secs(12);
    role.sts_endpoint = Some(endpoint.clone());
    let store = support::connect(role_options(&endpoint, role)).await;
    let key = unique("renewed");
    let name = SecretName::parse("sts", "roles", &key).unwrap();

    moto_api(&endpoint, "POST", "/moto-api/recorder/start-recording").await;
    let started = std::time::Instant::now();
    let written = store.put(&name, &SecretValue::from_slice(b"v1"), &Tags::new(), None).await;
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(started.elapsed())).await;
    let read = store.get(&name, None).await;
    let read_at = started.elapsed();
    moto_api(&endpoint, "POST", "/moto-api/recorder/stop-recording").await;
    let recorded = recording(&moto_api(&endpoint, "GET", "/moto-api/recorder/download-recording").await);

    written.expect("a put through the role");
    assert_eq!(read.expect("a read with renewed credentials").value.expose(), b"v1");
    assert!(read_at < Duration::from_secs(11), "the read came before the first credentials expired: {read_at:?}");
    let assumes = recorded.iter().filter(|r| r.body.contains(&session)).count();
    assert_eq!(assumes, 2, "the credentials were replaced once, before they expired");
    let mut keys: Vec<&str> =
        recorded.iter().filter(|r| r.secrets_manager && r.body.contains(&key)).map(|r| r.access_key.as_str()).collect();
    keys.dedup();
    assert_eq!(keys.len(), 2, "the read was signed with the new credentials: {}", keys.len());
    assert!(!keys.contains(&BASE_ACCESS_KEY));

    store.delete(&name).await.expect("a delete through the role");
}
