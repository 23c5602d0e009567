//! How the store reads database failures and odd requests: the races a put
//! retries must be recognised on every dialect (the concurrency tests only
//! show them when the scheduler happens to produce them), and ids the store
//! never handed out must not resolve.

mod support;

use secretd_core::{ErrorKind, PageRequest, SecretName, SecretStore, SecretValue, Tags, Version};
use secretd_sql::{is_write_conflict, Dialect};
use sqlx::AnyPool;
use support::{dialects, raw_pool, unique_name};

/// Makes two transactions collide the way concurrent puts can, and returns
/// the loser's error.
async fn provoke_conflict(pool: &AnyPool, dialect: Dialect, a: &SecretName, b: &SecretName) -> sqlx::Error {
    let touch = dialect.sql(
        "UPDATE secretd_secret_versions SET description = ? WHERE tenant = ? AND namespace = ? AND secret_key = ?",
    );
    let update = |name: &SecretName, text: &'static str| {
        let parts = [name.tenant.as_str(), name.namespace.as_str(), name.key.as_str()].map(str::to_owned);
        parts.into_iter().fold(sqlx::query(&touch).bind(text), |query, part| query.bind(part))
    };
    if dialect == Dialect::Sqlite {
        // A deferred transaction reads, another connection commits a write,
        // then the first tries to write on its stale snapshot: BUSY_SNAPSHOT,
        // which no busy timeout waits out.
        let mut stale = pool.begin().await.unwrap();
        sqlx::query(&dialect.sql("SELECT COUNT(*) FROM secretd_secret_versions WHERE namespace = ?"))
            .bind(a.namespace.as_str())
            .fetch_one(&mut *stale)
            .await
            .unwrap();
        update(a, "committed first").execute(pool).await.unwrap();
        return update(a, "stale").execute(&mut *stale).await.unwrap_err();
    }
    // Two transactions lock two rows, then each asks for the other's: the
    // server breaks the deadlock by failing one of them.
    let mut first = pool.begin().await.unwrap();
    let mut second = pool.begin().await.unwrap();
    update(a, "first").execute(&mut *first).await.unwrap();
    update(b, "second").execute(&mut *second).await.unwrap();
    let crossed = |mut tx: sqlx::Transaction<'static, sqlx::Any>, name: &SecretName| {
        let query = update(name, "crossed");
        async move {
            let result = query.execute(&mut *tx).await;
            // The loser must let go of its locks for the winner to finish.
            match result {
                Ok(_) => tx.commit().await.map(|_| None),
                Err(e) => {
                    let _ = tx.rollback().await;
                    Ok(Some(e))
                }
            }
        }
    };
    let (x, y) = tokio::join!(crossed(first, b), crossed(second, a));
    let mut losers: Vec<sqlx::Error> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
    assert_eq!(losers.len(), 1, "exactly one transaction should lose the deadlock");
    losers.remove(0)
}

#[tokio::test]
async fn deadlocks_and_busy_databases_are_write_conflicts() {
    for (label, url) in dialects() {
        let store = support::connect(&url).await;
        let a = unique_name("conflict");
        let b = SecretName::parse(a.tenant.as_str(), a.namespace.as_str(), "other").unwrap();
        for name in [&a, &b] {
            store.put(name, &SecretValue::from_slice(b"v"), &Tags::new(), None).await.unwrap();
        }
        let (pool, dialect) = raw_pool(&url).await;
        let error = provoke_conflict(&pool, dialect, &a, &b).await;
        assert!(is_write_conflict(&error), "{label}: {error} is not recognised as a write conflict");
        // The classification reads driver-specific codes through `Any`;
        // check that the concrete errors really come through it.
        let sqlx::Error::Database(db) = &error else { panic!("{label}: {error:?}") };
        match dialect {
            Dialect::MySql => {
                let mysql = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().expect("a MySQL error");
                assert_eq!(mysql.number(), 1213, "{label}: {error}");
            }
            Dialect::Sqlite => {
                assert!(db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some());
                assert_eq!(db.code().as_deref(), Some("517"), "{label}: expected SQLITE_BUSY_SNAPSHOT");
            }
            Dialect::Postgres => assert_eq!(db.code().as_deref(), Some("40P01"), "{label}: {error}"),
        }
    }
}

#[tokio::test]
async fn constraint_errors_other_than_duplicates_are_not_conflicts() {
    for (label, url) in dialects() {
        let _store = support::connect(&url).await;
        let (pool, dialect) = raw_pool(&url).await;
        // A missing NOT NULL column: a bug to report, not a race to retry.
        let error = sqlx::query(&dialect.sql(
            "INSERT INTO secretd_secret_versions (tenant, namespace, secret_key, version, tags, created_at) \
             VALUES (?, ?, ?, 1, '{}', 0)",
        ))
        .bind("atrest")
        .bind("notnull.check")
        .bind("k")
        .execute(&pool)
        .await
        .unwrap_err();
        assert!(!is_write_conflict(&error), "{label}: {error}");
    }
}

#[tokio::test]
async fn only_canonical_versions_resolve() {
    for (label, url) in dialects() {
        let store = support::connect(&url).await;
        let name = unique_name("versions");
        let v1 = store.put(&name, &SecretValue::from_slice(b"one"), &Tags::new(), None).await.unwrap();
        assert_eq!(v1.as_str(), "1", "{label}");
        assert_eq!(store.get(&name, Some(&v1)).await.unwrap().value.expose(), b"one", "{label}");
        for alias in ["01", "+1", "0", "-1", "1.0", " 1", "", "x", "99999999999999999999"] {
            let err = store.get(&name, Some(&Version(alias.to_owned()))).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound, "{label}: version {alias:?}");
        }
    }
}

#[tokio::test]
async fn bad_page_tokens_are_refused() {
    let store = support::connect(&support::sqlite_url()).await;
    let name = unique_name("tokens");
    for token in ["not base64!", "Lw", "", "_-_-"] {
        let page = PageRequest { size: 10, token: Some(token.to_owned()) };
        let err = store.list(&name.tenant, &name.namespace, &Tags::new(), &page).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "token {token:?}");
        assert_eq!(err.message(), "the page token is not one this store issued");
    }
}
