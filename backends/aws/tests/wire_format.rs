//! What other AWS clients see: values stored as themselves (text as
//! `SecretString`, anything else as `SecretBinary`), tags as AWS tags, and
//! clean errors when the server cannot be reached.

mod support;

use aws_sdk_secretsmanager::{config::Credentials, Client};
use secretd_aws::{AwsStore, DeletePolicy};
use secretd_core::{ErrorKind, SecretName, SecretStore, SecretValue, Tags};

async fn raw_client(endpoint: &str) -> Client {
    let creds = support::credentials();
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
        .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            secrecy::ExposeSecret::expose_secret(&creds.access_key_id.current().unwrap()).to_owned(),
            "x",
            None,
            None,
            "test",
        ))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    Client::from_conf(config)
}

#[tokio::test]
async fn text_and_binary_values_are_stored_as_themselves() {
    let Some(endpoint) = support::endpoint() else { return };
    let store = support::connect(support::options(&endpoint, DeletePolicy::Force)).await;
    let ns = format!("wire.r{:08x}", rand::random::<u32>());
    let text = SecretName::parse("wire", &ns, "text").unwrap();
    let binary = SecretName::parse("wire", &ns, "binary").unwrap();
    let tags: Tags = [("application", "prod")].into_iter().collect();
    store.put(&text, &SecretValue::from_slice("pässwörd".as_bytes()), &tags, Some("a description")).await.unwrap();
    store.put(&binary, &SecretValue::from_slice(&[0xff, 0x00, 0xfe]), &Tags::new(), None).await.unwrap();

    let raw = raw_client(&endpoint).await;
    let prefix = support::run_prefix();
    let got = raw.get_secret_value().secret_id(prefix.secret_name(&text).unwrap()).send().await.unwrap();
    assert_eq!(got.secret_string(), Some("pässwörd"));
    assert!(got.secret_binary().is_none());
    let got = raw.get_secret_value().secret_id(prefix.secret_name(&binary).unwrap()).send().await.unwrap();
    assert_eq!(got.secret_binary().map(|b| b.as_ref().to_vec()), Some(vec![0xff, 0x00, 0xfe]));
    assert!(got.secret_string().is_none());

    let described = raw.describe_secret().secret_id(prefix.secret_name(&text).unwrap()).send().await.unwrap();
    assert_eq!(described.description(), Some("a description"));
    let aws_tags: Vec<(String, String)> = described
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default().to_owned(), t.value().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(aws_tags, vec![("application".to_owned(), "prod".to_owned())]);
    let stages = described.version_ids_to_stages().unwrap();
    assert!(stages.values().any(|s| s.iter().any(|s| s == "AWSCURRENT")));

    // A second version moves AWSCURRENT and leaves AWSPREVIOUS on the first.
    let v1 = store.get(&text, None).await.unwrap().metadata.version;
    let v2 = store.put(&text, &SecretValue::from_slice(b"second"), &tags, None).await.unwrap();
    let described = raw.describe_secret().secret_id(prefix.secret_name(&text).unwrap()).send().await.unwrap();
    let stages = described.version_ids_to_stages().unwrap();
    assert!(stages[v2.as_str()].iter().any(|s| s == "AWSCURRENT"));
    assert!(stages[v1.as_str()].iter().any(|s| s == "AWSPREVIOUS"));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_not_a_hang() {
    let mut options = support::options("http://127.0.0.1:9", DeletePolicy::Force);
    options.timeout = std::time::Duration::from_secs(2);
    let store = AwsStore::connect(options).await.unwrap();
    let started = std::time::Instant::now();
    let err = store.health().await.expect_err("nothing listens on port 9");
    assert!(matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout), "{:?}: {err}", err.kind());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
