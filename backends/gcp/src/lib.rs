//! The Google Secret Manager store (`secret.type: google-secret-manager`),
//! with Google's `google-cloud-secretmanager-v1` client over REST.
//!
//! # Mapping
//! - A secret is the Secret Manager secret
//!   `projects/<project>/secrets/<name-prefix>_-<tenant>_-<namespace>_-<key>`,
//!   escaped into the secret id alphabet (see [`names`]).
//! - Versions are Secret Manager's versions, numbered `1`, `2`, ... by
//!   the server. A pinned read takes the canonical number only: `latest`,
//!   aliases and lookalikes such as `01` are `NotFound` without asking.
//! - The value is the version's payload: bytes, so any value round-trips.
//!   Secret Manager holds at most 64 KiB per version.
//! - Tags are the secret's labels, escaped into the label alphabet (see
//!   [`labels`]). They belong to the secret, not to a version
//!   ([`Capabilities::tags_per_version`] is false): every version reads
//!   with the secret's current tags.
//! - Delete deletes the secret with all its versions, at once (Secret
//!   Manager has no recovery window); a later put creates it afresh.
//!
//! # Writes
//! A put adds a version to the secret, creating the secret first if it is
//! missing (with its labels and replication; a concurrent creator's
//! `ALREADY_EXISTS` is fine), and then sets the labels. Secret Manager has
//! no call for both, so the value goes first and the tags second, as in the
//! other stores whose tags belong to the secret: a failure in between
//! leaves the new value under the secret's previous tags (a new secret was
//! created with its own), the put reports it, and repeating it repairs it.
//! A secret created but never given a version reads as missing. The
//! server numbers versions, so concurrent puts all succeed with distinct
//! versions. Secrets have no description field, so a put's description is
//! not stored.
//!
//! # Reads
//! A read asks for the value, the secret (labels, creation time) and the
//! version (its creation time) at once. A version that another tool
//! disabled or destroyed reads as missing; on Google, `latest` is the newest
//! version even when it is disabled, so such a secret reads as missing
//! until a put adds a new version.
//!
//! # Lists
//! Secret Manager cannot list by name prefix exactly, so a listing pages
//! through the project's secrets, narrowed on the server by a label filter
//! where the tags allow one ([`labels::server_filter`]), and keeps exactly
//! the secrets of the namespace whose tags match, checked on the client:
//! a server that filters loosely, or not at all (drongo), changes the cost
//! and never the result. The page's secrets then get their latest version
//! (one call each, a few at a time). Page tokens are the last key of the
//! previous page, base64url.
//!
//! # Scans and versions
//! A scan pages through the project's secrets as a listing does, keeps
//! the ones whose id this prefix wrote for a name of the selection, and
//! reads the latest version of a page's worth of them in name order. A
//! secret's versions are its enabled versions, by number.
//!
//! # Errors and retries
//! Throttling, unavailability, 5xx and timeouts are retried with
//! exponential backoff and full jitter ([`secretd_core::retry`], three tries
//! by default; the client's own retries are off). A retried version write
//! whose first try did land leaves one extra version with the same value.
//! The `error` module maps status codes to error kinds.

mod error;
pub mod labels;
pub mod names;
mod options;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use futures::{stream, StreamExt, TryStreamExt};
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_secretmanager_v1::{
    client::SecretManagerService,
    model::{self, replication, SecretPayload},
};
use google_cloud_wkt::{FieldMask, Timestamp};
use secretd_core::{
    Capabilities, ErrorKind, Namespace, Page, PageRequest, RetryPolicy, ScanSelection, Secret, SecretMetadata,
    SecretName, SecretStore, SecretValue, StoreError, Tags, Tenant, Version,
};

pub use names::NamePrefix;
pub use options::{GcpCredentials, GcpOptions, Replication};

/// Secret Manager's largest payload per version.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Secrets asked for per list page; the server may answer fewer.
const LIST_PAGE_SIZE: i32 = 250;

/// Latest-version look-ups a listing makes at once.
const LIST_CONCURRENCY: usize = 8;

pub struct GcpStore {
    client: SecretManagerService,
    project: String,
    prefix: NamePrefix,
    replication: Replication,
    retry: RetryPolicy,
}

impl std::fmt::Debug for GcpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpStore")
            .field("project", &self.project)
            .field("prefix", &self.prefix)
            .field("replication", &self.replication)
            .finish_non_exhaustive()
    }
}

/// A secret's metadata and the version being read.
struct Read {
    secret: model::Secret,
    version: model::SecretVersion,
}

impl GcpStore {
    /// Checks the options and builds the client; nothing is sent until the
    /// first call (access tokens are fetched then).
    pub async fn connect(options: GcpOptions) -> Result<Self, StoreError> {
        // The client is built without a bundled crypto provider (the
        // default would be aws-lc); ring is the one the rest of the daemon
        // uses, and the token signer needs it installed. A second install
        // is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        options.validate()?;
        let credentials = options::build_credentials(&options.credentials).await?;
        let mut builder = SecretManagerService::builder()
            .with_credentials(credentials)
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(options.timeout);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
        }
        let client = builder.build().await.map_err(|e| {
            let kind = if e.is_default_credentials() { ErrorKind::PermissionDenied } else { ErrorKind::InvalidName };
            StoreError::new(kind, format!("cannot build the Secret Manager client: {e}"))
        })?;
        Ok(Self {
            client,
            project: options.project,
            prefix: options.name_prefix,
            replication: options.replication,
            retry: options.retry,
        })
    }

    fn parent(&self) -> String {
        format!("projects/{}", self.project)
    }

    fn secret_path(&self, id: &str) -> String {
        format!("projects/{}/secrets/{id}", self.project)
    }

    /// One call with the store's retries; `what` names it in errors.
    async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = google_cloud_secretmanager_v1::Result<T>>,
    {
        secretd_core::retry(self.retry, || async { op().await.map_err(|e| error::map(e, what)) }).await
    }

    /// The latest version of a listed secret; `None` when it has none (it
    /// is being created, or was deleted meanwhile).
    async fn latest(&self, path: String, what: &str) -> Result<Option<model::SecretVersion>, StoreError> {
        match self.get_version(&path, what).await {
            Ok(version) => Ok(Some(version)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get_version(&self, path: &str, what: &str) -> Result<model::SecretVersion, StoreError> {
        self.call(what, || self.client.get_secret_version().set_name(path).send()).await
    }

    /// The secret and one of its versions (`selector` is a number or
    /// `latest`) with its payload.
    async fn read(&self, name: &SecretName, selector: &str) -> Result<(Read, SecretPayload), StoreError> {
        let secret_path = self.secret_path(&self.prefix.secret_id(name)?);
        let version_path = format!("{secret_path}/versions/{selector}");
        let what = format!("reading {name}");
        let access = async {
            secretd_core::retry(self.retry, || async {
                match self.client.access_secret_version().set_name(&version_path).send().await {
                    // A disabled or destroyed version (set by another tool)
                    // has no value to read.
                    Err(e) if error::is_failed_precondition(&e) => Err(StoreError::new(
                        ErrorKind::NotFound,
                        format!("secret {name} has no readable version {selector}"),
                    )),
                    other => other.map_err(|e| error::map(e, &what)),
                }
            })
            .await
        };
        let secret = self.call(&what, || self.client.get_secret().set_name(&secret_path).send());
        let version = self.get_version(&version_path, &what);
        // One round trip for the three calls.
        let (access, secret, version) = tokio::join!(access, secret, version);
        let access = access?;
        let secret = secret?;
        let number = names::version_of(&access.name)
            .ok_or_else(|| StoreError::internal(format!("Secret Manager named no version number reading {name}")))?;
        // `latest` may have moved between the calls: describe the version
        // whose value was read.
        let version = match version {
            Ok(v) if names::version_of(&v.name) == Some(number) => v,
            _ => self.get_version(&format!("{secret_path}/versions/{number}"), &what).await?,
        };
        let payload = access
            .payload
            .ok_or_else(|| StoreError::corrupt(format!("Secret Manager returned no value for {name}")))?;
        Ok((Read { secret, version }, payload))
    }

    /// Adds a version; `NotFound` when the secret is missing.
    async fn add_version(&self, name: &SecretName, path: &str, value: &SecretValue) -> Result<u64, StoreError> {
        let what = format!("writing {name}");
        let added = self
            .call(&what, || {
                let payload = SecretPayload::new().set_data(bytes::Bytes::copy_from_slice(value.expose()));
                self.client.add_secret_version().set_parent(path).set_payload(payload).send()
            })
            .await?;
        names::version_of(&added.name)
            .ok_or_else(|| StoreError::internal(format!("Secret Manager named no version number writing {name}")))
    }

    async fn create(&self, name: &SecretName, id: &str, labels: &HashMap<String, String>) -> Result<(), StoreError> {
        let replication = match &self.replication {
            Replication::Automatic => model::Replication::new().set_automatic(replication::Automatic::new()),
            Replication::UserManaged(locations) => model::Replication::new().set_user_managed(
                replication::UserManaged::new()
                    .set_replicas(locations.iter().map(|l| replication::user_managed::Replica::new().set_location(l))),
            ),
        };
        let secret = model::Secret::new().set_replication(replication).set_labels(labels.clone());
        let created = self
            .call(&format!("creating {name}"), || {
                self.client
                    .create_secret()
                    .set_parent(self.parent())
                    .set_secret_id(id)
                    .set_secret(secret.clone())
                    .send()
            })
            .await;
        match created {
            // Another writer created it first: add to theirs.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Sets the secret's labels to exactly `labels`.
    async fn set_labels(
        &self,
        name: &SecretName,
        path: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), StoreError> {
        let secret = model::Secret::new().set_name(path).set_labels(labels.clone());
        let mask = FieldMask::default().set_paths(["labels"]);
        self.call(&format!("tagging {name}"), || {
            self.client.update_secret().set_secret(secret.clone()).set_update_mask(mask.clone()).send()
        })
        .await?;
        Ok(())
    }

    /// Every secret of the project that the server lets through `filter`,
    /// following its pages.
    async fn list_all(&self, filter: Option<&str>, what: &str) -> Result<Vec<model::Secret>, StoreError> {
        let mut secrets = Vec::new();
        let mut token = String::new();
        let mut seen = HashSet::new();
        loop {
            let page = self
                .call(what, || {
                    let mut request = self
                        .client
                        .list_secrets()
                        .set_parent(self.parent())
                        .set_page_size(LIST_PAGE_SIZE)
                        .set_page_token(token.clone());
                    if let Some(filter) = filter {
                        request = request.set_filter(filter);
                    }
                    request.send()
                })
                .await?;
            secrets.extend(page.secrets);
            if page.next_page_token.is_empty() {
                return Ok(secrets);
            }
            // A server that hands out the same token twice would loop for
            // ever.
            if !seen.insert(page.next_page_token.clone()) {
                return Err(StoreError::internal(format!("Secret Manager repeated a page token while {what}")));
            }
            token = page.next_page_token;
        }
    }
}

fn time(ts: Option<&Timestamp>) -> SystemTime {
    let Some(ts) = ts else { return SystemTime::UNIX_EPOCH };
    let (Ok(secs), Ok(nanos)) = (u64::try_from(ts.seconds()), u32::try_from(ts.nanos())) else {
        return SystemTime::UNIX_EPOCH;
    };
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos)).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn metadata(name: SecretName, read: &Read, number: u64) -> SecretMetadata {
    SecretMetadata {
        name,
        version: Version(number.to_string()),
        tags: labels::decode(&read.secret.labels),
        created_at: time(read.secret.create_time.as_ref()),
        updated_at: time(read.version.create_time.as_ref()),
    }
}

#[async_trait]
impl SecretStore for GcpStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities { tags_per_version: false, ..Capabilities::FULL }
    }

    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        let selector = match version {
            None => "latest".to_owned(),
            Some(pinned) => match names::parse_version(pinned.as_str()) {
                Some(number) => number.to_string(),
                None => {
                    return Err(StoreError::new(ErrorKind::NotFound, format!("secret {name} has no version {pinned}")))
                }
            },
        };
        let (read, payload) = self.read(name, &selector).await?;
        let number = names::version_of(&read.version.name)
            .ok_or_else(|| StoreError::internal(format!("Secret Manager named no version number reading {name}")))?;
        Ok(Secret { metadata: metadata(name.clone(), &read, number), value: SecretValue::from_slice(&payload.data) })
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        _description: Option<&str>,
    ) -> Result<Version, StoreError> {
        tags.validate()?;
        if value.len() > MAX_PAYLOAD {
            return Err(StoreError::new(
                ErrorKind::TooLarge,
                format!(
                    "Secret Manager holds at most {MAX_PAYLOAD} bytes per version; the value of {name} has {}",
                    value.len()
                ),
            ));
        }
        // Everything that can be refused is refused before the first write.
        let labels = labels::encode(tags)?;
        let id = self.prefix.secret_id(name)?;
        let path = self.secret_path(&id);
        let number = match self.add_version(name, &path, value).await {
            Ok(number) => number,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.create(name, &id, &labels).await?;
                self.add_version(name, &path, value).await?
            }
            Err(e) => return Err(e),
        };
        // Always, even right after creating it: a concurrent creator may
        // have created it with its own tags.
        self.set_labels(name, &path, &labels).await.map_err(|e| {
            StoreError::new(e.kind(), format!("{e}; version {number} of {name} was written but its tags were not"))
        })?;
        Ok(Version(number.to_string()))
    }

    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        let path = self.secret_path(&self.prefix.secret_id(name)?);
        self.call(&format!("deleting {name}"), || self.client.delete_secret().set_name(&path).send()).await?;
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
        let what = format!("listing {tenant}/{namespace}");
        let server_filter = labels::server_filter(filter);
        let mut candidates: Vec<(secretd_core::Key, model::Secret)> = self
            .list_all(server_filter.as_deref(), &what)
            .await?
            .into_iter()
            .filter_map(|secret| {
                let key = names::key_in(&prefix, names::id_of(&secret.name)?)?;
                let admitted =
                    after.as_ref().is_none_or(|a| &key > a) && labels::decode(&secret.labels).contains_all(filter);
                admitted.then_some((key, secret))
            })
            .collect();
        candidates.sort_by(|a, b| a.0.cmp(&b.0));

        // The latest version of each, in key order, until the page is full.
        // A secret without one (being created, or deleted meanwhile) is
        // skipped: to a reader it does not exist.
        let size = page.size.max(1);
        let mut items = Vec::with_capacity(size.min(candidates.len()));
        let mut consumed = 0;
        let paths: Vec<String> =
            candidates.iter().map(|(_, secret)| format!("{}/versions/latest", secret.name)).collect();
        let mut lookups = stream::iter(paths).map(|path| self.latest(path, &what)).buffered(LIST_CONCURRENCY.min(size));
        while items.len() < size {
            let Some(version) = lookups.try_next().await? else { break };
            let Some((key, secret)) = candidates.get(consumed) else { break };
            consumed += 1;
            let Some(version) = version else { continue };
            let Some(number) = names::version_of(&version.name) else { continue };
            let read = Read { secret: secret.clone(), version };
            items.push(metadata(SecretName::new(tenant.clone(), namespace.clone(), key.clone()), &read, number));
        }
        drop(lookups);
        let next_token = match items.last() {
            Some(last) if consumed < candidates.len() => Some(secretd_core::key_page_token(&last.name.key)),
            _ => None,
        };
        Ok(Page { items, next_token })
    }

    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        if let Some(token) = &page.token {
            secretd_core::name_after_token(token)?;
        }
        let what = "scanning the secrets";
        let secrets: HashMap<SecretName, model::Secret> = self
            .list_all(None, what)
            .await?
            .into_iter()
            .filter_map(|secret| {
                let name = self.prefix.parse_id(names::id_of(&secret.name)?)?;
                selection.admits(&name).then_some((name, secret))
            })
            .collect();
        let names = secrets.keys().cloned().collect();
        let secrets = &secrets;
        secretd_core::page_of_names(names, page, LIST_CONCURRENCY, |name| async move {
            let Some(secret) = secrets.get(&name) else { return Ok(None) };
            // Without a version (being created, or deleted meanwhile) it
            // does not exist to a reader.
            let Some(version) = self.latest(format!("{}/versions/latest", secret.name), what).await? else {
                return Ok(None);
            };
            let Some(number) = names::version_of(&version.name) else { return Ok(None) };
            Ok(Some(metadata(name, &Read { secret: secret.clone(), version }, number)))
        })
        .await
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        let path = self.secret_path(&self.prefix.secret_id(name)?);
        let what = format!("listing the versions of {name}");
        let mut numbers = Vec::new();
        let mut token = String::new();
        let mut seen = HashSet::new();
        loop {
            let page = self
                .call(&what, || {
                    self.client
                        .list_secret_versions()
                        .set_parent(&path)
                        .set_page_size(LIST_PAGE_SIZE)
                        .set_page_token(token.clone())
                        .send()
                })
                .await?;
            numbers.extend(
                page.versions
                    .iter()
                    .filter(|v| v.state == model::secret_version::State::Enabled)
                    .filter_map(|v| names::version_of(&v.name)),
            );
            if page.next_page_token.is_empty() {
                break;
            }
            if !seen.insert(page.next_page_token.clone()) {
                return Err(StoreError::internal(format!("Secret Manager repeated a page token while {what}")));
            }
            token = page.next_page_token;
        }
        if numbers.is_empty() {
            // Created but never given a value: missing, as for `get`.
            return Err(StoreError::not_found(name));
        }
        numbers.sort_unstable();
        numbers.dedup();
        Ok(numbers.into_iter().map(|n| Version(n.to_string())).collect())
    }

    async fn health(&self) -> Result<(), StoreError> {
        // Cheap, authenticated and read-only: it proves the endpoint, the
        // credentials and the permission to list.
        self.call("checking Secret Manager's health", || {
            self.client.list_secrets().set_parent(self.parent()).set_page_size(1).send()
        })
        .await?;
        Ok(())
    }
}
