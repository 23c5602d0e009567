//! Who is calling: every call is authenticated before anything else looks
//! at it. There is no anonymous mode.
//!
//! A caller proves who it is in one of four ways:
//! 1. `authorization: Bearer <token>`: a service-account token from the
//!    state store or from `auth.service-accounts`;
//! 2. `authorization: Basic ...`: the operator's admin account from
//!    `server.basic-auth`, whose password given as `file:` is re-read when
//!    the file changes (a rotated password that breaks
//!    `security.basic-auth.password-regexp` is refused, and the previous
//!    one stays);
//! 3. the kernel-verified uid/gid of a Unix socket peer, matched by
//!    `auth.unix-peers` rules (the sidecar's path: nothing to leak);
//! 4. a client certificate that rustls verified against
//!    `server.tls.client-ca`, matched by URI SAN or CN (`auth.certificates`).
//!
//! Explicit credentials win: a call that carries an `authorization` header
//! is that header's principal or nobody (a bad header never falls back to
//! the connection's identity), so an operator can act as admin from a host
//! whose socket peer or certificate maps to a worker. Without a header, the
//! connection's identity decides.
//!
//! Failures get one answer, UNAUTHENTICATED "authentication required", so a
//! caller learns nothing about which part was wrong; the reason goes to the
//! audit record.
//!
//! Only what can be guessed is rate limited: basic-auth passwords, per
//! address (IPv6 by /64, so one host cannot rotate through its prefix) and
//! user name. A user that keeps failing from one address is refused
//! RESOURCE_EXHAUSTED for a while (see `limiter`), its right password
//! included. Nothing else counts, and nothing else is ever refused by the
//! limiter: tokens are 256 random bits, so an invalid one is no guess worth
//! slowing, and certificates and socket peers are verified by TLS and the
//! kernel. Counting those would only let one misbehaving caller lock out
//! every valid one that shares its address (NAT, an ingress, a mesh
//! sidecar, one uid on the socket).

pub mod cert;
pub mod limiter;
pub mod mint;
pub mod state;
pub mod token;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, SystemTime},
};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use secretd_core::CredentialSource;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use wildmatch::WildMatch;

use self::{
    limiter::FailureLimiter,
    mint::{Grant, MintRefusal, ALL_TENANTS},
    state::TokenStore,
    token::TokenHash,
};
use crate::config::{AuthConfig, BasicAuthConfig, Permission, PrincipalSpec};

/// The service type of the `server.basic-auth` admin account.
pub const ADMIN_SERVICE: &str = "ADMIN";

/// An authenticated identity and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    /// WORKER, EXECUTOR, ... (`ADMIN` for the basic-auth operator).
    pub service: String,
    pub permissions: BTreeSet<Permission>,
    /// Namespace globs this principal is limited to; empty means all.
    pub namespaces: Vec<String>,
    /// Tenant globs this principal is limited to; `*` is every tenant.
    /// Always listed: an empty list reaches no tenant, so a principal built
    /// without thinking of tenants fails closed.
    pub tenants: Vec<String>,
    /// When this principal stops authenticating (a token's expiry; none for
    /// the principals of the configuration). What it mints ends no later.
    pub expires_at: Option<SystemTime>,
}

impl Principal {
    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.contains(&Permission::Admin) || self.permissions.contains(&permission)
    }

    /// Whether `tenant`/`namespace` lies within this principal's own limits:
    /// one of its tenant globs matches the tenant, and one of its namespace
    /// globs (none means every namespace) matches the namespace. The two
    /// lists are independent: `[main, acme]` with `[company.*]` reaches
    /// `company.*` in both tenants. The policy asks this of every namespace
    /// a call consults.
    pub fn reaches(&self, tenant: &secretd_core::Tenant, namespace: &secretd_core::Namespace) -> bool {
        self.tenants.iter().any(|g| WildMatch::new(g).matches(tenant.as_str()))
            && (self.namespaces.is_empty()
                || self.namespaces.iter().any(|g| WildMatch::new(g).matches(namespace.as_str())))
    }

    fn from_spec(spec: &PrincipalSpec) -> Self {
        Self {
            name: spec.name.clone(),
            service: spec.service.clone(),
            permissions: spec.permissions.iter().copied().collect(),
            namespaces: spec.namespaces.clone(),
            tenants: spec.tenants.clone(),
            expires_at: None,
        }
    }
}

/// How the caller reached us, as far as authentication cares.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// `ip:port` or `unix:uid=..`; the rate-limit key and the audit's peer.
    pub addr: String,
    /// Whose failures count together: the IP without the port, or the uid.
    pub limit_key: PeerKey,
    /// The verified client certificate chain's leaf, DER.
    pub leaf_cert: Option<Vec<u8>>,
    /// The Unix socket peer's (uid, gid), from SO_PEERCRED.
    pub unix: Option<(u32, u32)>,
}

/// Where a call comes from, as far as failures count together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PeerKey {
    Ip(std::net::IpAddr),
    Uid(u32),
    #[default]
    Unknown,
}

impl PeerKey {
    /// The origin failures count against: an IPv4 address (IPv4-mapped
    /// IPv6 included), the /64 of any other IPv6 address (the smallest
    /// block a host is given), the uid, or the unknown.
    fn origin(self) -> Origin {
        match self {
            PeerKey::Ip(std::net::IpAddr::V4(v4)) => Origin::V4(v4.octets()),
            PeerKey::Ip(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Origin::V4(v4.octets()),
                None => Origin::V6Prefix((v6.to_bits() >> 64) as u64),
            },
            PeerKey::Uid(uid) => Origin::Uid(uid),
            PeerKey::Unknown => Origin::Unknown,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Origin {
    V4([u8; 4]),
    V6Prefix(u64),
    Uid(u32),
    Unknown,
}

/// Whose failed basic-auth attempts count together: an origin and the user
/// name tried, kept as a digest (a mistyped name may be a password, and
/// the key's size stays fixed whatever a caller sends).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GuessKey {
    origin: Origin,
    user: [u8; 16],
}

impl GuessKey {
    fn new(peer: PeerKey, user: &str) -> Self {
        let digest = Sha256::digest(user.as_bytes());
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        Self { origin: peer.origin(), user: short }
    }
}

/// Why authentication failed. Only the audit record and the logs see the
/// reason; the caller sees "authentication required".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    Unauthenticated(&'static str),
    RateLimited,
}

struct TokenEntry {
    principal: Arc<Principal>,
    hash: TokenHash,
    expires_at: Option<SystemTime>,
    /// Milliseconds since the epoch of the last use not yet written to the
    /// state store (0: none). Only tokens from the state store have one.
    last_used: Option<AtomicU64>,
}

struct CertMatcher {
    uri_san: Option<WildMatch>,
    common_name: Option<WildMatch>,
    principal: Arc<Principal>,
}

struct PeerMatcher {
    uid: Option<u32>,
    gid: Option<u32>,
    principal: Arc<Principal>,
}

struct BasicAdmin {
    username_hash: [u8; 32],
    password: CredentialSource,
    /// `security.basic-auth.password-regexp`, which a rotated password must
    /// obey too.
    rule: Option<regex::Regex>,
    /// Digests only: of the password callers must present, and of the
    /// value last read, to notice a rotation.
    digests: Mutex<PasswordDigests>,
    principal: Arc<Principal>,
}

struct PasswordDigests {
    accepted: [u8; 32],
    last_read: [u8; 32],
}

impl BasicAdmin {
    /// The digest a caller's password must match now. A `file:` password is
    /// re-read when its file changed (the source checks that cheaply).
    fn accepted_digest(&self) -> [u8; 32] {
        let mut digests = self.digests.lock().unwrap_or_else(|e| e.into_inner());
        // A failed read keeps the last good value inside the source already.
        if let Ok(current) = self.password.current() {
            let digest: [u8; 32] = Sha256::digest(current.expose_secret().as_bytes()).into();
            if digest != digests.last_read {
                digests.last_read = digest;
                if self.rule.as_ref().is_none_or(|rule| rule.is_match(current.expose_secret())) {
                    digests.accepted = digest;
                    tracing::info!("server.basic-auth.password changed; the new password is in use");
                } else {
                    tracing::warn!(
                        "server.basic-auth.password changed to one that does not match \
                         security.basic-auth.password-regexp; the previous password stays in use"
                    );
                }
            }
        }
        digests.accepted
    }
}

pub struct Authenticator {
    /// Token hash → entry; replaced whole by the refresher.
    tokens: RwLock<Arc<HashMap<TokenHash, TokenEntry>>>,
    static_accounts: Vec<(TokenHash, Arc<Principal>)>,
    certs: Vec<CertMatcher>,
    peers: Vec<PeerMatcher>,
    basic: Option<BasicAdmin>,
    /// Failed basic-auth attempts, per address and user name.
    limiter: FailureLimiter<GuessKey>,
    store: Option<Arc<TokenStore>>,
    /// Whether the last refresh reached the state store, for `/readyz`.
    store_reachable: std::sync::atomic::AtomicBool,
    /// The principal names the configuration defines, and where: no token
    /// may take one, since `access.rules` match principals by name.
    config_names: HashMap<String, &'static str>,
    /// Stored tokens refused for holding such a name, already logged.
    shadowed: std::sync::Mutex<HashSet<String>>,
}

impl Authenticator {
    pub fn new(auth: &AuthConfig, basic: Option<&BasicAuthConfig>, store: Option<Arc<TokenStore>>) -> Self {
        let static_accounts = auth
            .service_accounts
            .iter()
            .filter_map(|a| {
                let hash = TokenHash::parse(&a.token_sha256)?;
                let principal = Principal {
                    name: a.name.clone(),
                    service: a.service.clone(),
                    permissions: a.permissions.iter().copied().collect(),
                    namespaces: a.namespaces.clone(),
                    tenants: a.tenants.clone(),
                    expires_at: None,
                };
                Some((hash, Arc::new(principal)))
            })
            .collect();
        let certs = auth
            .certificates
            .iter()
            .map(|r| CertMatcher {
                uri_san: r.uri_san.as_deref().map(WildMatch::new),
                common_name: r.common_name.as_deref().map(WildMatch::new),
                principal: Arc::new(Principal::from_spec(&r.principal)),
            })
            .collect();
        let peers = auth
            .unix_peers
            .iter()
            .map(|r| PeerMatcher { uid: r.uid, gid: r.gid, principal: Arc::new(Principal::from_spec(&r.principal)) })
            .collect();
        let basic = basic.map(|b| BasicAdmin {
            username_hash: Sha256::digest(b.username.as_bytes()).into(),
            password: b.password.source(),
            rule: None,
            digests: {
                // Loading checked the password against the rule already.
                let digest: [u8; 32] = Sha256::digest(b.password.expose_secret().as_bytes()).into();
                Mutex::new(PasswordDigests { accepted: digest, last_read: digest })
            },
            principal: Arc::new(Principal {
                name: b.username.clone(),
                service: ADMIN_SERVICE.into(),
                permissions: Permission::ALL.into_iter().collect(),
                namespaces: Vec::new(),
                tenants: vec![ALL_TENANTS.to_owned()],
                expires_at: None,
            }),
        });
        let mut config_names = HashMap::new();
        let named = auth
            .service_accounts
            .iter()
            .map(|a| (&a.name, "auth.service-accounts"))
            .chain(auth.certificates.iter().map(|r| (&r.principal.name, "auth.certificates")))
            .chain(auth.unix_peers.iter().map(|r| (&r.principal.name, "auth.unix-peers")))
            .chain(basic.as_ref().map(|b| (&b.principal.name, "server.basic-auth")));
        for (name, section) in named {
            config_names.entry(name.clone()).or_insert(section);
        }
        let authenticator = Self {
            tokens: RwLock::new(Arc::new(HashMap::new())),
            static_accounts,
            certs,
            peers,
            basic,
            limiter: FailureLimiter::new(auth.failure_limit.burst, auth.failure_limit.per_minute),
            store,
            store_reachable: std::sync::atomic::AtomicBool::new(true),
            config_names,
            shadowed: Default::default(),
        };
        authenticator.install(Vec::new());
        authenticator
    }

    /// Holds rotated basic-auth passwords to `security.basic-auth.password-regexp`.
    pub fn with_password_rule(mut self, rule: Option<regex::Regex>) -> Self {
        if let Some(basic) = &mut self.basic {
            basic.rule = rule;
        }
        self
    }

    pub fn store(&self) -> Option<&Arc<TokenStore>> {
        self.store.as_ref()
    }

    /// Whether `creator` may mint a token named `name` holding `grant`
    /// (the rules are in [`mint`]).
    pub fn check_mint(&self, creator: &Principal, name: &str, grant: &Grant<'_>) -> Result<(), MintRefusal> {
        if let Some(section) = self.config_names.get(name) {
            return Err(MintRefusal::ReservedName { name: name.to_owned(), section });
        }
        mint::check_grant(creator, grant)
    }

    /// Replaces the token index with the static accounts plus `stored`.
    fn install(&self, stored: Vec<state::TokenInfo>) {
        let mut index = HashMap::with_capacity(self.static_accounts.len() + stored.len());
        for (hash, principal) in &self.static_accounts {
            let entry = TokenEntry { principal: principal.clone(), hash: *hash, expires_at: None, last_used: None };
            index.insert(*hash, entry);
        }
        for t in stored {
            // Minted before names were reserved, or the configuration gained
            // the name since: the token would pass for that principal in
            // access.rules, so it does not authenticate at all.
            if let Some(section) = self.config_names.get(&t.name) {
                let mut shadowed = self.shadowed.lock().unwrap_or_else(|p| p.into_inner());
                if shadowed.insert(t.name.clone()) {
                    tracing::error!(
                        token = %t.name,
                        section,
                        "a stored token has the name of a principal in the configuration; it is refused until revoked"
                    );
                }
                continue;
            }
            let principal = Principal {
                name: t.name,
                service: t.service,
                permissions: t.permissions.into_iter().collect(),
                namespaces: t.namespaces,
                tenants: t.tenants,
                expires_at: t.expires_at,
            };
            let entry = TokenEntry {
                principal: Arc::new(principal),
                hash: t.hash,
                expires_at: t.expires_at,
                last_used: Some(AtomicU64::new(0)),
            };
            index.insert(t.hash, entry);
        }
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(index);
    }

    /// Re-reads the state store now. Called at start and by [`refresh_loop`](Self::refresh_loop).
    pub async fn refresh(&self) -> Result<(), state::StateError> {
        let result = self.refresh_tokens().await;
        self.store_reachable.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    /// Whether the state store answered the last refresh.
    pub fn state_store_reachable(&self) -> bool {
        self.store_reachable.load(Ordering::Relaxed)
    }

    async fn refresh_tokens(&self) -> Result<(), state::StateError> {
        let Some(store) = &self.store else { return Ok(()) };
        let index = self.tokens.read().unwrap_or_else(|p| p.into_inner()).clone();
        let used: Vec<(String, SystemTime)> = index
            .values()
            .filter_map(|e| {
                let ms = e.last_used.as_ref()?.swap(0, Ordering::Relaxed);
                (ms > 0).then(|| (e.principal.name.clone(), SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
            })
            .collect();
        if !used.is_empty() {
            store.touch(&used).await?;
        }
        let active = store.active().await?;
        self.install(active);
        Ok(())
    }

    /// Keeps the token index in step with the state store, so revocations
    /// made on any replica apply here within `interval`.
    pub async fn refresh_loop(self: Arc<Self>, interval: Duration) {
        let mut failing = false;
        loop {
            tokio::time::sleep(interval).await;
            match self.refresh().await {
                Ok(()) if failing => {
                    tracing::info!("state store reachable again");
                    failing = false;
                }
                Ok(()) => {}
                // Keep the last known tokens: an unreachable state store must
                // not lock every caller out (nor re-admit revoked tokens).
                Err(e) if !failing => {
                    tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "cannot refresh tokens");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }

    /// The principal a configured rule or an active token of this name
    /// maps to, for `access explain`. Config principals come first, as
    /// tokens cannot take their names.
    pub fn principal_named(&self, name: &str) -> Option<Arc<Principal>> {
        let configured = self
            .static_accounts
            .iter()
            .map(|(_, p)| p)
            .chain(self.certs.iter().map(|c| &c.principal))
            .chain(self.peers.iter().map(|r| &r.principal))
            .chain(self.basic.iter().map(|b| &b.principal))
            .find(|p| p.name == name)
            .cloned();
        configured.or_else(|| {
            let index = self.tokens.read().unwrap_or_else(|p| p.into_inner()).clone();
            let found = index.values().find(|e| e.principal.name == name).map(|e| e.principal.clone());
            found
        })
    }

    /// The principal of a token, as a call bearing it would be
    /// authenticated, for `access explain`. Failures do not count against
    /// the failure limit: the caller is an authenticated admin.
    pub fn principal_of_token(&self, token: &str) -> Result<Arc<Principal>, AuthFailure> {
        self.find_token(token.trim(), false)
    }

    /// Authenticates one call.
    pub fn authenticate(&self, metadata: &MetadataMap, peer: &PeerInfo) -> Result<Arc<Principal>, AuthFailure> {
        let result = self.identify(metadata, peer);
        match &result {
            Err(AuthFailure::Unauthenticated(reason)) => {
                crate::metrics::auth_failure(reason);
                tracing::debug!(peer = %peer.addr, reason, "authentication failed");
            }
            Err(AuthFailure::RateLimited) => {
                crate::metrics::auth_failure("rate limited");
                tracing::debug!(peer = %peer.addr, "basic auth refused: too many failures for this user here");
            }
            Ok(_) => {}
        }
        result
    }

    fn identify(&self, metadata: &MetadataMap, peer: &PeerInfo) -> Result<Arc<Principal>, AuthFailure> {
        if let Some(header) = metadata.get("authorization") {
            let header = header.to_str().map_err(|_| AuthFailure::Unauthenticated("malformed authorization header"))?;
            if let Some(bearer) = strip_scheme(header, "bearer") {
                return self.check_token(bearer.trim());
            }
            if let Some(basic) = strip_scheme(header, "basic") {
                return self.check_basic(basic.trim(), peer.limit_key);
            }
            return Err(AuthFailure::Unauthenticated("unknown authorization scheme"));
        }
        if let Some((uid, gid)) = peer.unix {
            let matched = self.peers.iter().find(|r| r.uid.is_none_or(|u| u == uid) && r.gid.is_none_or(|g| g == gid));
            if let Some(rule) = matched {
                return Ok(rule.principal.clone());
            }
            return Err(AuthFailure::Unauthenticated("no rule maps this unix peer and no credentials"));
        }
        if let Some(der) = &peer.leaf_cert {
            let id = cert::identity(der).ok_or(AuthFailure::Unauthenticated("unreadable client certificate"))?;
            let matched = self.certs.iter().find(|r| {
                r.uri_san.as_ref().is_none_or(|g| id.uri_sans.iter().any(|u| g.matches(u)))
                    && r.common_name.as_ref().is_none_or(|g| id.common_name.as_deref().is_some_and(|cn| g.matches(cn)))
            });
            if let Some(rule) = matched {
                return Ok(rule.principal.clone());
            }
            return Err(AuthFailure::Unauthenticated("no rule maps this client certificate and no credentials"));
        }
        Err(AuthFailure::Unauthenticated("no credentials"))
    }

    fn check_token(&self, presented: &str) -> Result<Arc<Principal>, AuthFailure> {
        self.find_token(presented, true)
    }

    /// The active token `presented` is, in constant time; `used` records
    /// this as its last use (an explanation of a token is not a use).
    fn find_token(&self, presented: &str, used: bool) -> Result<Arc<Principal>, AuthFailure> {
        if !token::looks_like_token(presented) {
            return Err(AuthFailure::Unauthenticated("malformed token"));
        }
        let hash = TokenHash::of(presented);
        let index = self.tokens.read().unwrap_or_else(|p| p.into_inner()).clone();
        let entry = index.get(&hash).filter(|e| e.hash.ct_eq(&hash));
        let Some(entry) = entry else {
            return Err(AuthFailure::Unauthenticated("unknown or revoked token"));
        };
        if entry.expires_at.is_some_and(|at| at <= SystemTime::now()) {
            return Err(AuthFailure::Unauthenticated("expired token"));
        }
        if let Some(last_used) = entry.last_used.as_ref().filter(|_| used) {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            last_used.store(now, Ordering::Relaxed);
        }
        Ok(entry.principal.clone())
    }

    /// Checks the operator's user name and password, then asks the limiter:
    /// a user over its failures at this address is refused whether or not
    /// the password is right this time, or the limiter would answer each
    /// guess all the same.
    fn check_basic(&self, encoded: &str, peer: PeerKey) -> Result<Arc<Principal>, AuthFailure> {
        let Some(admin) = &self.basic else {
            return Err(AuthFailure::Unauthenticated("basic auth is not configured"));
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(SecretString::from)
            .ok_or(AuthFailure::Unauthenticated("malformed basic credentials"))?;
        let (user, password) = decoded
            .expose_secret()
            .split_once(':')
            .ok_or(AuthFailure::Unauthenticated("malformed basic credentials"))?;
        // Compare fixed-size digests in constant time, both always, so
        // neither the length nor which half was wrong shows in the timing.
        let user_ok = admin.username_hash.ct_eq(Sha256::digest(user.as_bytes()).as_slice());
        let password_ok = admin.accepted_digest().ct_eq(Sha256::digest(password.as_bytes()).as_slice());
        let guess = GuessKey::new(peer, user);
        if self.limiter.is_blocked(&guess) {
            return Err(AuthFailure::RateLimited);
        }
        if bool::from(user_ok & password_ok) {
            Ok(admin.principal.clone())
        } else {
            self.limiter.record_failure(&guess);
            Err(AuthFailure::Unauthenticated("wrong basic credentials"))
        }
    }
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::{CertificateRule, Credential, PeerRule, StaticAccount};

    fn spec(name: &str, service: &str) -> PrincipalSpec {
        PrincipalSpec {
            name: name.into(),
            service: service.into(),
            permissions: vec![Permission::Read],
            namespaces: vec![],
            tenants: vec!["main".into()],
        }
    }

    fn metadata(auth: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", auth.parse().unwrap());
        m
    }

    fn peer(key: &str) -> PeerInfo {
        let limit_key = match key {
            "good" => PeerKey::Uid(1),
            "bad" => PeerKey::Uid(2),
            _ => PeerKey::Unknown,
        };
        PeerInfo { addr: key.into(), limit_key, ..Default::default() }
    }

    /// A reader `worker` in tenant `main` that `token` authenticates.
    fn worker_account(token: &SecretString) -> StaticAccount {
        StaticAccount {
            name: "worker".into(),
            service: "WORKER".into(),
            permissions: vec![Permission::Read],
            namespaces: vec![],
            tenants: vec!["main".into()],
            token_sha256: TokenHash::of(token.expose_secret()).to_hex(),
        }
    }

    #[test]
    fn tokens_basic_and_peers() {
        let token = token::generate();
        let auth = AuthConfig {
            service_accounts: vec![worker_account(&token)],
            unix_peers: vec![PeerRule { uid: Some(1000), gid: None, principal: spec("sidecar", "WORKER") }],
            certificates: vec![CertificateRule {
                uri_san: Some("spiffe://x/*".into()),
                common_name: None,
                principal: spec("c", "EXECUTOR"),
            }],
            ..Default::default()
        };
        let basic = BasicAuthConfig { username: "admin".into(), password: Credential::inline("pw") };
        let a = Authenticator::new(&auth, Some(&basic), None);
        let ok = a.authenticate(&metadata(&format!("Bearer {}", token.expose_secret())), &peer("p")).unwrap();
        assert_eq!((ok.name.as_str(), ok.service.as_str()), ("worker", "WORKER"));
        let admin = a.authenticate(&metadata("Basic YWRtaW46cHc="), &peer("p")).unwrap();
        assert!(admin.can(Permission::Delete));
        assert_eq!(
            a.authenticate(&metadata("Basic YWRtaW46eHg="), &peer("p")),
            Err(AuthFailure::Unauthenticated("wrong basic credentials"))
        );
        let other = token::generate();
        assert_eq!(
            a.authenticate(&metadata(&format!("Bearer {}", other.expose_secret())), &peer("p")),
            Err(AuthFailure::Unauthenticated("unknown or revoked token"))
        );
        assert_eq!(
            a.authenticate(&MetadataMap::new(), &peer("p")),
            Err(AuthFailure::Unauthenticated("no credentials"))
        );
        let mut unix = peer("unix");
        unix.unix = Some((1000, 5));
        assert_eq!(a.authenticate(&MetadataMap::new(), &unix).unwrap().name, "sidecar");
        unix.unix = Some((1001, 5));
        assert!(a.authenticate(&MetadataMap::new(), &unix).is_err());
    }

    fn from(ip: &str) -> PeerInfo {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        PeerInfo { addr: ip.to_string(), limit_key: PeerKey::Ip(ip), ..Default::default() }
    }

    fn basic(user: &str, password: &str) -> MetadataMap {
        metadata(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))))
    }

    /// An operator account `admin`/`right`, a token, a socket peer rule and
    /// a limit of 3 failures (no refill during the test).
    fn limited() -> (Authenticator, SecretString) {
        let token = token::generate();
        let auth = AuthConfig {
            service_accounts: vec![worker_account(&token)],
            unix_peers: vec![PeerRule { uid: Some(1000), gid: None, principal: spec("sidecar", "WORKER") }],
            failure_limit: crate::config::FailureLimit { burst: 3, per_minute: 0 },
            ..Default::default()
        };
        let basic = BasicAuthConfig { username: "admin".into(), password: Credential::inline("right") };
        (Authenticator::new(&auth, Some(&basic), None), token)
    }

    #[test]
    fn a_rotated_password_file_is_picked_up_and_held_to_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin-password");
        std::fs::write(&file, "first-long-password\n").unwrap();
        let raw = format!("file:{}", file.display());
        let basic_config = BasicAuthConfig { username: "op".into(), password: Credential::resolve(&raw).unwrap() };
        let rule = regex::Regex::new("^(?:[a-z-]{12,})$").unwrap();
        let a = Authenticator::new(&AuthConfig::default(), Some(&basic_config), None).with_password_rule(Some(rule));
        let ok = |a: &Authenticator, pw: &str| a.authenticate(&basic("op", pw), &peer("good")).is_ok();
        assert!(ok(&a, "first-long-password"));
        assert!(!ok(&a, &raw), "the reference itself is no password");

        // Different sizes, so the change shows within the clock's resolution.
        std::fs::write(&file, "second-long-password-x\n").unwrap();
        assert!(ok(&a, "second-long-password-x"));
        assert!(!ok(&a, "first-long-password"), "the old password still works after rotation");

        std::fs::write(&file, "short\n").unwrap();
        assert!(!ok(&a, "short"), "a rotated password that breaks the rule was taken");
        assert!(ok(&a, "second-long-password-x"), "the previous password must stay in use");
    }

    fn lock_out(a: &Authenticator, user: &str, peer: &PeerInfo) {
        for _ in 0..3 {
            assert_eq!(
                a.authenticate(&basic(user, "guess"), peer),
                Err(AuthFailure::Unauthenticated("wrong basic credentials"))
            );
        }
        assert_eq!(a.authenticate(&basic(user, "guess"), peer), Err(AuthFailure::RateLimited));
    }

    /// Issue #12, item 7: a caller with a valid token or socket identity is
    /// never refused by the limiter, even from an address (or uid) where
    /// someone is guessing; invalid tokens do not count at all.
    #[test]
    fn valid_tokens_and_peers_are_never_refused_from_a_locked_out_origin() {
        let (a, token) = limited();
        let nat = from("203.0.113.7");
        lock_out(&a, "admin", &nat);
        let bearer = metadata(&format!("Bearer {}", token.expose_secret()));
        assert_eq!(a.authenticate(&bearer, &nat).unwrap().name, "worker");
        let wrong = metadata(&format!("Bearer {}", token::generate().expose_secret()));
        for _ in 0..50 {
            assert_eq!(a.authenticate(&wrong, &nat), Err(AuthFailure::Unauthenticated("unknown or revoked token")));
        }
        assert_eq!(a.authenticate(&bearer, &nat).unwrap().name, "worker", "50 bad tokens locked nobody out");
        let mut socket = PeerInfo { addr: "unix:uid=1000".into(), limit_key: PeerKey::Uid(1000), ..Default::default() };
        socket.unix = Some((1000, 1000));
        lock_out(&a, "admin", &socket);
        assert_eq!(a.authenticate(&MetadataMap::new(), &socket).unwrap().name, "sidecar");
    }

    /// Wrong passwords lock out that user at that address (its /64 for
    /// IPv6), the right password included; not another user there, nor the
    /// same user elsewhere.
    #[test]
    fn wrong_basic_passwords_lock_out_that_user_at_that_address_only() {
        let (a, _) = limited();
        let here = from("198.51.100.20");
        lock_out(&a, "admin", &here);
        assert_eq!(a.authenticate(&basic("admin", "right"), &here), Err(AuthFailure::RateLimited));
        assert_eq!(
            a.authenticate(&basic("someone-else", "x"), &here),
            Err(AuthFailure::Unauthenticated("wrong basic credentials")),
            "another user at the same address is not locked out"
        );
        assert!(a.authenticate(&basic("admin", "right"), &from("198.51.100.21")).is_ok());
        assert_eq!(
            a.authenticate(&basic("admin", "right"), &from("::ffff:198.51.100.20")),
            Err(AuthFailure::RateLimited),
            "an IPv4-mapped address is that IPv4 address"
        );

        lock_out(&a, "admin", &from("2001:db8:1:2::1"));
        assert_eq!(
            a.authenticate(&basic("admin", "right"), &from("2001:db8:1:2:ffff::9")),
            Err(AuthFailure::RateLimited),
            "an IPv6 host cannot rotate through its /64"
        );
        assert!(a.authenticate(&basic("admin", "right"), &from("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn reaches_needs_both_tenant_and_namespace() {
        let p = Principal {
            name: "p".into(),
            service: "WORKER".into(),
            permissions: [Permission::Read].into_iter().collect(),
            namespaces: vec!["company.*".into()],
            tenants: vec!["main".into(), "acme-*".into()],
            expires_at: None,
        };
        let t = |s: &str| secretd_core::Tenant::parse(s).unwrap();
        let n = |s: &str| secretd_core::Namespace::parse(s).unwrap();
        assert!(p.reaches(&t(""), &n("company.team")), "empty means main");
        assert!(p.reaches(&t("acme-prod"), &n("company.team")));
        assert!(!p.reaches(&t("acme"), &n("company.team")));
        assert!(!p.reaches(&t("main"), &n("other")));
        let nowhere = Principal { tenants: vec![], namespaces: vec![], ..p.clone() };
        assert!(!nowhere.reaches(&t("main"), &n("company")), "no tenant listed reaches no tenant");
        let everywhere = Principal { tenants: vec![ALL_TENANTS.into()], namespaces: vec![], ..p };
        assert!(everywhere.reaches(&t("zeta"), &n("x")));
    }

    #[test]
    fn config_principals_default_to_main_and_list_their_tenants() {
        let hash = TokenHash::of("x").to_hex();
        let yaml = |auth: &str| {
            format!(
                "secret:\n  type: memory\nserver:\n  basic-auth: {{username: operator, password: pw}}\nauth:\n{auth}"
            )
        };
        let load = |text: &str| crate::config::load_str(text, std::path::Path::new("t.yaml"), &|_| None);
        let config = load(&yaml(&format!(
            "  service-accounts:\n    - {{name: a, service: WORKER, token-sha256: {hash}}}\n    - {{name: b, service: WORKER, tenants: [acme, \"t-*\"], token-sha256: {hash}}}\n  unix-peers:\n    - {{uid: 7, principal: {{name: peer, service: WORKER}}}}\n"
        )))
        .unwrap();
        assert_eq!(config.auth.service_accounts[0].tenants, ["main"]);
        assert_eq!(config.auth.service_accounts[1].tenants, ["acme", "t-*"]);
        assert_eq!(config.auth.unix_peers[0].principal.tenants, ["main"]);
        let err = load(&yaml(&format!(
            "  service-accounts:\n    - {{name: a, service: WORKER, tenants: [], token-sha256: {hash}}}\n    - {{name: b, service: WORKER, tenants: [Acme], token-sha256: {hash}}}\n  unix-peers:\n    - {{uid: 7, principal: {{name: peer, service: WORKER, namespaces: [\"a b\"]}}}}\n"
        )))
        .unwrap_err()
        .to_string();
        for field in [
            "auth.service-accounts[0].tenants: must list at least one",
            "auth.service-accounts[1].tenants[0]: a tenant glob must be",
            "auth.unix-peers[0].principal.namespaces[0]: a namespace glob must be",
        ] {
            assert!(err.contains(field), "{field} missing in {err}");
        }
        assert!(!err.contains("Acme") && !err.contains("a b"), "configuration errors quote no value: {err}");

        // Names of the configuration's principals are not for tokens, and the
        // operator reaches every tenant.
        let basic = config.server.basic_auth.as_ref();
        let a = Authenticator::new(&config.auth, basic, None);
        let admin = Principal {
            name: "root".into(),
            service: ADMIN_SERVICE.into(),
            permissions: [Permission::Admin].into_iter().collect(),
            namespaces: vec![],
            tenants: vec![ALL_TENANTS.into()],
            expires_at: None,
        };
        let grant = Grant { permissions: &[Permission::Read], namespaces: &[], tenants: &[], expires_at: None };
        for (name, section) in
            [("a", "auth.service-accounts"), ("peer", "auth.unix-peers"), ("operator", "server.basic-auth")]
        {
            assert_eq!(
                a.check_mint(&admin, name, &grant),
                Err(MintRefusal::ReservedName { name: name.into(), section }),
                "{name}"
            );
        }
        assert_eq!(a.check_mint(&admin, "free-name", &grant), Ok(()));
        let operator = a.authenticate(&metadata("Basic b3BlcmF0b3I6cHc="), &peer("p")).unwrap();
        assert_eq!(operator.tenants, [ALL_TENANTS]);
    }

    #[test]
    fn stored_tokens_with_config_names_do_not_authenticate() {
        let auth = AuthConfig {
            unix_peers: vec![PeerRule { uid: Some(1), gid: None, principal: spec("ops", "ADMIN") }],
            ..Default::default()
        };
        let a = Authenticator::new(&auth, None, None);
        let stored = |name: &str, token: &SecretString| state::TokenInfo {
            name: name.into(),
            service: "WORKER".into(),
            permissions: vec![Permission::Read],
            namespaces: vec![],
            tenants: vec!["main".into()],
            hash: TokenHash::of(token.expose_secret()),
            created_at: SystemTime::now(),
            expires_at: Some(SystemTime::now() + Duration::from_secs(60)),
            last_used_at: None,
            revoked_at: None,
        };
        let (shadow, fine) = (token::generate(), token::generate());
        a.install(vec![stored("ops", &shadow), stored("worker", &fine)]);
        let bearer = |t: &SecretString| metadata(&format!("Bearer {}", t.expose_secret()));
        assert!(a.authenticate(&bearer(&shadow), &peer("p")).is_err(), "a token passed for config principal ops");
        let worker = a.authenticate(&bearer(&fine), &peer("p")).unwrap();
        assert_eq!((worker.tenants.as_slice(), worker.expires_at.is_some()), (&["main".to_owned()][..], true));
    }
}
