//! Client certificates: the identities a verified certificate carries (URI
//! SANs such as SPIFFE ids, and the subject CN), for matching against
//! `auth.certificates` rules. rustls has already verified the chain against
//! `server.tls.client-ca` before any of this runs.

use x509_parser::{extensions::GeneralName, prelude::FromDer};

/// What a certificate says about its holder.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    pub uri_sans: Vec<String>,
    pub common_name: Option<String>,
}

/// Reads the leaf certificate (DER). `None` if it does not parse.
pub fn identity(der: &[u8]) -> Option<CertIdentity> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    let uri_sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(uri) => Some((*uri).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(CertIdentity { uri_sans, common_name })
}
