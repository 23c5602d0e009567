//! The conformance suite, unchanged, on Elasticsearch / OpenSearch (the
//! server at `SECRETD_TEST_ELASTICSEARCH_URL`, osmem-server in
//! `scripts/test.sh`).

mod support;

use std::sync::Arc;

use secretd_core::SecretStore;

/// Each case gets its own store: HTTP connection pools belong to the
/// runtime that made them, and every `#[tokio::test]` has its own runtime.
/// All cases share this binary's scratch index; the first to connect
/// creates it and the others find it there.
async fn make_store() -> Option<Arc<dyn SecretStore>> {
    let url = support::server_url()?;
    Some(Arc::new(support::connect(&url).await))
}

secretd_core::conformance_suite!(make_store());
