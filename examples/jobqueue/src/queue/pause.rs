//! Pause and resume a queue (`POST /api/v1/queues/{queue}/pause|resume`).
//!
//! A paused queue is a row in `jobqueue_paused_queues`; every claim
//! statement skips the queues listed there, so once `pause` returns no
//! claim that starts afterwards takes a job from it (a claim already
//! running finishes). Nothing is cached in workers, hence nothing to go
//! stale. `resume` sends the same NOTIFY as an insert so idle workers look
//! at once instead of at their next poll.

use super::{Queue, QueueError};

impl Queue {
    /// Pauses `queue` (idempotent). The queue need not have jobs yet.
    pub async fn pause(&self, queue: &str) -> Result<(), QueueError> {
        crate::job::validate_queue_name(queue)
            .map_err(|m| QueueError::Invalid(format!("queue: {m}")))?;
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO jobqueue_paused_queues (queue) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&queue],
            )
            .await?;
        Ok(())
    }

    /// Resumes `queue` (idempotent) and wakes idle workers.
    pub async fn resume(&self, queue: &str) -> Result<(), QueueError> {
        crate::job::validate_queue_name(queue)
            .map_err(|m| QueueError::Invalid(format!("queue: {m}")))?;
        let client = self.pool.get().await?;
        client
            .execute(
                "WITH gone AS (DELETE FROM jobqueue_paused_queues WHERE queue = $1 RETURNING 1)
                 SELECT pg_notify('jobqueue', ''), pg_notify('jobqueue', 'group') FROM gone",
                &[&queue],
            )
            .await?;
        Ok(())
    }

    /// The paused queues.
    pub async fn paused_queues(&self) -> Result<Vec<String>, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT queue FROM jobqueue_paused_queues ORDER BY queue",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
