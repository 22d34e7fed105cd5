//! Record successful attempts that returned an output (fenced, batched).
//!
//! Why apart from `complete.rs`: most jobs return nothing, and their
//! completion (alone, or inside the fetcher's claim-and-complete) stays
//! the narrow statement it was; only jobs with an output pay for the
//! `jsonb[]` parameter.

use tokio_postgres::types::Type;

use super::{Queue, QueueError};

const COMPLETE_WITH_OUTPUT: &str = "
UPDATE jobs AS j
SET status = 'succeeded', finished_at = now(), updated_at = now(), started_at = j.updated_at,
    output = d.output,
    lease_token = NULL, locked_by = NULL,
    -- Out of the group index (migration 8); NULL stays NULL for an
    -- ungrouped job, so its success stays a heap-only update.
    group_done = CASE WHEN j.group_key IS NOT NULL THEN true END
FROM unnest($1::bigint[], $2::bigint[], $3::jsonb[]) AS d(id, token, output)
WHERE j.id = ANY($1) AND j.id = d.id AND j.lease_token = d.token AND j.status = 'running'
RETURNING j.id";

impl Queue {
    /// Marks jobs succeeded with their outputs (`(id, lease_token,
    /// output)`). Returns the ids actually updated.
    pub async fn complete_with_output(
        &self,
        done: &[(i64, i64, &serde_json::Value)],
    ) -> Result<Vec<i64>, QueueError> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = done.iter().map(|d| d.0).collect();
        let tokens: Vec<i64> = done.iter().map(|d| d.1).collect();
        let outputs: Vec<&serde_json::Value> = done.iter().map(|d| d.2).collect();
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_typed_cached(
                COMPLETE_WITH_OUTPUT,
                &[Type::INT8_ARRAY, Type::INT8_ARRAY, Type::JSONB_ARRAY],
            )
            .await?;
        let rows = client.query(&stmt, &[&ids, &tokens, &outputs]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
