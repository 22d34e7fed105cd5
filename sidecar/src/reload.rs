//! Config reload: berth follows its config file without restarting.
//!
//! Kubernetes updates a mounted ConfigMap by swapping a symlink (`..data`)
//! to a new directory, which inotify on the file itself misses; berth
//! instead re-reads the file (bounded, a few KiB) every [`POLL`] and acts
//! when the text changed. A valid new config is applied at once: unchanged
//! checks keep their state ([`crate::supervisor`]), new ones start, removed
//! ones stop, and drain/startup/groups/token settings take effect. An
//! invalid one is logged (the same one-line error as `check-config`) and
//! ignored: the running configuration stays. Listen addresses cannot move
//! without a restart; a change there is logged and left as it was.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{self, Config};
use crate::supervisor::Supervisor;
use crate::App;

/// How often the file is re-read. kubelet's own sync period is ~1 min, so
/// one second adds nothing noticeable to a ConfigMap update's delay.
pub const POLL: Duration = Duration::from_secs(1);

/// Watches `path` until `stop` turns true.
pub async fn watch(
    app: Arc<App>,
    supervisor: Arc<Supervisor>,
    path: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = config::read(&path).ok();
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        let text = match config::read(&path) {
            Ok(t) => t,
            Err(e) => {
                // A ConfigMap swap is atomic, so this is a real problem;
                // say it once, not every second.
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!(error = %msg, "config reload: cannot read the file; the running configuration stays");
                    last_error = Some(msg);
                }
                continue;
            }
        };
        if last.as_deref() == Some(text.as_str()) {
            continue;
        }
        last = Some(text.clone());
        let env = |name: &str| std::env::var(name).ok();
        match config::parse(&text, &env) {
            Err(e) => {
                tracing::error!(error = %e, "config reload rejected: the running configuration stays");
                last_error = Some(e.to_string());
            }
            Ok(new) => {
                last_error = None;
                apply(&app, &supervisor, new);
            }
        }
    }
}

/// Applies a valid new config (also used by tests).
pub fn apply(app: &Arc<App>, supervisor: &Supervisor, mut new: Config) {
    let old = app.config();
    let mut restart = Vec::new();
    if new.listen != old.listen {
        restart.push("listen");
        new.listen = old.listen;
    }
    if new.grpc_listen != old.grpc_listen {
        restart.push("grpcListen");
        new.grpc_listen = old.grpc_listen;
    }
    let old_lc = old.lifecycle.as_ref().map(|l| l.listen);
    let new_lc = new.lifecycle.as_ref().map(|l| l.listen);
    if old_lc != new_lc {
        restart.push("lifecycle");
        new.lifecycle = old.lifecycle.clone();
    }
    if !restart.is_empty() {
        tracing::warn!(
            fields = restart.join(", "),
            "config reload: these settings need a restart; they keep their running values"
        );
    }
    let applied = supervisor.apply(app, &new);
    app.set_config(Arc::new(new));
    tracing::info!(
        kept = applied.kept.join(","),
        started = applied.started.join(","),
        stopped = applied.stopped.join(","),
        "config reloaded"
    );
}
