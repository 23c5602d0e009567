//! The conformance suite on OpenBao, logged in with Kubernetes auth: a
//! service account token file and a role, against a `jwt` mount standing in
//! for the `kubernetes` one (see `kubernetes_auth.rs`).

mod support;

use std::sync::Arc;

use secretd_core::SecretStore;

async fn make_store() -> Option<Arc<dyn SecretStore>> {
    let server = support::server()?;
    let auth = support::kubernetes::shared_auth(&server).await;
    Some(Arc::new(support::connect(support::options(&server, auth)).await))
}

secretd_core::conformance_suite!(make_store());
