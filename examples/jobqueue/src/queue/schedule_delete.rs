//! Delete a schedule ([`Queue::delete_schedule`]). Jobs it already
//! enqueued stay.

use super::{Queue, QueueError};

impl Queue {
    /// Deletes the schedule `name`; `false` when there was none.
    pub async fn delete_schedule(&self, name: &str) -> Result<bool, QueueError> {
        let client = self.pool.get().await?;
        let n = client
            .execute("DELETE FROM jobqueue_schedules WHERE name = $1", &[&name])
            .await?;
        Ok(n > 0)
    }
}
