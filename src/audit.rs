//! The audit trail: one structured record per decision.
//!
//! Every call that names a secret (or a namespace) produces exactly one
//! JSON line: who asked, from where, for what, what was decided and why,
//! whether the cache answered, how long the backend took, and the resulting
//! gRPC code. Denials and authentication failures are recorded too. A
//! record never holds a value or a token: the type has no field that could.

use std::{
    io::{BufWriter, Write},
    path::PathBuf,
    sync::mpsc::{sync_channel, Receiver, SyncSender},
    time::{Duration, SystemTime},
};

use serde::Serialize;

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    Off,
    Stdout,
    File(PathBuf),
}

/// One decision.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    #[serde(with = "humantime_serde")]
    pub time: SystemTime,
    pub principal: Option<String>,
    pub service: Option<String>,
    pub peer: Option<String>,
    pub method: &'static str,
    pub tenant: Option<String>,
    /// The namespace asked for.
    pub namespace: Option<String>,
    /// The namespace whose secret answered a read, when inheritance found
    /// it above the one asked for (absent when they are the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found_in: Option<String>,
    pub key: Option<String>,
    pub version: Option<String>,
    /// `allow`, `deny` or `unauthenticated`.
    pub decision: &'static str,
    /// Which rule decided, or why authentication failed.
    pub reason: Option<std::borrow::Cow<'static, str>>,
    pub cache_hit: Option<bool>,
    /// Where a read's answer came from: `backend`, `cache` or `stale`.
    pub source: Option<&'static str>,
    #[serde(with = "humantime_serde::option")]
    pub backend_latency: Option<Duration>,
    /// The gRPC code the caller got, like `OK` or `NOT_FOUND`.
    pub code: &'static str,
}

/// Writes records as JSON lines on a dedicated thread, so a request never
/// waits on the disk or on serialization: records are queued as they are,
/// and the writer wakes at most every [`BATCH_WINDOW`] to serialize and
/// write what has gathered, with one flush per batch. The queue is bounded;
/// if the disk cannot keep up, callers wait rather than records being
/// dropped.
#[derive(Clone)]
pub struct AuditLog {
    queue: Option<SyncSender<AuditRecord>>,
}

/// How long the writer lets records gather before writing them: waking
/// once per record would cost a context switch per request.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

const QUEUE: usize = 65_536;

impl AuditLog {
    pub fn open(sink: &AuditSink) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match sink {
            AuditSink::Off => return Ok(Self::off()),
            AuditSink::Stdout => Box::new(std::io::stdout()),
            AuditSink::File(path) => {
                let mut options = std::fs::OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                Box::new(options.open(path)?)
            }
        };
        let (queue, records) = sync_channel::<AuditRecord>(QUEUE);
        std::thread::Builder::new().name("secretd-audit".into()).spawn(move || write_loop(out, records))?;
        Ok(Self { queue: Some(queue) })
    }

    pub fn off() -> Self {
        Self { queue: None }
    }

    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    pub fn record(&self, record: AuditRecord) {
        let Some(queue) = &self.queue else { return };
        if queue.send(record).is_err() {
            tracing::error!("the audit writer has stopped; a record was lost");
        }
    }
}

fn write_loop(out: Box<dyn Write + Send>, records: Receiver<AuditRecord>) {
    let mut out = BufWriter::new(out);
    let write = |out: &mut BufWriter<Box<dyn Write + Send>>, record: &AuditRecord| -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, record)?;
        out.write_all(b"\n")
    };
    while let Ok(first) = records.recv() {
        std::thread::sleep(BATCH_WINDOW);
        let mut result = write(&mut out, &first);
        while let Ok(next) = records.try_recv() {
            result = result.and_then(|()| write(&mut out, &next));
        }
        if let Err(e) = result.and_then(|()| out.flush()) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}
