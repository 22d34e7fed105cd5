//! The reaper: re-queues jobs whose lease expired (their worker died or
//! hung), marks them `dead` when that was their last attempt, deletes
//! finished jobs past the retention period, keeps `job_queue_depth`
//! current, and fires cron schedules.
//!
//! Safe with several replicas: only the holder of a session advisory lock
//! (on a dedicated connection) does the work. If that connection dies, the
//! server releases the lock and another replica takes over on its next
//! tick. The operations are idempotent anyway; the lock just avoids
//! replicas racing on the same rows and double-reporting the gauge.
//!
//! Schedules fire from a task of their own, on the leader only, about every
//! second (sleeping until the earliest `next_fire_at`, at most 1 s), not at
//! `REAPER_INTERVAL_SECONDS`: a schedule with a seconds field fires on
//! time, and a long retention pass does not delay it. Exactly-once does not
//! rest on leadership (see `queue/schedule_fire.rs`); the lock only keeps
//! one process doing the work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::ReaperConfig;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::shutdown::Shutdown;

/// Longest sleep of the schedule loop.
const SCHEDULE_TICK: Duration = Duration::from_secs(1);

/// Advisory lock key for reaper leadership ("jobqreap").
pub const REAPER_LOCK_KEY: i64 = 0x6a6f_6271_7265_6170;

#[derive(Debug, Clone)]
pub struct ReaperOptions {
    pub interval: Duration,
    pub depth_interval: Duration,
    pub retention: Option<Duration>,
}

impl From<&ReaperConfig> for ReaperOptions {
    fn from(c: &ReaperConfig) -> Self {
        ReaperOptions {
            interval: c.interval,
            depth_interval: c.depth_interval,
            retention: c.retention,
        }
    }
}

pub struct Reaper {
    queue: Queue,
    database_url: String,
    options: ReaperOptions,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl Reaper {
    pub fn new(database_url: &str, options: ReaperOptions) -> crate::error::Result<Self> {
        let url = crate::db::normalise_url(database_url).map_err(crate::Error::Url)?;
        Ok(Reaper {
            queue: Queue::new(crate::db::pool(&url, 2)?),
            database_url: url,
            options,
            metrics: Arc::new(Metrics::default()),
            ready: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn readiness(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    pub async fn run(self, mut shutdown: Shutdown) -> crate::error::Result<()> {
        tracing::info!(
            interval_s = self.options.interval.as_secs_f64(),
            retention_h = self.options.retention.map(|r| r.as_secs_f64() / 3600.0),
            "reaper starting"
        );
        let mut leader: Option<tokio_postgres::Client> = None;
        let (leading, leading_rx) = tokio::sync::watch::channel(false);
        let firing = tokio::spawn(fire_schedules(
            self.queue.clone(),
            self.metrics.clone(),
            leading_rx,
            shutdown.clone(),
        ));
        let mut next_reap = tokio::time::Instant::now();
        let mut next_depth = tokio::time::Instant::now();
        loop {
            if leader.as_ref().is_some_and(|c| c.is_closed()) {
                tracing::warn!("lost the leadership connection");
                leader = None;
            }
            if leader.is_none() {
                leader = self.try_lead().await;
            }
            leading.send_if_modified(|l| {
                let changed = *l != leader.is_some();
                *l = leader.is_some();
                changed
            });
            let now = tokio::time::Instant::now();
            if leader.is_some() {
                if now >= next_reap {
                    next_reap = now + self.options.interval;
                    self.reap_once().await;
                }
                if now >= next_depth {
                    next_depth = now + self.options.depth_interval;
                    self.refresh_depth().await;
                }
            }
            let sleep_until = if leader.is_some() {
                // Wake at least every second to notice a lost leadership
                // connection before the schedule task fires on.
                next_reap.min(next_depth).min(now + SCHEDULE_TICK)
            } else {
                // Followers retry leadership at the reap interval.
                now + self.options.interval.min(Duration::from_secs(5))
            };
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tokio::time::sleep_until(sleep_until) => {}
            }
        }
        // The schedule task stops (it watches `shutdown` too) before the
        // lock is released, so a successor never overlaps with it.
        let _ = leading.send(false);
        if let Err(e) = firing.await {
            tracing::error!(error = %e, "schedule task failed");
        }
        // Dropping the connection releases the advisory lock.
        drop(leader);
        self.ready.store(false, Ordering::SeqCst);
        tracing::info!("reaper stopped");
        Ok(())
    }

    async fn try_lead(&self) -> Option<tokio_postgres::Client> {
        let client = match crate::db::connect(&self.database_url).await {
            Ok(c) => c,
            Err(e) => {
                self.ready.store(false, Ordering::SeqCst);
                tracing::warn!(error = %e, "reaper cannot reach the database");
                return None;
            }
        };
        self.ready.store(true, Ordering::SeqCst);
        match client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&REAPER_LOCK_KEY])
            .await
        {
            Ok(row) if row.get::<_, bool>(0) => {
                tracing::info!("reaper is the leader");
                Some(client)
            }
            Ok(_) => {
                tracing::debug!("another reaper is the leader");
                self.metrics.job_queue_depth.reset_all();
                None
            }
            Err(e) => {
                let f = crate::DbFailure::from_pg(&e);
                tracing::warn!(sqlstate = f.code(), error = %f.message, "reaper leadership query failed");
                None
            }
        }
    }

    /// One pass: expired leases, then retention.
    pub async fn reap_once(&self) {
        loop {
            match self.queue.reap_expired().await {
                Ok((requeued, dead)) => {
                    if requeued + dead > 0 {
                        tracing::info!(requeued, dead, "re-queued jobs whose lease expired");
                        self.metrics
                            .reaper_jobs_requeued_total
                            .inc_by(&["queued"], requeued);
                        self.metrics
                            .reaper_jobs_requeued_total
                            .inc_by(&["dead"], dead);
                    }
                    if requeued + dead < 10_000 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), "re-queueing expired leases failed");
                    break;
                }
            }
        }
        if let Some(retention) = self.options.retention {
            match self.queue.delete_finished(retention).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(deleted = n, "deleted finished jobs past retention");
                    self.metrics.reaper_jobs_deleted_total.inc_by(&[], n);
                }
                Err(e) => {
                    tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), "deleting old jobs failed")
                }
            }
        }
    }

    async fn refresh_depth(&self) {
        match self.queue.counts().await {
            Ok(counts) => {
                self.metrics.job_queue_depth.reset_all();
                for (queue, status, n) in counts {
                    self.metrics
                        .job_queue_depth
                        .set(&[&queue, &status], n as f64);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), "refreshing queue depth failed")
            }
        }
    }
}

/// The schedule loop: while this process leads, enqueue due schedules,
/// then sleep until the earliest `next_fire_at` (at most [`SCHEDULE_TICK`]).
async fn fire_schedules(
    queue: Queue,
    metrics: Arc<Metrics>,
    mut leading: tokio::sync::watch::Receiver<bool>,
    mut shutdown: Shutdown,
) {
    let mut failures: u64 = 0;
    loop {
        if !*leading.borrow_and_update() {
            tokio::select! {
                _ = shutdown.wait() => return,
                changed = leading.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        let delay = match queue.fire_due_schedules().await {
            Ok(report) => {
                failures = 0;
                for f in &report.fired {
                    let Some(at) = f.fire_at else { continue };
                    if f.enqueued {
                        tracing::info!(schedule = %f.schedule, fire_at = %at.to_rfc3339(), queue = %f.queue, "schedule fired");
                        metrics.schedule_fired_total.inc(&[&f.schedule]);
                        metrics.job_created_total.inc(&[&f.queue]);
                    } else {
                        tracing::info!(schedule = %f.schedule, fire_at = %at.to_rfc3339(), "schedule fire time was enqueued already");
                    }
                }
                report
                    .next_due_in
                    .unwrap_or(SCHEDULE_TICK)
                    .clamp(Duration::from_millis(10), SCHEDULE_TICK)
            }
            Err(e) => {
                // Every second while the database is down (or not migrated
                // yet): log the first failure and then once a minute.
                failures += 1;
                if failures % 60 == 1 {
                    tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), failures, "firing schedules failed");
                }
                SCHEDULE_TICK
            }
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(delay) => {}
            changed = leading.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
