//! The AWS Secrets Manager store (`secret.type: aws-secret-manager`), with
//! the official SDK.
//!
//! # Mapping
//! - A secret is the Secrets Manager secret `<name-prefix><tenant>/<namespace>/<key>`
//!   (see [`names`]).
//! - Versions are Secrets Manager versions: the id is the `VersionId` (a
//!   UUID secretd sends as the client request token); the latest is the
//!   one staged `AWSCURRENT`, and the one before it keeps `AWSPREVIOUS`.
//!   Secrets Manager keeps about 100 versions and may drop unstaged old
//!   ones after a day.
//! - A value that is UTF-8 is stored as `SecretString`, any other as
//!   `SecretBinary`, so what the console and other clients see is the value
//!   itself, and both read back byte for byte.
//! - Tags are the secret's AWS tags. They belong to the secret, not to a
//!   version ([`Capabilities::tags_per_version`] is false).
//! - A scan lists every secret under the selection's name prefix
//!   (`ListSecrets` has no order to page by, so each page of a scan lists
//!   them all and cuts its page out of them, by name). A secret's versions
//!   are `ListSecretVersionIds`, unstaged ones included, oldest first by
//!   creation time; versions created within the same instant keep the
//!   server's order, except that `AWSPREVIOUS` and then `AWSCURRENT` go
//!   last.
//! - Delete schedules deletion after the recovery window, or deletes at
//!   once (`force-delete`); either way the secret reads as missing from
//!   then on, and a later put restores it with the new value and tags.
//!
//! # Credentials
//! Static keys or the SDK's default chain sign every call; with
//! [`AssumeRole`] they sign only STS `AssumeRole`, and the role's temporary
//! credentials sign the Secrets Manager calls. aws-config's
//! `AssumeRoleProvider` fetches those, and the client's identity cache asks
//! it again before they expire.
//!
//! # Writes
//! A new secret is created with its value and tags in one call. An
//! existing one gets its new version first and its tags second (Secrets
//! Manager has no call for both); if the tag update fails, the put reports
//! it and trying again repairs it.

mod error;
pub mod names;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::{retry::RetryConfig, sts::AssumeRoleProvider, timeout::TimeoutConfig, BehaviorVersion, Region};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_secretsmanager::{
    config::Credentials,
    operation::describe_secret::DescribeSecretOutput,
    primitives::{Blob, DateTime},
    types::{Filter, FilterNameStringType, Tag},
    Client,
};
use aws_smithy_http_client::tls;
use rand::Rng;
use secrecy::ExposeSecret;
use secretd_core::{
    Capabilities, CredentialSource, ErrorKind, Namespace, Page, PageRequest, ScanSelection, Secret, SecretMetadata,
    SecretName, SecretStore, SecretValue, StoreError, Tags, Tenant, Version,
};

pub use names::NamePrefix;

/// Static credentials, as the platform's `access-key-id`, `secret-key-id`
/// and `session-token`. Each is read from its source when the SDK asks for
/// credentials, which it does again a minute later at the latest, so keys
/// rotated in a mounted file are picked up without a restart.
#[derive(Clone, Debug)]
pub struct StaticCredentials {
    pub access_key_id: CredentialSource,
    pub secret_access_key: CredentialSource,
    pub session_token: Option<CredentialSource>,
}

/// How long the SDK may keep credentials before asking again.
const CREDENTIALS_REREAD: Duration = Duration::from_secs(60);

impl ProvideCredentials for StaticCredentials {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(self.load())
    }
}

impl StaticCredentials {
    fn load(&self) -> aws_credential_types::provider::Result {
        let read = |source: &CredentialSource| {
            source
                .current()
                .map(|s| s.expose_secret().to_owned())
                .map_err(aws_credential_types::provider::error::CredentialsError::provider_error)
        };
        Ok(Credentials::new(
            read(&self.access_key_id)?,
            read(&self.secret_access_key)?,
            self.session_token.as_ref().map(read).transpose()?,
            Some(SystemTime::now() + CREDENTIALS_REREAD),
            "secretd-config",
        ))
    }
}

/// A role to assume through STS before calling Secrets Manager (the
/// platform's `sts-role-*` keys). Its `Debug` leaves out the external id.
#[derive(Clone)]
#[non_exhaustive]
pub struct AssumeRole {
    /// `arn:<partition>:iam::<account>:role/<name>`.
    pub role_arn: String,
    /// What the role's trust policy may require (`sts:ExternalId`).
    pub external_id: Option<String>,
    /// The session's name, seen in the role's CloudTrail entries.
    pub session_name: String,
    /// How long each set of temporary credentials lasts (15 minutes to 12
    /// hours, within the role's own maximum).
    pub session_duration: Duration,
    /// Another STS endpoint than the region's (a VPC endpoint, a test
    /// server). The store's `endpoint` is for Secrets Manager only.
    pub sts_endpoint: Option<String>,
}

impl AssumeRole {
    pub fn new(role_arn: impl Into<String>) -> Self {
        Self {
            role_arn: role_arn.into(),
            external_id: None,
            session_name: "secretd".into(),
            session_duration: Duration::from_secs(3600),
            sts_endpoint: None,
        }
    }
}

impl std::fmt::Debug for AssumeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRole")
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| "<set>"))
            .field("session_name", &self.session_name)
            .field("session_duration", &self.session_duration)
            .field("sts_endpoint", &self.sts_endpoint)
            .finish()
    }
}

/// How a deleted secret goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletePolicy {
    /// Scheduled for deletion after this many days (7 to 30); restorable
    /// until then.
    RecoveryWindow(u8),
    /// Deleted at once, without recovery.
    Force,
}

/// What [`AwsStore::connect`] needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AwsOptions {
    pub region: String,
    /// Another endpoint than AWS's for the region (a VPC endpoint, a test
    /// server).
    pub endpoint: Option<String>,
    /// `None`: the SDK's default credential chain (environment, profile,
    /// web identity, ECS, instance metadata).
    pub credentials: Option<StaticCredentials>,
    /// A role whose temporary credentials sign the Secrets Manager calls;
    /// `credentials` (or the default chain) then sign only `AssumeRole`.
    pub assume_role: Option<AssumeRole>,
    /// The KMS key new secrets are encrypted with; `None` for the account's
    /// default `aws/secretsmanager` key.
    pub kms_key_id: Option<String>,
    pub name_prefix: NamePrefix,
    pub delete: DeletePolicy,
    /// Each call's deadline, retries included.
    pub timeout: Duration,
    /// Tries per call, the first included (the SDK's standard retry mode).
    pub max_attempts: u32,
}

impl AwsOptions {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            endpoint: None,
            credentials: None,
            assume_role: None,
            kms_key_id: None,
            name_prefix: NamePrefix::new("secretd/").unwrap_or_else(|_| unreachable!("a valid prefix")),
            delete: DeletePolicy::RecoveryWindow(30),
            timeout: Duration::from_secs(5),
            max_attempts: 3,
        }
    }
}

pub struct AwsStore {
    client: Client,
    prefix: NamePrefix,
    kms_key_id: Option<String>,
    delete: DeletePolicy,
}

impl std::fmt::Debug for AwsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsStore").field("prefix", &self.prefix).field("delete", &self.delete).finish_non_exhaustive()
    }
}

impl AwsStore {
    /// Builds the client; nothing is sent until the first call (credentials
    /// from the default chain are resolved then).
    pub async fn connect(options: AwsOptions) -> Result<Self, StoreError> {
        if let DeletePolicy::RecoveryWindow(days) = options.delete {
            if !(7..=30).contains(&days) {
                return Err(StoreError::invalid_name(format!("the recovery window must be 7 to 30 days, got {days}")));
            }
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(options.region.clone()))
            .http_client(http)
            .retry_config(RetryConfig::standard().with_max_attempts(options.max_attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(options.timeout.min(Duration::from_secs(3)))
                    .operation_attempt_timeout(options.timeout)
                    .operation_timeout(options.timeout * options.max_attempts.max(1))
                    .build(),
            );
        if let Some(creds) = &options.credentials {
            loader = loader.credentials_provider(creds.clone());
        }
        let base = loader.load().await;
        let mut config = aws_sdk_secretsmanager::config::Builder::from(&base);
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint);
        }
        if let Some(role) = &options.assume_role {
            config = config.credentials_provider(SharedCredentialsProvider::new(assumed_role(&base, role).await));
        }
        Ok(Self {
            client: Client::from_conf(config.build()),
            prefix: options.name_prefix,
            kms_key_id: options.kms_key_id,
            delete: options.delete,
        })
    }

    async fn describe(&self, name: &SecretName, aws_name: &str) -> Result<DescribeSecretOutput, StoreError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(aws_name)
            .send()
            .await
            .map_err(|e| error::map(e, &format!("describing {name}")))?;
        Ok(out)
    }

    /// Sets the secret's tags to exactly `tags`.
    async fn replace_tags(
        &self,
        name: &SecretName,
        aws_name: &str,
        old: &[Tag],
        tags: &Tags,
    ) -> Result<(), StoreError> {
        let stale: Vec<String> =
            old.iter().filter_map(|t| t.key()).filter(|k| tags.get(k).is_none()).map(str::to_owned).collect();
        if !stale.is_empty() {
            self.client
                .untag_resource()
                .secret_id(aws_name)
                .set_tag_keys(Some(stale))
                .send()
                .await
                .map_err(|e| error::map(e, &format!("untagging {name}")))?;
        }
        let changed: Vec<Tag> = tags
            .iter()
            .filter(|(k, v)| !old.iter().any(|t| t.key() == Some(*k) && t.value() == Some(*v)))
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        if !changed.is_empty() {
            self.client
                .tag_resource()
                .secret_id(aws_name)
                .set_tags(Some(changed))
                .send()
                .await
                .map_err(|e| error::map(e, &format!("tagging {name}")))?;
        }
        Ok(())
    }

    /// A new version of an existing secret, then its tags. A secret
    /// scheduled for deletion is restored first: to secretd it was gone, so
    /// the put starts it afresh.
    async fn put_existing(
        &self,
        name: &SecretName,
        aws_name: &str,
        existing: DescribeSecretOutput,
        value: &SecretValue,
        tags: &Tags,
    ) -> Result<Version, StoreError> {
        if existing.deleted_date().is_some() {
            self.client
                .restore_secret()
                .secret_id(aws_name)
                .send()
                .await
                .map_err(|e| error::map(e, &format!("restoring {name}")))?;
        }
        let token = request_token();
        let mut request = self.client.put_secret_value().secret_id(aws_name).client_request_token(&token);
        request = match std::str::from_utf8(value.expose()) {
            Ok(text) => request.secret_string(text),
            Err(_) => request.secret_binary(Blob::new(value.expose())),
        };
        let out = request.send().await.map_err(|e| error::map(e, &format!("writing {name}")))?;
        let version = out.version_id().unwrap_or(&token).to_owned();
        self.replace_tags(name, aws_name, existing.tags(), tags).await.map_err(|e| {
            StoreError::new(e.kind(), format!("{e}; version {version} of {name} was written but its tags were not"))
        })?;
        Ok(Version(version))
    }
}

/// A fresh UUID v4 as the client request token: the new version's id, and
/// what makes the SDK's retries of one put idempotent.
fn request_token() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn time(dt: Option<&DateTime>) -> SystemTime {
    dt.and_then(|d| SystemTime::try_from(*d).ok()).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A listed secret's latest metadata, named `name`; none while it has no
/// `AWSCURRENT` version (a create still in flight).
fn listed_metadata(entry: &aws_sdk_secretsmanager::types::SecretListEntry, name: SecretName) -> Option<SecretMetadata> {
    let version = entry
        .secret_versions_to_stages()?
        .iter()
        .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
        .map(|(id, _)| id.clone())?;
    Some(SecretMetadata {
        name,
        version: Version(version),
        tags: tags_of(entry.tags()),
        created_at: time(entry.created_date()),
        updated_at: time(entry.last_changed_date().or(entry.created_date())),
    })
}

fn tags_of(tags: &[Tag]) -> Tags {
    tags.iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))).collect()
}

/// Whether a tag key or value can go into a `ListSecrets` filter, whose
/// values allow fewer characters than tags do. Others are checked on the
/// client only.
fn filterable(s: &str) -> bool {
    !s.is_empty() && s.len() <= 512 && s.chars().all(|c| c.is_ascii_alphanumeric() || " :_@/+=.-".contains(c))
}

#[async_trait]
impl SecretStore for AwsStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities { tags_per_version: false, ..Capabilities::FULL }
    }

    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        let aws_name = self.prefix.secret_name(name)?;
        if let Some(pinned) = version {
            if !names::plausible_version_id(pinned.as_str()) {
                return Err(StoreError::new(ErrorKind::NotFound, format!("secret {name} has no version {pinned}")));
            }
        }
        let mut read = self.client.get_secret_value().secret_id(&aws_name);
        if let Some(pinned) = version {
            read = read.version_id(pinned.as_str());
        }
        let what = format!("reading {name}");
        let (value, described) = futures_join(read.send(), self.describe(name, &aws_name)).await;
        // A secret scheduled for deletion is gone to secretd, whatever the
        // value read answered.
        let described = described?;
        if described.deleted_date().is_some() {
            return Err(StoreError::not_found(name));
        }
        let value = value.map_err(|e| error::map(e, &what))?;
        let bytes = match (value.secret_string(), value.secret_binary()) {
            (Some(text), _) => SecretValue::from_slice(text.as_bytes()),
            (None, Some(blob)) => SecretValue::from_slice(blob.as_ref()),
            (None, None) => return Err(StoreError::corrupt(format!("Secrets Manager returned no value for {name}"))),
        };
        let version = value
            .version_id()
            .ok_or_else(|| StoreError::corrupt(format!("Secrets Manager returned no version id for {name}")))?;
        Ok(Secret {
            metadata: SecretMetadata {
                name: name.clone(),
                version: Version(version.to_owned()),
                tags: tags_of(described.tags()),
                created_at: time(described.created_date()),
                updated_at: time(value.created_date()),
            },
            value: bytes,
        })
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        description: Option<&str>,
    ) -> Result<Version, StoreError> {
        tags.validate()?;
        let aws_name = self.prefix.secret_name(name)?;
        match self.describe(name, &aws_name).await {
            Ok(existing) => return self.put_existing(name, &aws_name, existing, value, tags).await,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let token = request_token();
        let aws_tags: Vec<Tag> = tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
        let mut create = self
            .client
            .create_secret()
            .name(&aws_name)
            .client_request_token(&token)
            .set_tags((!aws_tags.is_empty()).then_some(aws_tags))
            .set_kms_key_id(self.kms_key_id.clone())
            .set_description(description.map(str::to_owned));
        create = match std::str::from_utf8(value.expose()) {
            Ok(text) => create.secret_string(text),
            Err(_) => create.secret_binary(Blob::new(value.expose())),
        };
        match create.send().await.map_err(|e| error::map(e, &format!("creating {name}"))) {
            Ok(out) => Ok(Version(out.version_id().unwrap_or(&token).to_owned())),
            // Another writer created it first: write a new version on top.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let existing = self.describe(name, &aws_name).await?;
                self.put_existing(name, &aws_name, existing, value, tags).await
            }
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        let aws_name = self.prefix.secret_name(name)?;
        // Asked first: a forced delete of a missing secret succeeds on AWS.
        let described = self.describe(name, &aws_name).await?;
        if described.deleted_date().is_some() {
            return Err(StoreError::not_found(name));
        }
        let mut request = self.client.delete_secret().secret_id(&aws_name);
        request = match self.delete {
            DeletePolicy::Force => request.force_delete_without_recovery(true),
            DeletePolicy::RecoveryWindow(days) => request.recovery_window_in_days(i64::from(days)),
        };
        request.send().await.map_err(|e| error::map(e, &format!("deleting {name}")))?;
        Ok(())
    }

    async fn list(
        &self,
        tenant: &Tenant,
        namespace: &Namespace,
        filter: &Tags,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        let after = page.token.as_deref().map(secretd_core::key_after_token).transpose()?;
        let prefix = self.prefix.namespace_prefix(tenant, namespace);
        // The server narrows by name prefix and tags (loosely: prefix and
        // case-insensitive matches); every answer is checked exactly below.
        let mut filters = vec![Filter::builder().key(FilterNameStringType::Name).values(&prefix).build()];
        let keys: Vec<&str> = filter.iter().map(|(k, _)| k).filter(|k| filterable(k)).take(9).collect();
        if !keys.is_empty() {
            filters.push(
                Filter::builder()
                    .key(FilterNameStringType::TagKey)
                    .set_values(Some(keys.iter().map(|k| k.to_string()).collect()))
                    .build(),
            );
        }
        let mut items = Vec::new();
        let mut pages = self.client.list_secrets().set_filters(Some(filters)).max_results(100).into_paginator().send();
        while let Some(listed) = pages.next().await {
            let listed = listed.map_err(|e| error::map(e, &format!("listing {tenant}/{namespace}")))?;
            for entry in listed.secret_list() {
                let Some(key) = entry.name().and_then(|n| names::key_in(&prefix, n)) else { continue };
                if entry.deleted_date().is_some() || after.as_ref().is_some_and(|a| &key <= a) {
                    continue;
                }
                let name = SecretName::new(tenant.clone(), namespace.clone(), key);
                items.extend(listed_metadata(entry, name).filter(|m| m.tags.contains_all(filter)));
            }
        }
        items.sort_by(|a, b| a.name.key.cmp(&b.name.key));
        Ok(Page::cut(items, page.size, |last| secretd_core::key_page_token(&last.name.key)))
    }

    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        let after = page.token.as_deref().map(secretd_core::name_after_token).transpose()?;
        let name_prefix = names::scan_prefix(&self.prefix, selection);
        let filters = (!name_prefix.is_empty())
            .then(|| vec![Filter::builder().key(FilterNameStringType::Name).values(&name_prefix).build()]);
        let mut items = Vec::new();
        let mut pages = self.client.list_secrets().set_filters(filters).max_results(100).into_paginator().send();
        while let Some(listed) = pages.next().await {
            let listed = listed.map_err(|e| error::map(e, "scanning the secrets"))?;
            for entry in listed.secret_list() {
                let Some(name) = entry.name().and_then(|n| names::name_in(&self.prefix, n)) else { continue };
                if entry.deleted_date().is_some()
                    || !selection.admits(&name)
                    || after.as_ref().is_some_and(|a| &name <= a)
                {
                    continue;
                }
                items.extend(listed_metadata(entry, name));
            }
        }
        items.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Page::cut(items, page.size, |last| secretd_core::name_page_token(&last.name)))
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        let aws_name = self.prefix.secret_name(name)?;
        if self.describe(name, &aws_name).await?.deleted_date().is_some() {
            return Err(StoreError::not_found(name));
        }
        let mut listed = Vec::new();
        let mut pages = self
            .client
            .list_secret_version_ids()
            .secret_id(&aws_name)
            .include_deprecated(true)
            .max_results(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| error::map(e, &format!("listing the versions of {name}")))?;
            for entry in page.versions() {
                let Some(id) = entry.version_id() else { continue };
                let staged = |label: &str| entry.version_stages().iter().any(|s| s == label);
                let rank = if staged("AWSCURRENT") {
                    2
                } else if staged("AWSPREVIOUS") {
                    1
                } else {
                    0
                };
                listed.push((time(entry.created_date()), rank, id.to_owned()));
            }
        }
        // A stable sort: ties keep the server's order.
        listed.sort_by_key(|(created, rank, _)| (*created, *rank));
        Ok(listed.into_iter().map(|(_, _, id)| Version(id)).collect())
    }

    async fn health(&self) -> Result<(), StoreError> {
        // Cheap, authenticated and read-only: it proves the endpoint, the
        // credentials and the permission to list.
        self.client
            .list_secrets()
            .max_results(1)
            .send()
            .await
            .map_err(|e| error::map(e, "checking Secrets Manager's health"))?;
        Ok(())
    }
}

/// The provider of `role`'s temporary credentials, which asks STS with the
/// base configuration's credentials, at `role.sts_endpoint` if given
/// (else where the base configuration sends STS calls).
async fn assumed_role(base: &aws_config::SdkConfig, role: &AssumeRole) -> AssumeRoleProvider {
    let mut sts = base.to_builder();
    if let Some(endpoint) = &role.sts_endpoint {
        sts.set_endpoint_url(Some(endpoint.clone()));
    }
    let mut builder = AssumeRoleProvider::builder(&role.role_arn)
        .configure(&sts.build())
        .session_name(&role.session_name)
        .session_length(role.session_duration);
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id);
    }
    builder.build().await
}

/// Both calls of a read at once: one round trip instead of two.
async fn futures_join<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: std::future::Future,
    B: std::future::Future,
{
    tokio::join!(a, b)
}
