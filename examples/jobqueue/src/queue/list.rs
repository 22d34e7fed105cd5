//! List jobs, newest first, with filters and a cursor.

use crate::job::{Job, JOB_COLUMNS};

use super::{ListFilter, Queue, QueueError};

impl Queue {
    /// Newest first.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Job>, QueueError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::text IS NULL OR queue = $2)
               AND ($3::bigint IS NULL OR id < $3)
               AND ($5::text IS NULL OR kind = $5)
             ORDER BY id DESC LIMIT $4"
        );
        let stmt = client.prepare_cached(&sql).await?;
        let status = filter.status.map(|s| s.as_str());
        let rows = client
            .query(
                &stmt,
                &[
                    &status,
                    &filter.queue,
                    &filter.before,
                    &filter.limit,
                    &filter.kind,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| Job::from_row(r).map_err(QueueError::from))
            .collect()
    }
}
