//! A test server implementing the Azure Key Vault secrets REST API (the
//! data plane the SDK calls) and an Entra ID client-credentials token
//! endpoint, in process, over HTTPS. It is **not Azure** and not an
//! emulator of it: no Key Vault emulator can be installed here, so the
//! tests speak to this instead, through the real SDK.
//!
//! What it implements, as documented for Key Vault and as the SDK
//! (`azure_security_keyvault_secrets` 1.0, api-version `2025-07-01`) uses it:
//! - HTTPS only, with a CA and a leaf certificate made at start (rcgen):
//!   the SDK refuses plain HTTP, and rustls refuses a lone self-signed
//!   certificate. The leaf is valid for `localhost`, `127.0.0.1` and
//!   `*.vault.azure.net` (for tests that pin such a name to loopback and
//!   keep the SDK's challenge check on).
//! - Bearer authentication: a request without the expected token (the
//!   SDK's first request always comes without one) is answered `401` with
//!   `WWW-Authenticate: Bearer authorization=..., resource="https://vault.azure.net"`.
//! - `PUT /secrets/{name}` (set), `GET /secrets/{name}/` (latest),
//!   `GET /secrets/{name}/{version}`, `PATCH /secrets/{name}/{version}`
//!   (tags, content type, enabled, `nbf`/`exp` dates), `GET /secrets` and
//!   `GET /secrets/{name}/versions` (paged with `nextLink`, five per page so
//!   paging is always exercised), `DELETE /secrets/{name}` (soft delete),
//!   `GET /deletedsecrets[/{name}]`, `DELETE /deletedsecrets/{name}`
//!   (purge) and `POST /deletedsecrets/{name}/recover`.
//! - Names are letters, digits and `-`, 1 to 127, compared without case;
//!   versions are 32 hex digits, each with its own value, content type,
//!   tags and `created`/`updated` (Unix seconds).
//! - A soft-deleted secret reads as `404 SecretNotFound`, and setting its
//!   name is `409 Conflict` (`ObjectIsDeletedButRecoverable`), like Key Vault.
//! - Errors are Key Vault's body, `{"error": {"code", "message", "innererror"}}`.
//! - `POST /{tenant}/oauth2/v2.0/token`: Entra ID's client-credentials grant,
//!   so a real `ClientSecretCredential` can be pointed at this server as its
//!   authority host.
//!
//! `tests/python_sdk.rs` holds all this to Microsoft's own client, the
//! `azure-keyvault-secrets` Python SDK.
//!
//! Knobs for tests: Key Vault's 25,600-character value limit (off by
//! default, because secretd's conformance suite stores 64 KiB), purge
//! protection, injected failures and stalls, and a log of every request.
//!
//! The server runs on its own thread and runtime, so a test may block (run
//! the daemon's CLI, say) while it serves; dropping the [`TestServer`]
//! stops it.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use azure_core::{
    credentials::{AccessToken, TokenCredential, TokenRequestOptions},
    time::{Duration as SdkDuration, OffsetDateTime},
};
use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, service::service_fn, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio_rustls::{
    rustls::{
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
        ServerConfig,
    },
    TlsAcceptor,
};

use secretd_azure::{AzureCredential, AzureOptions};

/// The api-version the SDK sends; others are accepted too.
pub const API_VERSION: &str = "2025-07-01";
/// Items per page of a listing, whatever `maxresults` asks (at most 25, as
/// Key Vault allows).
pub const PAGE_SIZE: usize = 5;
/// Key Vault's limit on a secret's value, in characters.
pub const KEY_VAULT_MAX_VALUE_CHARS: usize = 25_600;
/// Key Vault's limit on tags per secret version.
pub const MAX_TAGS: usize = 15;

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// Whether the request carried an `Authorization` header (right or
    /// wrong).
    pub authorization: bool,
    pub status: u16,
}

/// A running test server; see the module docs. Dropping it stops it.
pub struct TestServer {
    /// `https://localhost:PORT`: the vault URL, and the authority host of
    /// the token endpoint.
    pub url: String,
    pub addr: SocketAddr,
    /// The CA that signed the server's certificate (PEM).
    pub ca_pem: String,
    /// The bearer token the vault accepts.
    pub token: String,
    /// The service principal the token endpoint knows.
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl TestServer {
    /// Makes the certificates, binds `127.0.0.1:0` and starts serving on a
    /// thread of its own.
    pub fn start() -> std::io::Result<TestServer> {
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let (ca_pem, tls) = certificates().map_err(std::io::Error::other)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let token = format!("test-token-{}", random_hex(16));
        let tenant_id = format!("{}-tenant", random_hex(8));
        let state = Arc::new(State {
            token: token.clone(),
            tenant_id: tenant_id.clone(),
            client_id: format!("{}-client", random_hex(8)),
            client_secret: format!("test-client-secret-{}", random_hex(16)),
            inner: Mutex::new(Inner::default()),
        });
        let (shutdown, signal) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kv-test-server")
            .enable_all()
            .build()?;
        let served = state.clone();
        std::thread::Builder::new().name("kv-test-server".into()).spawn(move || {
            runtime.block_on(serve(listener, TlsAcceptor::from(Arc::new(tls)), served, signal));
        })?;
        Ok(TestServer {
            url: format!("https://localhost:{}", addr.port()),
            addr,
            ca_pem,
            token,
            tenant_id,
            client_id: state.client_id.clone(),
            client_secret: state.client_secret.clone(),
            state,
            shutdown,
        })
    }

    /// A credential that hands out the token this server accepts.
    pub fn credential(&self) -> Arc<dyn TokenCredential> {
        Arc::new(StaticToken(self.token.clone()))
    }

    /// Store options for this server: a fixed-token credential, its CA, and
    /// the challenge check off (the server is `localhost`, not
    /// `*.vault.azure.net`).
    pub fn options(&self) -> AzureOptions {
        self.options_with(AzureCredential::Token(self.credential()))
    }

    /// Store options with a real client-secret credential that gets its
    /// token from this server's token endpoint.
    pub fn client_secret_options(&self) -> AzureOptions {
        let mut options = self.options_with(AzureCredential::ClientSecret {
            tenant_id: self.tenant_id.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone().into(),
        });
        options.authority_host = Some(self.url.clone());
        options
    }

    /// Store options with `credential`, this server's CA and the challenge
    /// check off.
    pub fn options_with(&self, credential: AzureCredential) -> AzureOptions {
        let mut options = AzureOptions::new(self.url.clone(), credential);
        options.ca_certificate_pem = Some(self.ca_pem.clone().into_bytes());
        options.verify_challenge_resource = false;
        options
    }

    /// The vault URL `https://<vault>.vault.azure.net:PORT/` and the DNS
    /// override that sends it here: with them the SDK's challenge check can
    /// stay on.
    pub fn vault_azure_net(&self, vault: &str) -> (String, (String, SocketAddr)) {
        let host = format!("{vault}.vault.azure.net");
        (format!("https://{host}:{}/", self.addr.port()), (host, self.addr))
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().log.clone()
    }

    /// Refuse values longer than `max` characters as Key Vault does
    /// ([`KEY_VAULT_MAX_VALUE_CHARS`]); `None` (the default) takes any.
    pub fn set_max_value_chars(&self, max: Option<usize>) {
        self.state.lock().max_value_chars = max;
    }

    /// With purge protection, purging is refused (403), as in a vault with
    /// purge protection enabled.
    pub fn set_purge_protection(&self, on: bool) {
        self.state.lock().purge_protection = on;
    }

    /// Answers the next `count` authorized vault requests with `status`
    /// and a Key Vault error body (with `Retry-After: 0` on 429 and 503).
    pub fn fail_next(&self, count: usize, status: u16) {
        self.state.lock().failures.extend(std::iter::repeat_n(status, count));
    }

    /// Holds the next `count` requests (of any kind) for `pause` before
    /// answering them: a slow or hung server.
    pub fn stall_next(&self, count: usize, pause: Duration) {
        self.state.lock().stalls.extend(std::iter::repeat_n(pause, count));
    }

    /// Key Vault finishes a delete asynchronously: until it has, purging or
    /// recovering the secret is `409 Conflict`. With `calls` > 0, that many
    /// purge or recover calls after each delete are answered so.
    pub fn set_busy_after_delete(&self, calls: u32) {
        self.state.lock().busy_after_delete = calls;
    }

    /// The names the vault holds, live or soft-deleted, as created.
    pub fn secret_names(&self) -> Vec<(String, bool)> {
        self.state.lock().secrets.values().map(|s| (s.name.clone(), s.deleted.is_some())).collect()
    }

    /// The versions of a secret (live or soft-deleted), oldest first.
    pub fn version_count(&self, name: &str) -> usize {
        self.state.lock().secrets.get(&name.to_ascii_lowercase()).map_or(0, |s| s.versions.len())
    }
}

/// A [`TokenCredential`] that always hands out one token.
#[derive(Debug, Clone)]
pub struct StaticToken(pub String);

#[async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(self.0.clone(), OffsetDateTime::now_utc() + SdkDuration::hours(1)))
    }
}

/// A CA, and a leaf it signed, as rustls server config; the CA as PEM.
fn certificates() -> Result<(String, ServerConfig), Box<dyn std::error::Error + Send + Sync>> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "secretd Key Vault test server CA");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "*.vault.azure.net".to_owned()])?;
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    let config = ServerConfig::builder().with_no_client_auth().with_single_cert(
        vec![CertificateDer::from(leaf_cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )?;
    Ok((ca_cert.pem(), config))
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

struct State {
    token: String,
    tenant_id: String,
    client_id: String,
    client_secret: String,
    inner: Mutex<Inner>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock must not take the
        // other tests down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Inner {
    /// By lower-case name: Key Vault compares names without case.
    secrets: BTreeMap<String, Stored>,
    log: Vec<Recorded>,
    max_value_chars: Option<usize>,
    purge_protection: bool,
    failures: Vec<u16>,
    stalls: Vec<Duration>,
    busy_after_delete: u32,
}

struct Stored {
    /// As first created.
    name: String,
    versions: Vec<Ver>,
    deleted: Option<i64>,
    /// Purge and recover calls still to be answered "being deleted".
    busy: u32,
}

struct Ver {
    id: String,
    value: String,
    content_type: Option<String>,
    tags: Option<Map<String, Value>>,
    enabled: bool,
    /// Activation and expiry (`nbf`, `exp`, Unix seconds). Key Vault keeps
    /// them but does not enforce them for secrets: a get works outside the
    /// window, so this server does not refuse one either.
    not_before: Option<i64>,
    expires: Option<i64>,
    created: i64,
    updated: i64,
}

/// `attributes.{field}` of a request: absent, or Unix seconds.
fn date_attribute(request: &Map<String, Value>, field: &str) -> Result<Option<i64>, Answer> {
    match request.get("attributes").and_then(|a| a.get(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_i64().map(Some).ok_or_else(|| Answer::bad(format!("Property attributes.{field} is not a number")))
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    signal: watch::Receiver<bool>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    let mut stop = signal.clone();
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let mut stop = signal.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                _ = connection => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// An answer before it is sent.
struct Answer {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Self { status, body: Some(body), headers: Vec::new() }
    }

    fn empty(status: u16) -> Self {
        Self { status, body: None, headers: Vec::new() }
    }

    /// Key Vault's error body.
    fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::json(status, json!({"error": {"code": code, "message": message.into()}}))
    }

    fn error_inner(status: u16, code: &str, inner: &str, message: impl Into<String>) -> Self {
        Self::json(status, json!({"error": {"code": code, "message": message.into(), "innererror": {"code": inner}}}))
    }

    fn not_found(name: &str) -> Self {
        Self::error(404, "SecretNotFound", format!("A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"))
    }

    fn version_not_found(name: &str, version: &str) -> Self {
        Self::error(
            404,
            "SecretNotFound",
            format!("A secret with (name/id) {name}/{version} was not found in this key vault."),
        )
    }

    fn deleted_not_found(name: &str) -> Self {
        Self::error(404, "SecretNotFound", format!("Deleted Secret not found: {name}"))
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::error(400, "BadParameter", message)
    }
}

async fn handle(state: &State, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let stall = {
        let mut inner = state.lock();
        (!inner.stalls.is_empty()).then(|| inner.stalls.remove(0))
    };
    if let Some(pause) = stall {
        tokio::time::sleep(pause).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let host =
        request.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
    let authorization =
        request.headers().get(hyper::header::AUTHORIZATION).and_then(|h| h.to_str().ok()).map(str::to_owned);
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let base = format!("https://{host}");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let answer = if segments.len() == 4 && segments[1..] == ["oauth2", "v2.0", "token"] && method == Method::POST {
        token_endpoint(state, segments[0], &body)
    } else if authorization.as_deref() != Some(format!("Bearer {}", state.token).as_str()) {
        challenge(state, authorization.is_some())
    } else if let Some(status) = {
        let mut inner = state.lock();
        (!inner.failures.is_empty()).then(|| inner.failures.remove(0))
    } {
        injected(status)
    } else if !query.iter().any(|(k, v)| k == "api-version" && !v.is_empty()) {
        Answer::error(400, "BadParameter", "The request is missing the api-version query parameter")
    } else {
        let api_version = query.iter().find(|(k, _)| k == "api-version").map_or(API_VERSION, |(_, v)| v.as_str());
        let mut inner = state.lock();
        route(&mut inner, &method, &segments, &query, &body, &Ctx { base: &base, api_version })
    };
    let mut inner = state.lock();
    inner.log.push(Recorded {
        method: method.to_string(),
        path,
        authorization: authorization.is_some(),
        status: answer.status,
    });
    drop(inner);
    respond(answer)
}

fn respond(answer: Answer) -> Response<Full<Bytes>> {
    let mut builder =
        Response::builder().status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (name, value) in &answer.headers {
        builder = builder.header(*name, value);
    }
    let body = match &answer.body {
        Some(json) => {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json; charset=utf-8");
            Bytes::from(json.to_string())
        }
        None => Bytes::new(),
    };
    builder.body(Full::new(body)).unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The 401 Key Vault answers to a request without a (valid) bearer token.
fn challenge(state: &State, had_token: bool) -> Answer {
    let message = if had_token {
        "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/..., found https://sts.example/."
    } else {
        "AKV10000: Request is missing a Bearer or PoP token."
    };
    let mut answer = Answer::error(401, "Unauthorized", message);
    answer.headers.push((
        "www-authenticate",
        format!(
            "Bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"https://vault.azure.net\"",
            state.tenant_id
        ),
    ));
    answer
}

fn injected(status: u16) -> Answer {
    let code = match status {
        429 => "Throttled",
        503 => "ServiceUnavailable",
        500 => "InternalServerError",
        _ => "InjectedFailure",
    };
    let mut answer = Answer::error(status, code, "failure injected by the test");
    if matches!(status, 429 | 503) {
        answer.headers.push(("retry-after", "0".into()));
    }
    answer
}

/// Entra ID's client-credentials grant (`/{tenant}/oauth2/v2.0/token`).
fn token_endpoint(state: &State, tenant: &str, body: &[u8]) -> Answer {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let entra_error = |status: u16, error: &str, code: u32, description: &str| {
        Answer::json(
            status,
            json!({"error": error, "error_description": format!("AADSTS{code}: {description}"), "error_codes": [code]}),
        )
    };
    if tenant != state.tenant_id {
        return entra_error(400, "invalid_request", 90002, &format!("Tenant '{tenant}' not found."));
    }
    if field("grant_type") != "client_credentials" {
        return entra_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.");
    }
    if field("client_id") != state.client_id {
        return entra_error(400, "unauthorized_client", 700016, "Application was not found in the directory.");
    }
    if field("client_secret") != state.client_secret {
        return entra_error(401, "invalid_client", 7000215, "Invalid client secret provided.");
    }
    if field("scope") != "https://vault.azure.net/.default" {
        return entra_error(400, "invalid_scope", 70011, "The provided value for scope is not valid.");
    }
    Answer::json(
        200,
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": state.token}),
    )
}

struct Ctx<'a> {
    base: &'a str,
    api_version: &'a str,
}

fn route(
    inner: &mut Inner,
    method: &Method,
    segments: &[&str],
    query: &[(String, String)],
    body: &[u8],
    ctx: &Ctx<'_>,
) -> Answer {
    let param = |k: &str| query.iter().find(|(name, _)| name == k).map(|(_, v)| v.as_str());
    match (method, segments) {
        (&Method::GET, ["secrets"] | ["secrets", ""]) => {
            list_secrets(inner, param("maxresults"), param("$skiptoken"), ctx)
        }
        (&Method::PUT, ["secrets", name]) => set_secret(inner, name, body, ctx),
        (&Method::GET, ["secrets", name] | ["secrets", name, ""]) => get_secret(inner, name, None, ctx),
        (&Method::DELETE, ["secrets", name]) => delete_secret(inner, name, ctx),
        (&Method::GET, ["secrets", name, "versions"]) => {
            list_versions(inner, name, param("maxresults"), param("$skiptoken"), ctx)
        }
        (&Method::GET, ["secrets", name, version]) => get_secret(inner, name, Some(version), ctx),
        (&Method::PATCH, ["secrets", name] | ["secrets", name, ""]) => update_secret(inner, name, None, body, ctx),
        (&Method::PATCH, ["secrets", name, version]) => update_secret(inner, name, Some(version), body, ctx),
        (&Method::GET, ["deletedsecrets"]) => list_deleted(inner, param("maxresults"), param("$skiptoken"), ctx),
        (&Method::GET, ["deletedsecrets", name]) => get_deleted(inner, name, ctx),
        (&Method::DELETE, ["deletedsecrets", name]) => purge(inner, name),
        (&Method::POST, ["deletedsecrets", name, "recover"]) => recover(inner, name, ctx),
        _ => Answer::error(
            400,
            "BadParameter",
            format!("The operation {method} /{} is not supported by this test server", segments.join("/")),
        ),
    }
}

fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn attributes(ver: &Ver) -> Value {
    let mut out = json!({
        "enabled": ver.enabled,
        "created": ver.created,
        "updated": ver.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    });
    for (field, date) in [("nbf", ver.not_before), ("exp", ver.expires)] {
        if let Some(date) = date {
            out[field] = json!(date);
        }
    }
    out
}

/// A version as a SecretBundle (with its value) or a SecretItem (without).
fn bundle(ver: &Ver, id: String, with_value: bool) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(id));
    if with_value {
        out.insert("value".into(), Value::String(ver.value.clone()));
    }
    if let Some(ct) = &ver.content_type {
        out.insert("contentType".into(), Value::String(ct.clone()));
    }
    if let Some(tags) = &ver.tags {
        out.insert("tags".into(), Value::Object(tags.clone()));
    }
    out.insert("attributes".into(), attributes(ver));
    out
}

fn version_id(ctx: &Ctx<'_>, stored: &Stored, ver: &Ver) -> String {
    format!("{}/secrets/{}/{}", ctx.base, stored.name, ver.id)
}

fn live<'a>(inner: &'a Inner, name: &str) -> Option<&'a Stored> {
    inner.secrets.get(&name.to_ascii_lowercase()).filter(|s| s.deleted.is_none())
}

fn set_secret(inner: &mut Inner, name: &str, body: &[u8], ctx: &Ctx<'_>) -> Answer {
    if !valid_name(name) {
        return Answer::bad(format!("The request URI contains an invalid name: {name}"));
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return Answer::bad("The request body is not a JSON object");
    };
    let Some(Value::String(value)) = request.get("value") else {
        return Answer::bad("Property value is required");
    };
    if let Some(max) = inner.max_value_chars {
        if value.chars().count() > max {
            return Answer::bad(format!("Secret is beyond the maximum permitted length of {max} characters."));
        }
    }
    let content_type = match request.get("contentType") {
        None | Some(Value::Null) => None,
        Some(Value::String(ct)) if ct.len() <= 255 => Some(ct.clone()),
        Some(_) => return Answer::bad("Property contentType is not a string of at most 255 characters"),
    };
    let tags = match request.get("tags") {
        None | Some(Value::Null) => None,
        Some(Value::Object(tags)) if tags.len() > MAX_TAGS => {
            return Answer::bad(format!("The number of tags exceeds the maximum of {MAX_TAGS}"))
        }
        Some(Value::Object(tags)) if tags.values().all(Value::is_string) => Some(tags.clone()),
        Some(_) => return Answer::bad("Property tags must map strings to strings"),
    };
    let enabled = request.get("attributes").and_then(|a| a.get("enabled")).and_then(Value::as_bool).unwrap_or(true);
    let (not_before, expires) = match (date_attribute(&request, "nbf"), date_attribute(&request, "exp")) {
        (Ok(nbf), Ok(exp)) => (nbf, exp),
        (Err(answer), _) | (_, Err(answer)) => return answer,
    };
    let key = name.to_ascii_lowercase();
    if inner.secrets.get(&key).is_some_and(|s| s.deleted.is_some()) {
        return Answer::error_inner(
            409,
            "Conflict",
            "ObjectIsDeletedButRecoverable",
            format!("Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."),
        );
    }
    let t = now();
    let ver = Ver {
        id: random_hex(16),
        value: value.clone(),
        content_type,
        tags,
        enabled,
        not_before,
        expires,
        created: t,
        updated: t,
    };
    let stored = inner.secrets.entry(key).or_insert_with(|| Stored {
        name: name.to_owned(),
        versions: Vec::new(),
        deleted: None,
        busy: 0,
    });
    stored.versions.push(ver);
    let stored = &*stored;
    match stored.versions.last() {
        Some(ver) => Answer::json(200, Value::Object(bundle(ver, version_id(ctx, stored, ver), true))),
        None => Answer::error(500, "InternalError", "no version was written"),
    }
}

fn find_version<'a>(stored: &'a Stored, version: Option<&str>) -> Option<&'a Ver> {
    match version {
        None => stored.versions.last(),
        Some(v) => stored.versions.iter().find(|ver| ver.id.eq_ignore_ascii_case(v)),
    }
}

fn get_secret(inner: &Inner, name: &str, version: Option<&str>, ctx: &Ctx<'_>) -> Answer {
    let Some(stored) = live(inner, name) else { return Answer::not_found(name) };
    let Some(ver) = find_version(stored, version) else {
        return Answer::version_not_found(name, version.unwrap_or(""));
    };
    if !ver.enabled {
        return Answer::error_inner(
            403,
            "Forbidden",
            "SecretDisabled",
            "Operation get is not allowed on a disabled secret.",
        );
    }
    Answer::json(200, Value::Object(bundle(ver, version_id(ctx, stored, ver), true)))
}

fn update_secret(inner: &mut Inner, name: &str, version: Option<&str>, body: &[u8], ctx: &Ctx<'_>) -> Answer {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return Answer::bad("The request body is not a JSON object");
    };
    // An update changes only what it names.
    let (not_before, expires) = match (date_attribute(&request, "nbf"), date_attribute(&request, "exp")) {
        (Ok(nbf), Ok(exp)) => (nbf, exp),
        (Err(answer), _) | (_, Err(answer)) => return answer,
    };
    let Some(stored) = inner.secrets.get_mut(&name.to_ascii_lowercase()).filter(|s| s.deleted.is_none()) else {
        return Answer::not_found(name);
    };
    let index = match version {
        None => stored.versions.len().checked_sub(1),
        Some(v) => stored.versions.iter().position(|ver| ver.id.eq_ignore_ascii_case(v)),
    };
    let Some(ver) = index.and_then(|i| stored.versions.get_mut(i)) else {
        return Answer::version_not_found(name, version.unwrap_or(""));
    };
    if let Some(Value::String(ct)) = request.get("contentType") {
        ver.content_type = Some(ct.clone());
    }
    match request.get("tags") {
        Some(Value::Object(tags)) if tags.len() <= MAX_TAGS && tags.values().all(Value::is_string) => {
            ver.tags = Some(tags.clone())
        }
        Some(Value::Object(_)) => return Answer::bad("Property tags is not valid"),
        _ => {}
    }
    if let Some(enabled) = request.get("attributes").and_then(|a| a.get("enabled")).and_then(Value::as_bool) {
        ver.enabled = enabled;
    }
    if not_before.is_some() {
        ver.not_before = not_before;
    }
    if expires.is_some() {
        ver.expires = expires;
    }
    ver.updated = now();
    let stored = &*stored;
    let Some(ver) = index.and_then(|i| stored.versions.get(i)) else { return Answer::not_found(name) };
    Answer::json(200, Value::Object(bundle(ver, version_id(ctx, stored, ver), false)))
}

fn deleted_bundle(ctx: &Ctx<'_>, stored: &Stored) -> Value {
    let mut out = match stored.versions.last() {
        Some(ver) => bundle(ver, version_id(ctx, stored, ver), false),
        None => Map::new(),
    };
    let deleted = stored.deleted.unwrap_or_else(now);
    out.insert("recoveryId".into(), Value::String(format!("{}/deletedsecrets/{}", ctx.base, stored.name)));
    out.insert("deletedDate".into(), json!(deleted));
    out.insert("scheduledPurgeDate".into(), json!(deleted + 90 * 86_400));
    Value::Object(out)
}

fn delete_secret(inner: &mut Inner, name: &str, ctx: &Ctx<'_>) -> Answer {
    let inner_busy = inner.busy_after_delete;
    let Some(stored) = inner.secrets.get_mut(&name.to_ascii_lowercase()).filter(|s| s.deleted.is_none()) else {
        return Answer::not_found(name);
    };
    stored.deleted = Some(now());
    stored.busy = inner_busy;
    Answer::json(200, deleted_bundle(ctx, stored))
}

fn get_deleted(inner: &Inner, name: &str, ctx: &Ctx<'_>) -> Answer {
    match inner.secrets.get(&name.to_ascii_lowercase()).filter(|s| s.deleted.is_some()) {
        Some(stored) => Answer::json(200, deleted_bundle(ctx, stored)),
        None => Answer::deleted_not_found(name),
    }
}

fn purge(inner: &mut Inner, name: &str) -> Answer {
    let key = name.to_ascii_lowercase();
    if inner.secrets.get(&key).is_none_or(|s| s.deleted.is_none()) {
        return Answer::deleted_not_found(name);
    }
    if let Some(answer) = still_deleting(inner, &key, name) {
        return answer;
    }
    if inner.purge_protection {
        return Answer::error_inner(
            403,
            "Forbidden",
            "ForbiddenByPolicy",
            "Operation \"purge\" is not allowed because purge protection is enabled for this vault.",
        );
    }
    inner.secrets.remove(&key);
    Answer::empty(204)
}

/// The 409 Key Vault answers while it is still deleting a secret.
fn still_deleting(inner: &mut Inner, key: &str, name: &str) -> Option<Answer> {
    let stored = inner.secrets.get_mut(key)?;
    if stored.busy == 0 {
        return None;
    }
    stored.busy -= 1;
    Some(Answer::error_inner(
        409,
        "Conflict",
        "ObjectIsBeingDeleted",
        format!("Secret {name} is currently being deleted."),
    ))
}

fn recover(inner: &mut Inner, name: &str, ctx: &Ctx<'_>) -> Answer {
    if let Some(answer) = still_deleting(inner, &name.to_ascii_lowercase(), name) {
        return answer;
    }
    let Some(stored) = inner.secrets.get_mut(&name.to_ascii_lowercase()).filter(|s| s.deleted.is_some()) else {
        return Answer::deleted_not_found(name);
    };
    stored.deleted = None;
    let stored = &*stored;
    match stored.versions.last() {
        Some(ver) => Answer::json(200, Value::Object(bundle(ver, version_id(ctx, stored, ver), false))),
        None => Answer::not_found(name),
    }
}

/// One page of `items` (sorted by their skip key) after `skip`, with the
/// `nextLink` to the rest.
fn page(
    items: Vec<(String, Value)>,
    maxresults: Option<&str>,
    skip: Option<&str>,
    path: &str,
    ctx: &Ctx<'_>,
) -> Answer {
    let requested = match maxresults.map(str::parse::<usize>) {
        None => 25,
        Some(Ok(n)) if (1..=25).contains(&n) => n,
        Some(_) => return Answer::bad("maxresults must be a number from 1 to 25"),
    };
    let size = requested.min(PAGE_SIZE);
    let mut rest: Vec<(String, Value)> =
        items.into_iter().filter(|(k, _)| skip.is_none_or(|s| k.as_str() > s)).collect();
    let more = rest.len() > size;
    rest.truncate(size);
    let next_link = match (more, rest.last()) {
        (true, Some((last, _))) => Value::String(format!(
            "{}{path}?api-version={}&$skiptoken={last}&maxresults={requested}",
            ctx.base, ctx.api_version
        )),
        _ => Value::Null,
    };
    Answer::json(200, json!({"value": rest.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), "nextLink": next_link}))
}

fn list_secrets(inner: &Inner, maxresults: Option<&str>, skip: Option<&str>, ctx: &Ctx<'_>) -> Answer {
    let items = inner
        .secrets
        .iter()
        .filter(|(_, s)| s.deleted.is_none())
        .filter_map(|(key, s)| {
            let ver = s.versions.last()?;
            let id = format!("{}/secrets/{}", ctx.base, s.name);
            Some((key.clone(), Value::Object(bundle(ver, id, false))))
        })
        .collect();
    page(items, maxresults, skip, "/secrets", ctx)
}

fn list_versions(inner: &Inner, name: &str, maxresults: Option<&str>, skip: Option<&str>, ctx: &Ctx<'_>) -> Answer {
    let Some(stored) = live(inner, name) else { return Answer::not_found(name) };
    let mut items: Vec<(String, Value)> = stored
        .versions
        .iter()
        .map(|ver| (ver.id.clone(), Value::Object(bundle(ver, version_id(ctx, stored, ver), false))))
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    page(items, maxresults, skip, &format!("/secrets/{}/versions", stored.name), ctx)
}

fn list_deleted(inner: &Inner, maxresults: Option<&str>, skip: Option<&str>, ctx: &Ctx<'_>) -> Answer {
    let items = inner
        .secrets
        .iter()
        .filter(|(_, s)| s.deleted.is_some())
        .map(|(key, s)| (key.clone(), deleted_bundle(ctx, s)))
        .collect();
    page(items, maxresults, skip, "/deletedsecrets", ctx)
}
