//! The token state store on every database it supports: SQLite, and the
//! PostgreSQL and MariaDB scratch databases `scripts/test.sh` creates (a
//! missing one fails under CI=true, and is skipped loudly otherwise).

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use secretd::{
    auth::{
        state::{NewToken, StateError, TokenStore},
        token::TokenHash,
    },
    config::Permission,
};

fn urls() -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut urls = vec![("sqlite".to_owned(), format!("sqlite://{}", dir.join("state.db").display()))];
    for var in ["SECRETD_TEST_POSTGRES_URL", "SECRETD_TEST_MYSQL_URL"] {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => urls.push((var.to_owned(), url)),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{var} is not set: run scripts/test.sh"),
            _ => eprintln!("SKIPPED the {var} part: run scripts/test.sh to test against the real server"),
        }
    }
    urls
}

#[tokio::test]
async fn create_list_revoke_touch_on_every_database() {
    for (label, url) in urls() {
        let store = TokenStore::open(&SecretString::from(url)).await.unwrap_or_else(|e| panic!("{label}: {e}"));
        let name = format!("t-{:08x}", rand::random::<u32>());
        let new = NewToken {
            name: name.clone(),
            service: "WORKER".into(),
            permissions: vec![Permission::Read, Permission::List],
            namespaces: vec!["company.*".into()],
            tenants: vec!["acme".into(), "acme-*".into()],
            expires_at: Some(SystemTime::now() + Duration::from_secs(3600)),
        };
        let token = store.create(&new).await.unwrap();
        assert!(matches!(store.create(&new).await, Err(StateError::AlreadyExists(_))), "{label}");

        let listed = store.list().await.unwrap();
        let info = listed.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{label}: not listed"));
        assert_eq!(info.hash, TokenHash::of(token.expose_secret()), "{label}: only the hash is kept");
        assert_eq!(info.permissions, [Permission::Read, Permission::List]);
        assert_eq!(info.namespaces, ["company.*"]);
        assert_eq!(info.tenants, ["acme", "acme-*"], "{label}");
        let expires_at = info.expires_at.unwrap();
        let wanted = new.expires_at.unwrap();
        assert!(expires_at <= wanted && wanted.duration_since(expires_at).unwrap() < Duration::from_millis(1));
        assert!(info.revoked_at.is_none() && info.last_used_at.is_none());

        store.touch(&[(name.clone(), SystemTime::now())]).await.unwrap();
        let active = store.active().await.unwrap();
        assert!(active.iter().find(|t| t.name == name).unwrap().last_used_at.is_some(), "{label}");

        let found = store.find_active(&name).await.unwrap().unwrap_or_else(|| panic!("{label}: not found"));
        assert_eq!(found.hash, info.hash, "{label}");
        assert!(matches!(store.revoke_exact(&name, &TokenHash::of("another")).await, Err(StateError::NotFound(_))));
        store.revoke_exact(&name, &found.hash).await.unwrap();
        assert!(matches!(store.revoke(&name).await, Err(StateError::NotFound(_))), "{label}");
        assert!(store.find_active(&name).await.unwrap().is_none(), "{label}");
        assert!(!store.active().await.unwrap().iter().any(|t| t.name == name), "{label}: revoked but active");
        // A revoked name may be used again, with a new token.
        let again = store.create(&new).await.unwrap();
        assert_ne!(again.expose_secret(), token.expose_secret());
    }
}

/// Rows written without tenants (before the column existed, or by a replica
/// not yet upgraded) reach `main` only; rows whose lists do not parse are
/// left out rather than read as unlimited.
#[tokio::test]
async fn rows_without_tenants_reach_main_and_malformed_rows_are_ignored() {
    for (label, url) in urls() {
        let store = TokenStore::open(&SecretString::from(url.clone())).await.unwrap_or_else(|e| panic!("{label}: {e}"));
        let (pool, _) = secretd_sql::open_pool(&url, &secretd_sql::SqlOptions { max_connections: 1 }, |_| {
            let mut none = sqlx::migrate::Migrator::DEFAULT;
            none.set_ignore_missing(true);
            none
        })
        .await
        .unwrap();
        let suffix = format!("{:08x}", rand::random::<u32>());
        let insert = |name: &str, namespaces: &str, hash: String| {
            format!(
                "INSERT INTO secretd_tokens (name, service, permissions, namespaces, token_hash, created_at) \
                 VALUES ('{name}-{suffix}', 'WORKER', 'read', '{namespaces}', '{hash}', 0)"
            )
        };
        let old = insert("old", "[]", TokenHash::of(&format!("old-{suffix}")).to_hex());
        let broken = insert("broken", "not json", TokenHash::of(&format!("broken-{suffix}")).to_hex());
        for sql in [old, broken] {
            sqlx::query(&sql).execute(&pool).await.unwrap_or_else(|e| panic!("{label}: {e}"));
        }
        let active = store.active().await.unwrap();
        let old = active.iter().find(|t| t.name == format!("old-{suffix}")).unwrap_or_else(|| panic!("{label}"));
        assert_eq!(old.tenants, ["main"], "{label}");
        assert!(!active.iter().any(|t| t.name == format!("broken-{suffix}")), "{label}: a malformed row was read");
    }
}
