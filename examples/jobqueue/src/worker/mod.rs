//! The worker: claims jobs, runs their handlers concurrently, stores the
//! outcomes, keeps leases alive, and shuts down without losing or
//! double-running work.
//!
//! One role per file, as riverqueue/river (producer, executor, completer)
//! and graphile-worker (local queue, batched completion) split theirs:
//!
//! | file | role |
//! |---|---|
//! | `group_fetcher.rs` | claims grouped jobs within each group's limit, groups in turn |
//! | `fetcher.rs` | when and how many to claim (adaptive batch, prefetch while jobs run, linger, sleep until NOTIFY/poll); stores finished jobs with its next claim; heartbeat |
//! | `executor.rs` | one task per job: runs the handler, reports the outcome once |
//! | `completer.rs` | stores outcomes in adaptive batches, then frees their slots |
//! | `lease_keeper.rs` | renews held leases; aborts handlers whose lease is gone |
//! | `listener.rs` | LISTEN connection that wakes the fetcher |
//! | `ledger.rs` | the held jobs and their states, shared by all roles |
//!
//! A *lane* is one set of slots with its own fetcher, group fetcher,
//! outbox and completer: the queues of `WORKER_QUEUES` without a
//! concurrency share one lane of `WORKER_CONCURRENCY` slots, and each
//! `queue:N` entry gets a lane of N slots, so a flood in one queue never
//! takes the slots of another. The ledger, lease keeper and LISTEN
//! connection are shared by all lanes.
//!
//! The one invariant they share: a slot (one of `concurrency` semaphore
//! permits) is taken before a job is claimed and given back only once its
//! outcome is stored. So a worker never holds more than `concurrency`
//! unacknowledged leases, and a `kill -9` repeats at most that many jobs.
//!
//! Shutdown ([`Worker::run`]): stop claiming, wait up to `shutdown_timeout`
//! for held jobs, then abort the rest and hand them back (`queued`, attempt
//! not counted).

mod completer;
mod executor;
mod fetcher;
mod group_fetcher;
mod lease_keeper;
mod ledger;
mod listener;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::error::{Error, Result};
use crate::handler::Registry;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::shutdown::Shutdown;

use completer::{Completer, Outbox};
use executor::Executor;
use fetcher::{Fetcher, Heartbeat};
use group_fetcher::GroupFetcher;
use ledger::{HeldState, Ledger};

/// The largest batch the fetcher picks by itself (a claim of 512 rows takes
/// a few milliseconds; larger ones only delay the first job of the batch).
pub const MAX_AUTO_BATCH: usize = 512;

/// The fewest slots for which a fetcher keeps two claims in flight
/// ([`claims_in_flight`]).
pub const TWO_CLAIMS_FROM: usize = 200;

/// Jobs per claim statement of a lane over one queue or several:
/// `max(batch_size, auto)`, never more than `concurrency`, where `auto` is
/// every slot (one claim takes every free slot), half of them when two
/// claims in flight share them ([`claims_in_flight`] says when), and at
/// most [`MAX_AUTO_BATCH`].
pub fn claim_batch(concurrency: usize, batch_size: usize, one_queue: bool) -> usize {
    let auto = if one_queue && (TWO_CLAIMS_FROM..=MAX_AUTO_BATCH).contains(&concurrency) {
        concurrency / 2
    } else {
        concurrency.min(MAX_AUTO_BATCH)
    };
    batch_size.max(auto).clamp(1, concurrency.max(1))
}

/// Claim statements a fetcher keeps in flight: for one queue, one below
/// [`TWO_CLAIMS_FROM`] slots and two from there; for several queues
/// (whose claims start at no position, so there is nothing to skip), one
/// up to [`MAX_AUTO_BATCH`] slots and two above. The second claim passes
/// over the jobs the first is taking (`ClaimFrom::skip`), so the two lock
/// disjoint rows; while one runs in PostgreSQL, the worker starts the
/// other's jobs.
///
/// Measured with the skip (`examples/bench`, 50,000 no-op jobs, alternating
/// rounds against one claim in flight, per-round ratios → median):
/// concurrency 128 0.77 0.96 1.07 and 160 0.98 0.82 1.03 (slower: claims
/// of 64–80 rows pay a statement's fixed cost twice as often); 200 nine
/// rounds 0.98–1.21 → **1.08×**, for about a fifth more PostgreSQL CPU per
/// job (10.4–12.6 → 12.6–14.0 µs, still below concurrency 24's 16–17);
/// 256 1.10 1.10 1.12; 320 1.30 1.40 1.16; 384 1.08 1.18 1.35 1.34.
///
/// Before the skip, two claims in flight scanned the same index range and
/// waited on each other (`LWLock:BufferContent`, `Lock:transactionid`):
/// at concurrency 24, one claim of 24 instead of two of 12 went from
/// 23,400–24,500 to 33,900–37,300 jobs/s and from 35 to 22 µs of
/// PostgreSQL CPU per job, and at 200 one claim held the rate for 14.7
/// instead of 17.6 µs; only from 512 slots did overlapping two pay
/// (86,000–90,000 jobs/s against 78,000–83,000 at 2048).
pub fn claims_in_flight(concurrency: usize, one_queue: bool) -> usize {
    if concurrency > MAX_AUTO_BATCH || (one_queue && concurrency >= TWO_CLAIMS_FROM) {
        fetcher::CLAIMS_IN_FLIGHT
    } else {
        1
    }
}

/// Tuning of a worker. `Default` holds the defaults of the `WORKER_*` env
/// vars too: [`crate::config::WorkerConfig`] reads them from here.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Queues sharing `concurrency` slots.
    pub queues: Vec<String>,
    /// Queues with slots of their own (`WORKER_QUEUES=mail:5`).
    pub queue_concurrency: Vec<(String, usize)>,
    /// Jobs of one group running at once, across all workers
    /// (`WORKER_GROUP_CONCURRENCY`).
    pub group_concurrency: usize,
    /// Jobs run at the same time (and the most a worker ever holds).
    pub concurrency: usize,
    /// The smallest claim batch (`WORKER_BATCH_SIZE`). The fetcher claims
    /// every free slot (half of them when two claims are in flight), at
    /// most 512, at least `batch_size` and at most `concurrency`
    /// ([`claim_batch`]): leave it at its default and the batch follows
    /// the concurrency.
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
            queue_concurrency: Vec::new(),
            group_concurrency: 1,
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

/// A worker process's runtime. See the module docs.
pub struct Worker {
    queue: Queue,
    /// The fetcher's claims, on connections with generic plans.
    claims: Queue,
    database_url: String,
    registry: Arc<Registry>,
    options: WorkerOptions,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl Worker {
    /// `database_url` is used for the pool and for the LISTEN connection.
    pub fn new(database_url: &str, registry: Registry, options: WorkerOptions) -> Result<Self> {
        let url = crate::db::normalise_url(database_url).map_err(Error::Url)?;
        // Completion writers + lease keeper + hand-back/spare (the claims
        // have their own pool: up to two in flight per lane).
        // Asynchronous commit: every write through this pool is a worker
        // state change that at-least-once delivery can lose safely (see
        // `pool_async_commit`).
        let pool = crate::db::pool_async_commit(&url, 2 + completer::MAX_WRITERS)?;
        let lanes = 1 + options.queue_concurrency.len();
        let claims =
            crate::db::pool_async_commit_generic_plans(&url, fetcher::CLAIMS_IN_FLIGHT * lanes)?;
        Ok(Worker {
            queue: Queue::new(pool),
            claims: Queue::new(claims),
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

    /// Every queue this worker claims from.
    fn all_queues(&self) -> Vec<String> {
        let mut all = self.options.queues.clone();
        all.extend(
            self.options
                .queue_concurrency
                .iter()
                .map(|(q, _)| q.clone()),
        );
        all
    }

    /// Runs until `shutdown` fires and held jobs are finished or handed back.
    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let mut opts = self.options.clone();
        opts.concurrency = opts.concurrency.max(1);
        opts.group_concurrency = opts.group_concurrency.max(1);
        let opts = Arc::new(opts);
        // (queues, slots) per lane; see the module docs.
        let mut plan: Vec<(Vec<String>, usize)> = Vec::new();
        if !opts.queues.is_empty() {
            plan.push((opts.queues.clone(), opts.concurrency));
        }
        for (q, n) in &opts.queue_concurrency {
            plan.push((vec![q.clone()], (*n).max(1)));
        }
        tracing::info!(
            worker_id = %opts.worker_id,
            lanes = ?plan,
            group_concurrency = opts.group_concurrency,
            kinds = ?self.registry.kinds(),
            "worker starting"
        );
        let ledger = Ledger::default();
        let (stop_tx, stop) = Shutdown::manual(); // stops the helper tasks at the very end
        let mut wakes = Vec::new();
        let mut group_wakes = Vec::new();
        let mut completers = Vec::new();
        let mut fetchers = tokio::task::JoinSet::new();
        for (i, (queues, concurrency)) in plan.into_iter().enumerate() {
            let one_queue = queues.len() == 1;
            let batch = claim_batch(concurrency, opts.batch_size, one_queue);
            let in_flight = claims_in_flight(concurrency, one_queue);
            let lane = Arc::new(WorkerOptions {
                queues,
                concurrency,
                ..(*opts).clone()
            });
            let outbox = Arc::new(Outbox::new(in_flight));
            let wake = Arc::new(Notify::new());
            let group_wake = Arc::new(Notify::new());
            wakes.push(wake.clone());
            group_wakes.push(group_wake.clone());
            completers.push(tokio::spawn(
                Completer {
                    queue: self.queue.clone(),
                    ledger: ledger.clone(),
                    metrics: self.metrics.clone(),
                    opts: lane.clone(),
                    outbox: outbox.clone(),
                    flush_size: batch,
                }
                .run(stop.clone()),
            ));
            let executor = Executor {
                registry: self.registry.clone(),
                ledger: ledger.clone(),
                outbox: outbox.clone(),
                metrics: self.metrics.clone(),
                worker_id: Arc::from(opts.worker_id.as_str()),
                queue: self.queue.clone(),
            };
            let slots = Arc::new(Semaphore::new(concurrency));
            fetchers.spawn(
                GroupFetcher {
                    queue: self.queue.clone(),
                    opts: lane.clone(),
                    executor: executor.clone(),
                    slots: slots.clone(),
                    wake: group_wake,
                    batch,
                }
                .run(shutdown.clone()),
            );
            let fetcher = Fetcher {
                queue: self.claims.clone(),
                opts: lane.clone(),
                executor,
                slots,
                wake,
                ready: self.ready.clone(),
                // One lane proves the worker is alive.
                heartbeat: Heartbeat::new(if i == 0 {
                    opts.heartbeat_file.clone()
                } else {
                    None
                }),
                outbox,
                metrics: self.metrics.clone(),
                batch,
                claims_in_flight: in_flight,
                from: None,
                last_full_scan: tokio::time::Instant::now(),
                in_flight_slots: 0,
            };
            fetchers.spawn(fetcher.run(shutdown.clone()));
        }
        let listener = tokio::spawn(listener::run(
            self.database_url.clone(),
            self.all_queues(),
            wakes,
            group_wakes,
            stop.clone(),
        ));
        let keeper = tokio::spawn(lease_keeper::run(
            self.queue.clone(),
            ledger.clone(),
            self.metrics.clone(),
            opts.clone(),
            stop.clone(),
        ));
        while fetchers.join_next().await.is_some() {}
        self.ready.store(false, Ordering::SeqCst);
        self.drain(&ledger, &opts).await;
        // The completers store what is left, then stop; then the helpers.
        let _ = stop_tx.send(true);
        for completer in completers {
            if tokio::time::timeout(Duration::from_secs(10), completer)
                .await
                .is_err()
            {
                tracing::warn!("storing the last outcomes timed out; their leases will expire and the reaper re-queues them");
            }
        }
        let _ = keeper.await;
        listener.abort();
        tracing::info!(worker_id = %opts.worker_id, "worker stopped");
        Ok(())
    }

    /// Held jobs finish (and their outcomes are stored) or time out; then
    /// the unfinished ones are aborted and handed back.
    async fn drain(&self, ledger: &Ledger, opts: &WorkerOptions) {
        tracing::info!(
            held = ledger.len(),
            timeout_s = opts.shutdown_timeout.as_secs_f64(),
            "stopped claiming; draining"
        );
        let deadline = tokio::time::Instant::now() + opts.shutdown_timeout;
        while !ledger.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let unfinished: Vec<(i64, i64)> = {
            let mut map = ledger.lock();
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
        if unfinished.is_empty() {
            return;
        }
        let mut released = Vec::new();
        for attempt in 0..5 {
            match self.queue.release(&unfinished).await {
                Ok(ids) => {
                    released = ids;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), attempt, "handing back jobs failed; retrying");
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
        let mut map = ledger.lock();
        for (id, _) in &unfinished {
            map.remove(id);
        }
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
    fn claim_batch_follows_concurrency() {
        for one_queue in [true, false] {
            assert_eq!(claim_batch(1, 10, one_queue), 1);
            assert_eq!(claim_batch(20, 10, one_queue), 20);
            assert_eq!(claim_batch(24, 10, one_queue), 24);
            assert_eq!(claim_batch(199, 10, one_queue), 199);
            assert_eq!(claim_batch(2048, 10, one_queue), 512);
            assert_eq!(claim_batch(10_000, 10, one_queue), 512);
            assert_eq!(claim_batch(2048, 1000, one_queue), 1000);
            assert_eq!(claim_batch(100, 1000, one_queue), 100);
        }
        // Two claims in flight share the slots.
        assert_eq!(claim_batch(200, 10, true), 100);
        assert_eq!(claim_batch(512, 10, true), 256);
        assert_eq!(claim_batch(200, 10, false), 200);
        assert_eq!(claim_batch(512, 10, false), 512);
    }

    #[test]
    fn one_claim_in_flight_until_a_second_can_skip_the_first() {
        for one_queue in [true, false] {
            assert_eq!(claims_in_flight(1, one_queue), 1);
            assert_eq!(claims_in_flight(24, one_queue), 1);
            assert_eq!(claims_in_flight(TWO_CLAIMS_FROM - 1, one_queue), 1);
            assert_eq!(claims_in_flight(MAX_AUTO_BATCH + 1, one_queue), 2);
            assert_eq!(claims_in_flight(2048, one_queue), 2);
        }
        // From 200 slots a second claim skips the first's jobs; claims
        // over several queues have no position to skip from.
        assert_eq!(claims_in_flight(TWO_CLAIMS_FROM, true), 2);
        assert_eq!(claims_in_flight(MAX_AUTO_BATCH, false), 1);
        // Two claims in flight share the slots: together never more.
        for c in [TWO_CLAIMS_FROM, 300, MAX_AUTO_BATCH, 2048] {
            for one_queue in [true, false] {
                let together = claims_in_flight(c, one_queue) * claim_batch(c, 10, one_queue);
                assert!(together <= c, "{c}");
            }
        }
    }
}
