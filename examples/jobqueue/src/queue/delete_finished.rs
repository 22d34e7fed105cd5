//! Delete finished jobs past the retention period: the reaper.
//!
//! In slices of 5,000 so a huge backlog never holds one long transaction.
//! Finished jobs are found by their lease time (migration 8: the lease
//! index holds every job that left `queued`, and a finished one keeps the
//! lease it held, or the time it finished when it never held one), not
//! by `finished_at`: an index on that would stop successes from being
//! heap-only updates. A job is deleted once both its finish and its lease
//! time are past the cutoff, so one that succeeded before its lease ran
//! out is kept at most a lease longer.

use std::time::Duration;

use super::{Queue, QueueError};

impl Queue {
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
                         WHERE lease_expires_at < now() - $1 * interval '1 second'
                           AND finished_at < now() - $1 * interval '1 second'
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
}
