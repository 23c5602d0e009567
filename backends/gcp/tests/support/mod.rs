//! Where the Google Secret Manager tests find their server.
//!
//! `scripts/test.sh` starts drongo (`scripts/servers/drongo.sh`), which
//! speaks Secret Manager's REST API, and sets `SECRETD_TEST_GCP_ENDPOINT`.
//! Without it a test fails under `CI=true` and otherwise says loudly that
//! it skipped. drongo keeps one store per project and takes any project
//! id, so every run writes into a project of its own.

#![allow(dead_code)]

use std::{io::Write, sync::Mutex};

use secretd_gcp::{GcpCredentials, GcpOptions, GcpStore};

pub fn endpoint() -> Option<String> {
    match std::env::var("SECRETD_TEST_GCP_ENDPOINT") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "SECRETD_TEST_GCP_ENDPOINT is not set: CI must run the GCP tests against drongo (run scripts/test.sh)"
            )
        }
        _ => {
            static WARNED: Mutex<bool> = Mutex::new(false);
            let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
            if !*warned {
                *warned = true;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: SECRETD_TEST_GCP_ENDPOINT is not set; the Google Secret Manager tests did not run \
                     against a server. Run scripts/test.sh to test them. ***\n"
                );
            }
            None
        }
    }
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
