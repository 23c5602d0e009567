//! The conformance suite on moto's Secrets Manager with `force-delete`:
//! deletes take effect at once, and a put after one creates the secret anew.

mod support;

use std::sync::Arc;

use secretd_aws::DeletePolicy;
use secretd_core::SecretStore;

async fn make_store() -> Option<Arc<dyn SecretStore>> {
    let endpoint = support::endpoint()?;
    Some(Arc::new(support::connect(support::options(&endpoint, DeletePolicy::Force)).await))
}

secretd_core::conformance_suite!(make_store());
