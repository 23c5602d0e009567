//! The conformance suite on OpenBao, logged in with userpass as a user
//! whose policy covers only the test's KV v2 paths.

mod support;

use std::sync::Arc;

use secretd_core::SecretStore;
use secretd_vault::VaultAuth;

async fn make_store() -> Option<Arc<dyn SecretStore>> {
    let server = support::server()?;
    let accounts = support::accounts(&server).await;
    let auth = VaultAuth::Userpass {
        mount: "userpass".into(),
        username: accounts.username,
        password: support::secret(support::PASSWORD),
    };
    Some(Arc::new(support::connect(support::options(&server, auth)).await))
}

secretd_core::conformance_suite!(make_store());
