//! Read one job by id.

use crate::job::{Job, JOB_COLUMNS};

use super::{Queue, QueueError};

impl Queue {
    pub async fn get(&self, id: i64) -> Result<Job, QueueError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .await?;
        let row = client
            .query_opt(&stmt, &[&id])
            .await?
            .ok_or(QueueError::NotFound)?;
        Ok(Job::from_row(&row)?)
    }
}
