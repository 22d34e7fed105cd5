//! jobqueue's `/metrics` (API, worker, reaper) passes `promtool check
//! metrics`, scraped from the real binary against a private PostgreSQL
//! after real jobs ran.

use berth_tests::scrape::{eventually, get, promtool_check, Proc};
use berth_tests::{free_port, wait_for_port, Postgres};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Scrapes the API, a worker and the reaper after real jobs ran (one
/// failed once, two wait in a queue no worker serves). This is also the
/// contract for changes to examples/jobqueue/src/metrics.rs.
#[test]
fn jobqueue_metrics_pass_promtool_check_metrics() {
    let pg = Postgres::start();
    pg.create_database("jq");
    let url = pg.url("jq");
    let bin = env!("CARGO_BIN_EXE_jobqueue");
    let dir = tempfile::tempdir().expect("tempdir");
    let spawn = |sub: &str, env: &[(&str, String)]| -> Proc {
        let log = std::fs::File::create(dir.path().join(format!("{sub}.log"))).expect("log");
        let mut cmd = Command::new(bin);
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
