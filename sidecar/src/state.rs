//! Cached health state: what every probe handler reads.
//!
//! Checkers write here after each run; HTTP handlers only read. That split
//! is the core promise of berth: a probe storm costs a few atomic loads and
//! mutex reads, never a query against a dependency.
//!
//! State machine of one check (thresholds debounce flapping between
//! *established* states; the very first result decides at once, because
//! nothing needs debouncing before anything is known):
//!
//! ```text
//! unknown --success--> up          unknown --failure--> down
//! up   --failureThreshold consecutive failures--> down
//! down --successThreshold consecutive successes--> up
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

// tokio's clock, not std's: identical in production, and tests can pause
// and advance it to prove that a stalled checker fails `/live`.
use tokio::time::Instant;

use tokio::sync::watch;

use crate::config::{CheckSpec, Config};
use crate::redact::CheckError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unknown,
    Up,
    Down,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Up => "up",
            Status::Down => "down",
        }
    }
}

/// Thresholds of one check.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub failure: u32,
    pub success: u32,
}

/// The mutable state of one check.
#[derive(Debug, Clone)]
pub struct CheckState {
    pub status: Status,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_success: Option<SystemTime>,
    pub last_failure: Option<SystemTime>,
    /// The latest error; cleared by a success.
    pub error: Option<CheckError>,
    pub latency: Option<Duration>,
    pub failures_total: u64,
    pub transitions_total: u64,
    /// Has been `up` at least once (the startup gate is sticky).
    pub ever_up: bool,
}

impl Default for CheckState {
    fn default() -> Self {
        CheckState {
            status: Status::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_success: None,
            last_failure: None,
            error: None,
            latency: None,
            failures_total: 0,
            transitions_total: 0,
            ever_up: false,
        }
    }
}

impl CheckState {
    /// Records one check result; returns the previous status if it changed.
    pub fn record(
        &mut self,
        result: Result<(), CheckError>,
        latency: Duration,
        now: SystemTime,
        t: Thresholds,
    ) -> Option<Status> {
        let before = self.status;
        self.latency = Some(latency);
        match result {
            Ok(()) => {
                self.consecutive_successes = self.consecutive_successes.saturating_add(1);
                self.consecutive_failures = 0;
                self.last_success = Some(now);
                self.error = None;
                if before == Status::Unknown
                    || (before == Status::Down && self.consecutive_successes >= t.success)
                {
                    self.status = Status::Up;
                }
            }
            Err(e) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.consecutive_successes = 0;
                self.last_failure = Some(now);
                self.failures_total += 1;
                self.error = Some(e);
                if before == Status::Unknown
                    || (before == Status::Up && self.consecutive_failures >= t.failure)
                {
                    self.status = Status::Down;
                }
            }
        }
        if self.status == Status::Up {
            self.ever_up = true;
        }
        (self.status != before).then(|| {
            self.transitions_total += 1;
            before
        })
    }
}

/// One configured check as the state store knows it.
pub struct CheckCell {
    pub name: String,
    pub kind: &'static str,
    pub critical: bool,
    pub thresholds: Thresholds,
    /// `/live` fails when the checker has not looped for this long.
    stale_after: Duration,
    state: Mutex<CheckState>,
    /// Milliseconds since [`Health::created`] of the checker's latest loop.
    heartbeat_ms: AtomicU64,
    /// Recent results for the status page, bounded by [`HISTORY`].
    history: Mutex<VecDeque<(bool, Duration)>>,
}

/// Overall status of `/api/v1/health/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overall {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Overall {
    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Healthy => "healthy",
            Overall::Degraded => "degraded",
            Overall::Unhealthy => "unhealthy",
        }
    }
}

/// One member of a group as `/api/v1/health/group/{name}` shows it:
/// `(name, status, critical)`.
pub type GroupMember = (String, Status, bool);

/// All cached health state of one berth.
///
/// The set of checks can change at run time (config reload): it is an
/// immutable list swapped as a whole, and every [`CheckCell`] is shared by
/// `Arc`, so a check that a reload keeps keeps its cell, its state and its
/// checker task. Readers take one consistent list per request.
pub struct Health {
    checks: RwLock<Arc<[Arc<CheckCell>]>>,
    /// Names of the startup gate's checks.
    wait_for: RwLock<Arc<[String]>>,
    /// `groups:` of the config, member names in order.
    groups: RwLock<Arc<BTreeMap<String, Vec<String>>>>,
    started: AtomicBool,
    draining: AtomicBool,
    created: Instant,
    /// Bumped on every status change, gate pass and drain start, so waiters
    /// (`berth wait`, the drain's `waitUntilDown`, gRPC Watch) sleep instead of polling.
    changes: watch::Sender<u64>,
    draining_tx: watch::Sender<bool>,
}

impl Health {
    pub fn new(config: &Config) -> Health {
        let checks: Arc<[Arc<CheckCell>]> = config
            .checks
            .iter()
            .map(|c| Arc::new(CheckCell::new(c)))
            .collect();
        let started = config.startup_wait_for.is_empty();
        if started {
            tracing::info!("startup gate passed (no checks to wait for)");
        }
        Health {
            checks: RwLock::new(checks),
            wait_for: RwLock::new(config.startup_wait_for.iter().cloned().collect()),
            groups: RwLock::new(Arc::new(config.groups.clone())),
            started: AtomicBool::new(started),
            draining: AtomicBool::new(false),
            created: Instant::now(),
            changes: watch::channel(0).0,
            draining_tx: watch::channel(false).0,
        }
    }

    /// The current checks, in config order.
    pub fn cells(&self) -> Arc<[Arc<CheckCell>]> {
        self.checks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn groups(&self) -> Arc<BTreeMap<String, Vec<String>>> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn wait_for(&self) -> Arc<[String]> {
        self.wait_for
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs a reloaded set of checks. `cells` reuses the cells of
    /// unchanged checks, so their state (and readiness) carries over. The
    /// startup gate stays passed once passed: a reload never un-starts a pod.
    pub fn replace(
        &self,
        cells: Arc<[Arc<CheckCell>]>,
        wait_for: Vec<String>,
        groups: BTreeMap<String, Vec<String>>,
    ) {
        *self.checks.write().unwrap_or_else(|p| p.into_inner()) = cells;
        *self.wait_for.write().unwrap_or_else(|p| p.into_inner()) = wait_for.into();
        *self.groups.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(groups);
        self.check_gate();
        self.changes.send_modify(|n| *n += 1);
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.cells().iter().position(|c| c.name == name)
    }

    pub fn cell(&self, name: &str) -> Option<Arc<CheckCell>> {
        self.cells().iter().find(|c| c.name == name).cloned()
    }

    pub fn snapshot(&self, idx: usize) -> CheckState {
        self.cells()[idx].snapshot()
    }

    pub fn status(&self, idx: usize) -> Status {
        self.cells()[idx].lock().status
    }

    /// Records a result of the check at `idx` (tests drive state this way).
    pub fn record(&self, idx: usize, result: Result<(), CheckError>, latency: Duration) {
        let cell = self.cells()[idx].clone();
        self.record_cell(&cell, result, latency);
    }

    /// Records a check result, logs a state change (one line per change,
    /// never per probe) and re-evaluates the startup gate.
    pub fn record_cell(&self, cell: &CheckCell, result: Result<(), CheckError>, latency: Duration) {
        cell.remember(result.is_ok(), latency);
        let (changed, status, error) = {
            let mut st = cell.lock();
            let changed = st.record(result, latency, SystemTime::now(), cell.thresholds);
            (changed, st.status, st.error.clone())
        };
        if let Some(from) = changed {
            let latency_ms = latency.as_secs_f64() * 1000.0;
            match (status, error) {
                (Status::Down, Some(e)) => tracing::warn!(
                    check = %cell.name,
                    r#type = cell.kind,
                    critical = cell.critical,
                    from = from.as_str(),
                    to = status.as_str(),
                    error = %e,
                    "check is down"
                ),
                _ => tracing::info!(
                    check = %cell.name,
                    r#type = cell.kind,
                    critical = cell.critical,
                    from = from.as_str(),
                    to = status.as_str(),
                    latency_ms,
                    "check is up"
                ),
            }
            self.check_gate();
            self.changes.send_modify(|n| *n += 1);
        }
    }

    fn check_gate(&self) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let cells = self.cells();
        let passed = self.wait_for().iter().all(|name| {
            cells
                .iter()
                .find(|c| &c.name == name)
                .is_some_and(|c| c.lock().ever_up)
        });
        if passed {
            self.started.store(true, Ordering::Release);
            tracing::info!(
                elapsed_ms = self.created.elapsed().as_millis() as u64,
                "startup gate passed"
            );
        }
    }

    pub fn beat(&self, idx: usize) {
        self.beat_cell(&self.cells()[idx]);
    }

    pub fn beat_cell(&self, cell: &CheckCell) {
        let ms = self.created.elapsed().as_millis() as u64;
        cell.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Enters draining (idempotent); returns true the first time.
    pub fn start_draining(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::AcqRel);
        if first {
            tracing::info!("draining: readiness is now false");
            self.draining_tx.send_replace(true);
            self.changes.send_modify(|n| *n += 1);
        }
        first
    }

    pub fn subscribe_draining(&self) -> watch::Receiver<bool> {
        self.draining_tx.subscribe()
    }

    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every critical check is up (after thresholds).
    pub fn critical_up(&self) -> bool {
        self.cells()
            .iter()
            .filter(|c| c.critical)
            .all(|c| c.lock().status == Status::Up)
    }

    /// kubert's rule: not ready before the startup gate, nor once draining.
    pub fn ready(&self) -> bool {
        self.started() && !self.draining() && self.critical_up()
    }

    /// A group: `Some((true, _))` when every critical member is up, `None`
    /// for an unknown group.
    pub fn group(&self, name: &str) -> Option<(bool, Vec<GroupMember>)> {
        let groups = self.groups();
        let members = groups.get(name)?;
        let cells = self.cells();
        let mut up = true;
        let mut out = Vec::new();
        for m in members {
            let Some(c) = cells.iter().find(|c| &c.name == m) else {
                continue;
            };
            let status = c.lock().status;
            if c.critical && status != Status::Up {
                up = false;
            }
            out.push((m.clone(), status, c.critical));
        }
        Some((up, out))
    }

    /// Checker tasks have looped recently (a dead or wedged checker makes
    /// berth not live, so the kubelet restarts it). Dependencies play no part.
    pub fn live(&self) -> bool {
        let now_ms = self.created.elapsed().as_millis() as u64;
        self.cells().iter().all(|c| {
            let age = now_ms.saturating_sub(c.heartbeat_ms.load(Ordering::Relaxed));
            Duration::from_millis(age) <= c.stale_after
        })
    }

    pub fn overall(&self) -> Overall {
        let mut degraded = false;
        for c in self.cells().iter() {
            let up = c.lock().status == Status::Up;
            if !up && c.critical {
                return Overall::Unhealthy;
            }
            degraded |= !up;
        }
        if degraded {
            Overall::Degraded
        } else {
            Overall::Healthy
        }
    }

    /// Names of startup-gate checks that have never been up.
    pub fn startup_pending(&self) -> Vec<String> {
        let cells = self.cells();
        self.wait_for()
            .iter()
            .filter(|name| {
                !cells
                    .iter()
                    .find(|c| &c.name == *name)
                    .is_some_and(|c| c.lock().ever_up)
            })
            .cloned()
            .collect()
    }

    pub fn uptime(&self) -> Duration {
        self.created.elapsed()
    }

    /// Milliseconds since this berth started, on the health clock.
    pub fn now_ms(&self) -> u64 {
        self.created.elapsed().as_millis() as u64
    }
}

/// How many recent results a cell keeps for the status page's strip.
pub const HISTORY: usize = 60;

impl CheckCell {
    pub fn new(spec: &CheckSpec) -> CheckCell {
        CheckCell {
            name: spec.name.clone(),
            kind: spec.kind(),
            critical: spec.critical,
            thresholds: Thresholds {
                failure: spec.failure_threshold,
                success: spec.success_threshold,
            },
            // Two missed loops plus a margin for a loaded node: a checker is
            // wedged, not merely late.
            stale_after: spec.interval * 2 + spec.timeout + Duration::from_secs(10),
            state: Mutex::new(CheckState::default()),
            heartbeat_ms: AtomicU64::new(0),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    pub fn snapshot(&self) -> CheckState {
        self.lock().clone()
    }

    /// The last [`HISTORY`] results, oldest first: (succeeded, latency).
    pub fn history(&self) -> Vec<(bool, Duration)> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    fn remember(&self, ok: bool, latency: Duration) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back((ok, latency));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CheckState> {
        // A poisoned lock only means a panic elsewhere; the data is plain values.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        failure: 3,
        success: 2,
    };

    fn fail() -> Result<(), CheckError> {
        Err(CheckError::new("timeout", ""))
    }

    #[test]
    fn first_result_decides_then_thresholds_debounce() {
        let now = SystemTime::now();
        let ms = Duration::from_millis(1);
        let mut s = CheckState::default();
        assert_eq!(s.record(Ok(()), ms, now, T), Some(Status::Unknown));
        assert_eq!(s.status, Status::Up);
        assert_eq!(s.record(fail(), ms, now, T), None);
        assert_eq!(s.record(fail(), ms, now, T), None);
        assert_eq!(s.status, Status::Up, "two failures < failureThreshold 3");
        assert_eq!(s.record(fail(), ms, now, T), Some(Status::Up));
        assert_eq!(s.status, Status::Down);
        assert_eq!(s.failures_total, 3);
        assert_eq!(s.record(Ok(()), ms, now, T), None);
        assert_eq!(s.status, Status::Down, "one success < successThreshold 2");
        assert!(s.error.is_none(), "a success clears the error");
        assert_eq!(s.record(Ok(()), ms, now, T), Some(Status::Down));
        assert_eq!(s.status, Status::Up);
        assert_eq!(s.transitions_total, 3);
    }

    #[test]
    fn failure_streak_is_reset_by_a_success() {
        let now = SystemTime::now();
        let ms = Duration::from_millis(1);
        let mut s = CheckState::default();
        s.record(Ok(()), ms, now, T);
        s.record(fail(), ms, now, T);
        s.record(fail(), ms, now, T);
        s.record(Ok(()), ms, now, T);
        s.record(fail(), ms, now, T);
        s.record(fail(), ms, now, T);
        assert_eq!(s.status, Status::Up);
        assert_eq!(s.consecutive_failures, 2);
    }

    #[test]
    fn unknown_goes_down_on_first_failure() {
        let mut s = CheckState::default();
        s.record(fail(), Duration::ZERO, SystemTime::now(), T);
        assert_eq!(s.status, Status::Down);
        assert!(!s.ever_up);
    }
}
