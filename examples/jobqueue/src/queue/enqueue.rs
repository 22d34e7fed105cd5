//! Enqueue one job (`POST /api/v1/jobs`, [`Queue::enqueue`]).
//!
//! Why its own file: the idempotency-key path (conflict → read the first
//! job → compare) is the one subtle part of enqueueing.

use crate::job::{Job, NewJob, JOB_COLUMNS};

use super::{insert_params, Queue, QueueError};

impl Queue {
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
}
