//! Black-box harness for berth's lifecycle tests: real `berth` processes,
//! real "main container" processes, real signals, real HTTP.
//!
//! Why a harness instead of calling library functions: the lifecycle contract
//! (sidecar/README.md "Lifecycle") is about what a kubelet observes from the outside —
//! HTTP status codes, which process got which signal when, and how berth
//! exits. Only separate processes in the test's PID namespace (as in a pod
//! with `shareProcessNamespace`) exercise `/proc` scanning and `kill(2)`.
//!
//! Every process started here is owned by a guard whose `Drop` kills its
//! whole process group, so a failing assertion never leaks processes.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// The berth binary under test: cargo's build of this crate, or
/// `$BERTH_TEST_BIN` (e.g. the static release binary that goes into the
/// image, or a deliberately broken build to check that these tests fail).
pub fn berth_bin() -> PathBuf {
    std::env::var_os("BERTH_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth")))
}

// ---------------------------------------------------------------- event log

/// A small timestamped event log: tests record what they observe and assert
/// on order and (generous) timing. Every event is also printed, so a failing
/// test shows the whole sequence.
pub struct Events {
    start: Instant,
    start_wall: SystemTime,
    log: Mutex<Vec<(Duration, String)>>,
}

impl Events {
    pub fn new() -> Arc<Events> {
        Arc::new(Events {
            start: Instant::now(),
            start_wall: SystemTime::now(),
            log: Mutex::new(Vec::new()),
        })
    }

    /// Records `what` now; returns the offset from the log's start.
    pub fn record(&self, what: impl Into<String>) -> Duration {
        self.record_at(self.start.elapsed(), what)
    }

    /// Records an event that happened at a known offset (e.g. a wall-clock
    /// timestamp written by another process, converted with [`Events::offset_of_wall`]).
    pub fn record_at(&self, at: Duration, what: impl Into<String>) -> Duration {
        let what = what.into();
        eprintln!("[{:>8.3}s] {what}", at.as_secs_f64());
        let mut log = self.log.lock().expect("event log lock");
        log.push((at, what));
        at
    }

    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn offset_of(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.start)
    }

    /// Offset of a wall-clock time (seconds since the epoch, as written by
    /// bash's `$EPOCHREALTIME`). Negative offsets clamp to zero.
    pub fn offset_of_wall(&self, epoch_secs: f64) -> Duration {
        let start = self
            .start_wall
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        Duration::from_secs_f64((epoch_secs - start).max(0.0))
    }

    /// The first event whose text starts with `prefix`.
    pub fn first(&self, prefix: &str) -> Option<Duration> {
        let log = self.log.lock().expect("event log lock");
        log.iter()
            .find(|(_, w)| w.starts_with(prefix))
            .map(|(t, _)| *t)
    }

    pub fn dump(&self) -> String {
        let mut log = self.log.lock().expect("event log lock").clone();
        log.sort_by_key(|(t, _)| *t);
        log.iter()
            .map(|(t, w)| format!("  {:>8.3}s {w}", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

// ---------------------------------------------------------------- processes

/// How a child process ended, and when.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    pub at: Instant,
    pub status: ExitStatus,
}

impl Exit {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }
}

type ExitCell = Arc<(Mutex<Option<Exit>>, Condvar)>;

/// A child process in its own process group, reaped at once by a thread (a
/// zombie still has a `/proc/<pid>/comm`, and a pod's pause process reaps
/// promptly too). Dropping the guard SIGKILLs the group.
pub struct Proc {
    pub label: String,
    pub pid: Pid,
    exit: ExitCell,
}

impl Proc {
    pub fn spawn(label: &str, mut cmd: Command) -> Proc {
        cmd.process_group(0).stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {label} ({cmd:?}): {e}"));
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        let exit: ExitCell = Arc::new((Mutex::new(None), Condvar::new()));
        let cell = exit.clone();
        std::thread::spawn(move || {
            let status = child.wait().expect("wait for child");
            let (lock, cv) = &*cell;
            *lock.lock().expect("exit lock") = Some(Exit {
                at: Instant::now(),
                status,
            });
            cv.notify_all();
        });
        Proc {
            label: label.to_string(),
            pid,
            exit,
        }
    }

    pub fn exited(&self) -> Option<Exit> {
        *self.exit.0.lock().expect("exit lock")
    }

    pub fn is_running(&self) -> bool {
        self.exited().is_none()
    }

    /// Blocks (this thread) until the process exits or `timeout` passes.
    pub fn wait_exit_blocking(&self, timeout: Duration) -> Option<Exit> {
        let (lock, cv) = &*self.exit;
        let guard = lock.lock().expect("exit lock");
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |e| e.is_none())
            .expect("exit condvar");
        *guard
    }

    /// Waits (async, polling) until the process exits or `timeout` passes.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<Exit> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.exited() {
                return Some(e);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `sig` to the process (not its group), like kubelet's SIGTERM to
    /// a container's PID 1.
    pub fn signal(&self, sig: Signal) {
        if self.is_running() {
            kill(self.pid, sig).unwrap_or_else(|e| panic!("kill {} {sig}: {e}", self.label));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The group may hold children (bash's `sleep`): kill them too, even if
        // the leader is gone already.
        let _ = killpg(self.pid, Signal::SIGKILL);
        if self.is_running() {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = self.wait_exit_blocking(Duration::from_secs(5));
        }
    }
}

// ------------------------------------------------------ uniquely named exes

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A process name (≤ 15 bytes, the kernel's `comm` limit) unique to this
/// test run, so `drain.notify.process` can never hit a stranger's process.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    let salt =
        (std::process::id() ^ nanos.rotate_left(7) ^ n.wrapping_mul(0x9e37_79b9)) & 0xff_ffff;
    let name = format!("{prefix}{salt:06x}{}", n % 10);
    assert!(name.len() <= 15, "comm names are at most 15 bytes: {name}");
    name
}

/// A scratch directory readable by every user (for configs that an
/// unprivileged berth must read).
pub fn world_readable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("berth-lc-")
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod tempdir");
    dir
}

/// Copies `src` (e.g. `/bin/sleep`) to `dir/name`, so the process started
/// from it has `comm == name`.
pub fn copy_exe(src: impl AsRef<Path>, dir: &Path, name: &str) -> PathBuf {
    let src = src.as_ref();
    let dst = dir.join(name);
    fs::copy(src, &dst)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).expect("chmod exe");
    dst
}

/// A `sleep 300` whose `comm` is `name` (a copy of `/bin/sleep`).
pub fn spawn_named_sleep(dir: &Path, name: &str) -> Proc {
    let exe = copy_exe("/bin/sleep", dir, name);
    let mut cmd = Command::new(exe);
    cmd.arg("300");
    let p = Proc::spawn(name, cmd);
    wait_for_comm(p.pid, name);
    p
}

/// Waits until `/proc/<pid>/comm` shows `name` (after `exec`).
pub fn wait_for_comm(pid: Pid, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm")) {
            if comm.trim_end() == name {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("process {pid} never showed comm {name}");
}

/// How a stand-in main container reacts to SIGTERM.
#[derive(Clone, Copy, Debug)]
pub enum OnTerm {
    /// Log the signal, keep serving `drain` longer (its own drain time A), exit 0.
    DrainThenExit(Duration),
    /// Log every SIGTERM and keep running (a process that never goes idle).
    LogAndIgnore,
}

/// A stand-in main container: a copy of bash named `name` running a small
/// script. It appends `$EPOCHREALTIME` to `dir/<name>.term` on every SIGTERM
/// and writes `dir/<name>.exit` just before it exits, so the test knows when
/// the signal arrived by the app's own clock (not by when the test polled).
pub struct MainApp {
    pub name: String,
    pub proc: Proc,
    term_file: PathBuf,
    exit_file: PathBuf,
}

impl MainApp {
    pub fn spawn(dir: &Path, name: &str, on_term: OnTerm) -> MainApp {
        let exe = copy_exe("/bin/bash", dir, name);
        let term_file = dir.join(format!("{name}.term"));
        let exit_file = dir.join(format!("{name}.exit"));
        let on_term_body = match on_term {
            OnTerm::DrainThenExit(d) => format!(
                r#"kill $! 2>/dev/null; sleep {:.3}; echo "$EPOCHREALTIME" > "$EXIT_FILE"; exit 0"#,
                d.as_secs_f64()
            ),
            OnTerm::LogAndIgnore => "kill $! 2>/dev/null".to_string(),
        };
        let script = format!(
            r#"trap 'echo "$EPOCHREALTIME" >> "$TERM_FILE"; {on_term_body}' TERM
while :; do sleep 60 & wait $!; done"#
        );
        let mut cmd = Command::new(exe);
        cmd.arg("-c")
            .arg(script)
            .env("TERM_FILE", &term_file)
            .env("EXIT_FILE", &exit_file)
            .env("LC_ALL", "C");
        let proc = Proc::spawn(name, cmd);
        wait_for_comm(proc.pid, name);
        MainApp {
            name: name.to_string(),
            proc,
            term_file,
            exit_file,
        }
    }

    /// Wall-clock times (epoch seconds) of every SIGTERM the app received.
    pub fn terms(&self) -> Vec<f64> {
        read_epochs(&self.term_file)
    }

    /// Wall-clock time at which the app decided to exit.
    pub fn exit_wall(&self) -> Option<f64> {
        read_epochs(&self.exit_file).first().copied()
    }
}

fn read_epochs(path: &Path) -> Vec<f64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .collect()
}

// ------------------------------------------------------------------- berth

/// How berth is run.
#[derive(Clone, Debug, Default)]
pub struct BerthOpts {
    /// Run as this uid/gid through `setpriv` (e.g. 65534 = nobody).
    pub as_uid: Option<u32>,
    /// Use this executable instead of the cargo-built berth (e.g. a copy
    /// with another name).
    pub exe: Option<PathBuf>,
    /// Address to listen on; `{port}` is appended. Default `127.0.0.1`.
    pub host: Option<String>,
}

/// A running `berth serve` with its config and log in a scratch dir.
pub struct Berth {
    pub port: u16,
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
}

impl Berth {
    /// Starts berth with `config`, a YAML document WITHOUT `listen:` (the
    /// harness adds it with a free port). Waits until the port accepts.
    pub fn start(config: &str) -> Berth {
        Berth::start_with(config, BerthOpts::default())
    }

    pub fn start_with(config: &str, opts: BerthOpts) -> Berth {
        let mut last_log = String::new();
        // A free port can be taken between probing and binding: retry then.
        for _ in 0..3 {
            let dir = world_readable_tempdir();
            let port = berth_tests::free_port();
            let host = opts.host.clone().unwrap_or_else(|| "127.0.0.1".into());
            let config_path = dir.path().join("berth.yaml");
            fs::write(&config_path, format!("listen: \"{host}:{port}\"\n{config}"))
                .expect("write berth.yaml");
            fs::set_permissions(&config_path, fs::Permissions::from_mode(0o644))
                .expect("chmod config");
            let log_path = dir.path().join("berth.log");
            let exe = opts.exe.clone().unwrap_or_else(berth_bin);
            let mut cmd = match opts.as_uid {
                Some(uid) => {
                    let exe = exe_usable_by(uid, &exe, dir.path());
                    let mut c = Command::new("setpriv");
                    c.arg(format!("--reuid={uid}"))
                        .arg(format!("--regid={uid}"))
                        .arg("--clear-groups")
                        .arg("--")
                        .arg(exe);
                    c
                }
                None => Command::new(exe),
            };
            cmd.arg("serve").arg("--config").arg(&config_path);
            let proc = spawn_logged("berth", cmd, &log_path);
            if berth_tests::wait_for_port(port, Duration::from_secs(20)) && proc.is_running() {
                return Berth {
                    port,
                    proc,
                    dir,
                    log_path,
                    config_path,
                };
            }
            drop(proc);
            last_log = fs::read_to_string(&log_path).unwrap_or_default();
            if !last_log.to_lowercase().contains("in use") {
                break;
            }
        }
        panic!("berth did not start listening; log:\n{last_log}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until `/api/v1/health/ready` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        let url = self.url("/api/v1/health/ready");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = http_get(&url).await {
                return;
            }
            assert!(
                self.proc.is_running(),
                "berth exited before ready: {:?}\n{}",
                self.proc.exited(),
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "berth not ready within {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Log lines that mention `needle` (case-insensitive) at WARN or ERROR level.
    pub fn warn_lines_mentioning(&self, needle: &str) -> Vec<String> {
        let needle = needle.to_lowercase();
        self.log()
            .lines()
            .map(str::to_string)
            .filter(|l| {
                let l = l.to_lowercase();
                l.contains(&needle) && (l.contains("warn") || l.contains("error"))
            })
            .collect()
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- berth log ({}):\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// Spawns `cmd` with stdout and stderr appended to `log`.
pub fn spawn_logged(label: &str, mut cmd: Command, log: &Path) -> Proc {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log");
    let err = out.try_clone().expect("clone log fd");
    cmd.stdout(out)
        .stderr(err)
        .env_remove("BERTH_LISTEN")
        .env_remove("BERTH_CONFIG")
        .env_remove("RUST_LOG")
        .env("BERTH_LOG", "debug");
    Proc::spawn(label, cmd)
}

/// `exe` if user `uid` can execute it where it is, else a copy in `dir`
/// (the build tree may sit under a directory that user cannot enter).
fn exe_usable_by(uid: u32, exe: &Path, dir: &Path) -> PathBuf {
    let ok = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .args(["--", "test", "-x"])
        .arg(exe)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return exe.to_path_buf();
    }
    let copy = dir.join("berth");
    fs::copy(exe, &copy).expect("copy berth for an unprivileged user");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod berth copy");
    copy
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

// -------------------------------------------------------------------- HTTP

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// GET with a short timeout (probes must answer fast). Err on transport errors.
pub async fn http_get(url: &str) -> Result<(u16, String), String> {
    request(reqwest::Method::GET, url, Duration::from_secs(5)).await
}

pub async fn request(
    method: reqwest::Method,
    url: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let resp = client(timeout)
        .request(method, url)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| format!("{e:?}"))?;
    Ok((status, body))
}

/// Status of `GET url`, 0 on a transport error.
pub async fn status_of(url: &str) -> u16 {
    http_get(url).await.map(|(s, _)| s).unwrap_or(0)
}

/// Polls `url` until it answers `want`; panics after `timeout`.
pub async fn wait_status(url: &str, want: u16, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = status_of(url).await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{url} did not answer {want} within {timeout:?} (last {got})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The outcome of one prestop call as the kubelet sees it.
#[derive(Debug, Clone)]
pub struct Prestop {
    pub sent_wall: f64,
    pub returned_wall: f64,
    pub sent: Duration,
    pub returned: Duration,
    pub status: u16,
    pub body: serde_json::Value,
    pub raw: String,
}

impl Prestop {
    pub fn took(&self) -> Duration {
        self.returned.saturating_sub(self.sent)
    }
    pub fn drain_status(&self) -> &str {
        self.body["status"].as_str().unwrap_or("<missing>")
    }
    pub fn notify_errors(&self) -> Vec<String> {
        self.body["notify"]["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        e.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| e.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Calls the prestop endpoint (GET like a kubelet `httpGet` hook, or POST)
/// and records `<label> sent` / `<label> returned` events.
pub async fn call_prestop(
    events: Arc<Events>,
    base: String,
    method: reqwest::Method,
    label: &'static str,
    timeout: Duration,
) -> Prestop {
    let url = format!("{base}/api/v1/lifecycle/prestop");
    let sent_wall = epoch_now();
    let sent = events.record(format!("{label} sent ({method})"));
    let res = request(method, &url, timeout).await;
    let returned_wall = epoch_now();
    match res {
        Ok((status, raw)) => {
            let returned = events.record(format!("{label} returned {status}: {raw}"));
            let body = serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
            Prestop {
                sent_wall,
                returned_wall,
                sent,
                returned,
                status,
                body,
                raw,
            }
        }
        Err(e) => {
            let returned = events.record(format!("{label} failed: {e}"));
            Prestop {
                sent_wall,
                returned_wall,
                sent,
                returned,
                status: 0,
                body: serde_json::Value::Null,
                raw: e,
            }
        }
    }
}

/// Asserts the prestop response shape of sidecar/README.md ("Lifecycle"): HTTP 200, JSON with
/// `status` drained|timeout, `elapsed_ms`, `notify.type`, `notify.errors`
/// (array of strings) and `waited_for` (array).
pub fn assert_prestop_shape(p: &Prestop, notify_type: &str) {
    assert_eq!(p.status, 200, "prestop must answer 200: {}", p.raw);
    assert!(
        matches!(p.drain_status(), "drained" | "timeout"),
        "status must be drained|timeout: {}",
        p.raw
    );
    assert!(p.body["elapsed_ms"].is_u64(), "elapsed_ms: {}", p.raw);
    assert_eq!(
        p.body["notify"]["type"].as_str(),
        Some(notify_type),
        "notify.type: {}",
        p.raw
    );
    let errors = p.body["notify"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("notify.errors must be an array: {}", p.raw));
    assert!(
        errors.iter().all(|e| e.is_string()),
        "notify.errors must hold strings: {}",
        p.raw
    );
    assert!(
        p.body["waited_for"].is_array(),
        "waited_for must be an array: {}",
        p.raw
    );
}

/// Seconds since the epoch, comparable with bash's `$EPOCHREALTIME`.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Formats a duration for YAML (`1500ms`).
pub fn dur(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

// ------------------------------------------------------------------ prober

/// One observation of berth's probes, as a kubelet/endpoint controller sees them.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// When the `/ready` answer arrived.
    pub at: Duration,
    pub ready: u16,
    pub live: u16,
}

/// Polls `/ready` and `/live` every 100 ms until `stop` is set; records every
/// change of the pair as an event. Returns all observations.
pub fn spawn_prober(
    events: Arc<Events>,
    base: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Probe>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut last = (0u16, 0u16);
        while !stop.load(Ordering::SeqCst) {
            let ready = status_of(&format!("{base}/api/v1/health/ready")).await;
            let at = events.now();
            let live = status_of(&format!("{base}/api/v1/health/live")).await;
            if (ready, live) != last {
                events.record_at(at, format!("probe: ready={ready} live={live}"));
                last = (ready, live);
            }
            seen.push(Probe { at, ready, live });
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    })
}
