//! Extend leases (fenced): the worker's lease keeper.

use std::time::Duration;

use super::{millis, Queue, QueueError};

const EXTEND: &str = "
UPDATE jobs AS j
SET lease_expires_at = now() + $3 * interval '1 millisecond'
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, token)
WHERE j.id = ANY($1) AND j.id = d.id AND j.lease_token = d.token AND j.status = 'running'
RETURNING j.id";

impl Queue {
    /// Extends leases by `lease` from now. Returns the ids still held.
    pub async fn extend(
        &self,
        leases: &[(i64, i64)],
        lease: Duration,
    ) -> Result<Vec<i64>, QueueError> {
        self.fenced(EXTEND, leases, Some(millis(lease) as f64))
            .await
    }
}
