//! The audit trail: one structured record per decision.
//!
//! Every call that names a secret (or a namespace) produces exactly one
//! JSON line: who asked, from where, for what, what was decided and why,
//! whether the cache answered, how long the backend took, and the resulting
//! gRPC code. Denials and authentication failures are recorded too. A
//! record never holds a value or a token: the type has no field that could.

use std::{
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
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
    pub namespace: Option<String>,
    pub key: Option<String>,
    pub version: Option<String>,
    /// `allow`, `deny` or `unauthenticated`.
    pub decision: &'static str,
    /// Which rule decided, or why authentication failed.
    pub reason: Option<String>,
    pub cache_hit: Option<bool>,
    #[serde(with = "humantime_serde::option")]
    pub backend_latency: Option<Duration>,
    /// The gRPC code the caller got, like `OK` or `NOT_FOUND`.
    pub code: &'static str,
}

/// Writes records as JSON lines. Cheap to clone; writes are serialized so
/// lines never interleave.
#[derive(Clone)]
pub struct AuditLog {
    out: Option<Arc<Mutex<Box<dyn Write + Send>>>>,
}

impl AuditLog {
    pub fn open(sink: &AuditSink) -> std::io::Result<Self> {
        let out: Option<Box<dyn Write + Send>> = match sink {
            AuditSink::Off => None,
            AuditSink::Stdout => Some(Box::new(std::io::stdout())),
            AuditSink::File(path) => {
                let mut options = std::fs::OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                Some(Box::new(std::io::LineWriter::new(options.open(path)?)))
            }
        };
        Ok(Self { out: out.map(|w| Arc::new(Mutex::new(w))) })
    }

    pub fn off() -> Self {
        Self { out: None }
    }

    pub fn is_on(&self) -> bool {
        self.out.is_some()
    }

    pub fn record(&self, record: &AuditRecord) {
        let Some(out) = &self.out else { return };
        let Ok(mut line) = serde_json::to_vec(record) else { return };
        line.push(b'\n');
        let mut out = out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(e) = out.write_all(&line) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}
