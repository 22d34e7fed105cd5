//! Helpers for the tests of applications that use jobqueue (as River's
//! `rivertest` and Oban's `Oban.Testing`): run a handler without a
//! worker, and work off due jobs inline against a real database.
//!
//! ```no_run
//! # async fn t() -> Result<(), Box<dyn std::error::Error>> {
//! use jobqueue::{testing, NewJob, Registry};
//! let registry = Registry::with_builtins();
//! // A handler alone: no database, no worker. (`JobError` converts *from*
//! // any error, so it is not one itself: map it for `?`.)
//! let out = testing::run(&registry, "echo", serde_json::json!({"a": 1}))
//!     .await
//!     .map_err(|e| e.to_string())?;
//! assert_eq!(out, Some(serde_json::json!({"a": 1})));
//! // The code under test enqueues; the test works the jobs off inline.
//! let queue = jobqueue::connect("postgresql://localhost/test", 4)?;
//! queue.enqueue(&NewJob::new("noop")).await?;
//! let done = testing::work_off(&queue, &registry, &["default"]).await?;
//! assert_eq!(done.succeeded, 1);
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::handler::{JobContext, JobError, Registry};
use crate::job::{Job, Status};
use crate::queue::{ClaimedJob, Failure, ListFilter, Queue, QueueError};

/// A context for calling a handler directly.
pub fn context(kind: &str, payload: serde_json::Value) -> JobContext {
    JobContext::new(1, kind, payload)
}

/// Runs `kind`'s handler once on `payload`; returns its output.
pub async fn run(
    registry: &Registry,
    kind: &str,
    payload: serde_json::Value,
) -> Result<Option<serde_json::Value>, JobError> {
    let handler = registry
        .get(kind)
        .ok_or_else(|| JobError::permanent(format!("no handler registered for kind {kind:?}")))?;
    let ctx = context(kind, payload);
    handler.run(ctx.clone()).await?;
    Ok(ctx.output())
}

/// What [`work_off`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkOff {
    pub succeeded: usize,
    /// Failed attempts (retried at once while attempts are left).
    pub failed: usize,
    /// Jobs that went `dead`.
    pub dead: usize,
}

/// Claims and runs every due job of `queues` inline, one at a time, until
/// none is due; a failed attempt with attempts left is retried at once
/// (no backoff). Grouped jobs are included and their limits apply.
/// Stops after 100,000 attempts (a handler that never succeeds with a
/// huge `max_attempts`).
pub async fn work_off(
    queue: &Queue,
    registry: &Registry,
    queues: &[&str],
) -> Result<WorkOff, QueueError> {
    let queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
    let lease = Duration::from_secs(300);
    let mut report = WorkOff::default();
    for _ in 0..100_000 {
        let mut jobs = queue.claim(&queues, 1, lease, "testing").await?;
        if jobs.is_empty() {
            jobs = queue
                .claim_grouped(&queues, 1, usize::MAX, "", lease, "testing")
                .await?
                .jobs;
        }
        let Some(job) = jobs.pop() else {
            return Ok(report);
        };
        run_claimed(queue, registry, job, &mut report).await?;
    }
    Ok(report)
}

async fn run_claimed(
    queue: &Queue,
    registry: &Registry,
    job: ClaimedJob,
    report: &mut WorkOff,
) -> Result<(), QueueError> {
    let ctx = JobContext::for_claim(&job, job.payload.clone(), queue.clone());
    let result = match registry.get(&job.kind) {
        None => Err(JobError::retry(format!(
            "no handler registered for kind {:?}",
            job.kind
        ))),
        Some(h) => match job.timeout_seconds {
            None => h.run(ctx.clone()).await,
            Some(s) => tokio::time::timeout(
                Duration::from_secs(u64::try_from(s).unwrap_or(1)),
                h.run(ctx.clone()),
            )
            .await
            .unwrap_or_else(|_| Err(JobError::timeout(s))),
        },
    };
    match result {
        Ok(()) => {
            match ctx.output() {
                Some(out) => {
                    queue
                        .complete_with_output(&[(job.id, job.lease_token, &out)])
                        .await?
                }
                None => queue.complete(&[(job.id, job.lease_token)]).await?,
            };
            report.succeeded += 1;
        }
        Err(e) => {
            let failed = queue
                .fail(&[Failure {
                    id: job.id,
                    lease_token: job.lease_token,
                    error: e.message,
                    retry_in: Duration::ZERO,
                    permanent: !e.retryable,
                }])
                .await?;
            report.failed += 1;
            if failed.iter().any(|(_, s)| *s == Status::Dead) {
                report.dead += 1;
            }
        }
    }
    Ok(())
}

/// The queued jobs of `kind` (newest first): "did my code enqueue it?".
pub async fn enqueued(queue: &Queue, kind: &str) -> Result<Vec<Job>, QueueError> {
    queue
        .list(&ListFilter {
            status: Some(Status::Queued),
            kind: Some(kind.to_string()),
            limit: 500,
            ..Default::default()
        })
        .await
}
