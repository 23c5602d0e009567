//! `secretd rekey`: re-seals every value a store keeps encrypted at rest
//! (SQL, Elasticsearch) under the backend's current `secret`, so that the
//! old one can then be removed from `previous-secrets`.
//!
//! The store does the work ([`Reseal`]): compare-and-set rewrites in key
//! order, safe beside a serving daemon, and idempotent, so an interrupted
//! run resumes by running it again. This module drives it for the CLI: a
//! progress bar on a terminal, and one summary line at the end.
//!
//! The CLI builds the store from the configuration, with `secret` and
//! `previous-secrets` in its keyring, and calls [`run`] with
//! `std::io::stderr().is_terminal()` as `show_progress`, prints
//! [`RekeyRun::failure_lines`] and [`RekeyRun::summary`], and fails unless
//! [`RekeyRun::is_complete`]. Like the daemon's start ([`Reseal::check_keys`]),
//! a run refuses to begin when the configured secrets cannot open what is
//! stored, rather than listing every value as failed.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use secretd_core::{Reseal, ResealProgress, ResealReport, StoreError};

/// Why a run stopped before the end: the store failed (unreachable, say).
/// What it did until then stays done; running again goes on from there.
#[derive(Debug, thiserror::Error)]
#[error("rekey {backend}: {source}; what was re-sealed so far stays so, run rekey again to go on")]
pub struct RekeyError {
    pub backend: String,
    #[source]
    pub source: StoreError,
}

/// A finished run: the store's report and how long it took.
#[derive(Debug, Clone)]
pub struct RekeyRun {
    pub backend: String,
    pub report: ResealReport,
    pub elapsed: Duration,
}

impl RekeyRun {
    /// Whether every stored value is now under the current secret, so the
    /// previous ones may be removed.
    pub fn is_complete(&self) -> bool {
        self.report.is_complete()
    }

    /// The one line printed at the end.
    pub fn summary(&self) -> String {
        let r = &self.report;
        let mut line = format!(
            "rekey {}: {} stored values: {} re-sealed under key id {}, {} already current, {} changed meanwhile, \
             {} failed, in {:.1} s",
            self.backend,
            r.total,
            r.resealed,
            r.key_id,
            r.already_current,
            r.skipped,
            r.failed.len(),
            self.elapsed.as_secs_f64()
        );
        if !r.failed.is_empty() {
            line.push_str("; keep previous-secrets until the failures above are fixed");
        } else if r.skipped > 0 {
            line.push_str("; run rekey again to check the values changed meanwhile");
        } else {
            line.push_str("; the previous secrets can now be removed");
        }
        line
    }

    /// One line per value that could not be re-sealed: its name and why,
    /// never its value.
    pub fn failure_lines(&self) -> Vec<String> {
        self.report.failed.iter().map(|f| format!("rekey {}: {}: {}", self.backend, f.item, f.reason)).collect()
    }
}

/// Re-seals everything in `store`, the backend named `backend` in messages.
/// With `show_progress`, a progress bar is drawn on stderr.
pub async fn run(store: &dyn Reseal, backend: &str, show_progress: bool) -> Result<RekeyRun, RekeyError> {
    let started = Instant::now();
    let failed = |source| RekeyError { backend: backend.to_owned(), source };
    store.check_keys().await.map_err(failed)?;
    let bar = progress_bar(show_progress);
    let update = |p: &ResealProgress| {
        // Writers add values while the run goes on: the estimate grows
        // rather than the bar overflowing.
        bar.set_length(p.estimated_total.max(p.seen));
        bar.set_position(p.seen);
        bar.set_message(progress_message(p));
    };
    let outcome = store.reseal(&update).await;
    bar.finish_and_clear();
    let report = outcome.map_err(failed)?;
    Ok(RekeyRun { backend: backend.to_owned(), report, elapsed: started.elapsed() })
}

const PROGRESS_TEMPLATE: &str = "{elapsed_precise} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta}) {msg}";

fn progress_bar(show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    // The template is a constant, checked by a test: no error to handle.
    if let Ok(style) = ProgressStyle::with_template(PROGRESS_TEMPLATE) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn progress_message(p: &ResealProgress) -> String {
    format!(
        "{} re-sealed, {} current, {} changed meanwhile, {} failed",
        p.resealed, p.already_current, p.skipped, p.failed
    )
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use secretd_core::{Keyring, ResealFailure, SecretName, SecretStore, SecretValue, Tags};
    use secretd_sql::{SqlOptions, SqlStore};

    use super::*;

    const OLD: &str = "rekey-cli-old-secret-0123456789abcdef";
    const NEW: &str = "rekey-cli-new-secret-0123456789abcdef";

    #[test]
    fn the_progress_template_is_valid() {
        assert!(ProgressStyle::with_template(PROGRESS_TEMPLATE).is_ok());
    }

    #[test]
    fn summary_says_what_to_do_next() {
        let mut run = RekeyRun {
            backend: "jdbc".into(),
            report: ResealReport {
                key_id: "0011223344556677".into(),
                total: 10,
                resealed: 7,
                already_current: 3,
                ..ResealReport::default()
            },
            elapsed: Duration::from_millis(1500),
        };
        let line = run.summary();
        assert_eq!(
            line,
            "rekey jdbc: 10 stored values: 7 re-sealed under key id 0011223344556677, 3 already current, \
             0 changed meanwhile, 0 failed, in 1.5 s; the previous secrets can now be removed"
        );
        assert!(run.is_complete());
        run.report.skipped = 1;
        assert!(run.summary().ends_with("run rekey again to check the values changed meanwhile"));
        assert!(!run.is_complete());
        run.report.failed.push(ResealFailure { item: "secret main/a/b version 2".into(), reason: "corrupt".into() });
        assert!(run.summary().ends_with("keep previous-secrets until the failures above are fixed"));
        assert_eq!(run.failure_lines(), vec!["rekey jdbc: secret main/a/b version 2: corrupt".to_owned()]);
    }

    /// The driver on a real SQLite store: a value under the old secret is
    /// re-sealed, a second run has nothing to do, and the progress bar
    /// (hidden here, as when stderr is no terminal) does not get in the way.
    #[tokio::test]
    async fn runs_a_real_store_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("rekey.db").display());
        let name = SecretName::parse("main", "team", "db/password").unwrap();
        let old = SqlStore::connect(&url, OLD, SqlOptions::default()).await.unwrap();
        old.put(&name, &SecretValue::from_slice(b"v1"), &Tags::new(), None).await.unwrap();
        old.put(&name, &SecretValue::from_slice(b"v2"), &Tags::new(), None).await.unwrap();
        let keys = Keyring::new(NEW, &[SecretString::from(OLD)]).unwrap();
        let store = SqlStore::connect_with_keys(&url, keys, SqlOptions::default()).await.unwrap();

        let first = run(&store, "jdbc", false).await.unwrap();
        assert_eq!((first.report.total, first.report.resealed), (2, 2));
        assert!(first.is_complete() && first.failure_lines().is_empty());
        assert!(first.summary().contains(&store.current_key_id()), "{}", first.summary());
        let second = run(&store, "jdbc", false).await.unwrap();
        assert_eq!((second.report.resealed, second.report.already_current), (0, 2));

        let new_only = SqlStore::connect(&url, NEW, SqlOptions::default()).await.unwrap();
        assert_eq!(new_only.get(&name, None).await.unwrap().value.expose(), b"v2");
    }

    #[tokio::test]
    async fn secrets_that_open_nothing_stored_stop_the_run_before_it_starts() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("wrong.db").display());
        let name = SecretName::parse("main", "team", "db/password").unwrap();
        let old = SqlStore::connect(&url, OLD, SqlOptions::default()).await.unwrap();
        old.put(&name, &SecretValue::from_slice(b"v1"), &Tags::new(), None).await.unwrap();
        // The old secret left out of previous-secrets.
        let store = SqlStore::connect(&url, NEW, SqlOptions::default()).await.unwrap();
        let err = run(&store, "jdbc", false).await.unwrap_err();
        assert!(err.to_string().starts_with("rekey jdbc: secret: stored values are sealed under key id"), "{err}");
        assert!(!err.to_string().contains(OLD) && !err.to_string().contains(NEW));
        assert_eq!(old.get(&name, None).await.unwrap().value.expose(), b"v1", "nothing was touched");
    }

    #[tokio::test]
    async fn a_store_failure_names_the_backend_and_says_to_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gone.db").display());
        let store = SqlStore::connect(&url, NEW, SqlOptions::default()).await.unwrap();
        // Without its table the store cannot walk anything: a store error,
        // not a per-value failure.
        let (pool, _) = secretd_sql::open_pool(&url, &SqlOptions { max_connections: 1 }, |_| {
            let mut none = sqlx::migrate::Migrator::DEFAULT;
            none.set_ignore_missing(true);
            none
        })
        .await
        .unwrap();
        sqlx::query("DROP TABLE secretd_secret_versions").execute(&pool).await.unwrap();
        let err = run(&store, "jdbc", false).await.unwrap_err();
        assert!(err.to_string().starts_with("rekey jdbc: database error"), "{err}");
        assert!(err.to_string().ends_with("run rekey again to go on"), "{err}");
    }
}
