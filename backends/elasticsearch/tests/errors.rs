//! How failures of the cluster reach the broker: each HTTP status and
//! transport failure as one error kind, with bounded retries for the
//! transient ones. A scripted HTTP server on loopback plays the cluster, so
//! these run everywhere, without osmem-server.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use secretd_core::{ErrorKind, SecretName, SecretStore, SecretValue, Tags};
use secretd_elasticsearch::{Auth, ElasticsearchOptions, ElasticsearchStore};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

const SECRET: &str = "errors-test-secret-0123456789abcdef";
const CREATED: (u16, &str) = (200, r#"{"acknowledged":true}"#);

/// A server answering each request with the next scripted `(status, body)`
/// (the last one repeats); `None` means: never answer. Returns its URL and
/// a counter of requests received, and the request heads it saw.
async fn scripted(
    script: Vec<Option<(u16, &'static str)>>,
) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (counter, seen) = (count.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let (counter, seen, script) = (counter.clone(), seen.clone(), script.clone());
            tokio::spawn(async move {
                loop {
                    // Read one request: the head, then a Content-Length body.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    seen.lock().unwrap().push(head);
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let Some((status, body)) = script[n.min(script.len() - 1)] else {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, count, heads)
}

fn options(url: &str) -> ElasticsearchOptions {
    ElasticsearchOptions::new([url], SECRET).with_timeout(Duration::from_millis(500))
}

fn name() -> SecretName {
    SecretName::parse("main", "errors", "k").unwrap()
}

async fn get_error(after_connect: Vec<Option<(u16, &'static str)>>) -> (ErrorKind, String, usize) {
    let mut script = vec![Some(CREATED)];
    script.extend(after_connect);
    let (url, count, _) = scripted(script).await;
    let store = ElasticsearchStore::connect(options(&url)).await.unwrap();
    let err = store.get(&name(), None).await.unwrap_err();
    (err.kind(), err.message().to_owned(), count.load(Ordering::SeqCst) - 1)
}

#[tokio::test]
async fn refused_credentials_are_permission_denied_without_retries() {
    let body = r#"{"error":{"type":"security_exception","reason":"missing authentication credentials"},"status":401}"#;
    let (kind, message, requests) = get_error(vec![Some((401, body))]).await;
    assert_eq!(kind, ErrorKind::PermissionDenied, "{message}");
    assert!(message.contains("security_exception"), "{message}");
    assert_eq!(requests, 1);
    let (kind, _, _) = get_error(vec![Some((403, "{}"))]).await;
    assert_eq!(kind, ErrorKind::PermissionDenied);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_then_unavailable() {
    for status in [429, 500, 502, 503] {
        let (kind, message, requests) = get_error(vec![Some((status, "{}"))]).await;
        let expected = if status == 429 { ErrorKind::Throttled } else { ErrorKind::Unavailable };
        assert_eq!(kind, expected, "{status}: {message}");
        assert_eq!(requests, 3, "{status}: expected 3 attempts");
    }
}

#[tokio::test]
async fn a_transient_failure_then_success_succeeds() {
    let (url, count, _) = scripted(vec![Some(CREATED), Some((503, "{}")), Some((404, r#"{"found":false}"#))]).await;
    let store = ElasticsearchStore::connect(options(&url)).await.unwrap();
    assert_eq!(store.get(&name(), None).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn missing_documents_and_indices_are_not_found() {
    let (kind, _, _) = get_error(vec![Some((404, r#"{"_index":"i","_id":"x","found":false}"#))]).await;
    assert_eq!(kind, ErrorKind::NotFound);
    let missing_index = r#"{"error":{"type":"index_not_found_exception","reason":"no such index [i]"},"status":404}"#;
    let (kind, _, _) = get_error(vec![Some((404, missing_index))]).await;
    assert_eq!(kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn a_silent_server_is_a_timeout() {
    let (kind, message, requests) = get_error(vec![None]).await;
    assert_eq!(kind, ErrorKind::Timeout, "{message}");
    assert_eq!(requests, 1, "a timeout is not retried");
}

#[tokio::test]
async fn an_unreachable_cluster_is_unavailable() {
    // Port 1 on loopback refuses connections.
    let err = ElasticsearchStore::connect(options("http://127.0.0.1:1")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("cannot connect"), "{}", err.message());
}

#[tokio::test]
async fn a_dead_host_fails_over_to_the_next() {
    let (url, _, _) = scripted(vec![Some(CREATED), Some((404, r#"{"found":false}"#))]).await;
    let options = ElasticsearchOptions::new(["http://127.0.0.1:1", url.as_str()], SECRET);
    let store = ElasticsearchStore::connect(options).await.unwrap();
    for _ in 0..4 {
        assert_eq!(store.get(&name(), None).await.unwrap_err().kind(), ErrorKind::NotFound);
    }
}

#[tokio::test]
async fn an_existing_index_is_fine_and_credentials_are_sent() {
    let exists = r#"{"error":{"type":"resource_already_exists_exception","reason":"index [secretd-secrets] already exists"},"status":400}"#;
    let mapping = r#"{"secretd-secrets-000001":{"mappings":{"properties":{
        "doc_type":{"type":"keyword"},"secret_id":{"type":"keyword"},"tenant":{"type":"keyword"},
        "namespace":{"type":"keyword"},"key":{"type":"keyword"},"tag_terms":{"type":"keyword"},"version":{"type":"long"}}}}}"#;
    let (url, _, heads) = scripted(vec![Some((400, exists)), Some((200, mapping))]).await;
    let options = options(&url).with_auth(Auth::ApiKey("c2VjcmV0ZDprZXk=".into()));
    ElasticsearchStore::connect(options).await.unwrap();
    let heads = heads.lock().unwrap();
    assert!(heads[0].starts_with("PUT /secretd-secrets HTTP/1.1"), "{}", heads[0]);
    assert!(heads[1].starts_with("GET /secretd-secrets/_mapping"), "{}", heads[1]);
    assert!(heads.iter().all(|h| h.to_ascii_lowercase().contains("authorization: apikey c2vjcmv0zdprzxk=")));
}

#[tokio::test]
async fn a_put_that_keeps_losing_is_retried_and_its_error_is_clear() {
    // Connect, read the head (none), then every create conflicts but the
    // fifth; then the head is created.
    let conflict =
        r#"{"error":{"type":"version_conflict_engine_exception","reason":"document already exists"},"status":409}"#;
    let (url, count, heads) = scripted(vec![
        Some(CREATED),
        Some((404, r#"{"found":false}"#)),
        Some((409, conflict)),
        Some((409, conflict)),
        Some((409, conflict)),
        Some((409, conflict)),
        Some((201, r#"{"result":"created"}"#)),
        Some((201, r#"{"result":"created"}"#)),
    ])
    .await;
    let store = ElasticsearchStore::connect(options(&url)).await.unwrap();
    let version = store.put(&name(), &SecretValue::from_slice(b"v"), &Tags::new(), None).await.unwrap();
    assert_eq!(version.as_str(), "5");
    assert_eq!(count.load(Ordering::SeqCst), 8);
    let heads = heads.lock().unwrap();
    assert!(heads[6].contains(".5?routing="), "{}", heads[6]);
    assert!(heads[7].contains("refresh=wait_for"), "{}", heads[7]);
}

#[tokio::test]
async fn a_put_whose_head_write_fails_takes_its_version_back() {
    let (url, _, heads) = scripted(vec![
        Some(CREATED),
        Some((404, r#"{"found":false}"#)),
        Some((201, r#"{"result":"created"}"#)),
        Some((403, r#"{"error":{"type":"security_exception","reason":"no"}}"#)),
        Some((404, r#"{"found":false}"#)),
        Some((200, r#"{"result":"deleted"}"#)),
    ])
    .await;
    let store = ElasticsearchStore::connect(options(&url)).await.unwrap();
    let err = store.put(&name(), &SecretValue::from_slice(b"v"), &Tags::new(), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let heads = heads.lock().unwrap();
    assert!(heads[4].starts_with("GET "), "the head is read again: {}", heads[4]);
    assert!(heads[5].starts_with("DELETE ") && heads[5].contains(".1?routing="), "{}", heads[5]);
}

/// A password held in a source that changes (a mounted file, in the
/// daemon) is read for every request.
#[tokio::test]
async fn a_rotated_password_is_sent_from_the_next_request_on() {
    struct Rotating(std::sync::Mutex<String>);
    impl secretd_core::RotatingSecret for Rotating {
        fn current(&self) -> Result<secrecy::SecretString, secretd_core::StoreError> {
            Ok(secrecy::SecretString::from(self.0.lock().unwrap().clone()))
        }
    }
    let exists = r#"{"error":{"type":"resource_already_exists_exception","reason":"index [secretd-secrets] already exists"},"status":400}"#;
    let mapping = r#"{"secretd-secrets-000001":{"mappings":{"properties":{
        "doc_type":{"type":"keyword"},"secret_id":{"type":"keyword"},"tenant":{"type":"keyword"},
        "namespace":{"type":"keyword"},"key":{"type":"keyword"},"tag_terms":{"type":"keyword"},"version":{"type":"long"}}}}}"#;
    let (url, _, heads) =
        scripted(vec![Some((400, exists)), Some((200, mapping)), Some((200, r#"{"count":0}"#))]).await;
    let password = Arc::new(Rotating(std::sync::Mutex::new("old".into())));
    let options = options(&url).with_auth(Auth::Basic {
        username: "secretd".into(),
        password: secretd_core::CredentialSource::rotating(password.clone()),
    });
    let store = ElasticsearchStore::connect(options).await.unwrap();
    *password.0.lock().unwrap() = "new".into();
    let _ = store.health().await;
    use base64::Engine;
    let basic = |p: &str| base64::engine::general_purpose::STANDARD.encode(format!("secretd:{p}")).to_ascii_lowercase();
    let heads = heads.lock().unwrap();
    assert!(heads[1].to_ascii_lowercase().contains(&format!("authorization: basic {}", basic("old"))));
    assert!(heads[2].to_ascii_lowercase().contains(&format!("authorization: basic {}", basic("new"))));
}
