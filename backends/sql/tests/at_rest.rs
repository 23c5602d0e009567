//! What the database holds: ciphertext bound to its name, never plaintext;
//! and what concurrent writers get: every version exactly once. Run on
//! every dialect the machine has.

mod support;

use std::sync::Arc;

use secretd_core::{ErrorKind, SecretName, SecretStore, SecretValue, Tags};
use secretd_sql::{SqlOptions, SqlStore};
use sqlx::Row;
use support::{dialects, raw_pool, unique_name};

const MARKER: &[u8] = b"PLAINTEXT-MARKER-c0ffee-never-on-disk";

#[tokio::test]
async fn rows_hold_ciphertext_bound_to_the_name() {
    for (label, url) in dialects() {
        let store = support::connect(&url).await;
        let name = unique_name("atrest");
        store.put(&name, &SecretValue::from_slice(MARKER), &Tags::new(), Some("a description")).await.unwrap();
        let (pool, dialect) = raw_pool(&url).await;
        let row = sqlx::query(&dialect.sql(
            "SELECT ciphertext FROM secretd_secret_versions WHERE tenant = ? AND namespace = ? AND secret_key = ?",
        ))
        .bind(name.tenant.as_str())
        .bind(name.namespace.as_str())
        .bind(name.key.as_str())
        .fetch_one(&pool)
        .await
        .unwrap();
        let stored: Vec<u8> = row.try_get(0).unwrap();
        assert_eq!(stored[0], 1, "{label}: not in the envelope format");
        assert!(!stored.windows(MARKER.len()).any(|w| w == MARKER), "{label}: plaintext in the row");

        // The same ciphertext under another name must not decrypt.
        let thief = SecretName::parse("atrest", name.namespace.as_str(), "stolen").unwrap();
        sqlx::query(&dialect.sql(
            "INSERT INTO secretd_secret_versions (tenant, namespace, secret_key, version, ciphertext, tags, created_at) \
             VALUES (?, ?, ?, 1, ?, '{}', 0)",
        ))
        .bind(thief.tenant.as_str())
        .bind(thief.namespace.as_str())
        .bind(thief.key.as_str())
        .bind(stored)
        .execute(&pool)
        .await
        .unwrap();
        let err = store.get(&thief, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{label}: a copied row decrypted");
        assert!(!err.message().as_bytes().windows(MARKER.len()).any(|w| w == MARKER));

        // Another secret cannot read it, and says which keys differ.
        let other =
            SqlStore::connect(&url, "a-different-secret-of-32-characters!!", SqlOptions::default()).await.unwrap();
        let err = other.get(&name, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{label}");
        assert!(err.message().contains("key id"), "{label}: {}", err.message());
    }
}

#[tokio::test]
async fn concurrent_puts_number_versions_exactly_once() {
    const WRITERS: i64 = 50;
    for (label, url) in dialects() {
        let store: Arc<dyn SecretStore> = Arc::new(support::connect(&url).await);
        let name = unique_name("contended");
        let writes = (0..WRITERS).map(|i| {
            let (store, name) = (store.clone(), name.clone());
            tokio::spawn(async move {
                store.put(&name, &SecretValue::new(format!("w{i}").into_bytes()), &Tags::new(), None).await
            })
        });
        let mut versions: Vec<i64> = Vec::new();
        for w in futures::future::join_all(writes).await {
            let version = w.unwrap().unwrap_or_else(|e| panic!("{label}: concurrent put failed: {e}"));
            versions.push(version.as_str().parse().unwrap());
        }
        versions.sort();
        assert_eq!(versions, (1..=WRITERS).collect::<Vec<_>>(), "{label}");
    }
}

#[tokio::test]
async fn short_secret_and_bad_scheme_are_refused_clearly() {
    let err = SqlStore::connect(&support::sqlite_url(), "short", SqlOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("at least 32 characters"), "{err}");
    let err = SqlStore::connect("oracle://x", support::SECRET, SqlOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("unsupported scheme"), "{err}");
}

#[tokio::test]
async fn reconnecting_reuses_the_schema_and_data() {
    for (label, url) in dialects() {
        let name = unique_name("reconnect");
        {
            let store = support::connect(&url).await;
            store.put(&name, &SecretValue::from_slice(b"kept"), &Tags::new(), None).await.unwrap();
        }
        let again = support::connect(&url).await;
        assert_eq!(again.get(&name, None).await.unwrap().value.expose(), b"kept", "{label}");
    }
}

#[tokio::test]
async fn unreachable_server_is_a_clear_connect_error() {
    let err = SqlStore::connect("postgres://nobody@127.0.0.1:1/none", support::SECRET, SqlOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("url: cannot connect to the PostgreSQL database"), "{err}");
}
