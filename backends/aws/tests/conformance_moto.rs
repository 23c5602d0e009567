//! The conformance suite on moto's Secrets Manager, with the default
//! delete policy: a 30-day recovery window, so every delete is a scheduled
//! deletion and every put after it a restore.

mod support;

use std::sync::Arc;

use secretd_aws::DeletePolicy;
use secretd_core::SecretStore;

async fn make_store() -> Option<Arc<dyn SecretStore>> {
    let endpoint = support::endpoint()?;
    Some(Arc::new(support::connect(support::options(&endpoint, DeletePolicy::RecoveryWindow(30))).await))
}

secretd_core::conformance_suite!(make_store());
