//! Where the Google Secret Manager tests find their server.
//!
//! `scripts/test.sh` starts drongo (`scripts/servers/drongo.sh`), which
//! speaks Secret Manager's REST API, and sets `SECRETD_TEST_GCP_ENDPOINT`.
//! Without it a test fails under `CI=true` and otherwise says loudly that
//! it skipped. drongo keeps one store per project and takes any project
//! id, so every run writes into a project of its own.

#![allow(dead_code)]

use secretd_gcp::{GcpCredentials, GcpOptions, GcpStore};

pub fn endpoint() -> Option<String> {
    secretd_core::conformance::server_from_env("SECRETD_TEST_GCP_ENDPOINT")
}

/// One project per test run (per test binary), so runs never meet.
pub fn run_project() -> String {
    static PROJECT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PROJECT.get_or_init(|| format!("secretd-test-{:012x}", rand::random::<u64>() >> 16)).clone()
}

/// drongo ignores authentication: anonymous credentials, as for any
/// emulator.
pub fn options(endpoint: &str) -> GcpOptions {
    let mut options = GcpOptions::new(run_project(), GcpCredentials::Anonymous);
    options.endpoint = Some(endpoint.to_owned());
    options
}

pub async fn connect(options: GcpOptions) -> GcpStore {
    GcpStore::connect(options).await.unwrap_or_else(|e| panic!("cannot build the Secret Manager client: {e}"))
}
