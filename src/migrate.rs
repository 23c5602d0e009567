//! The migration engine behind `secretd migrate`: copies the secrets of one
//! store into another, while the daemon may keep serving both.
//!
//! The selection is scanned from the source first (names and latest
//! metadata, a page at a time), then each secret is compared with the
//! target and copied if needed, a few at a time. Nothing is ever deleted
//! from the target, and only names reach the report, the progress bar and
//! the logs, never a value.
//!
//! # When a secret counts as present
//! A secret's versions are compared by value, oldest first, after merging
//! runs of consecutive versions with the same value into their last one
//! (on both sides: such a run is a tag change, and it is copied as one
//! version). Without `--all-versions` only the latest version is looked at.
//!
//! - The target has no such secret: the versions are copied (the latest
//!   only, without `--all-versions`) → *copied*.
//! - The target's latest version matches source version `i`, and so do
//!   the versions before it, as far as both sides go (a target that pruned
//!   its oldest versions has fewer): the source's versions after `i` are
//!   appended → *copied*, or, when `i` is the source's latest, *already
//!   present*. Of several such `i`, the one matching most versions wins,
//!   then the earliest. This is what makes a rerun after a kill append only
//!   the missing tail, and a second run copy nothing. (A pruned target
//!   whose kept window repeats earlier source values may align too early
//!   and get the tail again: the values stay right, history grows.)
//! - Otherwise the target holds another value (someone wrote to it, or it
//!   was never a copy) → *skipped (different)*, unless `overwrite`, which
//!   appends the source's versions on top of the target's own history.
//!
//! The tags compared are the latest version's: the target's must include
//! every source tag (a target behind a tag scope adds its own). Where the
//! values match but the tags do not, as after a kill between a backend's
//! value and tag writes, the latest value is written again with its tags →
//! *copied*.
//!
//! A target that keeps no versions, or a source that has none, is compared
//! and copied by its latest version only.

use std::{
    fmt,
    io::IsTerminal,
    time::{Duration, Instant},
};

use futures::{stream, StreamExt};
use secretd_core::{
    ErrorKind, PageRequest, ScanSelection, Secret, SecretMetadata, SecretName, SecretStore, SecretValue, StoreError,
    Tags, Version,
};

/// What to migrate, and how.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub selection: ScanSelection,
    /// Every version, oldest first, instead of the latest only.
    pub all_versions: bool,
    /// Compare and report, write nothing.
    pub dry_run: bool,
    /// Copy over a target secret that holds another value.
    pub overwrite: bool,
    /// Secrets compared and copied at once.
    pub concurrency: usize,
    /// Secrets asked of the source per scan page.
    pub scan_page_size: usize,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            selection: ScanSelection::everything(),
            all_versions: false,
            dry_run: false,
            overwrite: false,
            concurrency: 8,
            scan_page_size: 1000,
        }
    }
}

/// What happened to one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written to the target (or, in a dry run, would have been), with this
    /// many versions.
    Copied {
        versions: usize,
    },
    AlreadyPresent,
    /// The target holds another value and `overwrite` is off.
    SkippedDifferent,
    /// Deleted from the source after the scan listed it.
    Gone,
    /// The error, which names the secret but never holds its value.
    Failed(String),
}

/// Told about the run as it goes; the terminal's progress bar is one.
pub trait Progress: Send + Sync {
    /// The scan is done: this many secrets will be looked at.
    fn scanned(&self, _total: usize) {}
    /// One secret is done.
    fn finished(&self, _name: &SecretName, _outcome: &Outcome) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// An indicatif bar on stderr, only when stderr is a terminal: a log file
/// or a pipe gets the summary alone.
pub struct TerminalProgress {
    bar: Option<indicatif::ProgressBar>,
}

impl TerminalProgress {
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message("scanning the source");
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar }
    }
}

impl Default for TerminalProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for TerminalProgress {
    fn scanned(&self, total: usize) {
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} secrets, {per_sec}, eta {eta} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message("");
        }
    }

    fn finished(&self, _name: &SecretName, _outcome: &Outcome) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// What a run did, secret by secret (names only).
#[derive(Debug, Clone, Default)]
pub struct MigrationReport {
    pub dry_run: bool,
    pub copied: Vec<SecretName>,
    /// Versions written (or, in a dry run, to write) for the copied secrets.
    pub versions_copied: usize,
    pub already_present: Vec<SecretName>,
    pub skipped_different: Vec<SecretName>,
    pub gone: Vec<SecretName>,
    pub failed: Vec<(SecretName, String)>,
    /// The source could not be scanned; nothing was copied.
    pub scan_error: Option<String>,
    pub elapsed: Duration,
}

impl MigrationReport {
    /// True when nothing failed: the exit status of `secretd migrate`.
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty() && self.scan_error.is_none()
    }

    pub fn total(&self) -> usize {
        self.copied.len()
            + self.already_present.len()
            + self.skipped_different.len()
            + self.gone.len()
            + self.failed.len()
    }

    fn record(&mut self, name: SecretName, outcome: Outcome) {
        match outcome {
            Outcome::Copied { versions } => {
                self.copied.push(name);
                self.versions_copied += versions;
            }
            Outcome::AlreadyPresent => self.already_present.push(name),
            Outcome::SkippedDifferent => self.skipped_different.push(name),
            Outcome::Gone => self.gone.push(name),
            Outcome::Failed(why) => self.failed.push((name, why)),
        }
    }

    /// The summary, naming at most `limit` secrets per line of it.
    pub fn summary(&self, limit: usize) -> String {
        let mut out = String::new();
        let list = |out: &mut String, names: &mut dyn Iterator<Item = String>, count: usize| {
            for name in names.take(limit) {
                out.push_str(&format!("    {name}\n"));
            }
            if count > limit {
                out.push_str(&format!("    … and {} more\n", count - limit));
            }
        };
        let mode = if self.dry_run { " (dry run: nothing was written)" } else { "" };
        out.push_str(&format!("{} secrets in the selection, done in {:.1?}{mode}\n", self.total(), self.elapsed));
        if let Some(error) = &self.scan_error {
            out.push_str(&format!("  the source could not be scanned: {error}\n"));
        }
        let copied = if self.dry_run { "to copy" } else { "copied" };
        out.push_str(&format!("  {copied}: {} ({} versions)\n", self.copied.len(), self.versions_copied));
        list(&mut out, &mut self.copied.iter().map(ToString::to_string), self.copied.len());
        out.push_str(&format!("  already present: {}\n", self.already_present.len()));
        list(&mut out, &mut self.already_present.iter().map(ToString::to_string), self.already_present.len());
        out.push_str(&format!(
            "  skipped, different in the target (--overwrite copies them): {}\n",
            self.skipped_different.len()
        ));
        list(&mut out, &mut self.skipped_different.iter().map(ToString::to_string), self.skipped_different.len());
        if !self.gone.is_empty() {
            out.push_str(&format!("  gone from the source during the run: {}\n", self.gone.len()));
            list(&mut out, &mut self.gone.iter().map(ToString::to_string), self.gone.len());
        }
        out.push_str(&format!("  failed: {}\n", self.failed.len()));
        list(&mut out, &mut self.failed.iter().map(|(n, why)| format!("{n}: {why}")), self.failed.len());
        if self.copied.is_empty() && self.succeeded() && self.skipped_different.is_empty() {
            out.push_str("  nothing to copy: the target already holds the selection\n");
        }
        out
    }
}

impl fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary(50))
    }
}

/// Copies the selection from `from` to `to`; see the module docs for the
/// rules. Never fails as a whole: what went wrong is in the report.
pub async fn migrate(from: &dyn SecretStore, to: &dyn SecretStore, options: &MigrateOptions) -> MigrationReport {
    migrate_with_progress(from, to, options, &NoProgress).await
}

/// [`migrate`], telling `progress` as it goes.
pub async fn migrate_with_progress(
    from: &dyn SecretStore,
    to: &dyn SecretStore,
    options: &MigrateOptions,
    progress: &dyn Progress,
) -> MigrationReport {
    let started = Instant::now();
    let mut report = MigrationReport { dry_run: options.dry_run, ..Default::default() };
    let listed = match scan_all(from, &options.selection, options.scan_page_size).await {
        Ok(listed) => listed,
        Err(e) => {
            report.scan_error = Some(e.to_string());
            report.elapsed = started.elapsed();
            return report;
        }
    };
    progress.scanned(listed.len());
    let mut outcomes = stream::iter(listed)
        .map(|metadata| async move {
            let outcome = match migrate_one(from, to, &metadata.name, options).await {
                Ok(outcome) => outcome,
                Err(e) => Outcome::Failed(e.to_string()),
            };
            if let Outcome::Failed(why) = &outcome {
                tracing::warn!(secret = %metadata.name, "migrating failed: {why}");
            }
            progress.finished(&metadata.name, &outcome);
            (metadata.name, outcome)
        })
        .buffer_unordered(options.concurrency.max(1));
    while let Some((name, outcome)) = outcomes.next().await {
        report.record(name, outcome);
    }
    for list in [&mut report.copied, &mut report.already_present, &mut report.skipped_different, &mut report.gone] {
        list.sort();
    }
    report.failed.sort_by(|a, b| a.0.cmp(&b.0));
    report.elapsed = started.elapsed();
    report
}

async fn scan_all(
    store: &dyn SecretStore,
    selection: &ScanSelection,
    page_size: usize,
) -> Result<Vec<SecretMetadata>, StoreError> {
    let mut items = Vec::new();
    let mut token = None;
    loop {
        let page = store.scan(selection, &PageRequest { size: page_size.max(1), token }).await?;
        items.extend(page.items);
        match page.next_token {
            Some(next) => token = Some(next),
            None => return Ok(items),
        }
    }
}

/// A version as compared: its value and (for the latest) its tags.
struct Written {
    value: SecretValue,
    tags: Tags,
}

impl From<Secret> for Written {
    fn from(secret: Secret) -> Self {
        Self { value: secret.value, tags: secret.metadata.tags }
    }
}

async fn migrate_one(
    from: &dyn SecretStore,
    to: &dyn SecretStore,
    name: &SecretName,
    options: &MigrateOptions,
) -> Result<Outcome, StoreError> {
    let every_version = options.all_versions && to.capabilities().versions;
    let Some(source) = history(from, name, every_version).await? else {
        return Ok(Outcome::Gone);
    };
    let target = history(to, name, every_version).await?.unwrap_or_default();
    let (source, target) = (merge_repeats(source), merge_repeats(target));
    let plan = plan(&source, &target, options.overwrite);
    let to_write: &[Written] = match plan {
        Plan::Present => return Ok(Outcome::AlreadyPresent),
        Plan::Different => return Ok(Outcome::SkippedDifferent),
        Plan::Append(from_index) => &source[from_index..],
        Plan::RetagLatest => &source[source.len().saturating_sub(1)..],
    };
    if !options.dry_run {
        for version in to_write {
            to.put(name, &version.value, &version.tags, None).await?;
        }
    }
    Ok(Outcome::Copied { versions: to_write.len() })
}

/// A secret's versions in a store, oldest first (the latest only, unless
/// `every_version` and the store keeps versions); `None` if it is missing.
async fn history(
    store: &dyn SecretStore,
    name: &SecretName,
    every_version: bool,
) -> Result<Option<Vec<Written>>, StoreError> {
    let missing = |e: &StoreError| e.kind() == ErrorKind::NotFound;
    let versions: Option<Vec<Version>> = if every_version && store.capabilities().versions {
        match store.versions(name).await {
            Ok(versions) => Some(versions),
            Err(e) if missing(&e) => return Ok(None),
            Err(e) if e.kind() == ErrorKind::Unsupported => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let mut written = Vec::new();
    match versions {
        Some(versions) => {
            for version in versions {
                match store.get(name, Some(&version)).await {
                    Ok(secret) => written.push(Written::from(secret)),
                    // Pruned since the listing: it is history no store reads.
                    Err(e) if missing(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        None => match store.get(name, None).await {
            Ok(secret) => written.push(Written::from(secret)),
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(e),
        },
    }
    Ok((!written.is_empty()).then_some(written))
}

/// Merges each run of consecutive versions with one value into its last.
fn merge_repeats(versions: Vec<Written>) -> Vec<Written> {
    let mut merged: Vec<Written> = Vec::with_capacity(versions.len());
    for version in versions {
        match merged.last_mut() {
            Some(last) if last.value == version.value => *last = version,
            _ => merged.push(version),
        }
    }
    merged
}

#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Present,
    Different,
    /// Write the source's versions from this index on.
    Append(usize),
    /// The values are all there but the latest's tags are not.
    RetagLatest,
}

/// Where the target's versions sit in the source's: the target's latest
/// is aligned with each source version in turn, and the alignment holds
/// when every version both sides have before it matches. The one matching
/// the most versions wins; of equals, the earliest (a run cut short wrote a
/// prefix). A target whose oldest versions were pruned still aligns, by
/// the versions it kept.
fn plan(source: &[Written], target: &[Written], overwrite: bool) -> Plan {
    let aligned = (0..source.len())
        .filter_map(|i| {
            let matched = target.len().min(i + 1);
            let same = source[i + 1 - matched..=i].iter().zip(&target[target.len() - matched..]);
            (matched > 0 && same.clone().all(|(s, t)| s.value == t.value)).then_some((i, matched))
        })
        .max_by(|(i, m), (j, n)| m.cmp(n).then(j.cmp(i)));
    match aligned {
        None if target.is_empty() || overwrite => Plan::Append(0),
        None => Plan::Different,
        Some((i, _)) if i + 1 < source.len() => Plan::Append(i + 1),
        Some(_) => match (source.last(), target.last()) {
            (Some(source_latest), Some(target_latest)) if target_latest.tags.contains_all(&source_latest.tags) => {
                Plan::Present
            }
            _ => Plan::RetagLatest,
        },
    }
}

#[cfg(test)]
mod tests;
