//! Record successful attempts (fenced, batched): the worker's completer.
//!
//! Also the shared shape of every fenced write: `UPDATE … FROM
//! unnest($ids, $tokens) WHERE id = d.id AND lease_token = d.token AND
//! status = 'running'`. A worker whose lease was lost (expired and
//! re-queued, re-claimed, cancelled) matches nothing. `id = ANY($1)` is
//! repeated so rows are looked up by primary key.

use tokio_postgres::types::Type;

use super::{Queue, QueueError};

const COMPLETE: &str = "
UPDATE jobs AS j
SET status = 'succeeded', finished_at = now(), updated_at = now(), started_at = j.updated_at,
    lease_token = NULL, locked_by = NULL,
    -- Out of the group index (migration 8); NULL stays NULL for an
    -- ungrouped job, so its success stays a heap-only update.
    group_done = CASE WHEN j.group_key IS NOT NULL THEN true END
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, token)
WHERE j.id = ANY($1) AND j.id = d.id AND j.lease_token = d.token AND j.status = 'running'
RETURNING j.id";

impl Queue {
    /// Marks jobs succeeded. Returns the ids actually updated: a missing id
    /// means the lease was lost (expired and re-queued, or cancelled).
    pub async fn complete(&self, leases: &[(i64, i64)]) -> Result<Vec<i64>, QueueError> {
        self.fenced(COMPLETE, leases, None).await
    }

    pub(super) async fn fenced(
        &self,
        sql: &str,
        leases: &[(i64, i64)],
        lease_ms: Option<f64>,
    ) -> Result<Vec<i64>, QueueError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = leases.iter().map(|l| l.0).collect();
        let tokens: Vec<i64> = leases.iter().map(|l| l.1).collect();
        let client = self.pool.get().await?;
        let rows = match lease_ms {
            None => {
                let stmt = client
                    .prepare_typed_cached(sql, &[Type::INT8_ARRAY, Type::INT8_ARRAY])
                    .await?;
                client.query(&stmt, &[&ids, &tokens]).await?
            }
            Some(ms) => {
                let stmt = client
                    .prepare_typed_cached(sql, &[Type::INT8_ARRAY, Type::INT8_ARRAY, Type::FLOAT8])
                    .await?;
                client.query(&stmt, &[&ids, &tokens, &ms]).await?
            }
        };
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
