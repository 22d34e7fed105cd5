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
//! **The worker's way: by address** ([`Queue::claim_and_complete_at`]).
//! A claim returns each row version's `ctid` (`tid.rs`), and the statement
//! that stores the success fetches the row there: a nested loop over
//! `unnest(ids, tokens, addresses)` with one TID fetch per job, instead of
//! a primary-key descent that also visits every older version of the id.
//! The fence (id, token, `running`) is unchanged; a row that moved since
//! its claim (a lease extension, a progress report) is not found, keeps
//! its slot (the claim takes one job fewer) and is stored by id by the
//! completer. The claim's own update finds its rows by `ctid` too
//! (`claim.rs`). The plan is the same for any number of jobs, so every
//! claim runs on the generic-plan connections
//! (`db::pool_async_commit_generic_plans`), and the SQL leaves the
//! planner no other way in whatever the statistics ([`Find::Address`]).
//! Measured (`examples/bench`, 50,000 no-op jobs, five alternating
//! rounds against the build by id, medians of the per-round ratios):
//! 1.09× at concurrency 24, 1.14× at 200, 1.13× at 2048; PostgreSQL CPU
//! per job 28.2 → 26.4, 18.2 → 15.6 and 18.4 → 17.6 µs.
//!
//! **By id** ([`Queue::claim_and_complete`], for callers without
//! addresses). With up to [`POSITIONAL_FENCE_MAX`] finished jobs the SQL
//! is written for a generic plan that is right whatever the statistics:
//! - the fence pairs each id with its token by position
//!   (`$2[array_position($1, id)]`) instead of joining `unnest($1, $2)`:
//!   no join for the planner to turn into a nested loop;
//! - `status || '' = 'running'` keeps the planner off the partial lease
//!   index (`WHERE status = 'running'`), which statistics taken at an idle
//!   moment make look empty: it would scan every running job instead of
//!   looking the ids up by primary key.
//!
//! Larger sets use the `unnest` join of `complete.rs`, best with custom
//! plans: planning is amortised over hundreds of rows there, and
//! positional pairing would cost O(n²).

use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};

use super::claim::Start;
use super::{millis, ClaimFrom, ClaimedJob, Queue, QueueError, Tid};

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

/// How the statement finds the finished jobs' rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Find {
    /// By primary key, each id paired with its token by array position
    /// (up to [`POSITIONAL_FENCE_MAX`], generic plans).
    IdPositional = 0,
    /// By primary key, joined with `unnest(ids, tokens)` (custom plans).
    IdJoin = 1,
    /// At the addresses the claim returned (`tid.rs`): a nested loop over
    /// `unnest(ids, tokens, addresses)`, one TID fetch per job, whatever
    /// the number of jobs, and the only plan left to a generic plan on a
    /// table of any size: `status || ''` keeps the planner off the lease
    /// index, `id + 0` off a full scan of the primary key (for a merge
    /// join on id, which it picked for a table of a few pages and would
    /// have kept as the table grew), and the claim connections rule out
    /// reading the table (`db::pool_async_commit_generic_plans`).
    Address = 2,
}

impl Find {
    const ALL: [Find; 3] = [Find::IdPositional, Find::IdJoin, Find::Address];
}

/// The statement for one queue (`queue = $3`) or several (`queue =
/// ANY($3)`), finding the finished rows one of three ways ([`Find`]),
/// starting its claim one of three ways ([`Start`]): eighteen variants,
/// each built once (this is the hot path).
fn sql(one_queue: bool, find: Find, start: Start) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        let mut all = Vec::with_capacity(18);
        for one_queue in [false, true] {
            for find in Find::ALL {
                for start in Start::ALL {
                    let filter = if one_queue {
                        "queue = $3"
                    } else {
                        "queue = ANY($3)"
                    };
                    all.push(build_sql(filter, find, start));
                }
            }
        }
        all
    });
    // `Find::ALL` and `Start::ALL` list the variants in discriminant order.
    &all[usize::from(one_queue) * 9 + find as usize * 3 + start as usize]
}

fn build_sql(queue_filter: &str, find: Find, start: Start) -> String {
    let located = find == Find::Address;
    // Start the claim scan at the fetcher's position (`claim.rs`); with
    // addresses, they are $8 and the position follows.
    let (skipped, from) = super::claim::start_sql(start, queue_filter, if located { 9 } else { 8 });
    let skipped = if skipped.is_empty() {
        skipped
    } else {
        format!("{skipped},\n")
    };
    // With addresses, a finished job not stored (its row moved, or its
    // lease is gone) keeps its slot until the caller stores it by id: the
    // claim takes one job fewer for each, so a worker never holds more
    // leases than slots.
    let limit = if located {
        "$4 - cardinality($1::bigint[]) + (SELECT count(*) FROM done)"
    } else {
        "$4"
    };
    // Skip paused queues: one subquery per statement (an InitPlan), not
    // per row.
    let pause_filter = if queue_filter.contains("ANY") {
        "queue <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues))"
    } else {
        "$3 <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues))"
    };
    // The fence is the same whichever way in: id, lease token, running.
    let done = match find {
        Find::IdPositional => "WHERE j.id = ANY($1) AND j.status || '' = 'running'
      AND j.lease_token = ($2::bigint[])[array_position($1::bigint[], j.id)]",
        Find::IdJoin => "FROM unnest($1::bigint[], $2::bigint[]) AS d(id, token)
    WHERE j.id = ANY($1) AND j.id = d.id AND j.lease_token = d.token AND j.status = 'running'",
        Find::Address => "FROM unnest($1::bigint[], $2::bigint[], $8::tid[]) AS d(id, token, at)
    WHERE j.ctid = d.at AND j.id + 0 = d.id AND j.lease_token = d.token AND j.status || '' = 'running'",
    };
    format!(
        "
WITH {skipped}done AS (
    UPDATE jobs AS j
    SET status = 'succeeded', finished_at = now(), updated_at = now(), started_at = j.updated_at,
        lease_token = NULL, locked_by = NULL,
        group_done = CASE WHEN j.group_key IS NOT NULL THEN true END
    {done}
    RETURNING j.id),
claimed AS (
    UPDATE jobs AS j
    SET status = 'running', attempts = j.attempts + 1, lease_token = $5,
        lease_expires_at = now() + $6 * interval '1 millisecond', locked_by = $7, updated_at = now()
    WHERE j.ctid = ANY(ARRAY(
        SELECT ctid FROM jobs
        WHERE lease_expires_at IS NULL AND group_key IS NULL AND status = 'queued' AND {queue_filter} AND run_at <= now()
          AND {pause_filter} {from}
        ORDER BY priority DESC, run_at, id
        LIMIT {limit}
        FOR UPDATE SKIP LOCKED))
    RETURNING j.id, j.queue, j.kind, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at, j.timeout_seconds, j.ctid)
SELECT true, id, NULL::text, NULL::text, NULL::jsonb, NULL::int, NULL::int, NULL::int, NULL::timestamptz, NULL::int, NULL::tid FROM done
UNION ALL
SELECT false, id, queue, kind, payload, attempts, max_attempts, priority, run_at, timeout_seconds, ctid FROM claimed"
    )
}

/// The worker's store-and-claim statement for one queue, finding the
/// finished rows by address ([`Find::Address`]); parameters `$1` ids,
/// `$2` tokens, `$3` queue, `$4` slots, `$5` new token, `$6` lease in ms,
/// `$7` worker id, `$8` addresses (then `$9`–`$11`, the start position,
/// with `from`; then `$12`, the jobs to pass over, with `skipping`). For
/// the test that holds its generic plan to TID fetches
/// on a table of any size.
#[doc(hidden)]
pub fn store_and_claim_by_address_sql(from: bool, skipping: bool) -> &'static str {
    let start = match (from, skipping) {
        (false, _) => Start::Head,
        (true, false) => Start::At,
        (true, true) => Start::Skipping,
    };
    sql(true, Find::Address, start)
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
        self.claim_and_complete_at(queues, limit, lease, worker_id, done, &[], from)
            .await
    }

    /// [`Queue::claim_and_complete`], finding the finished rows at
    /// `addresses` (each job's [`ClaimedJob::tid`], in `done`'s order; empty:
    /// by id, as `claim_and_complete`). The fence is the same; a job whose
    /// row has moved since its claim (a lease extension, a progress
    /// report) is simply not in the completed ids, and the caller stores it
    /// by id. With addresses, `limit` counts `done`'s slots and each
    /// finished job that was not stored keeps its slot: the claim takes
    /// one job fewer for it.
    #[allow(clippy::too_many_arguments)] // the hot path: no builder per claim
    pub async fn claim_and_complete_at(
        &self,
        queues: &[String],
        limit: usize,
        lease: Duration,
        worker_id: &str,
        done: &[(i64, i64)],
        addresses: &[Tid],
        from: Option<&ClaimFrom>,
    ) -> Result<(Vec<ClaimedJob>, Vec<i64>), QueueError> {
        if done.is_empty() {
            return Ok((
                self.claim_from(queues, limit, lease, worker_id, from)
                    .await?,
                Vec::new(),
            ));
        }
        let located = !addresses.is_empty();
        if located && addresses.len() != done.len() {
            return Err(QueueError::Invalid(format!(
                "{} addresses for {} finished jobs",
                addresses.len(),
                done.len()
            )));
        }
        let ids: Vec<i64> = done.iter().map(|l| l.0).collect();
        let tokens: Vec<i64> = done.iter().map(|l| l.1).collect();
        let client = self.pool().get().await?;
        let token: i64 = rand::random();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease_ms = millis(lease) as f64;
        let find = if located {
            Find::Address
        } else if done.len() <= POSITIONAL_FENCE_MAX {
            Find::IdPositional
        } else {
            Find::IdJoin
        };
        let (queue_type, queue_param): (Type, &(dyn ToSql + Sync)) = match queues {
            [queue] => (Type::TEXT, queue),
            _ => (Type::TEXT_ARRAY, &queues),
        };
        let mut types = vec![
            Type::INT8_ARRAY,
            Type::INT8_ARRAY,
            queue_type,
            Type::INT8,
            Type::INT8,
            Type::FLOAT8,
            Type::TEXT,
        ];
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &ids,
            &tokens,
            queue_param,
            &limit,
            &token,
            &lease_ms,
            &worker_id,
        ];
        if located {
            types.push(Type::TID_ARRAY);
            params.push(&addresses);
        }
        // A start position only for one queue (module docs of `claim.rs`).
        let from = if queues.len() == 1 { from } else { None };
        super::claim::bind_from(from, &mut types, &mut params);
        let stmt = client
            .prepare_typed_cached(sql(queues.len() == 1, find, Start::of(from)), &types)
            .await?;
        let rows = client.query(&stmt, &params).await?;
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
    use super::{sql, Find, Start};

    #[test]
    fn each_variant_gets_its_own_statement() {
        let mut seen = std::collections::HashSet::new();
        for one_queue in [false, true] {
            for find in Find::ALL {
                for start in Start::ALL {
                    let s = sql(one_queue, find, start);
                    let located = find == Find::Address;
                    let from = start != Start::Head;
                    let skipping = start == Start::Skipping;
                    assert!(seen.insert(s), "{find:?} {start:?} shares its statement");
                    assert_eq!(s.contains("queue = $3"), one_queue);
                    assert_eq!(s.contains("queue = ANY($3)"), !one_queue);
                    assert_eq!(s.contains("array_position"), find == Find::IdPositional);
                    assert_eq!(s.contains("unnest("), find != Find::IdPositional);
                    assert_eq!(s.contains("j.ctid = d.at"), located);
                    assert_eq!(s.contains("j.id = ANY($1)"), !located);
                    assert_eq!(s.contains("(run_at, id) >= ($9, $10)"), from && !located);
                    assert_eq!(s.contains("(run_at, id) >= ($10, $11)"), from && located);
                    assert_eq!(s.contains("OFFSET $11 LIMIT 1"), skipping && !located);
                    assert_eq!(s.contains("OFFSET $12 LIMIT 1"), skipping && located);
                    assert_eq!(s.contains("FROM skipped"), skipping);
                    assert_eq!(s.contains("LIMIT $4\n"), !located);
                    assert_eq!(s.contains("(SELECT count(*) FROM done)"), located);
                    // The fence never depends on the way in.
                    assert!(s.contains("j.lease_token = "));
                    assert!(s.contains("'running'"));
                }
            }
        }
        assert_eq!(seen.len(), 18);
    }
}
