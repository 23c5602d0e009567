//! The migration engine between real backends: SQLite to OpenBao, OpenBao
//! to moto, moto to PostgreSQL, each run killed part-way and run again.
//!
//! The engine is driven through the library (`secretd::migrate`), with the
//! stores built by the backend crates directly, so these cases carry over
//! unchanged once `secretd migrate` is wired into the CLI. The servers come
//! from the variables `scripts/test.sh` exports; without them a test fails
//! under `CI=true` and otherwise says loudly that it skipped. Every run
//! works under a tenant of its own (and, on OpenBao and moto, a path or
//! name prefix of its own), so runs sharing a server never meet.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use secrecy::SecretString;
use secretd::migrate::{migrate, MigrateOptions, MigrationReport};
use secretd_aws::{AwsOptions, AwsStore, DeletePolicy, NamePrefix, StaticCredentials};
use secretd_core::{
    testing::HaltingStore, Key, Namespace, ScanSelection, SecretName, SecretStore, SecretValue, Tags, Tenant,
};
use secretd_sql::{SqlOptions, SqlStore};
use secretd_vault::{PathPrefix, VaultAuth, VaultOptions, VaultStore};

fn env(var: &str) -> Option<String> {
    secretd_core::conformance::server_from_env(var)
}

const SQL_SECRET: &str = "migrate-test-secret-0123456789abcdef";

fn key(raw: &str) -> Key {
    Key::parse(raw).unwrap()
}

fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

async fn sqlite(dir: &tempfile::TempDir, file: &str) -> Arc<dyn SecretStore> {
    let url = format!("sqlite://{}", dir.path().join(file).display());
    Arc::new(SqlStore::connect(&url, SQL_SECRET, SqlOptions::default()).await.expect("open sqlite"))
}

async fn postgres() -> Option<Arc<dyn SecretStore>> {
    let url = env("SECRETD_TEST_POSTGRES_URL")?;
    Some(Arc::new(SqlStore::connect(&url, SQL_SECRET, SqlOptions::default()).await.expect("connect to postgres")))
}

async fn openbao() -> Option<Arc<dyn SecretStore>> {
    let address = env("SECRETD_TEST_VAULT_ADDR")?;
    let token = env("SECRETD_TEST_VAULT_TOKEN")?;
    let mut options = VaultOptions::new(address, VaultAuth::Token(SecretString::from(token).into()));
    options.path_prefix = PathPrefix::new(&format!("secretd-migrate-test/{}", random_suffix())).unwrap();
    options.max_versions = Some(100);
    options.connection.timeout = Duration::from_secs(10);
    Some(Arc::new(VaultStore::connect(options).await.expect("connect to openbao")))
}

async fn moto() -> Option<Arc<dyn SecretStore>> {
    let endpoint = env("SECRETD_TEST_AWS_ENDPOINT")?;
    let mut options = AwsOptions::new("us-east-1");
    options.endpoint = Some(endpoint);
    // moto takes any credentials, but requests must be signed.
    options.credentials = Some(StaticCredentials {
        access_key_id: SecretString::from("AKIDTESTSECRETD").into(),
        secret_access_key: SecretString::from("test-secret-access-key").into(),
        session_token: None,
    });
    options.name_prefix = NamePrefix::new(&format!("secretd-migrate-test-{}/", random_suffix())).unwrap();
    options.delete = DeletePolicy::Force;
    Some(Arc::new(AwsStore::connect(options).await.expect("build the AWS client")))
}

/// A tenant of this run's own.
fn run_tenant() -> Tenant {
    Tenant::parse(&format!("mig-{}", random_suffix())).unwrap()
}

/// What the seeded source holds: names with their versions' values.
struct Seeded {
    secrets: Vec<(SecretName, Vec<Vec<u8>>)>,
}

impl Seeded {
    fn versions(&self) -> usize {
        self.secrets.iter().map(|(_, v)| v.len()).sum()
    }
}

/// `count` secrets in `namespace` and below it, every third with a second
/// and a third version, some values binary, each with tags.
async fn seed(store: &dyn SecretStore, tenant: &Tenant, namespace: &str, count: usize) -> Seeded {
    let mut secrets = Vec::new();
    for i in 0..count {
        let space = if i % 4 == 3 { format!("{namespace}.child") } else { namespace.to_owned() };
        let key_text = if i % 5 == 4 { format!("db/key-{i:03}") } else { format!("key-{i:03}") };
        let name = SecretName::new(tenant.clone(), Namespace::parse(&space).unwrap(), key(&key_text));
        let revisions = if i % 3 == 0 { 3 } else { 1 };
        let mut values = Vec::new();
        for rev in 0..revisions {
            let value = if i % 7 == 6 {
                vec![0xff, 0x00, i as u8, rev as u8, 0x80]
            } else {
                format!("value {i} rev {rev} ✓").into_bytes()
            };
            let tags: Tags = [("index", i.to_string()), ("rev", rev.to_string())].into_iter().collect();
            store.put(&name, &SecretValue::new(value.clone()), &tags, None).await.expect("seed the source");
            values.push(value);
        }
        secrets.push((name, values));
    }
    Seeded { secrets }
}

/// The target holds every seeded secret: the latest value and tags, and,
/// with `all_versions`, every version in order.
async fn assert_copied(target: &dyn SecretStore, seeded: &Seeded, all_versions: bool) {
    for (name, values) in &seeded.secrets {
        let latest = target.get(name, None).await.unwrap_or_else(|e| panic!("{name} missing in the target: {e}"));
        assert!(latest.value.expose() == values.last().unwrap().as_slice(), "{name}: the latest value differs");
        let index = latest.metadata.tags.get("index").map(str::to_owned);
        assert!(index.is_some(), "{name}: tags were not copied");
        if all_versions {
            let mut copied = Vec::new();
            for version in target.versions(name).await.unwrap() {
                copied.push(target.get(name, Some(&version)).await.unwrap().value.expose().to_vec());
            }
            assert!(
                &copied == values,
                "{name}: {} versions in the target, {} in the source",
                copied.len(),
                values.len()
            );
        }
    }
}

/// Runs the migration until the target has taken `puts` writes, then drops
/// it, as a kill would.
async fn run_and_kill(from: &dyn SecretStore, to: Arc<dyn SecretStore>, options: &MigrateOptions, puts: usize) {
    let halting = HaltingStore::new(to, puts);
    tokio::select! {
        report = migrate(from, &halting, options) => panic!("the run ended before it was killed: {report}"),
        _ = halting.halted() => {}
    }
}

/// The whole scenario: seed, migrate with a kill after `kill_after` writes,
/// rerun (which writes only the rest), run once more (which writes nothing).
async fn migrate_with_a_kill(
    from: Arc<dyn SecretStore>,
    to: Arc<dyn SecretStore>,
    all_versions: bool,
    kill_after: usize,
) -> (MigrationReport, MigrationReport) {
    let tenant = run_tenant();
    let seeded = seed(from.as_ref(), &tenant, "apps.billing", 24).await;
    // Outside the selection: must stay where it is.
    let outside = SecretName::new(tenant.clone(), Namespace::parse("apps.billingx").unwrap(), key("k"));
    from.put(&outside, &SecretValue::from_slice(b"not selected"), &Tags::new(), None).await.unwrap();
    let selection = ScanSelection { tenant: Some(tenant), namespace: Some(Namespace::parse("apps.billing").unwrap()) };
    // One at a time, so the kill lands after exactly `kill_after` writes.
    let options = MigrateOptions { selection, all_versions, concurrency: 1, scan_page_size: 7, ..Default::default() };
    run_and_kill(from.as_ref(), to.clone(), &options, kill_after).await;

    let rerun = migrate(from.as_ref(), to.as_ref(), &MigrateOptions { concurrency: 4, ..options.clone() }).await;
    assert!(rerun.succeeded(), "{rerun}");
    let expected_writes = if all_versions { seeded.versions() } else { seeded.secrets.len() };
    assert_eq!(rerun.versions_copied, expected_writes - kill_after, "the rerun writes only the rest: {rerun}");
    assert!(!rerun.already_present.is_empty(), "{rerun}");
    assert_eq!(rerun.total(), seeded.secrets.len(), "{rerun}");
    assert_copied(to.as_ref(), &seeded, all_versions).await;
    assert!(to.get(&outside, None).await.is_err(), "a secret outside the selection was copied");

    let last = migrate(from.as_ref(), to.as_ref(), &options).await;
    assert!(last.succeeded(), "{last}");
    assert_eq!((last.copied.len(), last.already_present.len()), (0, seeded.secrets.len()), "{last}");
    (rerun, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_openbao_every_version_killed_and_rerun() {
    let Some(openbao) = openbao().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_, last) = migrate_with_a_kill(sqlite(&dir, "source.db").await, openbao, true, 13).await;
    assert!(last.to_string().contains("already present: 24"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_to_moto_latest_killed_and_rerun() {
    let (Some(openbao), Some(moto)) = (openbao().await, moto().await) else { return };
    migrate_with_a_kill(openbao, moto, false, 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_to_postgres_every_version_killed_and_rerun() {
    let (Some(moto), Some(postgres)) = (moto().await, postgres().await) else { return };
    migrate_with_a_kill(moto, postgres, true, 20).await;
}

/// Killed with eight writes in flight, some cut between OpenBao's value
/// and tag writes: the rerun repairs those and copies the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_openbao_killed_with_writes_in_flight() {
    let Some(openbao) = openbao().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite(&dir, "source.db").await;
    let tenant = run_tenant();
    let seeded = seed(source.as_ref(), &tenant, "apps.payments", 40).await;
    let selection = ScanSelection { tenant: Some(tenant), namespace: None };
    let options = MigrateOptions { selection, concurrency: 8, ..Default::default() };
    run_and_kill(source.as_ref(), openbao.clone(), &options, 15).await;

    let rerun = migrate(source.as_ref(), openbao.as_ref(), &options).await;
    assert!(rerun.succeeded(), "{rerun}");
    assert_eq!(rerun.total(), 40);
    assert!(rerun.copied.len() >= 40 - 15 && !rerun.already_present.is_empty(), "{rerun}");
    assert!(rerun.skipped_different.is_empty(), "a cut write must not read as a different value: {rerun}");
    assert_copied(openbao.as_ref(), &seeded, false).await;
    let last = migrate(source.as_ref(), openbao.as_ref(), &options).await;
    assert_eq!((last.copied.len(), last.already_present.len()), (0, 40), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_changed_in_the_target_is_kept_unless_overwrite() {
    let Some(openbao) = openbao().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite(&dir, "source.db").await;
    let tenant = run_tenant();
    let seeded = seed(source.as_ref(), &tenant, "apps", 4).await;
    let selection = ScanSelection { tenant: Some(tenant), namespace: None };
    let options = MigrateOptions { selection, ..Default::default() };
    assert_eq!(migrate(source.as_ref(), openbao.as_ref(), &options).await.copied.len(), 4);
    let (changed, _) = &seeded.secrets[1];
    openbao.put(changed, &SecretValue::from_slice(b"changed in the target"), &Tags::new(), None).await.unwrap();

    let report = migrate(source.as_ref(), openbao.as_ref(), &options).await;
    assert_eq!(report.skipped_different, std::slice::from_ref(changed), "{report}");
    assert!(report.succeeded());
    assert!(!report.to_string().contains("changed in the target"), "a value reached the summary");
    assert_eq!(openbao.get(changed, None).await.unwrap().value.expose(), b"changed in the target");

    let report = migrate(source.as_ref(), openbao.as_ref(), &MigrateOptions { overwrite: true, ..options }).await;
    assert_eq!(report.copied, std::slice::from_ref(changed), "{report}");
    assert_copied(openbao.as_ref(), &seeded, false).await;
}

/// `cargo test --test migrate -- --ignored --nocapture bench`: how long
/// 10,000 secrets take from SQLite to SQLite and from SQLite to OpenBao,
/// and the rerun that finds them all present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it on its own"]
async fn bench_10000_secrets() {
    const SECRETS: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite(&dir, "source.db").await;
    let tenant = run_tenant();
    let started = Instant::now();
    for i in 0..SECRETS {
        let name = SecretName::new(
            tenant.clone(),
            Namespace::parse(&format!("bench.ns{}", i % 10)).unwrap(),
            key(&format!("key-{i:05}")),
        );
        let tags: Tags = [("index", i.to_string())].into_iter().collect();
        source.put(&name, &SecretValue::new(format!("value-{i}").into_bytes()), &tags, None).await.unwrap();
    }
    println!("seeding {SECRETS} secrets into SQLite: {:.1?}", started.elapsed());
    let options =
        MigrateOptions { selection: ScanSelection { tenant: Some(tenant), namespace: None }, ..Default::default() };
    let mut targets: Vec<(&str, Arc<dyn SecretStore>)> = vec![("SQLite", sqlite(&dir, "target.db").await)];
    if let Some(openbao) = openbao().await {
        targets.push(("OpenBao", openbao));
    }
    for (label, target) in targets {
        let report = migrate(source.as_ref(), target.as_ref(), &options).await;
        assert!(report.succeeded() && report.copied.len() == SECRETS, "{report}");
        println!("SQLite -> {label}: {SECRETS} secrets copied in {:.1?}", report.elapsed);
        let rerun = migrate(source.as_ref(), target.as_ref(), &options).await;
        assert!(rerun.succeeded() && rerun.already_present.len() == SECRETS, "{rerun}");
        println!("SQLite -> {label}: rerun, all {SECRETS} already present, in {:.1?}", rerun.elapsed);
    }
}
