//! The group fetcher: claims grouped jobs (`NewJob::group`) beside the
//! fetcher, on the same slots.
//!
//! Why its own role: the fetcher's claim is one statement tuned for
//! throughput, and a limit per group across workers needs a locked count
//! (`Queue::claim_grouped`, three statements in a transaction). Keeping
//! them apart means a worker that never sees a grouped job pays nothing
//! but an idle task: this one sleeps until a NOTIFY (an insert, or a
//! grouped job leaving `running` anywhere), the poll interval or shutdown.
//!
//! Fairness: each claim starts after the last group this worker served
//! and gives each group one job before any group gets a second, so a
//! tenant with 10,000 queued jobs does not hold back one with 10.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::queue::Queue;
use crate::shutdown::Shutdown;

use super::executor::Executor;
use super::WorkerOptions;

pub(crate) struct GroupFetcher {
    pub queue: Queue,
    pub opts: Arc<WorkerOptions>,
    pub executor: Executor,
    pub slots: Arc<Semaphore>,
    pub wake: Arc<Notify>,
    /// Jobs per claim at most.
    pub batch: usize,
}

impl GroupFetcher {
    /// Waits for a NOTIFY (new jobs, or a grouped job left `running`
    /// anywhere), the poll interval, or shutdown (then false).
    async fn idle(&self, shutdown: &mut Shutdown) -> bool {
        tokio::select! {
            biased;
            _ = shutdown.wait() => false,
            _ = self.wake.notified() => true,
            _ = tokio::time::sleep(self.opts.poll_interval) => true,
        }
    }

    pub async fn run(self, mut shutdown: Shutdown) {
        let mut cursor = String::new();
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_triggered() {
                return;
            }
            // Look before taking slots: with no grouped job due (the common
            // case) this is one statement and no slot is touched.
            let groups = match self
                .queue
                .grouped_candidates(&self.opts.queues, self.batch, &cursor)
                .await
            {
                Ok(g) => {
                    backoff = Duration::from_millis(100);
                    g
                }
                Err(e) => {
                    tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), "looking for grouped jobs failed");
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            if groups.is_empty() {
                cursor.clear();
                if !self.idle(&mut shutdown).await {
                    return;
                }
                continue;
            }
            let mut permit = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                p = self.slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let more = self
                .slots
                .available_permits()
                .min(self.batch.saturating_sub(1));
            if more > 0 {
                if let Ok(p) = self
                    .slots
                    .clone()
                    .try_acquire_many_owned(u32::try_from(more).unwrap_or(0))
                {
                    permit.merge(p);
                }
            }
            let wanted = permit.num_permits();
            let claim = match self
                .queue
                .claim_grouped_from(
                    &self.opts.queues,
                    &groups,
                    wanted,
                    self.opts.group_concurrency,
                    self.opts.lease_duration,
                    &self.opts.worker_id,
                )
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    drop(permit);
                    tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), "claiming grouped jobs failed");
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            if let Some(last) = claim.last_group {
                cursor = last;
            }
            let got = claim.jobs.len();
            let mut permit = Some(permit);
            for job in claim.jobs {
                // One slot per job.
                let Some(held) = permit.as_mut() else { break };
                if held.num_permits() > 1 {
                    if let Some(one) = held.split(1) {
                        self.executor.start(job, one);
                        continue;
                    }
                }
                if let Some(last) = permit.take() {
                    self.executor.start(job, last);
                }
            }
            // The slots no job took go back now, not after the wait below:
            // held while idle, they would be missing from the fetcher (a
            // benchmark caught this costing half the throughput).
            drop(permit);
            if got == wanted && got > 0 {
                continue; // more may be due
            }
            // Every group with due jobs is at its limit (or was locked by
            // another worker): wait for a grouped job to finish somewhere.
            if !self.idle(&mut shutdown).await {
                return;
            }
        }
    }
}
