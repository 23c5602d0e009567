//! The memory store passes the whole conformance suite.

use std::sync::Arc;

use secretd_core::SecretStore;
use secretd_memory::MemoryStore;

async fn make_store() -> Arc<dyn SecretStore> {
    Arc::new(MemoryStore::new())
}

secretd_core::conformance_suite!(make_store());
