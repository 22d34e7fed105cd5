//! The lease keeper: renews the leases of held jobs every third of the
//! lease, and aborts a handler whose lease is gone.
//!
//! Why: a lease must outlive a slow handler, or the reaper would hand the
//! job to someone else while it still runs. One fenced `UPDATE` renews every
//! held lease at once. A lease that no longer matches (expired and
//! re-queued by the reaper, re-claimed, cancelled) means the job is not
//! ours any more: the handler is aborted and its slot freed, and
//! `worker_lease_lost_total` counts it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::shutdown::Shutdown;

use super::ledger::{HeldState, Ledger};
use super::WorkerOptions;

pub(crate) async fn run(
    queue: Queue,
    ledger: Ledger,
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
        let leases: Vec<(i64, i64)> = ledger
            .lock()
            .iter()
            .filter(|(_, h)| h.state != HeldState::Abandoned)
            .map(|(id, h)| (*id, h.token))
            .collect();
        if leases.is_empty() {
            continue;
        }
        match queue.extend(&leases, opts.lease_duration).await {
            Ok(still) => {
                let still: HashSet<i64> = still.into_iter().collect();
                let mut map = ledger.lock();
                for (id, _) in leases.iter().filter(|(id, _)| !still.contains(id)) {
                    let Some(h) = map.get_mut(id) else { continue };
                    if h.state == HeldState::Running {
                        h.state = HeldState::Abandoned;
                        if let Some(a) = &h.abort {
                            a.abort();
                        }
                        // The aborted task drops its slot with it.
                        map.remove(id);
                        metrics.worker_lease_lost_total.inc(&[]);
                        tracing::warn!(job_id = id, worker_id = %opts.worker_id, "lease lost (expired or job cancelled); handler aborted");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or("-"), jobs = leases.len(), "extending leases failed")
            }
        }
    }
}
