//! The one place where backend error kinds become gRPC status codes, and
//! where it is decided what a caller may read of a backend's error.
//!
//! Callers act on the code, so each kind maps to exactly one code. Backend
//! text never reaches them (see [`from_store_error`]). A backend
//! refusing *secretd's own* credentials is the operator's problem, not the
//! caller's: it is reported as UNAVAILABLE, never as the caller's
//! PERMISSION_DENIED.

use secretd_core::{ErrorKind, StoreError};
use tonic::{Code, Status};

use crate::{auth::state::StateError, broker::subkey::MemberError};

pub fn code_for(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::InvalidName | ErrorKind::TooLarge => Code::InvalidArgument,
        ErrorKind::PermissionDenied | ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Throttled => {
            Code::Unavailable
        }
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Unsupported => Code::Unimplemented,
        ErrorKind::Corrupt => Code::DataLoss,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The metadata key that carries an error's correlation id to the caller.
pub const CORRELATION_ID_KEY: &str = "secretd-correlation-id";

/// What a caller is told when the store's message is not for it: the kind,
/// in secretd's words. The store's own message may quote the backend (an
/// AWS role ARN and account id, a Vault or Key Vault server message), so it
/// goes to the log only, under the correlation id the caller is given.
fn generic_message(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "the secret was not found",
        ErrorKind::AlreadyExists => "the secret backend refused the write: the name is taken",
        ErrorKind::InvalidName => "the secret backend refused the name, tags or request",
        ErrorKind::TooLarge => "the secret backend refused the value as too large",
        ErrorKind::PermissionDenied => "the secret backend refused secretd's credentials",
        ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Throttled => "the secret backend is unavailable",
        ErrorKind::DeadlineExceeded => "the call's deadline passed before the secret backend answered",
        ErrorKind::Unsupported => "the secret backend does not support this",
        ErrorKind::Corrupt => "the secret backend returned data that cannot be read back",
        ErrorKind::Internal => "internal error",
    }
}

/// Converts a store error for the caller: the kind's code always; the
/// store's message only when it is secretd's own wording
/// ([`StoreError::is_for_callers`]), otherwise a generic message per kind
/// and a correlation id (in the message and in the `secretd-correlation-id`
/// metadata) that finds the detail in the log. Never a value either way.
pub fn from_store_error(error: &StoreError) -> Status {
    let kind = error.kind();
    let code = code_for(kind);
    let cause = std::error::Error::source(error);
    let severe = matches!(kind, ErrorKind::Internal | ErrorKind::Corrupt | ErrorKind::PermissionDenied);
    if error.is_for_callers() {
        let message = match kind {
            ErrorKind::PermissionDenied => format!("{}: {}", generic_message(kind), error.message()),
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Throttled => {
                format!("{}: {}", generic_message(kind), error.message())
            }
            _ => error.message().to_owned(),
        };
        if severe {
            tracing::error!(kind = %kind, error = %error, cause = ?cause, "backend error");
        } else if kind.is_transient() {
            tracing::warn!(kind = %kind, error = %error, cause = ?cause, "backend error");
        }
        return Status::new(code, message);
    }
    let id = format!("{:016x}", rand::random::<u64>());
    if severe {
        tracing::error!(correlation_id = %id, kind = %kind, error = %error, cause = ?cause, "backend error");
    } else {
        tracing::warn!(correlation_id = %id, kind = %kind, error = %error, cause = ?cause, "backend error");
    }
    let mut status = Status::new(code, format!("{} (correlation id {id})", generic_message(kind)));
    if let Ok(value) = id.parse() {
        status.metadata_mut().insert(CORRELATION_ID_KEY, value);
    }
    status
}

/// The request itself is wrong: a malformed field, or one over a limit the
/// configuration sets. The same call fails again unchanged.
pub fn invalid_request(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

/// A store's refusal of a name, tags or filter the caller gave: secretd's
/// own wording about the caller's input, so it is shown as it is.
pub fn invalid_input(error: &StoreError) -> Status {
    invalid_request(error.message().to_owned())
}

/// The policy, a minting rule or an admin's reach refused the caller.
pub fn denied(reason: impl Into<String>) -> Status {
    Status::permission_denied(reason)
}

/// Whether `status` is the caller's denial (as opposed to a failure).
pub fn is_denied(status: &Status) -> bool {
    status.code() == Code::PermissionDenied
}

/// Whether `status` refuses the request's shape, before any policy ran.
pub fn is_invalid_request(status: &Status) -> bool {
    status.code() == Code::InvalidArgument
}

/// The caller is over a rate limit; the same call may pass later.
pub fn rate_limited(message: impl Into<String>) -> Status {
    Status::resource_exhausted(message)
}

/// The caller did not prove who it is. The answer never says what was
/// wrong: that would help someone guessing credentials.
pub fn unauthenticated() -> Status {
    Status::unauthenticated("authentication required")
}

/// Too many failed authentications from one address for one user.
pub fn authentication_rate_limited() -> Status {
    rate_limited("too many failed authentications; try again later")
}

/// The audit queue is full: a call that cannot be audited is not served.
pub fn audit_busy(busy: &impl std::fmt::Display) -> Status {
    Status::unavailable(busy.to_string())
}

/// An admin named a principal or token that is not there.
pub fn no_such_subject(message: impl Into<String>) -> Status {
    Status::not_found(message)
}

/// Token administration on a secretd configured without a state store.
pub fn no_state_store() -> Status {
    Status::failed_precondition("this secretd has no state store")
}

/// Converts a state-store error. A database failure is logged here, since
/// the caller is told only that the store is unavailable.
pub fn from_state_error(error: StateError) -> Status {
    match error {
        StateError::AlreadyExists(_) => Status::already_exists(error.to_string()),
        StateError::NotFound(_) => Status::not_found(error.to_string()),
        StateError::Database(ref source) => {
            tracing::error!(error = %source, "state store error");
            Status::unavailable(error.to_string())
        }
    }
}

/// The code a call ends with, for its audit record and metrics.
pub fn outcome_code<T>(result: &Result<T, Status>) -> Code {
    result.as_ref().map_or_else(|s| s.code(), |_| Code::Ok)
}

/// The upper-case name of a code, as gRPC tools print it (`NOT_FOUND`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A write or delete on a route whose backend is read-only
/// (`secret.read-only`, or a dedicated entry's `read-only`): refused before
/// any backend call.
pub fn read_only_backend(backend: &str) -> Status {
    Status::failed_precondition(format!(
        "backend {backend} is read-only: secretd sends it no writes (change the secret where it is managed, or set \
         read-only: false)"
    ))
}

/// A `subkey` read whose secret has no such member. The code tells a
/// missing member (NOT_FOUND: the secret is there, the name the caller gave
/// is not) from a value that cannot have members (FAILED_PRECONDITION: the
/// secret must change, not the call). The message names the member, which
/// the caller gave, and never quotes the value.
pub fn no_such_member(secret: &secretd_core::SecretName, subkey: &str, error: MemberError) -> Status {
    match error {
        MemberError::Missing => Status::not_found(format!("secret {secret} has no member {subkey:?}")),
        MemberError::NotAnObject => {
            Status::failed_precondition(format!("secret {secret} is not a JSON object, so it has no member {subkey:?}"))
        }
        MemberError::Duplicate => Status::failed_precondition(format!(
            "secret {secret} has member {subkey:?} more than once; which one is meant is ambiguous"
        )),
        MemberError::NotText => Status::failed_precondition(format!(
            "member {subkey:?} of secret {secret} is a JSON string that is not valid Unicode"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_credential_failure_is_not_the_callers_denial() {
        let status = from_store_error(&StoreError::new(ErrorKind::PermissionDenied, "403 from backend"));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("refused secretd's credentials"));
    }

    /// Runs `f` with the log captured, as the daemon writes it.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let result = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        (result, text)
    }

    fn correlation_id(status: &Status) -> String {
        let message = status.message();
        let id = message
            .split("(correlation id ")
            .nth(1)
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("no correlation id in {message:?}"));
        let carried = status.metadata().get(CORRELATION_ID_KEY).expect("the id travels in the metadata too");
        assert_eq!(carried.to_str().unwrap(), id);
        id.to_owned()
    }

    /// Issue #12, item 15: backend text (here AWS's AccessDenied naming a
    /// role ARN and the account id) never reaches the caller; the caller
    /// gets the code, a generic message and a correlation id, which finds
    /// the detail in the log.
    #[test]
    fn backend_text_stays_in_the_log_under_a_correlation_id() {
        let arn = "arn:aws:sts::123456789012:assumed-role/secretd-prod/i-0abc";
        let detail = format!("User: {arn} is not authorized to perform: secretsmanager:GetSecretValue");
        let cases = [
            (ErrorKind::PermissionDenied, Code::Unavailable),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::Throttled, Code::Unavailable),
            (ErrorKind::Internal, Code::Internal),
            (ErrorKind::Corrupt, Code::DataLoss),
            (ErrorKind::InvalidName, Code::InvalidArgument),
            (ErrorKind::AlreadyExists, Code::AlreadyExists),
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::TooLarge, Code::InvalidArgument),
            (ErrorKind::Unsupported, Code::Unimplemented),
        ];
        let mut ids = std::collections::BTreeSet::new();
        for (kind, code) in cases {
            let error = StoreError::new(kind, format!("Secrets Manager answered while reading main/team/db: {detail}"));
            let (status, log) = logged(|| from_store_error(&error));
            assert_eq!(status.code(), code, "{kind}");
            for leak in [arn, "123456789012", "Secrets Manager answered"] {
                assert!(!status.message().contains(leak), "{kind}: {leak:?} reached the caller: {}", status.message());
            }
            assert!(status.message().starts_with(generic_message(kind)), "{kind}: {}", status.message());
            let id = correlation_id(&status);
            let line =
                log.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("{kind}: {id} not logged: {log}"));
            assert!(line.contains(arn), "{kind}: the log line of {id} holds the detail: {line}");
            ids.insert(id);
        }
        assert_eq!(ids.len(), cases.len(), "each error has its own correlation id");
    }

    /// secretd's own words about what the caller asked stay as they are.
    #[test]
    fn our_own_messages_reach_the_caller() {
        let missing = from_store_error(&StoreError::not_found("main/team/db"));
        assert_eq!((missing.code(), missing.message()), (Code::NotFound, "secret main/team/db not found"));
        let open = StoreError::unavailable("vault is failing; its circuit breaker is open").for_callers();
        let status = from_store_error(&open);
        assert_eq!(
            status.message(),
            "the secret backend is unavailable: vault is failing; its circuit breaker is open"
        );
        assert!(status.metadata().get(CORRELATION_ID_KEY).is_none());
    }

    /// Where a `Status::...(` or `Code::...` path in `text` stands outside
    /// test code, as `line: text`. Test modules (`#[cfg(test)] mod x {`
    /// up to its closing `}` at column 0, as rustfmt writes it) and comment
    /// lines are skipped: tests compare codes, they decide none.
    fn code_decisions(text: &str) -> Vec<String> {
        fn is_ident(c: char) -> bool {
            c.is_ascii_alphanumeric() || c == '_'
        }
        /// `word::` where `word` starts an identifier (not `ExitCode::`).
        fn paths_of<'t>(line: &'t str, word: &'static str) -> impl Iterator<Item = &'t str> + 't {
            line.match_indices(word).filter_map(move |(at, _)| {
                let before_ok = !line[..at].chars().next_back().is_some_and(is_ident);
                before_ok.then(|| &line[at + word.len()..])
            })
        }
        let mut found = Vec::new();
        let mut lines = text.lines().enumerate().peekable();
        while let Some((number, line)) = lines.next() {
            let trimmed = line.trim_start();
            if trimmed == "#[cfg(test)]" {
                let opens_module = lines
                    .peek()
                    .is_some_and(|(_, next)| next.trim_start().starts_with("mod ") && next.trim_end().ends_with('{'));
                if opens_module {
                    for (_, inner) in lines.by_ref() {
                        if inner == "}" {
                            break;
                        }
                    }
                }
                continue;
            }
            if trimmed.starts_with("//") {
                continue;
            }
            let builds_status = paths_of(line, "Status::").any(|rest| {
                let call: String = rest.chars().take_while(|&c| is_ident(c)).collect();
                call.starts_with(|c: char| c.is_ascii_lowercase()) && rest[call.len()..].starts_with('(')
            });
            let names_code = paths_of(line, "Code::").next().is_some();
            if builds_status || names_code {
                found.push(format!("{}: {}", number + 1, trimmed));
            }
        }
        found
    }

    fn rust_files(dir: &std::path::Path, into: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                rust_files(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                into.push(path);
            }
        }
    }

    /// This module is the only place that decides a gRPC code: a code
    /// chosen elsewhere drifts from the mapping callers rely on.
    #[test]
    fn no_other_module_decides_a_grpc_code() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        // Test-only files, and metrics, which labels the code a finished
        // response already carries (it decodes `grpc-status`; it decides
        // nothing a caller sees).
        let allowed = ["status.rs", "metrics.rs", "resilience/tests.rs"];
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        assert!(files.len() > 10, "the scan found the source tree: {files:?}");
        let mut offenders = Vec::new();
        for file in &files {
            let relative = file.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
            if allowed.contains(&relative.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            offenders.extend(code_decisions(&text).into_iter().map(|hit| format!("src/{relative}:{hit}")));
        }
        assert!(offenders.is_empty(), "build statuses through crate::status instead:\n{}", offenders.join("\n"));
    }

    #[test]
    fn the_scan_sees_decisions_and_skips_tests_and_lookalikes() {
        let text = "fn a() -> Status { Status::not_found(\"x\") }\n\
                    fn b() { tonic::Status::new(tonic::Code::Internal, \"y\"); }\n\
                    fn c() -> ExitCode { let _ = StatusCode::OK; ExitCode::FAILURE }\n\
                    // Status::internal(\"in a comment\")\n\
                    fn d(s: &Status) -> Code { s.code() }\n\
                    #[cfg(test)]\n\
                    mod tests {\n    fn t() { Status::internal(\"z\"); }\n}\n\
                    fn e() { Status::unavailable(\"after the tests\"); }\n";
        let found = code_decisions(text);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("1: ") && found[1].starts_with("2: ") && found[2].starts_with("10: "),
            "{found:?}"
        );
    }

    #[test]
    fn every_kind_has_a_distinct_meaningful_code() {
        assert_eq!(code_for(ErrorKind::NotFound), Code::NotFound);
        assert_eq!(code_for(ErrorKind::InvalidName), Code::InvalidArgument);
        assert_eq!(code_for(ErrorKind::Corrupt), Code::DataLoss);
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
    }
}
