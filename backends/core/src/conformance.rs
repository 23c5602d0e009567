//! The conformance suite: one set of cases that every backend must pass
//! unchanged.
//!
//! A backend's test file calls [`conformance_suite!`](crate::conformance_suite)
//! with an async expression that builds its store against a real server; the
//! macro expands into one `#[tokio::test]` per case, so a failure names the
//! case. Every case writes under its own random namespace, so the cases run
//! in parallel against one scratch database, index or prefix and never see
//! each other's data (nor the leftovers of an earlier run).

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::future::join_all;

use crate::{
    ErrorKind, Key, Namespace, PageRequest, ScanSelection, ScopedStore, SecretMetadata, SecretName, SecretStore,
    SecretValue, StoreError, TagScope, Tags, Tenant, Version,
};

/// The largest value every backend must store: the broker's default
/// `secret.max-value-size`.
pub const MAX_VALUE_SIZE: usize = 64 * 1024;

const TENANT: &str = "conformance";

/// Expands into one test per conformance case. `$make_store` is an async
/// expression evaluated once per case, returning
/// `Option<Arc<dyn SecretStore>>`: `None` means the backend's server is not
/// configured here, and the factory has already failed the test under
/// `CI=true` or said loudly that it skips.
#[macro_export]
macro_rules! conformance_suite {
    ($make_store:expr) => {
        $crate::conformance_suite!(@cases $make_store;
            round_trip_binary_values,
            round_trip_tags,
            overwrite_creates_new_version,
            pinned_versions,
            missing_secret_is_not_found,
            delete_removes_all_versions,
            delete_missing_is_not_found,
            put_after_delete_starts_afresh,
            list_one_namespace_only,
            list_pagination,
            list_tag_filter,
            versions_the_store_did_not_issue_are_not_found,
            garbage_page_tokens_are_refused,
            tag_scoping_hides_out_of_scope_secrets,
            tag_scoping_stamps_writes,
            tag_scoping_refuses_out_of_scope_delete,
            tag_scoping_does_not_take_over_other_scopes,
            excluded_tags_hide_secrets,
            names_differing_in_unstorable_characters_do_not_collide,
            tenants_are_isolated,
            concurrent_writers_lose_nothing,
            longest_names_round_trip_or_are_invalid,
            bad_names_are_invalid_name,
            timestamps_are_ordered,
            health_is_ok,
            scan_covers_the_selection_once_in_order,
            scan_respects_tag_scope,
            garbage_scan_tokens_are_refused,
            versions_are_listed_oldest_first
        );
    };
    (@cases $make_store:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store: ::std::option::Option<::std::sync::Arc<dyn $crate::SecretStore>> = $make_store.await;
                if let ::std::option::Option::Some(store) = store {
                    $crate::conformance::$case(store).await;
                }
            }
        )*
    };
}

/// The address of a test server from the environment variable `var`
/// (which `scripts/test.sh` sets after starting the server). Without it the
/// test fails under `CI=true`, and otherwise says loudly, once per variable
/// and test binary, that it skipped: a backend test never passes silently
/// without its server.
pub fn server_from_env(var: &str) -> Option<String> {
    use std::{io::Write, sync::Mutex};
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set: CI must run this test against its server (run scripts/test.sh)")
        }
        _ => {
            // Straight to the process's stderr: libtest captures the output
            // of passing tests, and a skip must not be silent.
            static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());
            let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
            if !warned.iter().any(|w| w == var) {
                warned.push(var.to_owned());
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: {var} is not set; these tests did not run against their server. \
                     Run scripts/test.sh (or set {var}) to test it. ***\n"
                );
            }
            None
        }
    }
}

/// A fresh namespace no other case or run uses.
fn fresh_namespace(case: &str) -> Namespace {
    let n: u64 = rand::random();
    Namespace::parse(&format!("conf.{}.r{n:016x}", case.replace('_', "-"))).expect("valid namespace")
}

fn name(ns: &Namespace, key: &str) -> SecretName {
    SecretName::new(Tenant::parse(TENANT).unwrap(), ns.clone(), Key::parse(key).expect("valid key"))
}

fn value(bytes: &[u8]) -> SecretValue {
    SecretValue::from_slice(bytes)
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().copied().collect()
}

async fn put(store: &Arc<dyn SecretStore>, name: &SecretName, bytes: &[u8], t: &Tags) -> Version {
    store.put(name, &value(bytes), t, None).await.unwrap_or_else(|e| panic!("put {name}: {e} ({:?})", e.kind()))
}

async fn get_bytes(store: &Arc<dyn SecretStore>, name: &SecretName, version: Option<&Version>) -> Vec<u8> {
    let secret = store.get(name, version).await.unwrap_or_else(|e| panic!("get {name}: {e} ({:?})", e.kind()));
    secret.value.expose().to_vec()
}

fn assert_kind<T>(result: Result<T, StoreError>, kind: ErrorKind, what: &str) {
    match result {
        Ok(_) => panic!("{what}: expected {kind:?}, got Ok"),
        Err(e) => assert_eq!(e.kind(), kind, "{what}: expected {kind:?}, got {:?}: {e}", e.kind()),
    }
}

/// Every key of a namespace, following pages of `size`.
async fn list_all(store: &Arc<dyn SecretStore>, ns: &Namespace, filter: &Tags, size: usize) -> Vec<String> {
    let tenant = Tenant::parse(TENANT).unwrap();
    let mut keys = Vec::new();
    let mut token = None;
    for _ in 0..1000 {
        let page = store
            .list(&tenant, ns, filter, &PageRequest { size, token: token.clone() })
            .await
            .unwrap_or_else(|e| panic!("list {ns}: {e}"));
        assert!(page.items.len() <= size, "a page of size {size} held {} items", page.items.len());
        for item in &page.items {
            assert_eq!(&item.name.namespace, ns, "list returned a secret of another namespace");
            keys.push(item.name.key.as_str().to_owned());
        }
        match page.next_token {
            Some(next) => token = Some(next),
            None => return keys,
        }
    }
    panic!("listing {ns} did not end after 1000 pages");
}

pub async fn round_trip_binary_values(store: Arc<dyn SecretStore>) {
    let ns = fresh_namespace("round_trip_binary_values");
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    let largest: Vec<u8> = (0..MAX_VALUE_SIZE).map(|i| (i * 7 % 251) as u8).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("one-byte", vec![0x00]),
        ("utf8", "pässwörd ✓ 秘密".as_bytes().to_vec()),
        ("all-bytes", all_bytes),
        ("trailing-newline", b"line\n".to_vec()),
        ("largest", largest),
    ];
    for (key, bytes) in &cases {
        let n = name(&ns, key);
        let version = put(&store, &n, bytes, &Tags::new()).await;
        let secret = store.get(&n, None).await.unwrap();
        assert_eq!(secret.value.expose(), &bytes[..], "value of {key} changed in the round trip");
        assert_eq!(secret.metadata.version, version, "get returned another version than put made");
        assert_eq!(secret.metadata.name, n);
    }
}

pub async fn round_trip_tags(store: Arc<dyn SecretStore>) {
    if !store.capabilities().tags {
        return;
    }
    let ns = fresh_namespace("round_trip_tags");
    let n = name(&ns, "tagged");
    let t = tags(&[("application", "prod"), ("owner", "team-data"), ("note", "Ünïcode ok")]);
    put(&store, &n, b"v", &t).await;
    assert_eq!(store.get(&n, None).await.unwrap().metadata.tags, t);
    let untagged = name(&ns, "untagged");
    put(&store, &untagged, b"v", &Tags::new()).await;
    assert!(store.get(&untagged, None).await.unwrap().metadata.tags.is_empty());
}

pub async fn overwrite_creates_new_version(store: Arc<dyn SecretStore>) {
    let ns = fresh_namespace("overwrite_creates_new_version");
    let n = name(&ns, "rotating");
    let v1 = put(&store, &n, b"first", &tags(&[("rev", "1")])).await;
    let v2 = put(&store, &n, b"second", &tags(&[("rev", "2")])).await;
    assert_ne!(v1, v2, "a put must make a new version");
    let latest = store.get(&n, None).await.unwrap();
    assert_eq!(latest.value.expose(), b"second");
    assert_eq!(latest.metadata.version, v2);
    if store.capabilities().tags {
        assert_eq!(latest.metadata.tags, tags(&[("rev", "2")]), "the latest version's tags apply");
    }
}

pub async fn pinned_versions(store: Arc<dyn SecretStore>) {
    let ns = fresh_namespace("pinned_versions");
    let n = name(&ns, "pinned");
    let v1 = put(&store, &n, b"one", &Tags::new()).await;
    let v2 = put(&store, &n, b"two", &Tags::new()).await;
    if !store.capabilities().versions {
        assert_kind(store.get(&n, Some(&v1)).await, ErrorKind::Unsupported, "pinned read without versions");
        return;
    }
    assert_eq!(get_bytes(&store, &n, Some(&v1)).await, b"one");
    assert_eq!(get_bytes(&store, &n, Some(&v2)).await, b"two");
    assert_eq!(store.get(&n, Some(&v1)).await.unwrap().metadata.version, v1);
    for bogus in ["999999999", "no-such-version", "0"] {
        assert_kind(store.get(&n, Some(&Version(bogus.into()))).await, ErrorKind::NotFound, "unknown version");
    }
    let other = name(&ns, "other");
    assert_kind(store.get(&other, Some(&v1)).await, ErrorKind::NotFound, "version of a missing secret");
}

pub async fn versions_the_store_did_not_issue_are_not_found(store: Arc<dyn SecretStore>) {
    if !store.capabilities().versions {
        return;
    }
    let ns = fresh_namespace("versions_the_store_did_not_issue");
    let n = name(&ns, "k");
    let v1 = put(&store, &n, b"one", &Tags::new()).await;
    // Spellings that a lenient parser would read as the real version: a
    // pinned read names exactly one version or none.
    for lookalike in [format!("0{v1}"), format!("+{v1}"), format!(" {v1}"), format!("{v1} "), format!("{v1}.0")] {
        assert_kind(store.get(&n, Some(&Version(lookalike.clone()))).await, ErrorKind::NotFound, &lookalike);
    }
}

pub async fn garbage_page_tokens_are_refused(store: Arc<dyn SecretStore>) {
    if !store.capabilities().list {
        return;
    }
    let ns = fresh_namespace("garbage_page_tokens");
    put(&store, &name(&ns, "k"), b"v", &Tags::new()).await;
    let tenant = Tenant::parse(TENANT).unwrap();
    for token in ["not a token!", "\u{0}", "../../etc"] {
        let page = PageRequest { size: 10, token: Some(token.to_owned()) };
        assert_kind(store.list(&tenant, &ns, &Tags::new(), &page).await, ErrorKind::InvalidName, token);
    }
}

pub async fn missing_secret_is_not_found(store: Arc<dyn SecretStore>) {
    let ns = fresh_namespace("missing_secret_is_not_found");
    assert_kind(store.get(&name(&ns, "absent"), None).await, ErrorKind::NotFound, "missing secret");
}

pub async fn delete_removes_all_versions(store: Arc<dyn SecretStore>) {
    let ns = fresh_namespace("delete_removes_all_versions");
    let n = name(&ns, "doomed");
    let v1 = put(&store, &n, b"one", &Tags::new()).await;
    put(&store, &n, b"two", &Tags::new()).await;
    let neighbour = name(&ns, "neighbour");
    put(&store, &neighbour, b"stays", &Tags::new()).await;
    store.delete(&n).await.unwrap();
    assert_kind(store.get(&n, None).await, ErrorKind::NotFound, "latest after delete");
    if store.capabilities().versions {
        assert_kind(store.get(&n, Some(&v1)).await, ErrorKind::NotFound, "old version after delete");
    }
    assert_eq!(get_bytes(&store, &neighbour, None).await, b"stays", "delete touched another secret");
    if store.capabilities().list {
        assert_eq!(list_all(&store, &ns, &Tags::new(), 10).await, vec!["neighbour".to_owned()]);
    }
}

pub async fn delete_missing_is_not_found(store: Arc<dyn SecretStore>) {
    let ns = fresh_namespace("delete_missing_is_not_found");
    assert_kind(store.delete(&name(&ns, "absent")).await, ErrorKind::NotFound, "delete of a missing secret");
}

pub async fn put_after_delete_starts_afresh(store: Arc<dyn SecretStore>) {
    let ns = fresh_namespace("put_after_delete_starts_afresh");
    let n = name(&ns, "phoenix");
    put(&store, &n, b"old", &tags(&[("gen", "1")])).await;
    store.delete(&n).await.unwrap();
    put(&store, &n, b"new", &Tags::new()).await;
    let secret = store.get(&n, None).await.unwrap();
    assert_eq!(secret.value.expose(), b"new");
    assert!(secret.metadata.tags.is_empty(), "tags of the deleted secret came back");
}

pub async fn list_one_namespace_only(store: Arc<dyn SecretStore>) {
    if !store.capabilities().list {
        return;
    }
    let ns = fresh_namespace("list_one_namespace_only");
    let child = Namespace::parse(&format!("{ns}.child")).unwrap();
    put(&store, &name(&ns, "here"), b"1", &Tags::new()).await;
    put(&store, &name(&child, "below"), b"2", &Tags::new()).await;
    assert_eq!(list_all(&store, &ns, &Tags::new(), 100).await, vec!["here".to_owned()]);
    assert_eq!(list_all(&store, &child, &Tags::new(), 100).await, vec!["below".to_owned()]);
}

pub async fn list_pagination(store: Arc<dyn SecretStore>) {
    if !store.capabilities().list {
        return;
    }
    let ns = fresh_namespace("list_pagination");
    let expected: BTreeSet<String> = (0..23).map(|i| format!("key-{i:02}")).collect();
    for key in &expected {
        put(&store, &name(&ns, key), key.as_bytes(), &Tags::new()).await;
    }
    // One key gets a second version: it must still be listed once.
    put(&store, &name(&ns, "key-05"), b"again", &Tags::new()).await;
    for size in [1, 7, 23, 100] {
        let keys = list_all(&store, &ns, &Tags::new(), size).await;
        let unique: BTreeSet<String> = keys.iter().cloned().collect();
        assert_eq!(unique.len(), keys.len(), "page size {size}: a key was listed twice");
        assert_eq!(unique, expected, "page size {size}: the listing lost or invented keys");
        assert_eq!(keys, expected.iter().cloned().collect::<Vec<_>>(), "page size {size}: not ordered by key");
    }
    let tenant = Tenant::parse(TENANT).unwrap();
    let page = store.list(&tenant, &ns, &Tags::new(), &PageRequest { size: 100, token: None }).await.unwrap();
    let item = page.items.iter().find(|m| m.name.key.as_str() == "key-05").unwrap();
    let latest = store.get(&name(&ns, "key-05"), None).await.unwrap();
    assert_eq!(item.version, latest.metadata.version, "list must show the latest version");
}

pub async fn list_tag_filter(store: Arc<dyn SecretStore>) {
    if !store.capabilities().list || !store.capabilities().tags {
        return;
    }
    let ns = fresh_namespace("list_tag_filter");
    put(&store, &name(&ns, "prod-a"), b"1", &tags(&[("env", "prod"), ("team", "a")])).await;
    put(&store, &name(&ns, "prod-b"), b"2", &tags(&[("env", "prod"), ("team", "b")])).await;
    put(&store, &name(&ns, "dev-a"), b"3", &tags(&[("env", "dev"), ("team", "a")])).await;
    put(&store, &name(&ns, "plain"), b"4", &Tags::new()).await;
    // A secret whose latest version dropped the tag must not match.
    put(&store, &name(&ns, "was-prod"), b"5", &tags(&[("env", "prod")])).await;
    put(&store, &name(&ns, "was-prod"), b"6", &Tags::new()).await;
    assert_eq!(list_all(&store, &ns, &tags(&[("env", "prod")]), 1).await, ["prod-a", "prod-b"]);
    assert_eq!(list_all(&store, &ns, &tags(&[("env", "prod"), ("team", "a")]), 10).await, ["prod-a"]);
    assert_eq!(list_all(&store, &ns, &tags(&[("env", "staging")]), 10).await, Vec::<String>::new());
    assert_eq!(list_all(&store, &ns, &Tags::new(), 10).await.len(), 5);
}

fn prod_scope() -> TagScope {
    TagScope { tags: tags(&[("application", "prod")]), ..Default::default() }
}

pub async fn tag_scoping_hides_out_of_scope_secrets(store: Arc<dyn SecretStore>) {
    if !store.capabilities().tags {
        return;
    }
    let ns = fresh_namespace("tag_scoping_hides_out_of_scope_secrets");
    let scoped = ScopedStore::wrap(store.clone(), prod_scope());
    put(&store, &name(&ns, "untagged"), b"x", &Tags::new()).await;
    put(&store, &name(&ns, "dev"), b"x", &tags(&[("application", "dev")])).await;
    put(&store, &name(&ns, "prod"), b"p", &tags(&[("application", "prod")])).await;
    assert_kind(scoped.get(&name(&ns, "untagged"), None).await, ErrorKind::NotFound, "untagged via scope");
    assert_kind(scoped.get(&name(&ns, "dev"), None).await, ErrorKind::NotFound, "other scope via scope");
    assert_eq!(get_bytes(&scoped, &name(&ns, "prod"), None).await, b"p");
    if store.capabilities().list {
        assert_eq!(list_all(&scoped, &ns, &Tags::new(), 1).await, ["prod"]);
        assert_eq!(list_all(&scoped, &ns, &tags(&[("application", "dev")]), 10).await, Vec::<String>::new());
    }
    // A pinned version that predates the tag is outside the scope when
    // versions keep their own tags; where tags belong to the secret, the
    // scope admits or hides the secret with all its versions.
    if store.capabilities().versions {
        let n = name(&ns, "tagged-later");
        let v1 = put(&store, &n, b"old", &Tags::new()).await;
        put(&store, &n, b"new", &tags(&[("application", "prod")])).await;
        assert_eq!(get_bytes(&scoped, &n, None).await, b"new");
        if store.capabilities().tags_per_version {
            assert_kind(scoped.get(&n, Some(&v1)).await, ErrorKind::NotFound, "untagged old version via scope");
        } else {
            let old = scoped.get(&n, Some(&v1)).await.expect("an old version of an in-scope secret");
            assert_eq!(old.value.expose(), b"old");
            assert_eq!(old.metadata.tags, tags(&[("application", "prod")]), "the secret's tags apply to every version");
            let n = name(&ns, "untagged-later");
            let v1 = put(&store, &n, b"was prod", &tags(&[("application", "prod")])).await;
            put(&store, &n, b"now untagged", &Tags::new()).await;
            assert_kind(scoped.get(&n, Some(&v1)).await, ErrorKind::NotFound, "old version of an out-of-scope secret");
        }
    }
}

pub async fn tag_scoping_stamps_writes(store: Arc<dyn SecretStore>) {
    if !store.capabilities().tags {
        return;
    }
    let ns = fresh_namespace("tag_scoping_stamps_writes");
    let scoped = ScopedStore::wrap(store.clone(), prod_scope());
    let n = name(&ns, "stamped");
    put(&scoped, &n, b"v", &tags(&[("owner", "me")])).await;
    let raw = store.get(&n, None).await.unwrap();
    assert_eq!(raw.metadata.tags, tags(&[("application", "prod"), ("owner", "me")]));
    assert_eq!(get_bytes(&scoped, &n, None).await, b"v");
    assert_kind(
        scoped.put(&name(&ns, "conflict"), &value(b"v"), &tags(&[("application", "dev")]), None).await,
        ErrorKind::InvalidName,
        "a put contradicting the scope",
    );
    assert_kind(store.get(&name(&ns, "conflict"), None).await, ErrorKind::NotFound, "a refused put wrote something");
}

pub async fn tag_scoping_refuses_out_of_scope_delete(store: Arc<dyn SecretStore>) {
    if !store.capabilities().tags {
        return;
    }
    let ns = fresh_namespace("tag_scoping_refuses_out_of_scope_delete");
    let scoped = ScopedStore::wrap(store.clone(), prod_scope());
    let n = name(&ns, "not-yours");
    put(&store, &n, b"keep me", &Tags::new()).await;
    assert_kind(scoped.delete(&n).await, ErrorKind::NotFound, "scoped delete of an untagged secret");
    assert_eq!(get_bytes(&store, &n, None).await, b"keep me", "the scoped delete removed it anyway");
    let mine = name(&ns, "mine");
    put(&scoped, &mine, b"v", &Tags::new()).await;
    scoped.delete(&mine).await.unwrap();
    assert_kind(store.get(&mine, None).await, ErrorKind::NotFound, "in-scope delete");
}

pub async fn tag_scoping_does_not_take_over_other_scopes(store: Arc<dyn SecretStore>) {
    if !store.capabilities().tags {
        return;
    }
    let ns = fresh_namespace("tag_scoping_does_not_take_over_other_scopes");
    let dev =
        ScopedStore::wrap(store.clone(), TagScope { tags: tags(&[("application", "dev")]), ..Default::default() });
    let prod = ScopedStore::wrap(store.clone(), prod_scope());
    let n = name(&ns, "shared-name");
    put(&dev, &n, b"dev value", &Tags::new()).await;
    assert_kind(prod.put(&n, &value(b"prod value"), &Tags::new(), None).await, ErrorKind::AlreadyExists, "take-over");
    assert_eq!(get_bytes(&dev, &n, None).await, b"dev value");
}

pub async fn excluded_tags_hide_secrets(store: Arc<dyn SecretStore>) {
    if !store.capabilities().tags {
        return;
    }
    let ns = fresh_namespace("excluded_tags_hide_secrets");
    let scope = TagScope {
        filter_on_tags: tags(&[("team", "data")]),
        excluded_tags: tags(&[("retired", "true")]),
        ..Default::default()
    };
    let scoped = ScopedStore::wrap(store.clone(), scope);
    put(&store, &name(&ns, "live"), b"1", &tags(&[("team", "data")])).await;
    put(&store, &name(&ns, "retired"), b"2", &tags(&[("team", "data"), ("retired", "true")])).await;
    put(&store, &name(&ns, "other-team"), b"3", &tags(&[("team", "web")])).await;
    assert_eq!(get_bytes(&scoped, &name(&ns, "live"), None).await, b"1");
    assert_kind(scoped.get(&name(&ns, "retired"), None).await, ErrorKind::NotFound, "excluded tag");
    assert_kind(scoped.get(&name(&ns, "other-team"), None).await, ErrorKind::NotFound, "filter-on-tags");
    if store.capabilities().list {
        assert_eq!(list_all(&scoped, &ns, &Tags::new(), 10).await, ["live"]);
    }
    // filter-on-tags is read visibility only: a write is not stamped.
    let written = name(&ns, "written");
    put(&scoped, &written, b"4", &Tags::new()).await;
    assert!(store.get(&written, None).await.unwrap().metadata.tags.is_empty());
}

pub async fn names_differing_in_unstorable_characters_do_not_collide(store: Arc<dyn SecretStore>) {
    let ns = fresh_namespace("names_differing_in_unstorable_characters");
    // Backends with narrow alphabets (Azure: letters, digits, dashes; case
    // folding) must still keep all of these apart.
    let keys = ["a.b", "a_b", "a-b", "a/b", "ab", "A.B", "a--b", "a-2d-b", "a_2e_b", "a.b/c", "a/b.c", "x", "X"];
    for key in keys {
        put(&store, &name(&ns, key), key.as_bytes(), &Tags::new()).await;
    }
    for key in keys {
        assert_eq!(get_bytes(&store, &name(&ns, key), None).await, key.as_bytes(), "key {key:?} collided");
    }
    let ns_dash = Namespace::parse(&format!("{ns}.x-y")).unwrap();
    let ns_under = Namespace::parse(&format!("{ns}.x_y")).unwrap();
    let ns_dot = Namespace::parse(&format!("{ns}.x.y")).unwrap();
    for (i, space) in [&ns_dash, &ns_under, &ns_dot].into_iter().enumerate() {
        put(&store, &name(space, "k"), &[i as u8 + 1], &Tags::new()).await;
    }
    for (i, space) in [&ns_dash, &ns_under, &ns_dot].into_iter().enumerate() {
        assert_eq!(get_bytes(&store, &name(space, "k"), None).await, [i as u8 + 1], "namespace {space} collided");
    }
    // The boundary between namespace and key is part of the name too.
    let split_a = SecretName::new(Tenant::parse(TENANT).unwrap(), ns_dot.clone(), Key::parse("z").unwrap());
    let split_b = SecretName::new(
        Tenant::parse(TENANT).unwrap(),
        Namespace::parse(&format!("{ns}.x")).unwrap(),
        Key::parse("y.z").unwrap(),
    );
    put(&store, &split_a, b"A", &Tags::new()).await;
    put(&store, &split_b, b"B", &Tags::new()).await;
    assert_eq!(get_bytes(&store, &split_a, None).await, b"A");
    assert_eq!(get_bytes(&store, &split_b, None).await, b"B");
    if store.capabilities().list {
        let mut listed = list_all(&store, &ns, &Tags::new(), 5).await;
        listed.sort();
        let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        expected.sort();
        assert_eq!(listed, expected);
    }
}

pub async fn tenants_are_isolated(store: Arc<dyn SecretStore>) {
    let ns = fresh_namespace("tenants_are_isolated");
    let key = Key::parse("shared").unwrap();
    let a = SecretName::new(Tenant::parse("conformance-a").unwrap(), ns.clone(), key.clone());
    let b = SecretName::new(Tenant::parse("conformance-b").unwrap(), ns.clone(), key.clone());
    put(&store, &a, b"for a", &Tags::new()).await;
    assert_kind(store.get(&b, None).await, ErrorKind::NotFound, "another tenant's secret");
    put(&store, &b, b"for b", &Tags::new()).await;
    assert_eq!(get_bytes(&store, &a, None).await, b"for a");
    store.delete(&b).await.unwrap();
    assert_eq!(get_bytes(&store, &a, None).await, b"for a", "delete crossed tenants");
}

pub async fn concurrent_writers_lose_nothing(store: Arc<dyn SecretStore>) {
    const WRITERS: usize = 16;
    let ns = fresh_namespace("concurrent_writers_lose_nothing");
    let n = name(&ns, "contended");
    let writes = (0..WRITERS).map(|i| {
        let store = store.clone();
        let n = n.clone();
        tokio::spawn(async move {
            let bytes = format!("writer-{i}").into_bytes();
            let version = store.put(&n, &SecretValue::new(bytes.clone()), &Tags::new(), None).await;
            (version, bytes)
        })
    });
    let results: Vec<_> = join_all(writes).await.into_iter().map(|r| r.expect("writer task")).collect();
    let mut versions = BTreeSet::new();
    for (version, _) in &results {
        let version = version.as_ref().unwrap_or_else(|e| panic!("a concurrent put failed: {e} ({:?})", e.kind()));
        assert!(versions.insert(version.clone()), "two concurrent puts got version {version}");
    }
    if store.capabilities().versions {
        for (version, bytes) in &results {
            let version = version.as_ref().unwrap();
            assert_eq!(&get_bytes(&store, &n, Some(version)).await, bytes, "version {version} lost its value");
        }
    }
    let latest = get_bytes(&store, &n, None).await;
    assert!(results.iter().any(|(_, b)| *b == latest), "latest is none of the written values");

    // Writers on different keys of one namespace do not disturb each other.
    let keys: Vec<SecretName> = (0..WRITERS).map(|i| name(&ns, &format!("k{i}"))).collect();
    let writes = keys.iter().cloned().map(|k| {
        let store = store.clone();
        tokio::spawn(async move {
            store.put(&k, &SecretValue::from_slice(k.key.as_str().as_bytes()), &Tags::new(), None).await
        })
    });
    for r in join_all(writes).await {
        r.expect("writer task").expect("concurrent put on distinct keys");
    }
    for k in &keys {
        assert_eq!(get_bytes(&store, k, None).await, k.key.as_str().as_bytes());
    }
}

pub async fn longest_names_round_trip_or_are_invalid(store: Arc<dyn SecretStore>) {
    let base = fresh_namespace("longest_names");
    let pad = 255 - base.as_str().len() - 1;
    let long_ns = Namespace::parse(&format!("{base}.{}", "n".repeat(pad.min(63)))).unwrap();
    let long_key = Key::parse(&"k".repeat(255)).unwrap();
    let n = SecretName::new(Tenant::parse(&"t".repeat(63)).unwrap(), long_ns, long_key);
    match store.put(&n, &value(b"long"), &Tags::new(), None).await {
        Ok(_) => assert_eq!(get_bytes(&store, &n, None).await, b"long"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidName, "a name the backend cannot hold must be InvalidName: {e}")
        }
    }
}

pub async fn bad_names_are_invalid_name(_store: Arc<dyn SecretStore>) {
    for (tenant, ns, key) in
        [("", "", "k"), ("", "a..b", "k"), ("", "a", "../etc/passwd"), ("UPPER", "a", "k"), ("", "a", "k*")]
    {
        assert_kind(SecretName::parse(tenant, ns, key), ErrorKind::InvalidName, "bad name");
    }
}

pub async fn timestamps_are_ordered(store: Arc<dyn SecretStore>) {
    let ns = fresh_namespace("timestamps_are_ordered");
    let n = name(&ns, "clock");
    put(&store, &n, b"1", &Tags::new()).await;
    let first = store.get(&n, None).await.unwrap().metadata;
    tokio::time::sleep(Duration::from_millis(20)).await;
    put(&store, &n, b"2", &Tags::new()).await;
    let second = store.get(&n, None).await.unwrap().metadata;
    assert!(first.created_at <= first.updated_at);
    assert_eq!(first.created_at, second.created_at, "created_at must stay the first write's time");
    assert!(second.updated_at >= first.updated_at);
}

pub async fn health_is_ok(store: Arc<dyn SecretStore>) {
    store.health().await.expect("a reachable store reports healthy");
}

/// Every item of a scan, following pages of `size`.
pub async fn scan_all(store: &Arc<dyn SecretStore>, selection: &ScanSelection, size: usize) -> Vec<SecretMetadata> {
    let mut items = Vec::new();
    let mut token = None;
    for _ in 0..100_000 {
        let page = store
            .scan(selection, &PageRequest { size, token: token.clone() })
            .await
            .unwrap_or_else(|e| panic!("scan {selection:?}: {e} ({:?})", e.kind()));
        assert!(page.items.len() <= size, "a scan page of size {size} held {} items", page.items.len());
        items.extend(page.items);
        match page.next_token {
            Some(next) => token = Some(next),
            None => return items,
        }
    }
    panic!("scanning {selection:?} did not end after 100000 pages");
}

fn names_of(items: &[SecretMetadata]) -> Vec<String> {
    items.iter().map(|m| m.name.to_string()).collect()
}

pub async fn scan_covers_the_selection_once_in_order(store: Arc<dyn SecretStore>) {
    if !store.capabilities().list {
        return;
    }
    let ns = fresh_namespace("scan_covers_the_selection");
    let child = Namespace::parse(&format!("{ns}.child")).unwrap();
    let grandchild = Namespace::parse(&format!("{ns}.child.deep")).unwrap();
    // Shares the namespace's text as a prefix, but is not below it.
    let lookalike = Namespace::parse(&format!("{ns}x")).unwrap();
    let other_tenant = Tenant::parse("conformance-scan").unwrap();
    let mut expected = Vec::new();
    for (i, (space, key)) in
        [(&ns, "b"), (&ns, "a"), (&ns, "db/password"), (&child, "k"), (&grandchild, "k")].into_iter().enumerate()
    {
        let n = name(space, key);
        put(&store, &n, key.as_bytes(), &tags(&[("n", &i.to_string())])).await;
        expected.push(n);
    }
    let in_other_tenant = SecretName::new(other_tenant.clone(), ns.clone(), Key::parse("theirs").unwrap());
    put(&store, &in_other_tenant, b"t", &Tags::new()).await;
    put(&store, &name(&lookalike, "outside"), b"o", &Tags::new()).await;
    let deleted = name(&ns, "deleted");
    put(&store, &deleted, b"d", &Tags::new()).await;
    store.delete(&deleted).await.unwrap();
    // A second version: the scan shows the latest, once.
    let rewritten = name(&ns, "a");
    let latest = put(&store, &rewritten, b"a2", &tags(&[("rev", "2")])).await;

    let selection = ScanSelection { tenant: Some(Tenant::parse(TENANT).unwrap()), namespace: Some(ns.clone()) };
    let mut with_other = expected.clone();
    expected.sort();
    let expected: Vec<String> = expected.iter().map(|n| n.to_string()).collect();
    for size in [1, 2, 100] {
        let items = scan_all(&store, &selection, size).await;
        assert_eq!(names_of(&items), expected, "page size {size}: the scan lost, invented, repeated or misordered");
        let a = items.iter().find(|m| m.name == rewritten).unwrap();
        assert_eq!(a.version, latest, "a scan shows the latest version");
        if store.capabilities().tags {
            assert_eq!(a.tags, tags(&[("rev", "2")]), "a scan shows the latest tags");
        }
    }
    // Without a tenant, every tenant's secrets of the namespace, still in order.
    let across = scan_all(&store, &ScanSelection { tenant: None, namespace: Some(ns.clone()) }, 3).await;
    with_other.push(in_other_tenant);
    with_other.sort();
    assert_eq!(names_of(&across), with_other.iter().map(|n| n.to_string()).collect::<Vec<_>>());
    let below = scan_all(&store, &ScanSelection { tenant: None, namespace: Some(child.clone()) }, 10).await;
    assert_eq!(names_of(&below), [name(&child, "k").to_string(), name(&grandchild, "k").to_string()]);
}

pub async fn scan_respects_tag_scope(store: Arc<dyn SecretStore>) {
    if !store.capabilities().list || !store.capabilities().tags {
        return;
    }
    let ns = fresh_namespace("scan_respects_tag_scope");
    let scoped = ScopedStore::wrap(store.clone(), prod_scope());
    put(&store, &name(&ns, "dev"), b"x", &tags(&[("application", "dev")])).await;
    put(&store, &name(&ns, "untagged"), b"x", &Tags::new()).await;
    put(&store, &name(&ns, "prod-1"), b"p", &tags(&[("application", "prod")])).await;
    put(&store, &name(&ns, "prod-2"), b"p", &tags(&[("application", "prod"), ("team", "a")])).await;
    let selection = ScanSelection { tenant: None, namespace: Some(ns.clone()) };
    let items = scan_all(&scoped, &selection, 1).await;
    assert_eq!(names_of(&items), [name(&ns, "prod-1").to_string(), name(&ns, "prod-2").to_string()]);
    let excluding =
        ScopedStore::wrap(store.clone(), TagScope { excluded_tags: tags(&[("team", "a")]), ..Default::default() });
    let items = scan_all(&excluding, &selection, 10).await;
    assert_eq!(items.len(), 3, "excluded-tags hide from a scan: {:?}", names_of(&items));
    assert!(!names_of(&items).contains(&name(&ns, "prod-2").to_string()));
}

pub async fn garbage_scan_tokens_are_refused(store: Arc<dyn SecretStore>) {
    if !store.capabilities().list {
        return;
    }
    let ns = fresh_namespace("garbage_scan_tokens");
    put(&store, &name(&ns, "k"), b"v", &Tags::new()).await;
    let selection = ScanSelection { tenant: None, namespace: Some(ns) };
    for token in ["not a token!", "\u{0}", "../../etc"] {
        let page = PageRequest { size: 10, token: Some(token.to_owned()) };
        assert_kind(store.scan(&selection, &page).await, ErrorKind::InvalidName, token);
    }
}

pub async fn versions_are_listed_oldest_first(store: Arc<dyn SecretStore>) {
    let ns = fresh_namespace("versions_are_listed_oldest_first");
    let n = name(&ns, "history");
    let mut written = Vec::new();
    for bytes in [b"one".as_slice(), b"two", b"three"] {
        written.push(put(&store, &n, bytes, &Tags::new()).await);
    }
    if !store.capabilities().versions {
        assert_kind(store.versions(&n).await, ErrorKind::Unsupported, "versions of a store without versions");
        return;
    }
    let listed = store.versions(&n).await.unwrap_or_else(|e| panic!("versions of {n}: {e} ({:?})", e.kind()));
    assert_eq!(listed, written, "versions must be every version written, oldest first");
    for (version, bytes) in listed.iter().zip([b"one".as_slice(), b"two", b"three"]) {
        assert_eq!(get_bytes(&store, &n, Some(version)).await, bytes);
    }
    assert_kind(store.versions(&name(&ns, "absent")).await, ErrorKind::NotFound, "versions of a missing secret");
    // Through a tag scope, a secret outside it has no versions to show.
    if store.capabilities().tags {
        let scoped = ScopedStore::wrap(store.clone(), prod_scope());
        assert_kind(scoped.versions(&n).await, ErrorKind::NotFound, "versions of an out-of-scope secret");
        let in_scope = name(&ns, "in-scope");
        let v1 = put(&store, &in_scope, b"1", &tags(&[("application", "prod")])).await;
        let v2 = put(&store, &in_scope, b"2", &tags(&[("application", "prod")])).await;
        assert_eq!(scoped.versions(&in_scope).await.unwrap(), [v1, v2]);
    }
}
