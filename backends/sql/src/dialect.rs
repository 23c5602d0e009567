//! What differs between SQLite, PostgreSQL and MySQL/MariaDB: the URL
//! scheme, the placeholder syntax, the migrations, which errors mean
//! "another writer got there first, try again", and what the others mean.

use secretd_core::ErrorKind;
use sqlx::{error::DatabaseError, migrate::Migrator};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

impl Dialect {
    /// The dialect of a URL, and the URL as sqlx wants it (`mariadb:` is
    /// spelled `mysql:` there).
    pub fn of_url(url: &str) -> Option<(Dialect, String)> {
        let (scheme, rest) = url.split_once(':')?;
        match scheme {
            "sqlite" => Some((Dialect::Sqlite, url.to_owned())),
            "postgres" | "postgresql" => Some((Dialect::Postgres, url.to_owned())),
            "mysql" => Some((Dialect::MySql, url.to_owned())),
            "mariadb" => Some((Dialect::MySql, format!("mysql:{rest}"))),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL/MariaDB",
        }
    }

    /// The secret store's migrations. Other users of the same database
    /// (the daemon's state store) number theirs from 1001, and every
    /// migrator ignores versions it does not know, so they can share one.
    pub fn secret_migrations(self) -> Migrator {
        let mut migrator = match self {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
            Dialect::MySql => sqlx::migrate!("./migrations/mysql"),
        };
        migrator.set_ignore_missing(true);
        migrator
    }

    /// Queries are written once with `?` placeholders; PostgreSQL numbers
    /// them (`$1`, `$2`, ...). The queries hold no string literals, so every
    /// `?` is a placeholder.
    pub fn sql(self, query: &str) -> String {
        if self != Dialect::Postgres {
            return query.to_owned();
        }
        let mut out = String::with_capacity(query.len() + 8);
        let mut n = 0;
        for c in query.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// Whether a failed write transaction lost a race with another writer and
/// may simply be run again: a duplicate version number, a deadlock, a
/// serialization failure, or SQLite's busy/locked.
///
/// A MySQL lock wait timeout (1205) is deliberately not among them: it comes
/// after `innodb_lock_wait_timeout` (50 s by default), and trying again would
/// multiply that wait instead of reporting it.
pub fn is_write_conflict(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else { return false };
    if db.is_unique_violation() {
        return true;
    }
    // `code()` is the SQLSTATE on MySQL, which lumps many errors together,
    // so its own error number is read instead. sqlx's `Any` driver passes the
    // concrete driver errors through, so the downcasts see them.
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        const ER_LOCK_DEADLOCK: u16 = 1213;
        return mysql.number() == ER_LOCK_DEADLOCK;
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // The code is SQLite's extended result code; its low byte is the
        // primary code: BUSY (5) or LOCKED (6), covering BUSY_SNAPSHOT, which
        // a deferred transaction gets when another writer committed first.
        const SQLITE_BUSY: i32 = 5;
        const SQLITE_LOCKED: i32 = 6;
        let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
        return matches!(primary, Some(SQLITE_BUSY | SQLITE_LOCKED));
    }
    // PostgreSQL: serialization_failure, deadlock_detected.
    matches!(db.code().as_deref(), Some("40001" | "40P01"))
}

/// What a database's own error means to the broker, beyond write conflicts:
/// a server going away or out of connections is worth retrying later, a
/// refused login or privilege is the operator's to fix.
pub(crate) fn database_error_kind(db: &dyn DatabaseError) -> ErrorKind {
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return match mysql.number() {
            // ER_CON_COUNT_ERROR, ER_SERVER_SHUTDOWN.
            1040 | 1053 => ErrorKind::Unavailable,
            // ER_LOCK_WAIT_TIMEOUT, ER_QUERY_TIMEOUT, ER_STATEMENT_TIMEOUT (MariaDB).
            1205 | 3024 | 1969 => ErrorKind::Timeout,
            // ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR.
            1044 | 1045 | 1142 => ErrorKind::PermissionDenied,
            _ => ErrorKind::Internal,
        };
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLITE_PERM, SQLITE_READONLY (and their extended codes).
        let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
        return match primary {
            Some(3 | 8) => ErrorKind::PermissionDenied,
            // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
            Some(10 | 13 | 14) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
    }
    // PostgreSQL SQLSTATEs: connection exceptions (08), insufficient
    // resources (53), operator intervention (57P01-57P03: shutdown, cannot
    // connect now), query_canceled (statement_timeout), invalid
    // authorization (28) and insufficient_privilege.
    match db.code().as_deref() {
        Some(code) if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") => {
            ErrorKind::Unavailable
        }
        Some("57014") => ErrorKind::Timeout,
        Some(code) if code.starts_with("28") || code == "42501" => ErrorKind::PermissionDenied,
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(Dialect::Postgres.sql("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(Dialect::MySql.sql("a = ?"), "a = ?");
    }

    #[test]
    fn schemes() {
        assert_eq!(Dialect::of_url("mariadb://h/db").unwrap(), (Dialect::MySql, "mysql://h/db".to_owned()));
        assert_eq!(Dialect::of_url("postgresql://h/db").unwrap().0, Dialect::Postgres);
        assert_eq!(Dialect::of_url("sqlite://x.db").unwrap().0, Dialect::Sqlite);
        assert!(Dialect::of_url("oracle://h").is_none());
        assert!(Dialect::of_url("nonsense").is_none());
    }
}
