//! Put back what the indexes read where another writer left it wrong: the
//! reaper, with each full sweep (`reaper.rs`).
//!
//! The indexes read no status (migration 8): the claim index takes a job
//! with no lease time for queued, the lease index serves the reaper and
//! retention, and the group index leaves out jobs whose `group_done` is
//! set. Every statement of this crate keeps them consistent with the
//! status; plain SQL, or a release from before migration 8 still running
//! during a rolling upgrade, may not (its successes clear the lease time).

use super::{Queue, QueueError};

impl Queue {
    /// Gives every job that left `queued` without a lease time one (the
    /// time it finished, or its last update; a running job then counts as
    /// expired), takes it from every queued job that has one (or it would
    /// never be claimed), and sets `group_done` exactly for the finished
    /// grouped jobs. Reads the whole table. Returns the rows repaired.
    pub async fn repair_lease_times(&self) -> Result<u64, QueueError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE jobs
                 SET lease_expires_at = CASE WHEN status = 'queued' THEN NULL
                         ELSE coalesce(lease_expires_at, finished_at, updated_at) END,
                     group_done = CASE WHEN group_key IS NOT NULL
                         AND status NOT IN ('queued', 'running') THEN true END
                 WHERE (lease_expires_at IS NULL) <> (status = 'queued')
                    OR (group_done IS NULL) <> (group_key IS NULL OR status IN ('queued', 'running'))",
                &[],
            )
            .await?)
    }
}
