//! The completer: stores outcomes in batches, then frees their slots.
//!
//! Why batched (graphile-worker's batched completion, River's completer,
//! PR #258): a completion is one fenced `UPDATE` whatever the number of
//! rows, so storing 500 outcomes costs about what storing 5 does. Why
//! adaptive: the right moment to write depends on the load, and no user
//! should have to tune it. A batch is written as soon as one of these holds:
//! - it is as large as a claim (`flush_size`): a whole claim's worth of
//!   slots comes free at once and the fetcher can claim a full batch;
//! - no handler is running: nothing more is coming soon, waiting would only
//!   add latency (this is what a trickle of jobs always hits);
//! - its oldest outcome has waited [`FLUSH_AFTER`].
//!
//! Up to [`MAX_WRITERS`] writes are in flight at once, so outcomes arriving
//! during a write gather into the next batch instead of waiting behind it.
//! A slot is freed only once its outcome is stored: the worker never holds
//! more than `concurrency` unacknowledged jobs, which bounds what a
//! `kill -9` can repeat.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use crate::job::Status;
use crate::metrics::Metrics;
use crate::queue::{Failure, Queue};

use super::executor::Outcome;
use super::ledger::Ledger;
use super::{backoff, WorkerOptions};

/// The longest an outcome waits for company before it is written.
pub(crate) const FLUSH_AFTER: Duration = Duration::from_millis(2);
/// Outcomes per statement at most.
const MAX_PER_WRITE: usize = 1000;
/// Completion writes in flight at once.
pub(crate) const MAX_WRITERS: usize = 2;

pub(crate) struct Completer {
    pub queue: Queue,
    pub ledger: Ledger,
    pub metrics: Arc<Metrics>,
    pub opts: Arc<WorkerOptions>,
    /// Outcomes per write that free a whole claim batch.
    pub flush_size: usize,
}

impl Completer {
    /// Runs until every sender (fetcher, executor tasks) is gone and the
    /// last outcomes are stored.
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<Outcome>) {
        let this = Arc::new(self);
        let writers = Arc::new(Semaphore::new(MAX_WRITERS));
        let flush_size = this.flush_size.clamp(1, MAX_PER_WRITE);
        let mut batch: Vec<Outcome> = Vec::new();
        let mut closed = false;
        while !closed {
            if batch.is_empty() && rx.recv_many(&mut batch, MAX_PER_WRITE).await == 0 {
                break;
            }
            let deadline = tokio::time::Instant::now() + FLUSH_AFTER;
            // Gather until a flush condition holds.
            loop {
                while batch.len() < MAX_PER_WRITE {
                    match rx.try_recv() {
                        Ok(o) => batch.push(o),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                if closed
                    || batch.len() >= flush_size
                    || this.ledger.running() == 0
                    || tokio::time::Instant::now() >= deadline
                {
                    break;
                }
                let room = MAX_PER_WRITE - batch.len();
                tokio::select! {
                    n = rx.recv_many(&mut batch, room) => {
                        if n == 0 { closed = true; }
                    }
                    _ = tokio::time::sleep_until(deadline) => {}
                    // Re-check "nothing running" often: the last handler of
                    // a burst may finish without sending (abandoned job).
                    _ = tokio::time::sleep(Duration::from_micros(500)) => {}
                }
            }
            let Ok(permit) = writers.clone().acquire_owned().await else {
                break;
            };
            let outcomes = std::mem::take(&mut batch);
            let me = this.clone();
            tokio::spawn(async move {
                me.write(outcomes).await;
                drop(permit);
            });
        }
        // Wait for the writes in flight.
        let _ = writers.acquire_many(MAX_WRITERS as u32).await;
    }

    /// Stores one batch, retrying until it is stored: the outcome is the
    /// only record that the work was done. If the database stays away past
    /// the lease, the writes are fenced off later and the jobs run again
    /// (at-least-once).
    async fn write(&self, batch: Vec<Outcome>) {
        let opts = &self.opts;
        let mut done = Vec::new();
        let mut failures = Vec::new();
        for o in &batch {
            match &o.result {
                Ok(()) => done.push((o.id, o.token)),
                Err(e) => failures.push(Failure {
                    id: o.id,
                    lease_token: o.token,
                    error: truncate(&e.message, 2000),
                    retry_in: backoff(o.attempt, opts.retry_base, opts.retry_max),
                    permanent: !e.retryable,
                }),
            }
        }
        let mut wait = Duration::from_millis(50);
        let (completed, failed) = loop {
            let r = async {
                let c = self.queue.complete(&done).await?;
                let f = self.queue.fail(&failures).await?;
                Ok::<_, crate::QueueError>((c, f))
            }
            .await;
            match r {
                Ok(v) => break v,
                Err(e) => {
                    tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), outcomes = batch.len(), "storing job outcomes failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        };
        let completed: HashSet<i64> = completed.into_iter().collect();
        let failed: HashMap<i64, Status> = failed.into_iter().collect();
        let metrics = &self.metrics;
        let mut map = self.ledger.lock();
        for o in &batch {
            map.remove(&o.id);
            let labels = [o.queue.as_str(), o.kind.as_str()];
            match (&o.result, completed.contains(&o.id), failed.get(&o.id)) {
                (Ok(()), true, _) => {
                    metrics.job_completed_total.inc(&labels);
                    tracing::info!(job_id = o.id, kind = %o.kind, worker_id = %opts.worker_id, "job succeeded");
                }
                (Err(e), _, Some(status)) => {
                    metrics.job_failed_total.inc(&labels);
                    if *status == Status::Dead {
                        metrics.job_dead_total.inc(&labels);
                    }
                    tracing::warn!(job_id = o.id, kind = %o.kind, attempt = o.attempt, error = %e.message, status = %status, worker_id = %opts.worker_id, "job failed");
                }
                _ => {
                    metrics.worker_lease_lost_total.inc(&[]);
                    tracing::warn!(job_id = o.id, kind = %o.kind, worker_id = %opts.worker_id, "lease lost before the outcome was stored; outcome discarded (job was re-queued or cancelled)");
                }
            }
        }
        drop(map);
        drop(batch); // drops the permits: the slots are free again
    }
}

/// An error text fit for the `last_error` column: at most `max` bytes, and
/// no NUL (a handler's message may quote anything, e.g. a response body;
/// PostgreSQL's text cannot hold NUL and the write would fail forever).
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let cleaned;
    let s = if s.contains('\0') {
        cleaned = s.replace('\0', "\u{FFFD}");
        cleaned.as_str()
    } else {
        s
    };
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("a\0b", 10), "a\u{FFFD}b");
    }
}
