//! Graceful shutdown, in process: a call in flight when the signal comes
//! finishes; new calls are refused; and the grace period bounds the wait.
//! A backend that takes its time makes "in flight" last long enough to
//! look at.

mod common;

use std::{path::Path, sync::Arc, time::Duration};

use async_trait::async_trait;
use secretd::{
    broker::{Broker, Limits},
    cache::SecretCache,
    config::load_str,
    policy::Policy,
    proto::GetSecretRequest,
    server::{Listener, RunOptions},
};
use secretd_core::{
    Capabilities, Namespace, Page, PageRequest, Secret, SecretName, SecretStore, SecretValue, StoreError, Tags, Tenant,
    Version,
};
use tokio::time::Instant;

/// The memory store, with every read taking `delay`.
struct SlowStore {
    inner: secretd_memory::MemoryStore,
    delay: Duration,
}

#[async_trait]
impl SecretStore for SlowStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.get(name, version).await
    }
    async fn put(&self, n: &SecretName, v: &SecretValue, t: &Tags, d: Option<&str>) -> Result<Version, StoreError> {
        self.inner.put(n, v, t, d).await
    }
    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        self.inner.delete(name).await
    }
    async fn list(&self, t: &Tenant, n: &Namespace, f: &Tags, p: &PageRequest) -> Result<Page, StoreError> {
        self.inner.list(t, n, f, p).await
    }
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

struct Running {
    addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(delay: Duration, grace: Duration) -> Running {
    let dir = tempfile::tempdir().unwrap().keep();
    let yaml = format!(
        "secret:\n  type: memory\n  cache: {{enabled: false}}\nstate:\n  url: sqlite://{}/state.db\naudit:\n  sink: off\n{}",
        dir.display(),
        common::admin_account()
    );
    let config = load_str(&yaml, Path::new("shutdown.yaml"), &|_| None).unwrap();
    let mut services = secretd::build_services(&config).await.unwrap();
    let store = Arc::new(SlowStore { inner: secretd_memory::MemoryStore::new(), delay });
    let name = SecretName::parse("", "team", "slow").unwrap();
    store.inner.put(&name, &SecretValue::from_slice(b"worth the wait"), &Tags::new(), None).await.unwrap();
    services.broker = Arc::new(Broker::new(
        store,
        SecretCache::disabled(),
        Policy::new(&config.secret.isolation, &config.access),
        Limits { max_value_size: 65536, max_batch_size: 100, ..Limits::default() },
    ));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = RunOptions { liveness: config.server.liveness.clone(), admin: None, grace_period: grace };
    let server = tokio::spawn(async move {
        secretd::server::run(services, Listener::Tcp(tcp, None), options, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running { addr, stop, server }
}

fn slow_request() -> GetSecretRequest {
    GetSecretRequest { namespace: "team".into(), key: "slow".into(), ..Default::default() }
}

#[tokio::test]
async fn in_flight_calls_finish_and_new_ones_are_refused() {
    let running = start(Duration::from_millis(1500), Duration::from_secs(10)).await;
    let mut c =
        common::connect(&format!("http://{}", running.addr), common::Auth::bearer(common::ADMIN_TOKEN)).await.unwrap();
    let in_flight = tokio::spawn(async move { c.get_secret(slow_request()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    running.stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The listener is closed: a new caller cannot get in.
    let refused =
        match common::connect(&format!("http://{}", running.addr), common::Auth::bearer(common::ADMIN_TOKEN)).await {
            Err(_) => true,
            Ok(mut late) => late.get_secret(slow_request()).await.is_err(),
        };
    assert!(refused, "a call after the signal was accepted");

    let answer = in_flight.await.unwrap().expect("the call in flight finished normally");
    assert_eq!(&answer.into_inner().value[..], b"worth the wait");
    running.server.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "the server waited longer than the call needed");
}

#[tokio::test]
async fn the_grace_period_bounds_the_drain() {
    let running = start(Duration::from_secs(30), Duration::from_millis(500)).await;
    let mut c =
        common::connect(&format!("http://{}", running.addr), common::Auth::bearer(common::ADMIN_TOKEN)).await.unwrap();
    let in_flight = tokio::spawn(async move { c.get_secret(slow_request()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    running.stop.send(()).unwrap();
    running.server.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "shutdown took {:?}", started.elapsed());
    in_flight.abort();
}
