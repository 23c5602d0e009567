//! The gRPC server: the `SecretBroker` and `TokenAdmin` services, health and
//! reflection, on TCP (optionally TLS, optionally mutual) or a Unix socket
//! (whose connections pass through [`crate::unix_authority`]).
//!
//! Every call goes: authenticate (`auth`) → broker (validate, authorize,
//! cache, backend) → one audit record. This layer converts messages and
//! writes the audit; behaviour lives in [`crate::broker`]. [`run`] serves
//! until a shutdown future completes, so tests start a real server on port 0
//! and stop it cleanly, and `main` does the same with SIGTERM/SIGINT.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use prost_types::Timestamp;
use secretd_core::{SecretMetadata, SecretValue, Tags};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::{wrappers::UnixListenerStream, StreamExt};
use tonic::{
    transport::server::{TcpConnectInfo, TcpIncoming, TlsConnectInfo, UdsConnectInfo},
    Code, Request, Response, Status,
};
use tonic_health::ServingStatus;

use crate::{admin::Readiness, config::LivenessConfig};

use crate::{
    audit::{AuditLog, AuditRecord, AuditSlot},
    auth::{
        mint::{self, Grant},
        state::{NewToken, StateError},
        AuthFailure, Authenticator, PeerInfo, PeerKey,
    },
    broker::{Broker, ListQuery, Ref, Resolved, Trail},
    cache::{Freshness, Origin},
    config::{is_service_type, Permission},
    policy::{Action, Caller, Target},
    proto::{
        self,
        access_admin_server::{AccessAdmin, AccessAdminServer},
        batch_get_result::Result as ItemResult,
        secret_broker_server::{SecretBroker, SecretBrokerServer},
        token_admin_server::{TokenAdmin, TokenAdminServer},
    },
    resilience::CallContext,
    status::{self, code_name},
    unix_authority::AuthorityFix,
};

/// What every service needs to answer a call.
#[derive(Clone)]
pub struct Services {
    pub broker: Arc<Broker>,
    pub auth: Arc<Authenticator>,
    pub audit: AuditLog,
}

/// Where a call is aimed, for its audit record.
#[derive(Default)]
struct Aim<'a> {
    tenant: Option<&'a str>,
    namespace: Option<&'a str>,
    key: Option<&'a str>,
    version: Option<&'a str>,
    subkey: Option<&'a str>,
}

impl<'a> Aim<'a> {
    /// A call on one secret, as a whole (a write or a delete).
    fn secret(tenant: &'a str, namespace: &'a str, key: &'a str) -> Self {
        Self { tenant: Some(tenant), namespace: Some(namespace), key: Some(key), version: None, subkey: None }
    }
}

impl Services {
    /// Takes the call's place in the audit queue (waiting asynchronously,
    /// and bounded, when the audit sink falls behind: see `audit`), then
    /// authenticates it; failures are audited and answered without a hint
    /// of what was wrong.
    async fn caller<T>(&self, request: &Request<T>, method: &'static str) -> Result<(Caller, AuditSlot), Status> {
        let peer = peer_info(request);
        let mut slot = self.audit.slot(method, &peer.addr).await.map_err(|busy| status::audit_busy(&busy))?;
        match self.auth.authenticate(request.metadata(), &peer) {
            Ok(principal) => {
                slot.identified(&principal.name, &principal.service);
                Ok((Caller { principal, peer: peer.addr }, slot))
            }
            Err(failure) => {
                let (reason, status) = match failure {
                    AuthFailure::Unauthenticated(reason) => (reason, status::unauthenticated()),
                    AuthFailure::RateLimited => (
                        "too many failed basic-auth attempts for this user from this address",
                        status::authentication_rate_limited(),
                    ),
                };
                slot.record(AuditRecord {
                    time: SystemTime::now(),
                    principal: None,
                    service: None,
                    peer: Some(peer.addr),
                    method,
                    tenant: None,
                    namespace: None,
                    found_in: None,
                    backend: None,
                    key: None,
                    version: None,
                    subkey: None,
                    decision: "unauthenticated",
                    reason: Some(reason.into()),
                    cache_hit: None,
                    source: None,
                    backend_latency: None,
                    code: code_name(status.code()),
                });
                Err(status)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn audit(
        &self,
        slot: &mut AuditSlot,
        caller: &Caller,
        method: &'static str,
        aim: Aim<'_>,
        trail: &Trail,
        code: Code,
    ) {
        if !self.audit.is_on() {
            return;
        }
        let decision = match trail.allowed {
            Some(true) => "allow",
            Some(false) => "deny",
            // Refused before the policy ran (a malformed request).
            None => "invalid",
        };
        slot.record(AuditRecord {
            time: SystemTime::now(),
            principal: Some(caller.principal.name.clone()),
            service: Some(caller.principal.service.clone()),
            peer: Some(caller.peer.clone()),
            method,
            tenant: aim.tenant.map(|t| if t.is_empty() { secretd_core::DEFAULT_TENANT } else { t }.to_owned()),
            namespace: aim.namespace.map(str::to_owned),
            found_in: trail.found_in.as_ref().map(|found| found.to_string()),
            backend: trail.backend.clone(),
            key: aim.key.map(str::to_owned),
            version: aim.version.filter(|v| !v.is_empty()).map(str::to_owned),
            subkey: aim.subkey.filter(|s| !s.is_empty()).map(str::to_owned),
            decision,
            reason: trail.reason.clone(),
            cache_hit: trail.cache_hit,
            source: trail.origin.map(origin_name),
            backend_latency: trail.backend_latency,
            code: code_name(code),
        });
    }
}

/// Who is on the other end: TCP address, verified client certificate, or
/// the kernel-reported uid/gid of a Unix socket peer.
fn peer_info<T>(request: &Request<T>) -> PeerInfo {
    let ext = request.extensions();
    if let Some(uds) = ext.get::<UdsConnectInfo>() {
        let cred = uds.peer_cred.map(|c| (c.uid(), c.gid()));
        let addr = match cred {
            Some((uid, gid)) => format!("unix:uid={uid},gid={gid}"),
            None => "unix:unknown".to_owned(),
        };
        let limit_key = cred.map_or(PeerKey::Unknown, |(uid, _)| PeerKey::Uid(uid));
        return PeerInfo { limit_key, addr, unix: cred, leaf_cert: None };
    }
    let tcp = ext
        .get::<TcpConnectInfo>()
        .or_else(|| ext.get::<TlsConnectInfo<TcpConnectInfo>>().map(|t| t.get_ref()))
        .and_then(|t| t.remote_addr());
    let leaf_cert = request.peer_certs().and_then(|chain| chain.first().map(|c| c.as_ref().to_vec()));
    PeerInfo {
        addr: tcp.map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
        limit_key: tcp.map_or(PeerKey::Unknown, |a| PeerKey::Ip(a.ip())),
        leaf_cert,
        unix: None,
    }
}

fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::Backend => "backend",
        Origin::Cache => "cache",
        Origin::Stale => "stale",
    }
}

/// The caller's deadline, from the `grpc-timeout` header its client sent,
/// for the backend calls this call makes.
fn call_context<T>(request: &Request<T>) -> CallContext {
    let timeout = request.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout);
    CallContext { deadline: timeout.map(|t| tokio::time::Instant::now() + t), single_attempt: false }
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n), per the
/// gRPC HTTP/2 protocol. Anything else is ignored, as if not sent.
fn parse_grpc_timeout(raw: &str) -> Option<Duration> {
    if raw.len() < 2 || raw.len() > 9 {
        return None;
    }
    let (digits, unit) = raw.split_at(raw.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `GetSecretRequest.max_age` and `refresh`; a negative or out-of-range
/// `max_age` is the caller's mistake.
fn freshness(req: &proto::GetSecretRequest) -> Result<Freshness, Status> {
    let max_age = match &req.max_age {
        None => None,
        Some(d) => Some(
            Duration::try_from(*d)
                .map_err(|_| status::invalid_request("max_age must be a non-negative duration with nanos in 0..1e9"))?,
        ),
    };
    Ok(Freshness { max_age, refresh: req.refresh })
}

fn to_response(resolved: &Resolved) -> proto::GetSecretResponse {
    let meta = &resolved.secret.metadata;
    proto::GetSecretResponse {
        value: Bytes::copy_from_slice(resolved.secret.value.expose()),
        version: meta.version.to_string(),
        tags: meta.tags.as_map().clone().into_iter().collect(),
        namespace: meta.name.namespace.to_string(),
        source: match resolved.origin {
            Origin::Backend => proto::Source::Backend,
            Origin::Cache => proto::Source::Cache,
            Origin::Stale => proto::Source::Stale,
        } as i32,
        age: prost_types::Duration::try_from(resolved.age).ok(),
        backend: resolved.secret.backend.to_string(),
    }
}

fn to_metadata(meta: SecretMetadata) -> proto::SecretMetadata {
    proto::SecretMetadata {
        tenant: meta.name.tenant.to_string(),
        namespace: meta.name.namespace.to_string(),
        key: meta.name.key.to_string(),
        version: meta.version.to_string(),
        tags: meta.tags.into_inner().into_iter().collect(),
        created_at: Some(Timestamp::from(meta.created_at)),
        updated_at: Some(Timestamp::from(meta.updated_at)),
    }
}

fn to_tags(map: std::collections::HashMap<String, String>) -> Tags {
    map.into_iter().collect()
}

#[tonic::async_trait]
impl SecretBroker for Services {
    async fn get_secret(
        &self,
        request: Request<proto::GetSecretRequest>,
    ) -> Result<Response<proto::GetSecretResponse>, Status> {
        let (caller, mut slot) = self.caller(&request, "GetSecret").await?;
        let context = call_context(&request);
        let req = request.get_ref();
        let r = Ref {
            tenant: &req.tenant,
            namespace: &req.namespace,
            key: &req.key,
            version: &req.version,
            subkey: &req.subkey,
        };
        let mut trail = Trail::default();
        let result = match freshness(req) {
            Ok(freshness) => context.scope(self.broker.get_with(&caller, r, freshness, &mut trail)).await,
            Err(status) => Err(status),
        };
        let aim = Aim {
            tenant: Some(&req.tenant),
            namespace: Some(&req.namespace),
            key: Some(&req.key),
            version: Some(&req.version),
            subkey: Some(&req.subkey),
        };
        self.audit(&mut slot, &caller, "GetSecret", aim, &trail, status::outcome_code(&result));
        Ok(Response::new(to_response(&result?)))
    }

    async fn batch_get_secrets(
        &self,
        request: Request<proto::BatchGetSecretsRequest>,
    ) -> Result<Response<proto::BatchGetSecretsResponse>, Status> {
        let (caller, mut slot) = self.caller(&request, "BatchGetSecrets").await?;
        let context = call_context(&request);
        let refs = &request.get_ref().refs;
        let asked = refs
            .iter()
            .map(|r| Ref {
                tenant: &r.tenant,
                namespace: &r.namespace,
                key: &r.key,
                version: &r.version,
                subkey: &r.subkey,
            })
            .collect();
        let answers = match context.scope(self.broker.batch_get(&caller, asked)).await {
            Ok(answers) => answers,
            Err(status) => {
                self.audit(&mut slot, &caller, "BatchGetSecrets", Aim::default(), &Trail::default(), status.code());
                return Err(status);
            }
        };
        let mut results = Vec::with_capacity(refs.len());
        for (r, (answer, trail)) in refs.iter().zip(answers) {
            let aim = Aim {
                tenant: Some(&r.tenant),
                namespace: Some(&r.namespace),
                key: Some(&r.key),
                version: Some(&r.version),
                subkey: Some(&r.subkey),
            };
            self.audit(&mut slot, &caller, "BatchGetSecrets", aim, &trail, status::outcome_code(&answer));
            results.push(proto::BatchGetResult {
                r#ref: Some(r.clone()),
                result: Some(match answer {
                    Ok(resolved) => ItemResult::Secret(to_response(&resolved)),
                    Err(status) => ItemResult::Error(proto::ItemError {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    }),
                }),
            });
        }
        Ok(Response::new(proto::BatchGetSecretsResponse { results }))
    }

    async fn list_secrets(
        &self,
        request: Request<proto::ListSecretsRequest>,
    ) -> Result<Response<proto::ListSecretsResponse>, Status> {
        let (caller, mut slot) = self.caller(&request, "ListSecrets").await?;
        let context = call_context(&request);
        let req = request.into_inner();
        let mut trail = Trail::default();
        let list = self.broker.list(
            &caller,
            ListQuery {
                tenant: &req.tenant,
                namespace: &req.namespace,
                filter: to_tags(req.tags),
                page_size: req.page_size,
                page_token: &req.page_token,
            },
            &mut trail,
        );
        let result = context.scope(list).await;
        let aim = Aim { tenant: Some(&req.tenant), namespace: Some(&req.namespace), ..Default::default() };
        self.audit(&mut slot, &caller, "ListSecrets", aim, &trail, status::outcome_code(&result));
        let page = result?;
        Ok(Response::new(proto::ListSecretsResponse {
            secrets: page.items.into_iter().map(to_metadata).collect(),
            next_page_token: page.next_token.unwrap_or_default(),
        }))
    }

    async fn put_secret(
        &self,
        request: Request<proto::PutSecretRequest>,
    ) -> Result<Response<proto::PutSecretResponse>, Status> {
        let (caller, mut slot) = self.caller(&request, "PutSecret").await?;
        let context = call_context(&request);
        let req = request.into_inner();
        // The request buffer itself is tonic's; the copy we keep is wiped on drop.
        let value = SecretValue::from_slice(&req.value);
        let r = Ref { tenant: &req.tenant, namespace: &req.namespace, key: &req.key, version: "", subkey: "" };
        let mut trail = Trail::default();
        let put = self.broker.put(&caller, r, value, to_tags(req.tags), &req.description, &mut trail);
        let result = context.scope(put).await;
        let aim = Aim::secret(&req.tenant, &req.namespace, &req.key);
        self.audit(&mut slot, &caller, "PutSecret", aim, &trail, status::outcome_code(&result));
        Ok(Response::new(proto::PutSecretResponse { version: result?.to_string() }))
    }

    async fn delete_secret(
        &self,
        request: Request<proto::DeleteSecretRequest>,
    ) -> Result<Response<proto::DeleteSecretResponse>, Status> {
        let (caller, mut slot) = self.caller(&request, "DeleteSecret").await?;
        let context = call_context(&request);
        let req = request.get_ref();
        let r = Ref { tenant: &req.tenant, namespace: &req.namespace, key: &req.key, version: "", subkey: "" };
        let mut trail = Trail::default();
        let result = context.scope(self.broker.delete(&caller, r, &mut trail)).await;
        let aim = Aim::secret(&req.tenant, &req.namespace, &req.key);
        self.audit(&mut slot, &caller, "DeleteSecret", aim, &trail, status::outcome_code(&result));
        result?;
        Ok(Response::new(proto::DeleteSecretResponse {}))
    }
}

fn timestamp(t: Option<SystemTime>) -> Option<Timestamp> {
    t.map(Timestamp::from)
}

impl Services {
    /// Authenticates and authorizes a token-administration call.
    async fn admin_caller<T>(&self, request: &Request<T>, method: &'static str) -> Result<(Caller, AuditSlot), Status> {
        let (caller, mut slot) = self.caller(request, method).await?;
        let mut trail = Trail::default();
        let decision = self.broker.authorize(&caller, Action::Admin, Target::Tokens, &mut trail);
        if let Err(status) = &decision {
            self.audit(&mut slot, &caller, method, Aim::default(), &trail, status.code());
        }
        decision.map(|()| (caller, slot))
    }

    fn token_store(&self) -> Result<&Arc<crate::auth::state::TokenStore>, Status> {
        self.auth.store().ok_or_else(status::no_state_store)
    }
}

/// A token-administration call's audit trail: who refused it, or that the
/// admin permission let it through.
fn admin_trail<T>(result: &Result<T, Status>) -> Trail {
    match result {
        Err(s) if status::is_denied(s) => {
            Trail { allowed: Some(false), reason: Some(s.message().to_owned().into()), ..Default::default() }
        }
        Err(s) if status::is_invalid_request(s) => Trail::default(),
        _ => Trail { allowed: Some(true), reason: Some("admin permission".into()), ..Default::default() },
    }
}

/// A `CreateTokenRequest` checked for shape (INVALID_ARGUMENT), before the
/// minting rules look at it.
fn new_token(req: proto::CreateTokenRequest, now: SystemTime) -> Result<NewToken, Status> {
    if req.name.is_empty() || req.name.len() > 128 || !req.name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(status::invalid_request("name must be 1 to 128 printable ASCII characters without spaces"));
    }
    if !is_service_type(&req.service) {
        return Err(status::invalid_request("service must be an upper-case identifier like WORKER"));
    }
    let mut permissions = Vec::new();
    for p in &req.permissions {
        let permission = Permission::parse(p).ok_or_else(|| {
            let shown: String = p.chars().take(20).collect();
            status::invalid_request(format!("unknown permission {shown:?}: use read, list, write, delete or admin"))
        })?;
        if !permissions.contains(&permission) {
            permissions.push(permission);
        }
    }
    if permissions.is_empty() {
        permissions.push(Permission::Read);
    }
    for glob in &req.namespaces {
        mint::check_namespace_glob(glob).map_err(status::invalid_request)?;
    }
    let mut tenants = req.tenants;
    if tenants.is_empty() {
        tenants.push(secretd_core::DEFAULT_TENANT.to_owned());
    }
    if tenants.len() > mint::MAX_TENANT_GLOBS {
        return Err(status::invalid_request(format!("at most {} tenant globs", mint::MAX_TENANT_GLOBS)));
    }
    for glob in &tenants {
        mint::check_tenant_glob(glob).map_err(status::invalid_request)?;
    }
    let expires_at = mint::expiry(now, req.expires_in_seconds).map_err(status::invalid_request)?;
    Ok(NewToken { name: req.name, service: req.service, permissions, namespaces: req.namespaces, tenants, expires_at })
}

#[tonic::async_trait]
impl AccessAdmin for Services {
    async fn explain_access(
        &self,
        request: Request<proto::ExplainAccessRequest>,
    ) -> Result<Response<proto::ExplainAccessResponse>, Status> {
        let (admin, mut slot) = self.admin_caller(&request, "ExplainAccess").await?;
        let req = request.get_ref();
        // Every outcome is audited: the audit slot would otherwise record
        // the call as abandoned.
        let result = async {
            let action = match req.action.as_str() {
                "" | "read" => Action::Read,
                "list" => Action::List,
                "write" => Action::Write,
                "delete" => Action::Delete,
                _ => return Err(status::invalid_request("action must be read, list, write or delete")),
            };
            let name = secretd_core::SecretName::parse(&req.tenant, &req.namespace, &req.key)
                .map_err(|e| status::invalid_input(&e))?;
            // An admin limited to some namespaces explains only those.
            if !admin.principal.reaches(&name.tenant, &name.namespace) {
                return Err(status::denied(format!(
                    "{}/{} is outside principal {}'s tenants and namespaces",
                    name.tenant, name.namespace, admin.principal.name
                )));
            }
            let principal = match &req.subject {
                Some(proto::explain_access_request::Subject::Principal(who)) => self
                    .auth
                    .principal_named(who)
                    .ok_or_else(|| status::no_such_subject(format!("no principal or active token is named {who:?}")))?,
                Some(proto::explain_access_request::Subject::Token(token)) => self
                    .auth
                    .principal_of_token(token)
                    .map_err(|_| status::no_such_subject("the token is unknown, revoked or expired"))?,
                None => return Err(status::invalid_request("name a principal or give a token")),
            };
            let subject = Caller { principal: principal.clone(), peer: admin.peer.clone() };
            let explained = self.broker.explain(&subject, action, &name)?;
            Ok((principal, explained))
        }
        .await;
        let trail = match &result {
            Ok((principal, _)) => Trail {
                allowed: Some(true),
                reason: Some(format!("explained access of {}", principal.name).into()),
                ..Default::default()
            },
            Err(_) => admin_trail(&result),
        };
        let aim = Aim::secret(&req.tenant, &req.namespace, &req.key);
        self.audit(&mut slot, &admin, "ExplainAccess", aim, &trail, status::outcome_code(&result));
        let (principal, explained) = result?;
        Ok(Response::new(proto::ExplainAccessResponse {
            principal: principal.name.clone(),
            service: principal.service.clone(),
            decisions: explained
                .into_iter()
                .map(|e| proto::NamespaceDecision {
                    namespace: e.namespace.to_string(),
                    allowed: e.verdict.allowed,
                    step: e.verdict.step.label().to_owned(),
                    reason: e.reason,
                    backend: e.backend.to_string(),
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl TokenAdmin for Services {
    async fn create_token(
        &self,
        request: Request<proto::CreateTokenRequest>,
    ) -> Result<Response<proto::CreateTokenResponse>, Status> {
        let (caller, mut slot) = self.admin_caller(&request, "CreateToken").await?;
        let req = request.into_inner();
        let name = req.name.clone();
        let minted = async {
            let new = new_token(req, SystemTime::now())?;
            let grant = Grant {
                permissions: &new.permissions,
                namespaces: &new.namespaces,
                tenants: &new.tenants,
                expires_at: new.expires_at,
            };
            self.auth
                .check_mint(&caller.principal, &new.name, &grant)
                .map_err(|refusal| status::denied(refusal.to_string()))?;
            // A limited admin's tokens stay within its limits, and also
            // within its access rules: another service type or a name a
            // rule lists could be allowed what the admin itself is denied.
            let creator = &caller.principal;
            let limited = !creator.namespaces.is_empty() || !creator.tenants.iter().any(|t| t == "*");
            if limited && !self.broker.policy().rules_apply_alike(creator, &new.name, &new.service) {
                return Err(status::denied(format!(
                    "principal {} is limited to some tenants or namespaces, so it mints only tokens that access.rules \
                     treat as they treat it: another service type or a name a rule lists could reach more",
                    creator.name
                )));
            }
            let token = self.token_store()?.create(&new).await.map_err(status::from_state_error)?;
            Ok((token, new.expires_at))
        };
        let result = minted.await;
        self.audit(
            &mut slot,
            &caller,
            "CreateToken",
            Aim { key: Some(&name), ..Default::default() },
            &admin_trail(&result),
            status::outcome_code(&result),
        );
        let (token, expires_at) = result?;
        // Make the new token usable here at once rather than at the next refresh.
        if let Err(e) = self.auth.refresh().await {
            tracing::warn!(error = %e, "token created, but re-reading tokens failed");
        }
        use secrecy::ExposeSecret;
        Ok(Response::new(proto::CreateTokenResponse {
            token: token.expose_secret().to_owned(),
            expires_at: timestamp(expires_at),
        }))
    }

    /// A limited admin lists only the tokens inside its reach.
    async fn list_tokens(
        &self,
        request: Request<proto::ListTokensRequest>,
    ) -> Result<Response<proto::ListTokensResponse>, Status> {
        let (caller, mut slot) = self.admin_caller(&request, "ListTokens").await?;
        let result = match self.token_store() {
            Ok(store) => store.list().await.map_err(status::from_state_error),
            Err(status) => Err(status),
        };
        self.audit(
            &mut slot,
            &caller,
            "ListTokens",
            Aim::default(),
            &admin_trail(&result),
            status::outcome_code(&result),
        );
        let tokens = result?
            .into_iter()
            .filter(|t| mint::oversees(&caller.principal, &t.namespaces, &t.tenants))
            .map(|t| proto::TokenInfo {
                name: t.name,
                service: t.service,
                permissions: t.permissions.iter().map(|p| p.as_str().to_owned()).collect(),
                namespaces: t.namespaces,
                tenants: t.tenants,
                created_at: timestamp(Some(t.created_at)),
                expires_at: timestamp(t.expires_at),
                last_used_at: timestamp(t.last_used_at),
                revoked_at: timestamp(t.revoked_at),
            })
            .collect();
        Ok(Response::new(proto::ListTokensResponse { tokens }))
    }

    /// A limited admin revokes only tokens inside its reach. A token outside
    /// it is PERMISSION_DENIED rather than NOT_FOUND: names cannot be kept
    /// from an admin anyway (creating a taken name must fail), so a
    /// pretended absence would only mislead the operator.
    async fn revoke_token(
        &self,
        request: Request<proto::RevokeTokenRequest>,
    ) -> Result<Response<proto::RevokeTokenResponse>, Status> {
        let (caller, mut slot) = self.admin_caller(&request, "RevokeToken").await?;
        let name = request.into_inner().name;
        let revoked = async {
            let store = self.token_store()?;
            let token = store
                .find_active(&name)
                .await
                .map_err(status::from_state_error)?
                .ok_or_else(|| status::from_state_error(StateError::NotFound(name.clone())))?;
            if !mint::oversees(&caller.principal, &token.namespaces, &token.tenants) {
                return Err(status::denied(format!(
                    "token {name:?} is outside principal {}'s reach: its namespaces and tenants must lie within yours",
                    caller.principal.name
                )));
            }
            store.revoke_exact(&name, &token.hash).await.map_err(status::from_state_error)
        };
        let result = revoked.await;
        self.audit(
            &mut slot,
            &caller,
            "RevokeToken",
            Aim { key: Some(&name), ..Default::default() },
            &admin_trail(&result),
            status::outcome_code(&result),
        );
        result?;
        if let Err(e) = self.auth.refresh().await {
            tracing::warn!(error = %e, "token revoked, but re-reading tokens failed; other refreshes will catch up");
        }
        Ok(Response::new(proto::RevokeTokenResponse {}))
    }
}

/// A bound listener.
pub enum Listener {
    Tcp(TcpListener, Option<Arc<rustls::ServerConfig>>),
    Unix(UnixListener),
}

/// How [`run`] checks health and shuts down.
pub struct RunOptions {
    pub liveness: LivenessConfig,
    /// Bound admin listener (`/livez`, `/readyz`, `/metrics`), if enabled.
    pub admin: Option<tokio::net::TcpListener>,
    pub grace_period: Duration,
}

/// Serves the broker, token administration, health and reflection on
/// `listener` (and the admin endpoints on theirs) until `shutdown`
/// completes. Then, in this order: health turns NOT_SERVING and `/readyz`
/// 503, so balancers and probes stop sending; the listener stops
/// accepting; calls in flight get up to the grace period to finish; and
/// whatever is left is cut off.
pub async fn run(
    services: Services,
    listener: Listener,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    let readiness = Arc::new(Readiness::default());
    // The first check before the first call, unless the operator asked to
    // wait: a client must never find the service unknown, nor SERVING
    // before the backend said so.
    let first = if options.liveness.initial_delay.is_zero() {
        Some(check_backends(&services.broker, &health_reporter, &readiness, &options.liveness, None).await)
    } else {
        let service = <SecretBrokerServer<Services> as tonic::server::NamedService>::NAME;
        let backends = services.broker.routes().all().iter().map(|r| backend_health_service(&r.name));
        for name in [service.to_owned(), String::new(), BACKEND_HEALTH_SERVICE.to_owned()].into_iter().chain(backends) {
            health_reporter.set_service_status(&name, ServingStatus::NotServing).await;
        }
        None
    };
    let health_task = tokio::spawn(watch_health(
        services.broker.clone(),
        health_reporter.clone(),
        readiness.clone(),
        options.liveness.clone(),
        first,
    ));
    let (admin_stop, admin_stopped) = tokio::sync::watch::channel(false);
    let admin_task = options.admin.map(|admin| {
        let mut stopped = admin_stopped.clone();
        let stop = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        tokio::spawn(crate::admin::serve(admin, services.clone(), readiness.clone(), stop))
    });

    let (drain_started, drain_begun) = tokio::sync::oneshot::channel::<()>();
    let signal = {
        let readiness = readiness.clone();
        async move {
            shutdown.await;
            tracing::info!(grace_period = ?options.grace_period, "shutting down: no new calls, draining those in flight");
            readiness.set_draining();
            health_task.abort();
            let service = <SecretBrokerServer<Services> as tonic::server::NamedService>::NAME;
            health_reporter.set_service_status(service, ServingStatus::NotServing).await;
            health_reporter.set_service_status("", ServingStatus::NotServing).await;
            let _ = drain_started.send(());
        }
    };

    // Fixed rather than left to hyper's defaults (the same values): the
    // Unix socket's adaptor bounds what it holds by them.
    let router = tonic::transport::Server::builder()
        .max_frame_size(crate::unix_authority::MAX_FRAME_SIZE)
        .http2_max_header_list_size(crate::unix_authority::MAX_HEADER_LIST_SIZE)
        .layer(crate::metrics::GrpcMetricsLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(SecretBrokerServer::new(services.clone()))
        .add_service(AccessAdminServer::new(services.clone()))
        .add_service(TokenAdminServer::new(services));
    let serving = async move {
        match listener {
            // No Nagle: small gRPC frames must not wait for delayed ACKs (a
            // 40 ms tail otherwise).
            Listener::Tcp(tcp, None) => {
                router.serve_with_incoming_shutdown(TcpIncoming::from(tcp).with_nodelay(Some(true)), signal).await
            }
            Listener::Tcp(tcp, Some(tls)) => {
                router.serve_with_incoming_shutdown(crate::tls::incoming(tcp, tls), signal).await
            }
            // Stock gRPC clients send an :authority h2 refuses on sockets.
            Listener::Unix(unix) => {
                let incoming = UnixListenerStream::new(unix).map(|conn| conn.map(AuthorityFix::new));
                router.serve_with_incoming_shutdown(incoming, signal).await
            }
        }
    };
    let grace = options.grace_period;
    let deadline = async move {
        if drain_begun.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        result = serving => result,
        () = deadline => {
            tracing::warn!("termination grace period over; closing with calls still in flight");
            Ok(())
        }
    };
    let _ = admin_stop.send(true);
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    result
}

/// The `grpc.health.v1` service name that reports the default backend
/// alone (and its circuit breaker), whatever the cache can still serve.
/// Each backend also has `secretd.backend.<name>`.
pub const BACKEND_HEALTH_SERVICE: &str = "secretd.backend";

/// The `grpc.health.v1` service of one backend.
pub fn backend_health_service(name: &str) -> String {
    format!("{BACKEND_HEALTH_SERVICE}.{name}")
}

/// Keeps `grpc.health.v1`, `/readyz` and the `backend_up` gauges in step
/// with the backends' health checks.
async fn watch_health(
    broker: Arc<Broker>,
    reporter: tonic_health::server::HealthReporter,
    readiness: Arc<Readiness>,
    liveness: LivenessConfig,
    mut last: Option<Vec<ServingStatus>>,
) {
    tokio::time::sleep(if last.is_some() { liveness.interval } else { liveness.initial_delay }).await;
    loop {
        let status = check_backends(&broker, &reporter, &readiness, &liveness, last.as_deref()).await;
        last = Some(status);
        tokio::time::sleep(liveness.interval).await;
    }
}

/// One health check of every backend, at once, published to
/// `grpc.health.v1`, `/readyz` and the `backend_up` gauges. Returns each
/// backend's status, in route order (the default first).
///
/// `secretd.backend.<name>` follows each backend, `secretd.backend` the
/// default one. The broker's own service (and `""`) follows the default
/// backend, but stays SERVING through its outage while the cache may serve
/// stale values (`secret.cache.stale-if-error`): every replica shares the
/// backend, so taking them all out of rotation would only turn stale
/// answers into no answers. A dedicated backend that is down degrades its
/// routes only: the broker stays SERVING for the others.
async fn check_backends(
    broker: &Broker,
    reporter: &tonic_health::server::HealthReporter,
    readiness: &Readiness,
    liveness: &LivenessConfig,
    last: Option<&[ServingStatus]>,
) -> Vec<ServingStatus> {
    let service = <SecretBrokerServer<Services> as tonic::server::NamedService>::NAME;
    let routes = broker.routes().all();
    let checks = routes.iter().map(|route| async move {
        match tokio::time::timeout(liveness.timeout, route.store.health()).await {
            Ok(Ok(())) => ServingStatus::Serving,
            Ok(Err(e)) => {
                tracing::warn!(backend = %route.name, error = %e, "backend health check failed");
                ServingStatus::NotServing
            }
            Err(_) => {
                tracing::warn!(backend = %route.name, timeout = ?liveness.timeout, "backend health check timed out");
                ServingStatus::NotServing
            }
        }
    });
    let statuses = futures::future::join_all(checks).await;
    let serves_stale = broker.cache().serves_stale();
    let mut report = Vec::with_capacity(routes.len());
    for (i, (route, status)) in routes.iter().zip(&statuses).enumerate() {
        let up = *status == ServingStatus::Serving;
        crate::metrics::get()
            .backend_up
            .get_or_create(&crate::metrics::BackendLabel::of(&route.name))
            .set(i64::from(up));
        report.push(crate::admin::BackendHealth {
            name: route.name.clone(),
            ok: up,
            breaker: route.breaker.as_ref().map(|b| b.state()),
        });
        if last.and_then(|l| l.get(i)) != Some(status) {
            tracing::info!(backend = %route.name, ?status, serves_stale, "backend health changed");
            reporter.set_service_status(&backend_health_service(&route.name), *status).await;
            if i == 0 {
                reporter.set_service_status(BACKEND_HEALTH_SERVICE, *status).await;
                let broker_status = if up || serves_stale { ServingStatus::Serving } else { ServingStatus::NotServing };
                reporter.set_service_status(service, broker_status).await;
                reporter.set_service_status("", broker_status).await;
            }
        }
    }
    readiness.set_backends(report, serves_stale);
    statuses
}
