//! The dashboard (`GET /` on the API) in real headless Chromium.
//!
//! Everything is real: a private PostgreSQL, `jobqueue migrate`, two
//! `jobqueue api` processes (one without and one with `API_SECRET_KEY`) and
//! a `jobqueue worker`, then tests/ui/jobqueue-dashboard.test.mjs under
//! `node --test` drives Debian's chromium through playwright-core (as
//! sidecar/tests/ui_page.rs does for berth's page; node dependencies with
//! `npm ci` on first use). `JOBQUEUE_UI_SCREENSHOTS=1` also writes
//! docs/jobqueue-dashboard-{laptop,phone}.png.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{spawn_jobqueue, wait_exit, Db};

/// The queues the worker serves; "paging" is left unserved on purpose, so
/// its jobs stay queued for the paging test.
const WORKER_QUEUES: &str = "default,reports,billing";

/// Children killed on every exit path, a failed assertion included.
struct Procs(Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` answered 200 (plain HTTP/1.0, no client dependency).
fn answers_200(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

fn wait_ready(port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if answers_200(port, "/readyz") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "API on {port} not ready:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Through the router, no browser: the page is served without the key,
/// with the policy whose hashes admit exactly its inline parts, while the
/// data behind it still needs the key. No database is reached (the pool
/// points nowhere and is never used).
#[tokio::test]
async fn the_page_needs_no_key_but_the_data_does() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let cfg = jobqueue::config::ApiConfig::from_env(&jobqueue::config::Env::from_pairs(
        [("API_SECRET_KEY", "k3y-for-the-router-test")].into_iter(),
    ))
    .unwrap();
    let queue = jobqueue::connect("postgresql://nobody@127.0.0.1:1/none", 1).unwrap();
    let app = jobqueue::api::router(
        jobqueue::api::ApiState::new(queue, &cfg),
        cfg.body_limit,
        cfg.request_timeout,
    );
    let page = jobqueue::dashboard::assembled();
    for path in ["/", "/dashboard"] {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let h = resp.headers().clone();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["content-security-policy"], page.csp.as_str());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, page.html.as_bytes());
    }
    let req = Request::get("/api/v1/queues").body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let req = Request::post("/").body(Body::empty()).unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Live queues and jobs, pause/resume, retry/cancel, hostile payloads
/// shown as text, the key kept in sessionStorage and sent only as a header,
/// filters and paging, and no console error or CSP violation.
/// `serial_`: a browser plus four processes on a 2-core machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_dashboard_in_headless_chromium() {
    let ui = repo_root().join("tests/ui");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run tools/setup.sh (installs Debian's chromium)"
    );
    if !ui
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .current_dir(&ui)
            .output()
            .expect("npm is missing: run tools/setup.sh (installs nodejs and npm)");
        assert!(
            out.status.success(),
            "npm ci in tests/ui failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let db = Db::start_empty().await;
    let dir = tempfile::tempdir().unwrap();
    let db_env = || vec![("DATABASE_URL", db.url.clone())];

    let mut migrate = spawn_jobqueue("migrate", &db_env(), &dir.path().join("migrate.log"));
    let status = wait_exit(&mut migrate, Duration::from_secs(60)).expect("migrate finishes");
    assert!(status.success(), "jobqueue migrate: {status}");

    // A random key per run, so a leak into a URL or storage is recognisable.
    let key = format!("dash-{}-{}", std::process::id(), free_port());
    let mut procs = Procs(Vec::new());
    let mut apis = Vec::new();
    for (name, secret) in [("api-open", None), ("api-key", Some(key.clone()))] {
        let port = free_port();
        let mut env = db_env();
        env.push(("API_LISTEN", format!("127.0.0.1:{port}")));
        if let Some(k) = secret {
            env.push(("API_SECRET_KEY", k));
        }
        let log = dir.path().join(format!("{name}.log"));
        procs
            .0
            .push((name.into(), spawn_jobqueue("api", &env, &log)));
        apis.push((port, log));
    }
    let mut env = db_env();
    env.push(("WORKER_QUEUES", WORKER_QUEUES.into()));
    env.push(("WORKER_POLL_INTERVAL_SECONDS", "0.2".into()));
    env.push(("WORKER_RETRY_BASE_SECONDS", "1".into()));
    procs.0.push((
        "worker".into(),
        spawn_jobqueue("worker", &env, &dir.path().join("worker.log")),
    ));
    for (port, log) in &apis {
        wait_ready(*port, log);
    }

    let started = Instant::now();
    let mut node = Command::new("node");
    node.args([
        "--test",
        "--test-reporter=spec",
        "jobqueue-dashboard.test.mjs",
    ])
    .env("JOBQUEUE_URL", format!("http://127.0.0.1:{}", apis[0].0))
    .env(
        "JOBQUEUE_AUTH_URL",
        format!("http://127.0.0.1:{}", apis[1].0),
    )
    .env("JOBQUEUE_KEY", &key)
    .env("CHROMIUM", &chromium)
    .current_dir(&ui);
    let out = node.output().expect("node is missing: run tools/setup.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "{stdout}{stderr}\n# browser test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let logs = || {
        ["api-open", "api-key", "worker"]
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(dir.path().join(format!("{n}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- {n} (last lines)\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}{stderr}\n{}",
        logs()
    );
    for (name, child) in &mut procs.0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{name} exited during the test:\n{}",
            logs()
        );
    }
}
