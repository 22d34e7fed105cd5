//! Delete finished jobs past the retention period: the reaper.
//!
//! In slices of 5,000 so a huge backlog never holds one long transaction.

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
}
