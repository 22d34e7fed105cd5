//! Claim due jobs under a lease: the worker's fetcher calls this.
//!
//! One statement: `UPDATE … WHERE ctid = ANY(ARRAY(SELECT ctid … FOR
//! UPDATE SKIP LOCKED LIMIT n))` stamps the rows with a fresh random lease
//! token. `SKIP LOCKED` means concurrent workers never wait on each
//! other's rows; the `ARRAY(…)` form keeps the planner on the claim index
//! (a join against a CTE made it hash the whole table). The rows are
//! updated where the subquery locked them (a TID scan), not looked up
//! again by primary key (`tid.rs`): the lock keeps that version current
//! until the update. A row the lock found updated since the statement's
//! snapshot (its newer version is locked instead) is not visible at that
//! address: it is left queued, not claimed, and the lock ends with the
//! statement. It returns the new versions' `ctid`, by which the fetcher
//! later stores the jobs' successes.
//!
//! **Which rows.** The claim index is partial on `lease_expires_at IS
//! NULL AND group_key IS NULL` (migration 8: no index reads `status`, so
//! that a success is a heap-only update); the scan tests `status =
//! 'queued'` as well, so a row that another writer left with a status
//! its lease time disagrees with is never claimed.
//!
//! **Where the scan starts** ([`ClaimFrom`]). A claimed job leaves a dead
//! entry at the head of the claim index until VACUUM removes it (every
//! minute at best: `autovacuum_naptime`). A scan from the start of the
//! queue steps over all of them, and they pile up at the rate jobs are
//! claimed: 25,000 claims without a vacuum cost the next claim 512 index
//! pages (1.6 ms), for 12 jobs. So the fetcher passes the key of a job it
//! claimed recently, and the claim starts there (`priority = p AND
//! (run_at, id) >= (r, i)`: three pages). Jobs that can land *before* that
//! key are rare (a higher priority, a `run_at` in the past, a transaction
//! that enqueued long before it committed, rows another claim locked and
//! then rolled back); the fetcher's full scans find them — see
//! `worker/fetcher.rs`.
//!
//! **Passing over the jobs of a claim in flight** ([`ClaimFrom::skip`]).
//! With two claims in flight from one position, the second used to scan
//! the same index range as the first and step over (or wait on) every
//! row the first had locked. It now first finds the key of the first job
//! past the `skip` jobs the other claim is taking (an index-only scan that
//! locks nothing; locked rows count, since they are still queued in its
//! snapshot) and starts there, so the two lock disjoint rows. If the
//! first claim committed before the second's snapshot, its jobs are gone
//! from the count and the second passes over as many others: they wait
//! for the next full scan, as jobs before the position do.

use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};

use chrono::{DateTime, Utc};

use super::{millis, ClaimedJob, Queue, QueueError};

/// A position in claim order (`priority DESC, run_at, id`) where a claim
/// scan may start: the key of a job claimed recently (module docs), and
/// how many claimable jobs from there to pass over first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimFrom {
    pub priority: i32,
    pub run_at: DateTime<Utc>,
    pub id: i64,
    /// Claimable jobs at and after the key that this claim leaves to
    /// others: the jobs a claim still in flight from the same position is
    /// taking (module docs). 0: none.
    pub skip: i64,
}

impl ClaimFrom {
    /// The position of `job` in claim order.
    pub fn of(job: &ClaimedJob) -> Self {
        ClaimFrom {
            priority: job.priority,
            run_at: job.run_at,
            id: job.id,
            skip: 0,
        }
    }

    /// The same position, passing over the first `jobs` claimable jobs.
    pub fn skipping(self, jobs: usize) -> Self {
        ClaimFrom {
            skip: i64::try_from(jobs).unwrap_or(i64::MAX),
            ..self
        }
    }
}

/// Where a claim scan starts: the three SQL shapes of every claim
/// statement that takes a [`ClaimFrom`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(super) enum Start {
    /// At the head of the queue (no position).
    Head = 0,
    /// At a position.
    At = 1,
    /// At a position, after passing over `skip` claimable jobs.
    Skipping = 2,
}

impl Start {
    /// In discriminant order.
    pub(super) const ALL: [Start; 3] = [Start::Head, Start::At, Start::Skipping];

    pub(super) fn of(from: Option<&ClaimFrom>) -> Start {
        match from {
            None => Start::Head,
            Some(f) if f.skip > 0 => Start::Skipping,
            Some(_) => Start::At,
        }
    }
}

/// The SQL of a [`Start`] for a claim over `queue_filter`, with the
/// position bound to `$p`, `$p+1`, `$p+2` and the skip to `$p+3`: a CTE to
/// put in the statement's `WITH` (empty unless skipping) and the condition
/// for the claim's scan. Skipping finds the key of the first job not
/// passed over (an index scan of `skip` entries that locks nothing) and
/// starts the claim there: two claims in flight from one position then
/// lock disjoint rows instead of the second stepping over (and waiting
/// on) the first's. If the queue holds fewer jobs, the claim finds none
/// and comes back short, which sends the fetcher to a full scan.
pub(super) fn start_sql(start: Start, queue_filter: &str, p: usize) -> (String, String) {
    let (r, i, s) = (p + 1, p + 2, p + 3);
    match start {
        Start::Head => (String::new(), String::new()),
        Start::At => (String::new(), from_filter(p, r, i)),
        Start::Skipping => (
            format!(
                "skipped AS MATERIALIZED (
    SELECT run_at, id FROM jobs
    WHERE lease_expires_at IS NULL AND group_key IS NULL AND status = 'queued' AND {queue_filter} AND run_at <= now()
      AND priority = ${p} AND (run_at, id) >= (${r}, ${i})
    ORDER BY priority DESC, run_at, id
    OFFSET ${s} LIMIT 1)"
            ),
            format!(
                "AND priority = ${p} AND (run_at, id) >= ((SELECT run_at FROM skipped), (SELECT id FROM skipped))"
            ),
        ),
    }
}

/// The condition that starts a one-queue claim scan at a [`ClaimFrom`]
/// bound to `$p`, `$r`, `$i`: with `priority` fixed, `(run_at, id)` is
/// the rest of the claim index's key, so the index scan starts there
/// instead of at the head of the queue. Jobs of lower priority are not
/// reached: such a claim comes back short and the fetcher scans in full.
fn from_filter(p: usize, r: usize, i: usize) -> String {
    format!("AND priority = ${p} AND (run_at, id) >= (${r}, ${i})")
}

/// Binds a [`ClaimFrom`] (if any) after a one-queue claim's other
/// parameters: the `$p`…`$p+3` of [`start_sql`] (the skip only when
/// skipping, as [`Start::of`] says).
pub(super) fn bind_from<'a>(
    from: Option<&'a ClaimFrom>,
    types: &mut Vec<Type>,
    params: &mut Vec<&'a (dyn ToSql + Sync)>,
) {
    if let Some(from) = from {
        types.extend([Type::INT4, Type::TIMESTAMPTZ, Type::INT8]);
        params.extend([
            &from.priority as &(dyn ToSql + Sync),
            &from.run_at,
            &from.id,
        ]);
        if Start::of(Some(from)) == Start::Skipping {
            types.push(Type::INT8);
            params.push(&from.skip);
        }
    }
}

/// The one-queue claim for each [`Start`]; each built once.
fn claim_one_queue(start: Start) -> &'static str {
    static SQL: std::sync::OnceLock<[String; 3]> = std::sync::OnceLock::new();
    &SQL.get_or_init(|| Start::ALL.map(claim_one_queue_sql))[start as usize]
}

fn claim_one_queue_sql(start: Start) -> String {
    let (skipped, from) = start_sql(start, "queue = $1", 6);
    let with = if skipped.is_empty() {
        String::new()
    } else {
        format!("WITH {skipped}")
    };
    format!(
        "{with}
UPDATE jobs AS j
SET status = 'running', attempts = j.attempts + 1, lease_token = $3,
    lease_expires_at = now() + $4 * interval '1 millisecond', locked_by = $5, updated_at = now()
WHERE j.ctid = ANY(ARRAY(
    SELECT ctid FROM jobs
    WHERE lease_expires_at IS NULL AND group_key IS NULL AND status = 'queued' AND queue = $1 AND run_at <= now()
      AND $1 <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues)) {from}
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED))
RETURNING j.id, j.queue, j.kind, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at, j.timeout_seconds, j.ctid"
    )
}

const CLAIM_MANY_QUEUES: &str = "
UPDATE jobs AS j
SET status = 'running', attempts = j.attempts + 1, lease_token = $3,
    lease_expires_at = now() + $4 * interval '1 millisecond', locked_by = $5, updated_at = now()
WHERE j.ctid = ANY(ARRAY(
    SELECT ctid FROM jobs
    WHERE lease_expires_at IS NULL AND group_key IS NULL AND status = 'queued' AND queue = ANY($1) AND run_at <= now()
      AND queue <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues))
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED))
RETURNING j.id, j.queue, j.kind, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at, j.timeout_seconds, j.ctid";

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
        self.claim_from(queues, limit, lease, worker_id, None).await
    }

    /// [`Queue::claim`], starting the scan at `from` when `queues` is one
    /// queue (module docs): jobs before `from`, and jobs of a lower
    /// priority, are not taken by this call.
    pub async fn claim_from(
        &self,
        queues: &[String],
        limit: usize,
        lease: Duration,
        worker_id: &str,
        from: Option<&ClaimFrom>,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let client = self.pool.get().await?;
        let token: i64 = rand::random();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease_ms = millis(lease) as f64;
        let rows = if let [queue] = queues {
            let mut types = vec![Type::TEXT, Type::INT8, Type::INT8, Type::FLOAT8, Type::TEXT];
            let mut params: Vec<&(dyn ToSql + Sync)> =
                vec![queue, &limit, &token, &lease_ms, &worker_id];
            bind_from(from, &mut types, &mut params);
            let stmt = client
                .prepare_typed_cached(claim_one_queue(Start::of(from)), &types)
                .await?;
            client.query(&stmt, &params).await?
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
        // Grouped claims are stored by the completer, by id.
        tid: if with_group {
            None
        } else {
            r.try_get(first + 9)?
        },
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

#[cfg(test)]
mod tests {
    use super::{claim_one_queue, Start};

    #[test]
    fn each_start_gets_its_own_one_queue_claim() {
        let mut seen = std::collections::HashSet::new();
        for start in Start::ALL {
            let s = claim_one_queue(start);
            assert!(seen.insert(s), "{start:?} shares its statement");
            assert_eq!(s.contains("(run_at, id) >= ($7, $8)"), start != Start::Head);
            assert_eq!(s.contains("OFFSET $9 LIMIT 1"), start == Start::Skipping);
            assert_eq!(
                s.contains(
                    "(run_at, id) >= ((SELECT run_at FROM skipped), (SELECT id FROM skipped))"
                ),
                start == Start::Skipping
            );
        }
    }
}
