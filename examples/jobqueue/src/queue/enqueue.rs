//! Enqueue one job (`POST /api/v1/jobs`, [`Queue::enqueue`]), or inside the
//! caller's own transaction ([`enqueue_tx`]).
//!
//! Why its own file: the idempotency-key path is the one subtle part of
//! enqueueing. At most one job holds a key (a partial unique index on the
//! key alone, as before the features). A holder outside its `unique_while`
//! statuses, or past its `unique_until`, holds it only until the next
//! enqueue with that key: that enqueue releases it (`idempotency_key =
//! NULL` on the old job, re-checked under its row lock) and inserts again.
//!
//! Why lazily, and not with the status in the index predicate (migration
//! 3 had `status = ANY (unique_states)` there): (1) every UPDATE of every
//! job then prepared and tested that predicate, ~1 % of the worker's hot
//! statement for jobs without a key; (2) a job could come back into a
//! unique status (retried after a failure, re-queued by the reaper or a
//! shutdown hand-back) while a newer job held its key, and that UPDATE
//! failed with a unique violation, taking its whole batch with it
//! (migration 6). A job that gave its key away never takes it back.

use tokio_postgres::GenericClient;

use crate::job::{Job, NewJob, JOB_COLUMNS};

use super::{insert_params, Queue, QueueError, NOTIFY_GROUP};

/// The insert; `ON CONFLICT` names the partial unique index's predicate so
/// PostgreSQL can infer it.
fn insert_sql() -> String {
    format!(
        "INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, idempotency_key,
                           group_key, timeout_seconds, unique_states, unique_until)
         VALUES ($1, $2, $3, $4, COALESCE($5, now()), $6, $7, $8, $9, $10,
                 now() + $11 * interval '1 second')
         ON CONFLICT (idempotency_key) WHERE {UNIQUE_KEY_PREDICATE} DO NOTHING
         RETURNING {JOB_COLUMNS}"
    )
}

/// The predicate of `jobs_idempotency_key_idx` (migration 6).
pub(crate) const UNIQUE_KEY_PREDICATE: &str = "idempotency_key IS NOT NULL";

/// Whether the job holding a key may give it up: it is past its
/// `unique_until`, or outside its `unique_while` statuses.
const RELEASABLE: &str = "(coalesce(unique_until <= now(), false)
     OR (unique_states IS NOT NULL AND status <> ALL (unique_states)))";

impl Queue {
    /// Enqueues one job. With an idempotency key that is still unique
    /// (see the module docs), returns the existing job and `false` (or
    /// `Conflict` if the request differs from the one that created it).
    pub async fn enqueue(&self, job: &NewJob) -> Result<(Job, bool), QueueError> {
        job.validate().map_err(QueueError::Invalid)?;
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(&insert_sql()).await?;
        let rows = client.query(&stmt, &insert_params(job).all()).await?;
        let result = match rows.first() {
            Some(row) => (Job::from_row(row)?, true),
            None => resolve_conflict(&**client, job).await?,
        };
        wake_group(&**client, &result).await?;
        Ok(result)
    }
}

/// A grouped job was inserted: wake the group fetchers (at commit, in the
/// caller's transaction).
async fn wake_group<C: GenericClient + Sync>(
    client: &C,
    (job, inserted): &(Job, bool),
) -> Result<(), QueueError> {
    if *inserted && job.group.is_some() {
        client.execute(NOTIFY_GROUP, &[]).await?;
    }
    Ok(())
}

/// Enqueues `job` through `client`: a transaction of yours
/// (`tokio_postgres::Transaction`, or `&*tx` for a deadpool one), so the job
/// exists exactly when your own writes commit, or a plain client. The
/// insert trigger's NOTIFY is delivered at commit, so workers wake then.
pub async fn enqueue_tx<C: GenericClient + Sync>(
    client: &C,
    job: &NewJob,
) -> Result<(Job, bool), QueueError> {
    job.validate().map_err(QueueError::Invalid)?;
    let rows = client
        .query(&insert_sql(), &insert_params(job).all())
        .await?;
    let result = match rows.first() {
        Some(row) => (Job::from_row(row)?, true),
        None => resolve_conflict(client, job).await?,
    };
    wake_group(client, &result).await?;
    Ok(result)
}

/// The insert met a held key: return the job holding it, or release it
/// (see the module docs) and insert again. Bounded: a key contended by
/// other enqueues that keep winning ends in `Conflict`.
async fn resolve_conflict<C: GenericClient + Sync>(
    client: &C,
    job: &NewJob,
) -> Result<(Job, bool), QueueError> {
    let holder = format!("SELECT {JOB_COLUMNS}, {RELEASABLE} FROM jobs WHERE {UNIQUE_KEY_PREDICATE} AND idempotency_key = $1");
    let release = format!("UPDATE jobs SET idempotency_key = NULL WHERE id = $1 AND {RELEASABLE}");
    for _ in 0..5 {
        // DO NOTHING waited for the other transaction, so its row is
        // visible now (READ COMMITTED: a new snapshot per statement).
        if let Some(row) = client.query_opt(&holder, &[&job.idempotency_key]).await? {
            let releasable: bool = row.try_get(JOB_COLUMNS.split(',').count())?;
            let existing = Job::from_row(&row)?;
            if !releasable {
                if existing.kind != job.kind
                    || existing.queue != job.queue
                    || existing.payload != job.payload
                {
                    return Err(QueueError::Conflict(
                        "idempotency_key: already used for a different job".into(),
                    ));
                }
                return Ok((existing, false));
            }
            client.execute(&release, &[&existing.id]).await?;
        }
        let rows = client
            .query(&insert_sql(), &insert_params(job).all())
            .await?;
        if let Some(row) = rows.first() {
            return Ok((Job::from_row(row)?, true));
        }
    }
    Err(QueueError::Conflict(
        "idempotency_key: contended by concurrent enqueues; retry".into(),
    ))
}
