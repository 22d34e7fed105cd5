//! PostgreSQL connections: URL handling, the pool, one-off connections.
//!
//! Seed 000 writes `DATABASE_URL` for SQLAlchemy (`postgresql+asyncpg://`);
//! we accept that spelling and strip the driver suffix. The URL carries the
//! password, so anything that might end up in a log goes through [`redact`].
//!
//! TLS: `sslmode` and `sslrootcert` in the URL mean what they mean to libpq
//! (see `berth_tls::pg`); the pool and the dedicated connections all use the
//! same rustls connector. Without `sslmode` the default is `prefer`, which
//! still connects to a server without TLS.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::error::{Error, Result};

/// `postgresql+asyncpg://…` → `postgresql://…`; rejects other schemes.
pub fn normalise_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err("expected a URL like postgresql://user:password@host:5432/db".into());
    };
    let base = scheme
        .split('+')
        .next()
        .unwrap_or(scheme)
        .to_ascii_lowercase();
    if base != "postgresql" && base != "postgres" {
        return Err(format!(
            "unsupported scheme {scheme:?}, expected postgresql://"
        ));
    }
    let url = format!("postgresql://{rest}");
    // Also checks sslmode/sslrootcert and reads the CA file. The messages
    // never echo the URL (tokio-postgres' own parse errors may).
    berth_tls::pg::parse(&url).map_err(|e| match e {
        berth_tls::pg::PgUrlError::Invalid => {
            "is not a valid PostgreSQL connection URL".to_string()
        }
        other => other.to_string(),
    })?;
    Ok(url)
}

/// The URL with any password replaced by `***` (safe to log).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparseable url>".into();
    };
    // userinfo ends at the last '@' before the first '/'.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let tail = &rest[authority_end..];
    // Query parameters may carry `password=`: drop the query entirely.
    let tail = tail.split('?').next().unwrap_or(tail);
    match authority.rfind('@') {
        Some(at) => {
            let host = &authority[at + 1..];
            match authority[..at].split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
                // No password to hide: saying `user:***` would suggest one.
                None => format!("{scheme}://{}@{host}{tail}", &authority[..at]),
            }
        }
        None => format!("{scheme}://{authority}{tail}"),
    }
}

/// The tokio-postgres settings and the TLS connector for `url`.
fn config(url: &str) -> Result<(tokio_postgres::Config, berth_tls::pg::MakeTls)> {
    let berth_tls::pg::PgTarget {
        config: mut cfg,
        tls,
        ..
    } = berth_tls::pg::parse(url).map_err(|e| match e {
        berth_tls::pg::PgUrlError::Invalid => Error::Url("is not a valid PostgreSQL URL".into()),
        other => Error::Url(other.to_string()),
    })?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(5));
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("jobqueue");
    }
    // No JIT: every statement here is short, and PostgreSQL compiles one
    // whenever its plan is estimated above `jit_above_cost`, which a
    // re-planned statement can reach at any time. The group fetcher's
    // candidate search (a recursive CTE, estimated at ~57,000 on a table
    // of 150,000 jobs) spent 197 ms compiling for 0.2 ms of work, once a
    // poll: a fifth of a core while no job had a group
    // (bench/jobqueue/features-ab.sh). First, so a URL's own
    // `options=-c jit=on` still wins.
    let options = match cfg.get_options() {
        Some(o) if !o.is_empty() => format!("-c jit=off {o}"),
        _ => "-c jit=off".to_string(),
    };
    cfg.options(&options);
    cfg.keepalives(true);
    Ok((cfg, tls))
}

/// A pool of up to `size` connections. Connections are made lazily and
/// replaced when broken (e.g. after a PostgreSQL restart), so creating the
/// pool never fails because the database is down.
pub fn pool(url: &str, size: usize) -> Result<Pool> {
    let (cfg, tls) = config(url)?;
    build_pool(cfg, tls, size)
}

/// Like [`pool`], but the connections commit with `synchronous_commit =
/// off`: a commit returns before its WAL is flushed to disk (PostgreSQL
/// flushes it within `wal_writer_delay`, 200 ms by default, or with the
/// next synchronous commit). For the worker's own writes — claim, complete,
/// fail, extend, hand back — this is safe under at-least-once delivery:
/// if the *server* crashes, the last few hundred milliseconds of these state
/// changes may be lost, which puts those jobs back exactly where a worker
/// crash would (a lost claim leaves the job `queued`; a lost completion
/// leaves it `running` until its lease expires and the reaper re-queues it,
/// so it runs again). A job is never lost and fencing still holds: a lost
/// claim's token is simply gone. Enqueueing must be durable, so the API and
/// [`crate::connect`] keep the default (`on`).
///
/// Why: on a busy disk a WAL flush takes ~10 ms, and claim and completion
/// each commit once per batch; waiting for the flush capped processing at
/// about half of graphile-worker's rate, whatever the SQL.
///
/// These connections also plan every execution of a prepared statement for
/// its actual parameters (`plan_cache_mode = force_custom_plan`). The fenced
/// writes join `unnest($ids, $tokens)` with `jobs`; PostgreSQL's generic
/// plan assumes 10 array elements and one running job (the statistics are
/// usually from an idle moment) and picks a nested loop that compares every
/// outcome with every running job: 28–70 ms for 256 completions instead of
/// under 2 ms with the custom plan (a hash join). Planning costs ~0.3 ms.
pub fn pool_async_commit(url: &str, size: usize) -> Result<Pool> {
    pool_with_session_options(
        url,
        size,
        "-c synchronous_commit=off -c plan_cache_mode=force_custom_plan",
    )
}

/// Like [`pool_async_commit`], but every prepared statement runs its
/// *generic* plan (`plan_cache_mode = force_generic_plan`): planned once
/// per connection instead of once per execution. For the fetcher's
/// claims only, whose SQL is written so that the generic plan is the
/// right one whatever the statistics (TID fetches, the claim index; no
/// join for the planner to get wrong): measured with `EXPLAIN ANALYZE` on
/// 12 + 12 rows, planning took 0.4–0.7 ms of a 0.9–1.3 ms statement with
/// custom plans, 0.02–0.09 ms with the generic one.
///
/// And without sequential scans (`enable_seqscan = off`, which makes
/// them the planner's last resort): the claims find rows by `ctid`
/// (`queue/tid.rs`), and a generic plan counts ten addresses in an array
/// parameter, so for a table of a few pages it would read the table
/// instead. That plan is kept until something invalidates it (an
/// autovacuum or analyze of the table, up to a minute later), and by then
/// a bulk enqueue may have made the table a million rows long: every claim
/// would read all of them.
pub fn pool_async_commit_generic_plans(url: &str, size: usize) -> Result<Pool> {
    pool_with_session_options(
        url,
        size,
        "-c synchronous_commit=off -c plan_cache_mode=force_generic_plan -c enable_seqscan=off",
    )
}

fn pool_with_session_options(url: &str, size: usize, ours: &str) -> Result<Pool> {
    let (mut cfg, tls) = config(url)?;
    let options = match cfg.get_options() {
        Some(o) if !o.is_empty() => format!("{o} {ours}"),
        _ => ours.to_string(),
    };
    cfg.options(&options);
    build_pool(cfg, tls, size)
}

fn build_pool(
    cfg: tokio_postgres::Config,
    tls: berth_tls::pg::MakeTls,
    size: usize,
) -> Result<Pool> {
    let manager = Manager::from_config(
        cfg,
        tls,
        ManagerConfig {
            // `Fast` only checks `is_closed()`: a dead socket is noticed on
            // first use and the caller retries. `Verified` would add a round
            // trip to every checkout, which the worker's hot path cannot pay.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    crate::stale_statements::start_clock();
    Pool::builder(manager)
        .max_size(size)
        // A cached statement PostgreSQL refuses for good (a column's type
        // changed under it) is prepared again: stale_statements.rs.
        .pre_recycle(deadpool_postgres::Hook::sync_fn(|client, metrics| {
            crate::stale_statements::forget_if_stale(client, metrics);
            Ok(())
        }))
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Pool(format!("building the connection pool: {e}")))
}

/// One dedicated connection (LISTEN, advisory locks) with its driver task.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (cfg, tls) = config(url)?;
    let (client, connection) = cfg.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %crate::error::DbFailure::from_pg(&e), "database connection closed");
        }
    });
    Ok(client)
}

/// A dedicated connection whose asynchronous messages (NOTIFY) are
/// forwarded to the returned channel.
pub async fn connect_with_notifications(
    url: &str,
) -> Result<(
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
)> {
    use futures::StreamExt;
    let (cfg, tls) = config(url)?;
    let (client, mut connection) = cfg.connect(tls).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %crate::error::DbFailure::from_pg(&e), "listen connection closed");
                    break;
                }
            }
        }
    });
    Ok((client, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_sqlalchemy_scheme() {
        assert_eq!(
            normalise_url("postgresql+asyncpg://u:secret@db:5432/jobs").as_deref(),
            Ok("postgresql://u:secret@db:5432/jobs")
        );
        assert_eq!(
            normalise_url("postgres://u@db/jobs").as_deref(),
            Ok("postgresql://u@db/jobs")
        );
        assert!(normalise_url("mysql://u@db/jobs").is_err());
        assert!(normalise_url("nonsense").is_err());
        let err = normalise_url("postgresql://u:hunter2@db:notaport/jobs").expect_err("bad port");
        assert!(!err.contains("hunter2"));
        let url = normalise_url("postgresql+asyncpg://u:hunter2@db/jobs?sslmode=verify-full")
            .expect("TLS options are kept");
        assert!(url.ends_with("?sslmode=verify-full"));
        let err = normalise_url("postgresql://u:hunter2@db/jobs?sslmode=bogus").expect_err("mode");
        assert!(err.contains("sslmode") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn redaction_hides_passwords() {
        let r = redact("postgresql://user:hunter2@db:5432/jobs?password=hunter2");
        assert_eq!(r, "postgresql://user:***@db:5432/jobs");
        assert_eq!(redact("postgresql://db/jobs"), "postgresql://db/jobs");
        assert_eq!(
            redact("postgresql://app@db/jobs"),
            "postgresql://app@db/jobs"
        );
        assert!(!redact("postgresql://u:p@ss@w@rd@db/x").contains("rd@"));
    }
}
