//! Rotating the secret: values sealed under a previous secret stay
//! readable, `reseal` moves every stored version to the current one (with
//! readers and writers going on), and afterwards the old secret can go.
//! Run on every dialect the machine has; each test gets a database of its
//! own, since a re-seal walks the whole table and its counts must be exact.

mod support;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use secrecy::SecretString;
use secretd_core::{
    ErrorKind, Keyring, Reseal, ResealProgress, ResealReport, SecretName, SecretStore, SecretValue, Tags, Version,
};
use secretd_sql::{Dialect, SqlError, SqlOptions, SqlStore};
use sqlx::Row;
use support::{dialects, raw_pool};

const SECRET_A: &str = "rekey-secret-A-0123456789abcdef-0123";
const SECRET_B: &str = "rekey-secret-B-0123456789abcdef-0123";
const SECRET_C: &str = "rekey-secret-C-0123456789abcdef-0123";

/// A database of its own on the server behind `url` (a new file for
/// SQLite), dropped when this goes out of scope.
struct ScratchDatabase {
    url: String,
    drop_sql: Option<(String, String)>,
}

impl ScratchDatabase {
    async fn new(label: &str, url: &str) -> Self {
        let (dialect, _) = Dialect::of_url(url).expect("a supported scheme");
        let name = format!("secretd_rekey_{:016x}", rand::random::<u64>());
        if dialect == Dialect::Sqlite {
            let dir = tempfile::tempdir().expect("temp dir").keep();
            return Self { url: format!("sqlite://{}", dir.join("rekey.db").display()), drop_sql: None };
        }
        let (pool, _) = raw_pool(url).await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{label}: cannot create a scratch database: {e}"));
        let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
        let server = &base[..base.rfind('/').expect("a database in the URL")];
        let mut scratch = format!("{server}/{name}");
        if let Some(query) = query {
            scratch = format!("{scratch}?{query}");
        }
        let drop = match dialect {
            Dialect::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            _ => format!("DROP DATABASE IF EXISTS {name}"),
        };
        Self { url: scratch, drop_sql: Some((url.to_owned(), drop)) }
    }

    async fn drop_now(self) {
        if let Some((url, sql)) = &self.drop_sql {
            let (pool, _) = raw_pool(url).await;
            let _ = sqlx::query(sql).execute(&pool).await;
        }
    }
}

fn secrets(list: &[&str]) -> Vec<SecretString> {
    list.iter().map(|s| SecretString::from(*s)).collect()
}

async fn open(url: &str, current: &str, previous: &[&str]) -> SqlStore {
    SqlStore::connect_with_keys(url, Keyring::new(current, &secrets(previous)).unwrap(), SqlOptions::default())
        .await
        .unwrap_or_else(|e| panic!("cannot open the scratch database: {e}"))
}

/// Every stored (name, version) and the value written there.
type Written = BTreeMap<(SecretName, Version), Vec<u8>>;

/// Several tenants, namespaces and keys, several versions each.
async fn seed(store: &SqlStore, secrets_per_namespace: usize, versions: usize) -> Written {
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

async fn assert_all_readable(label: &str, store: &SqlStore, written: &Written) {
    for ((name, version), value) in written {
        let got = store
            .get(name, Some(version))
            .await
            .unwrap_or_else(|e| panic!("{label}: {name} version {version} unreadable: {e}"));
        assert_eq!(got.value.expose(), value.as_slice(), "{label}: {name} version {version}");
    }
}

/// The key id in the header of every stored ciphertext, as hex.
async fn stored_key_ids(url: &str) -> Vec<String> {
    let (pool, _) = raw_pool(url).await;
    let rows = sqlx::query("SELECT ciphertext FROM secretd_secret_versions").fetch_all(&pool).await.unwrap();
    rows.iter()
        .map(|row| {
            let sealed: Vec<u8> = row.try_get(0).unwrap();
            sealed[1..9].iter().map(|b| format!("{b:02x}")).collect()
        })
        .collect()
}

async fn reseal_recording(store: &SqlStore) -> (ResealReport, Vec<ResealProgress>) {
    let seen = Mutex::new(Vec::new());
    let report = store.reseal(&|p: &ResealProgress| seen.lock().unwrap().push(p.clone())).await.unwrap();
    (report, seen.into_inner().unwrap())
}

#[tokio::test]
async fn rotation_reseals_everything_and_the_old_secret_can_go() {
    for (label, server) in dialects() {
        let db = ScratchDatabase::new(label, &server).await;
        let url = db.url.clone();
        let under_a = open(&url, SECRET_A, &[]).await;
        let mut written = seed(&under_a, 3, 3).await;
        assert_eq!(written.len(), 36);
        drop(under_a);

        // B alone is refused by the start check, naming the field.
        let err = open(&url, SECRET_B, &[]).await.check_keys().await.unwrap_err();
        assert!(err.message().starts_with("secret: stored values are sealed under key id"), "{label}: {err}");

        // Current B, previous A: everything reads, new writes go under B.
        let rotating = open(&url, SECRET_B, &[SECRET_A]).await;
        rotating.check_keys().await.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_all_readable(label, &rotating, &written).await;
        let fresh = SecretName::parse("main", "team.a", "key/0").unwrap();
        let version =
            rotating.put(&fresh, &SecretValue::from_slice(b"written under B"), &Tags::new(), None).await.unwrap();
        written.insert((fresh.clone(), version.clone()), b"written under B".to_vec());
        let only_a = open(&url, SECRET_A, &[]).await;
        assert_eq!(only_a.get(&fresh, Some(&version)).await.unwrap_err().kind(), ErrorKind::Corrupt, "{label}");
        let b_id = rotating.current_key_id();
        assert_eq!(stored_key_ids(&url).await.iter().filter(|id| **id == b_id).count(), 1, "{label}");

        let (report, progress) = reseal_recording(&rotating).await;
        assert_eq!(report.key_id, b_id, "{label}");
        assert_eq!(
            (report.total, report.resealed, report.already_current, report.skipped, report.failed.len()),
            (37, 36, 1, 0, 0),
            "{label}: {report:?}"
        );
        assert!(report.is_complete());
        let last = progress.last().expect("progress was reported");
        assert_eq!((last.estimated_total, last.seen, last.resealed), (37, 37, 36), "{label}");
        assert!(stored_key_ids(&url).await.iter().all(|id| *id == b_id), "{label}: a row is not under B");

        // Idempotent: a second run finds nothing to do.
        let (again, _) = reseal_recording(&rotating).await;
        assert_eq!((again.total, again.resealed, again.already_current), (37, 0, 37), "{label}: {again:?}");

        // A dropped from the configuration: it starts, everything reads.
        let only_b = open(&url, SECRET_B, &[]).await;
        only_b.check_keys().await.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_all_readable(label, &only_b, &written).await;

        // Neither A nor B configured: reads fail, naming the key id.
        let only_c = open(&url, SECRET_C, &[]).await;
        let start = only_c.check_keys().await.unwrap_err();
        assert!(start.message().contains(&b_id) && start.message().contains("previous-secrets"), "{label}: {start}");
        let err = only_c.get(&fresh, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{label}");
        assert!(err.message().contains(&b_id) && err.message().contains("previous-secrets"), "{label}: {err}");
        drop((rotating, only_a, only_b, only_c));
        db.drop_now().await;
    }
}

#[tokio::test]
async fn a_value_no_configured_secret_opens_is_reported_and_the_run_goes_on() {
    for (label, server) in dialects() {
        let db = ScratchDatabase::new(label, &server).await;
        let url = db.url.clone();
        let written = seed(&open(&url, SECRET_A, &[]).await, 1, 1).await;
        let stranger = SecretName::parse("main", "team.x", "foreign").unwrap();
        open(&url, SECRET_C, &[])
            .await
            .put(&stranger, &SecretValue::from_slice(b"c"), &Tags::new(), None)
            .await
            .unwrap();

        let rotating = open(&url, SECRET_B, &[SECRET_A]).await;
        let (report, _) = reseal_recording(&rotating).await;
        assert_eq!((report.total, report.resealed, report.failed.len()), (5, 4, 1), "{label}: {report:?}");
        let failure = &report.failed[0];
        assert_eq!(failure.item, "secret main/team.x/foreign version 1", "{label}");
        assert!(failure.reason.contains("key id"), "{label}: {}", failure.reason);
        assert!(!report.is_complete());
        assert_all_readable(label, &open(&url, SECRET_B, &[]).await, &written).await;
        // The row it could not open is left exactly as it was.
        assert_eq!(open(&url, SECRET_C, &[]).await.get(&stranger, None).await.unwrap().value.expose(), b"c");
        drop(rotating);
        db.drop_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_fail_and_writers_lose_nothing_during_a_reseal() {
    for (label, server) in dialects() {
        let db = ScratchDatabase::new(label, &server).await;
        let url = db.url.clone();
        // More rows than one batch, so the run spans several transactions.
        let written = seed(&open(&url, SECRET_A, &[]).await, 80, 2).await;
        assert_eq!(written.len(), 640);
        let store = Arc::new(open(&url, SECRET_B, &[SECRET_A]).await);
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
                        let got =
                            store.get(name, Some(version)).await.map_err(|e| format!("{name} v{version}: {e}"))?;
                        if got.value.expose() != value.as_slice() {
                            return Err(format!("{name} v{version}: wrong value"));
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();

        // One writer adds versions, another deletes secrets: a re-seal must
        // neither lose the first nor bring back the second.
        let writer = {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut added = Written::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) || n < 20 {
                    let name = SecretName::parse("main", "team.a", &format!("key/{}", n % 80)).unwrap();
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
                    tokio::task::yield_now().await;
                }
            })
        };

        let report = store.reseal(&|_| {}).await.unwrap_or_else(|e| panic!("{label}: reseal failed: {e}"));
        deleter.await.unwrap();
        stop.store(true, Ordering::Relaxed);
        let added = writer.await.unwrap();
        for reader in readers {
            reader.await.unwrap().unwrap_or_else(|e| panic!("{label}: a read failed during the reseal: {e}"));
        }
        assert!(reads.load(Ordering::Relaxed) > 0, "{label}: the readers never ran");
        assert!(report.failed.is_empty(), "{label}: {report:?}");
        assert!(report.resealed > 0, "{label}: {report:?}");

        // Whatever the first run left (rows rewritten beside it) a second
        // run finishes; after it, the old secret is not needed.
        let again = store.reseal(&|_| {}).await.unwrap();
        assert_eq!(again.resealed, 0, "{label}: {again:?}");
        let only_b = open(&url, SECRET_B, &[]).await;
        for ((name, version), value) in written.iter().chain(added.iter()) {
            if deleted.contains(name) {
                continue;
            }
            let got =
                only_b.get(name, Some(version)).await.unwrap_or_else(|e| panic!("{label}: {name} v{version}: {e}"));
            assert_eq!(got.value.expose(), value.as_slice(), "{label}: {name} v{version}");
        }
        for name in &deleted {
            assert_eq!(
                only_b.get(name, None).await.unwrap_err().kind(),
                ErrorKind::NotFound,
                "{label}: {name} came back"
            );
        }
        drop((store, only_b));
        db.drop_now().await;
    }
}

#[test]
fn bad_previous_secrets_are_refused_naming_the_entry() {
    let err = SqlError::from(Keyring::new(SECRET_B, &secrets(&[SECRET_A, "short"])).unwrap_err());
    assert!(err.to_string().starts_with("previous-secrets[1]: must be at least 32 characters"), "{err}");
    let err = SqlError::from(Keyring::new(SECRET_B, &secrets(&[SECRET_B])).unwrap_err());
    assert_eq!(err.to_string(), "previous-secrets[0]: is the same secret as secret; remove it");
    let err = SqlError::from(Keyring::new("short", &[]).unwrap_err());
    assert!(err.to_string().starts_with("secret: must be at least 32 characters"), "{err}");
}
