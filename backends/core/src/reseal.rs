//! Re-sealing stored values under the current secret of a [`Keyring`]
//! (`secretd rekey`): what a store that encrypts at rest offers, and what it
//! reports, so one driver can run it on any of them.
//!
//! A re-seal walks every stored version in a fixed order and rewrites only
//! the values not yet under the current key, each with a compare-and-set on
//! the bytes it read: a concurrent put or delete is never undone, and a
//! reader always finds either the old or the new ciphertext, both of which
//! open. Rerunning is how a stopped run resumes: values already under the
//! current key are counted and left alone.
//!
//! [`Keyring`]: crate::Keyring

use async_trait::async_trait;

use crate::StoreError;

/// The counts so far, handed to the progress callback after every batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealProgress {
    /// How many stored values there were when the run started (an
    /// estimate: writers go on meanwhile).
    pub estimated_total: u64,
    /// How many have been looked at.
    pub seen: u64,
    pub resealed: u64,
    pub already_current: u64,
    /// Changed or deleted by somebody else between reading and rewriting:
    /// left as that writer left them.
    pub skipped: u64,
    pub failed: u64,
}

/// A stored value that could not be re-sealed: which one and why, never
/// its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResealFailure {
    /// E.g. `secret main/team.db/password version 3`.
    pub item: String,
    /// The error's message, which by the rules of [`StoreError`] holds no
    /// value.
    pub reason: String,
}

/// The outcome of a whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// The key id everything was re-sealed under.
    pub key_id: String,
    pub total: u64,
    pub resealed: u64,
    pub already_current: u64,
    pub skipped: u64,
    pub failed: Vec<ResealFailure>,
}

impl ResealReport {
    /// Whether every value the run saw is now under the current key.
    /// Skipped values were written by somebody else meanwhile; a rerun
    /// checks them.
    pub fn is_complete(&self) -> bool {
        self.skipped == 0 && self.failed.is_empty()
    }

    pub fn record(&mut self, outcome: ResealOutcome) {
        self.total += 1;
        match outcome {
            ResealOutcome::Resealed => self.resealed += 1,
            ResealOutcome::AlreadyCurrent => self.already_current += 1,
            ResealOutcome::Skipped => self.skipped += 1,
            ResealOutcome::Failed(failure) => self.failed.push(failure),
        }
    }

    pub fn progress(&self, estimated_total: u64) -> ResealProgress {
        ResealProgress {
            estimated_total,
            seen: self.total,
            resealed: self.resealed,
            already_current: self.already_current,
            skipped: self.skipped,
            failed: self.failed.len() as u64,
        }
    }
}

/// What one stored value came to; stores tally these into a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResealOutcome {
    Resealed,
    AlreadyCurrent,
    Skipped,
    Failed(ResealFailure),
}

/// The progress callback: called from the task running the re-seal.
pub type ResealProgressFn<'a> = &'a (dyn Fn(&ResealProgress) + Send + Sync);

/// A store whose values are sealed under a rotatable secret.
#[async_trait]
pub trait Reseal: Send + Sync {
    /// The key id of the current secret; safe to print.
    fn current_key_id(&self) -> String;

    /// Fails, naming `secret`, when the first stored value (in the store's
    /// own order) is sealed under a key id that neither the current nor a
    /// previous secret has: a wrong secret, or one removed from
    /// `previous-secrets` too early. One value, so the check is cheap
    /// enough for every start; reads of any other such value fail alone.
    async fn check_keys(&self) -> Result<(), StoreError>;

    /// Re-seals every stored version not under the current secret. Errors
    /// with one value (it cannot be opened, say) are reported in
    /// [`ResealReport::failed`] and the run goes on; an error of the store
    /// itself (unreachable, say) ends it, and a rerun picks up from the
    /// start, skipping what is done.
    async fn reseal(&self, progress: ResealProgressFn<'_>) -> Result<ResealReport, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_tallies_outcomes() {
        let mut report = ResealReport::default();
        for outcome in [
            ResealOutcome::Resealed,
            ResealOutcome::Resealed,
            ResealOutcome::AlreadyCurrent,
            ResealOutcome::Skipped,
            ResealOutcome::Failed(ResealFailure { item: "secret a/b/c version 1".into(), reason: "corrupt".into() }),
        ] {
            report.record(outcome);
        }
        assert_eq!((report.total, report.resealed, report.already_current, report.skipped), (5, 2, 1, 1));
        assert_eq!(report.failed.len(), 1);
        assert!(!report.is_complete());
        let progress = report.progress(9);
        assert_eq!((progress.estimated_total, progress.seen, progress.failed), (9, 5, 1));
        let mut done = ResealReport::default();
        done.record(ResealOutcome::AlreadyCurrent);
        assert!(done.is_complete());
    }
}
