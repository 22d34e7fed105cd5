//! Record failed attempts (fenced, batched): back to `queued` after the
//! backoff, or `dead` when attempts are exhausted or the failure is
//! permanent.

use tokio_postgres::types::Type;

use crate::job::Status;

use super::{millis, Failure, Queue, QueueError};

const FAIL: &str = "
UPDATE jobs AS j
SET status = CASE WHEN d.permanent OR j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
    run_at = CASE WHEN d.permanent OR j.attempts >= j.max_attempts THEN j.run_at
                  ELSE now() + d.delay_ms * interval '1 millisecond' END,
    finished_at = CASE WHEN d.permanent OR j.attempts >= j.max_attempts THEN now() END,
    last_error = d.error, updated_at = now(), started_at = j.updated_at,
    lease_token = NULL, locked_by = NULL,
    -- A finished row keeps a lease time (migration 8): retention reads it.
    lease_expires_at = CASE WHEN d.permanent OR j.attempts >= j.max_attempts THEN now() END,
    group_done = CASE WHEN j.group_key IS NOT NULL AND (d.permanent OR j.attempts >= j.max_attempts)
                      THEN true END
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bool[])
     AS d(id, token, error, delay_ms, permanent)
WHERE j.id = ANY($1) AND j.id = d.id AND j.lease_token = d.token AND j.status = 'running'
RETURNING j.id, j.status";

impl Queue {
    /// Records failed attempts: back to `queued` after `retry_in`, or `dead`
    /// when attempts are exhausted. Returns `(id, new status)` for each job
    /// whose lease was still valid.
    pub async fn fail(&self, failures: &[Failure]) -> Result<Vec<(i64, Status)>, QueueError> {
        if failures.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = failures.iter().map(|f| f.id).collect();
        let tokens: Vec<i64> = failures.iter().map(|f| f.lease_token).collect();
        let errors: Vec<&str> = failures.iter().map(|f| f.error.as_str()).collect();
        let delays: Vec<i64> = failures.iter().map(|f| millis(f.retry_in)).collect();
        let permanent: Vec<bool> = failures.iter().map(|f| f.permanent).collect();
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_typed_cached(
                FAIL,
                &[
                    Type::INT8_ARRAY,
                    Type::INT8_ARRAY,
                    Type::TEXT_ARRAY,
                    Type::INT8_ARRAY,
                    Type::BOOL_ARRAY,
                ],
            )
            .await?;
        let rows = client
            .query(&stmt, &[&ids, &tokens, &errors, &delays, &permanent])
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let status: String = r.get(1);
                (r.get(0), Status::parse(&status).unwrap_or(Status::Queued))
            })
            .collect())
    }
}
