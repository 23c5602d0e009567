//! The broker's own state store: service-account tokens in a SQL database
//! (`state.url`; SQLite beside the dev data by default, PostgreSQL or
//! MySQL/MariaDB when replicas share it), independent of the secret backend.
//!
//! Only token hashes are stored. Every replica re-reads the active tokens
//! every `state.refresh-interval` (500 ms by default), so a revocation made
//! through any replica is refused by all of them within a second, and the
//! request path never waits on this database.
//!
//! A row that does not parse (a malformed hash, namespace or tenant list)
//! is left out with an error in the log: read as "no limit" it would widen
//! the token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use secretd_sql::{open_pool, Dialect, SqlError, SqlOptions};
use sqlx::{any::AnyRow, AnyPool, Row};

use super::token::{self, TokenHash};
use crate::config::Permission;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("a token named {0:?} already exists; revoke it first")]
    AlreadyExists(String),
    #[error("no token named {0:?}")]
    NotFound(String),
    #[error("the state store is unavailable")]
    Database(#[from] sqlx::Error),
}

/// A token as listed: everything but the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub service: String,
    pub permissions: Vec<Permission>,
    pub namespaces: Vec<String>,
    /// Tenant globs; rows from before tenants existed hold `main`.
    pub tenants: Vec<String>,
    pub hash: TokenHash,
    pub created_at: SystemTime,
    pub expires_at: Option<SystemTime>,
    pub last_used_at: Option<SystemTime>,
    pub revoked_at: Option<SystemTime>,
}

/// What a new token is for.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub service: String,
    pub permissions: Vec<Permission>,
    pub namespaces: Vec<String>,
    pub tenants: Vec<String>,
    /// Computed once by the caller, so what it reports is what is stored.
    pub expires_at: Option<SystemTime>,
}

pub struct TokenStore {
    pool: AnyPool,
    dialect: Dialect,
}

fn migrations(dialect: Dialect) -> sqlx::migrate::Migrator {
    let mut migrator = match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/state/sqlite"),
        Dialect::Postgres => sqlx::migrate!("./migrations/state/postgres"),
        Dialect::MySql => sqlx::migrate!("./migrations/state/mysql"),
    };
    migrator.set_ignore_missing(true);
    migrator
}

const COLUMNS: &str =
    "name, service, permissions, namespaces, token_hash, created_at, expires_at, last_used_at, revoked_at, tenants";

impl TokenStore {
    pub async fn open(url: &SecretString) -> Result<Self, SqlError> {
        let (pool, dialect) = open_pool(url.expose_secret(), &SqlOptions { max_connections: 4 }, migrations).await?;
        Ok(Self { pool, dialect })
    }

    /// Creates a token and returns it: the only time it exists outside the
    /// caller's hands. A revoked token's name may be reused.
    pub async fn create(&self, new: &NewToken) -> Result<SecretString, StateError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_create(new).await {
                // Lost a race with another writer (SQLite busy, deadlock): again.
                Err(StateError::Database(e)) if attempt < 20 && secretd_sql::is_write_conflict(&e) => {
                    tokio::time::sleep(Duration::from_millis(rand::random_range(5..=50))).await;
                }
                other => return other,
            }
        }
    }

    async fn try_create(&self, new: &NewToken) -> Result<SecretString, StateError> {
        let token = token::generate();
        let hash = TokenHash::of(token.expose_secret());
        let now = SystemTime::now();
        let mut tx = self.pool.begin().await?;
        let existing = sqlx::query(&self.dialect.sql("SELECT revoked_at FROM secretd_tokens WHERE name = ?"))
            .bind(&new.name)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            if row.try_get::<Option<i64>, _>(0)?.is_none() {
                return Err(StateError::AlreadyExists(new.name.clone()));
            }
            sqlx::query(&self.dialect.sql("DELETE FROM secretd_tokens WHERE name = ?"))
                .bind(&new.name)
                .execute(&mut *tx)
                .await?;
        }
        let permissions: Vec<&str> = new.permissions.iter().map(|p| p.as_str()).collect();
        let inserted = sqlx::query(
            &self
                .dialect
                .sql(&format!("INSERT INTO secretd_tokens ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)")),
        )
        .bind(&new.name)
        .bind(&new.service)
        .bind(permissions.join(","))
        .bind(json_list(&new.namespaces))
        .bind(hash.to_hex())
        .bind(millis(now))
        .bind(new.expires_at.map(millis))
        .bind(json_list(&new.tenants))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StateError::AlreadyExists(new.name.clone()))
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(token)
    }

    pub async fn list(&self) -> Result<Vec<TokenInfo>, StateError> {
        self.select(&format!("SELECT {COLUMNS} FROM secretd_tokens ORDER BY name")).await
    }

    /// The tokens that may still authenticate (not revoked; expiry is
    /// checked per request, so an expired token fails the moment it expires).
    pub async fn active(&self) -> Result<Vec<TokenInfo>, StateError> {
        self.select(&format!("SELECT {COLUMNS} FROM secretd_tokens WHERE revoked_at IS NULL")).await
    }

    /// The token named `name` that is not revoked, if any.
    pub async fn find_active(&self, name: &str) -> Result<Option<TokenInfo>, StateError> {
        let query = format!("SELECT {COLUMNS} FROM secretd_tokens WHERE name = ? AND revoked_at IS NULL");
        let rows = sqlx::query(&self.dialect.sql(&query)).bind(name).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(parse_row).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().next())
    }

    pub async fn revoke(&self, name: &str) -> Result<(), StateError> {
        let done = sqlx::query(
            &self.dialect.sql("UPDATE secretd_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL"),
        )
        .bind(millis(SystemTime::now()))
        .bind(name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StateError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Revokes `name` only while it is still the token `hash` names: the
    /// one whose reach the caller checked, not one created under the same
    /// name in between.
    pub async fn revoke_exact(&self, name: &str, hash: &TokenHash) -> Result<(), StateError> {
        let done =
            sqlx::query(&self.dialect.sql(
                "UPDATE secretd_tokens SET revoked_at = ? WHERE name = ? AND token_hash = ? AND revoked_at IS NULL",
            ))
            .bind(millis(SystemTime::now()))
            .bind(name)
            .bind(hash.to_hex())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StateError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Records when tokens were last used (batched by the caller).
    pub async fn touch(&self, used: &[(String, SystemTime)]) -> Result<(), StateError> {
        let query = self.dialect.sql("UPDATE secretd_tokens SET last_used_at = ? WHERE name = ?");
        for (name, at) in used {
            sqlx::query(&query).bind(millis(*at)).bind(name).execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn select(&self, query: &str) -> Result<Vec<TokenInfo>, StateError> {
        let rows = sqlx::query(query).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(parse_row).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect())
    }
}

/// One row, or `None` (logged) when its contents do not parse; a database
/// error is the caller's, as for any query.
fn parse_row(row: &AnyRow) -> Result<Option<TokenInfo>, sqlx::Error> {
    Ok(match try_parse_row(row)? {
        Ok(info) => Some(info),
        Err((name, what)) => {
            tracing::error!(name = %name, "a token row has a malformed {what}; ignoring it");
            None
        }
    })
}

type Parsed = Result<TokenInfo, (String, &'static str)>;

fn try_parse_row(row: &AnyRow) -> Result<Parsed, sqlx::Error> {
    let text = |i: usize| secretd_sql::text(row, i);
    let name = text(0)?;
    let Some(hash) = TokenHash::parse(&text(4)?) else { return Ok(Err((name, "hash"))) };
    let Ok(namespaces) = serde_json::from_str::<Vec<String>>(&text(3)?) else {
        return Ok(Err((name, "namespace list")));
    };
    let Ok(tenants) = serde_json::from_str::<Vec<String>>(&text(9)?) else {
        return Ok(Err((name, "tenant list")));
    };
    let at = |i: usize| -> Result<Option<SystemTime>, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(i)?.map(from_millis))
    };
    Ok(Ok(TokenInfo {
        name,
        service: text(1)?,
        permissions: text(2)?.split(',').filter_map(Permission::parse).collect(),
        namespaces,
        tenants,
        hash,
        created_at: at(5)?.unwrap_or(UNIX_EPOCH),
        expires_at: at(6)?,
        last_used_at: at(7)?,
        revoked_at: at(8)?,
    }))
}

fn json_list(items: &[String]) -> String {
    serde_json::Value::from(items).to_string()
}

/// Milliseconds since the epoch, saturating: the callers bound their times
/// (token lifetimes are capped), so saturation is a backstop, never a wrap
/// into the past.
fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}
