//! `secretd-bench`: the load generator for secretd's GetSecret, and the
//! bare-tonic baseline it is compared with.
//!
//! `load` keeps C requests in flight (C tasks, each sending its next
//! request when the previous answer arrives) until N have completed, over K
//! HTTP/2 connections, and prints throughput and latency percentiles.
//! `baseline-server` answers GetSecret with a fixed message and does nothing
//! else: the same generator against it measures the ceiling of tonic and the
//! machine, so the broker's own cost is the difference. `seed` writes the
//! keys a run reads. Every answer is checked, so a broken server cannot look
//! fast; every run is bounded in count and time.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use secretd::proto::{
    secret_broker_client::SecretBrokerClient,
    secret_broker_server::{SecretBroker, SecretBrokerServer},
    BatchGetSecretsRequest, BatchGetSecretsResponse, DeleteSecretRequest, DeleteSecretResponse, GetSecretRequest,
    GetSecretResponse, ListSecretsRequest, ListSecretsResponse, PutSecretRequest, PutSecretResponse, Source,
};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::Interceptor,
    transport::Channel,
    Request, Response, Status,
};

#[derive(Parser)]
#[command(about = "Load generator for secretd's GetSecret")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive GetSecret against a running server and print the figures.
    Load {
        #[arg(long, default_value = "127.0.0.1:7878")]
        addr: String,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Measured requests in total.
        #[arg(long, default_value_t = 200_000)]
        requests: u64,
        /// Unmeasured requests first, to fill caches and connections.
        #[arg(long, default_value_t = 5_000)]
        warmup: u64,
        /// HTTP/2 connections the streams are spread over.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value = "bench")]
        namespace: String,
        #[arg(long, default_value = "key-")]
        key_prefix: String,
        /// Keys `{prefix}0` .. `{prefix}{count-1}` are read round-robin.
        #[arg(long, default_value_t = 100)]
        key_count: usize,
        /// A safety limit: stop after this long whatever the count.
        #[arg(long, default_value_t = 300)]
        max_seconds: u64,
        /// A label for the summary line.
        #[arg(long, default_value = "load")]
        label: String,
        /// Print the summary as one JSON line.
        #[arg(long)]
        json: bool,
        /// The API token to send (secretd authenticates every call).
        #[arg(long, env = "SECRETD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Serve a bare SecretBroker whose GetSecret returns a fixed message.
    BaselineServer {
        #[arg(long, default_value = "127.0.0.1:47900")]
        listen: SocketAddr,
    },
    /// Put the keys a load run reads.
    Seed {
        #[arg(long, default_value = "127.0.0.1:7878")]
        addr: String,
        #[arg(long, default_value = "bench")]
        namespace: String,
        #[arg(long, default_value = "key-")]
        key_prefix: String,
        #[arg(long, default_value_t = 100)]
        key_count: usize,
        #[arg(long, default_value_t = 32)]
        value_size: usize,
        #[arg(long, env = "SECRETD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Sustained load for a set time: GetSecret over many keys with a share
    /// of PutSecret, printing throughput, errors, p99 and the server's RSS
    /// every interval, to show that memory stays flat.
    Soak {
        #[arg(long, default_value = "127.0.0.1:7878")]
        addr: String,
        /// The daemon's process id, whose resident memory is sampled.
        #[arg(long)]
        pid: u32,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Seconds between two report lines.
        #[arg(long, default_value_t = 10)]
        every: u64,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value = "bench")]
        namespace: String,
        #[arg(long, default_value = "key-")]
        key_prefix: String,
        #[arg(long, default_value_t = 100)]
        key_count: usize,
        /// One request in this many is a PutSecret (0: reads only).
        #[arg(long, default_value_t = 100)]
        write_one_in: u64,
        #[arg(long, env = "SECRETD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Wait until a server accepts gRPC connections (at most 30 s).
    Wait {
        #[arg(long, default_value = "127.0.0.1:7878")]
        addr: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Load {
            addr,
            concurrency,
            requests,
            warmup,
            connections,
            namespace,
            key_prefix,
            key_count,
            max_seconds,
            label,
            json,
            token,
        } => {
            if concurrency == 0 || connections == 0 || key_count == 0 || requests == 0 {
                bail!("--concurrency, --connections, --key-count and --requests must be at least 1");
            }
            let keys: Vec<String> = (0..key_count).map(|i| format!("{key_prefix}{i}")).collect();
            let mut channels = Vec::with_capacity(connections);
            for _ in 0..connections {
                channels.push(connect(&addr).await?);
            }
            let plan = Plan {
                namespace,
                keys: Arc::new(keys),
                concurrency,
                deadline: Duration::from_secs(max_seconds),
                auth: Auth::new(token.as_deref())?,
            };
            run(&channels, &plan, warmup).await?;
            let summary = run(&channels, &plan, requests).await?;
            summary.print(&label, concurrency, connections, json);
            Ok(())
        }
        Command::BaselineServer { listen } => {
            eprintln!("baseline server on {listen}");
            tonic::transport::Server::builder()
                .add_service(SecretBrokerServer::new(Baseline))
                .serve_with_shutdown(listen, async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
            Ok(())
        }
        Command::Seed { addr, namespace, key_prefix, key_count, value_size, token } => {
            let mut client = SecretBrokerClient::with_interceptor(connect(&addr).await?, Auth::new(token.as_deref())?);
            for i in 0..key_count {
                client
                    .put_secret(PutSecretRequest {
                        namespace: namespace.clone(),
                        key: format!("{key_prefix}{i}"),
                        value: vec![b'v'; value_size.max(1)].into(),
                        ..Default::default()
                    })
                    .await
                    .with_context(|| format!("seeding {key_prefix}{i}"))?;
            }
            eprintln!("seeded {key_count} keys in {namespace}");
            Ok(())
        }
        Command::Soak {
            addr,
            pid,
            seconds,
            every,
            concurrency,
            connections,
            namespace,
            key_prefix,
            key_count,
            write_one_in,
            token,
        } => {
            if concurrency == 0 || connections == 0 || key_count == 0 || every == 0 {
                bail!("--concurrency, --connections, --key-count and --every must be at least 1");
            }
            let mut channels = Vec::with_capacity(connections);
            for _ in 0..connections {
                channels.push(connect(&addr).await?);
            }
            let soak = Soak {
                namespace,
                keys: Arc::new((0..key_count).map(|i| format!("{key_prefix}{i}")).collect()),
                write_one_in,
                auth: Auth::new(token.as_deref())?,
            };
            soak.run(&channels, concurrency, pid, Duration::from_secs(seconds), Duration::from_secs(every)).await
        }
        Command::Wait { addr } => {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                if connect(&addr).await.is_ok() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            bail!("{addr} did not accept connections within 30 s")
        }
    }
}

async fn connect(addr: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))
        .context("--addr")?
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))
}

struct Plan {
    namespace: String,
    keys: Arc<Vec<String>>,
    concurrency: usize,
    deadline: Duration,
    auth: Auth,
}

/// Sends `authorization: Bearer <token>` when a token is given.
#[derive(Clone)]
struct Auth(Option<MetadataValue<Ascii>>);

impl Auth {
    fn new(token: Option<&str>) -> anyhow::Result<Self> {
        let header = token.map(|t| MetadataValue::try_from(format!("Bearer {}", t.trim()))).transpose();
        Ok(Self(header.context("--token holds characters a header cannot carry")?))
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.0 {
            request.metadata_mut().insert("authorization", header.clone());
        }
        Ok(request)
    }
}

struct Summary {
    completed: u64,
    errors: BTreeMap<String, u64>,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

impl Summary {
    fn print(&self, label: &str, concurrency: usize, connections: usize, json: bool) {
        let rps = self.completed as f64 / self.elapsed.as_secs_f64();
        let q = |p: f64| self.latency_us.value_at_quantile(p);
        if json {
            let errors: Vec<String> = self.errors.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            println!(
                "{{\"label\":\"{label}\",\"concurrency\":{concurrency},\"connections\":{connections},\"requests\":{},\
                 \"errors\":{{{}}},\"seconds\":{:.3},\"rps\":{rps:.0},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
                self.completed,
                errors.join(","),
                self.elapsed.as_secs_f64(),
                q(0.5),
                q(0.99),
                q(0.999),
                self.latency_us.max()
            );
        } else {
            println!(
                "{label}: {} requests ({} errors {:?}) in {:.2} s over {concurrency} streams / {connections} connections: \
                 {rps:.0} req/s, p50 {} us, p99 {} us, p999 {} us, max {} us",
                self.completed,
                self.errors.values().sum::<u64>(),
                self.errors,
                self.elapsed.as_secs_f64(),
                q(0.5),
                q(0.99),
                q(0.999),
                self.latency_us.max()
            );
        }
    }
}

/// Runs `total` requests with `plan.concurrency` in flight.
async fn run(channels: &[Channel], plan: &Plan, total: u64) -> anyhow::Result<Summary> {
    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(BTreeMap::new()));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(plan.concurrency);
    for worker in 0..plan.concurrency {
        let mut client =
            SecretBrokerClient::with_interceptor(channels[worker % channels.len()].clone(), plan.auth.clone());
        let (issued, errors, keys) = (issued.clone(), errors.clone(), plan.keys.clone());
        let (namespace, deadline) = (plan.namespace.clone(), plan.deadline);
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= total || started.elapsed() > deadline {
                    return histogram;
                }
                let key = &keys[n as usize % keys.len()];
                let request = GetSecretRequest { namespace: namespace.clone(), key: key.clone(), ..Default::default() };
                let sent = Instant::now();
                let outcome = client.get_secret(request).await;
                histogram.saturating_record(sent.elapsed().as_micros() as u64);
                let failure = match outcome {
                    Ok(r) if !r.get_ref().value.is_empty() => None,
                    Ok(_) => Some("EMPTY_VALUE".to_owned()),
                    Err(status) => Some(format!("{:?}", status.code())),
                };
                if let Some(code) = failure {
                    *errors.lock().unwrap_or_else(|p| p.into_inner()).entry(code).or_insert(0u64) += 1;
                }
            }
        }));
    }
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for task in tasks {
        latency_us.add(task.await?)?;
    }
    let elapsed = started.elapsed();
    let errors = std::mem::take(&mut *errors.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Summary { completed: latency_us.len(), errors, elapsed, latency_us })
}

/// The ceiling: a SecretBroker that answers GetSecret with a fixed message
/// of the same shape as the real one, and does no work.
struct Baseline;

#[tonic::async_trait]
impl SecretBroker for Baseline {
    async fn get_secret(&self, request: Request<GetSecretRequest>) -> Result<Response<GetSecretResponse>, Status> {
        let namespace = request.into_inner().namespace;
        Ok(Response::new(GetSecretResponse {
            value: vec![b'v'; 32].into(),
            version: "1".into(),
            tags: Default::default(),
            namespace,
            source: Source::Cache as i32,
            age: None,
            backend: "default".into(),
        }))
    }

    async fn batch_get_secrets(
        &self,
        _: Request<BatchGetSecretsRequest>,
    ) -> Result<Response<BatchGetSecretsResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }

    async fn list_secrets(&self, _: Request<ListSecretsRequest>) -> Result<Response<ListSecretsResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }

    async fn put_secret(&self, _: Request<PutSecretRequest>) -> Result<Response<PutSecretResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }

    async fn delete_secret(&self, _: Request<DeleteSecretRequest>) -> Result<Response<DeleteSecretResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
}

/// The soak run's workload.
struct Soak {
    namespace: String,
    keys: Arc<Vec<String>>,
    write_one_in: u64,
    auth: Auth,
}

/// What the workers add up between two reports.
#[derive(Default)]
struct Interval {
    requests: u64,
    errors: BTreeMap<String, u64>,
    latency_us: Option<Histogram<u64>>,
}

impl Soak {
    async fn run(
        &self,
        channels: &[Channel],
        concurrency: usize,
        pid: u32,
        length: Duration,
        every: Duration,
    ) -> anyhow::Result<()> {
        let interval = Arc::new(Mutex::new(Interval::default()));
        let issued = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(concurrency);
        for worker in 0..concurrency {
            let mut client =
                SecretBrokerClient::with_interceptor(channels[worker % channels.len()].clone(), self.auth.clone());
            let (interval, issued, keys) = (interval.clone(), issued.clone(), self.keys.clone());
            let (namespace, write_one_in) = (self.namespace.clone(), self.write_one_in);
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < length {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    // Spread over the keys so the cache both hits and evicts.
                    let key = keys[(n.wrapping_mul(2_654_435_761) % keys.len() as u64) as usize].clone();
                    let sent = Instant::now();
                    let failure = if write_one_in > 0 && n % write_one_in == 0 {
                        let put = PutSecretRequest {
                            namespace: namespace.clone(),
                            key,
                            value: format!("soak-{n}").into_bytes().into(),
                            ..Default::default()
                        };
                        client.put_secret(put).await.err().map(|s| format!("put {:?}", s.code()))
                    } else {
                        let get = GetSecretRequest { namespace: namespace.clone(), key, ..Default::default() };
                        match client.get_secret(get).await {
                            Ok(r) if !r.get_ref().value.is_empty() => None,
                            Ok(_) => Some("EMPTY_VALUE".to_owned()),
                            Err(status) => Some(format!("get {:?}", status.code())),
                        }
                    };
                    let micros = sent.elapsed().as_micros() as u64;
                    let mut i = interval.lock().unwrap_or_else(|p| p.into_inner());
                    i.requests += 1;
                    i.latency_us
                        .get_or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"))
                        .saturating_record(micros);
                    if let Some(code) = failure {
                        *i.errors.entry(code).or_insert(0) += 1;
                    }
                }
            }));
        }
        println!(
            "# soak: {concurrency} streams, {} keys, one write in {}, RSS of pid {pid}",
            self.keys.len(),
            self.write_one_in
        );
        println!("{:>6} {:>10} {:>8} {:>8} {:>9} {:>10}", "t_s", "requests", "req/s", "errors", "p99_us", "rss_kib");
        let mut rss = Vec::new();
        let (mut total, mut total_errors) = (0u64, 0u64);
        let mut next = started + every;
        while started.elapsed() < length {
            tokio::time::sleep_until(next.into()).await;
            next += every;
            let done = std::mem::take(&mut *interval.lock().unwrap_or_else(|p| p.into_inner()));
            let errors: u64 = done.errors.values().sum();
            total += done.requests;
            total_errors += errors;
            let kib = rss_kib(pid)?;
            rss.push(kib);
            let p99 = done.latency_us.map_or(0, |h| h.value_at_quantile(0.99));
            println!(
                "{:>6} {:>10} {:>8.0} {:>8} {:>9} {:>10}{}",
                started.elapsed().as_secs(),
                total,
                done.requests as f64 / every.as_secs_f64(),
                errors,
                p99,
                kib,
                if done.errors.is_empty() { String::new() } else { format!("  {:?}", done.errors) }
            );
        }
        for task in tasks {
            task.await?;
        }
        let (Some(first), Some(last)) = (rss.first().copied(), rss.last().copied()) else {
            bail!("the run ended before the first sample: use --seconds of at least --every");
        };
        let max = rss.iter().copied().max().unwrap_or(last);
        print!(
            "# {total} requests, {total_errors} errors in {:.0} s; RSS first {first} KiB, last {last} KiB, max {max} KiB",
            started.elapsed().as_secs_f64()
        );
        // The first samples include warm-up; the halves show growth, if any.
        let half = rss.len() / 2;
        if half > 0 {
            let mean = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len() as f64;
            print!(
                "; mean of the second half {:.0} KiB vs first half {:.0} KiB",
                mean(&rss[half..]),
                mean(&rss[..half])
            );
        }
        println!();
        if total_errors > 0 {
            bail!("{total_errors} requests failed");
        }
        Ok(())
    }
}

/// The resident set size of a process, from /proc (Linux).
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}
