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
            expires_in: Some(Duration::from_secs(3600)),
        };
        let token = store.create(&new).await.unwrap();
        assert!(matches!(store.create(&new).await, Err(StateError::AlreadyExists(_))), "{label}");

        let listed = store.list().await.unwrap();
        let info = listed.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{label}: not listed"));
        assert_eq!(info.hash, TokenHash::of(token.expose_secret()), "{label}: only the hash is kept");
        assert_eq!(info.permissions, [Permission::Read, Permission::List]);
        assert_eq!(info.namespaces, ["company.*"]);
        assert!(info.expires_at.unwrap() > SystemTime::now());
        assert!(info.revoked_at.is_none() && info.last_used_at.is_none());

        store.touch(&[(name.clone(), SystemTime::now())]).await.unwrap();
        let active = store.active().await.unwrap();
        assert!(active.iter().find(|t| t.name == name).unwrap().last_used_at.is_some(), "{label}");

        store.revoke(&name).await.unwrap();
        assert!(matches!(store.revoke(&name).await, Err(StateError::NotFound(_))), "{label}");
        assert!(!store.active().await.unwrap().iter().any(|t| t.name == name), "{label}: revoked but active");
        // A revoked name may be used again, with a new token.
        let again = store.create(&new).await.unwrap();
        assert_ne!(again.expose_secret(), token.expose_secret());
    }
}
