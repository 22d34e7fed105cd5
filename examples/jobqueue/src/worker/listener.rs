//! The listener: a dedicated LISTEN connection that wakes the fetcher when
//! jobs are inserted, so an idle worker starts a new job within
//! milliseconds instead of at its next poll.
//!
//! Reconnects forever with backoff; after a reconnect it wakes the fetcher
//! once, since notifications sent while it was away are lost. Polling
//! (`poll_interval`) remains the safety net.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::shutdown::Shutdown;

/// `wakes`: the lanes' fetchers (payload '' or a queue name: new jobs, a
/// resumed queue); `group_wakes`: their group fetchers (payload `group`: a
/// grouped job was inserted or left `running`). All of them after a
/// reconnect.
pub(crate) async fn run(
    url: String,
    queues: Vec<String>,
    wakes: Vec<Arc<Notify>>,
    group_wakes: Vec<Arc<Notify>>,
    mut stop: Shutdown,
) {
    let wake_all = || {
        for w in wakes.iter().chain(&group_wakes) {
            w.notify_one();
        }
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        match crate::db::connect_with_notifications(&url).await {
            Ok((client, mut rx)) => match client.batch_execute("LISTEN jobqueue").await {
                Ok(()) => {
                    backoff = Duration::from_millis(200);
                    wake_all(); // we may have missed some while away
                    loop {
                        tokio::select! {
                            _ = stop.wait() => return,
                            n = rx.recv() => match n {
                                // Empty payload = any queue (the insert trigger).
                                Some(n) => {
                                    if n.payload() == "group" {
                                        for w in &group_wakes {
                                            w.notify_one();
                                        }
                                    } else if n.payload().is_empty() || queues.iter().any(|q| q == n.payload()) {
                                        // Inserts (and resume): the fetchers.
                                        // Grouped inserts also send 'group'
                                        // (queue/mod.rs, NOTIFY_GROUP).
                                        for w in &wakes {
                                            w.notify_one();
                                        }
                                    }
                                }
                                None => break,
                            }
                        }
                    }
                    tracing::warn!("LISTEN connection lost; polling until it is back");
                }
                Err(e) => {
                    let f = crate::DbFailure::from_pg(&e);
                    tracing::warn!(sqlstate = f.code(), error = %f.message, "LISTEN failed");
                }
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
