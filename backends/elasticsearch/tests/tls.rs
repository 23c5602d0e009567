//! HTTPS to a cluster with a private CA: trusted when `ca_certificate_pem`
//! names that CA, refused otherwise. A one-answer HTTPS server on loopback
//! with a throwaway CA plays the cluster.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use secretd_core::{ErrorKind, SecretName, SecretStore};
use secretd_elasticsearch::{ElasticsearchOptions, ElasticsearchStore};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_rustls::{
    rustls::{
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
        ServerConfig,
    },
    TlsAcceptor,
};

const SECRET: &str = "tls-test-secret-0123456789abcdef-xyz";

/// Starts an HTTPS server whose certificate a fresh CA signed; every
/// request is answered 200 with `{"acknowledged":true}` for the index
/// creation and 404 `found:false` after. Returns its URL and the CA's PEM.
async fn https_server() -> (String, String) {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        let mut served = 0usize;
        loop {
            let Ok((socket, _)) = listener.accept().await else { return };
            let Ok(mut tls) = acceptor.accept(socket).await else { continue };
            // One request per connection is enough for these tests.
            let mut buf = vec![0u8; 65536];
            let _ = tls.read(&mut buf).await;
            let body = if served == 0 { r#"{"acknowledged":true}"# } else { r#"{"found":false}"# };
            served += 1;
            let response = format!(
                "HTTP/1.1 {} X\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                if body.contains("found") { 404 } else { 200 },
                body.len()
            );
            let _ = tls.write_all(response.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    });
    (url, ca_cert.pem())
}

#[tokio::test]
async fn a_private_ca_is_trusted_when_configured() {
    let (url, ca_pem) = https_server().await;
    let options = ElasticsearchOptions::new([url.as_str()], SECRET).with_ca_certificate_pem(ca_pem);
    let store = ElasticsearchStore::connect(options).await.unwrap();
    let name = SecretName::parse("main", "tls", "k").unwrap();
    assert_eq!(store.get(&name, None).await.unwrap_err().kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn an_unknown_ca_is_refused() {
    let (url, _) = https_server().await;
    let err = ElasticsearchStore::connect(ElasticsearchOptions::new([url.as_str()], SECRET)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("certificate"), "the message should say why: {err}");
    let (url, _) = https_server().await;
    let (_, other_ca) = https_server().await;
    let options = ElasticsearchOptions::new([url.as_str()], SECRET).with_ca_certificate_pem(other_ca);
    let err = ElasticsearchStore::connect(options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}
