//! Revive a dead or cancelled job (`POST …/retry`).

use crate::job::{Job, JOB_COLUMNS};

use super::{Queue, QueueError};

impl Queue {
    /// Puts a `dead` or `cancelled` job back in the queue with a fresh set of
    /// attempts.
    pub async fn retry(&self, id: i64) -> Result<Job, QueueError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "UPDATE jobs SET status = 'queued', attempts = 0, run_at = now(), finished_at = NULL,
                 updated_at = now(), lease_expires_at = NULL, group_done = NULL
             WHERE id = $1 AND status IN ('dead', 'cancelled')
             RETURNING {JOB_COLUMNS}"
        );
        if let Some(row) = client.query_opt(&sql, &[&id]).await? {
            let job = Job::from_row(&row)?;
            if job.group.is_some() {
                client.execute(super::NOTIFY_GROUP, &[]).await?;
            } else {
                client
                    .execute("SELECT pg_notify('jobqueue', $1)", &[&job.queue])
                    .await?;
            }
            return Ok(job);
        }
        drop(client);
        let job = self.get(id).await?;
        Err(QueueError::Conflict(format!(
            "job is {} and cannot be retried (only dead or cancelled jobs)",
            job.status
        )))
    }
}
