//! Hand jobs back at shutdown (fenced): `queued` again, the attempt not
//! counted, and a NOTIFY so another worker picks them up at once.

use super::{Queue, QueueError};

const RELEASE: &str = "
UPDATE jobs AS j
SET status = 'queued', attempts = greatest(j.attempts - 1, 0), run_at = now(), updated_at = now(),
    lease_token = NULL, lease_expires_at = NULL, locked_by = NULL
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, token)
WHERE j.id = ANY($1) AND j.id = d.id AND j.lease_token = d.token AND j.status = 'running'
RETURNING j.id";

impl Queue {
    /// Hands jobs back (shutdown): `queued` again, the attempt not counted.
    pub async fn release(&self, leases: &[(i64, i64)]) -> Result<Vec<i64>, QueueError> {
        let released = self.fenced(RELEASE, leases, None).await?;
        if !released.is_empty() {
            let client = self.pool.get().await?;
            client.execute(super::NOTIFY_ALL, &[]).await?;
        }
        Ok(released)
    }
}
