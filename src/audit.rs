//! The audit trail: one structured record per decision.
//!
//! Every call that names a secret (or a namespace) produces exactly one
//! JSON line: who asked, from where, for what, what was decided and why,
//! whether the cache answered, how long the backend took, and the resulting
//! gRPC code. Denials and authentication failures are recorded too. A
//! record never holds a value or a token: the type has no field that could.
//!
//! # When the sink cannot keep up
//!
//! Records are written by a dedicated thread, so a request never waits on
//! the disk. The queue between them is bounded, and no record is ever
//! dropped to make room. Instead a call takes its place in the queue
//! (an [`AuditSlot`]) *before* it does anything: if the queue is full it
//! waits for room asynchronously (the runtime thread goes on serving other
//! calls, `/livez` included), for at most [`MAX_WAIT`]; then it is refused
//! UNAVAILABLE without having done anything, and a metric and a log line say
//! so. A call that got its place always gets its record written: one it
//! holds when it ends, or, if the caller went away first (its deadline, a
//! dropped connection), an `abandoned` record with what was known.

use std::{
    io::{BufWriter, Write},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use serde::Serialize;
use tokio::sync::mpsc::{self, error::TrySendError, OwnedPermit, Receiver, Sender};

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
    /// The member of a JSON-object value a read asked for (absent when it
    /// asked for the whole value). The read is a read of the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subkey: Option<String>,
    /// `allow`, `deny`, `invalid`, `unauthenticated`, or `abandoned` (the
    /// caller went away before the call ended).
    pub decision: &'static str,
    /// Which rule decided, or why authentication failed.
    pub reason: Option<std::borrow::Cow<'static, str>>,
    pub cache_hit: Option<bool>,
    /// Where a read's answer came from: `backend`, `cache` or `stale`.
    pub source: Option<&'static str>,
    /// The backend that answered a read (its fallback's name, when the
    /// fallback had it) or that a write went to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<std::sync::Arc<str>>,
    #[serde(with = "humantime_serde::option")]
    pub backend_latency: Option<Duration>,
    /// The gRPC code the caller got, like `OK` or `NOT_FOUND`.
    pub code: &'static str,
}

/// The records of one call (one per batch item for a batch).
type Entry = Vec<AuditRecord>;

/// Writes records as JSON lines on a dedicated thread; see the module docs
/// for what happens when it falls behind.
#[derive(Clone)]
pub struct AuditLog {
    queue: Option<Sender<Entry>>,
    max_wait: Duration,
    /// When a refusal was last logged (ms since the epoch), so a flood of
    /// refusals logs one line a second rather than one per call.
    last_refusal_log: Arc<AtomicU64>,
}

/// How long the writer lets records gather before writing them: waking
/// once per record would cost a context switch per request.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// Calls whose records may wait for the writer at once.
pub const QUEUE: usize = 65_536;

/// The longest a call waits for room in a full queue before it is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// The audit queue had no room for this call's record in time: the call
/// was refused before doing anything.
#[derive(Debug, thiserror::Error)]
#[error("the audit trail cannot keep up; the call was not made, try again later")]
pub struct AuditBusy;

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
        Self::to_writer(out, QUEUE, MAX_WAIT)
    }

    /// Records to `out`, with `queue` calls' records in flight at most and
    /// calls waiting `max_wait` at most for room (tests use small ones).
    pub fn to_writer(out: Box<dyn Write + Send>, queue: usize, max_wait: Duration) -> std::io::Result<Self> {
        let (sender, records) = mpsc::channel::<Entry>(queue.max(1));
        std::thread::Builder::new().name("secretd-audit".into()).spawn(move || write_loop(out, records))?;
        Ok(Self { queue: Some(sender), max_wait, last_refusal_log: Arc::default() })
    }

    pub fn off() -> Self {
        Self { queue: None, max_wait: MAX_WAIT, last_refusal_log: Arc::default() }
    }

    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Takes a place in the queue for the records of one call of `method`
    /// from `peer`, waiting (asynchronously) for room at most `max_wait`.
    pub async fn slot(&self, method: &'static str, peer: &str) -> Result<AuditSlot, AuditBusy> {
        let Some(queue) = &self.queue else { return Ok(AuditSlot::off()) };
        let permit = match queue.clone().try_reserve_owned() {
            Ok(permit) => permit,
            Err(TrySendError::Full(queue)) => {
                let metrics = crate::metrics::get();
                metrics.audit_queue_full.inc();
                match tokio::time::timeout(self.max_wait, queue.reserve_owned()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Err(self.refuse("the audit writer has stopped")),
                    Err(_) => return Err(self.refuse("the audit queue stayed full")),
                }
            }
            Err(TrySendError::Closed(_)) => return Err(self.refuse("the audit writer has stopped")),
        };
        let abandoned = AuditRecord {
            time: SystemTime::now(),
            principal: None,
            service: None,
            peer: Some(peer.to_owned()),
            method,
            tenant: None,
            namespace: None,
            key: None,
            version: None,
            subkey: None,
            decision: "abandoned",
            reason: Some("the caller went away before the call ended".into()),
            cache_hit: None,
            source: None,
            found_in: None,
            backend: None,
            backend_latency: None,
            code: "CANCELLED",
        };
        Ok(AuditSlot { permit: Some(permit), records: Vec::new(), abandoned: Some(abandoned) })
    }

    fn refuse(&self, why: &'static str) -> AuditBusy {
        crate::metrics::get().audit_refusals.inc();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let last = self.last_refusal_log.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self.last_refusal_log.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::error!(
                max_wait = ?self.max_wait,
                "refusing calls: {why}, and no call is served without its audit record \
                 (secretd_audit_refusals_total counts them)"
            );
        }
        AuditBusy
    }
}

/// A place in the audit queue, held for the length of one call. Its
/// records are queued when it is dropped, which cannot block or fail: the
/// room was reserved when the slot was taken.
pub struct AuditSlot {
    permit: Option<OwnedPermit<Entry>>,
    records: Vec<AuditRecord>,
    /// Written instead if the call ends without a record of its own.
    abandoned: Option<AuditRecord>,
}

impl AuditSlot {
    fn off() -> Self {
        Self { permit: None, records: Vec::new(), abandoned: None }
    }

    /// Adds a record of this call (a batch adds one per item).
    pub fn record(&mut self, record: AuditRecord) {
        if self.permit.is_some() {
            self.records.push(record);
        }
    }

    /// Who is calling, for the `abandoned` record if it comes to that.
    pub fn identified(&mut self, principal: &str, service: &str) {
        if let Some(draft) = &mut self.abandoned {
            draft.principal = Some(principal.to_owned());
            draft.service = Some(service.to_owned());
        }
    }
}

impl Drop for AuditSlot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else { return };
        let mut records = std::mem::take(&mut self.records);
        if records.is_empty() {
            crate::metrics::get().audit_abandoned.inc();
            records.extend(self.abandoned.take());
        }
        permit.send(records);
    }
}

fn write_loop(out: Box<dyn Write + Send>, mut queue: Receiver<Entry>) {
    let mut out = BufWriter::new(out);
    let write = |out: &mut BufWriter<Box<dyn Write + Send>>, records: &Entry| -> std::io::Result<()> {
        for record in records {
            serde_json::to_writer(&mut *out, record)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    };
    while let Some(first) = queue.blocking_recv() {
        std::thread::sleep(BATCH_WINDOW);
        let mut result = write(&mut out, &first);
        while let Ok(next) = queue.try_recv() {
            result = result.and_then(|()| write(&mut out, &next));
        }
        if let Err(e) = result.and_then(|()| out.flush()) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn records(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        }
    }

    async fn settled(lines: &Lines, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..100 {
            if lines.records().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lines.records()
    }

    /// A call that ends without writing its record (the caller went away
    /// mid-call) still leaves one.
    #[tokio::test]
    async fn a_call_abandoned_midway_still_leaves_a_record() {
        let lines = Lines::default();
        let log = AuditLog::to_writer(Box::new(lines.clone()), 8, MAX_WAIT).unwrap();
        let mut slot = log.slot("PutSecret", "10.0.0.9:5000").await.unwrap();
        slot.identified("etl", "WORKER");
        drop(slot);
        let records = settled(&lines, 1).await;
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!((r["method"].as_str(), r["decision"].as_str()), (Some("PutSecret"), Some("abandoned")));
        assert_eq!((r["principal"].as_str(), r["code"].as_str()), (Some("etl"), Some("CANCELLED")));
        assert_eq!(r["peer"], "10.0.0.9:5000");
    }
}
