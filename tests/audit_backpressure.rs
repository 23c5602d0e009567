//! Issue #12, item 8: an audit sink that stops taking records (a full
//! disk, a pipe nobody reads) must not stall the daemon's runtime.
//!
//! The daemon runs in process, on a runtime of its own with two worker
//! threads (as on a two-core pod), over an audit writer whose `write`
//! blocks until the test opens it. While a flood of refused calls (bad
//! tokens) keeps the audit queue full, `/livez` must keep answering, and an
//! authenticated call must be refused UNAVAILABLE within the documented
//! wait rather than hang. Once the writer is released, every call that was
//! answered (anything but the audit refusal) has its record: none dropped.

mod common;

use std::{
    io::Write,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use common::{token_hash, Auth, ADMIN_TOKEN};
use secretd::{
    audit::AuditLog,
    auth::Authenticator,
    broker::{Broker, Limits},
    cache::SecretCache,
    config::{AccessConfig, AuthConfig, CacheConfig, IsolationConfig, LivenessConfig, Permission, StaticAccount},
    policy::Policy,
    proto::{GetSecretRequest, PutSecretRequest},
    server::{run, Listener, RunOptions, Services},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// How long a call waits for room in the audit queue before it is refused.
const MAX_WAIT: Duration = Duration::from_millis(500);
/// Calls whose records may be queued at once.
const QUEUE: usize = 8;
/// The watchdog opens the writer after this, whatever the test does, so a
/// stalled runtime makes the test fail rather than hang.
const WATCHDOG: Duration = Duration::from_secs(8);

/// A sink that blocks every write until opened, and keeps what it got.
#[derive(Clone, Default)]
struct GatedSink {
    open: Arc<(Mutex<bool>, Condvar)>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl GatedSink {
    fn release(&self) {
        let (open, changed) = &*self.open;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }

    fn lines(&self) -> usize {
        self.written.lock().unwrap().iter().filter(|b| **b == b'\n').count()
    }
}

impl Write for GatedSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let (open, changed) = &*self.open;
        let mut is_open = open.lock().unwrap();
        while !*is_open {
            is_open = changed.wait(is_open).unwrap();
        }
        self.written.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Served {
    grpc: String,
    admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The daemon on the memory store, on its own two-thread runtime.
fn serve(sink: GatedSink) -> Served {
    let (addrs, got) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let broker = Broker::new(
                Arc::new(secretd_memory::MemoryStore::new()),
                SecretCache::new(&CacheConfig::default()),
                Policy::new(&IsolationConfig::default(), &AccessConfig::default()),
                Limits { max_value_size: 1024, max_batch_size: 10, ..Limits::default() },
            );
            let auth = AuthConfig {
                service_accounts: vec![StaticAccount {
                    name: "test-admin".into(),
                    service: "ADMIN".into(),
                    permissions: vec![Permission::Admin],
                    namespaces: vec![],
                    tenants: vec!["*".into()],
                    token_sha256: token_hash(ADMIN_TOKEN),
                }],
                ..Default::default()
            };
            let services = Services {
                broker: Arc::new(broker),
                auth: Arc::new(Authenticator::new(&auth, None, None)),
                audit: AuditLog::to_writer(Box::new(sink), QUEUE, MAX_WAIT).unwrap(),
            };
            let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.send((grpc.local_addr().unwrap(), admin.local_addr().unwrap())).unwrap();
            let options = RunOptions {
                liveness: LivenessConfig::default(),
                admin: Some(admin),
                grace_period: Duration::from_secs(1),
            };
            run(services, Listener::Tcp(grpc, None), options, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
    });
    let (grpc, admin) = got.recv_timeout(Duration::from_secs(30)).expect("the daemon started");
    Served { grpc: format!("http://{grpc}"), admin: admin.to_string(), stop: Some(stop), thread: Some(thread) }
}

/// One `GET /livez`: how long it took, or `None` if it did not answer in
/// `patience`.
async fn livez(admin: &str, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    let answer = tokio::time::timeout(patience, async {
        let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
        stream.write_all(b"GET /livez HTTP/1.0\r\n\r\n").await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        response.starts_with("HTTP/1.0 200").then_some(())
    })
    .await;
    matches!(answer, Ok(Some(()))).then(|| started.elapsed())
}

fn read(key: &str) -> GetSecretRequest {
    GetSecretRequest { namespace: "team".into(), key: key.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_audit_sink_does_not_stall_the_runtime_and_loses_no_record() {
    let sink = GatedSink::default();
    let served = serve(sink.clone());
    let (done, test_over) = std::sync::mpsc::channel::<()>();
    let watchdog = {
        let sink = sink.clone();
        std::thread::spawn(move || {
            let _ = test_over.recv_timeout(WATCHDOG);
            sink.release();
        })
    };
    let started = Instant::now();

    // A flood of refused calls, from 50 callers at once, for 3 s.
    let flooding = Arc::new(AtomicBool::new(true));
    let (answered, refused_for_audit) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let garbage = Auth::bearer(&format!("sdt_{}", "g".repeat(43)));
    let mut flood = Vec::new();
    for _ in 0..50 {
        let mut c = common::connect(&served.grpc, garbage.clone()).await.unwrap();
        let (flooding, answered, refused_for_audit) = (flooding.clone(), answered.clone(), refused_for_audit.clone());
        flood.push(tokio::spawn(async move {
            while flooding.load(Ordering::Relaxed) {
                let status = c.get_secret(read("k")).await.expect_err("a bad token is refused");
                match status.code() {
                    Code::Unauthenticated => answered.fetch_add(1, Ordering::Relaxed),
                    Code::Unavailable if status.message().contains("audit trail cannot keep up") => {
                        refused_for_audit.fetch_add(1, Ordering::Relaxed)
                    }
                    other => panic!("unexpected answer {other:?}: {status:?}"),
                };
            }
        }));
    }

    // Meanwhile /livez answers promptly, throughout.
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let took = livez(&served.admin, Duration::from_secs(2)).await;
        let took = took.unwrap_or_else(|| panic!("/livez did not answer within 2 s while the audit sink was stuck"));
        slowest = slowest.max(took);
        probes += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(slowest < Duration::from_secs(1), "/livez took {slowest:?} while the audit sink was stuck");
    assert!(refused_for_audit.load(Ordering::Relaxed) > 0, "the flood did fill the audit queue");

    // A valid caller is refused within the documented wait, not hung.
    let mut admin = common::connect(&served.grpc, Auth::bearer(ADMIN_TOKEN)).await.unwrap();
    let asked = Instant::now();
    let busy = admin.get_secret(read("k")).await.expect_err("no room for its record");
    assert_eq!(busy.code(), Code::Unavailable, "{busy:?}");
    assert!(busy.message().contains("audit trail cannot keep up"), "{busy:?}");
    assert!(asked.elapsed() < MAX_WAIT + Duration::from_secs(1), "refused after {:?}", asked.elapsed());
    flooding.store(false, Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    eprintln!(
        "{probes} /livez probes, slowest {slowest:?}; flood: {} answered, {} refused for the audit",
        answered.load(Ordering::Relaxed),
        refused_for_audit.load(Ordering::Relaxed)
    );
    assert!(started.elapsed() < WATCHDOG, "the test only passed because the watchdog opened the sink");

    // The sink takes records again: calls are served, and every call that
    // was answered has its record.
    sink.release();
    let put = PutSecretRequest {
        namespace: "team".into(),
        key: "k".into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    };
    admin.put_secret(put).await.expect("served again once the sink drains");
    assert_eq!(admin.get_secret(read("k")).await.unwrap().into_inner().value, b"v".as_slice());
    let expected = answered.load(Ordering::Relaxed) + 2;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.lines() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sink.lines(), expected, "one record per answered call, none dropped and none invented");
    drop(served);
    drop(done);
    watchdog.join().unwrap();
}
