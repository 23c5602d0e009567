//! Where the AWS tests find their server.
//!
//! `scripts/test.sh` starts moto's server, which speaks the Secrets Manager
//! API, and sets `SECRETD_TEST_AWS_ENDPOINT`. Without it a test fails under
//! `CI=true` and otherwise says loudly that it skipped. Every run writes
//! under its own name prefix.

#![allow(dead_code)]

use secrecy::SecretString;
use secretd_aws::{AwsOptions, AwsStore, DeletePolicy, NamePrefix, StaticCredentials};

pub fn endpoint() -> Option<String> {
    secretd_core::conformance::server_from_env("SECRETD_TEST_AWS_ENDPOINT")
}

/// moto takes any credentials, but they must be there: requests are signed.
pub fn credentials() -> StaticCredentials {
    StaticCredentials {
        access_key_id: SecretString::from("AKIDTESTSECRETD").into(),
        secret_access_key: SecretString::from("test-secret-access-key").into(),
        session_token: None,
    }
}

pub fn run_prefix() -> NamePrefix {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NamePrefix::new(PREFIX.get_or_init(|| format!("secretd-test-{:016x}/", rand::random::<u64>()))).unwrap()
}

pub fn options(endpoint: &str, delete: DeletePolicy) -> AwsOptions {
    let mut options = AwsOptions::new("us-east-1");
    options.endpoint = Some(endpoint.to_owned());
    options.credentials = Some(credentials());
    options.name_prefix = run_prefix();
    options.delete = delete;
    options
}

pub async fn connect(options: AwsOptions) -> AwsStore {
    AwsStore::connect(options).await.unwrap_or_else(|e| panic!("cannot build the AWS client: {e}"))
}
