//! End to end: the real daemon on SQLite, called over gRPC.

mod common;

use common::{get_version, put_tagged, Client, Daemon};
use secretd::proto::{
    batch_get_result::Result as Item, BatchGetSecretsRequest, DeleteSecretRequest, GetSecretRequest,
    ListSecretsRequest, PutSecretRequest, SecretRef, Source,
};
use tonic::Code;

async fn list_keys(c: &mut Client, ns: &str, tags: &[(&str, &str)], page_size: i32) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_secrets(ListSecretsRequest {
                namespace: ns.into(),
                tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                page_size,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        keys.extend(page.secrets.into_iter().map(|s| s.key));
        if page.next_page_token.is_empty() {
            return keys;
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn every_rpc_over_grpc() {
    let daemon = Daemon::sqlite("", "");
    let mut c = daemon.client().await;

    // Put and get, with versions and provenance.
    let v1 = put_tagged(&mut c, "company.team", "db/password", b"first", &[("owner", "data")]).await.unwrap();
    let v2 = put_tagged(&mut c, "company.team", "db/password", b"second", &[]).await.unwrap();
    assert_ne!(v1, v2);
    let got = get_version(&mut c, "company.team", "db/password", "").await.unwrap();
    assert_eq!(&got.value[..], b"second");
    assert_eq!(got.version, v2);
    assert_eq!(got.namespace, "company.team");
    assert_eq!(got.source, Source::Backend as i32);
    assert_eq!(get_version(&mut c, "company.team", "db/password", "").await.unwrap().source, Source::Cache as i32);
    let pinned = get_version(&mut c, "company.team", "db/password", &v1).await.unwrap();
    assert_eq!(&pinned.value[..], b"first");
    assert_eq!(pinned.tags.get("owner").map(String::as_str), Some("data"));
    assert_eq!(get_version(&mut c, "company.team", "db/password", "424242").await.unwrap_err().code(), Code::NotFound);

    // Binary values round-trip unchanged, at the size limit.
    let binary: Vec<u8> = (0..64 * 1024).map(|i| (i % 256) as u8).collect();
    put_tagged(&mut c, "company.team", "blob", &binary, &[]).await.unwrap();
    assert_eq!(&get_version(&mut c, "company.team", "blob", "").await.unwrap().value[..], &binary[..]);

    // List: one namespace, pages, tag filter, metadata only.
    for i in 0..7 {
        let env = if i % 2 == 0 { "prod" } else { "dev" };
        put_tagged(&mut c, "company.list", &format!("k{i}"), b"x", &[("env", env)]).await.unwrap();
    }
    put_tagged(&mut c, "company.list.child", "below", b"x", &[]).await.unwrap();
    assert_eq!(list_keys(&mut c, "company.list", &[], 3).await, ["k0", "k1", "k2", "k3", "k4", "k5", "k6"]);
    assert_eq!(list_keys(&mut c, "company.list", &[("env", "prod")], 2).await, ["k0", "k2", "k4", "k6"]);
    let page = c
        .list_secrets(ListSecretsRequest { namespace: "company.team".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let meta = page.secrets.iter().find(|s| s.key == "db/password").unwrap();
    assert_eq!((meta.tenant.as_str(), meta.version.as_str()), ("main", v2.as_str()));
    assert!(meta.created_at.unwrap().seconds <= meta.updated_at.unwrap().seconds);

    // Batch: in order, one missing and one bad ref do not fail the others.
    let refs = vec![
        SecretRef { namespace: "company.team".into(), key: "db/password".into(), ..Default::default() },
        SecretRef { namespace: "company.team".into(), key: "missing".into(), ..Default::default() },
        SecretRef { namespace: "company..team".into(), key: "x".into(), ..Default::default() },
        SecretRef {
            namespace: "company.team".into(),
            key: "db/password".into(),
            version: v1.clone(),
            ..Default::default()
        },
    ];
    let results =
        c.batch_get_secrets(BatchGetSecretsRequest { refs: refs.clone() }).await.unwrap().into_inner().results;
    assert_eq!(results.len(), 4);
    for (result, asked) in results.iter().zip(&refs) {
        assert_eq!(result.r#ref.as_ref(), Some(asked), "results must echo their refs in order");
    }
    match &results[0].result {
        Some(Item::Secret(s)) => assert_eq!(&s.value[..], b"second"),
        other => panic!("unexpected {other:?}"),
    }
    match (&results[1].result, &results[2].result) {
        (Some(Item::Error(missing)), Some(Item::Error(bad))) => {
            assert_eq!(missing.code, Code::NotFound as i32);
            assert_eq!(bad.code, Code::InvalidArgument as i32);
        }
        other => panic!("unexpected {other:?}"),
    }
    match &results[3].result {
        Some(Item::Secret(s)) => assert_eq!(&s.value[..], b"first"),
        other => panic!("unexpected {other:?}"),
    }
    let too_many = vec![SecretRef { namespace: "a".into(), key: "k".into(), ..Default::default() }; 101];
    let err = c.batch_get_secrets(BatchGetSecretsRequest { refs: too_many }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Delete: all versions go, the cache forgets, a second delete is NOT_FOUND.
    c.delete_secret(DeleteSecretRequest {
        namespace: "company.team".into(),
        key: "db/password".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(get_version(&mut c, "company.team", "db/password", "").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(get_version(&mut c, "company.team", "db/password", &v1).await.unwrap_err().code(), Code::NotFound);
    let again = c
        .delete_secret(DeleteSecretRequest {
            namespace: "company.team".into(),
            key: "db/password".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
}

#[tokio::test]
async fn namespace_inheritance_over_grpc() {
    let daemon = Daemon::sqlite("", "");
    let mut c = daemon.client().await;
    put_tagged(&mut c, "company", "api-key", b"from company", &[]).await.unwrap();
    let got = get_version(&mut c, "company.team.etl", "api-key", "").await.unwrap();
    assert_eq!((&got.value[..], got.namespace.as_str()), (&b"from company"[..], "company"));
    // Cached under the child's request; a closer write must show at once.
    assert_eq!(get_version(&mut c, "company.team.etl", "api-key", "").await.unwrap().source, Source::Cache as i32);
    put_tagged(&mut c, "company.team", "api-key", b"from team", &[]).await.unwrap();
    let got = get_version(&mut c, "company.team.etl", "api-key", "").await.unwrap();
    assert_eq!((&got.value[..], got.namespace.as_str()), (&b"from team"[..], "company.team"));
    // Listing does not inherit.
    assert!(list_keys(&mut c, "company.team.etl", &[], 10).await.is_empty());
    // Another tenant sees nothing.
    let other = GetSecretRequest {
        tenant: "acme".into(),
        namespace: "company".into(),
        key: "api-key".into(),
        ..Default::default()
    };
    assert_eq!(c.get_secret(other).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn tag_scoping_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let unscoped = Daemon::sqlite_in(dir.path(), "", "");
    let prod = Daemon::sqlite_in(dir.path(), "", "tags:\n  application: prod");
    let mut raw = unscoped.client().await;
    let mut scoped = prod.client().await;
    put_tagged(&mut raw, "shared", "untagged", b"dev value", &[]).await.unwrap();
    put_tagged(&mut scoped, "shared", "stamped", b"prod value", &[("owner", "ops")]).await.unwrap();

    let stamped = get_version(&mut raw, "shared", "stamped", "").await.unwrap();
    assert_eq!(stamped.tags.get("application").map(String::as_str), Some("prod"), "writes are stamped");
    assert_eq!(get_version(&mut scoped, "shared", "untagged", "").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(list_keys(&mut scoped, "shared", &[], 10).await, ["stamped"]);
    assert_eq!(list_keys(&mut raw, "shared", &[], 10).await, ["stamped", "untagged"]);
    let delete = DeleteSecretRequest { namespace: "shared".into(), key: "untagged".into(), ..Default::default() };
    assert_eq!(scoped.delete_secret(delete).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(&get_version(&mut raw, "shared", "untagged", "").await.unwrap().value[..], b"dev value", "not deleted");
    let conflict = put_tagged(&mut scoped, "shared", "x", b"v", &[("application", "dev")]).await.unwrap_err();
    assert_eq!(conflict.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn bad_names_and_sizes_are_invalid_argument() {
    let daemon = Daemon::sqlite("max-value-size: 1024", "");
    let mut c = daemon.client().await;
    let cases: &[(&str, &str, &str, &str)] = &[
        ("", "", "k", "namespace must be"),
        ("", "company..team", "k", "namespace must be"),
        ("", "company", "", "key must be"),
        ("", "company", "../etc/passwd", "key must be"),
        ("", "company", "a b", "key must be"),
        ("Upper", "company", "k", "tenant must be"),
    ];
    for (tenant, ns, key, rule) in cases {
        let req = PutSecretRequest {
            tenant: tenant.to_string(),
            namespace: ns.to_string(),
            key: key.to_string(),
            value: b"v".to_vec().into(),
            ..Default::default()
        };
        let err = c.put_secret(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{tenant}/{ns}/{key}");
        assert!(err.message().contains(rule), "{tenant}/{ns}/{key}: {}", err.message());
        let req = GetSecretRequest {
            tenant: tenant.to_string(),
            namespace: ns.to_string(),
            key: key.to_string(),
            ..Default::default()
        };
        assert_eq!(c.get_secret(req).await.unwrap_err().code(), Code::InvalidArgument);
    }
    let too_big = put_tagged(&mut c, "company", "big", &[7u8; 1025], &[]).await.unwrap_err();
    assert_eq!(too_big.code(), Code::InvalidArgument);
    assert!(too_big.message().contains("secret.max-value-size"));
    assert_eq!(put_tagged(&mut c, "company", "empty", b"", &[]).await.unwrap_err().code(), Code::InvalidArgument);
    put_tagged(&mut c, "company", "fits", &[7u8; 1024], &[]).await.unwrap();
    // Nothing was written by the refused calls.
    assert_eq!(list_keys(&mut c, "company", &[], 10).await, ["fits"]);
}

#[tokio::test]
async fn values_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::sqlite_in(dir.path(), "", "");
    let mut c = daemon.client().await;
    let marker = b"PLAINTEXT-MARKER-7f3a9c1e-do-not-store";
    put_tagged(&mut c, "company", "marked-key-name", marker, &[]).await.unwrap();
    put_tagged(&mut c, "company", "marked-key-name", marker, &[]).await.unwrap();
    assert_eq!(&get_version(&mut c, "company", "marked-key-name", "").await.unwrap().value[..], marker);
    // Every byte SQLite wrote (database, WAL, shared memory): the name is
    // there, so these are the right files; the value is not.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("secrets.db") {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    let contains = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"marked-key-name"), "the database files do not hold the secret's row");
    assert!(!contains(marker), "the plaintext value is stored in the database files");
    assert!(!contains(common::TEST_SECRET.as_bytes()), "the encryption secret is stored in the database");
}

#[tokio::test]
async fn health_and_reflection() {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    let daemon = Daemon::sqlite("", "");
    let mut health = HealthClient::new(daemon.channel().await);
    for service in ["", "secretd.v1.SecretBroker"] {
        let status = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(daemon.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"secretd.v1.SecretBroker".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");
}

/// `max_age`, `refresh` and `age` over the wire, and the negative cache.
#[tokio::test]
async fn freshness_demands_and_provenance_over_grpc() {
    let daemon =
        Daemon::sqlite("cache:\n  negative-ttl: 1h\n  refresh-rate-limit: {requests-per-second: 0.01, burst: 3}\n", "");
    let mut c = daemon.client().await;
    put_tagged(&mut c, "fresh", "k", b"v1", &[]).await.unwrap();
    let request = |max_age: Option<prost_types::Duration>, refresh: bool| GetSecretRequest {
        namespace: "fresh".into(),
        key: "k".into(),
        max_age,
        refresh,
        ..Default::default()
    };
    let first = c.get_secret(request(None, false)).await.unwrap().into_inner();
    assert_eq!((first.source, first.age), (Source::Backend as i32, Some(prost_types::Duration::default())));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let cached = c.get_secret(request(None, false)).await.unwrap().into_inner();
    assert_eq!(cached.source, Source::Cache as i32);
    let age = cached.age.expect("a cached answer says its age");
    assert!(age.seconds == 0 && age.nanos >= 300_000_000, "{age:?}");

    // Older than max_age: read again. Young enough: the cache answers.
    let strict = Some(prost_types::Duration { seconds: 0, nanos: 100_000_000 });
    assert_eq!(c.get_secret(request(strict, false)).await.unwrap().into_inner().source, Source::Backend as i32);
    let lenient = Some(prost_types::Duration { seconds: 60, nanos: 0 });
    assert_eq!(c.get_secret(request(lenient, false)).await.unwrap().into_inner().source, Source::Cache as i32);
    let negative = Some(prost_types::Duration { seconds: -1, nanos: 0 });
    assert_eq!(c.get_secret(request(negative, false)).await.unwrap_err().code(), Code::InvalidArgument);

    // refresh: the backend, twice (the burst of 3, less what the strict
    // max_age spent), then RESOURCE_EXHAUSTED.
    for _ in 0..2 {
        assert_eq!(c.get_secret(request(None, true)).await.unwrap().into_inner().source, Source::Backend as i32);
    }
    let limited = c.get_secret(request(None, true)).await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    assert!(limited.message().contains("refresh-rate-limit"), "{}", limited.message());

    // A remembered NOT_FOUND is cleared by a put through secretd.
    assert_eq!(get_version(&mut c, "fresh", "later", "").await.unwrap_err().code(), Code::NotFound);
    put_tagged(&mut c, "fresh", "later", b"here", &[]).await.unwrap();
    assert_eq!(&get_version(&mut c, "fresh", "later", "").await.unwrap().value[..], b"here");
}
