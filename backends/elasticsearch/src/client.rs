//! The HTTP side: one reqwest client, the cluster's hosts, authentication,
//! and retries.
//!
//! The store describes each request as a [`Call`] (method, path, query,
//! body) and hands it here; this module picks a host, sends it, and retries
//! what is worth retrying: connection failures, 408, 429 and 5xx, up to
//! [`MAX_ATTEMPTS`] times with exponential backoff and full jitter, rotating
//! to the next host each time so one dead node costs a retry rather than an
//! outage. Every other answer (including 404 and 409, which mean something
//! specific to each caller) goes back to the store as a [`Reply`].
//!
//! Retrying writes is safe because every write secretd makes is conditional
//! (create-only or compare-and-set) or idempotent (delete): a retry of a
//! write that did land answers 409 or 404, which the store recognises.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use reqwest::{
    header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE},
    Certificate, Method, Url,
};
use secrecy::ExposeSecret;
use secretd_core::{ErrorKind, StoreError};

use crate::{
    error::{from_status, from_transport, is_retryable_status},
    options::{redact_userinfo, Auth, ElasticsearchOptions},
};

/// Attempts per request when the cluster is unreachable or overloaded.
pub(crate) const MAX_ATTEMPTS: u32 = 3;
/// The first backoff ceiling; doubled per attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// One request, independent of the host it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub method: Method,
    /// Starts with `/`; every segment is already URL-safe (validated index
    /// names, hex ids, `_` endpoints).
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    /// JSON. Never a plaintext value: values are sealed before they get here.
    pub body: Option<Vec<u8>>,
}

impl Call {
    pub fn new(method: Method, path: String) -> Self {
        Self { method, path, query: Vec::new(), body: None }
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub fn json(mut self, body: &impl serde::Serialize) -> Result<Self, StoreError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| StoreError::internal("cannot encode an elasticsearch request").with_source(e))?;
        self.body = Some(bytes);
        Ok(self)
    }

    /// The value of query parameter `name`.
    #[cfg(test)]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// A non-retryable answer: its status and body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// Whether an earlier attempt of this call may have reached the server
    /// (its answer was lost or was a 5xx), so a 409 may be our own write.
    pub retried: bool,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn parse<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, StoreError> {
        serde_json::from_slice(&self.body).map_err(|e| crate::error::unexpected(what, e))
    }

    /// This answer as an error, for statuses the caller has no use for.
    pub fn into_error(self, what: &str) -> StoreError {
        from_status(self.status, &self.body, what)
    }
}

pub(crate) struct Client {
    http: reqwest::Client,
    hosts: Vec<Url>,
    next_host: AtomicUsize,
    /// Read for every request, so a password or API key rotated in its
    /// file is used from the next request on.
    auth: Auth,
}

impl Client {
    pub fn new(options: &ElasticsearchOptions) -> Result<Self, StoreError> {
        if options.hosts.is_empty() {
            return Err(config_error("hosts: at least one URL is required, e.g. https://127.0.0.1:9200"));
        }
        let mut auth = options.auth.clone();
        let mut hosts = Vec::with_capacity(options.hosts.len());
        for raw in &options.hosts {
            let (url, userinfo) = parse_host(raw)?;
            if let Some((username, password)) = userinfo {
                // Operators often write `https://user:pass@host`; honour it
                // as basic auth rather than let it travel in every URL.
                match &auth {
                    Auth::None => auth = Auth::Basic { username, password: password.into() },
                    _ if matches!(&auth, Auth::Basic { username: u, .. } if *u == username) => {}
                    _ => {
                        return Err(config_error(format!(
                            "hosts: {} carries credentials and auth is set as well; keep credentials in auth only",
                            redact_userinfo(raw)
                        )))
                    }
                }
            }
            hosts.push(url);
        }
        // Once now, so unusable credentials fail the start.
        authorization_header(&auth)?;

        // reqwest is built without a default crypto provider, so the
        // process-wide one is installed here; a provider already installed
        // (by the daemon or another backend) is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("secretd-elasticsearch/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &options.ca_certificate_pem {
            let certs = Certificate::from_pem_bundle(pem)
                .map_err(|e| config_error("ca-certificate: not a PEM certificate or bundle").with_source(e))?;
            if certs.is_empty() {
                return Err(config_error("ca-certificate: the PEM holds no certificate"));
            }
            // A private cluster's CA replaces the public roots: trusting
            // both would let any public CA vouch for the cluster's name.
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| config_error("cannot build the HTTP client (TLS setup failed)").with_source(e))?;
        Ok(Self { http, hosts, next_host: AtomicUsize::new(0), auth })
    }

    /// The hosts, without credentials, for `Debug`.
    pub fn hosts(&self) -> Vec<String> {
        self.hosts.iter().map(|u| u.as_str().trim_end_matches('/').to_owned()).collect()
    }

    fn url(&self, call: &Call) -> Url {
        let index = self.next_host.fetch_add(1, Ordering::Relaxed) % self.hosts.len();
        let mut url = self.hosts[index].clone();
        let path = format!("{}{}", url.path().trim_end_matches('/'), call.path);
        url.set_path(&path);
        if !call.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in &call.query {
                pairs.append_pair(name, value);
            }
        }
        url
    }

    /// Sends `call`, retrying unreachable and overloaded answers. `what`
    /// names the operation in error messages.
    pub async fn send(&self, call: &Call, what: &str) -> Result<Reply, StoreError> {
        let mut attempt = 0;
        let mut retried = false;
        loop {
            attempt += 1;
            let mut request = self.http.request(call.method.clone(), self.url(call));
            if let Some(value) = authorization_header(&self.auth)? {
                request = request.header(AUTHORIZATION, value);
            }
            if let Some(body) = &call.body {
                request = request.header(CONTENT_TYPE, "application/json").body(body.clone());
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.bytes().await {
                        Ok(body) => Ok((status, body.to_vec())),
                        Err(e) => Err(from_transport(e, what)),
                    }
                }
                Err(e) => {
                    // A failure to connect never reached the server; any
                    // other failure may have, after it acted.
                    let reached = !e.is_connect();
                    retried |= reached;
                    Err(from_transport(e, what))
                }
            };
            match outcome {
                Ok((status, _)) if is_retryable_status(status) && attempt < MAX_ATTEMPTS => {
                    retried = true;
                    tracing::debug!(status, attempt, "elasticsearch overloaded while {what}; retrying");
                }
                Ok((status, body)) => return Ok(Reply { status, body, retried }),
                Err(e) if e.kind() == ErrorKind::Unavailable && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(attempt, error = %e, "retrying");
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
}

/// Full jitter: a random wait up to a ceiling that doubles per attempt, so
/// many clients retrying at once spread out instead of colliding again.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1 << attempt.min(10)).min(BACKOFF_CAP);
    Duration::from_millis(rand::random_range(0..=ceiling.as_millis() as u64))
}

fn config_error(message: impl Into<String>) -> StoreError {
    StoreError::new(ErrorKind::InvalidName, message)
}

/// A host as a base URL, and the credentials it carried, if any.
fn parse_host(raw: &str) -> Result<(Url, Option<(String, String)>), StoreError> {
    let shown = redact_userinfo(raw);
    let mut url = Url::parse(raw.trim())
        .map_err(|e| config_error(format!("hosts: {shown} is not a URL ({e}); expected e.g. https://host:9200")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(config_error(format!("hosts: {shown}: the scheme must be http or https")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(config_error(format!("hosts: {shown} has no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config_error(format!("hosts: {shown} must not have a query or fragment")));
    }
    let userinfo = if !url.username().is_empty() || url.password().is_some() {
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| config_error(format!("hosts: {shown} has badly escaped credentials")))
        };
        let pair = (decode(url.username())?, decode(url.password().unwrap_or(""))?);
        // Neither call can fail on an http(s) URL with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Some(pair)
    } else {
        None
    };
    Ok((url, userinfo))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn authorization_header(auth: &Auth) -> Result<Option<HeaderValue>, StoreError> {
    use base64::Engine;
    let raw = match auth {
        Auth::None => return Ok(None),
        Auth::Basic { username, password } => {
            if username.contains(':') {
                return Err(config_error("auth: a basic-auth username cannot contain ':'"));
            }
            let pair = zeroize::Zeroizing::new(format!("{username}:{}", password.current()?.expose_secret()));
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()))
        }
        Auth::ApiKey(key) => format!("ApiKey {}", key.current()?.expose_secret().trim()),
    };
    let mut value = HeaderValue::from_str(&raw)
        .map_err(|_| config_error("auth: the credentials contain characters an HTTP header cannot carry"))?;
    // Keeps it out of hyper's debug output and HTTP/2 header compression.
    value.set_sensitive(true);
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(hosts: &[&str]) -> ElasticsearchOptions {
        ElasticsearchOptions::new(hosts.iter().copied(), "0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn urls_keep_a_path_prefix_and_rotate_hosts() {
        let client = Client::new(&options(&["http://a:9200", "https://b/es/"])).unwrap();
        let call = Call::new(Method::GET, "/idx/_doc/abc".into()).query("routing", "abc").query("refresh", "wait_for");
        assert_eq!(client.url(&call).as_str(), "http://a:9200/idx/_doc/abc?routing=abc&refresh=wait_for");
        assert_eq!(client.url(&call).as_str(), "https://b/es/idx/_doc/abc?routing=abc&refresh=wait_for");
        assert_eq!(client.url(&call).host_str(), Some("a"));
    }

    #[test]
    fn credentials_in_a_host_become_basic_auth() {
        let client = Client::new(&options(&["https://elastic:p%40ss@es:9200"])).unwrap();
        assert_eq!(client.hosts(), ["https://es:9200"]);
        let header = authorization_header(&client.auth).unwrap().unwrap();
        assert!(header.is_sensitive());
        use base64::Engine;
        let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("elastic:p@ss"));
        assert_eq!(header.to_str().unwrap(), expected);
        let clash = options(&["https://a:b@es"]).with_auth(Auth::ApiKey("key".into()));
        assert!(Client::new(&clash).is_err());
    }

    #[test]
    fn bad_hosts_and_certificates_are_refused_clearly() {
        for (hosts, needle) in [
            (vec![], "at least one URL"),
            (vec!["es:9200"], "scheme"),
            (vec!["ftp://es"], "scheme"),
            (vec!["http://es?x=1"], "query"),
            (vec!["not a url"], "not a URL"),
        ] {
            let err = Client::new(&options(&hosts)).err().unwrap();
            assert!(err.message().contains(needle), "{hosts:?}: {}", err.message());
        }
        let err = Client::new(&options(&["https://es"]).with_ca_certificate_pem(b"garbage".to_vec())).err().unwrap();
        assert!(err.message().starts_with("ca-certificate"), "{}", err.message());
    }

    #[test]
    fn api_key_header() {
        let client = Client::new(&options(&["http://es"]).with_auth(Auth::ApiKey("abc==".into()))).unwrap();
        assert_eq!(authorization_header(&client.auth).unwrap().unwrap().to_str().unwrap(), "ApiKey abc==");
    }

    #[test]
    fn backoff_is_bounded() {
        for attempt in 1..20 {
            assert!(backoff(attempt) <= BACKOFF_CAP);
        }
    }
}
