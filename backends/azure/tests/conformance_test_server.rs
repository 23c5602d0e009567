//! The conformance suite against the Key Vault test server, through the
//! real Azure SDK with a fixed-token credential.

mod support;

use std::sync::Arc;

use secretd_core::SecretStore;

/// The server must outlive the store's calls; each case leaks its own
/// (a few sockets and a thread per test binary run).
async fn make_store() -> Option<Arc<dyn SecretStore>> {
    let server = Box::leak(Box::new(support::server()));
    Some(Arc::new(support::connect(server.options()).await))
}

secretd_core::conformance_suite!(make_store());
