//! The index layout: which documents exist, their ids, the mapping, and
//! the request for each operation.
//!
//! Every secret has one **head** document and one **version** document per
//! version, all in one index:
//!
//! - The head's id is the SHA-256 (hex) of the length-prefixed tenant,
//!   namespace and key, so every valid name fits Elasticsearch's 512-byte
//!   id limit and no two names share an id. It holds the latest version's
//!   number, sealed value, tags and times, so reading the latest version is
//!   one real-time GET, and listing searches heads only. Its sequence
//!   number is what concurrent writers compare-and-set.
//! - A version's id is `<head id>.<version>`, created with `op_type=create`:
//!   the server hands each version number to exactly one writer.
//!
//! All documents of a secret are routed by the head id, so they share a
//! shard. That lets a put ask for `refresh=wait_for` once, on the head (its
//! last write), and still leave the version documents searchable for a
//! following delete-by-query, instead of waiting for a refresh twice.
//!
//! Tags are stored twice: as an object (not indexed; read back as written)
//! and as `tag_terms`, one keyword `["key","value"]` per tag (JSON, so no
//! character of a key or value can make two pairs alike), which exact term
//! filters match. The sealed value is a `binary` field: stored, never
//! indexed.
//!
//! The functions here only build [`Call`]s; they are pure so that tests can
//! check, without a server, what each write asks of the cluster.

use reqwest::Method;
use secretd_core::{ErrorKind, SecretName, StoreError, Tags};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::client::Call;

pub(crate) const HEAD: &str = "head";
pub(crate) const VERSION: &str = "version";

/// Fields the store cannot work without, and the type each must have.
pub(crate) const REQUIRED_FIELDS: &[(&str, &str)] = &[
    ("doc_type", "keyword"),
    ("secret_id", "keyword"),
    ("tenant", "keyword"),
    ("namespace", "keyword"),
    ("key", "keyword"),
    ("tag_terms", "keyword"),
    ("version", "long"),
];

/// The mapping secretd creates its index with.
pub(crate) fn mapping() -> serde_json::Value {
    let keyword = json!({"type": "keyword"});
    let date = json!({"type": "date", "format": "epoch_millis"});
    json!({
        "mappings": {
            // A document with a field secretd did not define is a bug or
            // somebody else's data: refuse it rather than guess a type.
            "dynamic": "strict",
            "properties": {
                "doc_type": keyword,
                "secret_id": keyword,
                "tenant": keyword,
                "namespace": keyword,
                "key": keyword,
                "version": {"type": "long"},
                "tags": {"type": "object", "enabled": false},
                "tag_terms": keyword,
                "sealed": {"type": "binary"},
                "key_id": keyword,
                "description": {"type": "text", "index": false},
                "created_at": date,
                "updated_at": date,
                "write_id": {"type": "keyword", "index": false, "doc_values": false}
            }
        }
    })
}

/// A head or version document, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Doc {
    pub doc_type: String,
    pub secret_id: String,
    pub tenant: String,
    pub namespace: String,
    pub key: String,
    pub version: u64,
    pub tags: Tags,
    pub tag_terms: Vec<String>,
    /// Base64 of the envelope (`binary` fields travel as base64).
    pub sealed: String,
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Head: when the secret was first written. Version: when it was.
    pub created_at: i64,
    /// When this version (the latest, on a head) was written.
    pub updated_at: i64,
    /// A random id of the put that wrote this version (and, on a head, the
    /// put that made it the head), so a put whose answer was lost can tell
    /// its own write from a rival's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_id: Option<String>,
}

impl Doc {
    /// Whether this document belongs to `name`. The ids make a mismatch
    /// practically impossible; checking costs nothing and turns a
    /// tampered or foreign document into an error instead of a wrong answer.
    pub fn is_for(&self, name: &SecretName, doc_type: &str) -> bool {
        self.doc_type == doc_type
            && self.tenant == name.tenant.as_str()
            && self.namespace == name.namespace.as_str()
            && self.key == name.key.as_str()
    }
}

/// What a listing needs of a head: everything but the value.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Summary {
    pub tenant: String,
    pub namespace: String,
    pub key: String,
    pub version: u64,
    pub tags: Tags,
    pub created_at: i64,
    pub updated_at: i64,
}

pub(crate) const SUMMARY_FIELDS: &[&str] =
    &["tenant", "namespace", "key", "version", "tags", "created_at", "updated_at"];

/// The answer to a GET by id, and each entry of an `_mget`.
#[derive(Debug, Deserialize)]
pub(crate) struct GetReply<T> {
    #[serde(default)]
    pub found: bool,
    #[serde(rename = "_seq_no")]
    pub seq_no: Option<i64>,
    #[serde(rename = "_primary_term")]
    pub primary_term: Option<i64>,
    #[serde(rename = "_source")]
    pub source: Option<T>,
    /// Set on an `_mget` entry that failed (a missing index, say).
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MgetReply<T> {
    pub docs: Vec<GetReply<T>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchReply<T> {
    pub hits: SearchHits<T>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchHits<T> {
    pub hits: Vec<SearchHit<T>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchHit<T> {
    #[serde(rename = "_source")]
    pub source: T,
}

/// A hit of the re-seal's walk over every document: the whole document,
/// what a compare-and-set needs, and the sort values to page on.
#[derive(Debug, Deserialize)]
pub(crate) struct StoredHit {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_seq_no")]
    pub seq_no: i64,
    #[serde(rename = "_primary_term")]
    pub primary_term: i64,
    #[serde(rename = "_source")]
    pub source: Doc,
    pub sort: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WalkReply {
    pub hits: WalkHits,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WalkHits {
    pub hits: Vec<StoredHit>,
}

/// The answer to a `_bulk`: one entry per action, in order.
#[derive(Debug, Deserialize)]
pub(crate) struct BulkReply {
    pub items: Vec<BulkItem>,
}

/// One `_bulk` entry; every action the re-seal sends is an `index`.
#[derive(Debug, Deserialize)]
pub(crate) struct BulkItem {
    pub index: BulkResult,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BulkResult {
    pub status: u16,
    #[serde(rename = "_seq_no")]
    pub seq_no: Option<i64>,
    #[serde(rename = "_primary_term")]
    pub primary_term: Option<i64>,
    pub error: Option<serde_json::Value>,
}

/// A document to replace, only if it is still at (`seq_no`, `primary_term`).
pub(crate) struct Replacement<'a> {
    pub id: &'a str,
    pub seq_no: i64,
    pub primary_term: i64,
    pub doc: &'a Doc,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeleteByQueryReply {
    #[serde(default)]
    pub deleted: u64,
}

/// The head id of `name`: SHA-256 over length-prefixed parts, so that no
/// two names (tenant/namespace/key boundaries included) encode alike.
pub(crate) fn secret_id(name: &SecretName) -> String {
    let mut hash = Sha256::new();
    hash.update(b"secretd/es/v1");
    for part in [name.tenant.as_str(), name.namespace.as_str(), name.key.as_str()] {
        hash.update((part.len() as u32).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn version_id(secret_id: &str, version: u64) -> String {
    format!("{secret_id}.{version}")
}

/// One keyword term per tag; see the module docs.
pub(crate) fn tag_term(key: &str, value: &str) -> String {
    // Serialising two strings cannot fail.
    serde_json::to_string(&[key, value]).unwrap_or_default()
}

pub(crate) fn tag_terms(tags: &Tags) -> Vec<String> {
    tags.iter().map(|(k, v)| tag_term(k, v)).collect()
}

/// A pinned version as this store writes them: `1`, `2`, ... in canonical
/// decimal. `01`, `+1`, ` 1` or `1.0` name no version, rather than an alias.
pub(crate) fn parse_version(raw: &str) -> Option<u64> {
    let n: u64 = raw.parse().ok()?;
    (n > 0 && n.to_string() == raw).then_some(n)
}

/// Checks an index name against Elasticsearch's rules, narrowed to
/// characters that need no escaping in a URL path.
pub(crate) fn validate_index(index: &str) -> Result<(), StoreError> {
    let bad = |why: &str| {
        Err(StoreError::new(ErrorKind::InvalidName, format!("index: {index:?} is not a valid index name: {why}")))
    };
    if index.is_empty() || index.len() > 255 {
        return bad("it must be 1 to 255 characters long");
    }
    if index == "." || index == ".." {
        return bad("it cannot be . or ..");
    }
    if index.starts_with(['-', '_', '+']) {
        return bad("it cannot start with -, _ or +");
    }
    if !index.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'+')) {
        return bad("use lowercase letters, digits, '.', '_', '-' and '+'");
    }
    Ok(())
}

/// The requests against one index.
#[derive(Debug, Clone)]
pub(crate) struct Requests {
    index: String,
}

impl Requests {
    pub fn new(index: &str) -> Result<Self, StoreError> {
        validate_index(index)?;
        Ok(Self { index: index.to_owned() })
    }

    pub fn index(&self) -> &str {
        &self.index
    }

    fn doc(&self, method: Method, id: &str, routing: &str) -> Call {
        Call::new(method, format!("/{}/_doc/{id}", self.index)).query("routing", routing)
    }

    pub fn create_index(&self) -> Result<Call, StoreError> {
        Call::new(Method::PUT, format!("/{}", self.index)).json(&mapping())
    }

    pub fn get_mapping(&self) -> Call {
        Call::new(Method::GET, format!("/{}/_mapping", self.index))
    }

    /// A cheap request that needs the same privileges as the store's reads
    /// and fails when the index is gone.
    pub fn probe(&self) -> Call {
        Call::new(Method::GET, format!("/{}/_count", self.index))
    }

    pub fn get(&self, id: &str, routing: &str) -> Call {
        self.doc(Method::GET, id, routing)
    }

    pub fn mget(&self, ids: &[&str], routing: &str) -> Result<Call, StoreError> {
        let docs: Vec<_> = ids.iter().map(|id| json!({"_id": id, "routing": routing})).collect();
        Call::new(Method::POST, format!("/{}/_mget", self.index)).json(&json!({ "docs": docs }))
    }

    /// A new version document. No refresh: the head write that follows
    /// on the same shard waits for one that covers both.
    pub fn create_version(&self, doc: &Doc) -> Result<Call, StoreError> {
        self.doc(Method::PUT, &version_id(&doc.secret_id, doc.version), &doc.secret_id)
            .query("op_type", "create")
            .json(doc)
    }

    /// The first head of a secret; fails with 409 if another writer made one.
    pub fn create_head(&self, doc: &Doc) -> Result<Call, StoreError> {
        self.doc(Method::PUT, &doc.secret_id, &doc.secret_id)
            .query("op_type", "create")
            .query("refresh", "wait_for")
            .json(doc)
    }

    /// Replaces the head only if nobody wrote it since it was read at
    /// (`seq_no`, `primary_term`); 409 otherwise.
    pub fn replace_head(&self, doc: &Doc, seq_no: i64, primary_term: i64) -> Result<Call, StoreError> {
        self.doc(Method::PUT, &doc.secret_id, &doc.secret_id)
            .query("if_seq_no", seq_no.to_string())
            .query("if_primary_term", primary_term.to_string())
            .query("refresh", "wait_for")
            .json(doc)
    }

    pub fn delete_head(&self, secret_id: &str) -> Call {
        self.doc(Method::DELETE, secret_id, secret_id).query("refresh", "wait_for")
    }

    /// Takes back a version document whose put then failed.
    pub fn delete_version(&self, secret_id: &str, version: u64) -> Call {
        self.doc(Method::DELETE, &version_id(secret_id, version), secret_id).query("refresh", "wait_for")
    }

    /// Every version document of a secret. `refresh=true`: delete-by-query
    /// has no `wait_for`, and the deletions must be visible at once.
    pub fn delete_versions(&self, secret_id: &str) -> Result<Call, StoreError> {
        Call::new(Method::POST, format!("/{}/_delete_by_query", self.index))
            .query("routing", secret_id)
            .query("refresh", "true")
            .query("conflicts", "proceed")
            .json(&json!({"query": {"bool": {"filter": [
                {"term": {"doc_type": VERSION}},
                {"term": {"secret_id": secret_id}}
            ]}}}))
    }

    /// Makes every write so far visible to search, so that a re-seal's
    /// walk sees the documents a previous run rewrote as they are now.
    pub fn refresh(&self) -> Call {
        Call::new(Method::POST, format!("/{}/_refresh", self.index))
    }

    /// Every document, heads and versions, in a fixed order (secret, then
    /// head before versions, then version number), after the sort values
    /// `after` of the previous page.
    pub fn search_all(&self, after: Option<&[serde_json::Value]>, size: usize) -> Result<Call, StoreError> {
        let mut body = json!({
            "size": size,
            "track_total_hits": false,
            "seq_no_primary_term": true,
            "query": {"match_all": {}},
            "sort": [{"secret_id": "asc"}, {"doc_type": "asc"}, {"version": "asc"}],
        });
        if let Some(after) = after {
            body["search_after"] = json!(after);
        }
        Call::new(Method::POST, format!("/{}/_search", self.index)).json(&body)
    }

    /// Replaces each document only if nobody wrote it since it was read
    /// (409 per item otherwise), and waits until the writes are searchable:
    /// a delete-by-query that starts after this answer then sees them.
    pub fn bulk_replace(&self, replacements: &[Replacement<'_>]) -> Result<Call, StoreError> {
        let mut body = Vec::new();
        for r in replacements {
            let action = json!({"index": {
                "_id": r.id,
                "routing": r.doc.secret_id,
                "if_seq_no": r.seq_no,
                "if_primary_term": r.primary_term,
            }});
            for line in [&action, &serde_json::to_value(r.doc).map_err(encode_error)?] {
                serde_json::to_writer(&mut body, line).map_err(encode_error)?;
                body.push(b'\n');
            }
        }
        let mut call = Call::new(Method::POST, format!("/{}/_bulk", self.index)).query("refresh", "wait_for");
        call.body = Some(body);
        Ok(call)
    }

    /// The heads of several secrets, each routed by its own id.
    pub fn mget_heads(&self, secret_ids: &[&str]) -> Result<Call, StoreError> {
        let docs: Vec<_> = secret_ids.iter().map(|id| json!({"_id": id, "routing": id})).collect();
        Call::new(Method::POST, format!("/{}/_mget", self.index)).json(&json!({ "docs": docs }))
    }

    /// Deletes a document only if it is still at (`seq_no`, `primary_term`).
    pub fn delete_if(&self, id: &str, routing: &str, seq_no: i64, primary_term: i64) -> Call {
        self.doc(Method::DELETE, id, routing)
            .query("if_seq_no", seq_no.to_string())
            .query("if_primary_term", primary_term.to_string())
    }

    /// Heads of one namespace carrying every tag of `filter`, by key, after
    /// the key `after`.
    pub fn search_heads(
        &self,
        tenant: &str,
        namespace: &str,
        filter: &Tags,
        after: Option<&str>,
        size: usize,
    ) -> Result<Call, StoreError> {
        let mut must = vec![
            json!({"term": {"doc_type": HEAD}}),
            json!({"term": {"tenant": tenant}}),
            json!({"term": {"namespace": namespace}}),
        ];
        must.extend(filter.iter().map(|(k, v)| json!({"term": {"tag_terms": tag_term(k, v)}})));
        let mut body = json!({
            "size": size,
            "track_total_hits": false,
            "_source": {"includes": SUMMARY_FIELDS},
            "query": {"bool": {"filter": must}},
            "sort": [{"key": "asc"}],
        });
        if let Some(after) = after {
            body["search_after"] = json!([after]);
        }
        Call::new(Method::POST, format!("/{}/_search", self.index)).json(&body)
    }
}

impl Requests {
    /// Heads of a scan's selection in name order, after the name `after`.
    /// A namespace selects itself by term and its descendants by the
    /// prefix `namespace.`; the store checks every answer again.
    pub fn scan_heads(
        &self,
        tenant: Option<&str>,
        namespace: Option<&str>,
        after: Option<[&str; 3]>,
        size: usize,
    ) -> Result<Call, StoreError> {
        let mut must = vec![json!({"term": {"doc_type": HEAD}})];
        if let Some(tenant) = tenant {
            must.push(json!({"term": {"tenant": tenant}}));
        }
        if let Some(namespace) = namespace {
            must.push(json!({"bool": {
                "should": [
                    {"term": {"namespace": namespace}},
                    {"prefix": {"namespace": format!("{namespace}.")}},
                ],
                "minimum_should_match": 1,
            }}));
        }
        let mut body = json!({
            "size": size,
            "track_total_hits": false,
            "_source": {"includes": SUMMARY_FIELDS},
            "query": {"bool": {"filter": must}},
            "sort": [{"tenant": "asc"}, {"namespace": "asc"}, {"key": "asc"}],
        });
        if let Some(after) = after {
            body["search_after"] = json!(after);
        }
        Call::new(Method::POST, format!("/{}/_search", self.index)).json(&body)
    }
}

fn encode_error(e: serde_json::Error) -> StoreError {
    StoreError::internal("cannot encode an elasticsearch request").with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Doc {
        Doc {
            doc_type: VERSION.into(),
            secret_id: "abc".into(),
            tenant: "main".into(),
            namespace: "a".into(),
            key: "k".into(),
            version: 3,
            tags: Tags::new(),
            tag_terms: Vec::new(),
            sealed: "AAAA".into(),
            key_id: "00".into(),
            description: None,
            created_at: 1,
            updated_at: 1,
            write_id: Some("w".into()),
        }
    }

    /// The README documents the head id so outside clients can find a
    /// document; its worked example must be what this code computes.
    #[test]
    fn readme_head_id_example_matches_the_code() {
        let readme = include_str!("../../../README.md");
        let name = SecretName::parse("acme", "company.team", "db/password").unwrap();
        let id = secret_id(&name);
        assert_eq!(id.len(), 64);
        assert!(readme.contains(&format!("has head id\n`{id}`")), "README example is not {id}");
    }

    /// osmem-server makes every write searchable at once, so the suite
    /// cannot catch a missing refresh; this test does.
    #[test]
    fn writes_a_following_read_or_list_depends_on_ask_for_a_refresh() {
        let requests = Requests::new("secretd-secrets").unwrap();
        let head = Doc { doc_type: HEAD.into(), write_id: None, ..doc() };
        for call in [
            requests.create_head(&head).unwrap(),
            requests.replace_head(&head, 4, 1).unwrap(),
            requests.delete_head("abc"),
            requests.delete_version("abc", 3),
        ] {
            assert_eq!(call.param("refresh"), Some("wait_for"), "{} {}", call.method, call.path);
            assert_eq!(call.param("routing"), Some("abc"), "{} {}", call.method, call.path);
        }
        let dbq = requests.delete_versions("abc").unwrap();
        assert_eq!(dbq.param("refresh"), Some("true"));
        assert_eq!(dbq.param("routing"), Some("abc"));
        // The version document is made visible by the head's refresh, which
        // only covers it if both live on the same shard.
        let version = requests.create_version(&doc()).unwrap();
        assert_eq!(version.param("routing"), Some("abc"));
        assert_eq!(version.param("op_type"), Some("create"));
        assert_eq!(version.path, "/secretd-secrets/_doc/abc.3");
        let cas = requests.replace_head(&head, 4, 1).unwrap();
        assert_eq!((cas.param("if_seq_no"), cas.param("if_primary_term")), (Some("4"), Some("1")));
        assert_eq!(requests.create_head(&head).unwrap().param("op_type"), Some("create"));
    }

    #[test]
    fn reseal_writes_are_compare_and_set_and_searchable_on_return() {
        let requests = Requests::new("i").unwrap();
        let version = doc();
        let head = Doc { doc_type: HEAD.into(), ..doc() };
        let call = requests
            .bulk_replace(&[
                Replacement { id: "abc.3", seq_no: 7, primary_term: 2, doc: &version },
                Replacement { id: "abc", seq_no: 9, primary_term: 2, doc: &head },
            ])
            .unwrap();
        assert_eq!(call.param("refresh"), Some("wait_for"));
        let body = String::from_utf8(call.body.unwrap()).unwrap();
        let lines: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            json!({"index": {"_id": "abc.3", "routing": "abc", "if_seq_no": 7, "if_primary_term": 2}})
        );
        assert_eq!(lines[3]["doc_type"], json!(HEAD));
        let delete = requests.delete_if("abc.3", "abc", 8, 2);
        assert_eq!((delete.param("if_seq_no"), delete.param("routing")), (Some("8"), Some("abc")));
        let walk = requests.search_all(Some(&[json!("abc"), json!("head"), json!(3)]), 10).unwrap();
        let body: serde_json::Value = serde_json::from_slice(walk.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["seq_no_primary_term"], json!(true));
        assert_eq!(body["search_after"], json!(["abc", "head", 3]));
    }

    #[test]
    fn secret_ids_keep_names_apart() {
        let a = SecretName::parse("t", "ns.x", "y.z").unwrap();
        let b = SecretName::parse("t", "ns.x.y", "z").unwrap();
        let c = SecretName::parse("t2", "ns.x", "y.z").unwrap();
        assert_ne!(secret_id(&a), secret_id(&b));
        assert_ne!(secret_id(&a), secret_id(&c));
        assert_eq!(secret_id(&a), secret_id(&a.clone()));
        assert_eq!(secret_id(&a).len(), 64);
    }

    #[test]
    fn tag_terms_are_injective() {
        assert_ne!(tag_term("a=b", "c"), tag_term("a", "b=c"));
        assert_ne!(tag_term("a\",\"b", "c"), tag_term("a", "b\",\"c"));
        assert_eq!(tag_term("env", "prod"), r#"["env","prod"]"#);
    }

    #[test]
    fn only_canonical_versions_parse() {
        assert_eq!(parse_version("1"), Some(1));
        assert_eq!(parse_version("42"), Some(42));
        for bad in ["0", "01", "+1", " 1", "1 ", "1.0", "-1", "", "x", "99999999999999999999999"] {
            assert_eq!(parse_version(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn index_names() {
        assert!(validate_index("secretd-secrets").is_ok());
        assert!(validate_index("a.b_c+1").is_ok());
        for bad in ["", ".", "..", "-x", "_x", "Upper", "a b", "a/b", "a?b", "a#b", &"x".repeat(256)] {
            let err = validate_index(bad).unwrap_err();
            assert!(err.message().starts_with("index:"), "{}", err.message());
        }
    }

    #[test]
    fn list_query_filters_every_tag() {
        let requests = Requests::new("i").unwrap();
        let filter: Tags = [("env", "prod"), ("team", "a")].into_iter().collect();
        let call = requests.search_heads("main", "ns", &filter, Some("k1"), 11).unwrap();
        let body: serde_json::Value = serde_json::from_slice(call.body.as_deref().unwrap()).unwrap();
        let filters = body["query"]["bool"]["filter"].as_array().unwrap();
        assert!(filters.contains(&json!({"term": {"tag_terms": "[\"env\",\"prod\"]"}})));
        assert!(filters.contains(&json!({"term": {"tag_terms": "[\"team\",\"a\"]"}})));
        assert!(filters.contains(&json!({"term": {"namespace": "ns"}})));
        assert_eq!(body["search_after"], json!(["k1"]));
        assert_eq!(body["sort"], json!([{"key": "asc"}]));
        assert!(!body["_source"]["includes"].as_array().unwrap().contains(&json!("sealed")));
    }
}
