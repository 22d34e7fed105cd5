//! The ledger: which jobs this worker holds a lease on, and in what state.
//!
//! Why it exists: three roles must agree on every held job — the executor
//! (handler finished), the completer (outcome stored), the lease keeper
//! (lease renewed or lost) — and so must the drain at shutdown. Each state
//! change happens under one mutex so "finished" and "lease lost / handed
//! back" can never both win for the same job. A counter of running
//! handlers lets the completer see, without the lock, that no more outcomes
//! are coming soon (flush now rather than wait).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::task::AbortHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeldState {
    /// Handler running.
    Running,
    /// Handler finished; outcome waiting to be stored.
    Done,
    /// Lease lost or handed back: the task must not report an outcome.
    Abandoned,
}

pub(crate) struct Held {
    pub token: i64,
    pub state: HeldState,
    pub abort: Option<AbortHandle>,
}

/// Shared by every role of one worker. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Ledger {
    map: Arc<Mutex<HashMap<i64, Held>>>,
    running: Arc<AtomicUsize>,
}

impl Ledger {
    pub fn lock(&self) -> MutexGuard<'_, HashMap<i64, Held>> {
        // A panic while holding the lock leaves a consistent map (every
        // update is a single insert/remove/field store): keep going.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handlers currently running (not yet finished or aborted).
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    pub fn handler_started(&self) {
        self.running.fetch_add(1, Ordering::AcqRel);
    }

    pub fn handler_ended(&self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Decrements the running count when a handler task ends, however it ends
/// (finished, panicked, aborted by lease loss or shutdown).
pub(crate) struct RunningGuard(pub Ledger);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.handler_ended();
    }
}
