//! Minting, listing and revoking tokens end to end, as a security review
//! would try to abuse them: a token limited to `company.team` minting a
//! wider one, tenants, expiries past any sane lifetime, names that belong to
//! principals of the configuration.

mod common;

use std::time::{Duration, SystemTime};

use common::{get_in, put_in, token_hash, Auth, Daemon, ADMIN_TOKEN};
use secretd::proto::{
    token_admin_client::TokenAdminClient, CreateTokenRequest, GetSecretRequest, ListTokensRequest, RevokeTokenRequest,
};
use tonic::Code;

const OPERATOR_PASSWORD: &str = "Operator-Password-For-Tokens-1";
const ETL_TOKEN: &str = "sdt_e2eEtlWorkerTokenBBBBBBBBBBBBBBBBBBBBBBBBBB";

/// A daemon with the basic-auth operator, the test admin (a config service
/// account with `admin`, no namespace limit, the default tenants), a config
/// worker `etl` and a Unix peer rule named `sidecar-peer`.
fn daemon(dir: &std::path::Path) -> Daemon {
    let server = "server:\n  listen: 127.0.0.1:0\n  basic-auth:\n    username: operator\n    password: ${E2E_OPERATOR_PASSWORD}\n";
    let top = format!(
        "auth:\n  service-accounts:\n    - name: test-admin\n      service: ADMIN\n      permissions: [admin]\n      token-sha256: {}\n    - name: etl\n      service: WORKER\n      permissions: [read]\n      token-sha256: {}\n  unix-peers:\n    - uid: 4242\n      principal:\n        name: sidecar-peer\n        service: WORKER\n",
        token_hash(ADMIN_TOKEN),
        token_hash(ETL_TOKEN),
    );
    let db = dir.join("secrets.db");
    let config = format!(
        "{server}secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://{}\n    secret: ${{E2E_JDBC_SECRET}}\n{top}",
        db.display()
    );
    let path = dir.join("tokens.yaml");
    std::fs::write(&path, config).unwrap();
    Daemon::start_with_env(
        &["serve", "--config", path.to_str().unwrap()],
        dir,
        &[("E2E_OPERATOR_PASSWORD", OPERATOR_PASSWORD)],
    )
}

fn operator() -> Auth {
    use base64::Engine;
    let credentials = format!("operator:{OPERATOR_PASSWORD}");
    Auth::raw(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials)))
}

type Admin = TokenAdminClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Auth>>;

async fn admin_as(d: &Daemon, auth: Auth) -> Admin {
    TokenAdminClient::with_interceptor(d.channel().await, auth)
}

fn request(name: &str, perms: &[&str], namespaces: &[&str], expires: i64) -> CreateTokenRequest {
    CreateTokenRequest {
        name: name.into(),
        service: "WORKER".into(),
        permissions: perms.iter().map(|p| p.to_string()).collect(),
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        expires_in_seconds: expires,
        ..Default::default()
    }
}

async fn mint(admin: &mut Admin, req: CreateTokenRequest) -> Result<String, tonic::Status> {
    admin.create_token(req).await.map(|r| r.into_inner().token)
}

fn assert_denied(result: Result<String, tonic::Status>, what: &str, says: &str) {
    match result {
        Ok(_) => panic!("{what}: minted, but must be refused"),
        Err(e) => {
            assert_eq!(e.code(), Code::PermissionDenied, "{what}: {e:?}");
            assert!(e.message().contains(says), "{what}: the message should name {says:?}: {}", e.message());
        }
    }
}

/// Issue #12, item 2: a `read,admin` token limited to `company.team` mints
/// only tokens inside its own limits.
#[tokio::test]
async fn a_token_mints_nothing_wider_than_itself() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    put_in(&mut d.client().await, "", "company", "root", b"v").await.unwrap();
    put_in(&mut d.client().await, "", "company.team", "db", b"v").await.unwrap();

    let mut root = d.admin().await;
    let team_admin = mint(&mut root, request("team-admin", &["read", "admin"], &["company.team"], 3600)).await.unwrap();
    let mut team = admin_as(&d, Auth::bearer(&team_admin)).await;

    // The escalation the review found: no namespace limit, reading company/root.
    let unlimited = mint(&mut team, request("wide", &["read"], &[], 0)).await;
    if let Ok(token) = &unlimited {
        let read = get_in(&mut d.client_as(Auth::bearer(token)).await, "", "company", "root").await;
        panic!("a company.team token minted an unlimited one (reading company/root: {read:?})");
    }
    assert_denied(unlimited, "no namespace limit", "namespace");
    assert_denied(
        mint(&mut team, request("wider-glob", &["read"], &["company.*"], 600)).await,
        "company.* from company.team",
        "company.*",
    );
    assert_denied(
        mint(&mut team, request("sibling", &["read"], &["company.other"], 600)).await,
        "a sibling namespace",
        "company.other",
    );
    assert_denied(
        mint(&mut team, request("outlives", &["read"], &["company.team"], 7200)).await,
        "an expiry later than the creator's",
        "expire",
    );
    assert_denied(
        mint(&mut team, request("forever", &["read"], &["company.team"], 0)).await,
        "no expiry from an expiring creator",
        "expire",
    );

    // Inside its limits it mints, and the new token reaches what it was given only.
    let worker = mint(&mut team, request("team-worker", &["read"], &["company.team"], 1800)).await.unwrap();
    let mut w = d.client_as(Auth::bearer(&worker)).await;
    get_in(&mut w, "", "company.team", "db").await.unwrap();
    assert_eq!(get_in(&mut w, "", "company", "root").await.unwrap_err().code(), Code::PermissionDenied);
    // `admin` holds every permission, so it may grant `write`: inside its own namespaces only.
    let writer = mint(&mut team, request("team-writer", &["write"], &["company.team"], 60)).await.unwrap();
    let mut w = d.client_as(Auth::bearer(&writer)).await;
    put_in(&mut w, "", "company.team", "new", b"v").await.unwrap();
    assert_eq!(put_in(&mut w, "", "company", "root", b"v").await.unwrap_err().code(), Code::PermissionDenied);
}

/// A token never takes the name of a principal of the configuration, since
/// `access.rules` match principals by name; not even for an unlimited admin.
#[tokio::test]
async fn config_principal_names_are_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    let mut root = d.admin().await;
    for (name, source) in [
        ("test-admin", "auth.service-accounts"),
        ("etl", "auth.service-accounts"),
        ("sidecar-peer", "auth.unix-peers"),
        ("operator", "server.basic-auth"),
    ] {
        assert_denied(mint(&mut root, request(name, &["read"], &[], 0)).await, name, source);
    }
    assert!(mint(&mut root, request("etl-2", &["read"], &[], 0)).await.is_ok());
}

/// A namespace-limited admin lists and revokes only the tokens inside its
/// reach; the others are refused and keep working.
#[tokio::test]
async fn a_limited_admin_revokes_only_inside_its_reach() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    put_in(&mut d.client().await, "", "company.other", "k", b"v").await.unwrap();
    let mut root = d.admin().await;
    let team_admin = mint(&mut root, request("team-admin", &["read", "admin"], &["company.team"], 0)).await.unwrap();
    let outsider = mint(&mut root, request("outsider", &["read"], &["company.other"], 0)).await.unwrap();
    mint(&mut root, request("everywhere", &["read"], &[], 0)).await.unwrap();
    mint(&mut root, request("inside", &["read"], &["company.team"], 0)).await.unwrap();
    let mut team = admin_as(&d, Auth::bearer(&team_admin)).await;

    for name in ["outsider", "everywhere"] {
        let err = team.revoke_token(RevokeTokenRequest { name: name.into() }).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{name}: {err:?}");
        assert!(err.message().contains(name), "{}", err.message());
    }
    get_in(&mut d.client_as(Auth::bearer(&outsider)).await, "", "company.other", "k").await.unwrap();
    team.revoke_token(RevokeTokenRequest { name: "inside".into() }).await.unwrap();
    let err = team.revoke_token(RevokeTokenRequest { name: "no-such-token".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let listed = team.list_tokens(ListTokensRequest {}).await.unwrap().into_inner().tokens;
    let mut names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["inside", "team-admin"], "a limited admin sees only the tokens inside its reach");
    let all = root.list_tokens(ListTokensRequest {}).await.unwrap().into_inner().tokens;
    assert_eq!(all.len(), 4, "the unlimited admin sees every token");
    assert!(all.iter().all(|t| t.tenants == ["main"]), "tokens default to tenant main: {all:?}");
}

/// Issue #12, item 13: tokens and config principals reach their tenants only
/// (`main` unless told otherwise); the operator reaches all of them.
#[tokio::test]
async fn tenants_limit_tokens_and_config_principals() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    let mut op = d.client_as(operator()).await;
    for tenant in ["main", "acme"] {
        put_in(&mut op, tenant, "company.team", "db", b"v").await.unwrap();
    }
    let mut root = d.admin().await;
    let main_only = mint(&mut root, request("main-worker", &["read"], &["company.*"], 0)).await.unwrap();
    let mut w = d.client_as(Auth::bearer(&main_only)).await;
    get_in(&mut w, "main", "company.team", "db").await.unwrap();
    get_in(&mut w, "", "company.team", "db").await.unwrap();
    let err = get_in(&mut w, "acme", "company.team", "db").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "a main token read tenant acme: {err:?}");
    let mut etl = d.client_as(Auth::bearer(ETL_TOKEN)).await;
    get_in(&mut etl, "main", "company.team", "db").await.unwrap();
    assert_eq!(get_in(&mut etl, "acme", "company.team", "db").await.unwrap_err().code(), Code::PermissionDenied);

    // The operator mints for another tenant; the test admin, limited to main, cannot.
    let mut op_admin = admin_as(&d, operator()).await;
    let acme = CreateTokenRequest { tenants: vec!["acme".into()], ..request("acme-worker", &["read"], &[], 0) };
    let acme = mint(&mut op_admin, acme).await.unwrap();
    let mut a = d.client_as(Auth::bearer(&acme)).await;
    get_in(&mut a, "acme", "company.team", "db").await.unwrap();
    assert_eq!(get_in(&mut a, "main", "company.team", "db").await.unwrap_err().code(), Code::PermissionDenied);
    for tenants in [vec!["acme"], vec!["*"], vec!["main", "acme-*"]] {
        let req = CreateTokenRequest {
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            ..request("sneaky", &["read"], &[], 0)
        };
        assert_denied(mint(&mut root, req).await, &format!("tenants {tenants:?} from a main admin"), "tenant");
    }
    let listed = op_admin.list_tokens(ListTokensRequest {}).await.unwrap().into_inner().tokens;
    assert_eq!(listed.iter().find(|t| t.name == "acme-worker").unwrap().tenants, ["acme"]);
    let invisible = root.list_tokens(ListTokensRequest {}).await.unwrap().into_inner().tokens;
    assert!(!invisible.iter().any(|t| t.name == "acme-worker"), "a main admin listed an acme token");

    let bad = CreateTokenRequest { tenants: vec!["Acme!".into()], ..request("bad", &["read"], &[], 0) };
    assert_eq!(mint(&mut op_admin, bad).await.unwrap_err().code(), Code::InvalidArgument);
}

/// Issue #12, item 14: an absurd lifetime is INVALID_ARGUMENT, neither a
/// panic in the handler nor a token stored already expired.
#[tokio::test]
async fn absurd_expiries_are_invalid_arguments() {
    const TEN_YEARS: i64 = 10 * 365 * 24 * 3600;
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    put_in(&mut d.client().await, "", "company", "k", b"v").await.unwrap();
    let mut root = d.admin().await;
    let mut wrong = Vec::new();
    for (i, seconds) in [i64::MAX, i64::MAX / 1000, 100_000_000_000_000_000, TEN_YEARS + 1].into_iter().enumerate() {
        match mint(&mut root, request(&format!("absurd-{i}"), &["read"], &[], seconds)).await {
            Err(e) if e.code() == Code::InvalidArgument && e.message().contains("10 years") => {}
            Err(e) => wrong.push(format!("{seconds}: {:?} {}", e.code(), e.message())),
            Ok(token) => {
                let works = get_in(&mut d.client_as(Auth::bearer(&token)).await, "", "company", "k").await.is_ok();
                wrong.push(format!("{seconds}: minted (and the token works: {works})"));
            }
        }
    }
    assert!(wrong.is_empty(), "absurd lifetimes must be INVALID_ARGUMENT naming the cap: {wrong:#?}");
    assert_eq!(
        mint(&mut root, request("negative", &["read"], &[], -1)).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // The daemon is still there, and the longest allowed lifetime works.
    let created = root.create_token(request("decade", &["read"], &[], TEN_YEARS)).await.unwrap().into_inner();
    let expires_at = created.expires_at.expect("an expiring token says when");
    let expected = SystemTime::now() + Duration::from_secs(TEN_YEARS as u64);
    let expected = expected.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((expires_at.seconds - expected).abs() < 60, "{expires_at:?} vs {expected}");
    get_in(&mut d.client_as(Auth::bearer(&created.token)).await, "", "company", "k").await.unwrap();
    let listed = root.list_tokens(ListTokensRequest {}).await.unwrap().into_inner().tokens;
    let stored = listed.iter().find(|t| t.name == "decade").unwrap().expires_at.unwrap();
    assert_eq!(stored.seconds, expires_at.seconds, "the stored expiry is the one answered");
}

/// A limited admin cannot mint its way around the access rules: a token of
/// another service type (or with a name a rule lists) could be allowed what
/// the admin itself is denied.
#[tokio::test]
async fn a_limited_admin_mints_only_tokens_the_rules_treat_like_itself() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "access:\n  rules:\n    - services: [TEAM_ADMIN]\n      deny: [\"*/company.team/root-*\"]\n    - principals: [release-bot]\n      allow: [\"*/*/*\"]\n";
    let top = format!("{}{rules}", common::admin_account());
    let daemon = Daemon::configured(dir.path(), "server:\n  listen: 127.0.0.1:0\n", "", "", &top);
    let mut root = daemon.admin().await;
    let mut limited_req = request("team-admin", &["read", "admin"], &["company.team"], 0);
    limited_req.service = "TEAM_ADMIN".into();
    let limited = mint(&mut root, limited_req).await.unwrap();
    let mut limited = admin_as(&daemon, Auth::bearer(&limited)).await;
    // Another service type, which no deny rule names.
    let err = mint(&mut limited, request("team-worker", &["read"], &["company.team"], 0)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("access.rules"), "{}", err.message());
    // A name a rule lists.
    let mut named = request("release-bot", &["read"], &["company.team"], 0);
    named.service = "TEAM_ADMIN".into();
    assert_eq!(mint(&mut limited, named).await.unwrap_err().code(), Code::PermissionDenied);
    // Its own service type, within its namespaces: fine, and still denied root-*.
    let mut same = request("team-reader", &["read"], &["company.team"], 0);
    same.service = "TEAM_ADMIN".into();
    let reader = mint(&mut limited, same).await.unwrap();
    put_in(&mut daemon.client().await, "", "company.team", "root-pw", b"v").await.unwrap();
    let got = daemon
        .client_as(Auth::bearer(&reader))
        .await
        .get_secret(GetSecretRequest { namespace: "company.team".into(), key: "root-pw".into(), ..Default::default() })
        .await;
    assert_eq!(got.unwrap_err().code(), Code::PermissionDenied);
    // The unlimited admin manages tokens for every service, as before.
    mint(&mut root, request("team-worker", &["read"], &["company.team"], 0)).await.unwrap();
}
