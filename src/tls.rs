//! TLS for the gRPC listener, with a certificate that can be renewed
//! without a restart.
//!
//! The server's certificate and key (PEM files, or a PKCS#12 keystore) are
//! read at start, and again when a handshake finds that the files changed
//! (modification time or size, checked at most once a second): cert-manager
//! or a renewal timer replaces the files, and the next connection gets the
//! new certificate while open connections keep theirs. A keystore's
//! password given as `file:` is one of those files, so a keystore and its
//! password rotate together, in either order. A renewal that cannot be read
//! (a key that does not match, a half-written file, a keystore whose
//! password has not changed yet) is logged and the previous certificate
//! stays in use.
//!
//! The handshake runs here, not in tonic, so the certificate can change;
//! each accepted connection is handed to tonic as a
//! `tokio_rustls::server::TlsStream`, whose connect info carries the
//! client's certificate chain for authentication, exactly as tonic's own
//! TLS does.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use rustls::{
    crypto::ring,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
    RootCertStore, ServerConfig,
};
use secrecy::ExposeSecret;
use secretd_core::CredentialSource;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

use crate::config::{ClientAuthentication, TlsConfig};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often, at most, a handshake looks at the files.
const RECHECK: Duration = Duration::from_secs(1);

/// Where the server's identity comes from.
enum Source {
    Pem {
        cert: PathBuf,
        key: PathBuf,
    },
    Keystore {
        path: PathBuf,
        password: Option<CredentialSource>,
        /// The password's file, when it is given as `file:`.
        password_file: Option<PathBuf>,
    },
}

impl Source {
    fn files(&self) -> Vec<&PathBuf> {
        match self {
            Source::Pem { cert, key } => vec![cert, key],
            Source::Keystore { path, password_file, .. } => std::iter::once(path).chain(password_file).collect(),
        }
    }

    /// Reads and checks the identity; the error names the setting.
    fn load(&self) -> Result<CertifiedKey, String> {
        let read = |field: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("{field}: cannot read {}: {e}", path.display()))
        };
        let (chain, key) = match self {
            Source::Pem { cert, key } => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(&read("server.tls.cert", cert)?).collect::<Result<_, _>>().map_err(
                        |e| format!("server.tls.cert: {} is not a PEM certificate chain: {e}", cert.display()),
                    )?;
                let key = PrivateKeyDer::from_pem_slice(&zeroize::Zeroizing::new(read("server.tls.key", key)?))
                    .map_err(|e| format!("server.tls.key: {} is not a PEM private key: {e}", key.display()))?;
                (chain, key)
            }
            Source::Keystore { path, password, .. } => {
                let data = read("server.tls.keystore", path)?;
                let password = match password {
                    Some(source) => {
                        source.current().map_err(|e| format!("server.tls.keystore-password: {}", e.message()))?
                    }
                    None => secrecy::SecretString::from(String::new()),
                };
                let store = p12_keystore::KeyStore::from_pkcs12(
                    &data,
                    password.expose_secret(),
                    p12_keystore::Pkcs12ImportPolicy::Strict,
                )
                .map_err(|e| format!("server.tls.keystore: cannot open the keystore (wrong password?): {e}"))?;
                let (_, chain) =
                    store.private_key_chain().ok_or("server.tls.keystore: holds no private key with a certificate")?;
                let certs = chain.certs().iter().map(|c| CertificateDer::from(c.as_der().to_vec())).collect();
                let key = PrivateKeyDer::try_from(chain.key().as_der().to_vec())
                    .map_err(|e| format!("server.tls.keystore: unreadable private key: {e}"))?;
                (certs, key)
            }
        };
        if chain.is_empty() {
            return Err("server.tls: the certificate file holds no certificate".into());
        }
        let signing =
            ring::sign::any_supported_type(&key).map_err(|e| format!("server.tls: unsupported private key: {e}"))?;
        let certified = CertifiedKey::new(chain, signing);
        certified.keys_match().map_err(|e| format!("server.tls: the key does not match the certificate: {e}"))?;
        Ok(certified)
    }
}

/// The files' modification times and sizes, to notice a renewal cheaply.
fn stamps(files: &[&PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files.iter().map(|f| std::fs::metadata(f).ok().and_then(|m| Some((m.modified().ok()?, m.len())))).collect()
}

struct Current {
    key: Arc<CertifiedKey>,
    stamps: Vec<Option<(SystemTime, u64)>>,
    checked: Instant,
}

/// Hands each handshake the current certificate, reloading it when its
/// files change.
struct ReloadingIdentity {
    source: Source,
    current: Mutex<Current>,
}

impl std::fmt::Debug for ReloadingIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingIdentity").field("files", &self.source.files()).finish_non_exhaustive()
    }
}

impl ReloadingIdentity {
    fn new(source: Source) -> Result<Self, String> {
        let key = Arc::new(source.load()?);
        let stamps = stamps(&source.files());
        Ok(Self { source, current: Mutex::new(Current { key, stamps, checked: Instant::now() }) })
    }

    fn key(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.checked.elapsed() >= RECHECK {
            current.checked = Instant::now();
            let now = stamps(&self.source.files());
            if now != current.stamps {
                match self.source.load() {
                    Ok(key) => {
                        tracing::info!(files = ?self.source.files(), "TLS certificate files changed; serving the new certificate");
                        current.key = Arc::new(key);
                        current.stamps = now;
                    }
                    // Half-written, or a key that does not match yet: the
                    // next look (a second later) tries again.
                    Err(e) => tracing::warn!("cannot load the renewed TLS certificate, keeping the previous one: {e}"),
                }
            }
        }
        current.key.clone()
    }
}

impl ResolvesServerCert for ReloadingIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }
}

/// The rustls configuration for `server.tls`: the reloading identity,
/// client certificates per `client-authentication`, HTTP/2 by ALPN.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let source = match (&tls.cert, &tls.key, &tls.keystore) {
        (Some(cert), Some(key), None) => Source::Pem { cert: cert.clone(), key: key.clone() },
        (None, None, Some(path)) => Source::Keystore {
            path: path.clone(),
            password: tls.keystore_password.as_ref().map(|p| p.source()),
            password_file: tls.keystore_password.as_ref().and_then(|p| p.file().cloned()),
        },
        _ => return Err("server.tls needs either cert and key, or keystore".into()),
    };
    let identity = Arc::new(ReloadingIdentity::new(source)?);
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("server.tls: {e}"))?;
    let builder = match (&tls.client_ca, tls.client_authentication) {
        (Some(ca), mode) if mode != ClientAuthentication::None => {
            let pem =
                std::fs::read(ca).map_err(|e| format!("server.tls.client-ca: cannot read {}: {e}", ca.display()))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("server.tls.client-ca: {} is not PEM: {e}", ca.display()))?;
                roots.add(cert).map_err(|e| format!("server.tls.client-ca: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuthentication::Need { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("server.tls.client-ca: {e}"))?)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(identity);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and completes their handshakes off the accept
/// loop (a slow client must not hold up the next), yielding the
/// established TLS streams. Stops when the receiver is dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    // Out of file descriptors, most likely: back off a little.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // No Nagle: small gRPC frames must not wait for delayed ACKs.
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
