//! Store finished jobs and claim new ones in one statement: the worker's
//! hot path when jobs are short.
//!
//! Why: a worker may hold only `concurrency` leases, so a slot is reused
//! only after its job's outcome is stored. With separate statements every
//! slot waits for two round trips and two commits (complete, then claim);
//! here one data-modifying CTE does both, atomically: the finished jobs
//! become `succeeded` (fenced by their lease tokens, as in `complete.rs`)
//! in the same commit that leases the jobs taking their slots. The held
//! count never exceeds `concurrency` at any instant. The two `UPDATE`s
//! touch disjoint rows (`running` vs `queued`).
//!
//! With up to [`POSITIONAL_FENCE_MAX`] finished jobs (every claim of a
//! worker with a concurrency up to ~256, where planning would dominate)
//! it runs on connections that use *generic* plans (planned once per
//! connection, see `db::pool_async_commit_generic_plans`), so that SQL is
//! written for a plan that is right whatever the statistics:
//! - the fence pairs each id with its token by position
//!   (`$2[array_position($1, id)]`) instead of joining `unnest($1, $2)`:
//!   no join for the planner to turn into a nested loop;
//! - `status || '' = 'running'` keeps the planner off the partial lease
//!   index (`WHERE status = 'running'`), which statistics taken at an idle
//!   moment make look empty: it would scan every running job instead of
//!   looking the ids up by primary key.
//!
//! Larger sets use the `unnest` join of `complete.rs` on the custom-plan
//! connections: planning is amortised over hundreds of rows there, and
//! positional pairing would cost O(n²).

use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};

use super::{millis, ClaimFrom, ClaimedJob, Queue, QueueError};

/// The largest set of finished jobs fenced by array position. Pairing by
/// `array_position` is O(n²), planning the `unnest` join is not free:
/// measured in `EXPLAIN ANALYZE`, pairing 64 ids costs 0.02 ms, 128 ids
/// 0.05 ms, 256 ids 0.45 ms and 512 ids 0.7–0.85 ms, while planning the
/// join (custom plans) costs 0.3–0.9 ms a statement. At 64 the fetcher's
/// claims at concurrency 200 (100 finished jobs each) were re-planned
/// every time: raising the limit to 128 (where pairing still costs a
/// tenth of planning) took PostgreSQL from 19.3 to
/// 17.1 µs per job there (three runs each). Larger sets use the `unnest`
/// join on the custom-plan connections.
pub const POSITIONAL_FENCE_MAX: usize = 128;

/// The statement for one queue (`queue = $3`) or several (`queue =
/// ANY($3)`), fenced by position or by join, with or without a start
/// position: eight variants, each built once (this is the hot path).
fn sql(one_queue: bool, positional: bool, from: bool) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        let mut all = Vec::with_capacity(8);
        for one_queue in [false, true] {
            for positional in [false, true] {
                for from in [false, true] {
                    let filter = if one_queue {
                        "queue = $3"
                    } else {
                        "queue = ANY($3)"
                    };
                    all.push(build_sql(filter, positional, from));
                }
            }
        }
        all
    });
    &all[usize::from(one_queue) * 4 + usize::from(positional) * 2 + usize::from(from)]
}

fn build_sql(queue_filter: &str, positional: bool, from: bool) -> String {
    // Start the claim scan at the fetcher's position (`claim.rs`).
    let from = if from {
        super::claim::from_filter(8, 9, 10)
    } else {
        String::new()
    };
    // Skip paused queues: one subquery per statement (an InitPlan), not
    // per row.
    let pause_filter = if queue_filter.contains("ANY") {
        "queue <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues))"
    } else {
        "$3 <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues))"
    };
    let done = if positional {
        "WHERE j.id = ANY($1) AND j.status || '' = 'running'
      AND j.lease_token = ($2::bigint[])[array_position($1::bigint[], j.id)]"
    } else {
        "FROM unnest($1::bigint[], $2::bigint[]) AS d(id, token)
    WHERE j.id = ANY($1) AND j.id = d.id AND j.lease_token = d.token AND j.status = 'running'"
    };
    format!(
        "
WITH done AS (
    UPDATE jobs AS j
    SET status = 'succeeded', finished_at = now(), updated_at = now(), started_at = j.updated_at,
        lease_token = NULL, lease_expires_at = NULL, locked_by = NULL
    {done}
    RETURNING j.id),
claimed AS (
    UPDATE jobs AS j
    SET status = 'running', attempts = j.attempts + 1, lease_token = $5,
        lease_expires_at = now() + $6 * interval '1 millisecond', locked_by = $7, updated_at = now()
    WHERE j.id = ANY(ARRAY(
        SELECT id FROM jobs
        WHERE status = 'queued' AND group_key IS NULL AND {queue_filter} AND run_at <= now()
          AND {pause_filter} {from}
        ORDER BY priority DESC, run_at, id
        LIMIT $4
        FOR UPDATE SKIP LOCKED))
    RETURNING j.id, j.queue, j.kind, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at, j.timeout_seconds)
SELECT true, id, NULL::text, NULL::text, NULL::jsonb, NULL::int, NULL::int, NULL::int, NULL::timestamptz, NULL::int FROM done
UNION ALL
SELECT false, id, queue, kind, payload, attempts, max_attempts, priority, run_at, timeout_seconds FROM claimed"
    )
}

impl Queue {
    /// Marks `done` (`(id, lease_token)`) succeeded and claims up to `limit`
    /// due jobs, in one statement. Returns the claimed jobs (in claim order)
    /// and the ids actually completed (a missing id: its lease was lost).
    /// With one queue, the claim scan starts at `from` (as
    /// [`Queue::claim_from`]).
    pub async fn claim_and_complete(
        &self,
        queues: &[String],
        limit: usize,
        lease: Duration,
        worker_id: &str,
        done: &[(i64, i64)],
        from: Option<&ClaimFrom>,
    ) -> Result<(Vec<ClaimedJob>, Vec<i64>), QueueError> {
        if done.is_empty() {
            return Ok((
                self.claim_from(queues, limit, lease, worker_id, from)
                    .await?,
                Vec::new(),
            ));
        }
        let ids: Vec<i64> = done.iter().map(|l| l.0).collect();
        let tokens: Vec<i64> = done.iter().map(|l| l.1).collect();
        let client = self.pool().get().await?;
        let token: i64 = rand::random();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease_ms = millis(lease) as f64;
        let positional = done.len() <= POSITIONAL_FENCE_MAX;
        let rows = if let [queue] = queues {
            let mut types = vec![
                Type::INT8_ARRAY,
                Type::INT8_ARRAY,
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::FLOAT8,
                Type::TEXT,
            ];
            let mut params: Vec<&(dyn ToSql + Sync)> =
                vec![&ids, &tokens, queue, &limit, &token, &lease_ms, &worker_id];
            super::claim::bind_from(from, &mut types, &mut params);
            let stmt = client
                .prepare_typed_cached(sql(true, positional, from.is_some()), &types)
                .await?;
            client.query(&stmt, &params).await?
        } else {
            let stmt = client
                .prepare_typed_cached(
                    sql(false, positional, false),
                    &[
                        Type::INT8_ARRAY,
                        Type::INT8_ARRAY,
                        Type::TEXT_ARRAY,
                        Type::INT8,
                        Type::INT8,
                        Type::FLOAT8,
                        Type::TEXT,
                    ],
                )
                .await?;
            client
                .query(
                    &stmt,
                    &[
                        &ids, &tokens, &queues, &limit, &token, &lease_ms, &worker_id,
                    ],
                )
                .await?
        };
        let mut completed = Vec::new();
        let mut jobs = Vec::new();
        for r in &rows {
            let is_done: bool = r.try_get(0)?;
            if is_done {
                completed.push(r.try_get(1)?);
                continue;
            }
            jobs.push(super::claim::claimed_from_row(r, 1, token, false)?);
        }
        super::claim::sort_in_claim_order(&mut jobs);
        Ok((jobs, completed))
    }
}

#[cfg(test)]
mod tests {
    use super::sql;

    #[test]
    fn each_variant_gets_its_own_statement() {
        for one_queue in [false, true] {
            for positional in [false, true] {
                for from in [false, true] {
                    let s = sql(one_queue, positional, from);
                    assert_eq!(s.contains("queue = $3"), one_queue);
                    assert_eq!(s.contains("queue = ANY($3)"), !one_queue);
                    assert_eq!(s.contains("array_position"), positional);
                    assert_eq!(s.contains("unnest("), !positional);
                    assert_eq!(s.contains("(run_at, id) >= ($9, $10)"), from);
                }
            }
        }
    }
}
