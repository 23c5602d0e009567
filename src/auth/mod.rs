//! Who is calling: every call is authenticated before anything else looks
//! at it. There is no anonymous mode.
//!
//! A caller proves who it is in one of four ways:
//! 1. `authorization: Bearer <token>`: a service-account token from the
//!    state store or from `auth.service-accounts`;
//! 2. `authorization: Basic ...`: the operator's admin account from
//!    `server.basic-auth`;
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
pub mod state;
pub mod token;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::{Duration, SystemTime},
};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use wildmatch::WildMatch;

use self::{limiter::FailureLimiter, state::TokenStore, token::TokenHash};
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
}

impl Principal {
    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.contains(&Permission::Admin) || self.permissions.contains(&permission)
    }

    /// Whether `tenant`/`namespace` lies within this principal's own limits
    /// (its namespace globs; none means everywhere). The policy asks this
    /// of every namespace a call consults.
    pub fn reaches(&self, _tenant: &secretd_core::Tenant, namespace: &secretd_core::Namespace) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|g| WildMatch::new(g).matches(namespace.as_str()))
    }

    fn from_spec(spec: &PrincipalSpec) -> Self {
        Self {
            name: spec.name.clone(),
            service: spec.service.clone(),
            permissions: spec.permissions.iter().copied().collect(),
            namespaces: spec.namespaces.clone(),
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
    password_hash: [u8; 32],
    principal: Arc<Principal>,
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
            password_hash: Sha256::digest(b.password.expose_secret().as_bytes()).into(),
            principal: Arc::new(Principal {
                name: b.username.clone(),
                service: ADMIN_SERVICE.into(),
                permissions: Permission::ALL.into_iter().collect(),
                namespaces: Vec::new(),
            }),
        });
        let authenticator = Self {
            tokens: RwLock::new(Arc::new(HashMap::new())),
            static_accounts,
            certs,
            peers,
            basic,
            limiter: FailureLimiter::new(auth.failure_limit.burst, auth.failure_limit.per_minute),
            store,
            store_reachable: std::sync::atomic::AtomicBool::new(true),
        };
        authenticator.install(Vec::new());
        authenticator
    }

    pub fn store(&self) -> Option<&Arc<TokenStore>> {
        self.store.as_ref()
    }

    /// Replaces the token index with the static accounts plus `stored`.
    fn install(&self, stored: Vec<state::TokenInfo>) {
        let mut index = HashMap::with_capacity(self.static_accounts.len() + stored.len());
        for (hash, principal) in &self.static_accounts {
            let entry = TokenEntry { principal: principal.clone(), hash: *hash, expires_at: None, last_used: None };
            index.insert(*hash, entry);
        }
        for t in stored {
            let principal = Principal {
                name: t.name,
                service: t.service,
                permissions: t.permissions.into_iter().collect(),
                namespaces: t.namespaces,
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
        if let Some(last_used) = &entry.last_used {
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
        let password_ok = admin.password_hash.ct_eq(Sha256::digest(password.as_bytes()).as_slice());
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
    use crate::config::{CertificateRule, PeerRule, StaticAccount};

    fn spec(name: &str, service: &str) -> PrincipalSpec {
        PrincipalSpec {
            name: name.into(),
            service: service.into(),
            permissions: vec![Permission::Read],
            namespaces: vec![],
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

    #[test]
    fn tokens_basic_and_peers() {
        let token = token::generate();
        let auth = AuthConfig {
            service_accounts: vec![StaticAccount {
                name: "worker".into(),
                service: "WORKER".into(),
                permissions: vec![Permission::Read],
                namespaces: vec![],
                token_sha256: TokenHash::of(token.expose_secret()).to_hex(),
            }],
            unix_peers: vec![PeerRule { uid: Some(1000), gid: None, principal: spec("sidecar", "WORKER") }],
            certificates: vec![CertificateRule {
                uri_san: Some("spiffe://x/*".into()),
                common_name: None,
                principal: spec("c", "EXECUTOR"),
            }],
            ..Default::default()
        };
        let basic = BasicAuthConfig { username: "admin".into(), password: SecretString::from("pw".to_owned()) };
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
            service_accounts: vec![StaticAccount {
                name: "worker".into(),
                service: "WORKER".into(),
                permissions: vec![Permission::Read],
                namespaces: vec![],
                token_sha256: TokenHash::of(token.expose_secret()).to_hex(),
            }],
            unix_peers: vec![PeerRule { uid: Some(1000), gid: None, principal: spec("sidecar", "WORKER") }],
            failure_limit: crate::config::FailureLimit { burst: 3, per_minute: 0 },
            ..Default::default()
        };
        let basic = BasicAuthConfig { username: "admin".into(), password: SecretString::from("right".to_owned()) };
        (Authenticator::new(&auth, Some(&basic), None), token)
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
}
