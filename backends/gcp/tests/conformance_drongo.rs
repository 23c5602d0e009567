//! The conformance suite on drongo's Secret Manager, with anonymous
//! credentials and the endpoint override, in a project of its own.

mod support;

use std::sync::Arc;

use secretd_core::SecretStore;

async fn make_store() -> Option<Arc<dyn SecretStore>> {
    let endpoint = support::endpoint()?;
    Some(Arc::new(support::connect(support::options(&endpoint)).await))
}

secretd_core::conformance_suite!(make_store());
