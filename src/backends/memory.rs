//! `secret.memory`: keeps nothing across restarts; for tests and
//! benchmarks.

use std::sync::LazyLock;

use async_trait::async_trait;

use super::{backend_block, BackendBlock, BackendError, BuiltStore};
use crate::config::Credential;

backend_block! {
    #[derive(Debug)]
    pub struct MemoryConfig {
    }
}

/// `type: memory` needs no block: this one, with every default.
pub(crate) fn default_block() -> &'static dyn BackendBlock {
    static DEFAULT: LazyLock<MemoryConfig> =
        LazyLock::new(|| crate::config::de::from_defaults().expect("an empty memory block takes every default"));
    &*DEFAULT
}

#[async_trait]
impl BackendBlock for MemoryConfig {
    fn built_in(&self) -> bool {
        true
    }

    fn validate(&self, _at: &str, _bad: &mut dyn FnMut(&str, &'static str)) {}

    fn write_only_settings(&self) -> Vec<&'static str> {
        Vec::new()
    }

    fn credentials(&self) -> Vec<&Credential> {
        Vec::new()
    }

    async fn build(&self, _at: &str) -> Result<BuiltStore, BackendError> {
        Ok(BuiltStore::plain(secretd_memory::MemoryStore::new()))
    }
}
