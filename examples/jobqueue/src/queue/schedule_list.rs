//! Every schedule, by name ([`Queue::list_schedules`]).

use crate::schedule::{Schedule, SCHEDULE_COLUMNS};

use super::{Queue, QueueError};

impl Queue {
    pub async fn list_schedules(&self) -> Result<Vec<Schedule>, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!("SELECT {SCHEDULE_COLUMNS} FROM jobqueue_schedules ORDER BY name"),
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(Schedule::from_row)
            .collect::<Result<_, _>>()?)
    }
}
