//! What other Secret Manager clients see of secretd's secrets, and how the
//! store copes with what they write: ids and labels as documented, values
//! as raw payloads, and a list whose tag filter holds on the client even
//! though drongo ignores the server-side filter.

mod support;

use std::collections::HashMap;

use google_cloud_auth::credentials::anonymous;
use google_cloud_secretmanager_v1::{
    client::SecretManagerService,
    model::{self, SecretPayload},
};
use secretd_core::{ErrorKind, Namespace, PageRequest, SecretName, SecretStore, SecretValue, Tags, Tenant, Version};
use secretd_gcp::{labels::MANAGED_KEY, Replication};

async fn raw_client(endpoint: &str) -> SecretManagerService {
    SecretManagerService::builder()
        .with_endpoint(endpoint)
        .with_credentials(anonymous::Builder::new().build())
        .build()
        .await
        .expect("a raw client")
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().copied().collect()
}

fn fresh_namespace(case: &str) -> String {
    format!("wire.{case}.r{:08x}", rand::random::<u32>())
}

fn secret_path(id: &str) -> String {
    format!("projects/{}/secrets/{id}", support::run_project())
}

#[tokio::test]
async fn ids_labels_and_payloads_are_as_documented() {
    let Some(endpoint) = support::endpoint() else { return };
    let store = support::connect(support::options(&endpoint)).await;
    let ns = fresh_namespace("documented");
    let name = SecretName::parse("acme", &ns, "db/password").unwrap();
    let t = tags(&[("application", "prod"), ("owner", "team-data"), ("note", "Ünïcode ok")]);
    let value = [0xff, 0x00, b'\n', 0xfe];
    let v1 = store.put(&name, &SecretValue::from_slice(&value), &t, None).await.unwrap();
    assert_eq!(v1, Version("1".into()));

    let id = format!("secretd_-acme_-{}_-db_spassword", ns.replace('.', "_d"));
    let raw = raw_client(&endpoint).await;
    let secret = raw.get_secret().set_name(secret_path(&id)).send().await.expect("the documented secret id");
    let expected: HashMap<String, String> =
        [("application", "prod"), ("owner", "team-data"), ("note", "_220_n_239_code_32_ok"), (MANAGED_KEY, "true")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    assert_eq!(secret.labels, expected);
    assert!(secret.replication.as_ref().and_then(|r| r.automatic()).is_some(), "automatic replication by default");
    let access = raw.access_secret_version().set_name(format!("{}/versions/1", secret_path(&id))).send().await.unwrap();
    assert_eq!(access.payload.unwrap().data.as_ref(), &value, "the payload is the value itself");
}

#[tokio::test]
async fn user_managed_replication_is_sent() {
    let Some(endpoint) = support::endpoint() else { return };
    let mut options = support::options(&endpoint);
    options.replication = Replication::UserManaged(vec!["europe-west1".into(), "us-east1".into()]);
    let store = support::connect(options).await;
    let ns = fresh_namespace("replication");
    let name = SecretName::parse("acme", &ns, "k").unwrap();
    store.put(&name, &SecretValue::from_slice(b"v"), &Tags::new(), None).await.unwrap();
    let id = format!("secretd_-acme_-{}_-k", ns.replace('.', "_d"));
    let secret = raw_client(&endpoint).await.get_secret().set_name(secret_path(&id)).send().await.unwrap();
    let replicas: Vec<String> = secret
        .replication
        .as_ref()
        .and_then(|r| r.user_managed())
        .map(|u| u.replicas.iter().map(|r| r.location.clone()).collect())
        .unwrap_or_default();
    assert_eq!(replicas, ["europe-west1", "us-east1"]);
}

/// drongo answers every list with every secret of the project, whatever
/// the filter; the store must still return exactly the matching secrets.
#[tokio::test]
async fn the_tag_filter_holds_on_the_client_when_the_server_ignores_it() {
    let Some(endpoint) = support::endpoint() else { return };
    let store = support::connect(support::options(&endpoint)).await;
    let ns = fresh_namespace("client-filter");
    let namespace = Namespace::parse(&ns).unwrap();
    let tenant = Tenant::parse("acme").unwrap();
    for (key, t) in [
        ("prod", tags(&[("env", "prod")])),
        ("dev", tags(&[("env", "dev")])),
        ("plain", Tags::new()),
        ("fancy", tags(&[("env", "prod"), ("Team-Name", "Data Platform")])),
        ("fancy-other", tags(&[("env", "prod"), ("Team-Name", "data platform")])),
    ] {
        let name = SecretName::new(tenant.clone(), namespace.clone(), key.parse_key());
        store.put(&name, &SecretValue::from_slice(b"v"), &t, None).await.unwrap();
    }

    // The server's answer to the filter the store sends holds secrets that
    // do not match (drongo ignores filters); if a later drongo filters,
    // the store's answers below stay the same.
    let raw = raw_client(&endpoint).await;
    let listed = raw
        .list_secrets()
        .set_parent(format!("projects/{}", support::run_project()))
        .set_filter("labels.env=\"prod\"")
        .send()
        .await
        .unwrap();
    if listed.secrets.iter().any(|s| s.name.ends_with("_-dev")) {
        eprintln!("drongo ignored the list filter, as expected: the client-side check is what holds");
    }

    let keys = |filter: Tags| {
        let store = &store;
        let (tenant, namespace) = (&tenant, &namespace);
        async move {
            let page = store.list(tenant, namespace, &filter, &PageRequest { size: 100, token: None }).await.unwrap();
            page.items.into_iter().map(|m| m.name.key.as_str().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(keys(tags(&[("env", "prod")])).await, ["fancy", "fancy-other", "prod"]);
    assert_eq!(keys(tags(&[("env", "dev")])).await, ["dev"]);
    // Not expressible as a server filter (a `-` in the key, capitals and a
    // space in the value): the client alone decides.
    assert_eq!(keys(tags(&[("Team-Name", "Data Platform")])).await, ["fancy"]);
    assert_eq!(keys(tags(&[("env", "prod"), ("Team-Name", "data platform")])).await, ["fancy-other"]);
    assert_eq!(keys(tags(&[("env", "Prod")])).await, Vec::<String>::new(), "tag values are case-sensitive");
    assert_eq!(keys(Tags::new()).await.len(), 5);
}

/// Secrets another tool wrote into the project: ids that are not secretd's,
/// labels outside the encoding, a secret without versions, a disabled
/// version.
#[tokio::test]
async fn what_other_tools_write_is_read_carefully() {
    let Some(endpoint) = support::endpoint() else { return };
    let store = support::connect(support::options(&endpoint)).await;
    let raw = raw_client(&endpoint).await;
    let parent = format!("projects/{}", support::run_project());
    let ns = fresh_namespace("foreign");
    let namespace = Namespace::parse(&ns).unwrap();
    let tenant = Tenant::parse("acme").unwrap();
    let ns_id = format!("secretd_-acme_-{}_-", ns.replace('.', "_d"));

    // In the namespace's form, with labels another tool chose.
    let labels: HashMap<String, String> =
        [("team", "data"), ("bad_+", "x"), ("k_097_", "v")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    raw.create_secret()
        .set_parent(&parent)
        .set_secret_id(format!("{ns_id}foreign"))
        .set_secret(model::Secret::new().set_labels(labels))
        .send()
        .await
        .unwrap();
    raw.add_secret_version()
        .set_parent(secret_path(&format!("{ns_id}foreign")))
        .set_payload(SecretPayload::new().set_data(bytes::Bytes::from_static(b"theirs")))
        .send()
        .await
        .unwrap();
    // Not a name the encoding writes: `_x` is no escape.
    raw.create_secret().set_parent(&parent).set_secret_id(format!("{ns_id}a_xb")).send().await.unwrap();
    // A secret without any version yet.
    raw.create_secret().set_parent(&parent).set_secret_id(format!("{ns_id}empty")).send().await.unwrap();

    let foreign = SecretName::new(tenant.clone(), namespace.clone(), "foreign".parse_key());
    let read = store.get(&foreign, None).await.unwrap();
    assert_eq!(read.value.expose(), b"theirs");
    assert_eq!(read.metadata.tags, tags(&[("team", "data")]), "labels outside the encoding are left out");
    let empty = SecretName::new(tenant.clone(), namespace.clone(), "empty".parse_key());
    assert_eq!(store.get(&empty, None).await.unwrap_err().kind(), ErrorKind::NotFound);

    let page = store.list(&tenant, &namespace, &Tags::new(), &PageRequest { size: 10, token: None }).await.unwrap();
    let keys: Vec<&str> = page.items.iter().map(|m| m.name.key.as_str()).collect();
    assert_eq!(keys, ["foreign"], "ids that are not secretd's, and secrets without versions, are not listed");

    // A put onto the foreign secret adds a version and takes over its
    // labels: they become exactly the put's tags.
    let v2 = store.put(&foreign, &SecretValue::from_slice(b"ours"), &tags(&[("a", "b")]), None).await.unwrap();
    assert_eq!(v2, Version("2".into()));
    let read = store.get(&foreign, None).await.unwrap();
    assert_eq!(read.metadata.tags, tags(&[("a", "b")]));

    // A version another tool disabled has no value to read.
    raw.disable_secret_version()
        .set_name(format!("{}/versions/1", secret_path(&format!("{ns_id}foreign"))))
        .send()
        .await
        .unwrap();
    let err = store.get(&foreign, Some(&Version("1".into()))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(store.get(&foreign, None).await.unwrap().value.expose(), b"ours");
}

#[tokio::test]
async fn values_larger_than_secret_manager_holds_are_too_large() {
    let Some(endpoint) = support::endpoint() else { return };
    let store = support::connect(support::options(&endpoint)).await;
    let name = SecretName::parse("acme", &fresh_namespace("large"), "big").unwrap();
    let err = store.put(&name, &SecretValue::new(vec![b'x'; 64 * 1024 + 1]), &Tags::new(), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert_eq!(store.get(&name, None).await.unwrap_err().kind(), ErrorKind::NotFound, "nothing was written");
    let err = store.put(&name, &SecretValue::from_slice(b"v"), &tags(&[("k", &"V".repeat(40))]), None).await;
    assert_eq!(err.unwrap_err().kind(), ErrorKind::InvalidName, "a tag value that does not fit a label");
    assert_eq!(store.get(&name, None).await.unwrap_err().kind(), ErrorKind::NotFound, "nothing was written");
}

trait ParseKey {
    fn parse_key(&self) -> secretd_core::Key;
}

impl ParseKey for str {
    fn parse_key(&self) -> secretd_core::Key {
        secretd_core::Key::parse(self).unwrap()
    }
}
