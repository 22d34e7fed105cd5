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
//!
//! **Which leases a pass reads** ([`LeaseWindow`]). A success keeps its
//! lease time (migration 8), so the lease index holds the history too,
//! and reading every expired lease would walk all of it each pass. A pass
//! reads the leases that expired since the previous pass began, minus
//! [`LEASE_WINDOW_SLACK`]: a claim's lease time is taken when its
//! statement starts, and one that commits after a pass began, with a
//! lease already past by then, is still in the next window unless it was
//! in flight for longer than its lease plus the slack. The first pass of
//! a leader, and one pass every [`FULL_SWEEP_INTERVAL`], read every lease
//! instead (a full sweep), after repairing the lease times that other
//! writers left inconsistent with the status (`queue/repair_lease_times.rs`):
//! what a window could miss is found within the hour.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::ReaperConfig;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::shutdown::Shutdown;

/// Longest sleep of the schedule loop.
const SCHEDULE_TICK: Duration = Duration::from_secs(1);

/// How far each pass over expired leases reaches back before the start of
/// the previous one (module docs).
pub const LEASE_WINDOW_SLACK: Duration = Duration::from_secs(15);

/// How often a pass reads every lease, not only the window's (module docs).
pub const FULL_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// Where the next pass over expired leases starts (module docs).
#[derive(Debug, Default)]
struct LeaseWindow {
    /// Leases that expired before this were all seen; `None`: sweep.
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// When the last full sweep finished.
    swept_at: Option<tokio::time::Instant>,
}

impl LeaseWindow {
    /// The lower bound of the next pass (`None`: a full sweep).
    fn next_since(&self, now: tokio::time::Instant) -> Option<chrono::DateTime<chrono::Utc>> {
        match self.swept_at {
            Some(at) if now.duration_since(at) < FULL_SWEEP_INTERVAL => self.since,
            _ => None,
        }
    }

    /// A pass from `since` (`None`: a sweep) read everything up to `scanned_at`.
    fn passed(
        &mut self,
        since: Option<chrono::DateTime<chrono::Utc>>,
        scanned_at: chrono::DateTime<chrono::Utc>,
        now: tokio::time::Instant,
    ) {
        let slack = chrono::Duration::from_std(LEASE_WINDOW_SLACK).unwrap_or_default();
        self.since = Some(scanned_at - slack);
        if since.is_none() {
            self.swept_at = Some(now);
        }
    }
}

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
    lease_window: std::sync::Mutex<LeaseWindow>,
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
            lease_window: std::sync::Mutex::new(LeaseWindow::default()),
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
                // Whatever expired while no one led: sweep first.
                *self.window() = LeaseWindow::default();
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

    /// The lease window (a poisoned lock only means a panic elsewhere: the
    /// window is still valid).
    fn window(&self) -> std::sync::MutexGuard<'_, LeaseWindow> {
        self.lease_window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One pass: expired leases (the window's, or all of them in a full
    /// sweep), then retention.
    pub async fn reap_once(&self) {
        let since = self.window().next_since(tokio::time::Instant::now());
        if since.is_none() {
            match self.queue.repair_lease_times().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    jobs = n,
                    "repaired lease times that other writers left inconsistent"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), "repairing lease times failed")
                }
            }
        }
        loop {
            match self.queue.reap_expired_since(since).await {
                Ok(reaped) => {
                    let (requeued, dead) = (reaped.requeued, reaped.dead);
                    if requeued + dead > 0 {
                        tracing::info!(requeued, dead, "re-queued jobs whose lease expired");
                        self.metrics
                            .reaper_jobs_requeued_total
                            .inc_by(&["queued"], requeued);
                        self.metrics
                            .reaper_jobs_requeued_total
                            .inc_by(&["dead"], dead);
                    }
                    if !reaped.full() {
                        self.window()
                            .passed(since, reaped.scanned_at, tokio::time::Instant::now());
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

#[cfg(test)]
mod tests {
    use super::{LeaseWindow, FULL_SWEEP_INTERVAL, LEASE_WINDOW_SLACK};
    use std::time::Duration;

    /// A new window sweeps; after a sweep, passes start the slack before
    /// the previous one began; a window pass does not postpone the hourly
    /// sweep, and the sweep comes back after an hour.
    #[test]
    fn the_window_follows_the_passes_and_sweeps_hourly() {
        let start = tokio::time::Instant::now();
        let db_time = chrono::DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        let slack = chrono::Duration::from_std(LEASE_WINDOW_SLACK).unwrap_or_default();
        let mut window = LeaseWindow::default();
        assert_eq!(window.next_since(start), None);
        window.passed(None, db_time, start);
        assert_eq!(window.next_since(start), Some(db_time - slack));
        let later = db_time + chrono::Duration::seconds(60);
        let minute = start + Duration::from_secs(60);
        window.passed(Some(db_time - slack), later, minute);
        assert_eq!(window.next_since(minute), Some(later - slack));
        assert_eq!(window.next_since(start + FULL_SWEEP_INTERVAL), None);
    }
}
