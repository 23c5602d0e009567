//! A throwaway PKI for TLS tests: a CA, a server certificate for localhost
//! and 127.0.0.1, and client certificates with chosen identities.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    server_der: (Vec<u8>, Vec<u8>),
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "secretd test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        Pki {
            ca: write("ca.pem", ca_cert.pem()),
            server_cert: write("server.pem", server_cert.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            server_der: (server_cert.der().to_vec(), server_key.serialize_der()),
            issuer,
            dir: dir.to_owned(),
        }
    }

    /// A client certificate (PEM cert, PEM key) with this CN and URI SAN.
    pub fn client(&self, common_name: &str, uri_san: Option<&str>) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        if let Some(uri) = uri_san {
            params.subject_alt_names.push(SanType::URI(uri.try_into().unwrap()));
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The server's key and certificate as a PKCS#12 keystore file.
    pub fn server_keystore(&self, password: &str) -> PathBuf {
        use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
        let (cert, key) = &self.server_der;
        let chain = PrivateKeyChain::new(
            vec![1u8; 20],
            PrivateKey::from_der(key).unwrap(),
            [Certificate::from_der(cert).unwrap()],
        );
        let mut store = KeyStore::new();
        store.add_entry("server", KeyStoreEntry::PrivateKeyChain(chain));
        let path = self.dir.join("server.p12");
        std::fs::write(&path, store.writer(password).write().unwrap()).unwrap();
        path
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
