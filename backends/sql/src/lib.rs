//! The SQL store (`secret.type: jdbc`): SQLite, PostgreSQL and
//! MySQL/MariaDB through sqlx, chosen by the URL scheme.
//!
//! One table holds every version of every secret. Values are sealed with
//! the shared AES-256-GCM [`Envelope`] before they reach the database, bound
//! to their name and version, so neither the database files nor a copied
//! row give a value away. Versions are `1`, `2`, ...; a put computes the next
//! number inside a transaction and, when a concurrent writer took it first
//! (duplicate key, deadlock, SQLite busy), runs the whole transaction again,
//! so no version is lost and none is written twice.
//!
//! The secret can be rotated: a [`Keyring`] opens values sealed under the
//! current secret or any previous one, and [`Reseal`] rewrites the old ones
//! under the current secret, each with a compare-and-set on the ciphertext
//! it read, so a concurrent put or delete is never undone.
//!
//! Queries go through sqlx's `Any` driver so each is written once; the
//! differences between databases (placeholders, migrations, conflict
//! errors) live in `dialect.rs`.

pub mod dialect;

use std::{
    fmt,
    sync::Once,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use secretd_core::{
    Capabilities, ErrorKind, Key, Keyring, KeyringError, Namespace, Page, PageRequest, Reseal, ResealFailure,
    ResealOutcome, ResealProgressFn, ResealReport, ScanSelection, Secret, SecretMetadata, SecretName, SecretStore,
    SecretValue, StoreError, Tags, Tenant, Version,
};
use sqlx::{any::AnyPoolOptions, migrate::Migrator, AnyPool, Row};

use crate::dialect::database_error_kind;
pub use crate::dialect::{is_write_conflict, Dialect};

/// How often a put is retried after losing a race with another writer.
const MAX_WRITE_ATTEMPTS: u32 = 50;
/// How many rows a re-seal reads, and rewrites in one transaction, at a
/// time: large enough to keep round trips few, small enough that the write
/// lock (all of SQLite) is held for milliseconds only.
const RESEAL_BATCH: i64 = 500;

/// Pool settings.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    pub max_connections: u32,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self { max_connections: 10 }
    }
}

/// Why the store could not start.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("url: unsupported scheme; use sqlite:, postgres:, postgresql:, mysql: or mariadb:")]
    Scheme,
    /// `secret` or `previous-secrets[i]` is unusable.
    #[error(transparent)]
    Secret(#[from] KeyringError),
    #[error("url: cannot connect to the {dialect} database: {source}")]
    Connect {
        dialect: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the {dialect} database failed: {source}")]
    Migrate {
        dialect: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// The queries, with placeholders in the dialect's syntax.
struct Queries {
    get_latest: String,
    get_version: String,
    next_version: String,
    insert: String,
    delete: String,
    list: String,
    versions: String,
    /// The scans by what the selection fixes: `[tenant][namespace]`.
    scans: [[String; 2]; 2],
    count_all: String,
    first_ciphertext: String,
    reseal_batch: String,
    reseal_update: String,
}

impl Queries {
    fn new(d: Dialect) -> Self {
        // The first creation time of a secret is the oldest version's.
        const FIRST_CREATED: &str = "(SELECT MIN(w.created_at) FROM secretd_secret_versions w \
             WHERE w.tenant = v.tenant AND w.namespace = v.namespace AND w.secret_key = v.secret_key)";
        Self {
            get_latest: d.sql(&format!(
                "SELECT v.version, v.ciphertext, v.tags, v.created_at, {FIRST_CREATED} AS first_created \
                 FROM secretd_secret_versions v WHERE v.tenant = ? AND v.namespace = ? AND v.secret_key = ? \
                 ORDER BY v.version DESC LIMIT 1"
            )),
            get_version: d.sql(&format!(
                "SELECT v.version, v.ciphertext, v.tags, v.created_at, {FIRST_CREATED} AS first_created \
                 FROM secretd_secret_versions v WHERE v.tenant = ? AND v.namespace = ? AND v.secret_key = ? \
                 AND v.version = ?"
            )),
            next_version: d.sql(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM secretd_secret_versions \
                 WHERE tenant = ? AND namespace = ? AND secret_key = ?",
            ),
            insert: d.sql(
                "INSERT INTO secretd_secret_versions \
                 (tenant, namespace, secret_key, version, ciphertext, tags, description, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            delete: d.sql("DELETE FROM secretd_secret_versions WHERE tenant = ? AND namespace = ? AND secret_key = ?"),
            list: d.sql(&format!(
                "SELECT v.secret_key, v.version, v.tags, v.created_at, {FIRST_CREATED} AS first_created \
                 FROM secretd_secret_versions v WHERE v.tenant = ? AND v.namespace = ? AND v.secret_key > ? \
                 AND v.version = (SELECT MAX(m.version) FROM secretd_secret_versions m \
                   WHERE m.tenant = v.tenant AND m.namespace = v.namespace AND m.secret_key = v.secret_key) \
                 ORDER BY v.secret_key LIMIT ?"
            )),
            versions: d.sql(
                "SELECT version FROM secretd_secret_versions WHERE tenant = ? AND namespace = ? AND secret_key = ? \
                 ORDER BY version",
            ),
            scans: [false, true].map(|tenant| [false, true].map(|namespace| d.sql(&scan_query(tenant, namespace)))),
            count_all: d.sql("SELECT COUNT(*) FROM secretd_secret_versions"),
            first_ciphertext: d.sql(
                "SELECT ciphertext FROM secretd_secret_versions \
                 ORDER BY tenant, namespace, secret_key, version LIMIT 1",
            ),
            // Keyset paging over the primary key, so rows written meanwhile
            // neither shift the pages nor make the run start over.
            reseal_batch: d.sql(
                "SELECT tenant, namespace, secret_key, version, ciphertext FROM secretd_secret_versions \
                 WHERE (tenant, namespace, secret_key, version) > (?, ?, ?, ?) \
                 ORDER BY tenant, namespace, secret_key, version LIMIT ?",
            ),
            // The old ciphertext in the WHERE is the compare-and-set: a row
            // deleted, or deleted and written again, since it was read
            // matches nothing and is left alone.
            reseal_update: d.sql(
                "UPDATE secretd_secret_versions SET ciphertext = ? \
                 WHERE tenant = ? AND namespace = ? AND secret_key = ? AND version = ? AND ciphertext = ?",
            ),
        }
    }
}

/// The latest version of each secret after a cursor name, in name order.
/// The cursor is spelled out rather than as a row-value comparison, which
/// not every supported database version optimises. The namespace and its
/// descendants are a range: names hold no character between `.` and `/`,
/// so everything below `ns` sorts between `ns.` and `ns/`, in the byte
/// order each table's collation uses.
fn scan_query(by_tenant: bool, by_namespace: bool) -> String {
    const FIRST_CREATED: &str = "(SELECT MIN(w.created_at) FROM secretd_secret_versions w \
         WHERE w.tenant = v.tenant AND w.namespace = v.namespace AND w.secret_key = v.secret_key)";
    let tenant = if by_tenant { "AND v.tenant = ? " } else { "" };
    let namespace = if by_namespace { "AND (v.namespace = ? OR (v.namespace > ? AND v.namespace < ?)) " } else { "" };
    format!(
        "SELECT v.tenant, v.namespace, v.secret_key, v.version, v.tags, v.created_at, {FIRST_CREATED} AS first_created \
         FROM secretd_secret_versions v \
         WHERE (v.tenant > ? OR (v.tenant = ? AND (v.namespace > ? OR (v.namespace = ? AND v.secret_key > ?)))) \
         {tenant}{namespace}\
         AND v.version = (SELECT MAX(m.version) FROM secretd_secret_versions m \
           WHERE m.tenant = v.tenant AND m.namespace = v.namespace AND m.secret_key = v.secret_key) \
         ORDER BY v.tenant, v.namespace, v.secret_key LIMIT ?"
    )
}

enum PrepareError {
    Pragma(sqlx::Error),
    Migrate(sqlx::migrate::MigrateError),
}

impl PrepareError {
    fn is_conflict(&self) -> bool {
        match self {
            PrepareError::Pragma(e) | PrepareError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => {
                is_write_conflict(e)
            }
            // Another process is applying that migration right now. On
            // MariaDB sqlx's migration lock is no lock at all (`GET_LOCK(name,
            // -1)` returns NULL there), so starting replicas see each other's
            // half-done bookkeeping; a migration left dirty by a crash still
            // fails once the attempts run out.
            PrepareError::Migrate(sqlx::migrate::MigrateError::Dirty(_)) => true,
            _ => false,
        }
    }

    fn into_sql_error(self, dialect: Dialect) -> SqlError {
        match self {
            PrepareError::Pragma(source) => SqlError::Connect { dialect: dialect.name(), source },
            PrepareError::Migrate(source) => SqlError::Migrate { dialect: dialect.name(), source },
        }
    }
}

/// Opens a pool on `url` and brings the database's schema up to date with
/// the migrations `migrations` gives for its dialect. Shared by the secret
/// store and the daemon's state store.
pub async fn open_pool(
    url: &str,
    options: &SqlOptions,
    migrations: impl Fn(Dialect) -> Migrator,
) -> Result<(AnyPool, Dialect), SqlError> {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
    let (dialect, url) = Dialect::of_url(url).ok_or(SqlError::Scheme)?;
    let url = match dialect {
        // Create the database file on first start.
        Dialect::Sqlite if !url.contains("mode=") => {
            create_private_sqlite_file(&url);
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        }
        _ => url,
    };
    let pool = AnyPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect(&url)
        .await
        .map_err(|source| SqlError::Connect { dialect: dialect.name(), source })?;
    let migrator = migrations(dialect);
    // Several daemons (or test processes) may start on one database at
    // once; preparing it is idempotent, so a lost race is tried again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match prepare(&pool, dialect, &migrator).await {
            Ok(()) => return Ok((pool, dialect)),
            Err(e) if attempt < 20 && e.is_conflict() => {
                tokio::time::sleep(Duration::from_millis(rand::random_range(20..=200))).await;
            }
            Err(e) => return Err(e.into_sql_error(dialect)),
        }
    }
}

/// Creates the database file of a SQLite `url` with mode 0600 if it does
/// not exist yet. SQLite would create it 0644 less the umask, and its
/// `-wal` and `-shm` files take the database file's mode, so this keeps all
/// three private to secretd's user. Failures are left to the connection to
/// report, and an in-memory database has no file.
fn create_private_sqlite_file(url: &str) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let Ok(options) = url.parse::<sqlx::sqlite::SqliteConnectOptions>() else { return };
    let path = options.get_filename();
    if url.contains(":memory:") || path.to_string_lossy().starts_with("file:") {
        return;
    }
    if let Ok(file) = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        // The umask may have taken the owner's bits too.
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
    }
}

/// Puts the database in shape: WAL for SQLite (kept in the file, lets
/// readers run beside a writer), then the embedded migrations.
async fn prepare(pool: &AnyPool, dialect: Dialect, migrator: &Migrator) -> Result<(), PrepareError> {
    if dialect == Dialect::Sqlite {
        sqlx::query("PRAGMA journal_mode = WAL").execute(pool).await.map_err(PrepareError::Pragma)?;
    }
    migrator.run(pool).await.map_err(PrepareError::Migrate)
}

/// Why one attempt at a put failed: the database (perhaps a lost race,
/// worth another attempt) or the encryption (never worth one).
enum PutError {
    Db(sqlx::Error),
    Seal(StoreError),
}

impl From<sqlx::Error> for PutError {
    fn from(e: sqlx::Error) -> Self {
        PutError::Db(e)
    }
}

/// The SQL [`SecretStore`].
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    keys: Keyring,
    queries: Queries,
}

impl fmt::Debug for SqlStore {
    // The URL may hold a password and the envelope a key: neither is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &self.dialect.name())
            .field("key_id", &self.keys.key_id())
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Connects, runs the embedded migrations, and derives the encryption
    /// key from `secret` (at least 32 characters).
    pub async fn connect(url: &str, secret: &str, options: SqlOptions) -> Result<Self, SqlError> {
        Self::connect_with_keys(url, Keyring::new(secret, &[])?, options).await
    }

    /// Like [`connect`](Self::connect), with the current and previous
    /// secrets in `keys`: values sealed under any of them open, new ones
    /// are sealed under the current one.
    pub async fn connect_with_keys(url: &str, keys: Keyring, options: SqlOptions) -> Result<Self, SqlError> {
        let (pool, dialect) = open_pool(url, &options, Dialect::secret_migrations).await?;
        Ok(Self { pool, dialect, keys, queries: Queries::new(dialect) })
    }

    pub fn dialect_name(&self) -> &'static str {
        self.dialect.name()
    }

    fn row_to_secret(&self, name: &SecretName, row: &sqlx::any::AnyRow) -> Result<Secret, StoreError> {
        let version: i64 = row.try_get(0).map_err(|e| db_error(name, e))?;
        let ciphertext: Vec<u8> = row.try_get(1).map_err(|e| db_error(name, e))?;
        let tags = text(row, 2).map_err(|e| db_error(name, e))?;
        let updated: i64 = row.try_get(3).map_err(|e| db_error(name, e))?;
        let created: i64 = row.try_get(4).map_err(|e| db_error(name, e))?;
        let version = version.to_string();
        let value = self.keys.open(name, &version, &ciphertext)?;
        Ok(Secret {
            metadata: SecretMetadata {
                name: name.clone(),
                version: Version(version),
                tags: parse_tags(name, &tags)?,
                created_at: from_millis(created),
                updated_at: from_millis(updated),
            },
            value,
        })
    }

    /// One attempt at a put: the next version number, sealed and inserted
    /// in one transaction.
    async fn try_put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &str,
        description: Option<&str>,
    ) -> Result<i64, PutError> {
        let mut tx = self.pool.begin().await?;
        let next: i64 = sqlx::query_scalar(&self.queries.next_version)
            .bind(name.tenant.as_str())
            .bind(name.namespace.as_str())
            .bind(name.key.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let sealed = self.keys.seal(name, &next.to_string(), value).map_err(PutError::Seal)?;
        sqlx::query(&self.queries.insert)
            .bind(name.tenant.as_str())
            .bind(name.namespace.as_str())
            .bind(name.key.as_str())
            .bind(next)
            .bind(sealed)
            .bind(tags)
            .bind(description.map(str::to_owned))
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(next)
    }
}

/// A stored row as a re-seal reads it.
struct StoredRow {
    tenant: String,
    namespace: String,
    key: String,
    version: i64,
    ciphertext: Vec<u8>,
}

impl StoredRow {
    fn read(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            tenant: text(row, 0)?,
            namespace: text(row, 1)?,
            key: text(row, 2)?,
            version: row.try_get(3)?,
            ciphertext: row.try_get(4)?,
        })
    }

    fn describe(&self) -> String {
        format!("secret {}/{}/{} version {}", self.tenant, self.namespace, self.key, self.version)
    }
}

/// A row whose new ciphertext is ready to be written.
struct Rewrite<'a> {
    row: &'a StoredRow,
    ciphertext: Vec<u8>,
}

impl SqlStore {
    /// What re-sealing `row` takes: nothing, a rewrite, or a failure.
    fn plan_reseal<'a>(&self, row: &'a StoredRow) -> Result<Option<Rewrite<'a>>, ResealFailure> {
        let failure = |reason: String| ResealFailure { item: row.describe(), reason };
        let name = SecretName::parse(&row.tenant, &row.namespace, &row.key)
            .map_err(|_| failure("the row's name breaks the naming rules".to_owned()))?;
        match self.keys.reseal(&name, &row.version.to_string(), &row.ciphertext) {
            Ok(None) => Ok(None),
            Ok(Some(ciphertext)) => Ok(Some(Rewrite { row, ciphertext })),
            Err(e) => Err(failure(e.message().to_owned())),
        }
    }

    /// Writes one batch of rewrites in a transaction; per rewrite, whether
    /// its compare-and-set matched.
    async fn write_rewrites(&self, rewrites: &[Rewrite<'_>]) -> Result<Vec<bool>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut matched = Vec::with_capacity(rewrites.len());
        for rewrite in rewrites {
            let row = rewrite.row;
            let result = sqlx::query(&self.queries.reseal_update)
                .bind(rewrite.ciphertext.clone())
                .bind(row.tenant.as_str())
                .bind(row.namespace.as_str())
                .bind(row.key.as_str())
                .bind(row.version)
                .bind(row.ciphertext.clone())
                .execute(&mut *tx)
                .await?;
            matched.push(result.rows_affected() > 0);
        }
        tx.commit().await?;
        Ok(matched)
    }
}

fn reseal_error(error: sqlx::Error) -> StoreError {
    classify(error, "database error while re-sealing".to_owned())
}

#[async_trait]
impl Reseal for SqlStore {
    fn current_key_id(&self) -> String {
        self.keys.key_id()
    }

    async fn check_keys(&self) -> Result<(), StoreError> {
        let first: Option<Vec<u8>> = sqlx::query_scalar(&self.queries.first_ciphertext)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| classify(e, "database error checking the stored key ids".to_owned()))?;
        match first.as_deref().and_then(|sealed| self.keys.unknown_key_id(sealed)) {
            Some(key_id) => Err(self.keys.unknown_key_error(&key_id)),
            None => Ok(()),
        }
    }

    async fn reseal(&self, progress: ResealProgressFn<'_>) -> Result<ResealReport, StoreError> {
        let estimated: i64 =
            sqlx::query_scalar(&self.queries.count_all).fetch_one(&self.pool).await.map_err(reseal_error)?;
        let estimated = estimated.max(0) as u64;
        let mut report = ResealReport { key_id: self.keys.key_id(), ..ResealReport::default() };
        progress(&report.progress(estimated));
        let mut cursor = (String::new(), String::new(), String::new(), 0i64);
        loop {
            let rows = sqlx::query(&self.queries.reseal_batch)
                .bind(cursor.0.as_str())
                .bind(cursor.1.as_str())
                .bind(cursor.2.as_str())
                .bind(cursor.3)
                .bind(RESEAL_BATCH)
                .fetch_all(&self.pool)
                .await
                .map_err(reseal_error)?;
            let rows: Vec<StoredRow> =
                rows.iter().map(StoredRow::read).collect::<Result<_, _>>().map_err(reseal_error)?;
            let Some(last) = rows.last() else { break };
            cursor = (last.tenant.clone(), last.namespace.clone(), last.key.clone(), last.version);
            let mut rewrites = Vec::new();
            for row in &rows {
                match self.plan_reseal(row) {
                    Ok(None) => report.record(ResealOutcome::AlreadyCurrent),
                    Ok(Some(rewrite)) => rewrites.push(rewrite),
                    Err(failure) => report.record(ResealOutcome::Failed(failure)),
                }
            }
            if !rewrites.is_empty() {
                let mut attempt = 0;
                let matched = loop {
                    attempt += 1;
                    match self.write_rewrites(&rewrites).await {
                        Ok(matched) => break matched,
                        // Lost a race with a writer: the transaction rolled
                        // back whole, and every update in it is a
                        // compare-and-set, so running it again is safe.
                        Err(e) if is_write_conflict(&e) && attempt < MAX_WRITE_ATTEMPTS => {
                            let ceiling = 2u64.pow(attempt.min(6)) * 2;
                            tokio::time::sleep(Duration::from_millis(rand::random_range(1..=ceiling))).await;
                        }
                        Err(e) => return Err(reseal_error(e)),
                    }
                };
                for done in matched {
                    report.record(if done { ResealOutcome::Resealed } else { ResealOutcome::Skipped });
                }
            }
            progress(&report.progress(estimated));
            if (rows.len() as i64) < RESEAL_BATCH {
                break;
            }
        }
        Ok(report)
    }
}

#[async_trait]
impl SecretStore for SqlStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::FULL
    }

    async fn get(&self, name: &SecretName, version: Option<&Version>) -> Result<Secret, StoreError> {
        let row = match version {
            None => sqlx::query(&self.queries.get_latest)
                .bind(name.tenant.as_str())
                .bind(name.namespace.as_str())
                .bind(name.key.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| db_error(name, e))?
                .ok_or_else(|| StoreError::not_found(name))?,
            Some(v) => {
                // Versions are ids this store handed out: positive integers
                // in canonical form. Anything else ("0", "01", "+1", "x")
                // names no version, rather than an alias of one.
                let missing = || StoreError::not_found(format!("{name} version {v}"));
                let n = v
                    .as_str()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0 && n.to_string() == v.as_str())
                    .ok_or_else(missing)?;
                sqlx::query(&self.queries.get_version)
                    .bind(name.tenant.as_str())
                    .bind(name.namespace.as_str())
                    .bind(name.key.as_str())
                    .bind(n)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| db_error(name, e))?
                    .ok_or_else(missing)?
            }
        };
        self.row_to_secret(name, &row)
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &SecretValue,
        tags: &Tags,
        description: Option<&str>,
    ) -> Result<Version, StoreError> {
        let tags = serde_json::to_string(tags)
            .map_err(|e| StoreError::internal(format!("cannot encode the tags of {name}")).with_source(e))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_put(name, value, &tags, description).await {
                Ok(version) => return Ok(Version(version.to_string())),
                Err(PutError::Db(e)) if is_write_conflict(&e) && attempt < MAX_WRITE_ATTEMPTS => {
                    // Lost a race with another writer: back off a little, with
                    // jitter so the losers do not collide again in step.
                    let ceiling = 2u64.pow(attempt.min(6)) * 2;
                    tokio::time::sleep(Duration::from_millis(rand::random_range(1..=ceiling))).await;
                }
                Err(PutError::Db(e)) => return Err(db_error(name, e)),
                Err(PutError::Seal(e)) => return Err(e),
            }
        }
    }

    async fn delete(&self, name: &SecretName) -> Result<(), StoreError> {
        let result = sqlx::query(&self.queries.delete)
            .bind(name.tenant.as_str())
            .bind(name.namespace.as_str())
            .bind(name.key.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| db_error(name, e))?;
        if result.rows_affected() == 0 {
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
        let size = page.size.max(1);
        let mut cursor = match &page.token {
            None => String::new(),
            Some(token) => secretd_core::key_after_token(token)?.as_str().to_owned(),
        };
        // Tags are filtered here, not in SQL, so read in batches until the
        // page and one more item are found (the extra one says whether a
        // next page exists) or the namespace runs out.
        let batch = (size + 1).max(64) as i64;
        let mut items: Vec<SecretMetadata> = Vec::with_capacity(size + 1);
        'scan: loop {
            let rows = sqlx::query(&self.queries.list)
                .bind(tenant.as_str())
                .bind(namespace.as_str())
                .bind(cursor.as_str())
                .bind(batch)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| list_error(namespace, e))?;
            let exhausted = (rows.len() as i64) < batch;
            for row in &rows {
                let key = text(row, 0).map_err(|e| list_error(namespace, e))?;
                let version: i64 = row.try_get(1).map_err(|e| list_error(namespace, e))?;
                let tags = text(row, 2).map_err(|e| list_error(namespace, e))?;
                let updated: i64 = row.try_get(3).map_err(|e| list_error(namespace, e))?;
                let created: i64 = row.try_get(4).map_err(|e| list_error(namespace, e))?;
                let name = SecretName::new(
                    tenant.clone(),
                    namespace.clone(),
                    Key::parse(&key).map_err(|_| {
                        StoreError::corrupt(format!("namespace {namespace} holds a row with an invalid key"))
                    })?,
                );
                cursor = key;
                let tags = parse_tags(&name, &tags)?;
                if !tags.contains_all(filter) {
                    continue;
                }
                items.push(SecretMetadata {
                    name,
                    version: Version(version.to_string()),
                    tags,
                    created_at: from_millis(created),
                    updated_at: from_millis(updated),
                });
                if items.len() > size {
                    break 'scan;
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(Page::cut(items, size, |last| secretd_core::key_page_token(&last.name.key)))
    }

    async fn scan(&self, selection: &ScanSelection, page: &PageRequest) -> Result<Page, StoreError> {
        let size = page.size.max(1);
        let after = page.token.as_deref().map(secretd_core::name_after_token).transpose()?;
        let (after_tenant, after_namespace, after_key) = match &after {
            Some(a) => (a.tenant.as_str(), a.namespace.as_str(), a.key.as_str()),
            // Sorts before every valid name.
            None => ("", "", ""),
        };
        let scan_error = |e| classify(e, "database error scanning the secrets".to_owned());
        let query = &self.queries.scans[selection.tenant.is_some() as usize][selection.namespace.is_some() as usize];
        let mut query = sqlx::query(query)
            .bind(after_tenant)
            .bind(after_tenant)
            .bind(after_namespace)
            .bind(after_namespace)
            .bind(after_key);
        if let Some(tenant) = &selection.tenant {
            query = query.bind(tenant.as_str());
        }
        if let Some(namespace) = &selection.namespace {
            query = query.bind(namespace.as_str()).bind(format!("{namespace}.")).bind(format!("{namespace}/"));
        }
        let rows = query.bind((size + 1) as i64).fetch_all(&self.pool).await.map_err(scan_error)?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let column = |i| text(row, i).map_err(scan_error);
            let (tenant, namespace, key) = (column(0)?, column(1)?, column(2)?);
            let name = SecretName::parse(&tenant, &namespace, &key)
                .map_err(|_| StoreError::corrupt("the secrets table holds a row with an invalid name"))?;
            let version: i64 = row.try_get(3).map_err(scan_error)?;
            let tags = parse_tags(&name, &column(4)?)?;
            let updated: i64 = row.try_get(5).map_err(scan_error)?;
            let created: i64 = row.try_get(6).map_err(scan_error)?;
            items.push(SecretMetadata {
                name,
                version: Version(version.to_string()),
                tags,
                created_at: from_millis(created),
                updated_at: from_millis(updated),
            });
        }
        Ok(Page::cut(items, size, |last| secretd_core::name_page_token(&last.name)))
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<Version>, StoreError> {
        let numbers: Vec<i64> = sqlx::query_scalar(&self.queries.versions)
            .bind(name.tenant.as_str())
            .bind(name.namespace.as_str())
            .bind(name.key.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error(name, e))?;
        if numbers.is_empty() {
            return Err(StoreError::not_found(name));
        }
        Ok(numbers.into_iter().map(|n| Version(n.to_string())).collect())
    }

    async fn health(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| classify(e, format!("{} health check failed", self.dialect.name())))
    }
}

/// Reads a text column. MySQL reports TEXT and binary-collated VARCHAR
/// columns as BLOBs through sqlx's `Any` driver, so fall back to bytes.
pub fn text(row: &sqlx::any::AnyRow, index: usize) -> Result<String, sqlx::Error> {
    row.try_get::<String, _>(index).or_else(|_| {
        let bytes: Vec<u8> = row.try_get(index)?;
        String::from_utf8(bytes).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    })
}

fn parse_tags(name: &SecretName, json: &str) -> Result<Tags, StoreError> {
    serde_json::from_str(json).map_err(|_| StoreError::corrupt(format!("secret {name} has unreadable tags")))
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn db_error(name: &SecretName, error: sqlx::Error) -> StoreError {
    classify(error, format!("database error on secret {name}"))
}

fn list_error(namespace: &Namespace, error: sqlx::Error) -> StoreError {
    classify(error, format!("database error listing namespace {namespace}"))
}

/// Maps a driver error to a kind. sqlx errors carry no bound values, so the
/// source is safe to keep for the logs.
fn classify(error: sqlx::Error, context: String) -> StoreError {
    let kind = match &error {
        sqlx::Error::PoolTimedOut => ErrorKind::Timeout,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            ErrorKind::Unavailable
        }
        // Still conflicting after every retry: the database is overloaded.
        sqlx::Error::Database(_) if is_write_conflict(&error) => ErrorKind::Unavailable,
        sqlx::Error::Database(db) => database_error_kind(db.as_ref()),
        _ => ErrorKind::Internal,
    };
    let detail = match kind {
        ErrorKind::Timeout => "timed out waiting for the database",
        ErrorKind::Unavailable => "the database is unreachable or busy",
        ErrorKind::PermissionDenied => "the database refused secretd's credentials or privileges",
        _ => "unexpected database error",
    };
    StoreError::new(kind, format!("{context}: {detail}")).with_source(error)
}
