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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
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

/// All cached health state of one berth.
pub struct Health {
    pub checks: Vec<CheckCell>,
    /// Indices (into `checks`) of the startup gate.
    wait_for: Vec<usize>,
    started: AtomicBool,
    draining: AtomicBool,
    created: Instant,
    /// Bumped on every status change, gate pass and drain start, so waiters
    /// (`berth wait`, the drain's `waitUntilDown`) sleep instead of polling.
    changes: watch::Sender<u64>,
    draining_tx: watch::Sender<bool>,
}

impl Health {
    pub fn new(config: &Config) -> Health {
        let checks: Vec<CheckCell> = config.checks.iter().map(CheckCell::new).collect();
        let wait_for: Vec<usize> = config
            .startup_wait_for
            .iter()
            .filter_map(|n| checks.iter().position(|c| &c.name == n))
            .collect();
        let started = wait_for.is_empty();
        if started {
            tracing::info!("startup gate passed (no checks to wait for)");
        }
        Health {
            checks,
            wait_for,
            started: AtomicBool::new(started),
            draining: AtomicBool::new(false),
            created: Instant::now(),
            changes: watch::channel(0).0,
            draining_tx: watch::channel(false).0,
        }
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.checks.iter().position(|c| c.name == name)
    }

    pub fn snapshot(&self, idx: usize) -> CheckState {
        self.checks[idx].lock().clone()
    }

    pub fn status(&self, idx: usize) -> Status {
        self.checks[idx].lock().status
    }

    /// Records a check result, logs a state change (one line per change,
    /// never per probe) and re-evaluates the startup gate.
    pub fn record(&self, idx: usize, result: Result<(), CheckError>, latency: Duration) {
        let cell = &self.checks[idx];
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
            if !self.started.load(Ordering::Acquire)
                && self.wait_for.iter().all(|&i| self.checks[i].lock().ever_up)
            {
                self.started.store(true, Ordering::Release);
                tracing::info!(
                    elapsed_ms = self.created.elapsed().as_millis() as u64,
                    "startup gate passed"
                );
            }
            self.changes.send_modify(|n| *n += 1);
        }
    }

    pub fn beat(&self, idx: usize) {
        let ms = self.created.elapsed().as_millis() as u64;
        self.checks[idx].heartbeat_ms.store(ms, Ordering::Relaxed);
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
        self.checks
            .iter()
            .filter(|c| c.critical)
            .all(|c| c.lock().status == Status::Up)
    }

    /// kubert's rule: not ready before the startup gate, nor once draining.
    pub fn ready(&self) -> bool {
        self.started() && !self.draining() && self.critical_up()
    }

    /// Checker tasks have looped recently (a dead or wedged checker makes
    /// berth not live, so the kubelet restarts it). Dependencies play no part.
    pub fn live(&self) -> bool {
        let now_ms = self.created.elapsed().as_millis() as u64;
        self.checks.iter().all(|c| {
            let age = now_ms.saturating_sub(c.heartbeat_ms.load(Ordering::Relaxed));
            Duration::from_millis(age) <= c.stale_after
        })
    }

    pub fn overall(&self) -> Overall {
        let mut degraded = false;
        for c in &self.checks {
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
    pub fn startup_pending(&self) -> Vec<usize> {
        self.wait_for
            .iter()
            .copied()
            .filter(|&i| !self.checks[i].lock().ever_up)
            .collect()
    }

    pub fn uptime(&self) -> Duration {
        self.created.elapsed()
    }
}

impl CheckCell {
    fn new(spec: &CheckSpec) -> CheckCell {
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
        }
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
