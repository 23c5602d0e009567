//! Rotating the secret on Elasticsearch / OpenSearch (osmem-server in
//! `scripts/test.sh`): values sealed under a previous secret stay readable,
//! `reseal` moves every document (heads and versions) to the current one
//! while readers and writers go on, and afterwards the old secret can go.
//! Each test uses an index of its own, since a re-seal walks the whole
//! index and its counts must be exact.

mod support;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use base64::Engine;
use secrecy::SecretString;
use secretd_core::{
    ErrorKind, Reseal, ResealProgress, ResealReport, SecretName, SecretStore, SecretValue, Tags, Version,
};
use secretd_elasticsearch::{ElasticsearchOptions, ElasticsearchStore};

const SECRET_A: &str = "es-rekey-secret-A-0123456789abcdef-01";
const SECRET_B: &str = "es-rekey-secret-B-0123456789abcdef-01";
const SECRET_C: &str = "es-rekey-secret-C-0123456789abcdef-01";

/// An index of its own, deleted at the end.
struct ScratchIndex {
    url: String,
    index: String,
}

impl ScratchIndex {
    fn new(url: &str) -> Self {
        Self { url: url.to_owned(), index: format!("secretd-rekey-{:016x}", rand::random::<u64>()) }
    }

    async fn open(&self, current: &str, previous: &[&str]) -> ElasticsearchStore {
        let options = ElasticsearchOptions::new([self.url.as_str()], current)
            .with_index(&self.index)
            .with_previous_secrets(previous.iter().map(|s| SecretString::from(*s)));
        ElasticsearchStore::connect(options).await.unwrap_or_else(|e| panic!("cannot open the scratch index: {e}"))
    }

    /// Every document's `_source`, straight from the index.
    async fn documents(&self) -> Vec<serde_json::Value> {
        let http = support::http();
        http.post(format!("{}/{}/_refresh", self.url, self.index)).send().await.unwrap();
        let reply: serde_json::Value = http
            .post(format!("{}/{}/_search", self.url, self.index))
            .json(&serde_json::json!({"size": 10000, "query": {"match_all": {}}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reply["hits"]["hits"].as_array().unwrap().iter().map(|h| h["_source"].clone()).collect()
    }

    /// The key id in the header of every stored ciphertext, as hex.
    async fn stored_key_ids(&self) -> Vec<String> {
        self.documents()
            .await
            .iter()
            .map(|doc| {
                let sealed = base64::engine::general_purpose::STANDARD.decode(doc["sealed"].as_str().unwrap()).unwrap();
                let id: String = sealed[1..9].iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(doc["key_id"].as_str(), Some(id.as_str()), "the key_id field disagrees with the header");
                id
            })
            .collect()
    }

    async fn delete(self) {
        let _ = support::http().delete(format!("{}/{}", self.url, self.index)).send().await;
    }
}

type Written = BTreeMap<(SecretName, Version), Vec<u8>>;

async fn seed(store: &ElasticsearchStore, secrets_per_namespace: usize, versions: usize) -> Written {
    let mut written = Written::new();
    for tenant in ["main", "acme"] {
        for namespace in ["team.a", "team.b.deep"] {
            for k in 0..secrets_per_namespace {
                let name = SecretName::parse(tenant, namespace, &format!("key/{k}")).unwrap();
                for v in 0..versions {
                    let value = format!("{tenant}|{namespace}|{k}|v{v}").into_bytes();
                    let version = store.put(&name, &SecretValue::from_slice(&value), &Tags::new(), None).await.unwrap();
                    written.insert((name.clone(), version), value);
                }
            }
        }
    }
    written
}

/// Every version pinned, and the latest of every secret.
async fn assert_all_readable(store: &ElasticsearchStore, written: &Written) {
    let mut latest: BTreeMap<&SecretName, &[u8]> = BTreeMap::new();
    for ((name, version), value) in written {
        let got = store.get(name, Some(version)).await.unwrap_or_else(|e| panic!("{name} v{version}: {e}"));
        assert_eq!(got.value.expose(), value.as_slice(), "{name} v{version}");
        latest.insert(name, value);
    }
    for (name, value) in latest {
        assert_eq!(store.get(name, None).await.unwrap().value.expose(), value, "{name} latest");
    }
}

async fn reseal_recording(store: &ElasticsearchStore) -> (ResealReport, Vec<ResealProgress>) {
    let seen = Mutex::new(Vec::new());
    let report = store.reseal(&|p: &ResealProgress| seen.lock().unwrap().push(p.clone())).await.unwrap();
    (report, seen.into_inner().unwrap())
}

#[tokio::test]
async fn rotation_reseals_heads_and_versions_and_the_old_secret_can_go() {
    let Some(url) = support::server_url() else { return };
    let scratch = ScratchIndex::new(&url);
    // 12 secrets of 3 versions: 36 version documents and 12 heads.
    let mut written = seed(&scratch.open(SECRET_A, &[]).await, 3, 3).await;

    let err = scratch.open(SECRET_B, &[]).await.check_keys().await.unwrap_err();
    assert!(err.message().starts_with("secret: stored values are sealed under key id"), "{err}");
    let rotating = scratch.open(SECRET_B, &[SECRET_A]).await;
    rotating.check_keys().await.unwrap();
    assert_all_readable(&rotating, &written).await;
    let fresh = SecretName::parse("main", "team.a", "key/0").unwrap();
    let version = rotating.put(&fresh, &SecretValue::from_slice(b"written under B"), &Tags::new(), None).await.unwrap();
    written.insert((fresh.clone(), version.clone()), b"written under B".to_vec());
    let b_id = rotating.current_key_id();
    // The new version and the head it moved.
    assert_eq!(scratch.stored_key_ids().await.iter().filter(|id| **id == b_id).count(), 2);
    let only_a = scratch.open(SECRET_A, &[]).await;
    assert_eq!(only_a.get(&fresh, None).await.unwrap_err().kind(), ErrorKind::Corrupt);

    let (report, progress) = reseal_recording(&rotating).await;
    assert_eq!(report.key_id, b_id);
    assert_eq!(
        (report.total, report.resealed, report.already_current, report.skipped, report.failed.len()),
        (49, 47, 2, 0, 0),
        "{report:?}"
    );
    let last = progress.last().expect("progress was reported");
    assert_eq!((last.estimated_total, last.seen, last.resealed), (49, 49, 47));
    assert!(scratch.stored_key_ids().await.iter().all(|id| *id == b_id), "a document is not under B");

    let (again, _) = reseal_recording(&rotating).await;
    assert_eq!((again.total, again.resealed, again.already_current), (49, 0, 49), "{again:?}");

    let only_b = scratch.open(SECRET_B, &[]).await;
    only_b.check_keys().await.unwrap();
    assert_all_readable(&only_b, &written).await;
    // Listing still works off the rewritten heads.
    let page = only_b
        .list(&fresh.tenant, &fresh.namespace, &Tags::new(), &secretd_core::PageRequest { size: 10, token: None })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);

    let only_c = scratch.open(SECRET_C, &[]).await;
    assert!(only_c.check_keys().await.unwrap_err().message().contains(&b_id));
    let err = only_c.get(&fresh, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains(&b_id) && err.message().contains("previous-secrets"), "{err}");
    scratch.delete().await;
}

#[tokio::test]
async fn a_document_no_configured_secret_opens_is_reported_and_the_run_goes_on() {
    let Some(url) = support::server_url() else { return };
    let scratch = ScratchIndex::new(&url);
    let written = seed(&scratch.open(SECRET_A, &[]).await, 1, 1).await;
    let stranger = SecretName::parse("main", "team.x", "foreign").unwrap();
    scratch.open(SECRET_C, &[]).await.put(&stranger, &SecretValue::from_slice(b"c"), &Tags::new(), None).await.unwrap();

    let (report, _) = reseal_recording(&scratch.open(SECRET_B, &[SECRET_A]).await).await;
    // 4 secrets under A (a version and a head each), one under C.
    assert_eq!((report.total, report.resealed, report.failed.len()), (10, 8, 2), "{report:?}");
    let items: Vec<&str> = report.failed.iter().map(|f| f.item.as_str()).collect();
    assert!(items.contains(&"secret main/team.x/foreign version 1 (head)"), "{items:?}");
    assert!(items.contains(&"secret main/team.x/foreign version 1"), "{items:?}");
    assert!(report.failed.iter().all(|f| f.reason.contains("key id")), "{report:?}");
    assert_all_readable(&scratch.open(SECRET_B, &[]).await, &written).await;
    assert_eq!(scratch.open(SECRET_C, &[]).await.get(&stranger, None).await.unwrap().value.expose(), b"c");
    scratch.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_fail_and_writers_lose_nothing_during_a_reseal() {
    let Some(url) = support::server_url() else { return };
    let scratch = ScratchIndex::new(&url);
    // 240 secrets, 480 versions: 720 documents, more than one batch.
    let written = seed(&scratch.open(SECRET_A, &[]).await, 60, 2).await;
    let store = Arc::new(scratch.open(SECRET_B, &[SECRET_A]).await);
    let written = Arc::new(written);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let deleted: Vec<SecretName> =
        (0..10).map(|k| SecretName::parse("acme", "team.b.deep", &format!("key/{k}")).unwrap()).collect();

    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (store, written, stop, reads) = (store.clone(), written.clone(), stop.clone(), reads.clone());
            let deleted = deleted.clone();
            tokio::spawn(async move {
                // Not the secrets being deleted: their reads may rightly miss.
                let entries: Vec<_> = written.iter().filter(|((name, _), _)| !deleted.contains(name)).collect();
                let mut i = r * 97;
                while !stop.load(Ordering::Relaxed) {
                    let ((name, version), value) = entries[i % entries.len()];
                    let pinned = store.get(name, Some(version)).await.map_err(|e| format!("{name} v{version}: {e}"))?;
                    if pinned.value.expose() != value.as_slice() {
                        return Err(format!("{name} v{version}: wrong value"));
                    }
                    store.get(name, None).await.map_err(|e| format!("{name} latest: {e}"))?;
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                Ok::<(), String>(())
            })
        })
        .collect();

    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut added = Written::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 20 {
                let name = SecretName::parse("main", "team.a", &format!("key/{}", n % 60)).unwrap();
                let value = format!("concurrent write {n}").into_bytes();
                let version = store.put(&name, &SecretValue::from_slice(&value), &Tags::new(), None).await.unwrap();
                added.insert((name, version), value);
                n += 1;
            }
            added
        })
    };
    let deleter = {
        let (store, deleted) = (store.clone(), deleted.clone());
        tokio::spawn(async move {
            for name in &deleted {
                store.delete(name).await.unwrap();
            }
        })
    };

    let report = store.reseal(&|_| {}).await.unwrap_or_else(|e| panic!("reseal failed: {e}"));
    deleter.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let added = writer.await.unwrap();
    for reader in readers {
        reader.await.unwrap().unwrap_or_else(|e| panic!("a read failed during the reseal: {e}"));
    }
    assert!(reads.load(Ordering::Relaxed) > 0, "the readers never ran");
    assert!(report.failed.is_empty() && report.resealed > 0, "{report:?}");

    let again = store.reseal(&|_| {}).await.unwrap();
    assert_eq!(again.resealed, 0, "{again:?}");
    let only_b = scratch.open(SECRET_B, &[]).await;
    for ((name, version), value) in written.iter().chain(added.iter()) {
        if deleted.contains(name) {
            continue;
        }
        let got = only_b.get(name, Some(version)).await.unwrap_or_else(|e| panic!("{name} v{version}: {e}"));
        assert_eq!(got.value.expose(), value.as_slice(), "{name} v{version}");
    }
    // Deleted stays deleted: no version document was left behind (or
    // brought back) by a rewrite racing the delete.
    let documents = scratch.documents().await;
    for name in &deleted {
        assert_eq!(only_b.get(name, None).await.unwrap_err().kind(), ErrorKind::NotFound, "{name} came back");
        let left = documents
            .iter()
            .filter(|d| d["tenant"] == name.tenant.as_str() && d["namespace"] == name.namespace.as_str())
            .filter(|d| d["key"] == name.key.as_str())
            .count();
        assert_eq!(left, 0, "{name}: documents left behind its delete");
    }
    drop((store, only_b));
    scratch.delete().await;
}

/// The versions a delete left behind (its delete-by-query failed, or lost
/// the race with a rewrite) are taken back by the re-seal that finds them
/// without their head, instead of being rewritten for a later secret of
/// the same name to find.
#[tokio::test]
async fn versions_left_behind_a_deleted_head_are_taken_back() {
    let Some(url) = support::server_url() else { return };
    let scratch = ScratchIndex::new(&url);
    let under_a = scratch.open(SECRET_A, &[]).await;
    let kept = seed(&under_a, 1, 1).await;
    let orphaned = SecretName::parse("main", "team.x", "orphan").unwrap();
    for value in [b"one", b"two"] {
        under_a.put(&orphaned, &SecretValue::from_slice(value), &Tags::new(), None).await.unwrap();
    }
    // Delete the head alone, as a delete interrupted after its first step.
    let http = support::http();
    let search: serde_json::Value = http
        .post(format!("{url}/{}/_search", scratch.index))
        .json(&serde_json::json!({"query": {"bool": {"filter": [
            {"term": {"doc_type": "head"}}, {"term": {"key": "orphan"}}
        ]}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let head_id = search["hits"]["hits"][0]["_id"].as_str().unwrap().to_owned();
    let deleted = http
        .delete(format!("{url}/{}/_doc/{head_id}?routing={head_id}&refresh=true", scratch.index))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());

    let (report, _) = reseal_recording(&scratch.open(SECRET_B, &[SECRET_A]).await).await;
    // 4 kept secrets (version and head) resealed; the 2 orphans taken back.
    assert_eq!((report.total, report.resealed, report.skipped, report.failed.len()), (10, 8, 2, 0), "{report:?}");
    let left = scratch.documents().await.iter().filter(|d| d["key"] == "orphan").count();
    assert_eq!(left, 0);
    let only_b = scratch.open(SECRET_B, &[]).await;
    assert_all_readable(&only_b, &kept).await;
    // A new secret of that name starts afresh, with nothing of the old one.
    let version = only_b.put(&orphaned, &SecretValue::from_slice(b"new"), &Tags::new(), None).await.unwrap();
    assert_eq!(version.as_str(), "1");
    assert_eq!(only_b.get(&orphaned, None).await.unwrap().value.expose(), b"new");
    scratch.delete().await;
}

#[tokio::test]
async fn bad_previous_secrets_fail_at_start_naming_the_entry() {
    // Refused before any request, so no server is needed.
    let options = ElasticsearchOptions::new(["http://127.0.0.1:1"], SECRET_B)
        .with_previous_secrets([SecretString::from(SECRET_A), SecretString::from("short")]);
    let err = ElasticsearchStore::connect(options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName);
    assert!(err.message().starts_with("previous-secrets[1]: must be at least 32 characters"), "{err}");
    let options = ElasticsearchOptions::new(["http://127.0.0.1:1"], SECRET_B)
        .with_previous_secrets([SecretString::from(SECRET_B)]);
    let err = ElasticsearchStore::connect(options).await.unwrap_err();
    assert_eq!(err.message(), "previous-secrets[0]: is the same secret as secret; remove it");
    assert!(!err.message().contains(SECRET_B));
}
