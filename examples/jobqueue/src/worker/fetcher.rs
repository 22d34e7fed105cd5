//! The fetcher (River's "producer", graphile-worker's local queue): decides
//! when to claim and how many, claims with one `SKIP LOCKED` statement, and
//! hands each job to the executor with its slot.
//!
//! Why it adapts instead of asking for a knob: claiming costs one statement
//! (and one commit) whatever the batch, so large claims are cheap per job,
//! but a claim may only take free slots — a worker never holds more than
//! `concurrency` leases, so a `kill -9` repeats at most that many jobs.
//! Hence:
//! - **batch** = every slot (half of them from 200, when two claims are in
//!   flight), at most 512, at least `WORKER_BATCH_SIZE`, at most
//!   `concurrency` ([`super::claim_batch`]); the completer frees slots in
//!   batches of the same size;
//! - **claim again as soon as a batch worth of slots is free**, whatever
//!   else is still running; jobs are never leased beyond the slots;
//! - **store and claim in one statement**: the successes of finished jobs
//!   waiting in the [`Outbox`] are stored by the claim that reuses their
//!   slots (`Queue::claim_and_complete_at`), one round trip and one
//!   commit, each found at the address its claim returned; one whose row
//!   moved meanwhile goes back to the completer, which stores it by id;
//! - **linger** at most [`CLAIM_LINGER`] for a fuller batch only when fewer
//!   slots than a batch are free (long handlers finishing one by one); an
//!   idle worker claims at once, so enqueue→start stays a few milliseconds;
//! - **one claim in flight**, two from 200 slots on one queue (above 512
//!   on several, whose claims start at no position)
//!   ([`super::claims_in_flight`]): a claim sent while another is in
//!   flight from the same position **passes over the jobs that one is
//!   taking** (`ClaimFrom::skip`, the slots in flight), so the two lock
//!   disjoint rows while the worker starts one's jobs as PostgreSQL runs
//!   the other; with fewer slots, claims of under 100 rows would pay the
//!   statement's fixed cost too often;
//! - **start each claim where the last one began** ([`ClaimFrom`]): the
//!   head of the claim index is a trail of dead entries (one per job
//!   claimed since the last VACUUM), and a scan from the head steps over
//!   all of them. Jobs that land before that position (a higher priority,
//!   a `run_at` in the past, a long enqueue transaction, rows locked by a
//!   claim that rolled back) are found by a **full scan**: at least every
//!   [`FULL_SCAN_EVERY`], after every wake-up, and whenever a claim from
//!   the position comes back short (which is also how lower priorities
//!   are reached). So a job is passed over for at most
//!   [`FULL_SCAN_EVERY`], and "drained" is only ever concluded by a full
//!   scan;
//! - **sleep** when the queue is drained, until a NOTIFY (new jobs), the
//!   poll interval (jobs whose `run_at` came due) or shutdown.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use crate::queue::{ClaimFrom, Queue, Tid};
use crate::shutdown::Shutdown;

use super::completer::{record, Outbox};
use super::executor::{Executor, Outcome};
use super::WorkerOptions;

/// The most claim statements in flight at once (large concurrencies, see
/// [`super::claims_in_flight`]): while one is on its way, the next gathers
/// its slots.
pub(crate) const CLAIMS_IN_FLIGHT: usize = 2;

/// The longest a claimable job can be passed over by claims that start at
/// the fetcher's position (module docs). A full scan costs one index page
/// per ~200 jobs claimed since the last VACUUM, so it is kept rare.
pub(crate) const FULL_SCAN_EVERY: Duration = Duration::from_millis(100);

/// A claim's capacity, whether it started at the fetcher's position, and
/// its result.
type ClaimResult = (
    Capacity,
    bool,
    Result<(Vec<crate::queue::ClaimedJob>, Vec<i64>), crate::QueueError>,
);

enum Settled {
    /// Got every job asked for: more may be due.
    Full,
    /// Got fewer: the queue is drained for now.
    Drained,
    /// Failed: wait this long before the next claim.
    Failed(Duration),
}

/// How long the fetcher waits for a fuller batch of free slots.
pub(crate) const CLAIM_LINGER: Duration = Duration::from_millis(2);

pub(crate) struct Fetcher {
    /// Claims, on generic-plan connections: the statement finds finished
    /// rows by address (`queue/claim_and_complete.rs`, `Find::Address`),
    /// a plan that is right for any number of them.
    pub queue: Queue,
    pub opts: Arc<WorkerOptions>,
    pub executor: Executor,
    pub slots: Arc<Semaphore>,
    pub wake: Arc<Notify>,
    pub ready: Arc<AtomicBool>,
    pub heartbeat: Heartbeat,
    pub outbox: Arc<Outbox>,
    pub metrics: Arc<Metrics>,
    /// Jobs per claim (see the module docs).
    pub batch: usize,
    /// Claim statements in flight at once ([`super::claims_in_flight`]).
    pub claims_in_flight: usize,
    /// Where the next claim may start (module docs); `None`: full scan.
    pub from: Option<ClaimFrom>,
    /// When the last full scan was sent.
    pub last_full_scan: tokio::time::Instant,
    /// Slots of the claims in flight: what a claim sent meanwhile from the
    /// same position passes over (module docs).
    pub in_flight_slots: usize,
}

/// What the next claim may fill: free slots, plus the slots of finished
/// jobs whose success is stored by the same statement.
struct Capacity {
    permits: Vec<OwnedSemaphorePermit>,
    finished: Vec<Outcome>,
}

impl Capacity {
    fn slots(&self) -> usize {
        self.permits.iter().map(|p| p.num_permits()).sum::<usize>() + self.finished.len()
    }
}

impl Fetcher {
    pub async fn run(mut self, mut shutdown: Shutdown) {
        self.outbox.fetcher_active.store(true, Ordering::SeqCst);
        self.claim_loop(&mut shutdown).await;
        // Stopped: the completer stores everything from now on.
        self.outbox.fetcher_active.store(false, Ordering::SeqCst);
        self.outbox.for_completer.notify_one();
    }

    async fn claim_loop(&mut self, shutdown: &mut Shutdown) {
        // Wake up at least this often even when every slot is busy, so the
        // heartbeat proves the loop is alive.
        let tick = self.opts.poll_interval.min(Duration::from_secs(1));
        let mut error_backoff = Duration::from_millis(100);
        let mut in_flight: JoinSet<ClaimResult> = JoinSet::new();
        // A claim came back short: no new claim until a NOTIFY or the poll.
        let mut drained = false;
        loop {
            self.heartbeat.touch();
            if shutdown.is_triggered() {
                break;
            }
            if in_flight.len() >= self.claims_in_flight || (drained && !in_flight.is_empty()) {
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => break,
                    Some(r) = in_flight.join_next() => {
                        let settled = self.settle(r, &mut error_backoff);
                        drained = self.after(settled, drained, shutdown).await;
                    }
                }
                continue;
            }
            if drained {
                // Queue drained and nothing in flight: sleep until notified,
                // polled, or stopped; meanwhile the completer stores
                // outcomes at once.
                self.outbox.fetcher_active.store(false, Ordering::SeqCst);
                self.outbox.for_completer.notify_one();
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => {}
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.opts.poll_interval) => {}
                }
                self.outbox.fetcher_active.store(true, Ordering::SeqCst);
                drained = false;
                // Woken: whatever was queued meanwhile may lie anywhere.
                self.from = None;
                continue;
            }
            // A free slot, or a finished job whose slot the claim can reuse,
            // or a claim in flight that came back.
            let first = tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                Some(r) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let settled = self.settle(r, &mut error_backoff);
                    drained = self.after(settled, drained, shutdown).await;
                    continue;
                }
                p = self.slots.clone().acquire_owned() => match p {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
                _ = self.outbox.for_fetcher.notified() => None,
                _ = tokio::time::sleep(tick) => continue,
            };
            let mut cap = Capacity {
                permits: first.into_iter().collect(),
                finished: Vec::new(),
            };
            self.gather(&mut cap);
            if cap.slots() < self.batch {
                // Linger briefly for a fuller claim: slots come free one by
                // one when handlers are long.
                let deadline = tokio::time::Instant::now() + CLAIM_LINGER;
                while cap.slots() < self.batch {
                    let missing = u32::try_from(self.batch - cap.slots()).unwrap_or(u32::MAX);
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        p = self.slots.clone().acquire_many_owned(missing) => match p {
                            Ok(p) => cap.permits.push(p),
                            Err(_) => return,
                        },
                        _ = self.outbox.for_fetcher.notified() => {}
                    }
                    self.gather(&mut cap);
                }
            }
            if cap.slots() == 0 {
                continue; // woken, but the completer took the outcomes
            }
            // Not raced against shutdown: a claim in flight when SIGTERM
            // arrives completes, and its rows are run (or handed back).
            let queue = self.queue.clone();
            let opts = self.opts.clone();
            let from = match self.from {
                Some(from)
                    if opts.queues.len() == 1
                        && self.last_full_scan.elapsed() < FULL_SCAN_EVERY =>
                {
                    Some(from)
                }
                _ => {
                    self.last_full_scan = tokio::time::Instant::now();
                    None
                }
            };
            // Claims in flight from this position are taking its next jobs:
            // pass over as many, so that the two lock disjoint rows.
            if in_flight.is_empty() {
                self.in_flight_slots = 0; // also after a claim task panicked
            }
            let from = from.map(|f| f.skipping(self.in_flight_slots));
            self.in_flight_slots += cap.slots();
            in_flight.spawn(async move {
                let done: Vec<(i64, i64)> = cap.finished.iter().map(|o| (o.id, o.token)).collect();
                // Every success the fetcher takes has its row's address
                // (`Outbox::take_successes`).
                let addresses: Vec<Tid> = cap.finished.iter().filter_map(|o| o.tid).collect();
                let r = queue
                    .claim_and_complete_at(
                        &opts.queues,
                        cap.slots(),
                        opts.lease_duration,
                        &opts.worker_id,
                        &done,
                        &addresses,
                        from.as_ref(),
                    )
                    .await;
                (cap, from.is_some(), r)
            });
        }
        // Stopped: the claims in flight still start their jobs (the drain
        // finishes or hands them back).
        while let Some(r) = in_flight.join_next().await {
            self.settle(r, &mut error_backoff);
        }
    }

    /// What a settled claim means for the loop: the new `drained` flag;
    /// after a failure, waits out the backoff first.
    async fn after(&self, settled: Settled, drained: bool, shutdown: &mut Shutdown) -> bool {
        match settled {
            Settled::Full => false,
            Settled::Drained => true,
            Settled::Failed(wait) => {
                self.outbox.fetcher_active.store(false, Ordering::SeqCst);
                self.outbox.for_completer.notify_one();
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                self.outbox.fetcher_active.store(true, Ordering::SeqCst);
                drained
            }
        }
    }

    /// Applies a claim's result: records the stored successes, starts the
    /// claimed jobs on the freed and free slots.
    fn settle(
        &mut self,
        joined: Result<ClaimResult, tokio::task::JoinError>,
        error_backoff: &mut Duration,
    ) -> Settled {
        let (cap, from_position, result) = match joined {
            Ok(r) => r,
            Err(e) => {
                // The claim task panicked: its slots were released with it.
                tracing::error!(error = %e, "claim task failed");
                return Settled::Failed(*error_backoff);
            }
        };
        let mut wanted = cap.slots();
        self.in_flight_slots = self.in_flight_slots.saturating_sub(wanted);
        match result {
            Ok((jobs, completed)) => {
                *error_backoff = Duration::from_millis(100);
                self.ready.store(true, Ordering::SeqCst);
                let Capacity {
                    mut permits,
                    finished,
                } = cap;
                if !finished.is_empty() {
                    let completed: HashSet<i64> = completed.into_iter().collect();
                    // Not found at its address: the row moved since the
                    // claim (or the lease is gone). The completer stores it
                    // by id, and tells which; its slot stays held until then.
                    let (finished, moved): (Vec<Outcome>, Vec<Outcome>) = finished
                        .into_iter()
                        .partition(|o| completed.contains(&o.id));
                    if !moved.is_empty() {
                        // The claim took one job fewer for each.
                        wanted -= moved.len();
                        self.outbox.put_back(
                            moved
                                .into_iter()
                                .map(|o| Outcome { tid: None, ..o })
                                .collect(),
                        );
                    }
                    record(
                        &self.executor.ledger,
                        &self.metrics,
                        &self.opts,
                        &finished,
                        &completed,
                        &HashMap::new(),
                    );
                    // Their slots pass to the jobs just claimed.
                    permits.extend(finished.into_iter().map(|o| o.permit));
                }
                let got = jobs.len();
                // Claim order: the first is where the next claim starts.
                self.from = jobs.first().map(ClaimFrom::of);
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
                    Settled::Full
                } else if from_position {
                    // Short from the position: only a full scan may say the
                    // queue is drained (it also reaches lower priorities).
                    self.from = None;
                    Settled::Full
                } else {
                    Settled::Drained
                }
            }
            Err(e) => {
                // The finished jobs' outcomes go back to the completer,
                // which retries them; the free slots are released.
                self.outbox.put_back(cap.finished);
                drop(cap.permits);
                self.from = None;
                self.ready.store(false, Ordering::SeqCst);
                tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), retry_in_ms = error_backoff.as_millis() as u64, "claiming jobs failed");
                let wait = *error_backoff;
                *error_backoff =
                    (wait * 2).min(self.opts.poll_interval.max(Duration::from_secs(2)));
                Settled::Failed(wait)
            }
        }
    }

    /// Adds finished successes and free slots, up to a batch (successes
    /// beyond a batch are taken too: storing them is what frees slots).
    fn gather(&self, cap: &mut Capacity) {
        let finished = self
            .outbox
            .take_successes(super::completer::MAX_PER_WRITE - cap.finished.len());
        cap.finished.extend(finished);
        let free = self
            .slots
            .available_permits()
            .min(self.batch.saturating_sub(cap.slots()));
        if free > 0 {
            if let Ok(p) = self
                .slots
                .clone()
                .try_acquire_many_owned(u32::try_from(free).unwrap_or(u32::MAX))
            {
                cap.permits.push(p);
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
