//! Claim due jobs under a lease: the worker's fetcher calls this.
//!
//! One statement: `UPDATE … WHERE id = ANY(ARRAY(SELECT … FOR UPDATE SKIP
//! LOCKED LIMIT n))` stamps the rows with a fresh random lease token.
//! `SKIP LOCKED` means concurrent workers never wait on each other's rows;
//! the `ARRAY(…)` form keeps the planner on the claim index (a join
//! against a CTE made it hash the whole table).

use std::time::Duration;

use tokio_postgres::types::Type;

use super::{millis, ClaimedJob, Queue, QueueError};

const CLAIM_ONE_QUEUE: &str = "
UPDATE jobs AS j
SET status = 'running', attempts = j.attempts + 1, lease_token = $3,
    lease_expires_at = now() + $4 * interval '1 millisecond', locked_by = $5, updated_at = now(),
    started_at = now()
WHERE j.id = ANY(ARRAY(
    SELECT id FROM jobs
    WHERE status = 'queued' AND group_key IS NULL AND queue = $1 AND run_at <= now()
      AND $1 <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues))
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED))
RETURNING j.id, j.queue, j.kind, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at, j.timeout_seconds";

const CLAIM_MANY_QUEUES: &str = "
UPDATE jobs AS j
SET status = 'running', attempts = j.attempts + 1, lease_token = $3,
    lease_expires_at = now() + $4 * interval '1 millisecond', locked_by = $5, updated_at = now(),
    started_at = now()
WHERE j.id = ANY(ARRAY(
    SELECT id FROM jobs
    WHERE status = 'queued' AND group_key IS NULL AND queue = ANY($1) AND run_at <= now()
      AND queue <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues))
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED))
RETURNING j.id, j.queue, j.kind, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at, j.timeout_seconds";

impl Queue {
    /// Claims up to `limit` due jobs from `queues` (highest priority first)
    /// with a lease of `lease`. One statement: `FOR UPDATE SKIP LOCKED` so
    /// concurrent workers never wait on each other's rows.
    pub async fn claim(
        &self,
        queues: &[String],
        limit: usize,
        lease: Duration,
        worker_id: &str,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let client = self.pool.get().await?;
        let token: i64 = rand::random();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease_ms = millis(lease) as f64;
        let rows = if let [queue] = queues {
            let stmt = client
                .prepare_typed_cached(
                    CLAIM_ONE_QUEUE,
                    &[Type::TEXT, Type::INT8, Type::INT8, Type::FLOAT8, Type::TEXT],
                )
                .await?;
            client
                .query(&stmt, &[queue, &limit, &token, &lease_ms, &worker_id])
                .await?
        } else {
            let stmt = client
                .prepare_typed_cached(
                    CLAIM_MANY_QUEUES,
                    &[
                        Type::TEXT_ARRAY,
                        Type::INT8,
                        Type::INT8,
                        Type::FLOAT8,
                        Type::TEXT,
                    ],
                )
                .await?;
            client
                .query(&stmt, &[&queues, &limit, &token, &lease_ms, &worker_id])
                .await?
        };
        let mut jobs = rows
            .iter()
            .map(|r| claimed_from_row(r, 0, token, false))
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        sort_in_claim_order(&mut jobs);
        Ok(jobs)
    }
}

/// A claimed job from the RETURNING columns `id, queue, kind, payload,
/// attempts, max_attempts, priority, run_at, timeout_seconds[, group_key]`
/// starting at column `first`: one reading for every claim statement.
pub(super) fn claimed_from_row(
    r: &tokio_postgres::Row,
    first: usize,
    token: i64,
    with_group: bool,
) -> Result<ClaimedJob, tokio_postgres::Error> {
    Ok(ClaimedJob {
        id: r.try_get(first)?,
        queue: r.try_get(first + 1)?,
        kind: r.try_get(first + 2)?,
        payload: r.try_get(first + 3)?,
        attempt: r.try_get(first + 4)?,
        max_attempts: r.try_get(first + 5)?,
        priority: r.try_get(first + 6)?,
        run_at: r.try_get(first + 7)?,
        timeout_seconds: r.try_get(first + 8)?,
        group: if with_group {
            r.try_get(first + 9)?
        } else {
            None
        },
        lease_token: token,
    })
}

/// `UPDATE … RETURNING` has no order: restore the claim order.
pub(super) fn sort_in_claim_order(jobs: &mut [ClaimedJob]) {
    jobs.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.run_at.cmp(&b.run_at))
            .then(a.id.cmp(&b.id))
    });
}
