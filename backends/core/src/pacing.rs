//! Pacing of the extra backend calls that one store operation fans out
//! into (a listing that reads each secret's metadata, say).
//!
//! The daemon rate-limits and times each *operation* it hands a store; a
//! store that turns one operation into many backend calls asks for the
//! turn of each further call with [`paced`], so the backend's
//! `rate-limit` holds for them too. The pacer reaches the store through a
//! task-local set around the operation, as the caller's deadline does, so
//! the `SecretStore` trait stays as it is; outside one (tests, tools)
//! `paced` lets every call through.

use std::{future::Future, sync::Arc};

use async_trait::async_trait;

use crate::StoreError;

/// Decides when the next backend call of the running operation may go.
#[async_trait]
pub trait Pacer: Send + Sync {
    /// Waits for the turn of one more backend call, or refuses it (the
    /// operation then fails with that error).
    async fn next_call(&self) -> Result<(), StoreError>;
}

tokio::task_local! {
    static PACER: Arc<dyn Pacer>;
}

/// Runs `operation` with `pacer` deciding its further backend calls.
pub async fn with_pacer<F: Future>(pacer: Arc<dyn Pacer>, operation: F) -> F::Output {
    PACER.scope(pacer, operation).await
}

/// Waits for the turn of one more backend call of the running operation.
pub async fn paced() -> Result<(), StoreError> {
    match PACER.try_with(Arc::clone) {
        Ok(pacer) => pacer.next_call().await,
        Err(_) => Ok(()),
    }
}
