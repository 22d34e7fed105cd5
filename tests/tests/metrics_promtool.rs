//! Both `/metrics` outputs pass `promtool check metrics` (Prometheus' own
//! exposition linter: names, types, units, HELP): berth's and jobqueue's,
//! scraped from the real binaries running against a private PostgreSQL with
//! every series populated (checks up and down; jobs created, run, failed,
//! queued). promtool comes from Debian's `prometheus` package
//! (tools/setup.sh).
//!
//! The binaries are built with `cargo build` (debug, a no-op after
//! `cargo nextest run --workspace` built them).

use berth_tests::{free_port, tools, wait_for_port, workspace_root, Postgres};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/debug/<bin>` of `package`, built now if it is stale.
fn cargo_bin(package: &str, bin: &str) -> PathBuf {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "-q", "-p", package, "--bin", bin])
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {bin}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    target.join("debug").join(bin)
}

/// A child process killed (and reaped) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on 127.0.0.1:port → (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    // Chunked bodies: drop the chunk-size lines.
    let body = if raw
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    (status, body)
}

fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// `promtool check metrics` on `text`: `Ok(())` or `Err(promtool's report)`.
fn promtool_check(text: &str) -> Result<(), String> {
    let promtool = which("promtool");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (apt-get install prometheus; tools/setup.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn which(name: &str) -> PathBuf {
    let t = tools::tool(name);
    if t.exists() {
        return t;
    }
    PathBuf::from(format!("/usr/bin/{name}"))
}

#[test]
fn berth_metrics_pass_promtool_check_metrics() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = dir.path().join("berth.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nchecks:\n  - {{name: db, type: postgres, url: \"{}\"}}\n  - {{name: down, type: tcp, address: \"127.0.0.1:1\", critical: false}}\n  - {{name: beat, type: file, path: {}, maxAge: 30s, critical: false}}\n",
            pg.url("postgres"),
            dir.path().join("missing-heartbeat").display()
        ),
    )
    .expect("write config");
    let log = std::fs::File::create(dir.path().join("berth.log")).expect("log");
    let _berth = Proc(
        Command::new(cargo_bin("berth", "berth"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn berth"),
    );
    assert!(
        wait_for_port(port, Duration::from_secs(20)),
        "berth listens"
    );
    assert!(
        eventually(Duration::from_secs(20), || get(
            port,
            "/api/v1/health/ready"
        )
        .0 == 200),
        "berth ready (PostgreSQL check up)"
    );
    // Every check has run at least once (the down ones have failed).
    assert!(eventually(Duration::from_secs(20), || {
        let m = get(port, "/metrics").1;
        m.contains(r#"berth_check_failures_total{check="down"} "#)
            && !m.contains(r#"berth_check_failures_total{check="down"} 0"#)
    }));
    let (status, text) = get(port, "/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"berth_check_up{check="db",type="postgres",critical="true"} 1"#),
        "{text}"
    );
    assert!(text.contains("berth_ready 1"));
    if let Err(report) = promtool_check(&text) {
        panic!("promtool check metrics rejects berth's /metrics:\n{report}\n---\n{text}");
    }
}

/// Scrapes the API, a worker and the reaper after real jobs ran (one
/// failed once, two wait in a queue no worker serves). This is also the
/// contract for changes to examples/jobqueue/src/metrics.rs.
#[test]
fn jobqueue_metrics_pass_promtool_check_metrics() {
    let pg = Postgres::start();
    pg.create_database("jq");
    let url = pg.url("jq");
    let bin = cargo_bin("jobqueue", "jobqueue");
    let dir = tempfile::tempdir().expect("tempdir");
    let spawn = |sub: &str, env: &[(&str, String)]| -> Proc {
        let log = std::fs::File::create(dir.path().join(format!("{sub}.log"))).expect("log");
        let mut cmd = Command::new(&bin);
        cmd.arg(sub)
            .env_clear()
            .env("DATABASE_URL", &url)
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::from(log))
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc(cmd.spawn().expect("spawn jobqueue"))
    };
    let mut migrate = spawn("migrate", &[]);
    let status = migrate.0.wait().expect("migrate");
    assert!(status.success(), "jobqueue migrate");

    let (api_port, worker_port, reaper_port) = (free_port(), free_port(), free_port());
    let _api = spawn("api", &[("API_LISTEN", format!("127.0.0.1:{api_port}"))]);
    let _worker = spawn(
        "worker",
        &[("METRICS_LISTEN", format!("127.0.0.1:{worker_port}"))],
    );
    let _reaper = spawn(
        "reaper",
        &[
            ("METRICS_LISTEN", format!("127.0.0.1:{reaper_port}")),
            ("REAPER_DEPTH_INTERVAL_SECONDS", "1".into()),
        ],
    );
    for port in [api_port, worker_port, reaper_port] {
        assert!(wait_for_port(port, Duration::from_secs(20)), "port {port}");
    }
    // Jobs that succeed, one that fails once, and some that stay queued
    // (a queue no worker serves), so every family has samples.
    for body in [
        r#"{"kind":"noop"}"#,
        r#"{"kind":"sleep","payload":{"ms":10}}"#,
        r#"{"kind":"fail","payload":{"times":1}}"#,
        r#"{"kind":"noop","queue":"parked"}"#,
        r#"{"kind":"noop","queue":"parked"}"#,
    ] {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-f",
                "-H",
                "content-type: application/json",
                "-d",
                body,
            ])
            .arg(format!("http://127.0.0.1:{api_port}/api/v1/jobs"))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "enqueue {body}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        eventually(Duration::from_secs(30), || {
            let w = get(worker_port, "/metrics").1;
            let r = get(reaper_port, "/metrics").1;
            w.contains("job_completed_total{")
                && w.contains("job_failed_total{")
                && r.contains(r#"job_queue_depth{queue="parked",status="queued"} 2"#)
        }),
        "jobs ran and the reaper exported the depth"
    );
    let mut failures = Vec::new();
    for (name, port) in [
        ("api", api_port),
        ("worker", worker_port),
        ("reaper", reaper_port),
    ] {
        let (status, text) = get(port, "/metrics");
        assert_eq!(status, 200, "{name} /metrics");
        if let Err(report) = promtool_check(&text) {
            failures.push(format!("--- jobqueue {name}:\n{report}"));
        }
    }
    assert!(
        failures.is_empty(),
        "promtool check metrics rejects jobqueue's /metrics:\n{}",
        failures.join("\n")
    );
}
