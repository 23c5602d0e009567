//! Where the SQL tests find their databases.
//!
//! SQLite needs nothing: each test binary uses a fresh file. PostgreSQL and
//! MariaDB come from `SECRETD_TEST_POSTGRES_URL` and `SECRETD_TEST_MYSQL_URL`,
//! which `scripts/test.sh` sets to scratch databases it creates. Without
//! them a test fails under `CI=true`, and otherwise says loudly that it
//! skipped: it never passes silently without its server.

#![allow(dead_code)]

use std::{path::PathBuf, sync::OnceLock};

use secretd_core::SecretName;
use secretd_sql::{Dialect, SqlOptions, SqlStore};
use sqlx::{any::AnyPoolOptions, AnyPool};

pub const SECRET: &str = "sql-conformance-secret-0123456789abcdef";

pub fn sqlite_url() -> String {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir").keep());
    format!("sqlite://{}", dir.join("secrets.db").display())
}

/// The URL in `var`, or `None` (after a loud note) outside CI.
pub fn server_url(var: &str) -> Option<String> {
    secretd_core::conformance::server_from_env(var)
}

pub async fn connect(url: &str) -> SqlStore {
    SqlStore::connect(url, SECRET, SqlOptions { max_connections: 8 })
        .await
        .unwrap_or_else(|e| panic!("cannot open the test database: {e}"))
}

/// Every database this run can reach: SQLite always, the servers when
/// their variables are set.
pub fn dialects() -> Vec<(&'static str, String)> {
    let mut urls = vec![("sqlite", sqlite_url())];
    for (label, var) in [("postgres", "SECRETD_TEST_POSTGRES_URL"), ("mysql", "SECRETD_TEST_MYSQL_URL")] {
        if let Some(url) = server_url(var) {
            urls.push((label, url));
        }
    }
    urls
}

/// A name in a namespace of its own, so test runs sharing a database never
/// meet.
pub fn unique_name(case: &str) -> SecretName {
    SecretName::parse("atrest", &format!("{case}.r{:016x}", rand::random::<u64>()), "db/password").unwrap()
}

/// A pool of two plain connections beside the store, to look at and tamper
/// with the rows, and the dialect for writing its queries.
pub async fn raw_pool(url: &str) -> (AnyPool, Dialect) {
    sqlx::any::install_default_drivers();
    let (dialect, url) = Dialect::of_url(url).expect("a supported scheme");
    (AnyPoolOptions::new().max_connections(2).connect(&url).await.unwrap(), dialect)
}
