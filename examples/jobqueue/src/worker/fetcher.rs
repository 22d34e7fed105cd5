//! The fetcher (River's "producer", graphile-worker's local queue): decides
//! when to claim and how many, claims with one `SKIP LOCKED` statement, and
//! hands each job to the executor with its slot.
//!
//! Why it adapts instead of asking for a knob: claiming costs one statement
//! (and one commit) whatever the batch, so large claims are cheap per job,
//! but a claim may only take free slots — a worker never holds more than
//! `concurrency` leases, so a `kill -9` repeats at most that many jobs.
//! Hence:
//! - **batch** = `max(WORKER_BATCH_SIZE, concurrency / 2)`, at most 512 and
//!   at most `concurrency` ([`super::claim_batch`]). Half the slots means
//!   the next claim is already prefetched while the other half runs, and
//!   the completer frees slots in batches of the same size;
//! - **claim again when the buffer runs low**: as soon as a batch worth of
//!   slots is free, whatever else is still running; jobs are never leased
//!   beyond the slots, so prefetched work counts against `concurrency`;
//! - **linger** at most [`CLAIM_LINGER`] for a fuller batch only when fewer
//!   slots than a batch are free (long handlers finishing one by one); an
//!   idle worker claims at once, so enqueue→start stays a few milliseconds;
//! - **sleep** when the queue is drained, until a NOTIFY (new jobs), the
//!   poll interval (jobs whose `run_at` came due) or shutdown.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::queue::Queue;
use crate::shutdown::Shutdown;

use super::executor::Executor;
use super::WorkerOptions;

/// How long the fetcher waits for a fuller batch of free slots.
pub(crate) const CLAIM_LINGER: Duration = Duration::from_millis(2);

pub(crate) struct Fetcher {
    pub queue: Queue,
    pub opts: Arc<WorkerOptions>,
    pub executor: Executor,
    pub slots: Arc<Semaphore>,
    pub wake: Arc<Notify>,
    pub ready: Arc<AtomicBool>,
    pub heartbeat: Heartbeat,
    /// Jobs per claim (see the module docs).
    pub batch: usize,
}

impl Fetcher {
    pub async fn run(mut self, mut shutdown: Shutdown) {
        // Wake up at least this often even when every slot is busy, so the
        // heartbeat proves the loop is alive.
        let tick = self.opts.poll_interval.min(Duration::from_secs(1));
        let mut error_backoff = Duration::from_millis(100);
        loop {
            self.heartbeat.touch();
            if shutdown.is_triggered() {
                return;
            }
            let first = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                p = self.slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = tokio::time::sleep(tick) => continue,
            };
            let mut permits = vec![first];
            self.take_free_slots(&mut permits);
            let held: usize = permits.iter().map(|p| p.num_permits()).sum();
            if held < self.batch {
                let missing = u32::try_from(self.batch - held).unwrap_or(u32::MAX);
                if let Ok(Ok(more)) = tokio::time::timeout(
                    CLAIM_LINGER,
                    self.slots.clone().acquire_many_owned(missing),
                )
                .await
                {
                    permits.push(more);
                } else {
                    self.take_free_slots(&mut permits);
                }
            }
            let wanted: usize = permits.iter().map(|p| p.num_permits()).sum();
            // Not raced against shutdown: a claim in flight when SIGTERM
            // arrives completes, and its rows are run (or handed back).
            let claimed = self
                .queue
                .claim(
                    &self.opts.queues,
                    wanted,
                    self.opts.lease_duration,
                    &self.opts.worker_id,
                )
                .await;
            match claimed {
                Ok(jobs) => {
                    error_backoff = Duration::from_millis(100);
                    self.ready.store(true, Ordering::SeqCst);
                    let got = jobs.len();
                    let mut jobs = jobs.into_iter();
                    'start: for mut permit in permits {
                        // A permit may stand for several slots: one per job.
                        while permit.num_permits() > 1 {
                            let Some(job) = jobs.next() else { break 'start };
                            if let Some(one) = permit.split(1) {
                                self.executor.start(job, one);
                            }
                        }
                        let Some(job) = jobs.next() else { break };
                        self.executor.start(job, permit);
                    }
                    if got == wanted {
                        continue; // there may be more due right now
                    }
                    // Queue drained: sleep until notified, polled, or stopped.
                    tokio::select! {
                        biased;
                        _ = shutdown.wait() => return,
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.opts.poll_interval) => {}
                    }
                }
                Err(e) => {
                    drop(permits);
                    self.ready.store(false, Ordering::SeqCst);
                    tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), retry_in_ms = error_backoff.as_millis() as u64, "claiming jobs failed");
                    tokio::select! {
                        biased;
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(error_backoff) => {}
                    }
                    error_backoff = (error_backoff * 2)
                        .min(self.opts.poll_interval.max(Duration::from_secs(2)));
                }
            }
        }
    }

    /// Adds every free slot, up to a batch, without waiting.
    fn take_free_slots(&self, permits: &mut Vec<OwnedSemaphorePermit>) {
        let have: usize = permits.iter().map(|p| p.num_permits()).sum();
        let free = self
            .slots
            .available_permits()
            .min(self.batch.saturating_sub(have));
        if free > 0 {
            if let Ok(p) = self
                .slots
                .clone()
                .try_acquire_many_owned(u32::try_from(free).unwrap_or(u32::MAX))
            {
                permits.push(p);
            }
        }
    }
}

/// Touches the heartbeat file at most once a second (berth's `file` check).
pub(crate) struct Heartbeat {
    path: Option<PathBuf>,
    last: Option<Instant>,
}

impl Heartbeat {
    pub fn new(path: Option<PathBuf>) -> Self {
        Heartbeat { path, last: None }
    }

    fn touch(&mut self) {
        let Some(path) = &self.path else { return };
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last = Some(Instant::now());
        let now = chrono::Utc::now().to_rfc3339();
        if let Err(e) = std::fs::write(path, now) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write heartbeat file");
        }
    }
}
