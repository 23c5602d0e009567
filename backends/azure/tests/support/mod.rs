//! The Key Vault the tests talk to: the in-process test server implementing
//! Key Vault's REST API (crate `secretd-azure-test-server`, not Azure), one per
//! test, so every test starts from an empty vault and no server needs to be
//! installed or started outside the test.

#![allow(dead_code)]

use std::time::Duration;

use secretd_azure::{AzureOptions, AzureStore};
use secretd_azure_test_server::TestServer;
use secretd_core::RetryPolicy;

pub fn server() -> TestServer {
    TestServer::start().expect("the Key Vault test server starts")
}

/// Options for `server` with quick retries, so tests of failures stay fast.
pub fn fast(mut options: AzureOptions) -> AzureOptions {
    options.retry =
        RetryPolicy { attempts: 3, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20) };
    options.timeout = Duration::from_secs(10);
    options
}

pub async fn connect(options: AzureOptions) -> AzureStore {
    AzureStore::connect(options).await.unwrap_or_else(|e| panic!("cannot build the Key Vault store: {e}"))
}
