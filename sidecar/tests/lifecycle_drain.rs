//! Black-box tests of berth's drain sequence (sidecar/README.md "Lifecycle": the
//! prestop JSON and the notify rules): a real `berth` binary, real
//! stand-in main containers (copies of bash/sleep with unique names in this
//! test's PID namespace, as in a pod with a shared PID namespace), real
//! signals and real HTTP.
//!
//! Tests named `serial_*` assert timing and run alone. Timing rules: "after
//! the delay" is asserted strictly (wall clock of the signalled process vs
//! the moment the prestop request was sent); "before X" gets ≥ 1–2 s slack,
//! because the machine is a loaded 2-core box.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reqwest::Method;
use support::*;

/// Room for a loaded machine on every "before X" bound.
const SLACK: Duration = Duration::from_secs(2);

fn process_check(check: &str, command: &str) -> String {
    format!(
        "  - {{name: {check}, type: process, command: \"{command}\", interval: 300ms, \
         timeout: 200ms, failureThreshold: 1, successThreshold: 1}}\n"
    )
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Native,
    Regular,
}

impl Mode {
    fn yaml(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Regular => "regular",
        }
    }
}

/// Replays kubelet's termination of a pod {main container, berth}:
///
/// - native sidecar: main preStop (httpGet prestop) → SIGTERM main → wait for
///   main to exit → SIGTERM berth → SIGKILL whatever outlives the grace period;
/// - regular container: berth has no preStop hook, so it gets SIGTERM at
///   once, in parallel with the main container's preStop → SIGTERM main →
///   SIGKILL whatever outlives the grace period.
///
/// berth is configured with `notify: signal` to the main process and
/// `waitUntilDown: [app]` (a process check on it), so the prestop call must
/// return only once the main process is gone.
async fn kubelet_terminates_pod(mode: Mode) {
    const D: Duration = Duration::from_secs(3);
    const APP_DRAIN: Duration = Duration::from_millis(1500);
    const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
    // The chart's rule: terminationGracePeriodSeconds ≥ delay + timeout + 5s.
    let grace = D + DRAIN_TIMEOUT + Duration::from_secs(5);

    let events = Events::new();
    let dir = world_readable_tempdir();
    let name = unique_name("bapp");
    let app = MainApp::spawn(dir.path(), &name, OnTerm::DrainThenExit(APP_DRAIN));
    let berth = Berth::start(&format!(
        "mode: {mode}\nchecks:\n{check}startup:\n  waitFor: [app]\ndrain:\n  delay: {d}\n  \
         timeout: {t}\n  notify: {{type: signal, process: \"{name}\", signal: SIGTERM}}\n  \
         waitUntilDown: [app]\n",
        mode = mode.yaml(),
        check = process_check("app", &name),
        d = dur(D),
        t = dur(DRAIN_TIMEOUT),
    ));
    berth.wait_ready(Duration::from_secs(30)).await;
    events.record("berth ready: pod in service");

    let stop = Arc::new(AtomicBool::new(false));
    let prober = spawn_prober(events.clone(), berth.url(""), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // ---- kubelet: termination starts
    let t0_wall = epoch_now();
    let t0 = events.record("kubelet: termination starts");
    let deadline = Instant::now() + grace;
    if mode == Mode::Regular {
        berth.proc.signal(Signal::SIGTERM);
        events.record("kubelet: SIGTERM -> berth (regular container, no preStop)");
    }
    let prestop = call_prestop(
        events.clone(),
        berth.url(""),
        Method::GET,
        "kubelet: main preStop httpGet prestop",
        grace,
    )
    .await;
    // One more probe round after the return, then stop observing.
    tokio::time::sleep(Duration::from_millis(250)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let probes = prober.await.expect("prober task");

    if app.proc.is_running() {
        app.proc.signal(Signal::SIGTERM);
        events.record("kubelet: SIGTERM -> main container");
    } else {
        events.record("kubelet: main container already exited");
    }
    let app_exit = app
        .proc
        .wait_exit(deadline.saturating_duration_since(Instant::now()))
        .await;
    if app_exit.is_none() {
        app.proc.signal(Signal::SIGKILL);
        events.record("kubelet: grace period over: SIGKILL -> main container");
    }

    let berth_exit = match mode {
        Mode::Native => {
            assert!(
                berth.proc.is_running(),
                "a native sidecar must outlive the main container until its own SIGTERM\n{}",
                events.dump()
            );
            berth.proc.signal(Signal::SIGTERM);
            let sent = events.record("kubelet: main exited: SIGTERM -> berth (native sidecar)");
            let exit = berth.proc.wait_exit(Duration::from_secs(2) + SLACK).await;
            if let Some(e) = exit {
                let at = events.record_at(
                    events.offset_of(e.at),
                    format!("berth exited: {:?}", e.status),
                );
                assert!(
                    at - sent <= Duration::from_secs(2) + SLACK,
                    "native berth must exit within 2 s of SIGTERM"
                );
            }
            exit
        }
        Mode::Regular => {
            let exit = berth
                .proc
                .wait_exit(deadline.saturating_duration_since(Instant::now()))
                .await;
            if let Some(e) = exit {
                events.record_at(
                    events.offset_of(e.at),
                    format!("berth exited: {:?}", e.status),
                );
            }
            exit
        }
    };
    if let Some(e) = app_exit {
        events.record_at(
            events.offset_of(e.at),
            format!("main container reaped: {:?}", e.status),
        );
    }
    for (i, t) in app.terms().iter().enumerate() {
        events.record_at(
            events.offset_of_wall(*t),
            format!("main got SIGTERM #{}", i + 1),
        );
    }
    if let Some(t) = app.exit_wall() {
        events.record_at(events.offset_of_wall(t), "main finished its drain, exiting");
    }
    eprintln!("event log ({mode:?}):\n{}", events.dump());

    // ---- the prestop response
    assert_prestop_shape(&prestop, "signal");
    assert_eq!(prestop.drain_status(), "drained", "{}", prestop.raw);
    assert!(
        prestop.notify_errors().is_empty(),
        "notify errors: {}",
        prestop.raw
    );
    assert!(
        prestop.body["waited_for"].to_string().contains("app"),
        "waited_for should name the check waited for: {}",
        prestop.raw
    );

    // ---- /ready 503 before the delay elapsed; /live 200 throughout
    let first_unready = probes
        .iter()
        .find(|p| p.at > t0 && p.ready == 503)
        .unwrap_or_else(|| panic!("/ready never answered 503 during the drain: {probes:?}"));
    assert!(
        first_unready.at < t0 + D,
        "/ready must be 503 before drain.delay elapses (first 503 at {:?} after start, delay {D:?})",
        first_unready.at - t0
    );
    // berth must serve until the prestop call returned; a regular-container
    // berth may start to stop as soon as the main process is gone (its
    // listener closes while the last probe round is in flight).
    let serving_until = match (mode, app.exit_wall()) {
        (Mode::Regular, Some(gone)) => prestop.returned.min(events.offset_of_wall(gone)),
        _ => prestop.returned,
    };
    for p in probes.iter().filter(|p| p.at < serving_until) {
        if p.at < t0 {
            assert_eq!(
                (p.ready, p.live),
                (200, 200),
                "in service before termination"
            );
        } else {
            assert_eq!(p.live, 200, "/live must stay 200 while draining: {p:?}");
        }
    }

    // ---- notify: strictly after the delay, once, before prestop returned
    let terms = app.terms();
    let first_term = *terms
        .first()
        .unwrap_or_else(|| panic!("the main process never got SIGTERM"));
    assert!(
        first_term - t0_wall >= D.as_secs_f64(),
        "notify must come after drain.delay: SIGTERM {:.3}s after the prestop call, delay {D:?}",
        first_term - t0_wall
    );
    assert!(
        first_term - t0_wall <= (D + SLACK).as_secs_f64(),
        "notify should follow the delay promptly: {:.3}s",
        first_term - t0_wall
    );
    assert!(
        first_unready.at < events.offset_of_wall(first_term),
        "/ready must be 503 before the main process is told to stop"
    );
    assert_eq!(
        terms
            .iter()
            .filter(|t| **t <= prestop.returned_wall)
            .count(),
        1,
        "berth notifies the main process exactly once: {terms:?}"
    );

    // ---- prestop returns only after the main process is gone
    let app_exit_wall = app
        .exit_wall()
        .unwrap_or_else(|| panic!("main process never finished its drain"));
    assert!(
        app_exit_wall <= prestop.returned_wall,
        "prestop returned {:.3}s before the main process exited (waitUntilDown: [app])",
        app_exit_wall - prestop.returned_wall
    );
    assert!(
        prestop.took() <= D + APP_DRAIN + SLACK + Duration::from_secs(1),
        "prestop should return soon after the main process is gone, took {:?}",
        prestop.took()
    );
    let app_exit = app_exit.expect("main container exited within the grace period");
    assert_eq!(app_exit.code(), Some(0), "main drained and exited 0");

    // ---- berth's own exit matches its mode
    let berth_exit = berth_exit.unwrap_or_else(|| {
        panic!(
            "berth ({mode:?}) did not exit within the grace period\n{}",
            berth.log()
        )
    });
    assert_eq!(
        berth_exit.code(),
        Some(0),
        "berth ({mode:?}) must exit 0: {:?}",
        berth_exit.status
    );
    if mode == Mode::Regular {
        let berth_exit_at = events.offset_of(berth_exit.at);
        let app_gone_at = events.offset_of_wall(app_exit_wall);
        // 20 ms: conversion between the wall clock and the monotonic clock.
        assert!(
            berth_exit_at + Duration::from_millis(20) >= app_gone_at,
            "a regular-container berth must keep serving until the main process is gone"
        );
        assert!(
            berth_exit_at <= app_gone_at + SLACK + Duration::from_secs(1),
            "a regular-container berth should exit soon after the main process is gone \
             (exited {:?} after it)",
            berth_exit_at.saturating_sub(app_gone_at)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_kubelet_sequence_native_sidecar() {
    kubelet_terminates_pod(Mode::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_kubelet_sequence_regular_container() {
    kubelet_terminates_pod(Mode::Regular).await;
}

/// `notify: none`, no `waitUntilDown`: the prestop call is just "unready,
/// wait D, return"; kubelet's own SIGTERM stops the main process afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_prestop_without_wait_returns_after_delay() {
    const D: Duration = Duration::from_secs(2);
    let events = Events::new();
    let dir = world_readable_tempdir();
    let name = unique_name("bapp");
    let app = MainApp::spawn(dir.path(), &name, OnTerm::LogAndIgnore);
    let berth = Berth::start(&format!(
        "checks:\n{}drain:\n  delay: {}\n  timeout: 20s\n  notify: {{type: none}}\n",
        process_check("app", &name),
        dur(D)
    ));
    berth.wait_ready(Duration::from_secs(30)).await;
    let p = call_prestop(
        events.clone(),
        berth.url(""),
        Method::POST,
        "prestop",
        Duration::from_secs(30),
    )
    .await;
    assert_prestop_shape(&p, "none");
    assert_eq!(p.drain_status(), "drained", "{}", p.raw);
    assert!(p.took() >= D, "returned before drain.delay: {:?}", p.took());
    assert!(
        p.took() <= D + SLACK,
        "nothing to wait for after the delay, yet took {:?}",
        p.took()
    );
    let elapsed_ms = p.body["elapsed_ms"].as_u64().unwrap_or(0);
    assert!(
        elapsed_ms >= D.as_millis() as u64 && elapsed_ms <= p.took().as_millis() as u64 + 50,
        "elapsed_ms {elapsed_ms} vs measured {:?}",
        p.took()
    );
    assert!(
        app.terms().is_empty(),
        "notify: none must not signal anything"
    );
    assert!(app.proc.is_running());
    // Still draining after the call: the pod must not come back into service.
    assert_eq!(status_of(&berth.url("/api/v1/health/ready")).await, 503);
    assert_eq!(status_of(&berth.url("/api/v1/health/live")).await, 200);
}

/// A second prestop call while a drain runs joins it: it returns with the
/// first, and the main process is notified once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_prestop_second_call_joins_drain() {
    const D: Duration = Duration::from_secs(4);
    let events = Events::new();
    let dir = world_readable_tempdir();
    let name = unique_name("bapp");
    let app = MainApp::spawn(dir.path(), &name, OnTerm::LogAndIgnore);
    let berth = Berth::start(&format!(
        "checks:\n{}drain:\n  delay: {}\n  timeout: 20s\n  \
         notify: {{type: signal, process: \"{name}\", signal: SIGTERM}}\n",
        process_check("app", &name),
        dur(D)
    ));
    berth.wait_ready(Duration::from_secs(30)).await;
    let first = tokio::spawn(call_prestop(
        events.clone(),
        berth.url(""),
        Method::POST,
        "prestop #1",
        Duration::from_secs(30),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = tokio::spawn(call_prestop(
        events.clone(),
        berth.url(""),
        Method::GET,
        "prestop #2",
        Duration::from_secs(30),
    ));
    let first = first.await.expect("task");
    let second = second.await.expect("task");
    eprintln!("{}", events.dump());
    assert_prestop_shape(&first, "signal");
    assert_prestop_shape(&second, "signal");
    assert_eq!(first.drain_status(), "drained", "{}", first.raw);
    assert_eq!(second.drain_status(), "drained", "{}", second.raw);
    assert!(first.took() >= D, "first call returned before the delay");
    // Joining: #2 (sent 2 s later) returns with #1. A second, independent
    // drain would return a full delay after it was sent, ~2 s after #1.
    let apart = first.returned.abs_diff(second.returned);
    assert!(
        apart < Duration::from_secs(1),
        "the second call must return with the drain in progress; returns {apart:?} apart"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.terms().len(),
        1,
        "the main process must be notified once, not once per call"
    );
}

/// `waitUntilDown` on a check that never goes down: the call returns at
/// `drain.timeout` with status "timeout" (kubelet never cancels an HTTP
/// preStop, so berth must bound it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_prestop_returns_at_drain_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(3);
    let events = Events::new();
    let dep = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dep_addr = dep.local_addr().expect("addr");
    let berth = Berth::start(&format!(
        "checks:\n  - {{name: dep, type: tcp, address: \"{dep_addr}\", interval: 300ms, \
         timeout: 200ms, failureThreshold: 1}}\n\
         drain:\n  delay: 500ms\n  timeout: {}\n  notify: {{type: none}}\n  waitUntilDown: [dep]\n",
        dur(TIMEOUT)
    ));
    berth.wait_ready(Duration::from_secs(30)).await;
    let p = call_prestop(
        events.clone(),
        berth.url(""),
        Method::POST,
        "prestop",
        Duration::from_secs(60),
    )
    .await;
    assert_prestop_shape(&p, "none");
    assert_eq!(p.drain_status(), "timeout", "{}", p.raw);
    assert!(
        p.took() <= TIMEOUT + SLACK,
        "prestop must return by drain.timeout ({TIMEOUT:?}), took {:?}",
        p.took()
    );
    assert!(
        p.took() + Duration::from_secs(1) >= TIMEOUT,
        "prestop gave up long before drain.timeout while the check was still up: {:?}",
        p.took()
    );
    let elapsed_ms = p.body["elapsed_ms"].as_u64().unwrap_or(0);
    assert!(
        (2000..=TIMEOUT.as_millis() as u64 + 2000).contains(&elapsed_ms),
        "elapsed_ms {elapsed_ms}"
    );
    assert!(
        p.body["waited_for"].to_string().contains("dep"),
        "waited_for: {}",
        p.raw
    );
    drop(dep);
}

/// An `http` notify whose server accepts and never answers must not hold
/// the prestop call past `drain.timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_prestop_bounded_when_http_notify_hangs() {
    const TIMEOUT: Duration = Duration::from_secs(3);
    let events = Events::new();
    let black_hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole_addr = black_hole.local_addr().expect("addr");
    let held = Arc::new(Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for conn in black_hole.incoming().flatten() {
                held.lock().expect("lock").push(conn); // accept, never answer
            }
        });
    }
    let berth = Berth::start(&format!(
        "drain:\n  delay: 200ms\n  timeout: {}\n  \
         notify: {{type: http, url: \"http://{hole_addr}/drain\"}}\n",
        dur(TIMEOUT)
    ));
    let p = call_prestop(
        events.clone(),
        berth.url(""),
        Method::POST,
        "prestop",
        Duration::from_secs(60),
    )
    .await;
    assert_prestop_shape(&p, "http");
    assert!(
        p.took() <= TIMEOUT + SLACK,
        "prestop must return by drain.timeout although the notify URL hangs, took {:?}",
        p.took()
    );
    assert!(
        p.drain_status() == "timeout" || !p.notify_errors().is_empty(),
        "a hung notify must show as status timeout or a notify error: {}",
        p.raw
    );
    assert!(
        !held.lock().expect("lock").is_empty(),
        "berth never even connected to the notify URL"
    );
}

/// `notify: http`: berth POSTs the app's drain URL after the delay, then
/// waits until the app's http check goes down (the app reports idle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_prestop_http_notify_then_waits_for_idle() {
    use axum::routing::{any, get};
    const D: Duration = Duration::from_secs(2);
    const APP_DRAIN: Duration = Duration::from_millis(1500);

    #[derive(Default)]
    struct App {
        notified: Vec<(f64, String)>,
        down_since: Option<f64>,
    }
    let state = Arc::new(Mutex::new(App::default()));
    let router = axum::Router::new()
        .route(
            "/healthz",
            get({
                let state = state.clone();
                move || async move {
                    if state.lock().expect("lock").down_since.is_some() {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            }),
        )
        .route(
            "/drain",
            any({
                let state = state.clone();
                move |method: axum::http::Method| async move {
                    state
                        .lock()
                        .expect("lock")
                        .notified
                        .push((epoch_now(), method.to_string()));
                    let state = state.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(APP_DRAIN).await;
                        state
                            .lock()
                            .expect("lock")
                            .down_since
                            .get_or_insert(epoch_now());
                    });
                    axum::http::StatusCode::ACCEPTED
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let app_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });

    let events = Events::new();
    let berth = Berth::start(&format!(
        "checks:\n  - {{name: app, type: http, url: \"http://{app_addr}/healthz\", interval: 300ms, \
         timeout: 250ms, failureThreshold: 1}}\n\
         drain:\n  delay: {}\n  timeout: 20s\n  notify: {{type: http, url: \"http://{app_addr}/drain\"}}\n  \
         waitUntilDown: [app]\n",
        dur(D)
    ));
    berth.wait_ready(Duration::from_secs(30)).await;
    let p = call_prestop(
        events.clone(),
        berth.url(""),
        Method::GET,
        "prestop",
        Duration::from_secs(60),
    )
    .await;
    let app = state.lock().expect("lock");
    eprintln!(
        "notified: {:?}, down since {:?}",
        app.notified, app.down_since
    );
    assert_prestop_shape(&p, "http");
    assert_eq!(p.drain_status(), "drained", "{}", p.raw);
    assert!(p.notify_errors().is_empty(), "{}", p.raw);
    assert_eq!(app.notified.len(), 1, "the drain URL is called once");
    let (notified_at, method) = &app.notified[0];
    assert_eq!(
        method, "POST",
        "contract: http notify POSTs the app's drain URL"
    );
    assert!(
        notified_at - p.sent_wall >= D.as_secs_f64(),
        "notify must come after drain.delay ({:.3}s after the call)",
        notified_at - p.sent_wall
    );
    let down = app.down_since.expect("app went idle");
    assert!(
        p.returned_wall >= down,
        "prestop returned before the app's http check went down"
    );
    assert!(
        p.took() <= D + APP_DRAIN + SLACK + Duration::from_secs(1),
        "took {:?}",
        p.took()
    );
}

/// `notify: signal` reaches every process named NAME in the PID namespace,
/// with the configured signal, and nothing else — not even berth when its
/// own executable carries that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prestop_signal_notify_reaches_every_named_process_but_not_berth() {
    let events = Events::new();
    let dirs: Vec<_> = (0..3).map(|_| world_readable_tempdir()).collect();
    let name = unique_name("bsig");
    let target1 = spawn_named_sleep(dirs[0].path(), &name);
    let target2 = spawn_named_sleep(dirs[1].path(), &name);
    let bystander_name = unique_name("bbys");
    let bystander = spawn_named_sleep(dirs[0].path(), &bystander_name);
    // berth itself runs from an executable named like the target.
    let berth_exe = copy_exe(berth_bin(), dirs[2].path(), &name);
    let berth = Berth::start_with(
        &format!(
            // native: a SIGTERM that berth sent itself would end it at once.
            "mode: native\nchecks:\n{}drain:\n  delay: 100ms\n  timeout: 10s\n  \
             notify: {{type: signal, process: \"{name}\", signal: SIGTERM}}\n",
            process_check("bystander", &bystander_name)
        ),
        BerthOpts {
            exe: Some(berth_exe),
            ..Default::default()
        },
    );
    berth.wait_ready(Duration::from_secs(30)).await;
    let p = call_prestop(
        events.clone(),
        berth.url(""),
        Method::POST,
        "prestop",
        Duration::from_secs(30),
    )
    .await;
    assert_prestop_shape(&p, "signal");
    assert_eq!(p.drain_status(), "drained", "{}", p.raw);
    assert!(p.notify_errors().is_empty(), "{}", p.raw);
    for t in [&target1, &target2] {
        let exit = t
            .wait_exit(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{} ({}) was not signalled", t.label, t.pid));
        assert_eq!(
            exit.signal(),
            Some(Signal::SIGTERM as i32),
            "{} must die of SIGTERM: {:?}",
            t.label,
            exit.status
        );
    }
    // Long enough for a native berth to act on a SIGTERM (it exits within 1-2 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        bystander.is_running(),
        "a process with another name was hit"
    );
    assert!(
        berth.proc.is_running(),
        "berth signalled itself (it must skip its own pid): {:?}",
        berth.proc.exited()
    );
    assert_eq!(status_of(&berth.url("/api/v1/health/live")).await, 200);
}

/// EPERM: berth (as `nobody`) cannot signal a root-owned process. The error
/// is in `notify.errors` and in the log, never silently dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prestop_reports_and_logs_eperm() {
    if !is_root() {
        eprintln!("NOTE: skipped: needs root to run berth as another user (EPERM path)");
        return;
    }
    let events = Events::new();
    let dir = world_readable_tempdir();
    let name = unique_name("bprm");
    let target = spawn_named_sleep(dir.path(), &name); // owned by root
    let berth = Berth::start_with(
        &format!(
            "drain:\n  delay: 100ms\n  timeout: 10s\n  \
             notify: {{type: signal, process: \"{name}\", signal: SIGTERM}}\n"
        ),
        BerthOpts {
            as_uid: Some(65534),
            ..Default::default()
        },
    );
    let owner = std::fs::read_to_string(format!("/proc/{}/status", berth.proc.pid))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        owner.contains("65534"),
        "berth should run as nobody: {owner}"
    );
    let p = call_prestop(
        events.clone(),
        berth.url(""),
        Method::POST,
        "prestop",
        Duration::from_secs(30),
    )
    .await;
    assert_prestop_shape(&p, "signal");
    let errors = p.notify_errors();
    assert!(
        errors.iter().any(|e| {
            let e = e.to_lowercase();
            e.contains("eperm") || e.contains("permi")
        }),
        "notify.errors must report EPERM: {}",
        p.raw
    );
    assert!(
        target.is_running(),
        "the root-owned process cannot have been signalled"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logged = berth
        .log()
        .lines()
        .filter(|l| {
            let l = l.to_lowercase();
            (l.contains("warn") || l.contains("error"))
                && (l.contains("eperm") || l.contains("permi"))
        })
        .count();
    assert!(
        logged > 0,
        "the EPERM must be logged at warn/error level; log:\n{}",
        berth.log()
    );
}

/// No process with the configured name: reported and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prestop_reports_and_logs_missing_notify_process() {
    let events = Events::new();
    let name = unique_name("bnone");
    let berth = Berth::start(&format!(
        "drain:\n  delay: 100ms\n  timeout: 10s\n  \
         notify: {{type: signal, process: \"{name}\", signal: SIGTERM}}\n"
    ));
    let p = call_prestop(
        events.clone(),
        berth.url(""),
        Method::POST,
        "prestop",
        Duration::from_secs(30),
    )
    .await;
    assert_prestop_shape(&p, "signal");
    assert_eq!(p.drain_status(), "drained", "{}", p.raw);
    let errors = p.notify_errors();
    assert!(
        errors.iter().any(|e| e.contains(&name)),
        "notify.errors must say no process named {name} was found: {}",
        p.raw
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !berth.warn_lines_mentioning(&name).is_empty(),
        "the missing notify target must be logged at warn/error level; log:\n{}",
        berth.log()
    );
}

/// `notify: http` to a URL nobody listens on: reported and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prestop_reports_and_logs_failed_http_notify() {
    let events = Events::new();
    let closed = berth_tests::free_port();
    let berth = Berth::start(&format!(
        "drain:\n  delay: 100ms\n  timeout: 10s\n  \
         notify: {{type: http, url: \"http://127.0.0.1:{closed}/drain\"}}\n"
    ));
    let p = call_prestop(
        events.clone(),
        berth.url(""),
        Method::POST,
        "prestop",
        Duration::from_secs(30),
    )
    .await;
    assert_prestop_shape(&p, "http");
    assert!(
        !p.notify_errors().is_empty(),
        "a refused notify POST must be in notify.errors: {}",
        p.raw
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !berth.warn_lines_mentioning("notify").is_empty(),
        "the failed notify must be logged at warn/error level; log:\n{}",
        berth.log()
    );
}

/// `drain.notify.signal` is the signal sent (here SIGINT), not always SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prestop_signal_notify_sends_the_configured_signal() {
    let events = Events::new();
    let dir = world_readable_tempdir();
    let name = unique_name("bint");
    let target = spawn_named_sleep(dir.path(), &name);
    let berth = Berth::start(&format!(
        "drain:\n  delay: 100ms\n  timeout: 10s\n  \
         notify: {{type: signal, process: \"{name}\", signal: SIGINT}}\n"
    ));
    let p = call_prestop(
        events.clone(),
        berth.url(""),
        Method::POST,
        "prestop",
        Duration::from_secs(30),
    )
    .await;
    assert_prestop_shape(&p, "signal");
    assert!(p.notify_errors().is_empty(), "{}", p.raw);
    let exit = target
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("{name} was not signalled"));
    assert_eq!(
        exit.signal(),
        Some(Signal::SIGINT as i32),
        "must die of the configured SIGINT: {:?}",
        exit.status
    );
}
