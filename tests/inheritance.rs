//! Namespace inheritance under the policy, end to end, with the access
//! rules and isolation `config/tls.yaml` ships: the policy decides on every
//! namespace a lookup consults, a namespace the caller may not read counts
//! as absent, a cached answer never serves a caller the policy judges
//! differently, and the audit names the namespace that answered.

mod common;

use std::time::Duration;

use common::{admin_account, create_token, put, Auth, Client, Daemon};
use secretd::proto::{BatchGetSecretsRequest, SecretRef};
use tonic::Code;

/// `access` and `secret.isolation` of config/tls.yaml, verbatim, with one
/// rule added after them so the test's admin can seed secrets.
fn shipped_rules() -> (String, String) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/tls.yaml")).unwrap();
    let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let mut access = doc["access"].clone();
    let seeding: serde_norway::Value = serde_norway::from_str("{principals: [test-admin], allow: ['*/*/*']}").unwrap();
    access["rules"].as_sequence_mut().unwrap().push(seeding);
    let isolation = doc["secret"]["isolation"].clone();
    let block = |key: &str, value: &serde_norway::Value| {
        let mut map = serde_norway::Mapping::new();
        map.insert(key.into(), value.clone());
        serde_norway::to_string(&map).unwrap()
    };
    (block("access", &access), block("isolation", &isolation))
}

/// The value read and the namespace it was found in, or the refusal's code.
async fn read(c: &mut Client, ns: &str, key: &str) -> Result<(String, String), Code> {
    common::get(c, ns, key)
        .await
        .map(|r| (String::from_utf8(r.value.to_vec()).unwrap(), r.namespace))
        .map_err(|s| s.code())
}

#[tokio::test]
async fn shipped_rules_decide_on_every_namespace_a_lookup_consults() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let (access, isolation) = shipped_rules();
    let top = format!("{}{access}audit:\n  sink: file\n  path: {}\n", admin_account(), audit.display());
    let daemon = Daemon::configured(dir.path(), "server:\n  listen: 127.0.0.1:0\n", &isolation, "", &top);
    let mut admin = daemon.client().await;
    for (ns, key, value) in [
        ("company", "root", "company-root"),
        ("company", "db", "company-db"),
        ("company.finance", "db", "finance-db"),
        ("company.team", "db", "team-db"),
    ] {
        put(&mut admin, ns, key, value.as_bytes()).await.unwrap();
    }
    // The admin reads first, so every answer below is also in the cache.
    assert_eq!(read(&mut admin, "company.finance.x", "db").await.unwrap().0, "finance-db");
    assert_eq!(read(&mut admin, "company.etl.a", "root").await.unwrap().0, "company-root");

    let worker = create_token(&daemon, "worker", "WORKER", &["read"], &[], 0).await;
    let etl = create_token(&daemon, "etl", "WORKER", &["read"], &["company.etl.*"], 0).await;
    let mut worker = daemon.client_as(Auth::bearer(&worker)).await;
    let mut etl = daemon.client_as(Auth::bearer(&etl)).await;
    for _ in 0..2 {
        // WORKER may read main/company.*/* but not */company.finance/*.
        assert_eq!(read(&mut worker, "company.finance.x", "db").await, Err(Code::NotFound));
        assert_eq!(read(&mut worker, "company.finance", "db").await, Err(Code::PermissionDenied));
        assert_eq!(read(&mut worker, "company.team.etl", "db").await, Ok(("team-db".into(), "company.team".into())));
        // A token for company.etl.* does not reach company/root through company.etl.a.
        assert_eq!(read(&mut etl, "company.etl.a", "root").await, Err(Code::NotFound));
    }
    let batch = BatchGetSecretsRequest {
        refs: vec![
            SecretRef { namespace: "company.finance.x".into(), key: "db".into(), ..Default::default() },
            SecretRef { namespace: "company.team.x".into(), key: "db".into(), ..Default::default() },
        ],
    };
    let results = worker.batch_get_secrets(batch).await.unwrap().into_inner().results;
    let codes: Vec<String> = results
        .iter()
        .map(|r| match r.result.as_ref().unwrap() {
            secretd::proto::batch_get_result::Result::Secret(s) => format!("ok {}", s.namespace),
            secretd::proto::batch_get_result::Result::Error(e) => format!("error {}", e.code),
        })
        .collect();
    assert_eq!(codes, [format!("error {}", Code::NotFound as i32), "ok company.team".to_owned()]);

    tokio::time::sleep(Duration::from_millis(300)).await; // the audit writer batches
    let records: Vec<serde_json::Value> =
        std::fs::read_to_string(&audit).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let inherited = records
        .iter()
        .find(|r| r["principal"] == "worker" && r["namespace"] == "company.team.etl" && r["code"] == "OK")
        .expect("the worker's inherited read is audited");
    assert_eq!(inherited["found_in"], "company.team", "the audit names the namespace that answered: {inherited}");
    let refused = records
        .iter()
        .find(|r| r["principal"] == "worker" && r["namespace"] == "company.finance.x")
        .expect("the worker's refused walk is audited");
    assert_eq!(refused["code"], "NOT_FOUND");
    assert!(refused.get("found_in").is_none(), "{refused}");
}

/// `secretd access explain`, on the shipped rules: each namespace a call
/// would consult, the decision and the rule that made it.
#[tokio::test]
async fn access_explain_names_the_deciding_rule_for_each_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let (access, isolation) = shipped_rules();
    let top = format!("{}{access}", admin_account());
    let daemon = Daemon::configured(dir.path(), "server:\n  listen: 127.0.0.1:0\n", &isolation, "", &top);
    let etl = create_token(&daemon, "etl", "WORKER", &["read"], &["company.etl.*"], 0).await;
    let worker = create_token(&daemon, "worker", "WORKER", &["read"], &[], 0).await;
    let token_file = dir.path().join("etl.token");
    std::fs::write(&token_file, &etl).unwrap();
    let explain = |args: &[&str]| {
        let out = std::process::Command::new(common::bin())
            .args(["access", "explain", "--addr", &daemon.addr, "--api-token", common::ADMIN_TOKEN])
            .args(args)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let rows = |stdout: &str| -> Vec<Vec<String>> {
        stdout.lines().skip(2).map(|l| l.split('\t').map(str::to_owned).collect()).collect()
    };

    let (ok, out, err) = explain(&["--principal", "worker", "-n", "company.finance.x", "db"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("principal worker (service WORKER)"), "{out}");
    let rows = rows(&out);
    assert_eq!(rows.len(), 3, "{out}");
    assert_eq!(rows[0][..3], ["company.finance.x", "allow", "access_rule"]);
    assert_eq!(rows[0][3], "default", "the backend that serves it");
    assert!(rows[0][4].contains(r#"access.rules[0] allow "main/company.*/*""#), "{out}");
    assert_eq!(rows[1][..3], ["company.finance", "deny", "access_rule"]);
    assert!(rows[1][4].contains(r#"access.rules[0] deny "*/company.finance/*""#), "{out}");
    assert_eq!(rows[2][..3], ["company", "deny", "default_access"]);

    // By token, limited to company.etl.*: the parents are outside it.
    let (ok, out, err) = explain(&["--token-file", token_file.to_str().unwrap(), "-n", "company.etl.a", "root"]);
    assert!(ok, "{err}");
    let steps: Vec<(String, String, String)> = out
        .lines()
        .skip(2)
        .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect();
    assert_eq!(
        steps,
        [
            ("company.etl.a".into(), "allow".into(), "access_rule".into()),
            ("company.etl".into(), "deny".into(), "namespaces".into()),
            ("company".into(), "deny".into(), "namespaces".into()),
        ]
    );
    // A write by a read-only token: refused for the permission.
    let (ok, out, _) = explain(&["--principal", "etl", "-n", "company.etl.a", "root", "--action", "write"]);
    assert!(ok);
    assert!(out.contains("company.etl.a\tdeny\tpermission\t"), "{out}");

    // Unknown principals are NOT_FOUND; a non-admin may not ask.
    let (ok, _, err) = explain(&["--principal", "nobody", "-n", "company", "db"]);
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");
    let out = std::process::Command::new(common::bin())
        .args([
            "access",
            "explain",
            "--addr",
            &daemon.addr,
            "--api-token",
            &worker,
            "--principal",
            "etl",
            "-n",
            "a",
            "k",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("PERMISSION_DENIED"));
}
