//! The real `berth serve` process: health groups, `grpc.health.v1` asked
//! by grpcio's own client (as a Kubernetes `grpc:` probe would), and config
//! reload through a ConfigMap-style symlink swap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::pod::http;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// A ConfigMap volume as kubelet lays it out: `berth.yaml -> ..data/berth.yaml`,
/// `..data -> ..<version>`; an update writes a new version directory and
/// swaps `..data` atomically (rename of a new symlink over the old one).
struct ConfigMapDir {
    dir: tempfile::TempDir,
    version: u32,
}

impl ConfigMapDir {
    fn new(yaml: &str) -> ConfigMapDir {
        let mut c = ConfigMapDir {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
        };
        c.update(yaml);
        std::os::unix::fs::symlink("..data/berth.yaml", c.dir.path().join("berth.yaml")).unwrap();
        c
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("berth.yaml")
    }

    fn update(&mut self, yaml: &str) {
        self.version += 1;
        let version = format!("..2026_11_27_v{}", self.version);
        let vdir = self.dir.path().join(&version);
        std::fs::create_dir(&vdir).unwrap();
        std::fs::write(vdir.join("berth.yaml"), yaml).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }
}

struct Berth {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Berth {
    fn start(config: &Path, dir: &Path, port: u16) -> Berth {
        let log = dir.join("berth.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BERTH)
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("BERTH_LISTEN")
            .env("BERTH_LOG_FORMAT", "json")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        assert!(
            berth_tests::wait_for_port(port, Duration::from_secs(20)),
            "berth did not listen"
        );
        Berth { child, log, port }
    }

    fn get(&self, path: &str) -> (u16, String) {
        http(
            "GET",
            &format!("http://127.0.0.1:{}{path}", self.port),
            &[],
            None,
        )
        .unwrap_or((0, String::new()))
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let (_, body) = self.get(path);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- berth log:\n{}", self.log());
        }
    }
}

fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn file_check(name: &str, path: &Path, critical: bool) -> String {
    format!(
        "  - {{name: {name}, type: file, path: \"{}\", critical: {critical}, interval: 200ms, timeout: 100ms, failureThreshold: 1}}\n",
        path.display()
    )
}

fn probe(addr: &str, service: &str) -> String {
    let python = berth_tests::tools::tools_dir().join("venv/bin/python");
    let script = berth_tests::workspace_root().join("tests/grpc/health_probe.py");
    let out = Command::new(python)
        .arg(script)
        .args([addr, service])
        .output()
        .expect("run the grpcio health client (tools/setup.sh installs grpcio)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn groups_and_grpc_health_answer_from_the_cached_state() {
    let dir = tempfile::tempdir().unwrap();
    let (pg, cache, other) = (
        dir.path().join("pg"),
        dir.path().join("cache"),
        dir.path().join("other"),
    );
    for f in [&pg, &cache, &other] {
        std::fs::write(f, "x").unwrap();
    }
    let port = berth_tests::free_port();
    let grpc_port = berth_tests::free_port();
    let yaml = format!(
        "listen: 127.0.0.1:{port}\ngrpcListen: 127.0.0.1:{grpc_port}\nchecks:\n{}{}{}groups:\n  db: [pg, cache]\n  extra: [other]\n",
        file_check("pg", &pg, true),
        file_check("cache", &cache, false),
        file_check("other", &other, false),
    );
    let cfg = ConfigMapDir::new(&yaml);
    let berth = Berth::start(&cfg.path(), dir.path(), port);
    let addr = format!("127.0.0.1:{grpc_port}");
    until("ready", Duration::from_secs(10), || {
        berth.get("/api/v1/health/ready").0 == 200
    });

    let (code, body) = berth.get("/api/v1/health/group/db");
    assert_eq!(code, 200, "{body}");
    let g: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(g["status"], "up");
    assert_eq!(g["checks"].as_array().unwrap().len(), 2);
    assert_eq!(berth.get("/api/v1/health/group/nope").0, 404);
    assert_eq!(probe(&addr, ""), "SERVING");
    assert_eq!(probe(&addr, "db"), "SERVING");
    assert_eq!(probe(&addr, "cache"), "SERVING");
    assert_eq!(probe(&addr, "nope"), "NOT_FOUND");

    // An optional member down: the group stays up (critical members only),
    // the check itself is NOT_SERVING.
    std::fs::remove_file(&cache).unwrap();
    until("cache down", Duration::from_secs(10), || {
        probe(&addr, "cache") == "NOT_SERVING"
    });
    assert_eq!(berth.get("/api/v1/health/group/db").0, 200);
    assert_eq!(probe(&addr, "db"), "SERVING");
    // A critical member down: group and readiness go down together.
    std::fs::remove_file(&pg).unwrap();
    until("db group down", Duration::from_secs(10), || {
        berth.get("/api/v1/health/group/db").0 == 503
    });
    assert_eq!(probe(&addr, "db"), "NOT_SERVING");
    assert_eq!(probe(&addr, ""), "NOT_SERVING");
    assert_eq!(berth.get("/api/v1/health/group/extra").0, 200);
    assert_eq!(probe(&addr, "extra"), "SERVING");

    // Watch streams every change: NOT_SERVING now, SERVING once pg is back.
    let python = berth_tests::tools::tools_dir().join("venv/bin/python");
    let script = berth_tests::workspace_root().join("tests/grpc/health_probe.py");
    let watcher = Command::new(python)
        .arg(script)
        .args([addr.as_str(), "db", "--watch", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    std::fs::write(&pg, "x").unwrap();
    let out = watcher.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        vec!["NOT_SERVING", "SERVING"],
        "{seen}"
    );
}

#[test]
fn reload_follows_a_symlink_swap_and_keeps_unchanged_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&b, "x").unwrap();
    let port = berth_tests::free_port();
    // `a` (optional) is missing at first: it fails a few times, so its
    // failure counter shows whether a reload reset its state.
    let first = format!(
        "listen: 127.0.0.1:{port}\nchecks:\n{}",
        file_check("a", &a, false)
    );
    let mut cfg = ConfigMapDir::new(&first);
    let berth = Berth::start(&cfg.path(), dir.path(), port);
    let failures_of = |name: &str| -> u64 {
        let (_, m) = berth.get("/metrics");
        m.lines()
            .find(|l| l.starts_with(&format!("berth_check_failures_total{{check=\"{name}\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    until("a fails at least twice", Duration::from_secs(10), || {
        failures_of("a") >= 2
    });
    std::fs::write(&a, "x").unwrap();
    until("a up", Duration::from_secs(10), || {
        berth.json("/api/v1/health/")["checks"][0]["status"] == "up"
    });
    let failures_before = failures_of("a");
    assert_eq!(berth.get("/api/v1/health/ready").0, 200);

    // Poll readiness all through the reload: it must never flap.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flaps = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut not_ready = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (code, _) = http(
                    "GET",
                    &format!("http://127.0.0.1:{port}/api/v1/health/ready"),
                    &[],
                    None,
                )
                .unwrap_or((0, String::new()));
                if code != 200 {
                    not_ready += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            not_ready
        })
    };

    // A new check appears; `a` is unchanged.
    let second = format!(
        "listen: 127.0.0.1:{port}\nchecks:\n{}{}groups:\n  both: [a, b]\n",
        file_check("a", &a, false),
        file_check("b", &b, false)
    );
    cfg.update(&second);
    until("b appears", Duration::from_secs(10), || {
        berth.json("/api/v1/health/")["checks"]
            .as_array()
            .is_some_and(|c| c.len() == 2 && c[1]["name"] == "b" && c[1]["status"] == "up")
    });
    assert_eq!(
        berth.get("/api/v1/health/group/both").0,
        200,
        "groups reload too"
    );
    assert_eq!(
        failures_of("a"),
        failures_before,
        "the unchanged check kept its state (a reset would zero its counters)"
    );
    until("reload logged", Duration::from_secs(5), || {
        berth.log().contains("config reloaded")
    });

    // An invalid file changes nothing and is logged, without its secret.
    cfg.update(
        "listen: 127.0.0.1:1\nchecks:\n  - {name: a, type: tcp, address: 'not-a-port-s3cr3t'}\n",
    );
    until("rejection logged", Duration::from_secs(10), || {
        berth.log().contains("config reload rejected")
    });
    assert!(!berth.log().contains("s3cr3t"), "{}", berth.log());
    std::thread::sleep(Duration::from_millis(1500));
    let checks = berth.json("/api/v1/health/")["checks"].clone();
    assert_eq!(checks.as_array().unwrap().len(), 2, "{checks}");
    assert_eq!(berth.get("/api/v1/health/ready").0, 200);

    // Removing a check stops it.
    cfg.update(&first);
    until("b removed", Duration::from_secs(10), || {
        berth.json("/api/v1/health/")["checks"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
    });
    assert_eq!(berth.get("/api/v1/health/group/both").0, 404);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(flaps.join().unwrap(), 0, "readiness flapped during reloads");
    assert_eq!(failures_of("a"), failures_before);
}
