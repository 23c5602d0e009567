//! Where the Elasticsearch tests find their server.
//!
//! The server comes from `SECRETD_TEST_ELASTICSEARCH_URL`, which
//! `scripts/servers/osmem.sh` prints for `scripts/test.sh` to export.
//! Without it a test fails under `CI=true` and otherwise says loudly that
//! it skipped: it never passes silently without its server. Each test
//! binary uses an index of its own, so runs sharing a server never meet.

#![allow(dead_code)]

use std::sync::OnceLock;

use secretd_core::SecretName;
use secretd_elasticsearch::{ElasticsearchOptions, ElasticsearchStore};

pub const VAR: &str = "SECRETD_TEST_ELASTICSEARCH_URL";
pub const SECRET: &str = "es-conformance-secret-0123456789abcdef";

/// The server's URL, or `None` (after a loud note) outside CI.
pub fn server_url() -> Option<String> {
    secretd_core::conformance::server_from_env(VAR)
}

/// This test binary's scratch index.
pub fn index() -> &'static str {
    static INDEX: OnceLock<String> = OnceLock::new();
    INDEX.get_or_init(|| format!("secretd-test-{:016x}", rand::random::<u64>()))
}

pub fn options(url: &str) -> ElasticsearchOptions {
    ElasticsearchOptions::new([url], SECRET).with_index(index())
}

pub async fn connect(url: &str) -> ElasticsearchStore {
    ElasticsearchStore::connect(options(url)).await.unwrap_or_else(|e| panic!("cannot open the test index: {e}"))
}

/// A name in a namespace of its own.
pub fn unique_name(case: &str) -> SecretName {
    SecretName::parse("atrest", &format!("{case}.r{:016x}", rand::random::<u64>()), "db/password").unwrap()
}

/// A plain client for looking at and tampering with the index directly.
pub fn http() -> reqwest::Client {
    // reqwest is built without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
