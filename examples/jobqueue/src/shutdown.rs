//! Signals. The only module that touches them.
//!
//! The first SIGTERM or SIGINT starts a graceful shutdown (the returned
//! watch flips to `true`). Further SIGTERMs are ignored on purpose: in a pod
//! with berth, the sidecar signals the worker during preStop and kubelet
//! sends its own SIGTERM afterwards; the second one must not cut the drain
//! short. A second SIGINT (Ctrl-C twice at a terminal) exits at once.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// A shutdown flag that can be awaited.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A flag that is already set (tests) or never set by signals.
    pub fn manual() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has started (immediately if it has).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }

    /// An owned future, e.g. for `with_graceful_shutdown`.
    pub async fn wait_owned(mut self) {
        self.wait().await
    }
}

/// Installs SIGTERM/SIGINT handlers. Must be called inside the runtime.
pub fn from_signals() -> std::io::Result<Shutdown> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut interrupts = 0;
        loop {
            tokio::select! {
                Some(()) = term.recv() => {
                    if !*tx.borrow() {
                        tracing::info!(signal = "SIGTERM", "shutdown requested");
                    } else {
                        tracing::info!(signal = "SIGTERM", "already shutting down; ignoring");
                    }
                    let _ = tx.send(true);
                }
                Some(()) = int.recv() => {
                    interrupts += 1;
                    if interrupts > 1 {
                        tracing::warn!(signal = "SIGINT", "second interrupt: exiting now");
                        std::process::exit(130);
                    }
                    tracing::info!(signal = "SIGINT", "shutdown requested");
                    let _ = tx.send(true);
                }
                else => break,
            }
        }
    });
    Ok(Shutdown(rx))
}
