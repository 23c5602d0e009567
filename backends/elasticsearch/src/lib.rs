//! The Elasticsearch / OpenSearch store (`secret.type: elasticsearch`),
//! encrypted at rest.
//!
//! Secrets live in one index (`secretd-secrets` by default, created with
//! secretd's mapping on first start), one head document per secret plus one
//! document per version; `model.rs` describes the layout. Values are sealed
//! with the shared AES-256-GCM [`Envelope`] before they leave the process,
//! bound to their name and version, so the cluster, its snapshots and
//! anyone who can read the index see ciphertext only.
//!
//! **Versions and concurrency.** Versions are `1`, `2`, ... A put claims
//! the next number by creating that version's document with
//! `op_type=create`, which the cluster grants to exactly one writer; a
//! writer that loses moves on to the next number. It then moves the head
//! forward with a compare-and-set on the head's sequence number
//! (`if_seq_no`/`if_primary_term`), re-reading and retrying on conflict, and
//! never moves it backwards. So concurrent puts each get their own version,
//! none is lost, and the head ends at the highest. A put that fails after
//! claiming its number takes the version document back.
//!
//! **Delete** removes the head, then every version document (delete by
//! query on the secret's id). A later put starts again at version 1. A put
//! racing a delete of the same secret may land after it; the secret then
//! exists again, holding that put's version.
//!
//! **Scans** search heads in name order (tenant, namespace, key), paged
//! with `search_after` on all three; the selection's namespace matches by
//! term and its descendants by prefix, and every answer is checked again.
//! A secret's **versions** are its version documents from 1 up to the
//! head's, read with real-time multi-gets (a number a failed put took back
//! is skipped).
//!
//! **Rotating the secret.** Values sealed under any of the
//! `previous_secrets` still open (the envelope names its key id). The
//! [`Reseal`] walk reads every document, head and version, in a fixed order
//! and rewrites those under an old key with `_bulk` compare-and-sets on the
//! sequence numbers it read, so a concurrent put or delete is never undone.
//! A delete-by-query racing the rewrite of a version would skip that
//! version (its sequence number moved), leaving it behind its deleted
//! secret; so the rewrites wait for a refresh, and afterwards any rewritten
//! version whose head is gone, or belongs to a secret created since, is
//! taken back.
//!
//! **Listing** searches heads of exactly one tenant and namespace, with a
//! term filter per tag, sorted by key and paged with `search_after`; the
//! page token is the last key, base64url-encoded, and is validated as a key
//! when it comes back.

mod client;
mod error;
mod model;
mod options;

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use base64::Engine;
use secrecy::ExposeSecret;
use secretd_core::{
    Capabilities, ErrorKind, Key, Keyring, Namespace, Page, PageRequest, Reseal, ResealFailure, ResealOutcome,
    ResealProgressFn, ResealReport, ScanSelection, Secret, SecretMetadata, SecretName, SecretStore, SecretValue,
    StoreError, Tags, Tenant, Version,
};

pub use crate::options::{Auth, ElasticsearchOptions, DEFAULT_INDEX, DEFAULT_TIMEOUT};
use crate::{
    client::Client,
    error::{unexpected, ServerError},
    model::{
        parse_version, secret_id, tag_terms, BulkReply, Doc, GetReply, MgetReply, Replacement, Requests, SearchReply,
        StoredHit, Summary, WalkReply, HEAD, REQUIRED_FIELDS, VERSION,
    },
};

/// How many version numbers a put tries before giving up: each failed
/// attempt means another writer took that number, so this bounds how many
/// writers may overtake one put.
const MAX_VERSION_CLAIMS: u32 = 1000;
/// How often a put re-reads and retries the head after losing its
/// compare-and-set to another writer.
const MAX_HEAD_ATTEMPTS: u32 = 100;
/// The largest page one search returns (Elasticsearch's default
/// `index.max_result_window` is 10 000).
const MAX_PAGE: usize = 5000;
/// How many documents a re-seal reads, and rewrites in one `_bulk`, at a
/// time.
const RESEAL_BATCH: usize = 500;

/// The Elasticsearch / OpenSearch [`SecretStore`].
pub struct ElasticsearchStore {
    client: Client,
    requests: Requests,
    keys: Keyring,
}

impl fmt::Debug for ElasticsearchStore {
    // Credentials live in the client's header and the key in the envelope;
    // neither is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticsearchStore")
            .field("hosts", &self.client.hosts())
            .field("index", &self.requests.index())
            .field("key_id", &self.keys.key_id())
            .finish_non_exhaustive()
    }
}

/// A head as read, with what a compare-and-set needs.
struct Head {
    doc: Doc,
    seq_no: i64,
    primary_term: i64,
}

impl ElasticsearchStore {
    /// Checks the options, derives the encryption keys from `secret` and
    /// `previous_secrets` (each at least 32 characters, none twice), and
    /// makes sure the index exists with secretd's mapping, creating it if
    /// it is missing.
    pub async fn connect(options: ElasticsearchOptions) -> Result<Self, StoreError> {
        let keys = Keyring::new(options.secret.expose_secret(), &options.previous_secrets)
            .map_err(|e| StoreError::new(ErrorKind::InvalidName, e.to_string()))?;
        let requests = Requests::new(&options.index)?;
        let client = Client::new(&options)?;
        let store = Self { client, requests, keys };
        store.ensure_index().await?;
        Ok(store)
    }

    /// The index this store uses.
    pub fn index(&self) -> &str {
        self.requests.index()
    }

    async fn ensure_index(&self) -> Result<(), StoreError> {
        let index = self.requests.index();
        let what = format!("creating index {index}");
        let reply = self.client.send(&self.requests.create_index()?, &what).await?;
        if reply.is_success() {
            tracing::info!(index, "created the secrets index");
            return Ok(());
        }
        let server = ServerError::parse(&reply.body);
        // Another replica created it first, or it exists from an earlier
        // start: either way, check it is one secretd can use.
        if server.is("resource_already_exists_exception") {
            return self.check_mapping().await;
        }
        // Credentials allowed to use an index need not be allowed to create
        // one; an operator may have made it beforehand.
        if matches!(reply.status, 401 | 403) {
            let probe = self.client.send(&self.requests.probe(), &format!("reading index {index}")).await?;
            if probe.is_success() {
                tracing::warn!(index, "not allowed to create the index, but it exists; using it as it is");
                return Ok(());
            }
        }
        Err(reply.into_error(&what))
    }

    /// Refuses an index whose mapping would make lookups silently miss (an
    /// index auto-created with dynamic mapping turns `key` into `text`).
    async fn check_mapping(&self) -> Result<(), StoreError> {
        let index = self.requests.index();
        let what = format!("reading the mapping of index {index}");
        let reply = self.client.send(&self.requests.get_mapping(), &what).await?;
        if matches!(reply.status, 401 | 403) {
            tracing::warn!(index, "not allowed to read the index mapping; assuming it is secretd's");
            return Ok(());
        }
        if !reply.is_success() {
            return Err(reply.into_error(&what));
        }
        let mappings: serde_json::Value = reply.parse(&what)?;
        // Keyed by the concrete index name, which differs when `index` is
        // an alias; every index behind it must fit.
        let Some(indices) = mappings.as_object().filter(|m| !m.is_empty()) else {
            return Err(unexpected(&what, "no mapping in the answer"));
        };
        for (concrete, mapping) in indices {
            let properties = &mapping["mappings"]["properties"];
            for (field, expected) in REQUIRED_FIELDS {
                let found = properties[field]["type"].as_str();
                if found != Some(expected) {
                    return Err(StoreError::new(
                        ErrorKind::InvalidName,
                        format!(
                            "index: {concrete} exists but was not created by secretd: field {field} is {} \
                             instead of {expected}; delete it or configure another index",
                            found.unwrap_or("missing")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The head of `name`, or `None`. A missing index is an error here:
    /// a put must not let the cluster auto-create it without the mapping.
    async fn read_head(&self, name: &SecretName, id: &str) -> Result<Option<Head>, StoreError> {
        let what = format!("reading secret {name}");
        let reply = self.client.send(&self.requests.get(id, id), &what).await?;
        match reply.status {
            200 => {}
            404 if ServerError::parse(&reply.body).is("index_not_found_exception") => {
                return Err(StoreError::unavailable(format!(
                    "index {} does not exist (deleted while secretd runs?); restart secretd to create it",
                    self.requests.index()
                )))
            }
            404 => return Ok(None),
            _ => return Err(reply.into_error(&what)),
        }
        let got: GetReply<Doc> = reply.parse(&what)?;
        let (Some(doc), Some(seq_no), Some(primary_term)) = (got.source, got.seq_no, got.primary_term) else {
            return if got.found {
                Err(unexpected(&what, "a found document without source or sequence"))
            } else {
                Ok(None)
            };
        };
        if !doc.is_for(name, HEAD) {
            return Err(StoreError::corrupt(format!("the head document of secret {name} belongs to another name")));
        }
        Ok(Some(Head { doc, seq_no, primary_term }))
    }

    fn open(&self, name: &SecretName, doc: &Doc, created_at: i64) -> Result<Secret, StoreError> {
        let version = doc.version.to_string();
        let sealed = base64::engine::general_purpose::STANDARD.decode(&doc.sealed).map_err(|_| {
            StoreError::corrupt(format!("secret {name} version {version}: the stored value is not base64"))
        })?;
        let value = self.keys.open(name, &version, &sealed)?;
        Ok(Secret {
            metadata: SecretMetadata {
                name: name.clone(),
                version: Version(version),
                tags: doc.tags.clone(),
                created_at: from_millis(created_at),
                updated_at: from_millis(doc.updated_at),
            },
            value,
        })
    }

    /// Claims the first free version number from `next` on by creating its
    /// document, and returns the document written.
    #[allow(clippy::too_many_arguments)]
    async fn claim_version(
        &self,
        name: &SecretName,
        id: &str,
        mut next: u64,
        value: &SecretValue,
        tags: &Tags,
        description: Option<&str>,
        now: i64,
    ) -> Result<Doc, StoreError> {
        let what = format!("writing secret {name}");
        let write_id = format!("{:032x}", rand::random::<u128>());
        for _ in 0..MAX_VERSION_CLAIMS {
            let sealed = self.keys.seal(name, &next.to_string(), value)?;
            let doc = Doc {
                doc_type: VERSION.to_owned(),
                secret_id: id.to_owned(),
                tenant: name.tenant.as_str().to_owned(),
                namespace: name.namespace.as_str().to_owned(),
                key: name.key.as_str().to_owned(),
                version: next,
                tags: tags.clone(),
                tag_terms: tag_terms(tags),
                sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
                key_id: self.keys.key_id(),
                description: description.map(str::to_owned),
                created_at: now,
                updated_at: now,
                write_id: Some(write_id.clone()),
            };
            let reply = self.client.send(&self.requests.create_version(&doc)?, &what).await?;
            match reply.status {
                200 | 201 => return Ok(doc),
                409 if reply.retried && self.is_own_version(name, id, next, &write_id).await? => return Ok(doc),
                // Another writer holds this number: the next one, then.
                409 => next += 1,
                _ => return Err(reply.into_error(&what)),
            }
        }
        Err(StoreError::unavailable(format!(
            "writing secret {name}: gave up after {MAX_VERSION_CLAIMS} versions were taken by concurrent writers"
        )))
    }

    /// After a retried create answered 409: whether the document there is
    /// the one this put wrote on an attempt whose answer was lost.
    async fn is_own_version(
        &self,
        name: &SecretName,
        id: &str,
        version: u64,
        write_id: &str,
    ) -> Result<bool, StoreError> {
        let what = format!("reading secret {name} version {version}");
        let reply = self.client.send(&self.requests.get(&model::version_id(id, version), id), &what).await?;
        if reply.status == 404 {
            return Ok(false);
        }
        if !reply.is_success() {
            return Err(reply.into_error(&what));
        }
        let got: GetReply<Doc> = reply.parse(&what)?;
        Ok(got.source.is_some_and(|d| d.write_id.as_deref() == Some(write_id)))
    }

    /// Moves the head to `version` unless it is already at or past it,
    /// with compare-and-set, re-reading on every conflict. `head` is the
    /// head as read before the version was claimed.
    async fn advance_head(
        &self,
        name: &SecretName,
        id: &str,
        mut head: Option<Head>,
        version: &Doc,
    ) -> Result<(), StoreError> {
        let what = format!("writing secret {name}");
        for attempt in 1..=MAX_HEAD_ATTEMPTS {
            let call = match &head {
                None => {
                    let doc = Doc { doc_type: HEAD.to_owned(), ..version.clone() };
                    self.requests.create_head(&doc)?
                }
                Some(current) => {
                    let created_at = current.doc.created_at.min(version.created_at);
                    let doc = if current.doc.version >= version.version {
                        // A later version is already the head; only keep the
                        // secret's first-write time right.
                        if created_at == current.doc.created_at {
                            return Ok(());
                        }
                        Doc { created_at, ..current.doc.clone() }
                    } else {
                        Doc { doc_type: HEAD.to_owned(), created_at, ..version.clone() }
                    };
                    self.requests.replace_head(&doc, current.seq_no, current.primary_term)?
                }
            };
            let reply = self.client.send(&call, &what).await?;
            match reply.status {
                200 | 201 => return Ok(()),
                // Lost the race (or our own retried write landed): look again.
                409 => {
                    if attempt > 2 {
                        tokio::time::sleep(client::backoff(attempt).min(Duration::from_millis(50))).await;
                    }
                    head = self.read_head(name, id).await?;
                }
                _ => return Err(reply.into_error(&what)),
            }
        }
        Err(StoreError::unavailable(format!(
            "writing secret {name}: too many concurrent writers; the head kept changing"
        )))
    }
}

/// A document the re-seal rewrites, and how its compare-and-set went.
struct Rewrite<'a> {
    hit: &'a StoredHit,
    doc: Doc,
    /// Where the rewrite left the document, when it landed.
    landed: Option<(i64, i64)>,
}

impl ElasticsearchStore {
    /// What re-sealing one document takes: nothing, a new document, or a
    /// failure naming it.
    fn plan_reseal(&self, hit: &StoredHit) -> Result<Option<Doc>, ResealFailure> {
        let doc = &hit.source;
        let item = format!(
            "secret {}/{}/{} version {}{}",
            doc.tenant,
            doc.namespace,
            doc.key,
            doc.version,
            if doc.doc_type == HEAD { " (head)" } else { "" }
        );
        let failure = |reason: &str| ResealFailure { item: item.clone(), reason: reason.to_owned() };
        let name = SecretName::parse(&doc.tenant, &doc.namespace, &doc.key)
            .map_err(|_| failure("the document's name breaks the naming rules"))?;
        if !doc.is_for(&name, HEAD) && !doc.is_for(&name, VERSION) {
            return Err(failure("the document is neither a head nor a version"));
        }
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&doc.sealed)
            .map_err(|_| failure("the stored value is not base64"))?;
        match self.keys.reseal(&name, &doc.version.to_string(), &sealed) {
            Ok(None) => Ok(None),
            Ok(Some(resealed)) => Ok(Some(Doc {
                sealed: base64::engine::general_purpose::STANDARD.encode(resealed),
                key_id: self.keys.key_id(),
                ..doc.clone()
            })),
            Err(e) => Err(failure(e.message())),
        }
    }

    /// Sends one batch of rewrites; fills in where each landed, and returns
    /// the failures of those the cluster refused for other reasons than a
    /// concurrent write.
    async fn write_rewrites(&self, rewrites: &mut [Rewrite<'_>]) -> Result<Vec<ResealFailure>, StoreError> {
        let what = format!("re-sealing index {}", self.requests.index());
        let replacements: Vec<Replacement<'_>> = rewrites
            .iter()
            .map(|r| Replacement { id: &r.hit.id, seq_no: r.hit.seq_no, primary_term: r.hit.primary_term, doc: &r.doc })
            .collect();
        let reply = self.client.send(&self.requests.bulk_replace(&replacements)?, &what).await?;
        if !reply.is_success() {
            return Err(reply.into_error(&what));
        }
        let items = reply.parse::<BulkReply>(&what)?.items;
        if items.len() != rewrites.len() {
            return Err(unexpected(&what, "the bulk answer has a different number of items"));
        }
        let mut failures = Vec::new();
        for (rewrite, item) in rewrites.iter_mut().zip(items) {
            let result = item.index;
            match (result.status, result.seq_no, result.primary_term) {
                (200 | 201, Some(seq_no), Some(primary_term)) => rewrite.landed = Some((seq_no, primary_term)),
                (200 | 201, ..) => return Err(unexpected(&what, "a bulk item without its sequence number")),
                // Written or deleted since it was read: that writer's say.
                (409, ..) => {}
                (status, ..) => {
                    let error = result.error.as_ref().map(ServerError::from_error);
                    failures.push(ResealFailure {
                        item: format!("document {}", rewrite.hit.id),
                        reason: format!(
                            "elasticsearch refused the rewrite with status {status}{}",
                            error.map(|e| e.detail()).unwrap_or_default()
                        ),
                    });
                }
            }
        }
        Ok(failures)
    }

    /// Takes back rewritten versions whose secret was deleted while they
    /// were rewritten (see the module docs); those count as skipped.
    async fn take_back_orphans(&self, rewrites: &mut [Rewrite<'_>]) -> Result<(), StoreError> {
        let what = format!("re-sealing index {}", self.requests.index());
        let versions: Vec<usize> = (0..rewrites.len())
            .filter(|&i| rewrites[i].landed.is_some() && rewrites[i].doc.doc_type == VERSION)
            .collect();
        if versions.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = versions.iter().map(|&i| rewrites[i].doc.secret_id.as_str()).collect();
        let reply = self.client.send(&self.requests.mget_heads(&ids)?, &what).await?;
        if !reply.is_success() {
            return Err(reply.into_error(&what));
        }
        let heads = reply.parse::<MgetReply<Doc>>(&what)?.docs;
        if heads.len() != versions.len() {
            return Err(unexpected(&what, "fewer heads than asked for"));
        }
        for (&i, head) in versions.iter().zip(heads) {
            if let Some(error) = &head.error {
                return Err(StoreError::unavailable(format!(
                    "elasticsearch could not read a head while {what}{}",
                    ServerError::from_error(error).detail()
                )));
            }
            let rewrite = &mut rewrites[i];
            // A head created after this version was written belongs to a
            // secret deleted and created again.
            let alive = head.source.filter(|_| head.found).is_some_and(|h| h.created_at <= rewrite.doc.created_at);
            if alive {
                continue;
            }
            let Some((seq_no, primary_term)) = rewrite.landed.take() else { continue };
            let call = self.requests.delete_if(&rewrite.hit.id, &rewrite.doc.secret_id, seq_no, primary_term);
            let reply = self.client.send(&call, &what).await?;
            // 404 or 409: the delete-by-query got it after all.
            if !reply.is_success() && !matches!(reply.status, 404 | 409) {
                return Err(reply.into_error(&what));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Reseal for ElasticsearchStore {
    fn current_key_id(&self) -> String {
        self.keys.key_id()
    }

    async fn check_keys(&self) -> Result<(), StoreError> {
        let what = format!("checking the key ids in index {}", self.requests.index());
        let reply = self.client.send(&self.requests.search_all(None, 1)?, &what).await?;
        if reply.status == 404 {
            return Ok(());
        }
        if !reply.is_success() {
            return Err(reply.into_error(&what));
        }
        let Some(first) = reply.parse::<WalkReply>(&what)?.hits.hits.into_iter().next() else { return Ok(()) };
        let sealed = base64::engine::general_purpose::STANDARD.decode(&first.source.sealed).unwrap_or_default();
        match self.keys.unknown_key_id(&sealed) {
            Some(key_id) => Err(self.keys.unknown_key_error(&key_id)),
            None => Ok(()),
        }
    }

    async fn reseal(&self, progress: ResealProgressFn<'_>) -> Result<ResealReport, StoreError> {
        let index = self.requests.index();
        let what = format!("re-sealing index {index}");
        let reply = self.client.send(&self.requests.refresh(), &what).await?;
        if !reply.is_success() {
            return Err(reply.into_error(&what));
        }
        let reply = self.client.send(&self.requests.probe(), &what).await?;
        if !reply.is_success() {
            return Err(reply.into_error(&what));
        }
        let estimated = reply.parse::<serde_json::Value>(&what)?["count"].as_u64().unwrap_or(0);
        let mut report = ResealReport { key_id: self.keys.key_id(), ..ResealReport::default() };
        progress(&report.progress(estimated));
        let mut after: Option<Vec<serde_json::Value>> = None;
        loop {
            let reply = self.client.send(&self.requests.search_all(after.as_deref(), RESEAL_BATCH)?, &what).await?;
            if !reply.is_success() {
                return Err(reply.into_error(&what));
            }
            let hits = reply.parse::<WalkReply>(&what)?.hits.hits;
            let Some(last) = hits.last() else { break };
            after = Some(last.sort.clone());
            let mut rewrites = Vec::new();
            for hit in &hits {
                match self.plan_reseal(hit) {
                    Ok(None) => report.record(ResealOutcome::AlreadyCurrent),
                    Ok(Some(doc)) => rewrites.push(Rewrite { hit, doc, landed: None }),
                    Err(failure) => report.record(ResealOutcome::Failed(failure)),
                }
            }
            if !rewrites.is_empty() {
                let failures = self.write_rewrites(&mut rewrites).await?;
                self.take_back_orphans(&mut rewrites).await?;
                let refused = failures.len();
                for failure in failures {
                    report.record(ResealOutcome::Failed(failure));
                }
                let landed = rewrites.iter().filter(|r| r.landed.is_some()).count();
                for _ in 0..landed {
                    report.record(ResealOutcome::Resealed);
                }
                for _ in 0..rewrites.len() - landed - refused {
                    report.record(ResealOutcome::Skipped);
                }
            }
            progress(&report.progress(estimated));
            if hits.len() < RESEAL_BATCH {
                break;
            }
        }
        Ok(report)
    }
}

#[async_trait]
impl SecretStore for ElasticsearchStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::FULL
    }

    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        let id = secret_id(name);
        let Some(pinned) = version else {
            // The head carries the latest version whole: one real-time GET.
            let what = format!("reading secret {name}");
            let reply = self.client.send(&self.requests.get(&id, &id), &what).await?;
            if reply.status == 404 {
                return Err(StoreError::not_found(name));
            }
            if !reply.is_success() {
                return Err(reply.into_error(&what));
            }
            let got: GetReply<Doc> = reply.parse(&what)?;
            let doc = got.source.filter(|_| got.found).ok_or_else(|| StoreError::not_found(name))?;
            if !doc.is_for(name, HEAD) {
                return Err(StoreError::corrupt(format!("the head document of secret {name} belongs to another name")));
            }
            return self.open(name, &doc, doc.created_at);
        };
        let missing = || StoreError::not_found(format!("{name} version {pinned}"));
        let n = parse_version(pinned.as_str()).ok_or_else(missing)?;
        // The head too: for the secret's creation time, and because a
        // version without a head belongs to a deleted secret.
        let what = format!("reading secret {name} version {n}");
        let vid = model::version_id(&id, n);
        let reply = self.client.send(&self.requests.mget(&[&id, &vid], &id)?, &what).await?;
        if reply.status == 404 {
            return Err(missing());
        }
        if !reply.is_success() {
            return Err(reply.into_error(&what));
        }
        let got: MgetReply<Doc> = reply.parse(&what)?;
        let mut docs = got.docs.into_iter();
        let (Some(head), Some(doc)) = (docs.next(), docs.next()) else {
            return Err(unexpected(&what, "fewer documents than asked for"));
        };
        for entry in [&head, &doc] {
            if let Some(error) = &entry.error {
                let error = ServerError::from_error(error);
                if error.is("index_not_found_exception") {
                    return Err(missing());
                }
                // A failed shard, most likely: worth retrying later.
                return Err(StoreError::unavailable(format!(
                    "elasticsearch could not read a document while {what}{}",
                    error.detail()
                )));
            }
        }
        let (Some(head), Some(doc)) = (head.source.filter(|_| head.found), doc.source.filter(|_| doc.found)) else {
            return Err(missing());
        };
        if !head.is_for(name, HEAD) || !doc.is_for(name, VERSION) || doc.version != n {
            return Err(StoreError::corrupt(format!(
                "the documents of secret {name} version {n} belong to another name"
            )));
        }
        self.open(name, &doc, head.created_at.min(doc.created_at))
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        description: Option<&str>,
    ) -> Result<Version, StoreError> {
        let id = secret_id(name);
        let head = self.read_head(name, &id).await?;
        let next = head.as_ref().map_or(1, |h| h.doc.version.saturating_add(1));
        let now = now_millis();
        let doc = self.claim_version(name, &id, next, value, tags, description, now).await?;
        if let Err(e) = self.advance_head(name, &id, head, &doc).await {
            // All or nothing. A failed head write may still have landed
            // (its answer lost): then the put did happen. Otherwise take the
            // claimed version back; when even that is unclear, leave it.
            match self.read_head(name, &id).await {
                Ok(Some(head)) if head.doc.write_id == doc.write_id => {}
                Ok(_) => {
                    let undo = self.requests.delete_version(&id, doc.version);
                    if let Err(undo_error) = self.client.send(&undo, &format!("undoing a failed write of {name}")).await
                    {
                        tracing::warn!(secret = %name, version = doc.version, error = %undo_error, "could not remove the version of a failed put");
                    }
                    return Err(e);
                }
                Err(_) => return Err(e),
            }
        }
        Ok(Version(doc.version.to_string()))
    }

    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        let id = secret_id(name);
        let what = format!("deleting secret {name}");
        // The head first: from then on the secret is gone for get and list,
        // even if removing its versions fails halfway.
        let reply = self.client.send(&self.requests.delete_head(&id), &what).await?;
        let head_found = match reply.status {
            200 => true,
            404 => false,
            _ => return Err(reply.into_error(&what)),
        };
        let reply = self.client.send(&self.requests.delete_versions(&id)?, &what).await?;
        let deleted = match reply.status {
            200 => reply.parse::<model::DeleteByQueryReply>(&what)?.deleted,
            404 => 0,
            _ => return Err(reply.into_error(&what)),
        };
        if !head_found && deleted == 0 {
            return Err(StoreError::not_found(name));
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
        let size = page.size.clamp(1, MAX_PAGE);
        let mut cursor =
            page.token.as_deref().map(secretd_core::key_after_token).transpose()?.map(|k| k.as_str().to_owned());
        let what = format!("listing namespace {namespace}");
        // The server filters on tags; the answer is checked again here, and
        // in batches until the page plus one item (which says whether a
        // next page exists) is found or the namespace runs out.
        let batch = size + 1;
        let mut items: Vec<SecretMetadata> = Vec::with_capacity(batch);
        loop {
            let call =
                self.requests.search_heads(tenant.as_str(), namespace.as_str(), filter, cursor.as_deref(), batch)?;
            let reply = self.client.send(&call, &what).await?;
            if reply.status == 404 {
                // No index, no secrets.
                break;
            }
            if !reply.is_success() {
                return Err(reply.into_error(&what));
            }
            let hits = reply.parse::<SearchReply<Summary>>(&what)?.hits.hits;
            let exhausted = hits.len() < batch;
            for hit in hits {
                let summary = hit.source;
                let key = Key::parse(&summary.key).map_err(|_| {
                    StoreError::corrupt(format!("namespace {namespace} holds a document with an invalid key"))
                })?;
                cursor = Some(summary.key.clone());
                if summary.tenant != tenant.as_str()
                    || summary.namespace != namespace.as_str()
                    || !summary.tags.contains_all(filter)
                {
                    continue;
                }
                items.push(SecretMetadata {
                    name: SecretName::new(tenant.clone(), namespace.clone(), key),
                    version: Version(summary.version.to_string()),
                    tags: summary.tags,
                    created_at: from_millis(summary.created_at),
                    updated_at: from_millis(summary.updated_at),
                });
                if items.len() > size {
                    break;
                }
            }
            if items.len() > size || exhausted {
                break;
            }
        }
        Ok(Page::cut(items, size, |last| secretd_core::key_page_token(&last.name.key)))
    }

    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        let size = page.size.clamp(1, MAX_PAGE);
        let mut cursor = page.token.as_deref().map(secretd_core::name_after_token).transpose()?;
        let what = "scanning the secrets";
        let tenant = selection.tenant.as_ref().map(Tenant::as_str);
        let namespace = selection.namespace.as_ref().map(Namespace::as_str);
        // As for a listing: in batches until the page plus one item is
        // found or the selection runs out.
        let batch = size + 1;
        let mut items: Vec<SecretMetadata> = Vec::with_capacity(batch);
        loop {
            let after = cursor.as_ref().map(|n| [n.tenant.as_str(), n.namespace.as_str(), n.key.as_str()]);
            let call = self.requests.scan_heads(tenant, namespace, after, batch)?;
            let reply = self.client.send(&call, what).await?;
            if reply.status == 404 {
                break;
            }
            if !reply.is_success() {
                return Err(reply.into_error(what));
            }
            let hits = reply.parse::<SearchReply<Summary>>(what)?.hits.hits;
            let exhausted = hits.len() < batch;
            for hit in hits {
                let summary = hit.source;
                let name = SecretName::parse(&summary.tenant, &summary.namespace, &summary.key)
                    .map_err(|_| StoreError::corrupt("the index holds a secret document with an invalid name"))?;
                if cursor.as_ref().is_some_and(|c| &name <= c) {
                    return Err(unexpected(what, "the search went backwards"));
                }
                cursor = Some(name.clone());
                if !selection.admits(&name) {
                    continue;
                }
                items.push(SecretMetadata {
                    name,
                    version: Version(summary.version.to_string()),
                    tags: summary.tags,
                    created_at: from_millis(summary.created_at),
                    updated_at: from_millis(summary.updated_at),
                });
                if items.len() > size {
                    break;
                }
            }
            if items.len() > size || exhausted {
                break;
            }
        }
        Ok(Page::cut(items, size, |last| secretd_core::name_page_token(&last.name)))
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        const CHUNK: u64 = 500;
        let id = secret_id(name);
        let head = self.read_head(name, &id).await?.ok_or_else(|| StoreError::not_found(name))?;
        let what = format!("listing the versions of {name}");
        let mut versions = Vec::new();
        let mut first = 1;
        while first <= head.doc.version {
            let last = head.doc.version.min(first + CHUNK - 1);
            let ids: Vec<String> = (first..=last).map(|n| model::version_id(&id, n)).collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let reply = self.client.send(&self.requests.mget(&ids, &id)?, &what).await?;
            if !reply.is_success() {
                return Err(reply.into_error(&what));
            }
            let got: MgetReply<Doc> = reply.parse(&what)?;
            for entry in got.docs {
                if let Some(error) = &entry.error {
                    return Err(StoreError::unavailable(format!(
                        "elasticsearch could not read a document while {what}{}",
                        ServerError::from_error(error).detail()
                    )));
                }
                if let Some(doc) = entry.source.filter(|d| entry.found && d.is_for(name, VERSION)) {
                    versions.push(doc.version);
                }
            }
            first = last + 1;
        }
        versions.sort_unstable();
        Ok(versions.into_iter().map(|n| Version(n.to_string())).collect())
    }

    async fn health(&self) -> Result<(), StoreError> {
        let what = format!("checking index {}", self.requests.index());
        let reply = self.client.send(&self.requests.probe(), &what).await?;
        if reply.is_success() {
            return Ok(());
        }
        let mut error = reply.into_error(&what);
        // A missing index is an outage here, not a missing secret.
        if error.kind() == ErrorKind::NotFound {
            error = StoreError::unavailable(error.message());
        }
        Err(error)
    }
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}
