//! What differs between SQLite, PostgreSQL and MySQL/MariaDB: the URL
//! scheme, the placeholder syntax, the migrations, and which errors mean
//! "another writer got there first, try again".

use sqlx::migrate::Migrator;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static MYSQL_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/mysql");

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

    pub fn migrator(self) -> &'static Migrator {
        match self {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
            Dialect::MySql => &MYSQL_MIGRATIONS,
        }
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
pub fn is_write_conflict(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else { return false };
    if db.is_unique_violation() {
        return true;
    }
    let code = db.code();
    matches!(
        code.as_deref(),
        // PostgreSQL: serialization_failure, deadlock_detected.
        Some("40001") | Some("40P01")
        // MySQL/MariaDB: deadlock (1213), lock wait timeout (1205), as SQLSTATE.
        | Some("1213") | Some("1205")
        // SQLite: BUSY, LOCKED and their extended codes (BUSY_SNAPSHOT = 517).
        | Some("5") | Some("6") | Some("261") | Some("262") | Some("517")
    ) || db.message().contains("Deadlock found")
        || db.message().contains("database is locked")
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
