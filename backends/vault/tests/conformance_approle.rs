//! The conformance suite on OpenBao, logged in with AppRole.

mod support;

use std::sync::Arc;

use secretd_core::SecretStore;
use secretd_vault::VaultAuth;

async fn make_store() -> Option<Arc<dyn SecretStore>> {
    let server = support::server()?;
    let accounts = support::accounts(&server).await;
    let auth = VaultAuth::AppRole {
        mount: "approle".into(),
        role_id: accounts.role_id,
        secret_id: support::secret(&accounts.secret_id),
    };
    Some(Arc::new(support::connect(support::options(&server, auth)).await))
}

secretd_core::conformance_suite!(make_store());
