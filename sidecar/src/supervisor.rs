//! The checker tasks: one per check, started from the config and swapped
//! by a reload.
//!
//! A reload must not make readiness flap for checks it did not change, so
//! a check whose definition is the same ([`CheckSpec::same_as`]) keeps its
//! task and its [`CheckCell`] (status, thresholds in progress, history);
//! only new or changed checks start from `unknown`, and removed ones stop.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checks::run_checker;
use crate::config::{CheckSpec, Config};
use crate::redact::Secrets;
use crate::state::CheckCell;
use crate::App;

struct Running {
    spec: CheckSpec,
    /// Runs at the fast drain pace (listed in `drain.waitUntilDown`).
    fast: bool,
    cell: Arc<CheckCell>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// What a reload did to the checks, by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub kept: Vec<String>,
    pub started: Vec<String>,
    pub stopped: Vec<String>,
}

pub struct Supervisor {
    running: Mutex<Vec<Running>>,
}

impl Supervisor {
    /// Starts a task for every check of the app's config, writing into the
    /// cells `Health::new` made for them.
    pub fn start(app: &Arc<App>) -> Supervisor {
        let config = app.config();
        let secrets = app.secrets();
        let cells = app.health.cells();
        let running = config
            .checks
            .iter()
            .zip(cells.iter())
            .map(|(spec, cell)| spawn(app, &config, spec, cell.clone(), &secrets))
            .collect();
        Supervisor {
            running: Mutex::new(running),
        }
    }

    /// Moves to the checks of `new`; installs the new cells in `app.health`.
    pub fn apply(&self, app: &Arc<App>, new: &Config) -> Applied {
        let secrets = Arc::new(new.secrets());
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut old: Vec<Running> = std::mem::take(&mut *running);
        let mut applied = Applied::default();
        let mut next = Vec::with_capacity(new.checks.len());
        for spec in &new.checks {
            let fast = new.drain.wait_until_down.contains(&spec.name);
            match old
                .iter()
                .position(|r| r.fast == fast && r.spec.same_as(spec))
            {
                Some(pos) => {
                    applied.kept.push(spec.name.clone());
                    next.push(old.remove(pos));
                }
                None => {
                    applied.started.push(spec.name.clone());
                    let cell = Arc::new(CheckCell::new(spec));
                    next.push(spawn(app, new, spec, cell, &secrets));
                }
            }
        }
        for r in old {
            applied.stopped.push(r.spec.name.clone());
            // The task closes its connection and ends at its next wake-up.
            r.stop.send_replace(true);
        }
        let cells: Arc<[Arc<CheckCell>]> = next.iter().map(|r| r.cell.clone()).collect();
        app.health
            .replace(cells, new.startup_wait_for.clone(), new.groups.clone());
        *running = next;
        applied
    }

    /// Stops every task and waits for them to close their connections.
    pub async fn stop_all(&self) {
        let tasks: Vec<Running> = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *running)
        };
        for r in &tasks {
            r.stop.send_replace(true);
        }
        futures::future::join_all(tasks.into_iter().map(|r| r.handle)).await;
    }
}

fn spawn(
    app: &Arc<App>,
    config: &Config,
    spec: &CheckSpec,
    cell: Arc<CheckCell>,
    secrets: &Arc<Secrets>,
) -> Running {
    let fast = config.drain.wait_until_down.contains(&spec.name);
    let (stop, stop_rx) = watch::channel(false);
    let handle = tokio::spawn(run_checker(
        app.health.clone(),
        cell.clone(),
        spec.clone(),
        secrets.clone(),
        fast,
        stop_rx,
    ));
    Running {
        spec: spec.clone(),
        fast,
        cell,
        stop,
        handle,
    }
}
