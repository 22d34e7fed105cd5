//! Typed errors at the library boundary.
//!
//! Why a module of its own: a database error has to be *explained* in the
//! log (SQLSTATE and PostgreSQL's message; `tokio_postgres::Error`'s own
//! `Display` prints only "db error") and *classified* for the API — a value
//! PostgreSQL cannot store (SQLSTATE class 22, "data exception": a NUL in
//! text, a timestamp or number out of range) is the client's fault (400),
//! anything else means the database is unavailable (503). [`DbFailure`]
//! does both, once, for every caller. Neither ever contains the connection
//! URL or a password: they come from the server's error fields or from the
//! driver's I/O errors, which never see the URL.

/// A database error, described: SQLSTATE (when the server answered) and
/// a message with the cause chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFailure {
    /// Five-character SQLSTATE (`22P05`, `42P01`, …), `None` when the
    /// server never answered (connection refused, closed, timed out).
    pub sqlstate: Option<String>,
    /// PostgreSQL's message (+ detail and hint), or the driver's error
    /// with its causes.
    pub message: String,
}

impl DbFailure {
    pub fn from_pg(e: &tokio_postgres::Error) -> Self {
        // Every database error passes here: the one place that sees a
        // prepared statement PostgreSQL refuses for good.
        crate::stale_statements::note(e);
        if let Some(db) = e.as_db_error() {
            let mut message = db.message().to_string();
            if let Some(detail) = db.detail() {
                message.push_str(" (");
                message.push_str(detail);
                message.push(')');
            }
            if let Some(hint) = db.hint() {
                message.push_str("; hint: ");
                message.push_str(hint);
            }
            return DbFailure {
                sqlstate: Some(db.code().code().to_string()),
                message,
            };
        }
        DbFailure {
            sqlstate: None,
            message: with_causes(e),
        }
    }

    /// SQLSTATE class 22 (data exception): the statement was fine, a value
    /// in it was not. Retrying cannot help; the caller sent bad data.
    pub fn is_data_error(&self) -> bool {
        self.sqlstate
            .as_deref()
            .is_some_and(|s| s.starts_with("22"))
    }

    /// The SQLSTATE or `-` (for log fields).
    pub fn code(&self) -> &str {
        self.sqlstate.as_deref().unwrap_or("-")
    }
}

impl std::fmt::Display for DbFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.sqlstate {
            Some(code) => write!(f, "SQLSTATE {code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl From<&tokio_postgres::Error> for DbFailure {
    fn from(e: &tokio_postgres::Error) -> Self {
        DbFailure::from_pg(e)
    }
}

/// `error: cause: cause…` — `Display` of most driver errors drops the
/// cause (e.g. "error connecting to server" without "Connection refused").
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A pool checkout failure, described with its cause.
pub fn describe_pool_error(e: &deadpool_postgres::PoolError) -> DbFailure {
    match e {
        deadpool_postgres::PoolError::Backend(pg) => DbFailure::from_pg(pg),
        other => DbFailure {
            sqlstate: None,
            message: with_causes(other),
        },
    }
}

/// Errors of the library's entry points (connecting, migrating, running a
/// worker or reaper). Job operations return [`crate::QueueError`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `DATABASE_URL` is malformed (the message never repeats the URL).
    #[error("DATABASE_URL {0}")]
    Url(String),
    #[error("database: {0}")]
    Database(DbFailure),
    #[error("connection pool: {0}")]
    Pool(String),
    /// A TLS failure while connecting: waiting cannot fix it.
    #[error("database TLS: {0}")]
    Tls(String),
    #[error("migration {version} ({name}) failed: {cause}")]
    Migration {
        version: i32,
        name: String,
        cause: DbFailure,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(reason) = berth_tls::tls_failure(&e) {
            return Error::Tls(reason);
        }
        Error::Database(DbFailure::from_pg(&e))
    }
}

impl From<crate::QueueError> for Error {
    fn from(e: crate::QueueError) -> Self {
        match e {
            crate::QueueError::Db(f) | crate::QueueError::Rejected(f) => Error::Database(f),
            crate::QueueError::Pool(m) => Error::Pool(m),
            other => Error::Pool(other.to_string()),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Self {
        Error::Io {
            context: "I/O".into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_22_is_a_data_error() {
        let f = |s: &str| DbFailure {
            sqlstate: Some(s.into()),
            message: "m".into(),
        };
        for code in ["22P05", "22021", "22008", "22003", "22007"] {
            assert!(f(code).is_data_error(), "{code}");
        }
        for code in ["42P01", "08006", "57P01", "40001"] {
            assert!(!f(code).is_data_error(), "{code}");
        }
        assert_eq!(f("22P05").to_string(), "SQLSTATE 22P05: m");
        let none = DbFailure {
            sqlstate: None,
            message: "connection closed".into(),
        };
        assert!(!none.is_data_error());
        assert_eq!(none.code(), "-");
    }
}
