//! The worker: claims jobs in batches, runs their handlers concurrently,
//! records outcomes in batches, keeps leases alive, and shuts down without
//! losing or double-running work.
//!
//! Four tasks cooperate:
//! - the **fetcher** waits for a free slot (a semaphore permit, one per
//!   `concurrency`), claims up to `batch_size` due jobs with one
//!   `FOR UPDATE SKIP LOCKED` statement and spawns a task per job. When the
//!   queue is empty it sleeps until a NOTIFY (new jobs), the poll interval
//!   (jobs whose `run_at` came due, missed notifications) or shutdown;
//! - the **completer** collects outcomes from a channel and writes each
//!   batch with one fenced `UPDATE … FROM unnest(ids, tokens)`. A job's slot
//!   is freed only once its outcome is stored, so a worker never holds more
//!   than `concurrency` unacknowledged jobs: that bounds the duplicates a
//!   `kill -9` can cause;
//! - the **lease keeper** extends the leases of held jobs every third of the
//!   lease; a job whose lease it can no longer extend (expired and
//!   re-queued by the reaper, or cancelled) has its handler aborted;
//! - the **listener** holds a LISTEN connection and wakes the fetcher.
//!
//! Shutdown: stop claiming, wait up to `shutdown_timeout` for held jobs,
//! then abort the rest and hand them back (`queued`, attempt not counted).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::handler::{JobContext, JobError, JobResult, Registry};
use crate::metrics::Metrics;
use crate::queue::{ClaimedJob, Failure, Queue};
use crate::shutdown::Shutdown;
use crate::Status;

/// How long the fetcher waits for a fuller batch of free slots.
const CLAIM_LINGER: Duration = Duration::from_millis(5);

/// How long the completer waits for more outcomes to share a write.
const COMPLETE_LINGER: Duration = Duration::from_millis(3);
const MAX_OUTCOMES_PER_WRITE: usize = 1000;

fn running_count(held: &HeldMap) -> usize {
    lock(held)
        .values()
        .filter(|h| h.state == HeldState::Running)
        .count()
}

/// Tuning of a worker. `Default` holds the defaults of the `WORKER_*` env
/// vars too: [`crate::config::WorkerConfig`] reads them from here.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queues: Vec<String>,
    /// Jobs run at the same time (and the most a worker ever holds).
    pub concurrency: usize,
    /// Jobs claimed per statement.
    pub batch_size: usize,
    pub poll_interval: Duration,
    pub lease_duration: Duration,
    pub shutdown_timeout: Duration,
    pub heartbeat_file: Option<PathBuf>,
    pub worker_id: String,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            queues: vec!["default".into()],
            concurrency: 20,
            batch_size: 10,
            poll_interval: Duration::from_secs(1),
            lease_duration: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(30),
            heartbeat_file: None,
            worker_id: format!("worker-{}", std::process::id()),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
        }
    }
}

/// Exponential backoff with jitter: the n-th failure waits a random time
/// in `[d/2, d]` where `d = min(max, base · 2^(n-1))`. Jitter spreads the
/// retries of a burst of failures (e.g. a webhook endpoint that was down).
pub fn backoff(attempt: i32, base: Duration, max: Duration) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let d = base.saturating_mul(2u32.saturating_pow(exp)).min(max);
    let half = d / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldState {
    /// Handler running.
    Running,
    /// Handler finished; outcome waiting to be stored.
    Done,
    /// Lease lost or handed back: the task must not report an outcome.
    Abandoned,
}

struct Held {
    token: i64,
    state: HeldState,
    abort: Option<AbortHandle>,
}

type HeldMap = Arc<Mutex<HashMap<i64, Held>>>;

fn lock(held: &HeldMap) -> std::sync::MutexGuard<'_, HashMap<i64, Held>> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

struct Outcome {
    id: i64,
    token: i64,
    queue: String,
    kind: String,
    attempt: i32,
    result: JobResult,
    /// Frees the slot when the outcome is stored (dropped).
    _permit: OwnedSemaphorePermit,
}

/// A worker process's runtime. See the module docs.
pub struct Worker {
    queue: Queue,
    database_url: String,
    registry: Arc<Registry>,
    options: WorkerOptions,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl Worker {
    /// `database_url` is used for the pool and for the LISTEN connection.
    pub fn new(
        database_url: &str,
        registry: Registry,
        options: WorkerOptions,
    ) -> anyhow::Result<Self> {
        let url = crate::db::normalise_url(database_url)
            .map_err(|m| anyhow::anyhow!("DATABASE_URL {m}"))?;
        // claim + complete + lease keeper + one spare. Asynchronous commit:
        // every write through this pool is a worker state change that
        // at-least-once delivery can lose safely (see `pool_async_commit`).
        let pool = crate::db::pool_async_commit(&url, 4)?;
        Ok(Worker {
            queue: Queue::new(pool),
            database_url: url,
            registry: Arc::new(registry),
            options,
            metrics: Arc::new(Metrics::default()),
            ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Shares a metrics registry (e.g. one `/metrics` for several parts).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// True once the worker has reached the database, false again as soon
    /// as shutdown starts (or the database is unreachable).
    pub fn readiness(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// The worker's own job store handle. Its connections commit
    /// asynchronously (see [`crate::db::pool_async_commit`]): enqueue
    /// through [`crate::connect`] instead when the job must survive a
    /// server crash the moment the call returns.
    pub fn queue(&self) -> Queue {
        self.queue.clone()
    }

    /// Runs until `shutdown` fires and held jobs are finished or handed back.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let mut opts = self.options.clone();
        // A claim never asks for more jobs than the worker may hold.
        opts.batch_size = opts.batch_size.clamp(1, opts.concurrency.max(1));
        opts.concurrency = opts.concurrency.max(1);
        let opts = Arc::new(opts);
        tracing::info!(
            worker_id = %opts.worker_id,
            queues = ?opts.queues,
            concurrency = opts.concurrency,
            batch_size = opts.batch_size,
            kinds = ?self.registry.kinds(),
            "worker starting"
        );
        let held: HeldMap = Arc::new(Mutex::new(HashMap::new()));
        let wake = Arc::new(Notify::new());
        let (stop_tx, stop) = Shutdown::manual(); // stops the helper tasks at the very end
        let (outcome_tx, outcome_rx) = mpsc::unbounded_channel::<Outcome>();

        let listener = tokio::spawn(listen(
            self.database_url.clone(),
            opts.queues.clone(),
            wake.clone(),
            stop.clone(),
        ));
        let completer = tokio::spawn(complete_loop(
            self.queue.clone(),
            outcome_rx,
            held.clone(),
            self.metrics.clone(),
            opts.clone(),
        ));
        let keeper = tokio::spawn(lease_keeper(
            self.queue.clone(),
            held.clone(),
            self.metrics.clone(),
            opts.clone(),
            stop.clone(),
        ));

        let fetcher = Fetcher {
            queue: self.queue.clone(),
            registry: self.registry.clone(),
            opts: opts.clone(),
            metrics: self.metrics.clone(),
            held: held.clone(),
            slots: Arc::new(Semaphore::new(opts.concurrency)),
            wake,
            outcomes: outcome_tx,
            ready: self.ready.clone(),
            heartbeat: Heartbeat::new(opts.heartbeat_file.clone()),
        };
        fetcher.run(shutdown).await;
        self.ready.store(false, Ordering::SeqCst);

        // Drain: held jobs finish (and their outcomes are stored) or time out.
        let held_now = lock(&held).len();
        tracing::info!(
            held = held_now,
            timeout_s = opts.shutdown_timeout.as_secs_f64(),
            "stopped claiming; draining"
        );
        let deadline = tokio::time::Instant::now() + opts.shutdown_timeout;
        while !lock(&held).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let unfinished: Vec<(i64, i64)> = {
            let mut map = lock(&held);
            map.iter_mut()
                .filter(|(_, h)| h.state == HeldState::Running)
                .map(|(id, h)| {
                    h.state = HeldState::Abandoned;
                    if let Some(a) = &h.abort {
                        a.abort();
                    }
                    (*id, h.token)
                })
                .collect()
        };
        if !unfinished.is_empty() {
            let mut released = Vec::new();
            for attempt in 0..5 {
                match self.queue.release(&unfinished).await {
                    Ok(ids) => {
                        released = ids;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, attempt, "handing back jobs failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            self.metrics
                .worker_jobs_released_total
                .inc_by(&[], released.len() as u64);
            tracing::info!(
                released = released.len(),
                unfinished = unfinished.len(),
                "handed back jobs that could not finish in time (they keep their attempt count)"
            );
            let mut map = lock(&held);
            for (id, _) in &unfinished {
                map.remove(id);
            }
        }
        // Remaining outcomes (finished handlers) are flushed; the completer
        // exits when the last sender (fetcher's, tasks') is gone.
        if tokio::time::timeout(Duration::from_secs(10), completer)
            .await
            .is_err()
        {
            tracing::warn!("storing the last outcomes timed out; their leases will expire and the reaper re-queues them");
        }
        let _ = stop_tx.send(true);
        let _ = keeper.await;
        listener.abort();
        tracing::info!(worker_id = %opts.worker_id, "worker stopped");
        Ok(())
    }
}

/// Touches the heartbeat file at most once a second.
struct Heartbeat {
    path: Option<PathBuf>,
    last: Option<Instant>,
}

impl Heartbeat {
    fn new(path: Option<PathBuf>) -> Self {
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

struct Fetcher {
    queue: Queue,
    registry: Arc<Registry>,
    opts: Arc<WorkerOptions>,
    metrics: Arc<Metrics>,
    held: HeldMap,
    slots: Arc<Semaphore>,
    wake: Arc<Notify>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    ready: Arc<AtomicBool>,
    heartbeat: Heartbeat,
}

impl Fetcher {
    async fn run(mut self, mut shutdown: Shutdown) {
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
            // Count slots, not permit objects (one permit may hold many), and
            // never aim above the number of slots there are: an idle worker
            // that already holds a full batch must claim at once (lingering
            // there only added the linger to every job's start latency).
            let held: usize = permits.iter().map(|p| p.num_permits()).sum();
            let full_batch = self.opts.batch_size.min(self.opts.concurrency).max(1);
            if held < full_batch {
                // Slots are freed one by one as outcomes are stored; claiming
                // right after the first would mean many tiny claims (one
                // commit each). Linger briefly for a fuller batch.
                let missing = (full_batch - held) as u32;
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
                    'spawn: for mut permit in permits {
                        // A permit may stand for several slots: split it per job.
                        while permit.num_permits() > 1 {
                            let Some(job) = jobs.next() else { break 'spawn };
                            if let Some(one) = permit.split(1) {
                                self.spawn(job, one);
                            }
                        }
                        let Some(job) = jobs.next() else { break };
                        self.spawn(job, permit);
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
                    tracing::warn!(error = %e, retry_in_ms = error_backoff.as_millis() as u64, "claiming jobs failed");
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

    fn take_free_slots(&self, permits: &mut Vec<OwnedSemaphorePermit>) {
        let have: usize = permits.iter().map(|p| p.num_permits()).sum();
        let free = self
            .slots
            .available_permits()
            .min(self.opts.batch_size.saturating_sub(have));
        if free > 0 {
            if let Ok(p) = self.slots.clone().try_acquire_many_owned(free as u32) {
                permits.push(p);
            }
        }
    }

    fn spawn(&self, job: ClaimedJob, permit: OwnedSemaphorePermit) {
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
            worker_id = %self.opts.worker_id,
            "job started"
        );
        let id = job.id;
        lock(&self.held).insert(
            id,
            Held {
                token: job.lease_token,
                state: HeldState::Running,
                abort: None,
            },
        );
        let handler = self.registry.get(&job.kind);
        let held = self.held.clone();
        let tx = self.outcomes.clone();
        let metrics = self.metrics.clone();
        let ctx = JobContext {
            id: job.id,
            queue: job.queue.clone(),
            kind: job.kind.clone(),
            payload: job.payload,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
        };
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let result = match handler {
                Some(h) => h.run(ctx).await,
                None => Err(JobError::retry(format!(
                    "no handler registered for kind {:?}",
                    job.kind
                ))),
            };
            metrics
                .job_duration_seconds
                .observe(&[&job.queue, &job.kind], started.elapsed());
            // Under the lock so shutdown/lease loss and completion cannot
            // both claim the job.
            let mut map = lock(&held);
            if let Some(h) = map.get_mut(&id) {
                if h.state == HeldState::Running {
                    h.state = HeldState::Done;
                    let _ = tx.send(Outcome {
                        id,
                        token: job.lease_token,
                        queue: job.queue,
                        kind: job.kind,
                        attempt: job.attempt,
                        result,
                        _permit: permit,
                    });
                }
            }
        });
        if let Some(h) = lock(&self.held).get_mut(&id) {
            h.abort = Some(task.abort_handle());
        }
    }
}

async fn complete_loop(
    queue: Queue,
    mut rx: mpsc::UnboundedReceiver<Outcome>,
    held: HeldMap,
    metrics: Arc<Metrics>,
    opts: Arc<WorkerOptions>,
) {
    let mut batch: Vec<Outcome> = Vec::new();
    loop {
        if rx.recv_many(&mut batch, MAX_OUTCOMES_PER_WRITE).await == 0 {
            return;
        }
        // Coalesce: handlers of one claimed batch finish within moments of
        // each other; one write for all of them instead of one per job.
        // Skipped when nothing else is running (no latency for a trickle).
        let linger_until = tokio::time::Instant::now() + COMPLETE_LINGER;
        while batch.len() < MAX_OUTCOMES_PER_WRITE
            && tokio::time::Instant::now() < linger_until
            && running_count(&held) > 0
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
            while batch.len() < MAX_OUTCOMES_PER_WRITE {
                match rx.try_recv() {
                    Ok(o) => batch.push(o),
                    Err(_) => break,
                }
            }
        }
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
        // Retry until stored: the outcome is the only record that the work
        // was done. If the database stays away past the lease, the writes
        // are fenced off later and the jobs run again (at-least-once).
        let mut wait = Duration::from_millis(50);
        let (completed, failed) = loop {
            let r = async {
                let c = queue.complete(&done).await?;
                let f = queue.fail(&failures).await?;
                Ok::<_, crate::QueueError>((c, f))
            }
            .await;
            match r {
                Ok(v) => break v,
                Err(e) => {
                    tracing::warn!(error = %e, outcomes = batch.len(), "storing job outcomes failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                    // Outcomes that arrived meanwhile wait for the next round.
                }
            }
        };
        let completed: std::collections::HashSet<i64> = completed.into_iter().collect();
        let failed: HashMap<i64, Status> = failed.into_iter().collect();
        let mut map = lock(&held);
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
        batch.clear(); // drops the permits: slots free again
    }
}

/// An error text fit for the `last_error` column: at most `max` bytes, and
/// no NUL (a handler's message may quote anything, e.g. a response body;
/// PostgreSQL's text cannot hold NUL and the completer would retry the
/// write forever).
fn truncate(s: &str, max: usize) -> String {
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

/// Extends leases of held jobs every third of the lease; aborts handlers
/// whose lease is gone.
async fn lease_keeper(
    queue: Queue,
    held: HeldMap,
    metrics: Arc<Metrics>,
    opts: Arc<WorkerOptions>,
    mut stop: Shutdown,
) {
    let every = (opts.lease_duration / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let leases: Vec<(i64, i64)> = lock(&held)
            .iter()
            .filter(|(_, h)| h.state != HeldState::Abandoned)
            .map(|(id, h)| (*id, h.token))
            .collect();
        if leases.is_empty() {
            continue;
        }
        match queue.extend(&leases, opts.lease_duration).await {
            Ok(still) => {
                let still: std::collections::HashSet<i64> = still.into_iter().collect();
                let mut map = lock(&held);
                for (id, _) in leases.iter().filter(|(id, _)| !still.contains(id)) {
                    if let Some(h) = map.get_mut(id) {
                        if h.state == HeldState::Running {
                            h.state = HeldState::Abandoned;
                            if let Some(a) = &h.abort {
                                a.abort();
                            }
                            map.remove(id);
                            metrics.worker_lease_lost_total.inc(&[]);
                            tracing::warn!(job_id = id, worker_id = %opts.worker_id, "lease lost (expired or job cancelled); handler aborted");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, jobs = leases.len(), "extending leases failed"),
        }
    }
}

/// LISTEN for new jobs; reconnects forever. Wakes the fetcher for
/// notifications about our queues (empty payload = any queue).
async fn listen(url: String, queues: Vec<String>, wake: Arc<Notify>, mut stop: Shutdown) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match crate::db::connect_with_notifications(&url).await {
            Ok((client, mut rx)) => match client.batch_execute("LISTEN jobqueue").await {
                Ok(()) => {
                    backoff = Duration::from_millis(200);
                    wake.notify_one(); // we may have missed some while away
                    loop {
                        tokio::select! {
                            _ = stop.wait() => return,
                            n = rx.recv() => match n {
                                Some(n) => {
                                    if n.payload().is_empty() || queues.iter().any(|q| q == n.payload()) {
                                        wake.notify_one();
                                    }
                                }
                                None => break,
                            }
                        }
                    }
                    tracing::warn!("LISTEN connection lost; polling until it is back");
                }
                Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
            },
            Err(e) => tracing::debug!(error = %e, "LISTEN connection failed"),
        }
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempt in 1..=10 {
            let d = backoff(attempt, base, max);
            let full = base.saturating_mul(1 << (attempt - 1)).min(max);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} vs {full:?}"
            );
        }
        assert!(backoff(100, base, max) <= max);
        assert_eq!(backoff(1, Duration::ZERO, max), Duration::ZERO);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("a\0b", 10), "a\u{FFFD}b");
    }
}
