//! Re-queue jobs whose lease expired (their worker died or hung), or mark
//! them `dead` when that was their last attempt: the reaper.
//!
//! A success keeps the lease time it held (migration 8: it changes no
//! indexed column, so it is a heap-only update), so the lease index holds
//! every job that ever held a lease, and no index tells a running job
//! from a finished one. A scan of every expired lease would walk the
//! whole history kept. The reaper therefore reads a window: the leases
//! that expired since a time it passes in ([`Queue::reap_expired_since`],
//! `reaper.rs` keeps the window), checking each row's status.

use chrono::{DateTime, Utc};

use super::{Queue, QueueError};

/// Rows one statement re-queues at most: a huge backlog (a fleet of
/// workers killed at once) never holds one long transaction.
pub const REAP_BATCH: u64 = 10_000;

/// What one reaping statement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub requeued: u64,
    pub dead: u64,
    /// The database's time when the statement started: every lease that
    /// expired before it, in the window scanned and committed by then,
    /// was seen (unless the batch was full).
    pub scanned_at: DateTime<Utc>,
}

impl Reaped {
    /// The batch was full: more expired leases may wait in the window.
    pub fn full(&self) -> bool {
        self.requeued + self.dead >= REAP_BATCH
    }
}

/// The statement, with the window's lower bound (`$1`) or without one.
fn sql(bounded: bool) -> String {
    let since = if bounded {
        "AND lease_expires_at >= $1"
    } else {
        ""
    };
    format!(
        "WITH expired AS (
             SELECT id FROM jobs
             WHERE lease_expires_at < now() {since} AND status = 'running'
             ORDER BY lease_expires_at LIMIT {REAP_BATCH}
             FOR UPDATE SKIP LOCKED),
         reaped AS (
             UPDATE jobs AS j
             SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
                 finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
                 last_error = 'lease expired (worker ' || coalesce(j.locked_by, '?') || ' stopped renewing it)',
                 run_at = now(), updated_at = now(), started_at = j.updated_at,
                 lease_token = NULL, locked_by = NULL,
                 -- A finished row keeps a lease time (migration 8).
                 lease_expires_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
                 group_done = CASE WHEN j.group_key IS NOT NULL AND j.attempts >= j.max_attempts
                                   THEN true END
             FROM expired WHERE j.id = expired.id
             RETURNING j.status)
         SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'dead'), now()
         FROM reaped"
    )
}

impl Queue {
    /// Re-queues jobs whose lease expired, whenever it expired (a walk of
    /// every lease time kept), or marks them `dead` when that was their
    /// last attempt: at most [`REAP_BATCH`]. Returns `(requeued, dead)`.
    pub async fn reap_expired(&self) -> Result<(u64, u64), QueueError> {
        let reaped = self.reap_expired_since(None).await?;
        Ok((reaped.requeued, reaped.dead))
    }

    /// [`Queue::reap_expired`] for the leases that expired at or after
    /// `since` (all of them when `None`).
    pub async fn reap_expired_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Reaped, QueueError> {
        let client = self.pool.get().await?;
        let row = match since {
            Some(since) => client.query_one(&sql(true), &[&since]).await?,
            None => client.query_one(&sql(false), &[]).await?,
        };
        let reaped = Reaped {
            requeued: row.get::<_, i64>(0).unsigned_abs(),
            dead: row.get::<_, i64>(1).unsigned_abs(),
            scanned_at: row.get(2),
        };
        if reaped.requeued + reaped.dead > 0 {
            // Re-queued jobs for the fetchers; for the group fetchers, also
            // the places the reaped jobs held in their groups.
            client.execute(super::NOTIFY_ALL, &[]).await?;
        }
        Ok(reaped)
    }
}
