//! Where the SQL tests find their databases.
//!
//! SQLite needs nothing: each test binary uses a fresh file. PostgreSQL and
//! MariaDB come from `SECRETD_TEST_POSTGRES_URL` and `SECRETD_TEST_MYSQL_URL`,
//! which `scripts/test.sh` sets to scratch databases it creates. Without
//! them a test fails under `CI=true`, and otherwise says loudly that it
//! skipped: it never passes silently without its server.

#![allow(dead_code)]

use std::{path::PathBuf, sync::OnceLock};

use secretd_sql::{SqlOptions, SqlStore};

pub const SECRET: &str = "sql-conformance-secret-0123456789abcdef";

pub fn sqlite_url() -> String {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir").keep());
    format!("sqlite://{}", dir.join("secrets.db").display())
}

/// The URL in `var`, or `None` (after a loud note) outside CI.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set: CI must run this test against its server (run scripts/test.sh)")
        }
        _ => {
            eprintln!("SKIPPED: {var} is not set; run scripts/test.sh to test against the real server");
            None
        }
    }
}

pub async fn connect(url: &str) -> SqlStore {
    SqlStore::connect(url, SECRET, SqlOptions { max_connections: 8 })
        .await
        .unwrap_or_else(|e| panic!("cannot open the test database: {e}"))
}
