//! Black-box tests of berth's own process lifecycle (sidecar/README.md "Signals"): SIGTERM and
//! SIGINT in `mode: native` and `mode: regular`, the second signal, the
//! loopback-only shutdown endpoint, and the startup gate (`/health/startup`
//! and `berth wait`). Real processes, real signals, real sockets; the
//! PostgreSQL dependency is a private cluster from the test kit.
//!
//! Tests named `serial_*` assert timing and run alone; "before X" bounds get
//! ≥ 1–2 s of slack for a loaded 2-core machine.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reqwest::Method;
use support::*;

const SLACK: Duration = Duration::from_secs(2);

fn process_check(check: &str, command: &str) -> String {
    format!(
        "  - {{name: {check}, type: process, command: \"{command}\", interval: 300ms, \
         timeout: 200ms, failureThreshold: 1, successThreshold: 1}}\n"
    )
}

fn tcp_check(check: &str, addr: &str) -> String {
    format!(
        "  - {{name: {check}, type: tcp, address: \"{addr}\", interval: 300ms, \
         timeout: 200ms, failureThreshold: 1, successThreshold: 1}}\n"
    )
}

/// Opens a keep-alive HTTP/1.1 connection to berth and leaves it idle: a
/// native sidecar must not wait for idle clients when it stops.
fn idle_keepalive_connection(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to berth");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /api/v1/health/live HTTP/1.1\r\nHost: berth\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).expect("read response");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "live over keep-alive: {}",
        String::from_utf8_lossy(&buf[..n])
    );
    s
}

/// Native sidecar: SIGTERM (or SIGINT) arrives after the main container
/// exited: stop checkers, close connections, exit 0 within 2 s.
async fn native_signal_exits_quickly(sig: Signal) {
    let events = Events::new();
    let dep = TcpListener::bind("127.0.0.1:0").expect("bind");
    let berth = Berth::start(&format!(
        "mode: native\nchecks:\n{}drain:\n  delay: 5s\n  timeout: 30s\n",
        tcp_check("dep", &dep.local_addr().expect("addr").to_string())
    ));
    berth.wait_ready(Duration::from_secs(30)).await;
    let _idle = idle_keepalive_connection(berth.port);
    let sent = events.record(format!("{sig} -> berth (native)"));
    berth.proc.signal(sig);
    let exit = berth
        .proc
        .wait_exit(Duration::from_secs(2) + SLACK)
        .await
        .unwrap_or_else(|| {
            panic!(
                "native berth still running {:?} after {sig} (must exit within 2 s)",
                Duration::from_secs(2) + SLACK
            )
        });
    let at = events.record_at(
        events.offset_of(exit.at),
        format!("berth exited {:?}", exit.status),
    );
    assert_eq!(
        exit.code(),
        Some(0),
        "native berth exits 0 on {sig}: {:?}",
        exit.status
    );
    eprintln!("{sig}: exited after {:?}", at - sent);
    drop(dep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_sigterm_native_exits_0_within_2s() {
    native_signal_exits_quickly(Signal::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_sigint_native_exits_0_within_2s() {
    native_signal_exits_quickly(Signal::SIGINT).await;
}

/// Regular container: kubelet sends SIGTERM to berth and to the main
/// container at the same moment. berth turns unready at once and keeps
/// serving until the main process is gone, then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_sigterm_regular_serves_until_main_gone() {
    const APP_DRAIN: Duration = Duration::from_secs(3);
    let events = Events::new();
    let dir = world_readable_tempdir();
    let name = unique_name("bapp");
    let app = MainApp::spawn(dir.path(), &name, OnTerm::DrainThenExit(APP_DRAIN));
    let berth = Berth::start(&format!(
        "mode: regular\nchecks:\n{}drain:\n  delay: 1s\n  timeout: 20s\n  \
         notify: {{type: signal, process: \"{name}\", signal: SIGTERM}}\n  waitUntilDown: [app]\n",
        process_check("app", &name)
    ));
    berth.wait_ready(Duration::from_secs(30)).await;

    let t0 = events.record("kubelet: SIGTERM -> main and berth");
    app.proc.signal(Signal::SIGTERM);
    berth.proc.signal(Signal::SIGTERM);

    let unready_after = wait_status(
        &berth.url("/api/v1/health/ready"),
        503,
        Duration::from_secs(1) + SLACK,
    )
    .await;
    events.record(format!("/ready 503 ({unready_after:?} after SIGTERM)"));
    // Halfway through the main container's own drain berth still serves.
    let halfway = t0 + APP_DRAIN / 2;
    tokio::time::sleep(halfway.saturating_sub(events.now())).await;
    if app.proc.is_running() {
        assert!(
            berth.proc.is_running(),
            "berth (regular) exited while the main process was still running: {:?}",
            berth.proc.exited()
        );
        let (live, ready) = (
            status_of(&berth.url("/api/v1/health/live")).await,
            status_of(&berth.url("/api/v1/health/ready")).await,
        );
        if app.proc.is_running() {
            assert_eq!((live, ready), (200, 503), "mid-drain: live 200, ready 503");
            events.record("mid-drain: berth serving (live 200, ready 503)");
        }
    } else {
        eprintln!(
            "NOTE: machine too slow: the main app finished its drain before the mid-drain check"
        );
    }

    let app_exit = app
        .proc
        .wait_exit(APP_DRAIN + SLACK + SLACK)
        .await
        .expect("main app exits after its drain");
    events.record_at(events.offset_of(app_exit.at), "main process gone");
    let exit = berth
        .proc
        .wait_exit(SLACK + Duration::from_secs(2))
        .await
        .unwrap_or_else(|| panic!("berth (regular) did not exit after the main process was gone"));
    let at = events.record_at(
        events.offset_of(exit.at),
        format!("berth exited {:?}", exit.status),
    );
    eprintln!("{}", events.dump());
    let app_gone = events.offset_of_wall(app.exit_wall().expect("app wrote its exit time"));
    assert!(
        at + Duration::from_millis(20) >= app_gone,
        "berth exited before the main process was gone"
    );
    assert!(
        at > t0 + APP_DRAIN,
        "berth exited before the main app's drain ended"
    );
    assert_eq!(exit.code(), Some(0), "{:?}", exit.status);
}

/// Regular container whose main process never exits: berth keeps serving
/// until `drain.timeout`, then exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_sigterm_regular_bounded_by_drain_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(4);
    let events = Events::new();
    let dir = world_readable_tempdir();
    let name = unique_name("bapp");
    let app = MainApp::spawn(dir.path(), &name, OnTerm::LogAndIgnore);
    let berth = Berth::start(&format!(
        "mode: regular\nchecks:\n{}drain:\n  delay: 500ms\n  timeout: {}\n  \
         notify: {{type: signal, process: \"{name}\", signal: SIGTERM}}\n  waitUntilDown: [app]\n",
        process_check("app", &name),
        dur(TIMEOUT)
    ));
    berth.wait_ready(Duration::from_secs(30)).await;
    let t0 = events.record("kubelet: SIGTERM -> main and berth");
    app.proc.signal(Signal::SIGTERM);
    berth.proc.signal(Signal::SIGTERM);
    tokio::time::sleep(TIMEOUT / 2).await;
    assert!(
        berth.proc.is_running(),
        "berth (regular) must keep serving until drain.timeout: {:?}",
        berth.proc.exited()
    );
    assert_eq!(status_of(&berth.url("/api/v1/health/live")).await, 200);
    assert_eq!(status_of(&berth.url("/api/v1/health/ready")).await, 503);
    let exit = berth
        .proc
        .wait_exit(TIMEOUT + SLACK + Duration::from_secs(1))
        .await
        .unwrap_or_else(|| panic!("berth (regular) outlived drain.timeout ({TIMEOUT:?}) by far"));
    let at = events.record_at(
        events.offset_of(exit.at),
        format!("berth exited {:?}", exit.status),
    );
    eprintln!("{}", events.dump());
    assert!(
        at - t0 + Duration::from_millis(500) >= TIMEOUT,
        "berth exited {:?} after SIGTERM, well before drain.timeout {TIMEOUT:?}",
        at - t0
    );
    assert!(
        at - t0 <= TIMEOUT + SLACK + Duration::from_millis(500),
        "berth exited {:?} after SIGTERM: drain.timeout is {TIMEOUT:?}",
        at - t0
    );
    assert!(
        app.proc.is_running(),
        "berth must not SIGKILL the main process"
    );
}

/// A second signal during the regular-mode drain exits at once.
async fn second_signal_exits_at_once(second: Signal) {
    let events = Events::new();
    let dir = world_readable_tempdir();
    let name = unique_name("bapp");
    let _app = MainApp::spawn(dir.path(), &name, OnTerm::LogAndIgnore);
    let berth = Berth::start(&format!(
        "mode: regular\nchecks:\n{}drain:\n  delay: 1s\n  timeout: 60s\n  \
         notify: {{type: signal, process: \"{name}\", signal: SIGTERM}}\n  waitUntilDown: [app]\n",
        process_check("app", &name)
    ));
    berth.wait_ready(Duration::from_secs(30)).await;
    events.record("SIGTERM -> berth");
    berth.proc.signal(Signal::SIGTERM);
    wait_status(&berth.url("/api/v1/health/ready"), 503, SLACK + SLACK).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        berth.proc.is_running(),
        "berth (regular) must drain after the first SIGTERM, not exit: {:?}",
        berth.proc.exited()
    );
    let sent = events.record(format!("{second} -> berth (second signal)"));
    berth.proc.signal(second);
    let exit = berth
        .proc
        .wait_exit(Duration::from_secs(1) + SLACK)
        .await
        .unwrap_or_else(|| panic!("a second signal ({second}) must exit at once"));
    let at = events.record_at(
        events.offset_of(exit.at),
        format!("berth exited {:?}", exit.status),
    );
    eprintln!("{}", events.dump());
    eprintln!("exited {:?} after the second signal", at - sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_second_sigterm_exits_at_once() {
    second_signal_exits_at_once(Signal::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_sigint_after_sigterm_exits_at_once() {
    second_signal_exits_at_once(Signal::SIGINT).await;
}

/// First non-loopback IPv4 address of this machine (`hostname -I`).
fn non_loopback_ipv4() -> Option<IpAddr> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|a| a.is_ipv4() && !a.is_loopback())
}

/// `POST /api/v1/lifecycle/shutdown`: 403 from a non-loopback peer (berth
/// keeps running), no shutdown on GET, and from loopback berth exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_loopback_only_and_exits_0() {
    let berth = Berth::start_with(
        "mode: native\ndrain:\n  delay: 5s\n  timeout: 30s\n",
        BerthOpts {
            host: Some("0.0.0.0".into()),
            ..Default::default()
        },
    );
    berth.wait_ready(Duration::from_secs(30)).await;
    let shutdown = "/api/v1/lifecycle/shutdown";

    match non_loopback_ipv4() {
        Some(ip) => {
            let url = format!("http://{ip}:{}{shutdown}", berth.port);
            let (status, body) = request(Method::POST, &url, Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("POST {url}: {e}"));
            assert_eq!(
                status, 403,
                "shutdown from {ip} (not loopback) must be 403: {body}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(
                berth.proc.is_running(),
                "berth exited on a non-loopback shutdown request"
            );
        }
        None => eprintln!(
            "NOTE: this machine has no non-loopback IPv4 address: the 403 assertion is skipped"
        ),
    }

    let (status, _) = request(Method::GET, &berth.url(shutdown), Duration::from_secs(10))
        .await
        .expect("GET shutdown");
    assert!(
        !(200..300).contains(&status),
        "shutdown is POST only; GET answered {status}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(berth.proc.is_running(), "a GET must not shut berth down");

    let res = request(Method::POST, &berth.url(shutdown), Duration::from_secs(10)).await;
    if let Ok((status, body)) = &res {
        assert!(
            (200..300).contains(status),
            "loopback shutdown answered {status}: {body}"
        );
    }
    let exit = berth
        .proc
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("berth still running after loopback shutdown ({res:?})"));
    assert_eq!(exit.code(), Some(0), "shutdown exits 0: {:?}", exit.status);
    assert!(
        res.is_ok(),
        "the shutdown call must get its answer before berth exits: {res:?}"
    );
}

/// `/api/v1/health/startup` holds (503) until the critical dependency
/// answers, then turns 200 and stays 200 when the dependency goes away
/// again (sticky), while `/ready` follows the dependency and `/live` never
/// depends on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_gate_holds_until_dependency_appears_then_sticks() {
    let port = berth_tests::free_port();
    let berth = Berth::start(&format!(
        "mode: native\nchecks:\n{}",
        tcp_check("dep", &format!("127.0.0.1:{port}"))
    ));
    let startup = berth.url("/api/v1/health/startup");
    let ready = berth.url("/api/v1/health/ready");
    let live = berth.url("/api/v1/health/live");
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(
            status_of(&startup).await,
            503,
            "startup before the dependency exists"
        );
        assert_eq!(
            status_of(&ready).await,
            503,
            "ready before the dependency exists"
        );
        assert_eq!(
            status_of(&live).await,
            200,
            "/live never depends on a dependency"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let dep = TcpListener::bind(("127.0.0.1", port)).expect("dependency appears");
    let took = wait_status(&startup, 200, Duration::from_secs(15)).await;
    eprintln!("startup 200 {took:?} after the dependency appeared");
    wait_status(&ready, 200, Duration::from_secs(15)).await;
    drop(dep);
    wait_status(&ready, 503, Duration::from_secs(15)).await;
    for _ in 0..5 {
        assert_eq!(
            status_of(&startup).await,
            200,
            "startup is sticky once passed, even with the dependency down"
        );
        assert_eq!(status_of(&live).await, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn write_config(dir: &std::path::Path, yaml: &str) -> PathBuf {
    let path = dir.join("berth.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

fn berth_wait(config: &std::path::Path, timeout: &str, log: &std::path::Path) -> Proc {
    let mut cmd = Command::new(berth_bin());
    cmd.arg("wait")
        .arg("--config")
        .arg(config)
        .arg("--timeout")
        .arg(timeout);
    spawn_logged("berth wait", cmd, log)
}

/// `berth wait` (one-shot init container) exits 0 once a PostgreSQL
/// dependency that appears only after a few seconds answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_wait_exits_0_once_postgres_answers() {
    let pg = berth_tests::Postgres::start();
    pg.stop();
    let dir = world_readable_tempdir();
    let config = write_config(
        dir.path(),
        &format!(
            "checks:\n  - {{name: db, type: postgres, url: \"{}\", interval: 500ms, timeout: 400ms}}\n",
            pg.url("postgres")
        ),
    );
    let log = dir.path().join("wait.log");
    let started = Instant::now();
    let wait = berth_wait(&config, "60s", &log);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        wait.is_running(),
        "berth wait must not pass before PostgreSQL is up: {:?}\n{}",
        wait.exited(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    pg.restart();
    let exit = wait
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| {
            panic!(
                "berth wait did not pass once PostgreSQL was up\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    assert_eq!(
        exit.code(),
        Some(0),
        "berth wait exits 0 once the gate passes: {:?}\n{}",
        exit.status,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(exit.at - started >= Duration::from_secs(3));
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !log_text.contains(&pg.password),
        "the database password leaked into berth wait's log"
    );
}

/// `berth wait` exits 1 once `--timeout` passes without the gate passing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_wait_exits_1_on_timeout() {
    let dir = world_readable_tempdir();
    let closed = berth_tests::free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "checks:\n{}",
            tcp_check("dep", &format!("127.0.0.1:{closed}"))
        ),
    );
    let log = dir.path().join("wait.log");
    let started = Instant::now();
    let wait = berth_wait(&config, "2s", &log);
    let exit = wait
        .wait_exit(Duration::from_secs(2) + SLACK + SLACK)
        .await
        .unwrap_or_else(|| panic!("berth wait --timeout 2s still running"));
    let took = exit.at - started;
    assert_eq!(
        exit.code(),
        Some(1),
        "berth wait exits 1 on timeout: {:?}\n{}",
        exit.status,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        took >= Duration::from_millis(1900),
        "berth wait gave up after {took:?}, before its 2 s timeout"
    );
}

/// Regular container whose main process berth cannot identify (no signal
/// notify, no process check: e.g. an `http` check on the app). kubelet sends
/// berth SIGTERM and runs the main container's preStop in parallel; when
/// the SIGTERM wins the race by a few ms, the preStop call must still be
/// served: the sidecar README ("Signals") says berth keeps serving until the main process is gone
/// or `drain.timeout` passes — it cannot see the former, so the latter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_sigterm_regular_unknown_main_still_serves_prestop() {
    const D: Duration = Duration::from_secs(2);
    const TIMEOUT: Duration = Duration::from_secs(6);
    let events = Events::new();
    let app = TcpListener::bind("127.0.0.1:0").expect("bind app port");
    let berth = Berth::start(&format!(
        "mode: regular\nchecks:\n{}drain:\n  delay: {}\n  timeout: {}\n  notify: {{type: none}}\n",
        tcp_check("app", &app.local_addr().expect("addr").to_string()),
        dur(D),
        dur(TIMEOUT)
    ));
    berth.wait_ready(Duration::from_secs(30)).await;
    let t0 = events.record("kubelet: SIGTERM -> berth (regular container)");
    berth.proc.signal(Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let p = call_prestop(
        events.clone(),
        berth.url(""),
        Method::GET,
        "kubelet: main preStop httpGet prestop (200 ms later)",
        TIMEOUT + SLACK,
    )
    .await;
    let exit = berth.proc.wait_exit(TIMEOUT + SLACK + SLACK).await;
    if let Some(e) = &exit {
        events.record_at(
            events.offset_of(e.at),
            format!("berth exited {:?}", e.status),
        );
    }
    eprintln!("{}", events.dump());
    assert_eq!(
        p.status, 200,
        "the main container's preStop reached a berth that had already stopped serving: {}",
        p.raw
    );
    assert_prestop_shape(&p, "none");
    assert!(p.took() >= D, "prestop returned before drain.delay");
    let exit = exit.unwrap_or_else(|| panic!("berth outlived drain.timeout by far"));
    assert!(
        events.offset_of(exit.at) - t0 <= TIMEOUT + SLACK,
        "berth exits by drain.timeout"
    );
    drop(app);
}
