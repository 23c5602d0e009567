//! The memory store passes the whole conformance suite.

use std::sync::Arc;

use secretd_core::SecretStore;
use secretd_memory::MemoryStore;

async fn make_store() -> Option<Arc<dyn SecretStore>> {
    Some(Arc::new(MemoryStore::new()))
}

secretd_core::conformance_suite!(make_store());
