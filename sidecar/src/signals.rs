//! The only module that touches signals (SIGTERM and SIGINT, through
//! `signal-hook-tokio`). It turns them into the shutdown future that
//! [`crate::run`] takes as an argument.
//!
//! - `mode: native`: berth is a native sidecar and is signalled only after
//!   the main container has exited, so the future completes at once.
//! - `mode: regular`: berth is signalled together with the main container,
//!   whose preStop may still be talking to berth. berth turns unready and
//!   keeps serving until the main process is gone (and any prestop call in
//!   flight has returned), bounded by `drain.timeout`. When no main process
//!   is known, it serves until a prestop call has come and finished, bounded
//!   by `drain.timeout` as well.
//!
//! A second signal exits the process at once: whoever sends it has decided
//! not to wait.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::time::Instant;

use crate::config::Mode;
use crate::{procs, App};

/// How often `/proc` is scanned for the main process while waiting for it to exit.
const MAIN_POLL: Duration = Duration::from_millis(100);

/// Installs the handlers. Call it first thing, so an early SIGTERM is a
/// graceful stop rather than the default "terminate".
pub fn install() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT])
}

fn name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// Completes when berth should stop, according to `mode`.
pub async fn shutdown(app: Arc<App>, mut signals: Signals) {
    let Some(first) = signals.next().await else {
        // The stream never ends while the handle lives; if it did, there is
        // nothing that could ask berth to stop.
        return std::future::pending().await;
    };
    tokio::spawn(async move {
        if let Some(second) = signals.next().await {
            tracing::warn!(signal = name(second), "second signal: exiting at once");
            std::process::exit(0);
        }
    });
    match app.config().mode {
        Mode::Native => {
            tracing::info!(signal = name(first), mode = "native", "stopping");
        }
        Mode::Regular => {
            tracing::info!(
                signal = name(first),
                mode = "regular",
                main_process = app.config().main_process().unwrap_or(""),
                timeout_ms = app.config().drain.timeout.as_millis() as u64,
                "draining until the main process is gone"
            );
            drain_until_main_gone(&app).await;
        }
    }
}

async fn drain_until_main_gone(app: &Arc<App>) {
    app.health.start_draining();
    let deadline = Instant::now() + app.config().drain.timeout;
    let main = app.config().main_process().map(str::to_string);
    let waited = tokio::time::timeout_at(deadline, async {
        match &main {
            Some(main) => {
                while !procs::find_by_name(main).is_empty() {
                    tokio::time::sleep(MAIN_POLL).await;
                }
                // The main container's preStop may still be waiting on us.
                app.drain.finished().await;
            }
            // Nothing to watch: serve until the main container's preStop
            // (which may arrive just after this signal) has come and gone.
            None => app.drain.completed().await,
        }
    })
    .await;
    match waited {
        Ok(()) if main.is_some() => {
            tracing::info!("main process gone and no prestop in flight: stopping")
        }
        Ok(()) => tracing::info!("prestop finished: stopping"),
        Err(_) => tracing::warn!("drain.timeout passed while draining: stopping"),
    }
}
