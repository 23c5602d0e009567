//! Test helpers for code that sits in front of a store (the broker, the
//! cache, the migration): a wrapper that counts backend calls and can slow
//! them down, one that injects faults (errors, hangs) on demand, and one
//! that stops taking writes after a number of them, as a killed process.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;

use crate::{
    Capabilities, Namespace, Page, PageRequest, ScanSelection, Secret, SecretName, SecretStore, SecretValue,
    StoreError, Tags, Tenant, Version,
};

/// Counts the calls that reach the wrapped store, and how many `get`s were
/// in flight at once at most.
pub struct CountingStore {
    inner: Arc<dyn SecretStore>,
    gets: AtomicUsize,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    /// Added to every `get`, so concurrent misses overlap in tests.
    get_delay: Duration,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn SecretStore>, get_delay: Duration) -> Self {
        Self {
            inner,
            gets: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            get_delay,
        }
    }

    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    /// The most `get`s that were running at the same time.
    pub fn peak_concurrent_gets(&self) -> usize {
        self.peak_in_flight.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl SecretStore for CountingStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        if !self.get_delay.is_zero() {
            tokio::time::sleep(self.get_delay).await;
        }
        let result = self.inner.get(name, version).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        description: Option<&str>,
    ) -> Result<Version, StoreError> {
        self.inner.put(name, value, tags, description).await
    }

    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        self.inner.delete(name).await
    }

    async fn list(
        &self,
        tenant: &Tenant,
        namespace: &Namespace,
        filter: &Tags,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.inner.list(tenant, namespace, filter, page).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }

    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        self.inner.scan(selection, page).await
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        self.inner.versions(name).await
    }
}

/// What [`FaultyStore`] does to the calls it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass calls through.
    None,
    /// Fail with this kind at once, as a refused connection or an error
    /// answer would.
    Fail(crate::ErrorKind),
    /// Never answer, as a hung server or a black-holed packet would.
    Hang,
    /// Answer correctly, after this long, as a slow but healthy server would.
    Slow(Duration),
}

/// Injects backend faults in front of a real store, for tests of the
/// layers above it (timeouts, retries, breaker, stale serving). Counts
/// every call that reaches it, faulted or not.
pub struct FaultyStore {
    inner: Arc<dyn SecretStore>,
    fault: std::sync::Mutex<Fault>,
    calls: AtomicUsize,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn SecretStore>) -> Self {
        Self { inner, fault: std::sync::Mutex::new(Fault::None), calls: AtomicUsize::new(0) }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Calls received (every operation, health included).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn enter(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fault = *self.fault.lock().unwrap_or_else(|p| p.into_inner());
        match fault {
            Fault::None => Ok(()),
            Fault::Fail(kind) => Err(StoreError::new(kind, format!("injected fault: {kind}"))),
            Fault::Hang => std::future::pending().await,
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    }
}

#[async_trait]
impl SecretStore for FaultyStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        self.enter().await?;
        self.inner.get(name, version).await
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        description: Option<&str>,
    ) -> Result<Version, StoreError> {
        self.enter().await?;
        self.inner.put(name, value, tags, description).await
    }

    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        self.enter().await?;
        self.inner.delete(name).await
    }

    async fn list(
        &self,
        tenant: &Tenant,
        namespace: &Namespace,
        filter: &Tags,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.enter().await?;
        self.inner.list(tenant, namespace, filter, page).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.enter().await?;
        self.inner.health().await
    }

    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        self.enter().await?;
        self.inner.scan(selection, page).await
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        self.enter().await?;
        self.inner.versions(name).await
    }
}

/// Lets `puts` writes through, then never answers another one, as a
/// process killed in the middle of a run of writes: a test waits for
/// [`halted`](Self::halted) and drops the run. Every other call passes.
pub struct HaltingStore {
    inner: Arc<dyn SecretStore>,
    puts: usize,
    started: AtomicUsize,
    halted: tokio::sync::Notify,
}

impl HaltingStore {
    pub fn new(inner: Arc<dyn SecretStore>, puts: usize) -> Self {
        Self { inner, puts, started: AtomicUsize::new(0), halted: tokio::sync::Notify::new() }
    }

    /// Resolves once a write beyond the allowed ones has been held back.
    pub async fn halted(&self) {
        self.halted.notified().await
    }
}

#[async_trait]
impl SecretStore for HaltingStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        self.inner.get(name, version).await
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        description: Option<&str>,
    ) -> Result<Version, StoreError> {
        if self.started.fetch_add(1, Ordering::SeqCst) >= self.puts {
            // notify_one keeps the wake-up for a waiter that is not yet waiting.
            self.halted.notify_one();
            return std::future::pending().await;
        }
        self.inner.put(name, value, tags, description).await
    }

    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        self.inner.delete(name).await
    }

    async fn list(
        &self,
        tenant: &Tenant,
        namespace: &Namespace,
        filter: &Tags,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.inner.list(tenant, namespace, filter, page).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }

    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        self.inner.scan(selection, page).await
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        self.inner.versions(name).await
    }
}
