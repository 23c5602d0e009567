//! The conformance suite, unchanged, on mysql.

mod support;

use std::sync::Arc;

use secretd_core::SecretStore;

/// Each case gets its own pool: pools belong to the runtime that made them,
/// and every `#[tokio::test]` has its own runtime.
async fn make_store() -> Option<Arc<dyn SecretStore>> {
    let url = support::server_url("SECRETD_TEST_MYSQL_URL")?;
    Some(Arc::new(support::connect(&url).await))
}

secretd_core::conformance_suite!(make_store());
