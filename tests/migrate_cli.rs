//! `secretd migrate` and `secretd rekey` as an operator runs them: the
//! real binary, a configuration naming the backends, a run killed with
//! SIGKILL part-way and run again, and a daemon serving reads meanwhile.
//!
//! OpenBao comes from `scripts/test.sh`; without it a test fails under
//! `CI=true` and otherwise says loudly that it skipped.

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use secretd_core::{Namespace, ScanSelection, SecretName, SecretStore, SecretValue, Tags, Tenant};
use secretd_sql::{SqlOptions, SqlStore};

fn env(var: &str) -> Option<String> {
    secretd_core::conformance::server_from_env(var)
}

const SECRET_A: &str = "migrate-cli-secret-A-0123456789abcdef";
const SECRET_B: &str = "migrate-cli-secret-B-0123456789abcdef";
const SECRET_C: &str = "migrate-cli-secret-C-0123456789abcdef";

async fn sqlite(path: &Path, secret: &str) -> SqlStore {
    let url = format!("sqlite://{}", path.display());
    SqlStore::connect(&url, secret, SqlOptions { max_connections: 2 }).await.unwrap()
}

/// Runs `secretd ARGS` to its end: success, stdout and stderr together.
fn secretd(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(common::bin()).args(args).current_dir(dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

async fn count(store: &dyn SecretStore, selection: &ScanSelection) -> usize {
    let mut total = 0;
    let mut page = secretd_core::PageRequest { size: 1000, token: None };
    loop {
        let answer = store.scan(selection, &page).await.unwrap();
        total += answer.items.len();
        match answer.next_token {
            Some(token) => page.token = Some(token),
            None => return total,
        }
    }
}

/// SQLite to OpenBao through `secretd migrate`: killed with SIGKILL
/// part-way, run again (it copies the rest), and once more (it copies
/// nothing and says so).
#[tokio::test]
async fn migrate_is_resumable_after_a_kill() {
    let (Some(vault), Some(token)) = (env("SECRETD_TEST_VAULT_ADDR"), env("SECRETD_TEST_VAULT_TOKEN")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = format!("r{:08x}", rand::random::<u32>());
    let tenant = Tenant::parse(&format!("mig-{run}")).unwrap();
    let source = sqlite(&dir.path().join("source.db"), SECRET_A).await;
    const TOTAL: usize = 600;
    for i in 0..TOTAL {
        let name = SecretName::parse(tenant.as_str(), &format!("team.ns{}", i % 7), &format!("key-{i:04}")).unwrap();
        let tags: Tags = [("n".to_owned(), i.to_string())].into_iter().collect();
        source.put(&name, &SecretValue::from_slice(format!("value-{i}").as_bytes()), &tags, None).await.unwrap();
    }
    // A namespace outside the selection stays where it is.
    let outside = SecretName::parse(tenant.as_str(), "other", "k").unwrap();
    source.put(&outside, &SecretValue::from_slice(b"stays"), &Tags::new(), None).await.unwrap();
    let config = dir.path().join("migrate.yaml");
    std::fs::write(
        &config,
        format!(
            "secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://{}\n    secret: {SECRET_A}\n  dedicated:\n    \
             - name: bao\n      tenant: {tenant}\n      type: vault\n      vault:\n        address: {vault}\n        \
             path-prefix: secretd-migrate-cli/{run}\n        token: {{token: {token}}}\n",
            dir.path().join("source.db").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let args =
        ["migrate", "--config", config, "--from", "default", "--to", "bao", "--tenant", tenant.as_str(), "-n", "team"];

    let mut first = Command::new(common::bin())
        .args(args)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut options = secretd_vault::VaultOptions::new(
        vault.clone(),
        secretd_vault::VaultAuth::Token(secrecy::SecretString::from(token.clone()).into()),
    );
    options.path_prefix = secretd_vault::PathPrefix::new(&format!("secretd-migrate-cli/{run}")).unwrap();
    let target = secretd_vault::VaultStore::connect(options).await.unwrap();
    let selection = ScanSelection { tenant: Some(tenant.clone()), namespace: Some(Namespace::parse("team").unwrap()) };
    // Kill it once it has copied some, but not all.
    let deadline = Instant::now() + Duration::from_secs(60);
    let copied_before_kill = loop {
        let copied = count(&target, &selection).await;
        if copied >= 20 {
            break copied;
        }
        assert!(Instant::now() < deadline, "the first run copied nothing in a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill().unwrap();
    first.wait().unwrap();
    let after_kill = count(&target, &selection).await;
    assert!(copied_before_kill < TOTAL && after_kill < TOTAL, "the run ended before the kill; use more secrets");

    let (ok, out) = secretd(&args, dir.path());
    assert!(ok, "{out}");
    assert_eq!(count(&target, &selection).await, TOTAL, "{out}");
    let copied: usize = out
        .split("copied: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no copied count in {out}"));
    assert!(copied <= TOTAL - after_kill + 8, "the rerun copied {copied}, more than was missing: {out}");
    for i in [0, TOTAL / 2, TOTAL - 1] {
        let name = SecretName::parse(tenant.as_str(), &format!("team.ns{}", i % 7), &format!("key-{i:04}")).unwrap();
        let got = target.get(&name, None).await.unwrap();
        assert_eq!(got.value.expose(), format!("value-{i}").as_bytes());
        assert_eq!(got.metadata.tags.get("n"), Some(i.to_string().as_str()));
    }
    assert!(target.get(&outside, None).await.is_err(), "a secret outside the selection was copied");

    let (ok, out) = secretd(&args, dir.path());
    assert!(ok, "{out}");
    assert!(
        out.contains("copied: 0 (0 versions)") && out.contains("nothing to copy"),
        "a third run copied again: {out}"
    );
    assert!(!out.contains("value-"), "a value reached the output: {out}");

    // Unknown backend names are refused, naming the ones there are.
    let (ok, out) = secretd(&["migrate", "--config", config, "--from", "default", "--to", "nowhere"], dir.path());
    assert!(!ok && out.contains("no backend is named nowhere") && out.contains("default, bao"), "{out}");
}

/// `secretd rekey` while a daemon serves reads: every read succeeds during
/// the run; afterwards the old secret can leave `previous-secrets`; a wrong
/// secret stops the daemon's start, naming the field.
#[tokio::test]
async fn rekey_rotates_the_sqlite_secret_while_the_daemon_serves() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("secrets.db");
    {
        let store = sqlite(&db, SECRET_A).await;
        for i in 0..300 {
            let name = SecretName::parse("main", "company", &format!("k{i}")).unwrap();
            store.put(&name, &SecretValue::from_slice(format!("v{i}").as_bytes()), &Tags::new(), None).await.unwrap();
            if i % 10 == 0 {
                store
                    .put(&name, &SecretValue::from_slice(format!("v{i}-2").as_bytes()), &Tags::new(), None)
                    .await
                    .unwrap();
            }
        }
    }
    let write_config = |name: &str, secret: &str, previous: &[&str]| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "server:\n  listen: 127.0.0.1:0\nsecret:\n  type: jdbc\n  cache: {{enabled: false}}\n  jdbc:\n    \
                 url: sqlite://{}\n    secret: {secret}\n    previous-secrets: [{}]\n{}",
                db.display(),
                previous.join(", "),
                common::admin_account()
            ),
        )
        .unwrap();
        path
    };
    let rotated = write_config("rotated.yaml", SECRET_B, &[SECRET_A]);
    let daemon = common::Daemon::start(&["serve", "--config", rotated.to_str().unwrap()], dir.path());
    let mut client = daemon.client().await;
    let reader = tokio::spawn(async move {
        let mut reads = 0;
        let stop = Instant::now() + Duration::from_secs(3);
        while Instant::now() < stop {
            for i in (0..300).step_by(7) {
                let req = secretd::proto::GetSecretRequest {
                    namespace: "company".into(),
                    key: format!("k{i}"),
                    ..Default::default()
                };
                let got = client.get_secret(req).await.expect("a read failed during the rekey").into_inner();
                assert!(got.value.starts_with(format!("v{i}").as_bytes()));
                reads += 1;
            }
        }
        reads
    });
    let (ok, out) = secretd(&["rekey", "--config", rotated.to_str().unwrap()], dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("330 stored values: 330 re-sealed"), "{out}");
    let reads = reader.await.unwrap();
    assert!(reads > 50, "the reader barely ran: {reads}");

    let (ok, out) = secretd(&["rekey", "--config", rotated.to_str().unwrap(), "--backend", "default"], dir.path());
    assert!(ok && out.contains("0 re-sealed"), "a second run re-sealed again: {out}");

    // B alone reads everything.
    let alone = write_config("alone.yaml", SECRET_B, &[]);
    let second = common::Daemon::start(&["serve", "--config", alone.to_str().unwrap()], dir.path());
    let mut c = second.client().await;
    let req = secretd::proto::GetSecretRequest { namespace: "company".into(), key: "k10".into(), ..Default::default() };
    assert_eq!(&c.get_secret(req).await.unwrap().into_inner().value[..], b"v10-2");

    // A wrong secret stops the start, naming the field and quoting nothing.
    let wrong = write_config("wrong.yaml", SECRET_C, &[]);
    let (ok, out) = secretd(&["serve", "--config", wrong.to_str().unwrap()], dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("secret.jdbc.secret"), "{out}");
    assert!(!out.contains(SECRET_C) && !out.contains(SECRET_B), "{out}");
    let (ok, out) = secretd(&["rekey", "--config", wrong.to_str().unwrap()], dir.path());
    assert!(!ok && out.contains("secret.jdbc.secret"), "{out}");
}
