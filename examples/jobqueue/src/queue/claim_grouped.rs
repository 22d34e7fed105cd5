//! Claim grouped jobs: at most `group_limit` jobs of one group run at a
//! time across every worker, and the groups of a queue take turns.
//!
//! Why a transaction of three statements instead of one: a limit that
//! holds across workers needs the count of a group's running jobs to be
//! current when the claim is decided. In one statement, the count comes
//! from the snapshot taken when the statement started, so two workers
//! could both see "0 running" and both start one. Here:
//! 1. find candidate groups (due jobs in our queues), in name order
//!    starting after `after` (the last group this worker served), so the
//!    groups take turns;
//! 2. lock them with `pg_try_advisory_xact_lock` (a group another worker
//!    is claiming right now is skipped, not waited for);
//! 3. claim — a new statement, so a new snapshot taken *after* the locks:
//!    every earlier claim of those groups has committed and is counted.
//!    Each group gets at most `group_limit - running` jobs, one per group
//!    first (round robin), within `limit`.
//!
//! The locks end with the transaction. Jobs leave `running` without any
//! lock (completion, failure, reaper): that only frees places, and the
//! code that frees one sends `NOTIFY jobqueue, 'group'` (`NOTIFY_GROUP`
//! in `mod.rs`) to wake the workers waiting for one.

use std::time::Duration;

use tokio_postgres::types::Type;

use super::{millis, ClaimedJob, Queue, QueueError};

/// First key of the advisory locks on groups ("jq" + "gr"); the second is
/// `hashtext(group)`. Two-key locks never collide with the one-key
/// migration and reaper locks.
pub const GROUP_LOCK_CLASS: i32 = 0x6a71_6772;

const CANDIDATES: &str = "
WITH RECURSIVE g(k) AS (
    SELECT (SELECT group_key FROM jobs
            WHERE group_key > $2 AND group_done IS NULL AND lease_expires_at IS NULL AND status = 'queued'
              AND queue = ANY($1) AND run_at <= now()
              AND queue <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues))
            ORDER BY group_key LIMIT 1)
    UNION ALL
    SELECT (SELECT group_key FROM jobs
            WHERE group_key > g.k AND group_done IS NULL AND lease_expires_at IS NULL AND status = 'queued'
              AND queue = ANY($1) AND run_at <= now()
              AND queue <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues))
            ORDER BY group_key LIMIT 1)
    FROM g WHERE g.k IS NOT NULL)
SELECT k FROM g WHERE k IS NOT NULL LIMIT $3";

const LOCK: &str = "
SELECT k FROM unnest($1::text[]) WITH ORDINALITY AS u(k, ord)
WHERE pg_try_advisory_xact_lock($2, hashtext(k))
ORDER BY ord";

const CLAIM: &str = "
WITH grp AS (
    SELECT u.k, u.ord,
           $3::int - (SELECT count(*) FROM jobs r
                      WHERE r.group_key = u.k AND r.group_done IS NULL
                        AND r.lease_expires_at IS NOT NULL AND r.status = 'running')::int AS free
    FROM unnest($1::text[]) WITH ORDINALITY AS u(k, ord)),
picked AS (
    SELECT p.id, grp.ord,
           row_number() OVER (PARTITION BY grp.k ORDER BY p.priority DESC, p.run_at, p.id) AS rn
    FROM grp CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM jobs j
        WHERE j.group_key = grp.k AND j.group_done IS NULL AND j.lease_expires_at IS NULL
          AND j.status = 'queued' AND j.queue = ANY($2)
          AND j.run_at <= now()
          AND j.queue <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT greatest(grp.free, 0)
        FOR UPDATE SKIP LOCKED) p),
chosen AS (SELECT id FROM picked ORDER BY rn, ord LIMIT $4)
UPDATE jobs AS j
SET status = 'running', attempts = j.attempts + 1, lease_token = $5,
    lease_expires_at = now() + $6 * interval '1 millisecond', locked_by = $7,
    -- The moment of the claim, after the locks (now() is the start of the
    -- transaction): a group's attempts never overlap in these stamps. It
    -- becomes started_at when the attempt ends (see mod.rs).
    updated_at = clock_timestamp()
WHERE j.id IN (SELECT id FROM chosen)
RETURNING j.id, j.queue, j.kind, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at,
          j.timeout_seconds, j.group_key";

/// What one grouped claim got.
#[derive(Debug, Default)]
pub struct GroupedClaim {
    pub jobs: Vec<ClaimedJob>,
    /// The last group that got a job: the next claim starts after it.
    pub last_group: Option<String>,
    /// Groups with due jobs were found (some may be at their limit).
    pub found_groups: bool,
}

impl Queue {
    /// Groups with due jobs in `queues`, in name order starting after
    /// `after` and wrapping around, at most `limit`. One statement outside
    /// any transaction: a hint for [`Queue::claim_grouped_from`], which
    /// checks everything again under the locks. Cheap when nothing is
    /// grouped (one probe of an empty partial index), so an idle worker
    /// pays one round trip per wake-up.
    pub async fn grouped_candidates(
        &self,
        queues: &[String],
        limit: usize,
        after: &str,
    ) -> Result<Vec<String>, QueueError> {
        let client = self.pool.get().await?;
        let wanted = i64::try_from(limit).unwrap_or(i64::MAX);
        let candidates = client
            .prepare_typed_cached(CANDIDATES, &[Type::TEXT_ARRAY, Type::TEXT, Type::INT8])
            .await?;
        let mut groups: Vec<String> = client
            .query(&candidates, &[&queues, &after, &wanted])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if (groups.len() as i64) < wanted && !after.is_empty() {
            // Wrap around: the groups up to and including `after`.
            let more = client.query(&candidates, &[&queues, &"", &wanted]).await?;
            for r in more {
                let g: String = r.get(0);
                if g.as_str() > after || groups.len() as i64 >= wanted {
                    break;
                }
                groups.push(g);
            }
        }
        Ok(groups)
    }

    /// Finds candidates and claims (see the module docs): what a caller
    /// without its own turn-taking wants (`jobqueue::testing`).
    pub async fn claim_grouped(
        &self,
        queues: &[String],
        limit: usize,
        group_limit: usize,
        after: &str,
        lease: Duration,
        worker_id: &str,
    ) -> Result<GroupedClaim, QueueError> {
        let groups = self.grouped_candidates(queues, limit, after).await?;
        self.claim_grouped_from(queues, &groups, limit, group_limit, lease, worker_id)
            .await
    }

    /// Claims up to `limit` jobs of `groups` (candidates, in turn order)
    /// from `queues`, at most `group_limit` running per group.
    pub async fn claim_grouped_from(
        &self,
        queues: &[String],
        groups: &[String],
        limit: usize,
        group_limit: usize,
        lease: Duration,
        worker_id: &str,
    ) -> Result<GroupedClaim, QueueError> {
        if groups.is_empty() {
            return Ok(GroupedClaim::default());
        }
        let wanted = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let lock = tx
            .prepare_typed_cached(LOCK, &[Type::TEXT_ARRAY, Type::INT4])
            .await?;
        let locked: Vec<String> = tx
            .query(&lock, &[&groups, &GROUP_LOCK_CLASS])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if locked.is_empty() {
            tx.commit().await?;
            return Ok(GroupedClaim {
                found_groups: true,
                ..Default::default()
            });
        }
        let token: i64 = rand::random();
        let group_limit = i32::try_from(group_limit).unwrap_or(i32::MAX);
        let claim = tx
            .prepare_typed_cached(
                CLAIM,
                &[
                    Type::TEXT_ARRAY,
                    Type::TEXT_ARRAY,
                    Type::INT4,
                    Type::INT8,
                    Type::INT8,
                    Type::FLOAT8,
                    Type::TEXT,
                ],
            )
            .await?;
        let lease_ms = millis(lease) as f64;
        let rows = tx
            .query(
                &claim,
                &[
                    &locked,
                    &queues,
                    &group_limit,
                    &wanted,
                    &token,
                    &lease_ms,
                    &worker_id,
                ],
            )
            .await?;
        tx.commit().await?;
        let mut jobs = rows
            .iter()
            .map(|r| super::claim::claimed_from_row(r, 0, token, true))
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        super::claim::sort_in_claim_order(&mut jobs);
        // The last group (in turn order) that got a job.
        let last_group = locked
            .iter()
            .rev()
            .find(|g| jobs.iter().any(|j| j.group.as_deref() == Some(g.as_str())))
            .cloned();
        Ok(GroupedClaim {
            jobs,
            last_group,
            found_groups: true,
        })
    }
}
