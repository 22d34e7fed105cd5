//! Enqueue many jobs in one statement (`POST /api/v1/jobs/batch`).
//!
//! Why its own file: the fast path is one `INSERT … SELECT FROM unnest(…)`
//! of column arrays — one round trip, one NOTIFY — and its parameter types
//! are spelled out so the statement is prepared once.

use chrono::{DateTime, Utc};
use tokio_postgres::types::{ToSql, Type};

use crate::job::NewJob;

use super::{Queue, QueueError, NOTIFY_GROUP};

const INSERT_PLAIN: &str = "
INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts)
SELECT q, k, p, pr, COALESCE(ra, now()), ma
FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[], $6::int[])
     AS t(q, k, p, pr, ra, ma)
RETURNING id";

const INSERT_WITH_FEATURES: &str = "
INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, group_key, timeout_seconds)
SELECT q, k, p, pr, COALESCE(ra, now()), ma, g, ts
FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[], $6::int[],
            $7::text[], $8::int[])
     AS t(q, k, p, pr, ra, ma, g, ts)
RETURNING id";

/// The parameter types of both statements (the plain one takes the first
/// six), spelled out so each is prepared once per connection.
const TYPES_WITH_FEATURES: [Type; 8] = [
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::JSONB_ARRAY,
    Type::INT4_ARRAY,
    Type::TIMESTAMPTZ_ARRAY,
    Type::INT4_ARRAY,
    Type::TEXT_ARRAY,
    Type::INT4_ARRAY,
];

impl Queue {
    /// Enqueues many jobs in one transaction; returns their ids in input
    /// order. Jobs with an idempotency key that exists already yield the
    /// existing job's id.
    pub async fn enqueue_batch(&self, jobs: &[NewJob]) -> Result<Vec<i64>, QueueError> {
        for (i, job) in jobs.iter().enumerate() {
            job.validate()
                .map_err(|m| QueueError::Invalid(format!("jobs[{i}].{m}")))?;
        }
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.pool.get().await?;
        if jobs.iter().any(|j| j.idempotency_key.is_some()) {
            // Rare path: one job at a time (the idempotency rules of
            // `enqueue.rs`), still one transaction.
            let tx = client.transaction().await?;
            let mut ids = Vec::with_capacity(jobs.len());
            for (i, job) in jobs.iter().enumerate() {
                let (found, _) = super::enqueue_tx(&*tx, job).await.map_err(|e| match e {
                    QueueError::Conflict(m) => QueueError::Conflict(format!("jobs[{i}].{m}")),
                    other => other,
                })?;
                ids.push(found.id);
            }
            tx.commit().await?;
            return Ok(ids);
        }
        let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
        let kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
        let payloads: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.payload).collect();
        let priorities: Vec<i32> = jobs.iter().map(|j| j.priority).collect();
        let run_ats: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.run_at).collect();
        let max_attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts).collect();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &queues,
            &kinds,
            &payloads,
            &priorities,
            &run_ats,
            &max_attempts,
        ];
        // Jobs that use neither groups nor timeouts (nearly all) go through
        // the narrow statement of the time before those features, so they
        // do not pay for two more arrays of NULLs to send and unnest.
        let any_grouped = jobs.iter().any(|j| j.group.is_some());
        let groups: Vec<Option<&str>>;
        let timeouts: Vec<Option<i32>>;
        let (sql, types) = if any_grouped || jobs.iter().any(|j| j.timeout_seconds.is_some()) {
            groups = jobs.iter().map(|j| j.group.as_deref()).collect();
            timeouts = jobs.iter().map(|j| j.timeout_seconds).collect();
            params.push(&groups);
            params.push(&timeouts);
            (INSERT_WITH_FEATURES, &TYPES_WITH_FEATURES[..])
        } else {
            (INSERT_PLAIN, &TYPES_WITH_FEATURES[..6])
        };
        let stmt = client.prepare_typed_cached(sql, types).await?;
        // A single statement is atomic: no explicit transaction needed.
        let rows = client.query(&stmt, &params).await?;
        if any_grouped {
            client.execute(NOTIFY_GROUP, &[]).await?;
        }
        // ids come from one sequence in row order: ascending = input order.
        let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        ids.sort_unstable();
        Ok(ids)
    }
}
