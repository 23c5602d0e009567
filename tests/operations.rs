//! What an operator relies on, against the real daemon: `/livez`,
//! `/readyz` and `grpc.health.v1` following the backend down and back up,
//! metrics that move as calls are made, and SIGTERM ending the process
//! cleanly.

mod common;

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{free_port_pair, http_get, Auth, Daemon};
use secretd::proto::{GetSecretRequest, PutSecretRequest};

/// The value of one sample line (`name{labels} value`), 0 if absent.
fn sample(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Writes `ops/k` = `v` and reads it once (so it is cached); returns the
/// read request.
async fn put_and_read(c: &mut common::Client) -> GetSecretRequest {
    let put = PutSecretRequest {
        namespace: "ops".into(),
        key: "k".into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    };
    c.put_secret(put).await.unwrap();
    let get = GetSecretRequest { namespace: "ops".into(), key: "k".into(), ..Default::default() };
    c.get_secret(get.clone()).await.unwrap();
    get
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn metrics_move_as_calls_are_made() {
    let daemon = Daemon::sqlite("", "");
    let admin = daemon.admin_url();
    assert_eq!(http_get(&admin, "/livez").0, 200);
    let before = http_get(&admin, "/metrics").1;

    let mut c = daemon.client().await;
    let get = put_and_read(&mut c).await;
    c.get_secret(get.clone()).await.unwrap();
    let missing = GetSecretRequest { namespace: "ops".into(), key: "absent".into(), ..Default::default() };
    assert!(c.get_secret(missing).await.is_err());
    let mut stranger = daemon.client_as(Auth::bearer(&format!("sdt_{}", "A".repeat(43)))).await;
    assert!(stranger.get_secret(get).await.is_err());

    let after = http_get(&admin, "/metrics").1;
    let moved = |line: &str| sample(&after, line) - sample(&before, line);
    assert_eq!(moved(r#"secretd_requests_total{method="GetSecret",code="OK"}"#), 2.0, "{after}");
    assert_eq!(moved(r#"secretd_requests_total{method="GetSecret",code="NOT_FOUND"}"#), 1.0, "{after}");
    assert_eq!(moved(r#"secretd_requests_total{method="GetSecret",code="UNAUTHENTICATED"}"#), 1.0, "{after}");
    assert_eq!(moved(r#"secretd_requests_total{method="PutSecret",code="OK"}"#), 1.0);
    assert_eq!(moved("secretd_cache_hits_total"), 1.0, "the second read is a hit");
    assert!(moved("secretd_cache_misses_total") >= 1.0);
    assert!(moved(r#"secretd_backend_calls_total{backend="default",operation="put"}"#) >= 1.0);
    assert!(
        moved(r#"secretd_backend_errors_total{backend="default",operation="get",kind="not_found"}"#) >= 1.0,
        "{after}"
    );
    assert_eq!(moved(r#"secretd_auth_failures_total{reason="unknown or revoked token"}"#), 1.0, "{after}");
    assert!(after.contains("secretd_request_duration_seconds_bucket"), "latency histograms");
    assert!(after.contains("secretd_cache_entries"));
    // Labels are fixed words: no secret names, no values.
    assert!(!after.contains("ops") && !after.contains("absent"), "a secret name leaked into the metrics");
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let mut daemon = Daemon::sqlite("", "");
    assert_eq!(http_get(&daemon.admin_url(), "/readyz").0, 200);
    daemon.terminate();
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("secretd exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let logs = daemon.log_text();
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(logs.contains("secretd stopped"), "{logs}");
}

/// A dedicated OpenBao, so the test can stop and restart it without
/// disturbing the other Vault tests.
struct Bao {
    child: Child,
    port: u16,
}

impl Bao {
    fn start(binary: &str, port: u16) -> Bao {
        let child = Command::new(binary)
            .args(["server", "-dev", "-dev-root-token-id=ops-root"])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bao");
        let bao = Bao { child, port };
        wait_until("bao to listen", Duration::from_secs(20), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        bao
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two daemons on one OpenBao, stopped and restarted: one with stale
/// serving off, whose readiness and health follow the backend; one with it
/// on (the default), which stays ready through the outage, says it is
/// degraded, reports the backend on `secretd.backend`, and answers stale.
#[tokio::test]
async fn readiness_and_grpc_health_follow_the_backend() {
    let Ok(binary) = std::env::var("SECRETD_TEST_BAO") else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "SECRETD_TEST_BAO is not set: run scripts/test.sh");
        eprintln!("*** SKIPPED: SECRETD_TEST_BAO is not set; run scripts/test.sh ***");
        return;
    };
    let port = free_port_pair();
    let mut bao = Bao::start(&binary, port);
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let daemon = |name: &str, cache: &str, extra: &str| {
        let config = format!(
            "server:\n  listen: 127.0.0.1:0\n  liveness: {{interval: 200ms, timeout: 1s}}\n\
             secret:\n  type: vault\n  vault:\n    address: http://127.0.0.1:{port}\n    timeout: 1s\n    \
             token: {{token: ops-root}}\n    circuit-breaker: {{failure-threshold: 2, open-for: 1s}}\n  \
             cache: {cache}\n{extra}{}",
            common::admin_account()
        );
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, config).unwrap();
        Daemon::start(&["serve", "--config", path.to_str().unwrap()], dir.path())
    };
    let strict = daemon("strict", "{stale-if-error: 0s}", "");
    let degraded = daemon(
        "degraded",
        "{expire-after-write: 1s, refresh-ahead: 0}",
        &format!("audit: {{sink: file, path: {}}}\n", audit.display()),
    );
    let check = |service: &str| tonic_health::pb::HealthCheckRequest { service: service.into() };
    let serving = |status: i32| status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let mut strict_health = tonic_health::pb::health_client::HealthClient::new(strict.channel().await);
    let mut degraded_health = tonic_health::pb::health_client::HealthClient::new(degraded.channel().await);
    let (strict_admin, degraded_admin) = (strict.admin_url(), degraded.admin_url());

    wait_until("ready", Duration::from_secs(10), || {
        http_get(&strict_admin, "/readyz").0 == 200 && http_get(&degraded_admin, "/readyz") == (200, "ok\n".into())
    });
    assert!(serving(strict_health.check(check("")).await.unwrap().into_inner().status));
    assert!(serving(degraded_health.check(check("secretd.backend")).await.unwrap().into_inner().status));
    let mut c = degraded.client().await;
    let get = put_and_read(&mut c).await;

    bao.stop();
    wait_until("not ready", Duration::from_secs(15), || http_get(&strict_admin, "/readyz").0 == 503);
    let (_, why) = http_get(&strict_admin, "/readyz");
    assert!(why.contains("backend unavailable"), "{why}");
    assert!(!serving(strict_health.check(check("")).await.unwrap().into_inner().status));
    assert_eq!(http_get(&strict_admin, "/livez").0, 200, "a backend outage is no reason to restart secretd");
    assert!(http_get(&strict_admin, "/metrics").1.contains("secretd_backend_up{backend=\"default\"} 0"));

    // Stale serving on: still ready, but saying why it is degraded.
    wait_until("degraded with the breaker open", Duration::from_secs(15), || {
        http_get(&degraded_admin, "/readyz").1.contains("circuit breaker open")
    });
    let (status, why) = http_get(&degraded_admin, "/readyz");
    assert_eq!(status, 200, "{why}");
    // Open, or half-open when `open-for` (1 s) has just run out.
    assert!(why.contains("backend unavailable; circuit breaker"), "{why}");
    assert!(serving(degraded_health.check(check("")).await.unwrap().into_inner().status));
    assert!(!serving(degraded_health.check(check("secretd.backend")).await.unwrap().into_inner().status));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = c.get_secret(get.clone()).await.unwrap().into_inner();
    assert_eq!((stale.value.as_ref(), stale.source), (&b"v"[..], secretd::proto::Source::Stale as i32));
    assert!(stale.age.unwrap().seconds >= 1, "{:?}", stale.age);
    let metrics = http_get(&degraded_admin, "/metrics").1;
    assert!(sample(&metrics, "secretd_stale_serves_total") >= 1.0, "{metrics}");
    assert!(
        sample(&metrics, "secretd_circuit_breaker_state{backend=\"default\"}") >= 1.0,
        "the breaker is not closed: {metrics}"
    );
    wait_until("the audit record of the stale answer", Duration::from_secs(5), || {
        std::fs::read_to_string(&audit).is_ok_and(|a| a.lines().any(|l| l.contains(r#""source":"stale""#)))
    });

    let _bao = Bao::start(&binary, bao.port);
    wait_until("ready again", Duration::from_secs(15), || {
        http_get(&strict_admin, "/readyz").0 == 200 && http_get(&degraded_admin, "/readyz") == (200, "ok\n".into())
    });
    assert!(serving(strict_health.check(check("")).await.unwrap().into_inner().status));
    assert!(serving(degraded_health.check(check("secretd.backend")).await.unwrap().into_inner().status));
    let metrics = http_get(&degraded_admin, "/metrics").1;
    assert_eq!(sample(&metrics, "secretd_circuit_breaker_state{backend=\"default\"}"), 0.0, "{metrics}");
}
