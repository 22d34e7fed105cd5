//! All SQL against the `jobs` table: enqueueing and inspecting jobs (the
//! API and library users) and the lease operations workers and the reaper
//! use (claim, complete, fail, release, extend, reap).
//!
//! Plans matter here: the claim is `UPDATE … WHERE id = ANY(ARRAY(SELECT …
//! SKIP LOCKED))` (a join against the CTE made the planner hash the whole
//! table), and the fenced writes repeat `id = ANY($1)` so they look rows up
//! by primary key instead of scanning every running job.
//!
//! Lease writes are *fenced*: each claim stamps the rows with a fresh random
//! `lease_token`, and every later write for that claim says
//! `WHERE id = … AND lease_token = … AND status = 'running'`. Once a lease
//! has expired and the job was re-queued (or re-claimed, or cancelled), the
//! old holder's writes match nothing. Writes take arrays (`unnest`) so a
//! whole batch costs one round trip.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::types::{ToSql, Type};

use crate::error::DbFailure;
use crate::job::{Job, NewJob, Status, JOB_COLUMNS};

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
    pub lease_token: i64,
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
    pub limit: i64,
    /// Only jobs with `id < before` (newest first paging).
    pub before: Option<i64>,
}

/// Counts per queue and status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueStats {
    pub queue: String,
    /// Jobs waiting to run (`queued`, due or not).
    pub depth: i64,
    pub counts: std::collections::BTreeMap<String, i64>,
}

/// Handle to the job store. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    pool: Pool,
}

const CLAIM_ONE_QUEUE: &str = "
UPDATE jobs AS j
SET status = 'running', attempts = j.attempts + 1, lease_token = $3,
    lease_expires_at = now() + $4 * interval '1 millisecond', locked_by = $5, updated_at = now()
WHERE j.id = ANY(ARRAY(
    SELECT id FROM jobs
    WHERE status = 'queued' AND queue = $1 AND run_at <= now()
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED))
RETURNING j.id, j.queue, j.kind, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at";

const CLAIM_MANY_QUEUES: &str = "
UPDATE jobs AS j
SET status = 'running', attempts = j.attempts + 1, lease_token = $3,
    lease_expires_at = now() + $4 * interval '1 millisecond', locked_by = $5, updated_at = now()
WHERE j.id = ANY(ARRAY(
    SELECT id FROM jobs
    WHERE status = 'queued' AND queue = ANY($1) AND run_at <= now()
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED))
RETURNING j.id, j.queue, j.kind, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at";

const COMPLETE: &str = "
UPDATE jobs AS j
SET status = 'succeeded', finished_at = now(), updated_at = now(),
    lease_token = NULL, lease_expires_at = NULL, locked_by = NULL
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, token)
WHERE j.id = ANY($1) AND j.id = d.id AND j.lease_token = d.token AND j.status = 'running'
RETURNING j.id";

const FAIL: &str = "
UPDATE jobs AS j
SET status = CASE WHEN d.permanent OR j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
    run_at = CASE WHEN d.permanent OR j.attempts >= j.max_attempts THEN j.run_at
                  ELSE now() + d.delay_ms * interval '1 millisecond' END,
    finished_at = CASE WHEN d.permanent OR j.attempts >= j.max_attempts THEN now() END,
    last_error = d.error, updated_at = now(),
    lease_token = NULL, lease_expires_at = NULL, locked_by = NULL
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bool[])
     AS d(id, token, error, delay_ms, permanent)
WHERE j.id = ANY($1) AND j.id = d.id AND j.lease_token = d.token AND j.status = 'running'
RETURNING j.id, j.status";

const RELEASE: &str = "
UPDATE jobs AS j
SET status = 'queued', attempts = greatest(j.attempts - 1, 0), run_at = now(), updated_at = now(),
    lease_token = NULL, lease_expires_at = NULL, locked_by = NULL
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, token)
WHERE j.id = ANY($1) AND j.id = d.id AND j.lease_token = d.token AND j.status = 'running'
RETURNING j.id";

const EXTEND: &str = "
UPDATE jobs AS j
SET lease_expires_at = now() + $3 * interval '1 millisecond'
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, token)
WHERE j.id = ANY($1) AND j.id = d.id AND j.lease_token = d.token AND j.status = 'running'
RETURNING j.id";

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

    /// Enqueues one job. With an idempotency key that was used before,
    /// returns the existing job and `false` (or `Conflict` if the request
    /// differs from the one that created it).
    pub async fn enqueue(&self, job: &NewJob) -> Result<(Job, bool), QueueError> {
        job.validate().map_err(QueueError::Invalid)?;
        let client = self.pool.get().await?;
        let sql = format!(
            "INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, idempotency_key)
             VALUES ($1, $2, $3, $4, COALESCE($5, now()), $6, $7)
             ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING {JOB_COLUMNS}"
        );
        let stmt = client.prepare_cached(&sql).await?;
        let rows = client.query(&stmt, &insert_params(job)).await?;
        if let Some(row) = rows.first() {
            return Ok((Job::from_row(row)?, true));
        }
        // Conflict on the idempotency key: DO NOTHING waited for the other
        // transaction, so the row is visible now.
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = $1");
        let row = client
            .query_opt(&sql, &[&job.idempotency_key])
            .await?
            .ok_or_else(|| {
                QueueError::Conflict(
                    "idempotency key was used by a job that no longer exists".into(),
                )
            })?;
        let existing = Job::from_row(&row)?;
        if existing.kind != job.kind
            || existing.queue != job.queue
            || existing.payload != job.payload
        {
            return Err(QueueError::Conflict(
                "idempotency key already used for a different job".into(),
            ));
        }
        Ok((existing, false))
    }

    /// Enqueues many jobs in one transaction; returns their ids in input
    /// order. Jobs with an idempotency key that exists already yield the
    /// existing job's id.
    pub async fn enqueue_batch(&self, jobs: &[NewJob]) -> Result<Vec<i64>, QueueError> {
        for (i, job) in jobs.iter().enumerate() {
            job.validate()
                .map_err(|m| QueueError::Invalid(format!("jobs[{i}].{m}")))?;
        }
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.pool.get().await?;
        if jobs.iter().any(|j| j.idempotency_key.is_some()) {
            // Rare path: one statement per job, still one transaction.
            let tx = client.transaction().await?;
            let stmt = tx
                .prepare_cached(
                    "WITH ins AS (
                        INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, idempotency_key)
                        VALUES ($1, $2, $3, $4, COALESCE($5, now()), $6, $7)
                        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                        RETURNING id)
                     SELECT id FROM ins
                     UNION ALL
                     SELECT id FROM jobs WHERE idempotency_key = $7 AND NOT EXISTS (SELECT 1 FROM ins)",
                )
                .await?;
            let mut ids = Vec::with_capacity(jobs.len());
            for job in jobs {
                let row = tx.query_one(&stmt, &insert_params(job)).await?;
                ids.push(row.get(0));
            }
            tx.commit().await?;
            return Ok(ids);
        }
        let stmt = client
            .prepare_typed_cached(
                "INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts)
                 SELECT q, k, p, pr, COALESCE(ra, now()), ma
                 FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[], $6::int[])
                      AS t(q, k, p, pr, ra, ma)
                 RETURNING id",
                &[
                    Type::TEXT_ARRAY,
                    Type::TEXT_ARRAY,
                    Type::JSONB_ARRAY,
                    Type::INT4_ARRAY,
                    Type::TIMESTAMPTZ_ARRAY,
                    Type::INT4_ARRAY,
                ],
            )
            .await?;
        let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
        let kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
        let payloads: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.payload).collect();
        let priorities: Vec<i32> = jobs.iter().map(|j| j.priority).collect();
        let run_ats: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.run_at).collect();
        let max_attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts).collect();
        // A single statement is atomic: no explicit transaction needed.
        let rows = client
            .query(
                &stmt,
                &[
                    &queues,
                    &kinds,
                    &payloads,
                    &priorities,
                    &run_ats,
                    &max_attempts,
                ],
            )
            .await?;
        // ids come from one sequence in row order: ascending = input order.
        let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    pub async fn get(&self, id: i64) -> Result<Job, QueueError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .await?;
        let row = client
            .query_opt(&stmt, &[&id])
            .await?
            .ok_or(QueueError::NotFound)?;
        Ok(Job::from_row(&row)?)
    }

    /// Newest first.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Job>, QueueError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::text IS NULL OR queue = $2)
               AND ($3::bigint IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        );
        let stmt = client.prepare_cached(&sql).await?;
        let status = filter.status.map(|s| s.as_str());
        let rows = client
            .query(
                &stmt,
                &[&status, &filter.queue, &filter.before, &filter.limit],
            )
            .await?;
        rows.iter()
            .map(|r| Job::from_row(r).map_err(QueueError::from))
            .collect()
    }

    /// Cancels a queued or running job. A running job's lease token is
    /// cleared, so its worker can no longer complete it (the worker aborts
    /// the handler at its next lease extension). Cancelling a cancelled job
    /// is a no-op; a finished one is a conflict.
    pub async fn cancel(&self, id: i64) -> Result<Job, QueueError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now(),
                 lease_token = NULL, lease_expires_at = NULL, locked_by = NULL
             WHERE id = $1 AND status IN ('queued', 'running')
             RETURNING {JOB_COLUMNS}"
        );
        if let Some(row) = client.query_opt(&sql, &[&id]).await? {
            return Ok(Job::from_row(&row)?);
        }
        drop(client);
        let job = self.get(id).await?;
        match job.status {
            Status::Cancelled => Ok(job),
            other => Err(QueueError::Conflict(format!(
                "job is {other} and cannot be cancelled"
            ))),
        }
    }

    /// Puts a `dead` or `cancelled` job back in the queue with a fresh set of
    /// attempts.
    pub async fn retry(&self, id: i64) -> Result<Job, QueueError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "UPDATE jobs SET status = 'queued', attempts = 0, run_at = now(), finished_at = NULL,
                 updated_at = now()
             WHERE id = $1 AND status IN ('dead', 'cancelled')
             RETURNING {JOB_COLUMNS}"
        );
        if let Some(row) = client.query_opt(&sql, &[&id]).await? {
            client
                .execute(
                    "SELECT pg_notify('jobqueue', $1)",
                    &[&Job::from_row(&row)?.queue],
                )
                .await?;
            return Ok(Job::from_row(&row)?);
        }
        drop(client);
        let job = self.get(id).await?;
        Err(QueueError::Conflict(format!(
            "job is {} and cannot be retried (only dead or cancelled jobs)",
            job.status
        )))
    }

    /// Counts per queue and status.
    pub async fn stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status ORDER BY queue",
                &[],
            )
            .await?;
        let mut out: Vec<QueueStats> = Vec::new();
        for row in rows {
            let queue: String = row.get(0);
            let status: String = row.get(1);
            let count: i64 = row.get(2);
            if out.last().map(|s| s.queue != queue).unwrap_or(true) {
                let counts = Status::ALL
                    .iter()
                    .map(|s| (s.as_str().to_string(), 0))
                    .collect();
                out.push(QueueStats {
                    queue: queue.clone(),
                    depth: 0,
                    counts,
                });
            }
            if let Some(entry) = out.last_mut() {
                if status == "queued" {
                    entry.depth = count;
                }
                entry.counts.insert(status, count);
            }
        }
        Ok(out)
    }

    /// Claims up to `limit` due jobs from `queues` (highest priority first)
    /// with a lease of `lease`. One statement: `FOR UPDATE SKIP LOCKED` so
    /// concurrent workers never wait on each other's rows.
    pub async fn claim(
        &self,
        queues: &[String],
        limit: usize,
        lease: Duration,
        worker_id: &str,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let client = self.pool.get().await?;
        let token: i64 = rand::random();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease_ms = millis(lease) as f64;
        let rows = if let [queue] = queues {
            let stmt = client
                .prepare_typed_cached(
                    CLAIM_ONE_QUEUE,
                    &[Type::TEXT, Type::INT8, Type::INT8, Type::FLOAT8, Type::TEXT],
                )
                .await?;
            client
                .query(&stmt, &[queue, &limit, &token, &lease_ms, &worker_id])
                .await?
        } else {
            let stmt = client
                .prepare_typed_cached(
                    CLAIM_MANY_QUEUES,
                    &[
                        Type::TEXT_ARRAY,
                        Type::INT8,
                        Type::INT8,
                        Type::FLOAT8,
                        Type::TEXT,
                    ],
                )
                .await?;
            client
                .query(&stmt, &[&queues, &limit, &token, &lease_ms, &worker_id])
                .await?
        };
        let mut jobs = rows
            .iter()
            .map(|r| {
                Ok(ClaimedJob {
                    id: r.try_get(0)?,
                    queue: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    payload: r.try_get(3)?,
                    attempt: r.try_get(4)?,
                    max_attempts: r.try_get(5)?,
                    priority: r.try_get(6)?,
                    run_at: r.try_get(7)?,
                    lease_token: token,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        // UPDATE … RETURNING has no order: restore the claim order.
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs)
    }

    /// Marks jobs succeeded. Returns the ids actually updated: a missing id
    /// means the lease was lost (expired and re-queued, or cancelled).
    pub async fn complete(&self, leases: &[(i64, i64)]) -> Result<Vec<i64>, QueueError> {
        self.fenced(COMPLETE, leases, None).await
    }

    /// Hands jobs back (shutdown): `queued` again, the attempt not counted.
    pub async fn release(&self, leases: &[(i64, i64)]) -> Result<Vec<i64>, QueueError> {
        let released = self.fenced(RELEASE, leases, None).await?;
        if !released.is_empty() {
            let client = self.pool.get().await?;
            client
                .execute("SELECT pg_notify('jobqueue', '')", &[])
                .await?;
        }
        Ok(released)
    }

    /// Extends leases by `lease` from now. Returns the ids still held.
    pub async fn extend(
        &self,
        leases: &[(i64, i64)],
        lease: Duration,
    ) -> Result<Vec<i64>, QueueError> {
        self.fenced(EXTEND, leases, Some(millis(lease) as f64))
            .await
    }

    async fn fenced(
        &self,
        sql: &str,
        leases: &[(i64, i64)],
        lease_ms: Option<f64>,
    ) -> Result<Vec<i64>, QueueError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = leases.iter().map(|l| l.0).collect();
        let tokens: Vec<i64> = leases.iter().map(|l| l.1).collect();
        let client = self.pool.get().await?;
        let rows = match lease_ms {
            None => {
                let stmt = client
                    .prepare_typed_cached(sql, &[Type::INT8_ARRAY, Type::INT8_ARRAY])
                    .await?;
                client.query(&stmt, &[&ids, &tokens]).await?
            }
            Some(ms) => {
                let stmt = client
                    .prepare_typed_cached(sql, &[Type::INT8_ARRAY, Type::INT8_ARRAY, Type::FLOAT8])
                    .await?;
                client.query(&stmt, &[&ids, &tokens, &ms]).await?
            }
        };
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Records failed attempts: back to `queued` after `retry_in`, or `dead`
    /// when attempts are exhausted. Returns `(id, new status)` for each job
    /// whose lease was still valid.
    pub async fn fail(&self, failures: &[Failure]) -> Result<Vec<(i64, Status)>, QueueError> {
        if failures.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = failures.iter().map(|f| f.id).collect();
        let tokens: Vec<i64> = failures.iter().map(|f| f.lease_token).collect();
        let errors: Vec<&str> = failures.iter().map(|f| f.error.as_str()).collect();
        let delays: Vec<i64> = failures.iter().map(|f| millis(f.retry_in)).collect();
        let permanent: Vec<bool> = failures.iter().map(|f| f.permanent).collect();
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_typed_cached(
                FAIL,
                &[
                    Type::INT8_ARRAY,
                    Type::INT8_ARRAY,
                    Type::TEXT_ARRAY,
                    Type::INT8_ARRAY,
                    Type::BOOL_ARRAY,
                ],
            )
            .await?;
        let rows = client
            .query(&stmt, &[&ids, &tokens, &errors, &delays, &permanent])
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let status: String = r.get(1);
                (r.get(0), Status::parse(&status).unwrap_or(Status::Queued))
            })
            .collect())
    }

    /// Re-queues jobs whose lease expired (the worker died or hung), or marks
    /// them `dead` when that was their last attempt. Returns
    /// `(requeued, dead)`.
    pub async fn reap_expired(&self) -> Result<(u64, u64), QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "WITH expired AS (
                     SELECT id FROM jobs
                     WHERE status = 'running' AND lease_expires_at < now()
                     ORDER BY lease_expires_at LIMIT 10000
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE jobs AS j
                 SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
                     finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
                     last_error = 'lease expired (worker ' || coalesce(j.locked_by, '?') || ' stopped renewing it)',
                     run_at = now(), updated_at = now(),
                     lease_token = NULL, lease_expires_at = NULL, locked_by = NULL
                 FROM expired WHERE j.id = expired.id
                 RETURNING j.status",
                &[],
            )
            .await?;
        let dead = rows
            .iter()
            .filter(|r| r.get::<_, &str>(0) == "dead")
            .count() as u64;
        let requeued = rows.len() as u64 - dead;
        if requeued > 0 {
            client
                .execute("SELECT pg_notify('jobqueue', '')", &[])
                .await?;
        }
        Ok((requeued, dead))
    }

    /// Deletes finished jobs older than `retention`, in slices so a huge
    /// backlog never holds one long transaction. Returns the number deleted.
    pub async fn delete_finished(&self, retention: Duration) -> Result<u64, QueueError> {
        let client = self.pool.get().await?;
        let secs = retention.as_secs_f64();
        let mut total = 0;
        loop {
            let n = client
                .execute(
                    "DELETE FROM jobs WHERE id IN (
                         SELECT id FROM jobs
                         WHERE finished_at < now() - $1 * interval '1 second'
                           AND status IN ('succeeded', 'dead', 'cancelled')
                         LIMIT 5000)",
                    &[&secs],
                )
                .await?;
            total += n;
            if n < 5000 {
                return Ok(total);
            }
        }
    }

    /// `(queue, status, count)` for every non-empty pair.
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT queue, status, count(*) FROM jobs GROUP BY 1, 2",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

/// The parameters of both INSERT statements (single and batch enqueue), in
/// the column order their SQL lists: one place to keep them in step.
fn insert_params(job: &NewJob) -> [&(dyn ToSql + Sync); 7] {
    [
        &job.queue,
        &job.kind,
        &job.payload,
        &job.priority,
        &job.run_at,
        &job.max_attempts,
        &job.idempotency_key,
    ]
}
