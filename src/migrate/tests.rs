//! The migration rules, between two in-memory stores.

use std::sync::Arc;

use secretd_core::{
    testing::{Fault, FaultyStore, HaltingStore},
    ErrorKind, Namespace, ScopedStore, SecretName, SecretStore, SecretValue, TagScope, Tags, Tenant,
};
use secretd_memory::MemoryStore;

use super::*;

fn name(namespace: &str, key: &str) -> SecretName {
    SecretName::parse("main", namespace, key).unwrap()
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().copied().collect()
}

async fn put(store: &dyn SecretStore, name: &SecretName, value: &str, t: &Tags) {
    store.put(name, &SecretValue::from_slice(value.as_bytes()), t, None).await.unwrap();
}

async fn value_of(store: &dyn SecretStore, name: &SecretName) -> String {
    String::from_utf8(store.get(name, None).await.unwrap().value.expose().to_vec()).unwrap()
}

/// Every version's value, oldest first.
async fn history_of(store: &dyn SecretStore, name: &SecretName) -> Vec<String> {
    let mut values = Vec::new();
    for version in store.versions(name).await.unwrap() {
        let secret = store.get(name, Some(&version)).await.unwrap();
        values.push(String::from_utf8(secret.value.expose().to_vec()).unwrap());
    }
    values
}

/// A source with `count` secrets across two namespaces, each with a tag.
async fn seeded(count: usize) -> MemoryStore {
    let source = MemoryStore::new();
    for i in 0..count {
        let namespace = if i % 2 == 0 { "team.a" } else { "team.b" };
        put(&source, &name(namespace, &format!("k{i:03}")), &format!("value-{i}"), &tags(&[("n", &i.to_string())]))
            .await;
    }
    source
}

fn options() -> MigrateOptions {
    MigrateOptions { scan_page_size: 3, ..Default::default() }
}

#[tokio::test]
async fn copies_latest_values_with_tags_then_copies_nothing() {
    let source = seeded(7).await;
    let target = MemoryStore::new();
    let report = migrate(&source, &target, &options()).await;
    assert!(report.succeeded(), "{report}");
    assert_eq!((report.copied.len(), report.versions_copied, report.already_present.len()), (7, 7, 0));
    for i in 0..7 {
        let namespace = if i % 2 == 0 { "team.a" } else { "team.b" };
        let copy = target.get(&name(namespace, &format!("k{i:03}")), None).await.unwrap();
        assert_eq!(copy.value.expose(), format!("value-{i}").as_bytes());
        assert_eq!(copy.metadata.tags, tags(&[("n", &i.to_string())]));
    }
    let again = migrate(&source, &target, &options()).await;
    assert!(again.succeeded());
    assert_eq!((again.copied.len(), again.already_present.len()), (0, 7), "a second run copies nothing");
    assert!(again.summary(50).contains("copied: 0 (0 versions)"), "{again}");
    // Nothing was written twice.
    assert_eq!(target.versions(&name("team.a", "k000")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_different_target_value_is_kept_unless_overwrite() {
    let source = seeded(2).await;
    let target = MemoryStore::new();
    let contested = name("team.a", "k000");
    put(&target, &contested, "the target's own", &Tags::new()).await;
    let report = migrate(&source, &target, &options()).await;
    assert!(report.succeeded(), "skipping is not failing: {report}");
    assert_eq!(report.skipped_different, std::slice::from_ref(&contested));
    assert_eq!(report.copied, [name("team.b", "k001")]);
    assert_eq!(value_of(&target, &contested).await, "the target's own");

    let overwrite = MigrateOptions { overwrite: true, ..options() };
    let report = migrate(&source, &target, &overwrite).await;
    assert_eq!(report.copied, std::slice::from_ref(&contested));
    assert_eq!(value_of(&target, &contested).await, "value-0");
    // The target's own value stays as history, under the copy.
    assert_eq!(history_of(&target, &contested).await, ["the target's own", "value-0"]);
    let report = migrate(&source, &target, &options()).await;
    assert_eq!(report.already_present.len(), 2, "{report}");
}

#[tokio::test]
async fn all_versions_are_copied_in_order_and_only_the_missing_tail_later() {
    let source = MemoryStore::new();
    let n = name("app", "rotated");
    for value in ["v1", "v2", "v3"] {
        put(&source, &n, value, &tags(&[("rev", value)])).await;
    }
    let target = MemoryStore::new();
    let every = MigrateOptions { all_versions: true, ..options() };
    let report = migrate(&source, &target, &every).await;
    assert_eq!((report.copied.len(), report.versions_copied), (1, 3), "{report}");
    assert_eq!(history_of(&target, &n).await, ["v1", "v2", "v3"]);
    assert_eq!(target.get(&n, None).await.unwrap().metadata.tags, tags(&[("rev", "v3")]));

    // The source moves on; a rerun appends just what is new.
    put(&source, &n, "v4", &Tags::new()).await;
    put(&source, &n, "v5", &Tags::new()).await;
    let report = migrate(&source, &target, &every).await;
    assert_eq!((report.copied.len(), report.versions_copied), (1, 2), "{report}");
    assert_eq!(history_of(&target, &n).await, ["v1", "v2", "v3", "v4", "v5"]);
    let report = migrate(&source, &target, &every).await;
    assert_eq!(report.already_present, std::slice::from_ref(&n));

    // Without --all-versions the latest is what counts.
    let report = migrate(&source, &target, &options()).await;
    assert_eq!(report.already_present, [n]);
}

#[tokio::test]
async fn a_target_holding_a_prefix_gets_the_rest_and_a_different_history_is_skipped() {
    let source = MemoryStore::new();
    let target = MemoryStore::new();
    let (partial, diverged) = (name("app", "partial"), name("app", "diverged"));
    for value in ["a", "b", "c", "d"] {
        put(&source, &partial, value, &Tags::new()).await;
        put(&source, &diverged, value, &Tags::new()).await;
    }
    put(&target, &partial, "a", &Tags::new()).await;
    put(&target, &partial, "b", &Tags::new()).await;
    // Written to the target after a copy of "a" and "b": not ours to bury.
    for value in ["a", "b", "written-here"] {
        put(&target, &diverged, value, &Tags::new()).await;
    }
    let every = MigrateOptions { all_versions: true, ..options() };
    let report = migrate(&source, &target, &every).await;
    assert_eq!(report.copied, std::slice::from_ref(&partial));
    assert_eq!(report.versions_copied, 2);
    assert_eq!(report.skipped_different, std::slice::from_ref(&diverged));
    assert_eq!(history_of(&target, &partial).await, ["a", "b", "c", "d"]);
    assert_eq!(value_of(&target, &diverged).await, "written-here");
}

fn written(values: &[&str]) -> Vec<Written> {
    values.iter().map(|v| Written { value: SecretValue::from_slice(v.as_bytes()), tags: Tags::new() }).collect()
}

#[test]
fn plans() {
    let source = written(&["a", "b", "c", "d"]);
    let cases: &[(&[&str], bool, Plan)] = &[
        (&[], false, Plan::Append(0)),
        (&["a"], false, Plan::Append(1)),
        (&["a", "b", "c", "d"], false, Plan::Present),
        // A target that pruned its oldest versions.
        (&["c", "d"], false, Plan::Present),
        (&["b", "c"], false, Plan::Append(3)),
        // Its own history under a copy made with overwrite.
        (&["x", "a", "b", "c", "d"], false, Plan::Present),
        (&["x", "a", "b"], false, Plan::Append(2)),
        (&["x"], false, Plan::Different),
        (&["x"], true, Plan::Append(0)),
        (&["a", "x"], false, Plan::Different),
        (&["a", "c"], false, Plan::Different),
    ];
    for (target, overwrite, expected) in cases {
        assert_eq!(&plan(&source, &written(target), *overwrite), expected, "target {target:?}");
    }
    // Repeating values: the earliest of equal alignments, as a cut-short run.
    let repeating = written(&["a", "b", "a", "b"]);
    assert_eq!(plan(&repeating, &written(&["a", "b"]), false), Plan::Append(2));
    assert_eq!(plan(&repeating, &written(&["a", "b", "a", "b"]), false), Plan::Present);
}

#[tokio::test]
async fn matching_values_with_missing_tags_are_retagged_once() {
    let source = MemoryStore::new();
    let target = MemoryStore::new();
    let n = name("app", "half-written");
    put(&source, &n, "v", &tags(&[("owner", "data")])).await;
    // As a kill between a backend's value write and its tag write leaves it.
    put(&target, &n, "v", &Tags::new()).await;
    let report = migrate(&source, &target, &options()).await;
    assert_eq!((report.copied.len(), report.versions_copied), (1, 1), "{report}");
    assert_eq!(target.get(&n, None).await.unwrap().metadata.tags, tags(&[("owner", "data")]));
    for every in [false, true] {
        let report = migrate(&source, &target, &MigrateOptions { all_versions: every, ..options() }).await;
        assert_eq!(report.already_present, std::slice::from_ref(&n), "all_versions {every}: {report}");
    }
}

#[tokio::test]
async fn a_tag_scoped_target_counts_its_stamped_copies_as_present() {
    let source = seeded(3).await;
    let target: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    let scope = TagScope { tags: tags(&[("application", "prod")]), ..Default::default() };
    let scoped = ScopedStore::wrap(target.clone(), scope);
    let report = migrate(&source, scoped.as_ref(), &options()).await;
    assert_eq!(report.copied.len(), 3, "{report}");
    let copy = target.get(&name("team.a", "k000"), None).await.unwrap();
    assert_eq!(copy.metadata.tags, tags(&[("application", "prod"), ("n", "0")]));
    let report = migrate(&source, scoped.as_ref(), &options()).await;
    assert_eq!(report.already_present.len(), 3, "{report}");
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_says_what_it_would_copy() {
    let source = seeded(4).await;
    let target = MemoryStore::new();
    put(&target, &name("team.a", "k000"), "value-0", &tags(&[("n", "0")])).await;
    let report = migrate(&source, &target, &MigrateOptions { dry_run: true, ..options() }).await;
    assert_eq!((report.copied.len(), report.already_present.len()), (3, 1));
    let summary = report.to_string();
    assert!(summary.contains("dry run") && summary.contains("to copy: 3"), "{summary}");
    assert!(target.get(&name("team.b", "k001"), None).await.unwrap_err().kind() == ErrorKind::NotFound);
}

#[tokio::test]
async fn the_selection_limits_what_is_copied() {
    let source = seeded(6).await;
    let other_tenant = SecretName::parse("other", "team.a", "k").unwrap();
    put(&source, &other_tenant, "x", &Tags::new()).await;
    put(&source, &name("team.a.deep", "k"), "x", &Tags::new()).await;
    put(&source, &name("team.ab", "k"), "x", &Tags::new()).await;
    let target = MemoryStore::new();
    let selection = ScanSelection {
        tenant: Some(Tenant::parse("main").unwrap()),
        namespace: Some(Namespace::parse("team.a").unwrap()),
    };
    let report = migrate(&source, &target, &MigrateOptions { selection, ..options() }).await;
    let copied: Vec<String> = report.copied.iter().map(ToString::to_string).collect();
    assert_eq!(copied, ["main/team.a/k000", "main/team.a/k002", "main/team.a/k004", "main/team.a.deep/k"]);
}

#[tokio::test]
async fn failures_are_reported_by_name_without_values_and_fail_the_run() {
    let source = seeded(3).await;
    let target = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    target.set(Fault::Fail(ErrorKind::Unavailable));
    let report = migrate(&source, target.as_ref(), &options()).await;
    assert!(!report.succeeded());
    assert_eq!(report.failed.len(), 3);
    let summary = report.to_string();
    assert!(summary.contains("failed: 3") && summary.contains("main/team.a/k000"), "{summary}");
    assert!(!summary.contains("value-"), "a value reached the summary: {summary}");

    // The target comes back: the rerun copies them all.
    target.set(Fault::None);
    let report = migrate(&source, target.as_ref(), &options()).await;
    assert!(report.succeeded(), "{report}");
    assert_eq!(report.copied.len(), 3);
}

#[tokio::test]
async fn an_unscannable_source_fails_the_run_and_copies_nothing() {
    let source = Arc::new(FaultyStore::new(Arc::new(seeded(2).await)));
    source.set(Fault::Fail(ErrorKind::PermissionDenied));
    let target = MemoryStore::new();
    let report = migrate(source.as_ref(), &target, &options()).await;
    assert!(!report.succeeded());
    assert!(report.scan_error.is_some() && report.total() == 0);
    assert!(report.to_string().contains("could not be scanned"), "{report}");
}

#[tokio::test]
async fn a_run_dropped_midway_is_finished_by_the_next() {
    let source = seeded(20).await;
    let target: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    let halting = HaltingStore::new(target.clone(), 8);
    let one_at_a_time = MigrateOptions { concurrency: 1, ..options() };
    tokio::select! {
        report = migrate(&source, &halting, &one_at_a_time) => panic!("the run ended before it was stopped: {report}"),
        _ = halting.halted() => {}
    }
    let rerun = migrate(&source, target.as_ref(), &options()).await;
    assert!(rerun.succeeded(), "{rerun}");
    assert_eq!((rerun.already_present.len(), rerun.copied.len()), (8, 12), "{rerun}");
    let last = migrate(&source, target.as_ref(), &options()).await;
    assert_eq!(last.already_present.len(), 20);
}
