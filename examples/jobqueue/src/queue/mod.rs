//! The job store: every SQL operation against the `jobs` table, one file
//! per operation (as riverqueue/river and graphile/worker lay theirs out),
//! all as methods of the cheap-to-clone [`Queue`] handle.
//!
//! | file | operation | used by |
//! |---|---|---|
//! | `enqueue.rs`, `enqueue_batch.rs` | insert (idempotency keys) | API, library |
//! | `get.rs`, `list.rs`, `stats.rs` | read | API, reaper (depth) |
//! | `cancel.rs`, `retry.rs` | admin transitions | API |
//! | `pause.rs` | pause / resume a queue | API |
//! | `claim.rs` | lease due jobs (`SKIP LOCKED`) | worker fetcher |
//! | `claim_grouped.rs` | lease due grouped jobs within each group's limit, groups in turn | worker group fetcher |
//! | `claim_and_complete.rs` | store finished jobs and lease new ones in one statement | worker fetcher |
//! | `complete.rs`, `complete_with_output.rs`, `fail.rs` | fenced outcomes, batched | worker completer |
//! | `set_progress.rs` | fenced progress report | handlers (`JobContext::set_progress`) |
//! | `extend.rs` | fenced lease renewal | worker lease keeper |
//! | `release.rs` | fenced hand-back | worker drain |
//! | `reap_expired.rs`, `repair_lease_times.rs`, `delete_finished.rs` | maintenance | reaper |
//! | `schedule_put.rs`, `schedule_get.rs`, `schedule_list.rs`, `schedule_delete.rs` | cron schedules (`jobqueue_schedules`) | API |
//! | `schedule_fire.rs` | enqueue due schedules, exactly once per fire time | reaper |
//!
//! Lease writes are *fenced*: each claim stamps the rows with a fresh random
//! `lease_token`, and every later write for that claim says
//! `WHERE id = … AND lease_token = … AND status = 'running'`. Once a lease
//! has expired and the job was re-queued (or re-claimed, or cancelled), the
//! old holder's writes match nothing. Writes take arrays (`unnest`) so a
//! whole batch costs one round trip.
//!
//! Wake-ups: a statement trigger sends `NOTIFY jobqueue, ''` on every
//! insert (workers' fetchers look at their queues). Grouped jobs wake the
//! group fetchers with `'group'`, sent by the code here ([`NOTIFY_GROUP`])
//! when it queues a grouped job or frees a group's place — not by row
//! triggers, which cost every job (migration 5).
//!
//! When an attempt started: a claim stamps `updated_at` (nothing else
//! writes it while the job runs: progress reports leave it alone), and
//! every statement that ends an attempt — `complete*.rs`, `fail.rs`,
//! `claim_and_complete.rs`, `cancel.rs`, `reap_expired.rs` — copies it
//! into `started_at` (`started_at = j.updated_at`). A running job's
//! `started_at` is therefore read as its `updated_at` (`JOB_COLUMNS`).
//! Why not write `started_at` at the claim: 8 more bytes in every running
//! row, which cost jobs that never ask for it 2.1 % of the worker's hot
//! statement (migration 6).

mod cancel;
mod claim;
mod claim_and_complete;
mod claim_grouped;
pub use claim::ClaimFrom;
pub use claim_and_complete::{store_and_claim_by_address_sql, POSITIONAL_FENCE_MAX};
pub use claim_grouped::{GroupedClaim, GROUP_LOCK_CLASS};
mod complete;
mod complete_at;
pub use complete_at::COMPLETE_AT_SQL;
mod complete_with_output;
mod delete_finished;
mod enqueue;
pub use enqueue::enqueue_tx;
mod enqueue_batch;
mod extend;
mod fail;
mod get;
mod list;
mod pause;
mod reap_expired;
pub use reap_expired::{Reaped, REAP_BATCH};
mod release;
mod repair_lease_times;
mod retry;
mod schedule_delete;
mod schedule_fire;
mod set_progress;
pub use schedule_fire::{FireReport, Fired};
mod schedule_get;
mod schedule_list;
mod schedule_put;
mod stats;
mod tid;
pub use tid::Tid;

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;

use crate::error::DbFailure;
use crate::job::{NewJob, Status};

/// Errors of job operations. [`QueueError::Rejected`] is the caller's
/// fault (a value PostgreSQL cannot store; the API answers 400);
/// [`QueueError::Db`] and [`QueueError::Pool`] mean the database is
/// unavailable or failed (503). Both carry the SQLSTATE and message.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// SQLSTATE class 22: PostgreSQL refused a value (NUL in text, number
    /// or date out of range). Validation should catch these first.
    #[error("database rejected a value: {0}")]
    Rejected(DbFailure),
    #[error("database error: {0}")]
    Db(DbFailure),
    #[error("database unavailable: {0}")]
    Pool(String),
}

impl From<tokio_postgres::Error> for QueueError {
    fn from(e: tokio_postgres::Error) -> Self {
        let f = DbFailure::from_pg(&e);
        if f.is_data_error() {
            QueueError::Rejected(f)
        } else {
            QueueError::Db(f)
        }
    }
}

impl From<deadpool_postgres::PoolError> for QueueError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        QueueError::Pool(crate::error::describe_pool_error(&e).to_string())
    }
}

impl QueueError {
    /// The SQLSTATE when PostgreSQL answered with an error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            QueueError::Rejected(f) | QueueError::Db(f) => f.sqlstate.as_deref(),
            _ => None,
        }
    }
}

/// A job a worker holds a lease on.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub payload: serde_json::Value,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub max_attempts: i32,
    pub priority: i32,
    pub run_at: DateTime<Utc>,
    /// Abort the handler after this many seconds.
    pub timeout_seconds: Option<i32>,
    /// Set for jobs claimed by the grouped claim.
    pub group: Option<String>,
    pub lease_token: i64,
    /// Where the claimed row version lies (`tid.rs`): the fetcher stores
    /// the job's success by it. `None` for grouped claims.
    pub tid: Option<Tid>,
}

/// A failed attempt to record.
#[derive(Debug, Clone)]
pub struct Failure {
    pub id: i64,
    pub lease_token: i64,
    pub error: String,
    /// Delay before the next attempt.
    pub retry_in: Duration,
    /// Do not retry: the job goes `dead` now.
    pub permanent: bool,
}

/// Filter for [`Queue::list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub queue: Option<String>,
    pub kind: Option<String>,
    pub limit: i64,
    /// Only jobs with `id < before` (newest first paging).
    pub before: Option<i64>,
}

/// Counts per queue and status.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub queue: String,
    /// Jobs waiting to run (`queued`, due or not).
    pub depth: i64,
    pub counts: std::collections::BTreeMap<String, i64>,
    /// Workers do not claim from it (`POST /api/v1/queues/{queue}/pause`).
    pub paused: bool,
    /// Jobs that finished (succeeded, dead or cancelled) in the last minute.
    pub finished_last_minute: i64,
}

/// Handle to the job store. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    pool: Pool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's settings hold the database URL (and its password).
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

/// Wakes every worker's group fetchers. Sent after queueing a grouped job
/// (enqueue, retry) or after a grouped job left `running` (the completer,
/// cancel); release and the reaper send [`NOTIFY_ALL`]. Inside a
/// transaction it is delivered at commit. A wake-up lost anyway (a crash
/// between the write and this) costs at most the group fetchers' poll
/// interval.
pub(crate) const NOTIFY_GROUP: &str = "SELECT pg_notify('jobqueue', 'group')";

/// Both wake-ups at once: rows that may be grouped or not came back to
/// `queued` or left `running` (release at drain, the reaper).
pub(crate) const NOTIFY_ALL: &str =
    "SELECT pg_notify('jobqueue', ''), pg_notify('jobqueue', 'group')";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Queue {
    pub fn new(pool: Pool) -> Self {
        Queue { pool }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Sends [`NOTIFY_GROUP`]: grouped jobs left `running`.
    pub(crate) async fn notify_group(&self) -> Result<(), QueueError> {
        self.pool.get().await?.execute(NOTIFY_GROUP, &[]).await?;
        Ok(())
    }
}

/// The parameters of both INSERT statements (single and batch enqueue), in
/// the column order their SQL lists: one place to keep them in step.
fn insert_params(job: &NewJob) -> InsertParams<'_> {
    InsertParams {
        job,
        unique_states: job.unique_states(),
        unique_for: job.unique_for_seconds.map(f64::from),
    }
}

/// Owns the derived values the statement needs next to `job`'s fields.
struct InsertParams<'a> {
    job: &'a NewJob,
    unique_states: Option<Vec<&'static str>>,
    unique_for: Option<f64>,
}

impl<'a> InsertParams<'a> {
    fn all(&'a self) -> [&'a (dyn ToSql + Sync); 11] {
        let j = self.job;
        [
            &j.queue,
            &j.kind,
            &j.payload,
            &j.priority,
            &j.run_at,
            &j.max_attempts,
            &j.idempotency_key,
            &j.group,
            &j.timeout_seconds,
            &self.unique_states,
            &self.unique_for,
        ]
    }
}
