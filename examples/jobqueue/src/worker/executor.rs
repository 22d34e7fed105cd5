//! The executor: runs one claimed job's handler in its own task and hands
//! the outcome to the completer (or to the fetcher, which stores
//! successes together with its next claim).
//!
//! Why a role of its own (River's "executor"): running user code is where
//! things go wrong — a handler panics, never returns, or must be aborted
//! because its lease is gone. The executor isolates each handler in a
//! task, records it in the [`Ledger`] with its abort handle, and reports
//! the outcome exactly once, and only if nobody abandoned the job first.
//! The slot (semaphore permit) travels with the outcome and is freed only
//! once the completer has stored it.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use crate::handler::{JobContext, JobError, JobResult, Registry};
use crate::metrics::Metrics;
use crate::queue::{ClaimedJob, Queue};

use super::completer::Outbox;
use super::ledger::{Held, HeldState, Ledger, RunningGuard};

/// A finished attempt on its way to the database.
pub(crate) struct Outcome {
    pub id: i64,
    pub token: i64,
    pub queue: String,
    pub kind: String,
    pub attempt: i32,
    pub result: JobResult,
    /// What the handler set with `JobContext::set_output` (successes only).
    pub output: Option<serde_json::Value>,
    /// A grouped job: storing its outcome frees a place in its group, so
    /// the completer wakes every worker's group fetchers.
    pub grouped: bool,
    /// Where the claim left the job's row (`queue/tid.rs`): the fetcher
    /// stores a success by it. `None`: by id (grouped jobs, and a success
    /// whose row had moved since).
    pub tid: Option<crate::queue::Tid>,
    /// Frees the slot when the outcome is stored (dropped).
    pub permit: OwnedSemaphorePermit,
}

impl Outcome {
    /// Whether the fetcher stores this outcome with its next claim
    /// (`Outbox::take_successes`). Failures, outputs (`complete_with_output`:
    /// the combined statement stays narrow) and grouped jobs (the completer
    /// sends the wake-up their places need) go to the completer, and so
    /// does a success without an address (its row moved: stored by id).
    pub fn fetcher_takes(&self) -> bool {
        self.result.is_ok() && self.output.is_none() && !self.grouped && self.tid.is_some()
    }
}

#[derive(Clone)]
pub(crate) struct Executor {
    pub registry: Arc<Registry>,
    pub ledger: Ledger,
    pub outbox: Arc<Outbox>,
    pub metrics: Arc<Metrics>,
    pub worker_id: Arc<str>,
    /// For handlers' progress reports.
    pub queue: Queue,
}

impl Executor {
    /// Starts `job`'s handler; `permit` is its slot.
    pub fn start(&self, mut job: ClaimedJob, permit: OwnedSemaphorePermit) {
        self.metrics.worker_lease_acquired_total.inc(&[&job.queue]);
        let delay = (chrono::Utc::now() - job.run_at)
            .to_std()
            .unwrap_or_default();
        self.metrics
            .job_start_delay_seconds
            .observe(&[&job.queue], delay);
        tracing::info!(
            job_id = job.id,
            kind = %job.kind,
            queue = %job.queue,
            attempt = job.attempt,
            worker_id = %self.worker_id,
            "job started"
        );
        let id = job.id;
        // Insert and attach the abort handle under one lock, so the lease
        // keeper or the drain never sees a running job it cannot abort.
        let mut map = self.ledger.lock();
        map.insert(
            id,
            Held {
                token: job.lease_token,
                state: HeldState::Running,
                abort: None,
            },
        );
        self.ledger.handler_started();
        let handler = self.registry.get(&job.kind);
        let ledger = self.ledger.clone();
        let outbox = self.outbox.clone();
        let metrics = self.metrics.clone();
        let payload = std::mem::take(&mut job.payload);
        let ctx = JobContext::for_claim(&job, payload, self.queue.clone());
        let output = ctx.output_handle();
        let timeout = job.timeout_seconds;
        let task = tokio::spawn(async move {
            let _running = RunningGuard(ledger.clone());
            let started = Instant::now();
            let result = match (handler, timeout) {
                (Some(h), None) => h.run(ctx).await,
                // The handler's future is dropped at the deadline: it stops
                // at its next await (as on lease loss or shutdown).
                (Some(h), Some(secs)) => tokio::time::timeout(
                    std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(1)),
                    h.run(ctx),
                )
                .await
                .unwrap_or_else(|_| Err(JobError::timeout(secs))),
                (None, _) => Err(JobError::retry(format!(
                    "no handler registered for kind {:?}",
                    job.kind
                ))),
            };
            let output = if result.is_ok() { output.take() } else { None };
            metrics
                .job_duration_seconds
                .observe(&[&job.queue, &job.kind], started.elapsed());
            // Under the lock so shutdown/lease loss and completion cannot
            // both claim the job.
            // `_running` drops after the outcome is sent (reverse declaration
            // order): the completer never sees "nothing running" while an
            // outcome is still on its way.
            let mut map = ledger.lock();
            if let Some(h) = map.get_mut(&id) {
                if h.state == HeldState::Running {
                    h.state = HeldState::Done;
                    outbox.push(Outcome {
                        id,
                        token: job.lease_token,
                        queue: job.queue,
                        kind: job.kind,
                        attempt: job.attempt,
                        result,
                        output,
                        grouped: job.group.is_some(),
                        tid: job.tid,
                        permit,
                    });
                }
            }
        });
        if let Some(h) = map.get_mut(&id) {
            h.abort = Some(task.abort_handle());
        }
    }
}
