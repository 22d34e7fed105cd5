//! Read one schedule by name ([`Queue::get_schedule`]).

use crate::schedule::{Schedule, SCHEDULE_COLUMNS};

use super::{Queue, QueueError};

impl Queue {
    /// The schedule `name`, or `None`.
    pub async fn get_schedule(&self, name: &str) -> Result<Option<Schedule>, QueueError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {SCHEDULE_COLUMNS} FROM jobqueue_schedules WHERE name = $1"),
                &[&name],
            )
            .await?;
        Ok(row.as_ref().map(Schedule::from_row).transpose()?)
    }
}
