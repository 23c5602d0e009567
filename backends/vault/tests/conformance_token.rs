//! The conformance suite on OpenBao, logged in with a token (the root token
//! of the test server).

mod support;

use std::sync::Arc;

use secretd_core::SecretStore;
use secretd_vault::VaultAuth;

async fn make_store() -> Option<Arc<dyn SecretStore>> {
    let server = support::server()?;
    let auth = VaultAuth::Token(support::secret(&server.root_token));
    Some(Arc::new(support::connect(support::options(&server, auth)).await))
}

secretd_core::conformance_suite!(make_store());
