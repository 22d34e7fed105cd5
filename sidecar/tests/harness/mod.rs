//! Helpers for berth's own integration tests: run the real binary with a
//! config in a scratch directory, talk to it over HTTP.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// Result of `berth check-config`.
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `berth check-config` on `yaml` with extra environment variables.
pub fn check_config(yaml: &str, env: &[(&str, &str)]) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("berth.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let mut cmd = Command::new(BERTH);
    cmd.arg("check-config").arg(&path);
    cmd.env_remove("BERTH_LISTEN").env_remove("BERTH_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run berth");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `berth serve` child process; killed on drop.
pub struct Running {
    pub child: Child,
    pub port: u16,
    pub log_path: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Running {
    /// Starts berth on a free port with `yaml` (which must not set `listen`).
    pub fn start(yaml: &str) -> Running {
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = berth_tests::free_port();
            let path = dir.path().join("berth.yaml");
            std::fs::write(&path, format!("listen: \"127.0.0.1:{port}\"\n{yaml}"))
                .expect("write config");
            let log_path = dir.path().join("berth.log");
            let log = std::fs::File::create(&log_path).expect("log file");
            let child = Command::new(BERTH)
                .arg("serve")
                .arg("--config")
                .arg(&path)
                .env_remove("BERTH_LISTEN")
                .env_remove("RUST_LOG")
                .env("BERTH_LOG", "debug")
                .stdout(log.try_clone().expect("dup"))
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn berth");
            let mut running = Running {
                child,
                port,
                log_path,
                dir,
            };
            if berth_tests::wait_for_port(port, Duration::from_secs(20)) {
                return running;
            }
            let _ = running.child.kill();
            let _ = running.child.wait();
            if !running.log().contains("in use") {
                panic!("berth did not listen; log:\n{}", running.log());
            }
        }
        panic!("berth could not find a free port");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- berth log:\n{}", self.log());
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("client")
}

/// `GET url` → (status, body); status 0 on a transport error.
pub async fn get(url: &str) -> (u16, String) {
    match client().get(url).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// Polls `url` until it answers `want`; returns how long that took.
pub async fn wait_status(url: &str, want: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (got, body) = get(url).await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{url} did not answer {want} within {within:?} (last {got} {body})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST url` → (status, body); status 0 on a transport error.
pub async fn post(url: &str) -> (u16, String) {
    match client().post(url).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}
