//! `postgres`: `SELECT 1` over one long-lived connection (tokio-postgres),
//! reconnecting after any error. TLS as libpq's `sslmode`/`sslrootcert`
//! (berth-tls). SQLAlchemy-style driver suffixes (`postgresql+asyncpg://`,
//! the URLs Python apps already have in `DATABASE_URL`) are accepted.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::{io_source, CheckDef, CheckType, Probe};
use crate::config::{ConfigError, Cx, Scalar};
use crate::redact::{CheckError, Secrets};

pub const TYPE: CheckType = CheckType {
    name: "postgres",
    keys: &["url"],
    parse,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    url: Option<Scalar>,
}

struct Postgres {
    url: String,
}

// The URL carries the password: never print it, even in Debug. The
// identity used for reloads is a hash of it.
impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::redact::debug_url(f, "Postgres", &self.url)
    }
}

/// `postgresql+asyncpg://…` → `postgresql://…`; anything else unchanged.
pub fn strip_driver_suffix(url: &str) -> String {
    for scheme in ["postgresql+", "postgres+"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            if let Some((driver, tail)) = rest.split_once("://") {
                if !driver.is_empty()
                    && driver
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return format!("postgresql://{tail}");
                }
            }
        }
    }
    url.to_string()
}

fn parse(
    fields: &serde_yaml_ng::Mapping,
    path: &str,
    cx: &Cx,
) -> Result<Arc<dyn CheckDef>, ConfigError> {
    let f: Fields = cx.fields(fields, path)?;
    let field = format!("{path}.url");
    let url = cx.required(&field, &f.url, " for a postgres check")?;
    let url = strip_driver_suffix(&url.value);
    // Messages never repeat the URL (it may hold a password). The parser
    // also reads the `sslrootcert` CA file, so a missing one is a config
    // error rather than a check that can never pass.
    berth_tls::pg::parse(&url).map_err(|e| ConfigError::new(&field, e.to_string()))?;
    Ok(Arc::new(Postgres { url }))
}

impl CheckDef for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn probe(&self, timeout: Duration) -> Box<dyn Probe> {
        // Validated at load time (URL, sslmode, CA file).
        let target = berth_tls::pg::parse(&self.url).ok().map(|mut t| {
            t.config.connect_timeout(timeout);
            t.config.application_name("berth");
            Box::new(t)
        });
        Box::new(PgProbe { target, conn: None })
    }

    fn add_secrets(&self, secrets: &mut Secrets) {
        if let Ok(cfg) = tokio_postgres::Config::from_str(&self.url) {
            if let Some(pw) = cfg.get_password() {
                secrets.add(&String::from_utf8_lossy(pw));
            }
        }
        secrets.add_url_userinfo(&self.url);
    }
}

struct PgProbe {
    /// `None` only if the URL stopped parsing after validation (the CA
    /// file vanished): the check then fails with `tls_config`.
    target: Option<Box<berth_tls::pg::PgTarget>>,
    conn: Option<(tokio_postgres::Client, JoinHandle<()>)>,
}

impl Probe for PgProbe {
    fn check<'a>(&'a mut self, secrets: &'a Secrets) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async move {
            if self
                .conn
                .as_ref()
                .map(|(c, _)| c.is_closed())
                .unwrap_or(true)
            {
                self.reset();
                let Some(target) = self.target.as_ref() else {
                    return Err(CheckError::new("tls_config", "URL or CA file unusable"));
                };
                let (client, connection) = target
                    .config
                    .connect(target.tls.clone())
                    .await
                    .map_err(|e| pg_error(&e, secrets))?;
                let task = tokio::spawn(async move {
                    // Ends when the server closes the connection or the client is dropped.
                    let _ = connection.await;
                });
                self.conn = Some((client, task));
            }
            let Some((client, _)) = self.conn.as_ref() else {
                return Err(CheckError::new("connection_lost", ""));
            };
            match client.simple_query("SELECT 1").await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let err = pg_error(&e, secrets);
                    self.reset();
                    Err(err)
                }
            }
        })
    }

    fn reset(&mut self) {
        if let Some((client, task)) = self.conn.take() {
            drop(client);
            task.abort();
        }
    }
}

fn pg_error(e: &tokio_postgres::Error, secrets: &Secrets) -> CheckError {
    use tokio_postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let kind = if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            "auth_failed"
        } else if code.code().starts_with("57P") {
            "server_unavailable"
        } else if code.code().starts_with("3D") {
            "database_not_found"
        } else {
            "query_failed"
        };
        return CheckError::new(kind, secrets.scrub(db.message()));
    }
    if let Some(reason) = berth_tls::tls_failure(e) {
        return CheckError::new("tls_failed", secrets.scrub(&reason));
    }
    if let Some(io) = io_source(e) {
        return CheckError::from_io(io, secrets);
    }
    if e.is_closed() {
        return CheckError::new("connection_lost", "connection closed");
    }
    CheckError::new("connect_failed", secrets.scrub(&e.to_string()))
}
