//! Cancel a queued or running job (`POST …/cancel`).
//!
//! Clearing the lease token is what stops a running job: its worker's
//! fenced writes match nothing afterwards.

use crate::job::{Job, Status, JOB_COLUMNS};

use super::{Queue, QueueError};

impl Queue {
    /// Cancels a queued or running job. A running job's lease token is
    /// cleared, so its worker can no longer complete it (the worker aborts
    /// the handler at its next lease extension). Cancelling a cancelled job
    /// is a no-op; a finished one is a conflict.
    pub async fn cancel(&self, id: i64) -> Result<Job, QueueError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now(),
                 started_at = CASE WHEN status = 'running' THEN updated_at ELSE started_at END,
                 lease_token = NULL, lease_expires_at = now(), locked_by = NULL,
                 group_done = CASE WHEN group_key IS NOT NULL THEN true END
             WHERE id = $1 AND status IN ('queued', 'running')
             RETURNING {JOB_COLUMNS}"
        );
        if let Some(row) = client.query_opt(&sql, &[&id]).await? {
            let job = Job::from_row(&row)?;
            if job.group.is_some() {
                // It may have held a place in its group.
                client.execute(super::NOTIFY_GROUP, &[]).await?;
            }
            return Ok(job);
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
}
