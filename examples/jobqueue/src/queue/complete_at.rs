//! Record successful attempts found at the addresses their claim returned
//! (`tid.rs`): the completer's way for jobs whose success the fetcher's
//! next claim does not store.
//!
//! Why: with two claims in flight (200 slots and more) the completer
//! stores most successes — at concurrency 2048, 31,244 of 50,000 in one
//! run, 114 statements (PostgreSQL's statement log) — and `complete.rs`
//! finds each row by primary key: a B-tree descent plus a visit to every
//! version of the id the index still lists. Here each row is one heap
//! fetch, as in the store-and-claim statement (`claim_and_complete.rs`,
//! `Find::Address`). The fence is the same (id, lease token, `running`);
//! the address is only the way in, so a row that moved since its claim (a
//! lease extension, a progress report) is simply not found, and the
//! caller stores that job by id (`Queue::complete`).
//!
//! `status || ''` and `id + 0` keep the planner off the lease index and
//! the primary key: the only ways left are a TID fetch per job or, for a
//! table of a few pages, reading it (both right; these connections plan
//! each execution for its parameters, `db::pool_async_commit`).

use tokio_postgres::types::Type;

use super::{Queue, QueueError, Tid};

/// The statement, for the test that holds its plan to TID fetches.
#[doc(hidden)]
pub const COMPLETE_AT_SQL: &str = "
UPDATE jobs AS j
SET status = 'succeeded', finished_at = now(), updated_at = now(), started_at = j.updated_at,
    lease_token = NULL, locked_by = NULL,
    -- Out of the group index (migration 8); NULL stays NULL for an
    -- ungrouped job, so its success stays a heap-only update.
    group_done = CASE WHEN j.group_key IS NOT NULL THEN true END
FROM unnest($1::bigint[], $2::bigint[], $3::tid[]) AS d(id, token, at)
WHERE j.ctid = d.at AND j.id + 0 = d.id AND j.lease_token = d.token AND j.status || '' = 'running'
RETURNING j.id";

impl Queue {
    /// Marks jobs succeeded, each found at `addresses` (its
    /// [`super::ClaimedJob::tid`], in `leases`' order). Returns the ids
    /// actually updated; a missing id: the row moved since the claim, or
    /// the lease was lost — store it with [`Queue::complete`], whose fence
    /// tells which.
    pub async fn complete_at(
        &self,
        leases: &[(i64, i64)],
        addresses: &[Tid],
    ) -> Result<Vec<i64>, QueueError> {
        if leases.len() != addresses.len() {
            return Err(QueueError::Invalid(format!(
                "{} addresses for {} finished jobs",
                addresses.len(),
                leases.len()
            )));
        }
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = leases.iter().map(|l| l.0).collect();
        let tokens: Vec<i64> = leases.iter().map(|l| l.1).collect();
        let client = self.pool().get().await?;
        let stmt = client
            .prepare_typed_cached(
                COMPLETE_AT_SQL,
                &[Type::INT8_ARRAY, Type::INT8_ARRAY, Type::TID_ARRAY],
            )
            .await?;
        let rows = client.query(&stmt, &[&ids, &tokens, &addresses]).await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(QueueError::from))
            .collect()
    }
}
