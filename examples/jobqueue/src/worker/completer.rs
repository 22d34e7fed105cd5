//! The completer: stores outcomes in batches, then frees their slots.
//!
//! Why batched (graphile-worker's batched completion, River's completer,
//! PR #258): a completion is one fenced `UPDATE` whatever the number of
//! rows, so storing 500 outcomes costs about what storing 5 does. Why
//! adaptive: the right moment to write depends on the load, and no user
//! should have to tune it.
//!
//! Finished attempts land in the [`Outbox`]. Two roles empty it:
//! - the **fetcher**, while it is claiming, takes the successes and stores
//!   them in the same statement as its next claim
//!   (`Queue::claim_and_complete`): under load, a slot goes from one job to
//!   the next in one round trip and one commit;
//! - the **completer** writes whatever the fetcher does not take: failures,
//!   and everything when the fetcher is idle (queue drained) or stopped.
//!   It writes at once when no handler is running or the batch is as large
//!   as a claim (nothing more is coming / a full claim's worth of slots
//!   comes free), else after at most [`FLUSH_AFTER`]; up to
//!   [`MAX_WRITERS`] writes are in flight.
//!
//! A slot is freed only once its outcome is stored: the worker never holds
//! more than `concurrency` unacknowledged jobs, which bounds what a
//! `kill -9` can repeat.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::job::Status;
use crate::metrics::Metrics;
use crate::queue::{Failure, Queue};
use crate::shutdown::Shutdown;

use super::executor::Outcome;
use super::ledger::Ledger;
use super::{backoff, WorkerOptions};

/// The longest an outcome waits before the completer writes it.
pub(crate) const FLUSH_AFTER: Duration = Duration::from_millis(2);
/// Outcomes per statement at most.
pub(crate) const MAX_PER_WRITE: usize = 1000;
/// Completion writes in flight at once.
pub(crate) const MAX_WRITERS: usize = 2;

/// Finished attempts waiting to be stored.
pub(crate) struct Outbox {
    items: Mutex<Vec<Outcome>>,
    /// Wakes the completer.
    pub for_completer: Notify,
    /// Wakes the fetcher (a slot is about to come free).
    pub for_fetcher: Notify,
    /// True while the fetcher is claiming (not asleep on an empty queue,
    /// not stopped): it will take the successes with its next claim.
    pub fetcher_active: AtomicBool,
    /// Whether a success the fetcher takes wakes the completer too
    /// ([`Outbox::new`]).
    wake_completer_for_successes: bool,
}

impl Outbox {
    /// `claims_in_flight`: the fetcher's ([`super::claims_in_flight`]).
    /// With one claim in flight every success waits for that claim (a
    /// cycle of well under [`FLUSH_AFTER`] under load), so the completer
    /// has nothing to do with them, and waking it for each cost a thread
    /// wake-up per job: concurrency 24 went from 26,000 to 28,100 jobs/s
    /// (four alternating rounds of 50,000 no-op jobs), the worker from 9.4
    /// to 8.6 µs of CPU per job. With two in flight the successes can wait
    /// several milliseconds, and the completer storing them alongside the
    /// claims is worth its wake-ups: without them concurrency 2048 was 5 %
    /// slower (ten rounds).
    pub fn new(claims_in_flight: usize) -> Self {
        Outbox {
            items: Mutex::default(),
            for_completer: Notify::new(),
            for_fetcher: Notify::new(),
            fetcher_active: AtomicBool::new(false),
            wake_completer_for_successes: claims_in_flight > 1,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Outcome>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, o: Outcome) {
        let for_the_fetcher = o.fetcher_takes();
        self.lock().push(o);
        // While the fetcher is claiming, it stores the successes it takes
        // with its next claim ([`Outbox::new`] says when the completer is
        // woken for them anyway). The completer is woken for what the
        // fetcher leaves, and whenever the fetcher stops claiming (every
        // `fetcher_active = false` is followed by a wake-up; SeqCst on both
        // sides, so an outcome pushed as it stops is seen by one of them).
        if !for_the_fetcher
            || self.wake_completer_for_successes
            || !self.fetcher_active.load(Ordering::SeqCst)
        {
            self.for_completer.notify_one();
        }
        self.for_fetcher.notify_one();
    }

    /// Puts outcomes back (a combined write failed): the completer retries.
    pub fn put_back(&self, outcomes: Vec<Outcome>) {
        self.lock().extend(outcomes);
        self.for_completer.notify_one();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Up to `max` outcomes, successes and failures.
    fn take(&self, max: usize) -> Vec<Outcome> {
        let mut items = self.lock();
        let n = items.len().min(max);
        items.drain(..n).collect()
    }

    /// Up to `max` successful outcomes (failures stay for the completer).
    pub fn take_successes(&self, max: usize) -> Vec<Outcome> {
        let mut items = self.lock();
        if items.is_empty() || max == 0 {
            return Vec::new();
        }
        let mut taken = Vec::new();
        let mut kept = Vec::new();
        for o in items.drain(..) {
            if o.fetcher_takes() && taken.len() < max {
                taken.push(o);
            } else {
                kept.push(o);
            }
        }
        *items = kept;
        taken
    }
}

pub(crate) struct Completer {
    pub queue: Queue,
    pub ledger: Ledger,
    pub metrics: Arc<Metrics>,
    pub opts: Arc<WorkerOptions>,
    pub outbox: Arc<Outbox>,
    /// Outcomes per write that free a whole claim batch.
    pub flush_size: usize,
}

impl Completer {
    /// Runs until `stop`, then stores what is left and returns.
    pub async fn run(self, mut stop: Shutdown) {
        let this = Arc::new(self);
        let writers = Arc::new(Semaphore::new(MAX_WRITERS));
        let flush_size = this.flush_size.clamp(1, MAX_PER_WRITE);
        loop {
            let stopping = stop.is_triggered();
            if this.outbox.len() == 0 {
                if stopping {
                    break;
                }
                tokio::select! {
                    _ = stop.wait() => {}
                    _ = this.outbox.for_completer.notified() => {}
                }
                continue;
            }
            // Give the fetcher (if it is claiming) or more outcomes a moment,
            // unless waiting cannot help.
            let deadline = tokio::time::Instant::now() + FLUSH_AFTER;
            loop {
                let fetcher_takes = this.outbox.fetcher_active.load(Ordering::SeqCst);
                let len = this.outbox.len();
                if stop.is_triggered()
                    || len == 0
                    || tokio::time::Instant::now() >= deadline
                    || (!fetcher_takes && (len >= flush_size || this.ledger.running() == 0))
                {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = this.outbox.for_completer.notified() => {}
                    // Re-check "nothing running" often: the last handler of
                    // a burst may end without an outcome (abandoned job).
                    _ = tokio::time::sleep(Duration::from_micros(500)) => {}
                }
            }
            let Ok(permit) = writers.clone().acquire_owned().await else {
                break;
            };
            let outcomes = this.outbox.take(MAX_PER_WRITE);
            if outcomes.is_empty() {
                continue; // the fetcher took them
            }
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
        // Successes with their claim's row address are found there
        // (`queue/complete_at.rs`); the rest, and those whose row moved
        // since, by id.
        let mut located = Vec::new();
        let mut addresses = Vec::new();
        let mut by_id = Vec::new();
        let mut with_output = Vec::new();
        let mut failures = Vec::new();
        for o in &batch {
            match (&o.result, &o.output, o.tid) {
                (Ok(()), None, Some(at)) => {
                    located.push((o.id, o.token));
                    addresses.push(at);
                }
                (Ok(()), None, None) => by_id.push((o.id, o.token)),
                (Ok(()), Some(out), _) => with_output.push((o.id, o.token, out)),
                (Err(e), _, _) => failures.push(Failure {
                    id: o.id,
                    lease_token: o.token,
                    error: truncate(&e.message, 2000),
                    retry_in: backoff(o.attempt, opts.retry_base, opts.retry_max),
                    permanent: !e.retryable,
                }),
            }
        }
        let mut wait = Duration::from_millis(50);
        // Each statement runs once: a retry resumes at the one that failed.
        // Running a stored one again would find its rows no longer
        // `running` and count their jobs as lost leases.
        let mut completed = Vec::new();
        let mut failed = Vec::new();
        let mut stored_steps = 0;
        loop {
            let r = async {
                if stored_steps == 0 {
                    let at = self.queue.complete_at(&located, &addresses).await?;
                    let found: HashSet<i64> = at.iter().copied().collect();
                    // Not found at its address: the row moved, by id then.
                    by_id.extend(located.iter().filter(|l| !found.contains(&l.0)));
                    completed.extend(at);
                    stored_steps = 1;
                }
                if stored_steps == 1 {
                    completed.extend(self.queue.complete(&by_id).await?);
                    stored_steps = 2;
                }
                if stored_steps == 2 {
                    completed.extend(self.queue.complete_with_output(&with_output).await?);
                    stored_steps = 3;
                }
                if stored_steps == 3 {
                    failed = self.queue.fail(&failures).await?;
                    stored_steps = 4;
                }
                Ok::<_, crate::QueueError>(())
            }
            .await;
            match r {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), outcomes = batch.len(), "storing job outcomes failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
        if batch.iter().any(|o| o.grouped) {
            // Places in groups are free: wake the group fetchers of every
            // worker. Best effort: their poll is the fallback.
            if let Err(e) = self.queue.notify_group().await {
                tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), "waking group fetchers failed; they find the free places at their next poll");
            }
        }
        let completed: HashSet<i64> = completed.into_iter().collect();
        let failed: HashMap<i64, Status> = failed.into_iter().collect();
        record(
            &self.ledger,
            &self.metrics,
            opts,
            &batch,
            &completed,
            &failed,
        );
        drop(batch); // drops the permits: the slots are free again
    }
}

/// After a write: forget the jobs, count and log each outcome. Shared by
/// the completer and the fetcher's combined claim-and-complete.
pub(crate) fn record(
    ledger: &Ledger,
    metrics: &Metrics,
    opts: &WorkerOptions,
    batch: &[Outcome],
    completed: &HashSet<i64>,
    failed: &HashMap<i64, Status>,
) {
    let mut map = ledger.lock();
    for o in batch {
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
