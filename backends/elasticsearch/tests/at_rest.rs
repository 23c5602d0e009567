//! What the index holds: ciphertext bound to its name, never plaintext;
//! and what happens when the encryption secret is wrong, short or missing.

mod support;

use base64::Engine;
use secretd_core::{ErrorKind, SecretName, SecretStore, SecretValue, Tags};
use secretd_elasticsearch::{Auth, ElasticsearchOptions, ElasticsearchStore};
use serde_json::{json, Value};

const MARKER: &[u8] = b"PLAINTEXT-MARKER-c0ffee-never-in-the-index";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every stored document of `name`, as the cluster returns it: the raw
/// body and the hits (`_id`, `_routing`, `_source`).
async fn raw_documents(url: &str, name: &SecretName) -> (Vec<u8>, Vec<Value>) {
    let body = json!({"query": {"bool": {"filter": [
        {"term": {"tenant": name.tenant.as_str()}},
        {"term": {"namespace": name.namespace.as_str()}},
        {"term": {"key": name.key.as_str()}}
    ]}}});
    let response =
        support::http().post(format!("{url}/{}/_search", support::index())).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "raw search failed: {}", response.status());
    let raw = response.bytes().await.unwrap().to_vec();
    let parsed: Value = serde_json::from_slice(&raw).unwrap();
    (raw, parsed["hits"]["hits"].as_array().cloned().unwrap_or_default())
}

fn sealed(hit: &Value) -> Vec<u8> {
    let text = hit["_source"]["sealed"].as_str().expect("a sealed field");
    base64::engine::general_purpose::STANDARD.decode(text).expect("sealed is base64")
}

#[tokio::test]
async fn documents_hold_ciphertext_bound_to_the_name() {
    let Some(url) = support::server_url() else { return };
    let store = support::connect(&url).await;
    let name = support::unique_name("atrest");
    store.put(&name, &SecretValue::from_slice(MARKER), &Tags::new(), Some("a description")).await.unwrap();

    let (raw, hits) = raw_documents(&url, &name).await;
    assert_eq!(hits.len(), 2, "expected a head and one version document: {hits:?}");
    assert!(!contains(&raw, MARKER), "plaintext in the index");
    let encoded = base64::engine::general_purpose::STANDARD.encode(MARKER);
    assert!(!contains(&raw, &encoded.as_bytes()[..40]), "base64 of the plaintext in the index");
    for hit in &hits {
        let bytes = sealed(hit);
        assert_eq!(bytes[0], 1, "not in the envelope format");
        assert!(!contains(&bytes, MARKER), "plaintext in a sealed field");
    }

    // Another secret's ciphertext moved onto this name must not decrypt:
    // the envelope is bound to the name it was written for.
    let other = SecretName::parse("atrest", name.namespace.as_str(), "other").unwrap();
    store.put(&other, &SecretValue::from_slice(b"other value"), &Tags::new(), None).await.unwrap();
    let (_, other_hits) = raw_documents(&url, &other).await;
    let other_head = other_hits.iter().find(|h| h["_source"]["doc_type"] == "head").unwrap();
    let head = hits.iter().find(|h| h["_source"]["doc_type"] == "head").unwrap();
    let mut tampered = head["_source"].clone();
    tampered["sealed"] = other_head["_source"]["sealed"].clone();
    let response = support::http()
        .put(format!(
            "{url}/{}/_doc/{}?routing={}&refresh=true",
            support::index(),
            head["_id"].as_str().unwrap(),
            head["_routing"].as_str().unwrap_or_default()
        ))
        .json(&tampered)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "tampering failed: {}", response.status());
    let err = store.get(&name, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "a moved ciphertext decrypted: {err}");
    assert!(!contains(err.message().as_bytes(), MARKER));
    // The version document was not touched and still reads.
    let v1 = secretd_core::Version("1".into());
    assert_eq!(store.get(&name, Some(&v1)).await.unwrap().value.expose(), MARKER);
}

#[tokio::test]
async fn a_wrong_secret_is_a_clear_corrupt_error() {
    let Some(url) = support::server_url() else { return };
    let store = support::connect(&url).await;
    let name = support::unique_name("wrongkey");
    store.put(&name, &SecretValue::from_slice(MARKER), &Tags::new(), None).await.unwrap();
    let other = ElasticsearchStore::connect(
        ElasticsearchOptions::new([url.as_str()], "a-different-secret-of-32-characters!!").with_index(support::index()),
    )
    .await
    .unwrap();
    let err = other.get(&name, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.message().contains("key id"), "{}", err.message());
    assert!(!contains(err.message().as_bytes(), MARKER));
}

#[tokio::test]
async fn a_missing_or_short_secret_refuses_to_start() {
    // Refused before any request: no server needed.
    for secret in ["", "short", &"x".repeat(31)] {
        let options = ElasticsearchOptions::new(["http://127.0.0.1:1"], secret);
        let err = ElasticsearchStore::connect(options).await.unwrap_err();
        assert!(err.message().starts_with("secret: must be at least 32 characters"), "{secret:?}: {}", err.message());
        assert!(secret.is_empty() || !err.message().contains(secret), "the secret leaked: {}", err.message());
    }
}

#[tokio::test]
async fn debug_output_never_shows_credentials_or_the_secret() {
    let Some(url) = support::server_url() else { return };
    let options = support::options(&url)
        .with_auth(Auth::Basic { username: "secretd".into(), password: "hunter2-basic-password".into() });
    let shown_options = format!("{options:?}");
    // osmem-server does not check credentials, so this connects.
    let store = ElasticsearchStore::connect(options).await.unwrap();
    let shown_store = format!("{store:?}");
    for shown in [&shown_options, &shown_store] {
        for hidden in ["hunter2-basic-password", support::SECRET] {
            assert!(!shown.contains(hidden), "{hidden} leaked into {shown}");
        }
    }
    assert!(shown_store.contains(support::index()) && shown_store.contains("key_id"), "{shown_store}");
}

#[tokio::test]
async fn reconnecting_reuses_the_index_and_data() {
    let Some(url) = support::server_url() else { return };
    let name = support::unique_name("reconnect");
    {
        let store = support::connect(&url).await;
        store.put(&name, &SecretValue::from_slice(b"kept"), &Tags::new(), None).await.unwrap();
    }
    let again = support::connect(&url).await;
    assert_eq!(again.get(&name, None).await.unwrap().value.expose(), b"kept");
}

#[tokio::test]
async fn an_index_with_a_foreign_mapping_is_refused() {
    let Some(url) = support::server_url() else { return };
    let index = format!("secretd-foreign-{:016x}", rand::random::<u64>());
    // What auto-creation with dynamic mapping would make: `key` as text.
    let response = support::http()
        .put(format!("{url}/{index}"))
        .json(&json!({"mappings": {"properties": {"key": {"type": "text"}}}}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let err = ElasticsearchStore::connect(support::options(&url).with_index(&index)).await.unwrap_err();
    assert!(err.message().contains("was not created by secretd"), "{}", err.message());
    let _ = support::http().delete(format!("{url}/{index}")).send().await;
}

#[tokio::test]
async fn health_fails_when_the_index_is_gone() {
    let Some(url) = support::server_url() else { return };
    let index = format!("secretd-doomed-{:016x}", rand::random::<u64>());
    let store = ElasticsearchStore::connect(support::options(&url).with_index(&index)).await.unwrap();
    store.health().await.unwrap();
    let name = support::unique_name("doomed");
    store.put(&name, &SecretValue::from_slice(b"v"), &Tags::new(), None).await.unwrap();
    support::http().delete(format!("{url}/{index}")).send().await.unwrap();
    assert_eq!(store.health().await.unwrap_err().kind(), ErrorKind::Unavailable);
    assert_eq!(store.get(&name, None).await.unwrap_err().kind(), ErrorKind::NotFound);
    // A put must not let the cluster auto-create the index without the mapping.
    let err = store.put(&name, &SecretValue::from_slice(b"v"), &Tags::new(), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let exists = support::http().head(format!("{url}/{index}")).send().await.unwrap();
    assert_eq!(exists.status().as_u16(), 404, "the put re-created the index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_number_versions_exactly_once() {
    const WRITERS: u64 = 50;
    let Some(url) = support::server_url() else { return };
    let store: std::sync::Arc<dyn SecretStore> = std::sync::Arc::new(support::connect(&url).await);
    let name = support::unique_name("contended");
    let writes = (0..WRITERS).map(|i| {
        let (store, name) = (store.clone(), name.clone());
        tokio::spawn(async move {
            let tags: Tags = [("writer", i.to_string())].into_iter().collect();
            let version = store.put(&name, &SecretValue::new(format!("w{i}").into_bytes()), &tags, None).await;
            (i, version)
        })
    });
    let mut versions = Vec::new();
    for write in futures_join(writes).await {
        let (i, version) = write;
        let version = version.unwrap_or_else(|e| panic!("concurrent put failed: {e}"));
        // Each version keeps its own value and tags.
        let secret = store.get(&name, Some(&version)).await.unwrap();
        assert_eq!(secret.value.expose(), format!("w{i}").as_bytes());
        assert_eq!(secret.metadata.tags.get("writer"), Some(i.to_string().as_str()));
        versions.push(version.as_str().parse::<u64>().unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=WRITERS).collect::<Vec<_>>(), "versions must be 1..={WRITERS}, each once");
    let latest = store.get(&name, None).await.unwrap();
    assert_eq!(latest.metadata.version.as_str(), WRITERS.to_string(), "the head must end at the highest version");
}

async fn futures_join<T: Send + 'static>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(task.await.expect("writer task"));
    }
    out
}
