//! The reaper: re-queues jobs whose lease expired (their worker died or
//! hung), marks them `dead` when that was their last attempt, deletes
//! finished jobs past the retention period, and keeps `job_queue_depth`
//! current.
//!
//! Safe with several replicas: only the holder of a session advisory lock
//! (on a dedicated connection) does the work. If that connection dies, the
//! server releases the lock and another replica takes over on its next
//! tick. The operations are idempotent anyway; the lock just avoids
//! replicas racing on the same rows and double-reporting the gauge.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::ReaperConfig;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::shutdown::Shutdown;

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
                next_reap.min(next_depth)
            } else {
                // Followers retry leadership at the reap interval.
                now + self.options.interval.min(Duration::from_secs(5))
            };
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tokio::time::sleep_until(sleep_until) => {}
            }
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
