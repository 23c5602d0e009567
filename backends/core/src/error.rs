//! One error vocabulary for every backend.
//!
//! Backends map their own failures into an [`ErrorKind`]; the daemon maps
//! each kind to exactly one gRPC status in one place. Messages are meant for
//! operators and callers alike, so they must never contain a secret value:
//! constructors take names and reasons, never values.

use std::fmt;

/// What went wrong, in terms the broker can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The secret (or the pinned version) does not exist, or is outside the
    /// store's tag scope.
    NotFound,
    /// The write conflicts with something that already exists.
    AlreadyExists,
    /// The name (or a tag) breaks the naming rules or a backend's limits.
    InvalidName,
    /// The value is larger than the store accepts.
    TooLarge,
    /// The backend refused the broker's own credentials.
    PermissionDenied,
    /// The backend cannot be reached or is overloaded; worth retrying.
    Unavailable,
    /// The backend did not answer in time; worth retrying.
    Timeout,
    /// The backend refused the call for its rate limit or quota; worth
    /// retrying after a pause, and a sign to send fewer calls.
    Throttled,
    /// The caller's own deadline passed before the backend answered. Says
    /// nothing about the backend's health: never retried, never counted
    /// against it.
    DeadlineExceeded,
    /// The store cannot do this (e.g. pinned versions on a store without them).
    Unsupported,
    /// Stored data cannot be read back as written (failed decryption, bad row).
    Corrupt,
    /// A bug or an unexpected answer.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::InvalidName => "invalid name",
            ErrorKind::TooLarge => "too large",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Throttled => "throttled",
            ErrorKind::DeadlineExceeded => "deadline exceeded",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether the same call may succeed if tried again later.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Throttled)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a [`crate::SecretStore`]: a kind, a message for the logs
/// (never a value), and the underlying cause.
///
/// Callers of the daemon see the message only when it is secretd's own
/// wording about what they asked ([`StoreError::for_callers`]: the name they
/// gave, the rule they broke); anything else may quote the backend (role
/// ARNs, account ids, server messages), so they get the code and a generic
/// message, and the detail goes to the log.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    kind: ErrorKind,
    message: String,
    for_callers: bool,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), for_callers: false, source: None }
    }

    /// Marks the message as secretd's own words, fit for the caller: it may
    /// name what the caller asked for and the rule it broke, and must hold
    /// nothing a backend said.
    pub fn for_callers(mut self) -> Self {
        self.for_callers = true;
        self
    }

    /// Whether the caller may see [`StoreError::message`].
    pub fn is_for_callers(&self) -> bool {
        self.for_callers
    }

    /// Keeps the cause for the logs. The cause must not carry a value: wrap
    /// driver errors, never errors that echo a payload.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// `what` is the name the caller asked for, so the message is theirs.
    pub fn not_found(what: impl fmt::Display) -> Self {
        Self::new(ErrorKind::NotFound, format!("secret {what} not found")).for_callers()
    }

    pub fn invalid_name(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidName, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
}
