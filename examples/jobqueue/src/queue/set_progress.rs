//! Store a running job's progress ([`crate::JobContext::set_progress`]).
//!
//! Fenced like every worker write: once the lease is gone (expired and
//! re-queued, re-claimed, cancelled), the old holder's progress matches
//! nothing and is dropped.

use super::{Queue, QueueError};

const SET_PROGRESS: &str = "
UPDATE jobs SET progress = $3
WHERE id = $1 AND lease_token = $2 AND status = 'running'";

impl Queue {
    /// Returns false when the lease was lost (nothing written).
    pub async fn set_progress(
        &self,
        id: i64,
        lease_token: i64,
        progress: &serde_json::Value,
    ) -> Result<bool, QueueError> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SET_PROGRESS).await?;
        Ok(client
            .execute(&stmt, &[&id, &lease_token, progress])
            .await?
            == 1)
    }
}
