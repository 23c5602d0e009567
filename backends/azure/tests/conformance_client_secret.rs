//! The conformance suite against the Key Vault test server with a real
//! `ClientSecretCredential` getting its tokens from the server's Entra ID
//! token endpoint (as authority host), and purge on delete.

mod support;

use std::sync::Arc;

use secretd_core::SecretStore;

async fn make_store() -> Option<Arc<dyn SecretStore>> {
    let server = Box::leak(Box::new(support::server()));
    let mut options = server.client_secret_options();
    options.purge_on_delete = true;
    Some(Arc::new(support::connect(options).await))
}

secretd_core::conformance_suite!(make_store());
