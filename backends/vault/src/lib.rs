//! The HashiCorp Vault store (`secret.type: vault`): secrets in a KV v2
//! engine, reached with vaultrs.
//!
//! # Mapping
//! - A secret is the KV v2 path `<path-prefix>/<tenant>/<namespace>/<key>`
//!   under `mount` (see [`names`]); its versions are KV v2's versions
//!   (`"1"`, `"2"`, ...).
//! - The value is the version's data: `{"value": "<text>"}` when it is UTF-8,
//!   `{"value_base64": "<base64>"}` when it is not. A secret written by
//!   another tool with other fields reads as the JSON of its whole data map.
//! - Tags are the secret's `custom_metadata`. They belong to the secret, not
//!   to one version, as in Vault itself ([`Capabilities::tags_per_version`]
//!   is false).
//! - Delete removes the metadata and every version. A latest version that
//!   another tool soft-deleted or destroyed reads as missing.
//! - A listing reads each listed secret's metadata (Vault's LIST returns
//!   names only), at most `LIST_CONCURRENCY` (16) at once, each asking the
//!   daemon's rate limit for its turn (`secretd_core::pacing`).
//! - A scan walks the folders (tenants, then namespaces, then keys) with
//!   one LIST each, paced the same way, and reads the metadata of a page's
//!   worth of the names found. Folders that are not a valid tenant or
//!   namespace were written by another tool and are not walked.
//!
//! # Writes
//! A put writes the data (a new version) and then the tags. Vault has no
//! call that does both, so a failure between the two leaves the new value
//! under the old tags and the put reports the error; trying again repairs
//! it. The order is chosen so that the gap never shows a value under tags
//! it was not written with: a new secret has no tags until its tags land,
//! which hides it from every tag scope rather than exposing it.

mod error;
pub mod names;
mod session;

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use base64::{engine::general_purpose::STANDARD, Engine};
use futures::{stream, StreamExt};
use secretd_core::{
    pacing, Capabilities, ErrorKind, Key, Namespace, Page, PageRequest, RetryPolicy, ScanSelection, Secret,
    SecretMetadata, SecretName, SecretStore, SecretValue, StoreError, Tags, Tenant, Version,
};
use serde_json::{Map, Value};
use vaultrs::{
    api::kv2::{
        requests::{ReadSecretRequest, SetSecretMetadataRequest},
        responses::{ReadSecretMetadataResponse, ReadSecretResponse},
    },
    kv2,
};

pub use names::PathPrefix;
use session::Session;
pub use session::{Connection, VaultAuth};

/// What [`VaultStore::connect`] needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VaultOptions {
    pub connection: Connection,
    pub auth: VaultAuth,
    /// The KV v2 mount, `secret` by default.
    pub mount: String,
    pub path_prefix: PathPrefix,
    /// Versions Vault keeps per secret, set before every write (one more
    /// call per put); `None` leaves the engine's setting (10 by default),
    /// and older versions are pruned.
    pub max_versions: Option<u64>,
    pub retry: RetryPolicy,
}

impl VaultOptions {
    pub fn new(address: impl Into<String>, auth: VaultAuth) -> Self {
        Self {
            connection: Connection {
                address: address.into(),
                namespace: None,
                ca_certificate: None,
                timeout: Duration::from_secs(5),
            },
            auth,
            mount: "secret".into(),
            path_prefix: PathPrefix::new("").unwrap_or_else(|_| unreachable!("the empty prefix is valid")),
            max_versions: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// Metadata reads a listing makes at once: enough to hide Vault's latency,
/// few enough that one listing (up to 1,000 keys a page) cannot flood it.
const LIST_CONCURRENCY: usize = 16;

pub struct VaultStore {
    session: Session,
    mount: String,
    prefix: PathPrefix,
    max_versions: Option<u64>,
}

impl std::fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultStore")
            .field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .field("auth", &self.session.method())
            .finish_non_exhaustive()
    }
}

/// A version read from the metadata, with what the store needs of it.
struct Current {
    metadata: ReadSecretMetadataResponse,
    version: u64,
}

impl VaultStore {
    /// Logs in; bad credentials or an unreachable server fail here, with
    /// the reason.
    pub async fn connect(options: VaultOptions) -> Result<Self, StoreError> {
        // reqwest is built without a bundled crypto provider; ring is the one
        // the rest of the daemon uses. A second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mount = options.mount.trim_matches('/').to_owned();
        if mount.is_empty() {
            return Err(StoreError::invalid_name("the KV v2 mount must not be empty"));
        }
        let session = Session::start(options.connection, options.auth, options.retry).await?;
        Ok(Self { session, mount, prefix: options.path_prefix, max_versions: options.max_versions })
    }

    async fn read_metadata(&self, path: &str, what: &str) -> Result<ReadSecretMetadataResponse, StoreError> {
        let mount = self.mount.as_str();
        self.session.call(what, |login| async move { kv2::read_metadata(&login.client, mount, path).await }).await
    }

    /// The metadata and the version to read: the latest, or the pinned one
    /// if it exists and is neither deleted nor destroyed.
    async fn resolve(&self, name: &SecretName, version: Option<&Version>) -> Result<Current, StoreError> {
        let path = self.prefix.secret_path(name);
        let metadata = self.read_metadata(&path, &format!("reading {name}")).await?;
        let version = match version {
            None => metadata.current_version,
            Some(pinned) => canonical_version(pinned.as_str()).ok_or_else(|| version_not_found(name, pinned))?,
        };
        let live =
            metadata.versions.get(&version.to_string()).is_some_and(|v| !v.destroyed && v.deletion_time.is_empty());
        if version == 0 || !live {
            return Err(StoreError::not_found(name));
        }
        Ok(Current { metadata, version })
    }

    fn describe(&self, name: SecretName, current: &Current) -> Result<SecretMetadata, StoreError> {
        let version = current.metadata.versions.get(&current.version.to_string());
        Ok(SecretMetadata {
            name,
            version: Version(current.version.to_string()),
            tags: tags_of(&current.metadata),
            created_at: timestamp(&current.metadata.created_time)?,
            updated_at: timestamp(version.map(|v| v.created_time.as_str()).unwrap_or_default())?,
        })
    }
}

/// KV v2 versions are positive integers written without leading zeros;
/// any other spelling names no version.
fn canonical_version(raw: &str) -> Option<u64> {
    let n: u64 = raw.parse().ok()?;
    (n > 0 && n.to_string() == raw).then_some(n)
}

fn version_not_found(name: &SecretName, version: &Version) -> StoreError {
    StoreError::new(ErrorKind::NotFound, format!("secret {name} has no version {version}"))
}

fn tags_of(metadata: &ReadSecretMetadataResponse) -> Tags {
    metadata.custom_metadata.clone().unwrap_or_default().into_iter().collect()
}

fn timestamp(raw: &str) -> Result<SystemTime, StoreError> {
    humantime::parse_rfc3339_weak(raw)
        .map_err(|_| StoreError::corrupt(format!("vault returned the timestamp {raw:?}, which is not RFC 3339")))
}

/// The data map a value is written as.
fn encode_value(value: &SecretValue) -> Map<String, Value> {
    let mut data = Map::new();
    match std::str::from_utf8(value.expose()) {
        Ok(text) => data.insert("value".into(), Value::String(text.to_owned())),
        Err(_) => data.insert("value_base64".into(), Value::String(STANDARD.encode(value.expose()))),
    };
    data
}

/// The value a data map holds; see the crate docs.
fn decode_value(name: &SecretName, mut data: Value) -> Result<SecretValue, StoreError> {
    let Some(map) = data.as_object_mut() else {
        return Err(StoreError::corrupt(format!("the data of {name} in vault is not a JSON object")));
    };
    if map.len() == 1 {
        if let Some(Value::String(text)) = map.get_mut("value") {
            return Ok(SecretValue::new(std::mem::take(text).into_bytes()));
        }
        if let Some(Value::String(b64)) = map.get("value_base64") {
            return STANDARD
                .decode(b64)
                .map(SecretValue::new)
                .map_err(|_| StoreError::corrupt(format!("the value_base64 of {name} in vault is not base64")));
        }
    }
    serde_json::to_vec(&data)
        .map(SecretValue::new)
        .map_err(|_| StoreError::corrupt(format!("the data of {name} in vault cannot be serialized")))
}

#[async_trait]
impl SecretStore for VaultStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities { tags_per_version: false, ..Capabilities::FULL }
    }

    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        let current = self.resolve(name, version).await?;
        let path = self.prefix.secret_path(name);
        let (mount, path, number) = (self.mount.as_str(), path.as_str(), current.version);
        let read: ReadSecretResponse = self
            .session
            .call(&format!("reading {name}"), |login| async move {
                let endpoint =
                    ReadSecretRequest { mount: mount.to_owned(), path: path.to_owned(), version: Some(number) };
                vaultrs::api::exec_with_result(&login.client, endpoint).await
            })
            .await?;
        if read.metadata.version != current.version {
            return Err(StoreError::corrupt(format!("vault returned another version of {name} than was asked")));
        }
        let value = decode_value(name, read.data)?;
        Ok(Secret { metadata: self.describe(name.clone(), &current)?, value })
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        _description: Option<&str>,
    ) -> Result<Version, StoreError> {
        tags.validate()?;
        let path = self.prefix.secret_path(name);
        let (mount, path) = (self.mount.as_str(), path.as_str());
        if let Some(max) = self.max_versions {
            // Before the data: a burst of writes to a new secret would
            // otherwise run under the engine's default and lose versions
            // before the tag write below sets the limit.
            self.session
                .call(&format!("setting max-versions of {name}"), |login| async move {
                    let mut request = SetSecretMetadataRequest::builder();
                    request.max_versions(max);
                    kv2::set_metadata(&login.client, mount, path, Some(&mut request)).await
                })
                .await?;
        }
        let data = encode_value(value);
        let data = &data;
        let written = self
            .session
            .call(&format!("writing {name}"), |login| async move { kv2::set(&login.client, mount, path, data).await })
            .await?;
        let custom: HashMap<String, String> = tags.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let custom = &custom;
        self.session
            .call(&format!("tagging {name}"), |login| async move {
                let mut request = SetSecretMetadataRequest::builder();
                // The whole map is sent, an empty one too: it replaces the
                // previous tags rather than merging with them.
                request.custom_metadata(custom.clone());
                kv2::set_metadata(&login.client, mount, path, Some(&mut request)).await
            })
            .await
            .map_err(|e| {
                StoreError::new(
                    e.kind(),
                    format!("{e}; version {} of {name} was written but its tags were not", written.version),
                )
            })?;
        Ok(Version(written.version.to_string()))
    }

    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        let path = self.prefix.secret_path(name);
        self.read_metadata(&path, &format!("reading {name}")).await?;
        let (mount, path) = (self.mount.as_str(), path.as_str());
        self.session
            .call(
                &format!("deleting {name}"),
                |login| async move { kv2::delete_metadata(&login.client, mount, path).await },
            )
            .await
    }

    async fn list(
        &self,
        tenant: &Tenant,
        namespace: &Namespace,
        filter: &Tags,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        let after = page.token.as_deref().map(secretd_core::key_after_token).transpose()?;
        let size = page.size.max(1);
        let folder = self.prefix.namespace_folder(tenant, namespace);
        let mut keys = self.list_keys(&folder).await?;
        keys.sort();
        if let Some(after) = &after {
            keys.retain(|k| k > after);
        }
        // Metadata is read for a page's worth of candidates at a time, at
        // most LIST_CONCURRENCY at once, each read taking its turn under
        // the backend's rate limit; filtered-out or half-deleted keys pull
        // in the next ones.
        let mut items = Vec::new();
        let mut consumed = 0;
        while items.len() < size && consumed < keys.len() {
            let batch = &keys[consumed..(consumed + size - items.len()).min(keys.len())];
            let reads: Vec<_> = batch
                .iter()
                .map(|key| {
                    let name = SecretName::new(tenant.clone(), namespace.clone(), key.clone());
                    async move {
                        let found = match pacing::paced().await {
                            Ok(()) => self.resolve(&name, None).await,
                            Err(refused) => Err(refused),
                        };
                        (name, found)
                    }
                })
                .collect();
            let found: Vec<_> = stream::iter(reads).buffered(LIST_CONCURRENCY).collect().await;
            for (name, found) in found {
                consumed += 1;
                match found {
                    Ok(current) => {
                        let metadata = self.describe(name, &current)?;
                        if metadata.tags.contains_all(filter) {
                            items.push(metadata);
                        }
                    }
                    // Deleted since the listing: not part of it.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let next_token = match (consumed < keys.len(), keys.get(consumed.wrapping_sub(1))) {
            (true, Some(last)) => Some(secretd_core::key_page_token(last)),
            _ => None,
        };
        Ok(Page { items, next_token })
    }

    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        if let Some(token) = &page.token {
            secretd_core::name_after_token(token)?;
        }
        let names = self.scan_names(selection).await?;
        secretd_core::page_of_names(names, page, LIST_CONCURRENCY, |name| async move {
            pacing::paced().await?;
            match self.resolve(&name, None).await {
                Ok(current) => self.describe(name, &current).map(Some),
                // Deleted since the listing: not part of the scan.
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        let current = self.resolve(name, None).await?;
        let mut live: Vec<u64> = current
            .metadata
            .versions
            .iter()
            .filter(|(_, v)| !v.destroyed && v.deletion_time.is_empty())
            .filter_map(|(number, _)| canonical_version(number))
            .collect();
        live.sort_unstable();
        Ok(live.into_iter().map(|n| Version(n.to_string())).collect())
    }

    async fn health(&self) -> Result<(), StoreError> {
        // An authenticated call proves all of it: Vault is reachable,
        // unsealed (a sealed one answers 503), and secretd's token is good.
        // (`sys/health` would not tell the last; and vaultrs cannot parse
        // OpenBao's answer to it.)
        self.session
            .call("checking vault's health with a token lookup", |login| async move {
                vaultrs::token::lookup_self(&login.client).await
            })
            .await?;
        Ok(())
    }
}

impl VaultStore {
    /// The entries of one folder; a missing folder is empty.
    async fn list_folder(&self, folder: &str) -> Result<Vec<String>, StoreError> {
        let mount = self.mount.as_str();
        match self
            .session
            .call(&format!("listing {folder}"), |login| async move { kv2::list(&login.client, mount, folder).await })
            .await
        {
            Ok(entries) => Ok(entries),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The sub-folders of `folder` whose names `parse` accepts.
    async fn sub_folders<T>(&self, folder: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, StoreError> {
        let entries = self.list_folder(folder).await?;
        Ok(entries.iter().filter_map(|e| e.strip_suffix('/')).filter_map(parse).collect())
    }

    /// Every secret name of the selection, unordered.
    async fn scan_names(&self, selection: &ScanSelection) -> Result<Vec<SecretName>, StoreError> {
        let tenants = match &selection.tenant {
            Some(tenant) => vec![tenant.clone()],
            None => self.sub_folders(&self.prefix.root_folder(), |t| Tenant::parse(t).ok()).await?,
        };
        let mut names = Vec::new();
        for tenant in tenants {
            if selection.tenant.is_none() {
                pacing::paced().await?;
            }
            let namespaces = self
                .sub_folders(&self.prefix.tenant_folder(&tenant), |ns| Namespace::parse(ns).ok())
                .await?
                .into_iter()
                .filter(|ns| selection.admits_namespace(ns));
            for namespace in namespaces {
                pacing::paced().await?;
                let keys = self.list_keys(&self.prefix.namespace_folder(&tenant, &namespace)).await?;
                names.extend(keys.into_iter().map(|key| SecretName::new(tenant.clone(), namespace.clone(), key)));
            }
        }
        Ok(names)
    }

    /// Every key under a namespace folder, walking sub-folders: a key with
    /// `/` in it (`db/password`) lists as the folder `db/`.
    async fn list_keys(&self, folder: &str) -> Result<Vec<Key>, StoreError> {
        let mount = self.mount.as_str();
        let mut keys = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(sub) = pending.pop() {
            // The folder itself is the operation's own call; each
            // sub-folder is one more.
            if !sub.is_empty() {
                pacing::paced().await?;
            }
            let path = format!("{folder}{sub}");
            let path = path.as_str();
            let entries = match self
                .session
                .call(&format!("listing {folder}"), |login| async move { kv2::list(&login.client, mount, path).await })
                .await
            {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let full = format!("{sub}{entry}");
                if full.ends_with('/') {
                    pending.push(full);
                } else if let Ok(key) = Key::parse(&full) {
                    keys.push(key);
                } else {
                    // Written by another tool under a name secretd cannot
                    // express; not ours to list.
                    tracing::debug!("skipping vault path {folder}{full}: not a valid secretd key");
                }
            }
        }
        Ok(keys)
    }
}
