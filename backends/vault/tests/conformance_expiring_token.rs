//! The conformance suite on OpenBao with an AppRole whose tokens live two
//! seconds and cannot be renewed past that: the token expires again and
//! again while the cases run, and every call must still succeed.

mod support;

use std::sync::Arc;

use secretd_core::SecretStore;
use secretd_vault::VaultAuth;

async fn make_store() -> Option<Arc<dyn SecretStore>> {
    let server = support::server()?;
    let accounts = support::accounts(&server).await;
    let auth = VaultAuth::AppRole {
        mount: "approle".into(),
        role_id: accounts.short_role_id,
        secret_id: support::secret(&accounts.short_secret_id),
    };
    Some(Arc::new(support::connect(support::options(&server, auth)).await))
}

secretd_core::conformance_suite!(make_store());
