//! Helpers shared by the integration tests: a private PostgreSQL with the
//! schema applied, and the real `jobqueue` binary as a child process.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::Postgres;

/// A private PostgreSQL with the jobqueue schema in database `postgres`.
pub struct Db {
    pub pg: Postgres,
    pub url: String,
}

impl Db {
    pub async fn start() -> Db {
        let db = Db::start_empty().await;
        jobqueue::migrate(&db.url).await.expect("migrate");
        db
    }

    /// A private PostgreSQL without the schema (migration tests).
    pub async fn start_empty() -> Db {
        let pg = tokio::task::spawn_blocking(Postgres::start)
            .await
            .expect("start postgres");
        let url = pg.url("postgres");
        Db { pg, url }
    }

    pub fn queue(&self) -> jobqueue::Queue {
        jobqueue::connect(&self.url, 8).expect("pool")
    }

    /// One scalar from SQL.
    pub fn sql(&self, sql: &str) -> String {
        self.pg.psql("postgres", sql)
    }

    pub fn count(&self, where_clause: &str) -> i64 {
        self.sql(&format!("SELECT count(*) FROM jobs WHERE {where_clause}"))
            .parse()
            .expect("count")
    }

    /// Whether job `id` is in `status` (one of the `jobs.status` values).
    pub fn has_status(&self, id: i64, status: &str) -> bool {
        self.count(&format!("id = {id} AND status = '{status}'")) == 1
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// The real binary with a clean environment plus `env`; stdout (JSON logs)
/// goes to `log`.
pub fn spawn_jobqueue(sub: &str, env: &[(&str, String)], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobqueue"));
    cmd.arg(sub)
        .env_clear()
        .env("LOG_FORMAT", "json")
        .env("METRICS_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::from(out))
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn jobqueue")
}

/// `job_id` → number of "job started" lines in the given JSON log files.
pub fn starts_per_job(logs: &[PathBuf]) -> HashMap<i64, usize> {
    let mut starts = HashMap::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue; // a line cut short by kill -9
            };
            if v["message"] == "job started" {
                if let Some(id) = v["job_id"].as_i64() {
                    *starts.entry(id).or_default() += 1;
                }
            }
        }
    }
    starts
}

pub fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("send SIGTERM");
}

/// Waits for the child to exit, up to `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
