//! Re-queue jobs whose lease expired (their worker died or hung), or mark
//! them `dead` when that was their last attempt: the reaper.

use super::{Queue, QueueError};

impl Queue {
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
                     run_at = now(), updated_at = now(), started_at = j.updated_at,
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
        if !rows.is_empty() {
            // Re-queued jobs for the fetchers; for the group fetchers, also
            // the places the reaped jobs held in their groups.
            client.execute(super::NOTIFY_ALL, &[]).await?;
        }
        Ok((requeued, dead))
    }
}
