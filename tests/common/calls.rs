//! The calls and connections the end-to-end tests make again and again:
//! putting and reading a secret, minting a token, reaching a daemon over
//! TLS or its Unix socket, reading the audit file. One copy here, so a
//! change to the protocol is made once.

use std::path::Path;

use hyper_util::rt::TokioIo;
use secretd::proto::{
    secret_broker_client::SecretBrokerClient, CreateTokenRequest, GetSecretRequest, GetSecretResponse, PutSecretRequest,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tower::service_fn;

use super::{Auth, Client, Daemon};

/// Puts `value` at `ns/key` in the default tenant; the new version.
pub async fn put(c: &mut Client, ns: &str, key: &str, value: &[u8]) -> Result<String, tonic::Status> {
    put_tagged(c, ns, key, value, &[]).await
}

pub async fn put_tagged(
    c: &mut Client,
    ns: &str,
    key: &str,
    value: &[u8],
    tags: &[(&str, &str)],
) -> Result<String, tonic::Status> {
    let req = PutSecretRequest {
        namespace: ns.into(),
        key: key.into(),
        value: value.to_vec().into(),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    c.put_secret(req).await.map(|r| r.into_inner().version)
}

pub async fn put_in(c: &mut Client, tenant: &str, ns: &str, key: &str, value: &[u8]) -> Result<String, tonic::Status> {
    let req = PutSecretRequest {
        tenant: tenant.into(),
        namespace: ns.into(),
        key: key.into(),
        value: value.to_vec().into(),
        ..Default::default()
    };
    c.put_secret(req).await.map(|r| r.into_inner().version)
}

/// Reads the newest version of `ns/key` in the default tenant.
pub async fn get(c: &mut Client, ns: &str, key: &str) -> Result<GetSecretResponse, tonic::Status> {
    get_version(c, ns, key, "").await
}

/// Reads one version of `ns/key`; `""` is the newest.
pub async fn get_version(
    c: &mut Client,
    ns: &str,
    key: &str,
    version: &str,
) -> Result<GetSecretResponse, tonic::Status> {
    let req = GetSecretRequest { namespace: ns.into(), key: key.into(), version: version.into(), ..Default::default() };
    c.get_secret(req).await.map(|r| r.into_inner())
}

pub async fn get_in(c: &mut Client, tenant: &str, ns: &str, key: &str) -> Result<GetSecretResponse, tonic::Status> {
    let req = GetSecretRequest { tenant: tenant.into(), namespace: ns.into(), key: key.into(), ..Default::default() };
    c.get_secret(req).await.map(|r| r.into_inner())
}

/// Just the value of the newest version.
pub async fn get_value(c: &mut Client, ns: &str, key: &str) -> Result<Vec<u8>, tonic::Status> {
    get(c, ns, key).await.map(|r| r.value.to_vec())
}

/// Mints a token as the test admin and returns it; `expires` 0 is never.
pub async fn create_token(
    d: &Daemon,
    name: &str,
    service: &str,
    permissions: &[&str],
    namespaces: &[&str],
    expires: i64,
) -> String {
    let req = CreateTokenRequest {
        name: name.into(),
        service: service.into(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        expires_in_seconds: expires,
        ..Default::default()
    };
    d.admin().await.create_token(req).await.unwrap().into_inner().token
}

/// Mints a token for `tenants` as the test admin, with the read
/// permission and no expiry.
pub async fn create_token_in(d: &Daemon, name: &str, service: &str, tenants: &[&str]) -> String {
    let req = CreateTokenRequest {
        name: name.into(),
        service: service.into(),
        permissions: vec!["read".into()],
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    };
    d.admin().await.create_token(req).await.unwrap().into_inner().token
}

/// A client of the gRPC endpoint at `url` (`http://host:port`).
pub async fn connect(url: &str, auth: Auth) -> Result<Client, tonic::transport::Error> {
    let channel = Channel::from_shared(url.to_owned()).unwrap().connect().await?;
    Ok(SecretBrokerClient::with_interceptor(channel, auth))
}

/// A TLS channel to `daemon` as `localhost`, trusting `ca`, presenting
/// `identity` (certificate and key PEM) when given.
pub async fn tls_channel(
    daemon: &Daemon,
    ca: &Path,
    identity: Option<(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let port = daemon.addr.rsplit(':').next().unwrap();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://localhost:{port}")).unwrap().tls_config(tls).unwrap().connect().await
}

/// A channel over the Unix socket at `socket`.
pub async fn unix_channel(socket: &Path) -> Channel {
    let path = socket.to_owned();
    Endpoint::from_static("http://secretd.local")
        .connect_with_connector(service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("connect to the socket")
}

/// The records of a JSON-lines audit file; none while it does not exist.
pub fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
        .collect()
}

/// A free loopback port whose successor is free too (for a daemon's gRPC
/// and admin listeners side by side).
pub fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair");
}

/// A plain HTTP/1.0 GET: status and body.
pub fn http_get(base: &str, path: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the admin listener");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    use std::io::{Read, Write};
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Reads one member (`subkey`) of the newest version of `ns/key`.
pub async fn get_subkey(c: &mut Client, ns: &str, key: &str, subkey: &str) -> Result<GetSecretResponse, tonic::Status> {
    let req = GetSecretRequest { namespace: ns.into(), key: key.into(), subkey: subkey.into(), ..Default::default() };
    c.get_secret(req).await.map(|r| r.into_inner())
}
