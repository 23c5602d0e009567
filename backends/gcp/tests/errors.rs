//! Failures between the store and the server, against a scripted HTTP
//! server on loopback: throttling and 5xx are retried a bounded number of
//! times and then reported as `Unavailable`; a refused credential is
//! `PermissionDenied`; a dead endpoint is `Unavailable` quickly, not a hang.
//! These need no test server and always run.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use secretd_core::{ErrorKind, RetryPolicy, SecretName, SecretStore};
use secretd_gcp::{GcpCredentials, GcpOptions, GcpStore};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// Answers each request with the next `(status, body)` of `script`, the
/// last one for ever after, and counts the requests.
async fn scripted(script: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let (status, body) = script[n.min(script.len() - 1)];
            tokio::spawn(async move {
                // Reads the request head (the test requests have no body).
                let mut buf = vec![0u8; 16 * 1024];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, count)
}

fn options(endpoint: &str, attempts: u32) -> GcpOptions {
    let mut options = GcpOptions::new("p-1", GcpCredentials::Anonymous);
    options.endpoint = Some(endpoint.to_owned());
    options.retry =
        RetryPolicy { attempts, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20) };
    options.timeout = Duration::from_secs(2);
    options
}

const THROTTLED: &str = r#"{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}"#;
const UNAVAILABLE: &str = r#"{"error": {"code": 503, "message": "try again", "status": "UNAVAILABLE"}}"#;
const DENIED: &str =
    r#"{"error": {"code": 403, "message": "Permission denied on resource", "status": "PERMISSION_DENIED"}}"#;

#[tokio::test]
async fn throttling_is_retried_then_succeeds() {
    let (url, count) = scripted(vec![(429, THROTTLED), (503, UNAVAILABLE), (200, "{}")]).await;
    let store = GcpStore::connect(options(&url, 3)).await.unwrap();
    store.health().await.expect("the third try succeeds");
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retries_are_bounded_and_end_unavailable() {
    let (url, count) = scripted(vec![(503, UNAVAILABLE)]).await;
    let store = GcpStore::connect(options(&url, 3)).await.unwrap();
    let err = store.health().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("UNAVAILABLE"), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 3, "three tries, no more");
}

#[tokio::test]
async fn refused_credentials_are_permission_denied_and_not_retried() {
    let (url, count) = scripted(vec![(403, DENIED)]).await;
    let store = GcpStore::connect(options(&url, 3)).await.unwrap();
    let name = SecretName::parse("acme", "team", "k").unwrap();
    let err = store.get(&name, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    // A get is three calls at once; none is retried.
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_not_a_hang() {
    let store = GcpStore::connect(options("http://127.0.0.1:9", 2)).await.unwrap();
    let started = Instant::now();
    let err = store.health().await.expect_err("nothing listens on port 9");
    assert!(matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout), "{:?}: {err}", err.kind());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn bad_options_are_refused_at_connect() {
    let err = GcpStore::connect(GcpOptions::new("p-1", GcpCredentials::Anonymous)).await.unwrap_err();
    assert!(err.message().contains("endpoint"), "{err}");
    let err =
        GcpStore::connect(GcpOptions::new("Not A Project", GcpCredentials::ApplicationDefault)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName);
}
