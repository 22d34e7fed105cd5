//! The prestop drain (sidecar/README.md, "Lifecycle").
//!
//! The main container's preStop hook calls `/api/v1/lifecycle/prestop`;
//! berth then (1) turns unready at once, (2) waits `drain.delay` so endpoint
//! controllers and load balancers stop sending traffic, (3) notifies the main
//! container, (4) optionally waits until it is idle, (5) answers 200.
//!
//! The drain runs in its own task, not in the request: kubelet never cancels
//! an HTTP preStop, but a client may disconnect, and a half-done drain must
//! not be abandoned. Later calls join the drain in progress and get the same
//! report. Everything is bounded by `drain.timeout`, measured from the first
//! call, so no call can outlive it whatever the main app or the network do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Empty;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Notify;
use crate::procs;
use crate::state::Status;
use crate::App;

/// How often signalled processes are looked up while waiting for them to exit.
const EXIT_POLL: Duration = Duration::from_millis(50);

/// The JSON answer of the prestop endpoint.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DrainReport {
    /// `drained`, or `timeout` when `drain.timeout` cut the sequence short.
    pub status: &'static str,
    pub elapsed_ms: u64,
    pub notify: NotifyReport,
    /// Checks waited for to go down (and `process:NAME` when waiting for an exit).
    pub waited_for: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotifyReport {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Vec<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Undeliverable notifications: ESRCH/EPERM, no matching process, HTTP failure.
    pub errors: Vec<String>,
}

type ReportRx = watch::Receiver<Option<Arc<DrainReport>>>;

/// The one drain of this berth's life.
#[derive(Default)]
pub struct Drain {
    inner: Mutex<Option<(Instant, ReportRx)>>,
}

impl Drain {
    /// A drain was started and has not finished yet.
    pub fn in_progress(&self) -> bool {
        self.current()
            .map(|(_, rx)| rx.borrow().is_none())
            .unwrap_or(false)
    }

    fn current(&self) -> Option<(Instant, ReportRx)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until a drain in progress (if any) has finished.
    pub async fn finished(&self) {
        if let Some((_, mut rx)) = self.current() {
            let _ = rx.wait_for(Option::is_some).await;
        }
    }

    /// Waits until a drain has been started (by a prestop call) and has
    /// finished. For a regular-container berth that cannot see the main
    /// process: the main container's preStop may arrive a moment after
    /// berth's own SIGTERM, and must still find berth serving.
    pub async fn completed(&self) {
        loop {
            if self.current().is_some() {
                return self.finished().await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Starts the drain, or joins the one in progress, and returns its report.
pub async fn prestop(app: &Arc<App>) -> Arc<DrainReport> {
    let timeout = app.config().drain.timeout;
    let (started, mut rx) = {
        let mut guard = app.drain.inner.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(existing) => existing.clone(),
            None => {
                let started = Instant::now();
                let (tx, rx) = watch::channel(None);
                // Readiness turns false before this request even yields.
                app.health.start_draining();
                tokio::spawn(drain_task(app.clone(), started, tx));
                *guard = Some((started, rx.clone()));
                (started, rx)
            }
        }
    };
    // The task enforces the deadline itself; this is the belt to its braces,
    // so that not even a bug in the task can hold the kubelet's hook.
    let hard_deadline = started + timeout + Duration::from_millis(100);
    let finished = match tokio::time::timeout_at(hard_deadline, rx.wait_for(Option::is_some)).await
    {
        Ok(Ok(report)) => report.clone(),
        _ => None,
    };
    finished.unwrap_or_else(|| fallback(app, started))
}

fn fallback(app: &App, started: Instant) -> Arc<DrainReport> {
    let mut notify = NotifyReport::planned(&app.config().drain.notify, &app.secrets());
    notify
        .errors
        .push("drain did not finish before drain.timeout".into());
    Arc::new(DrainReport {
        status: "timeout",
        elapsed_ms: started.elapsed().as_millis() as u64,
        notify,
        waited_for: Vec::new(),
    })
}

async fn drain_task(app: Arc<App>, started: Instant, tx: watch::Sender<Option<Arc<DrainReport>>>) {
    let config = app.config();
    let spec = &config.drain;
    let deadline = started + spec.timeout;
    tracing::info!(
        delay_ms = spec.delay.as_millis() as u64,
        timeout_ms = spec.timeout.as_millis() as u64,
        notify = spec.notify.kind(),
        "prestop: drain started"
    );
    let mut report = DrainReport {
        status: "timeout",
        elapsed_ms: 0,
        notify: NotifyReport::planned(&spec.notify, &app.secrets()),
        waited_for: spec.wait_until_down.clone(),
    };
    if let Notify::Signal {
        process,
        wait_for_exit: true,
        ..
    } = &spec.notify
    {
        report.waited_for.push(format!("process:{process}"));
    }
    let mut notified = false;
    let completed =
        tokio::time::timeout_at(deadline, sequence(&app, &mut report.notify, &mut notified))
            .await
            .is_ok();
    if !notified && !matches!(spec.notify, Notify::None) {
        let e = "notification did not complete before drain.timeout".to_string();
        tracing::warn!(notify = spec.notify.kind(), error = %e, "prestop: notify failed");
        report.notify.errors.push(e);
    }
    report.status = if completed { "drained" } else { "timeout" };
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        status = report.status,
        elapsed_ms = report.elapsed_ms,
        "prestop: drain finished"
    );
    tx.send_replace(Some(Arc::new(report)));
}

/// Steps 2–4 of the drain. Cancelled (dropped) at `drain.timeout`.
async fn sequence(app: &Arc<App>, notify: &mut NotifyReport, notified: &mut bool) {
    let config = app.config();
    let spec = &config.drain;
    tokio::time::sleep(spec.delay).await;

    let mut signalled = Vec::new();
    match &spec.notify {
        Notify::None => {}
        Notify::Signal {
            process, signal, ..
        } => {
            let pids = procs::find_by_name(process);
            if pids.is_empty() {
                let e = format!("no process named {process}");
                tracing::warn!(notify = "signal", process = %process, error = %e, "prestop: notify failed");
                notify.errors.push(e);
            }
            for &pid in &pids {
                match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), *signal) {
                    Ok(()) => {
                        tracing::info!(notify = "signal", process = %process, pid, signal = %signal, "prestop: signalled the main process");
                        signalled.push(pid);
                    }
                    Err(errno) => {
                        let e = format!("{signal} to pid {pid} ({process}): {errno}");
                        tracing::warn!(notify = "signal", process = %process, pid, error = %e, "prestop: notify failed");
                        notify.errors.push(e);
                    }
                }
            }
            notify.pids = Some(pids);
        }
        Notify::Http { url } => {
            let shown = app.secrets().scrub(&url.to_string());
            let req = http::Request::post(url.clone())
                .header(
                    http::header::USER_AGENT,
                    concat!("berth/", env!("CARGO_PKG_VERSION")),
                )
                .body(Empty::new());
            match req {
                Ok(req) => match app.http.request(req).await {
                    Ok(resp) if resp.status().is_success() => {
                        notify.http_status = Some(resp.status().as_u16());
                        tracing::info!(notify = "http", url = %shown, status = resp.status().as_u16(), "prestop: notified the main container");
                    }
                    Ok(resp) => {
                        notify.http_status = Some(resp.status().as_u16());
                        let e = format!("POST {shown}: HTTP {}", resp.status().as_u16());
                        tracing::warn!(notify = "http", error = %e, "prestop: notify failed");
                        notify.errors.push(e);
                    }
                    Err(err) => {
                        let e =
                            format!("POST {shown}: {}", app.secrets().scrub(&error_chain(&err)));
                        tracing::warn!(notify = "http", error = %e, "prestop: notify failed");
                        notify.errors.push(e);
                    }
                },
                Err(_) => notify.errors.push(format!("POST {shown}: bad request")),
            }
        }
    }
    *notified = true;

    // Step 4: wait until the main app is idle.
    let idxs: Vec<usize> = spec
        .wait_until_down
        .iter()
        .filter_map(|n| app.health.index_of(n))
        .collect();
    if !idxs.is_empty() {
        let mut changes = app.health.subscribe_changes();
        loop {
            if idxs.iter().all(|&i| app.health.status(i) == Status::Down) {
                break;
            }
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
    if let Notify::Signal {
        wait_for_exit: true,
        ..
    } = &spec.notify
    {
        while signalled.iter().any(|&pid| procs::is_alive(pid)) {
            tokio::time::sleep(EXIT_POLL).await;
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

impl NotifyReport {
    fn planned(notify: &Notify, secrets: &crate::redact::Secrets) -> NotifyReport {
        let mut r = NotifyReport {
            kind: notify.kind(),
            process: None,
            signal: None,
            pids: None,
            url: None,
            http_status: None,
            errors: Vec::new(),
        };
        match notify {
            Notify::None => {}
            Notify::Signal {
                process, signal, ..
            } => {
                r.process = Some(process.clone());
                r.signal = Some(signal.as_str().to_string());
                r.pids = Some(Vec::new());
            }
            Notify::Http { url } => r.url = Some(secrets.scrub(&url.to_string())),
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(yaml: &str) -> Arc<App> {
        App::new(crate::config::parse(yaml, &|_| None).expect("config"))
    }

    /// Delay, then report; readiness false from the first instant.
    #[tokio::test(start_paused = true)]
    async fn prestop_waits_the_delay_and_unreadies_at_once() {
        let app = app("drain:\n  delay: 5s\n  timeout: 20s\n  notify: {type: none}\n");
        assert!(app.health.ready());
        let t0 = Instant::now();
        let call = tokio::spawn({
            let app = app.clone();
            async move { prestop(&app).await }
        });
        tokio::task::yield_now().await;
        assert!(app.health.draining() && !app.health.ready());
        assert!(app.drain.in_progress());
        let report = call.await.expect("join");
        assert_eq!(t0.elapsed(), Duration::from_secs(5));
        assert_eq!(report.status, "drained");
        assert_eq!(report.elapsed_ms, 5000);
        assert_eq!(report.notify.kind, "none");
        assert!(!app.drain.in_progress());
    }

    /// A second call joins: same report, returns at the same instant.
    #[tokio::test(start_paused = true)]
    async fn second_call_joins_the_drain_in_progress() {
        let app = app("drain:\n  delay: 4s\n  timeout: 20s\n");
        let t0 = Instant::now();
        let first = tokio::spawn({
            let app = app.clone();
            async move { (prestop(&app).await, Instant::now()) }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let second = tokio::spawn({
            let app = app.clone();
            async move { (prestop(&app).await, Instant::now()) }
        });
        let (r1, at1) = first.await.expect("first");
        let (r2, at2) = second.await.expect("second");
        assert_eq!(r1, r2);
        assert_eq!(at1, at2);
        assert_eq!(at1 - t0, Duration::from_secs(4));
    }

    /// A check that never goes down cannot hold the call past drain.timeout.
    #[tokio::test(start_paused = true)]
    async fn timeout_bounds_the_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alive");
        std::fs::write(&path, "x").expect("write");
        let app = app(&format!(
            "checks:\n  - {{name: app, type: file, path: {:?}, interval: 1s, timeout: 500ms}}\n\
             drain:\n  delay: 1s\n  timeout: 7s\n  waitUntilDown: [app]\n",
            path.display().to_string()
        ));
        let t0 = Instant::now();
        let report = prestop(&app).await;
        assert_eq!(report.status, "timeout");
        assert_eq!(t0.elapsed(), Duration::from_secs(7));
        assert_eq!(report.waited_for, vec!["app".to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn signal_to_nobody_is_an_error_not_a_hang() {
        let app = app("drain:\n  delay: 100ms\n  timeout: 5s\n  \
             notify: {type: signal, process: no-such-process-xyz, signal: SIGUSR1}\n");
        let report = prestop(&app).await;
        assert_eq!(report.status, "drained");
        assert_eq!(report.notify.signal.as_deref(), Some("SIGUSR1"));
        assert_eq!(report.notify.pids, Some(vec![]));
        assert_eq!(
            report.notify.errors,
            vec!["no process named no-such-process-xyz".to_string()]
        );
    }
}
