//! Prepared statements the server no longer accepts, and forgetting them.
//!
//! Every pooled connection caches its prepared statements (deadpool's
//! statement cache), and the hot paths rely on it. PostgreSQL refuses a
//! cached statement for good in two cases:
//! - the schema changed what it returns: a migration (or a DBA) changed
//!   the type of a column it selects, and PostgreSQL answers every
//!   execution with SQLSTATE 0A000 "cached plan must not change result
//!   type";
//! - the server forgot it: SQLSTATE 26000 "prepared statement … does not
//!   exist", after a connection pooler in front of PostgreSQL ran
//!   `DISCARD ALL` or moved the session.
//!
//! Without this module the connection kept failing the same statement
//! until it was closed: a worker that prepared its claim before such a
//! migration never claimed again. Now the first such error marks the time
//! ([`note`]), and each pooled connection last checked out before that
//! mark empties its statement cache the next time it is checked out
//! ([`forget_if_stale`], a deadpool `pre_recycle` hook), so it prepares
//! its statements again. The failed call itself returns its error (the
//! callers retry database errors already); nothing is retried here, so a
//! write is never sent twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use tokio_postgres::error::SqlState;

/// The origin of [`LAST_SEEN`]; set before any pooled connection exists
/// ([`start_clock`]), so every connection's timestamps come after it.
static CLOCK: OnceLock<Instant> = OnceLock::new();

/// When a refused statement was last seen: nanoseconds after [`CLOCK`]
/// plus one (0: never).
static LAST_SEEN: AtomicU64 = AtomicU64::new(0);

/// Starts the clock; called when a pool is built.
pub(crate) fn start_clock() {
    CLOCK.get_or_init(Instant::now);
}

fn since_clock(t: Instant) -> u64 {
    let start = *CLOCK.get_or_init(Instant::now);
    u64::try_from(t.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX)
}

/// Whether PostgreSQL refused a prepared statement for good (module docs).
pub(crate) fn is_stale(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        (db.code() == &SqlState::FEATURE_NOT_SUPPORTED
            && db
                .message()
                .contains("cached plan must not change result type"))
            || db.code() == &SqlState::INVALID_SQL_STATEMENT_NAME
    })
}

/// Called for every database error: marks the time of a refused statement.
pub(crate) fn note(e: &tokio_postgres::Error) {
    if is_stale(e) {
        LAST_SEEN.fetch_max(
            since_clock(Instant::now()).saturating_add(1),
            Ordering::Relaxed,
        );
        tracing::warn!(
            "PostgreSQL refused a prepared statement (the schema changed under it, or the server forgot it): every pooled connection prepares its statements again"
        );
    }
}

/// Whether a connection last checked out at `last_used` may hold a
/// statement PostgreSQL refuses.
fn stale_since(last_used: Instant) -> bool {
    let seen = LAST_SEEN.load(Ordering::Relaxed);
    seen != 0 && seen > since_clock(last_used)
}

/// deadpool `pre_recycle` hook: empties the statement cache of a
/// connection last checked out before the latest refused statement.
pub(crate) fn forget_if_stale(
    client: &mut deadpool_postgres::ClientWrapper,
    metrics: &deadpool_postgres::Metrics,
) {
    if stale_since(metrics.recycled.unwrap_or(metrics.created)) {
        client.statement_cache.clear();
    }
}
