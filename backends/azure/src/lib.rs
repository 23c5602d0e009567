//! The Azure Key Vault store (`secret.type: azure-key-vault`), with the
//! official Azure SDK (`azure_security_keyvault_secrets`, `azure_identity`).
//!
//! # Mapping
//! - A secret is the Key Vault secret `<name-prefix><tenant>--<namespace>--<key>`
//!   with upper-case letters and `. _ - /` escaped, because Key Vault names
//!   are letters, digits and dashes compared without case (see [`names`]
//!   for the rule and why it is injective). A name that would exceed Key
//!   Vault's 127 characters is `InvalidName`.
//! - Versions are Key Vault's versions (32 hex digits); the latest is the
//!   one Key Vault serves without a version.
//! - A UTF-8 value is stored as is; any other value as base64, marked in
//!   the version's content type (see the `value` module), so both read
//!   back byte for byte.
//! - Tags are Key Vault tags, which belong to each version
//!   ([`Capabilities::tags_per_version`] is true): a put writes the value
//!   and its tags in one call, and a pinned read shows that version's tags.
//! - Key Vault secrets have no description; a put's description is not
//!   stored.
//! - `created_at` is when the secret was first written, carried forward in
//!   each version's content type; `updated_at` is the version's own time.
//!
//! # Delete, and a put after it
//! Delete is Key Vault's soft delete: the secret and all its versions
//! disappear (get, list and delete answer `NotFound`) but the vault keeps
//! them, recoverable, for its retention period. With `purge_on_delete` the
//! deleted secret is purged at once as well (Key Vault finishes a delete
//! asynchronously, so the purge is retried while it answers 409).
//!
//! Key Vault refuses to set a secret whose name is soft-deleted (409). A
//! put onto such a name starts afresh, as secretd's contract says: it
//! purges the deleted secret, waits until Key Vault has let go of the name,
//! and writes the new value. Where purging is refused (purge protection,
//! or no purge permission) it recovers the deleted secret instead and
//! writes the new value on top: the latest version then carries only the
//! new value and tags, but the old versions are readable again by id.
//!
//! # Listing
//! Key Vault cannot filter its listing by name, so a list reads the names
//! of the whole vault (25 per request), keeps the namespace's, sorts them
//! by key and reads the latest version of each secret on the page (the
//! listing does not say which version is the latest). Page tokens are
//! the last key of the page.
//!
//! # Scans and versions
//! A scan reads the names of the whole vault as a listing does, keeps
//! those of the selection and reads the latest version of a page's worth of
//! them, in name order; page tokens are the page's last name. A secret's
//! versions are its enabled versions oldest first by creation time (Key
//! Vault keeps whole seconds); versions of one second are ordered by the
//! write time secretd keeps in the content type (see `value`), or else
//! keep the server's order, except that the latest goes last.
//!
//! # Errors and retries
//! 404 is `NotFound`; 401 and 403 are `PermissionDenied` (the broker's
//! credentials, reported as the backend's problem); 429, 5xx and dropped
//! connections are retried with backoff and full jitter, then
//! `Unavailable`; a missed deadline is `Timeout` (see `client`).
//! Messages quote Key Vault's error code and message, never a value.
//!
//! # Key Vault's limits
//! Key Vault stores values of at most 25,600 characters (a longer one is
//! refused as `TooLarge`): with this backend, keep `secret.max-value-size`
//! at 25,600 bytes for text, or 19,200 for binary values, which grow by a
//! third in base64. It allows 15 tags per secret.

mod client;
mod error;
pub mod names;
mod value;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use azure_security_keyvault_secrets::{
    models::{
        ListSecretPropertiesResult, Secret as KvSecret, SecretClientGetSecretOptions,
        SecretClientListSecretPropertiesOptions, SecretClientListSecretPropertiesVersionsOptions, SecretProperties,
        SetSecretParameters,
    },
    ResourceExt, SecretClient, SecretClientOptions,
};
use futures::{stream, StreamExt, TryStreamExt};
use secretd_core::CredentialSource;
use secretd_core::{
    Capabilities, ErrorKind, Key, Namespace, Page, PageRequest, RetryPolicy, ScanSelection, Secret, SecretMetadata,
    SecretName, SecretStore, SecretValue, StoreError, Tags, Tenant, Version,
};

/// The Azure SDK's core crate, for implementing [`TokenCredential`].
pub use azure_core;
pub use azure_core::credentials::{AccessToken, TokenCredential};
pub use names::NamePrefix;

/// How secretd authenticates to Key Vault (to Entra ID, which issues the
/// bearer tokens Key Vault takes).
#[derive(Clone)]
#[non_exhaustive]
pub enum AzureCredential {
    /// A service principal's client secret, as the platform's
    /// `client-secret` block (`tenant-id`, `client-id`, `client-secret`).
    ClientSecret { tenant_id: String, client_id: String, client_secret: CredentialSource },
    /// The managed identity of the VM, App Service or container: the
    /// system-assigned one, or the user-assigned one with this client id.
    ManagedIdentity { client_id: Option<String> },
    /// Workload identity federation (AKS): a service account token file
    /// exchanged for an Entra ID token. `None` fields come from
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity { tenant_id: Option<String>, client_id: Option<String>, token_file: Option<PathBuf> },
    /// The default chain, decided at start from the environment: a client
    /// secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`),
    /// else workload identity (`AZURE_FEDERATED_TOKEN_FILE`), else managed
    /// identity (user-assigned if `AZURE_CLIENT_ID` is set).
    Default,
    /// Any credential: tests, or a caller that builds its own.
    Token(Arc<dyn TokenCredential>),
}

impl std::fmt::Debug for AzureCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AzureCredential::ClientSecret { tenant_id, client_id, .. } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            AzureCredential::ManagedIdentity { client_id } => {
                f.debug_struct("ManagedIdentity").field("client_id", client_id).finish()
            }
            AzureCredential::WorkloadIdentity { tenant_id, client_id, token_file } => f
                .debug_struct("WorkloadIdentity")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish(),
            AzureCredential::Default => f.write_str("Default"),
            AzureCredential::Token(_) => f.write_str("Token(..)"),
        }
    }
}

/// What [`AzureStore::connect`] needs.
#[derive(Clone)]
#[non_exhaustive]
pub struct AzureOptions {
    /// The vault's URL, `https://<vault-name>.vault.azure.net/` (see
    /// [`vault_url_for_name`]).
    pub vault_url: String,
    pub credential: AzureCredential,
    /// Entra ID's authority host for the client-secret and workload
    /// identity credentials; `None` for the public cloud (or
    /// `AZURE_AUTHORITY_HOST`). Sovereign clouds, and the test server.
    pub authority_host: Option<String>,
    /// Extra CA certificates (PEM) to trust besides the platform's roots:
    /// a TLS-inspecting proxy's, or the test server's.
    pub ca_certificate_pem: Option<Vec<u8>>,
    /// The SDK checks that the resource named in Key Vault's authentication
    /// challenge is the vault's domain (`*.vault.azure.net`), so that a
    /// look-alike host cannot obtain a token for Key Vault. Keep it on;
    /// turn it off only for a vault reached under another name (a private
    /// endpoint's custom domain, a test server on `localhost`).
    pub verify_challenge_resource: bool,
    /// Pins host names to addresses, like curl's `--resolve`: a private
    /// endpoint without DNS, or a test server posing as
    /// `<name>.vault.azure.net` with the challenge check left on.
    pub resolve: Vec<(String, SocketAddr)>,
    /// The start of every secret name secretd writes (`secretd-`).
    pub name_prefix: NamePrefix,
    /// Purge a secret right after deleting it, instead of leaving it
    /// recoverable for the vault's retention period. Needs the purge
    /// permission and a vault without purge protection.
    pub purge_on_delete: bool,
    /// The deadline of each HTTP attempt.
    pub timeout: Duration,
    /// Tries and backoff for 408, 429, 5xx and dropped connections.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for AzureOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureOptions")
            .field("vault_url", &self.vault_url)
            .field("credential", &self.credential)
            .field("authority_host", &self.authority_host)
            .field("ca_certificate_pem", &self.ca_certificate_pem.as_ref().map(|pem| format!("<{} bytes>", pem.len())))
            .field("verify_challenge_resource", &self.verify_challenge_resource)
            .field("resolve", &self.resolve)
            .field("name_prefix", &self.name_prefix)
            .field("purge_on_delete", &self.purge_on_delete)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

impl AzureOptions {
    pub fn new(vault_url: impl Into<String>, credential: AzureCredential) -> Self {
        Self {
            vault_url: vault_url.into(),
            credential,
            authority_host: None,
            ca_certificate_pem: None,
            verify_challenge_resource: true,
            resolve: Vec::new(),
            name_prefix: NamePrefix::default(),
            purge_on_delete: false,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// The URL of the vault named `name` in Azure's public cloud.
pub fn vault_url_for_name(name: &str) -> Result<String, StoreError> {
    let valid = (3..=24).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.ends_with('-')
        && !name.contains("--")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid {
        return Err(StoreError::invalid_name(format!(
            "vault name {name:?}: 3 to 24 letters, digits and single dashes, starting with a letter"
        )));
    }
    Ok(format!("https://{}.vault.azure.net/", name.to_ascii_lowercase()))
}

/// Key Vault's page size for listing secrets (its maximum).
const LIST_PAGE: i32 = 25;
/// How many latest versions a list reads at once.
const LIST_READS_IN_FLIGHT: usize = 8;
/// How long a put waits for Key Vault to finish purging (or recovering) a
/// soft-deleted secret of the same name, and a delete for it to finish
/// deleting before the purge.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct AzureStore {
    client: SecretClient,
    vault_url: String,
    prefix: NamePrefix,
    purge_on_delete: bool,
    /// Set once one request has been through Key Vault's authentication
    /// challenge; see [`AzureStore::challenged`].
    challenged: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureStore")
            .field("vault_url", &self.vault_url)
            .field("prefix", &self.prefix)
            .field("purge_on_delete", &self.purge_on_delete)
            .finish_non_exhaustive()
    }
}

/// What the store keeps of a version it read.
struct Read {
    version: Version,
    tags: Tags,
    created: SystemTime,
    updated: SystemTime,
    /// The secret's first-write time, in Unix seconds, for the next put.
    created_unix: Option<i64>,
    value: Option<SecretValue>,
}

impl AzureStore {
    /// Builds the client and the credential; nothing is sent until the
    /// first call (see [`SecretStore::health`]).
    pub async fn connect(options: AzureOptions) -> Result<Self, StoreError> {
        let vault_url = check_vault_url(&options.vault_url)?;
        let http = client::http_client(&options)?;
        let retry = options.retry;
        let authority = options.authority_host.clone();
        let make_options = || client::client_options(&http, retry, authority.as_deref());
        let credential = client::credential(&options.credential, make_options)?;
        let client_options = SecretClientOptions {
            client_options: make_options()?,
            verify_challenge_resource: Some(options.verify_challenge_resource),
            ..Default::default()
        };
        let client = SecretClient::new(&vault_url, credential, Some(client_options)).map_err(|e| {
            StoreError::invalid_name(format!("vault-url {vault_url:?} is not usable: {e}")).with_source(e)
        })?;
        Ok(Self {
            client,
            vault_url,
            prefix: options.name_prefix,
            purge_on_delete: options.purge_on_delete,
            challenged: tokio::sync::OnceCell::new(),
        })
    }

    /// One version (the latest, or a pinned one), with or without its value.
    async fn read(
        &self,
        name: &SecretName,
        azure: &str,
        version: Option<&Version>,
        with_value: bool,
    ) -> Result<Read, StoreError> {
        if let Some(v) = version {
            if !names::is_version_id(v.as_str()) {
                return Err(version_not_found(name, v));
            }
        }
        let options = SecretClientGetSecretOptions {
            secret_version: version.map(|v| v.as_str().to_owned()),
            ..Default::default()
        };
        let what = || format!("reading {name}");
        let secret: KvSecret = self
            .client
            .get_secret(azure, Some(options))
            .await
            .map_err(|e| not_found_as(error::map(e, &what()), name, version))?
            .into_model()
            .map_err(|e| error::map(e, &what()))?;
        let read = describe(name, secret, with_value)?;
        if let Some(v) = version {
            // Key Vault treats version ids without regard to case; secretd
            // answers only for the id as Key Vault spells it.
            if &read.version != v {
                return Err(version_not_found(name, v));
            }
        }
        Ok(read)
    }

    /// Writes a new version. The raw SDK error is kept so the caller can
    /// tell a soft-deleted name (409) apart.
    async fn set(
        &self,
        azure: &str,
        value: &SecretValue,
        tags: &Tags,
        created_unix: Option<i64>,
    ) -> Result<KvSecret, azure_core::Error> {
        let (stored, content_type) = value::encode(value, created_unix);
        let written = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        let content_type = value::with_written(content_type, written);
        let parameters = SetSecretParameters {
            value: Some(stored.to_string()),
            content_type: Some(content_type),
            tags: (!tags.is_empty()).then(|| tags.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()),
            ..Default::default()
        };
        let body = parameters.try_into()?;
        self.client.set_secret(azure, body, None).await?.into_model()
    }

    /// Makes a soft-deleted name free for a new secret: purges it, or
    /// recovers it where purging is refused (see the crate docs).
    async fn clear_deleted(&self, name: &SecretName, azure: &str) -> Result<(), StoreError> {
        match self.purge(name, azure).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                tracing::warn!(
                    secret = %name,
                    "Key Vault refused to purge the soft-deleted secret ({e}); recovering it to write the new \
                     version on top (its old versions become readable by id again)"
                );
                let what = format!("recovering the soft-deleted {name}");
                settle(&what, || async {
                    match self.client.recover_deleted_secret(azure, None).await {
                        Ok(_) => Ok(Settled::Done),
                        Err(e) => settled_on(e, &what),
                    }
                })
                .await
                .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Purges a soft-deleted secret, waiting while Key Vault is still
    /// deleting it; a name that is not (or no longer) deleted is fine.
    async fn purge(&self, name: &SecretName, azure: &str) -> Result<(), StoreError> {
        let what = format!("purging the deleted {name}");
        settle(&what, || async {
            match self.client.purge_deleted_secret(azure, None).await {
                Ok(_) => Ok(Settled::Done),
                Err(e) => settled_on(e, &what),
            }
        })
        .await
        .map(|_| ())
    }

    /// The names of one namespace's secrets after `after`, in key order,
    /// whose latest version carries every tag of `filter` (as the listing
    /// shows them).
    async fn list_names(
        &self,
        tenant: &Tenant,
        namespace: &Namespace,
        filter: &Tags,
        after: Option<&Key>,
    ) -> Result<Vec<(Key, SecretName, String)>, StoreError> {
        let what = format!("listing {tenant}/{namespace}");
        let options = SecretClientListSecretPropertiesOptions { maxresults: Some(LIST_PAGE), ..Default::default() };
        let mut pages =
            self.client.list_secret_properties(Some(options)).map_err(|e| error::map(e, &what))?.into_pages();
        let mut found = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(|e| error::map(e, &what))? {
            let page: ListSecretPropertiesResult = page.into_model().map_err(|e| error::map(e, &what))?;
            for item in page.value {
                if let Some(hit) = self.listed(item, tenant, namespace, filter, after) {
                    found.push(hit);
                }
            }
        }
        found.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        found.dedup_by(|a, b| a.0 == b.0);
        Ok(found)
    }

    /// A listed secret, if it is one of ours in this namespace and page.
    fn listed(
        &self,
        item: SecretProperties,
        tenant: &Tenant,
        namespace: &Namespace,
        filter: &Tags,
        after: Option<&Key>,
    ) -> Option<(Key, SecretName, String)> {
        if item.managed == Some(true) || item.attributes.as_ref().and_then(|a| a.enabled) == Some(false) {
            return None;
        }
        let azure = item.resource_id().ok()?.name;
        let name = self.prefix.parse_secret_name(&azure)?;
        if &name.tenant != tenant || &name.namespace != namespace {
            return None;
        }
        if after.is_some_and(|a| name.key.as_str() <= a.as_str()) {
            return None;
        }
        let tags: Tags = item.tags.unwrap_or_default().into_iter().collect();
        if !tags.contains_all(filter) {
            return None;
        }
        Some((name.key.clone(), name, azure))
    }
}

#[async_trait]
impl SecretStore for AzureStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities { versions: true, tags: true, tags_per_version: true, list: true, read_only: false }
    }

    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        self.challenged().await?;
        let azure = self.prefix.secret_name(name)?;
        let read = self.read(name, &azure, version, true).await?;
        let value =
            read.value.ok_or_else(|| StoreError::corrupt(format!("Key Vault returned {name} without a value")))?;
        Ok(Secret {
            metadata: SecretMetadata {
                name: name.clone(),
                version: read.version,
                tags: read.tags,
                created_at: read.created,
                updated_at: read.updated,
            },
            value,
        })
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        _description: Option<&str>,
    ) -> Result<Version, StoreError> {
        self.challenged().await?;
        let azure = self.prefix.secret_name(name)?;
        // The secret's first-write time, carried into the new version.
        let created_unix = match self.read(name, &azure, None, false).await {
            Ok(current) => current.created_unix,
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let what = format!("writing {name}");
        let written = match self.set(&azure, value, tags, created_unix).await {
            Ok(written) => written,
            // A soft-deleted secret holds the name (see the crate docs).
            Err(e) if error::service_error(&e).is_some_and(|s| s.status == 409) => {
                tracing::debug!(secret = %name, "the name is soft-deleted in Key Vault; clearing it for a fresh secret");
                self.clear_deleted(name, &azure).await?;
                settle(&what, || async {
                    match self.set(&azure, value, tags, None).await {
                        Ok(written) => Ok(Settled::Value(Box::new(written))),
                        // Key Vault is still purging or recovering.
                        Err(e) if error::service_error(&e).is_some_and(|s| s.status == 409) => Ok(Settled::Again),
                        Err(e) => Err(error::map(e, &what)),
                    }
                })
                .await
                .and_then(|s| s.into_value(&what))?
            }
            Err(e) => return Err(error::map(e, &what)),
        };
        Ok(describe(name, written, false)?.version)
    }

    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        self.challenged().await?;
        let azure = self.prefix.secret_name(name)?;
        self.client
            .delete_secret(&azure, None)
            .await
            .map_err(|e| not_found_as(error::map(e, &format!("deleting {name}")), name, None))?;
        if self.purge_on_delete {
            // The secret is gone for secretd either way: a purge that fails
            // leaves it recoverable in the vault, and a later put purges it.
            if let Err(e) = self.purge(name, &azure).await {
                tracing::warn!(secret = %name, "deleted, but Key Vault did not purge it: {e}");
            }
        }
        Ok(())
    }

    async fn list(
        &self,
        tenant: &Tenant,
        namespace: &Namespace,
        filter: &Tags,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.challenged().await?;
        let after = page.token.as_deref().map(secretd_core::key_after_token).transpose()?;
        let size = page.size.max(1);
        let mut candidates = self.list_names(tenant, namespace, filter, after.as_ref()).await?;
        let more = candidates.len() > size;
        candidates.truncate(size);
        // The next page starts after this page's last name, whatever became
        // of that secret while the page was read.
        let next_token =
            if more { candidates.last().map(|(key, _, _)| secretd_core::key_page_token(key)) } else { None };
        let reads = stream::iter(candidates)
            .map(|(_, name, azure)| async move {
                let read = self.read(&name, &azure, None, false).await;
                (name, read)
            })
            .buffered(LIST_READS_IN_FLIGHT);
        let mut reads = std::pin::pin!(reads);
        let mut items = Vec::new();
        while let Some((name, read)) = reads.next().await {
            match read {
                // Deleted or disabled since the listing: not there.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
                // The listing's tags may be older than the latest version's.
                Ok(read) if !read.tags.contains_all(filter) => continue,
                Ok(read) => items.push(SecretMetadata {
                    name,
                    version: read.version,
                    tags: read.tags,
                    created_at: read.created,
                    updated_at: read.updated,
                }),
            }
        }
        Ok(Page { items, next_token })
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.challenged().await?;
        self.list_one().await
    }

    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        if let Some(token) = &page.token {
            secretd_core::name_after_token(token)?;
        }
        self.challenged().await?;
        let what = "scanning the secrets";
        let options = SecretClientListSecretPropertiesOptions { maxresults: Some(LIST_PAGE), ..Default::default() };
        let mut pages =
            self.client.list_secret_properties(Some(options)).map_err(|e| error::map(e, what))?.into_pages();
        let mut found = std::collections::HashMap::new();
        while let Some(listed) = pages.try_next().await.map_err(|e| error::map(e, what))? {
            let listed: ListSecretPropertiesResult = listed.into_model().map_err(|e| error::map(e, what))?;
            for item in listed.value {
                if item.managed == Some(true) || item.attributes.as_ref().and_then(|a| a.enabled) == Some(false) {
                    continue;
                }
                let Ok(id) = item.resource_id() else { continue };
                if let Some(name) = self.prefix.parse_secret_name(&id.name).filter(|n| selection.admits(n)) {
                    found.insert(name, id.name);
                }
            }
        }
        let names = found.keys().cloned().collect();
        let found = &found;
        secretd_core::page_of_names(names, page, LIST_READS_IN_FLIGHT, |name| async move {
            let Some(azure) = found.get(&name) else { return Ok(None) };
            match self.read(&name, azure, None, false).await {
                Ok(read) => Ok(Some(SecretMetadata {
                    name,
                    version: read.version,
                    tags: read.tags,
                    created_at: read.created,
                    updated_at: read.updated,
                })),
                // Deleted or disabled since the listing: not there.
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        self.challenged().await?;
        let azure = self.prefix.secret_name(name)?;
        let latest = self.read(name, &azure, None, false).await?.version;
        let what = format!("listing the versions of {name}");
        let options =
            SecretClientListSecretPropertiesVersionsOptions { maxresults: Some(LIST_PAGE), ..Default::default() };
        let mut pages = self
            .client
            .list_secret_properties_versions(&azure, Some(options))
            .map_err(|e| not_found_as(error::map(e, &what), name, None))?
            .into_pages();
        let mut listed = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(|e| not_found_as(error::map(e, &what), name, None))? {
            let page: ListSecretPropertiesResult = page.into_model().map_err(|e| error::map(e, &what))?;
            for item in page.value {
                let attributes = item.attributes.clone().unwrap_or_default();
                if attributes.enabled == Some(false) {
                    continue;
                }
                let Some(version) = item.resource_id().ok().and_then(|id| id.version).filter(|v| !v.is_empty()) else {
                    continue;
                };
                let created = attributes.created.or(attributes.updated).map(|t| t.unix_timestamp()).unwrap_or(0);
                let written = value::written(item.content_type.as_deref());
                listed.push(((created, written, version == latest.as_str()), version));
            }
        }
        // Key Vault's second first: the writers' clocks only order the
        // versions within one. A stable sort keeps the server's order for
        // the rest.
        listed.sort_by_key(|(order, _)| *order);
        Ok(listed.into_iter().map(|(_, version)| Version(version)).collect())
    }
}

impl AzureStore {
    /// The SDK answers a new client's first requests with Key Vault's
    /// bearer challenge, and when several first requests meet their
    /// challenges at once, one can clear the token another has just
    /// fetched (azure_core 1.1's bearer-token policy), which fails that
    /// request with "an error while fetching the access token". So the
    /// first request goes alone: callers wait for it, then all carry the
    /// token. A failed first request is not remembered; the next caller
    /// tries again.
    async fn challenged(&self) -> Result<(), StoreError> {
        self.challenged.get_or_try_init(|| self.list_one()).await.map(|_| ())
    }

    /// The cheapest authenticated call: one secret's properties.
    async fn list_one(&self) -> Result<(), StoreError> {
        let options = SecretClientListSecretPropertiesOptions { maxresults: Some(1), ..Default::default() };
        let what = "checking health (listing one secret)";
        let mut pages =
            self.client.list_secret_properties(Some(options)).map_err(|e| error::map(e, what))?.into_pages();
        pages.try_next().await.map_err(|e| error::map(e, what))?;
        Ok(())
    }
}

/// The vault URL, checked: https with a host and nothing else.
fn check_vault_url(raw: &str) -> Result<String, StoreError> {
    let bad = |why: &str| StoreError::invalid_name(format!("vault-url {raw:?}: {why}"));
    let url = url::Url::parse(raw).map_err(|_| bad("not a URL"))?;
    if url.scheme() != "https" {
        return Err(bad("must be https:// (Key Vault takes bearer tokens over TLS only)"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad("must be the vault's base URL, like https://my-vault.vault.azure.net/"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// What secretd keeps of a Key Vault secret it read.
fn describe(name: &SecretName, secret: KvSecret, with_value: bool) -> Result<Read, StoreError> {
    let id = secret
        .resource_id()
        .map_err(|_| StoreError::corrupt(format!("Key Vault returned {name} without a usable id")))?;
    let version = id
        .version
        .filter(|v| !v.is_empty())
        .ok_or_else(|| StoreError::corrupt(format!("Key Vault returned {name} without a version")))?;
    let attributes = secret.attributes.unwrap_or_default();
    let own_created = attributes.created.or(attributes.updated).map(|t| t.unix_timestamp());
    let created_unix = value::created(secret.content_type.as_deref()).or(own_created);
    let updated = attributes.updated.or(attributes.created).map(SystemTime::from).unwrap_or(UNIX_EPOCH);
    let value = match (with_value, secret.value) {
        (true, Some(stored)) => Some(value::decode(stored, secret.content_type.as_deref())?),
        _ => None,
    };
    Ok(Read {
        version: Version(version),
        tags: secret.tags.unwrap_or_default().into_iter().collect(),
        created: created_unix.map(unix_time).unwrap_or(updated),
        updated,
        created_unix,
        value,
    })
}

fn unix_time(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

fn version_not_found(name: &SecretName, version: &Version) -> StoreError {
    StoreError::new(ErrorKind::NotFound, format!("secret {name} has no version {version}"))
}

/// Key Vault's 404 in secretd's words (the server's message names the
/// encoded name, which means nothing to the caller).
fn not_found_as(e: StoreError, name: &SecretName, version: Option<&Version>) -> StoreError {
    match (e.kind(), version) {
        (ErrorKind::NotFound, Some(v)) => version_not_found(name, v),
        (ErrorKind::NotFound, None) => StoreError::not_found(name),
        _ => e,
    }
}

/// The outcome of one try of a call that waits for Key Vault to finish
/// something asynchronous.
enum Settled {
    Done,
    Value(Box<KvSecret>),
    Again,
}

impl Settled {
    fn into_value(self, what: &str) -> Result<KvSecret, StoreError> {
        match self {
            Settled::Value(v) => Ok(*v),
            _ => Err(StoreError::internal(format!("no answer while {what}"))),
        }
    }
}

/// 409: Key Vault is still busy with the name (deleting, purging,
/// recovering): try again. 404: nothing (left) to do.
fn settled_on(e: azure_core::Error, what: &str) -> Result<Settled, StoreError> {
    match error::service_error(&e).map(|s| s.status) {
        Some(409) => Ok(Settled::Again),
        Some(404) => Ok(Settled::Done),
        _ => Err(error::map(e, what)),
    }
}

/// Repeats `op` while it answers [`Settled::Again`], pausing a little
/// longer each time, for at most [`SETTLE_TIMEOUT`].
async fn settle<F, Fut>(what: &str, mut op: F) -> Result<Settled, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Settled, StoreError>>,
{
    let pauses =
        RetryPolicy { attempts: u32::MAX, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(2) };
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    let mut attempt = 1;
    loop {
        match op().await? {
            Settled::Again if tokio::time::Instant::now() < deadline => {
                // At least a short pause: full jitter may draw zero.
                tokio::time::sleep(pauses.backoff(attempt).max(Duration::from_millis(20))).await;
                attempt += 1;
            }
            Settled::Again => {
                return Err(StoreError::unavailable(format!(
                    "Key Vault was still busy with the name after {}s while {what}",
                    SETTLE_TIMEOUT.as_secs()
                )))
            }
            done => return Ok(done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_urls_are_checked() {
        assert_eq!(check_vault_url("https://my-vault.vault.azure.net/").unwrap(), "https://my-vault.vault.azure.net");
        assert_eq!(check_vault_url("https://localhost:8443").unwrap(), "https://localhost:8443");
        for bad in [
            "http://my-vault.vault.azure.net/",
            "my-vault",
            "https://my-vault.vault.azure.net/secrets",
            "https://my-vault.vault.azure.net/?x=1",
            "https://user@my-vault.vault.azure.net/",
        ] {
            assert_eq!(check_vault_url(bad).unwrap_err().kind(), ErrorKind::InvalidName, "{bad}");
        }
        assert_eq!(vault_url_for_name("My-Vault1").unwrap(), "https://my-vault1.vault.azure.net/");
        for bad in ["ab", "1vault", "vault-", "a--b", "a_b", &"a".repeat(25)] {
            assert!(vault_url_for_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_client_secret() {
        let options = AzureOptions::new(
            "https://v.vault.azure.net/",
            AzureCredential::ClientSecret {
                tenant_id: "tenant".into(),
                client_id: "client".into(),
                client_secret: "hunter2-client-secret".into(),
            },
        );
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("client"), "{shown}");
    }
}
