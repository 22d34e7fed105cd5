//! The `mysql`, `amqp`, `nats` and `dns` checks against real servers: the
//! machine's MariaDB (127.0.0.1:3306), RabbitMQ (:5672) and NATS (:4222),
//! which `tools/setup.sh` starts, plus private `nats-server`s (with a
//! password, with TLS) started here.
//!
//! The shared servers are never stopped: outages go through a
//! [`Forwarder`] between berth and the server, which the test stops and
//! resumes. A server that is not running fails the test with what to do,
//! rather than skipping it: a skipped test proves nothing.
#![allow(clippy::unwrap_used)]

mod harness;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::redact::CheckError;
use berth::state::{Health, Status};
use berth_tests::forward::Forwarder;
use berth_tests::{free_port, wait_for_port, TestCa};

/// Room for a loaded 2-core machine on every "within" bound.
const SLACK: Duration = Duration::from_secs(10);

const MARIADB: u16 = 3306;
const RABBITMQ: u16 = 5672;
const NATS: u16 = 4222;

/// The MariaDB account of these tests (created by [`mysql_user`]).
const MYSQL_USER: &str = "berth_test";
const MYSQL_PW: &str = "berth-test-pw-7Qx";

/// Fails (never skips) when a shared server is not listening.
fn require(port: u16, what: &str) {
    assert!(
        wait_for_port(port, Duration::from_secs(5)),
        "{what} is not listening on 127.0.0.1:{port}: tools/setup.sh starts it \
         when it is installed (apt-get install mariadb-server rabbitmq-server nats-server)"
    );
}

/// Makes sure the test account exists with its password, with the
/// `mariadb` CLI as the server's root user.
fn mysql_user() {
    require(MARIADB, "MariaDB");
    let sql = format!(
        "CREATE USER IF NOT EXISTS '{MYSQL_USER}'@'%' IDENTIFIED BY '{MYSQL_PW}'; \
         CREATE USER IF NOT EXISTS '{MYSQL_USER}'@'localhost' IDENTIFIED BY '{MYSQL_PW}'; \
         ALTER USER '{MYSQL_USER}'@'%' IDENTIFIED BY '{MYSQL_PW}'; \
         ALTER USER '{MYSQL_USER}'@'localhost' IDENTIFIED BY '{MYSQL_PW}'; \
         CREATE DATABASE IF NOT EXISTS berth_test; \
         GRANT SELECT ON berth_test.* TO '{MYSQL_USER}'@'%'; \
         GRANT SELECT ON berth_test.* TO '{MYSQL_USER}'@'localhost'; \
         GRANT SELECT ON berth_no_such_db.* TO '{MYSQL_USER}'@'%'; \
         GRANT SELECT ON berth_no_such_db.* TO '{MYSQL_USER}'@'localhost';"
    );
    let mut errors = String::new();
    // root over the socket (as root, or through sudo for unix_socket
    // auth), else root over TCP without a password.
    for args in [
        vec!["mariadb", "-uroot"],
        vec!["sudo", "-n", "mariadb", "-uroot"],
        vec!["mariadb", "-uroot", "-h127.0.0.1", "-P3306"],
    ] {
        match Command::new(args[0])
            .args(&args[1..])
            .arg("-e")
            .arg(&sql)
            .output()
        {
            Ok(out) if out.status.success() => return,
            Ok(out) => errors.push_str(&String::from_utf8_lossy(&out.stderr)),
            Err(e) => errors.push_str(&format!("cannot run mariadb: {e}\n")),
        }
    }
    panic!("cannot create the MariaDB test user {MYSQL_USER}:\n{errors}");
}

/// Checks running in the background, as `berth serve` runs them.
struct Running {
    health: Arc<Health>,
    stop: tokio::sync::watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    fn start(yaml: &str) -> Running {
        let config = berth::config::parse(yaml, &|_| None).unwrap();
        let health = Arc::new(Health::new(&config));
        let secrets = Arc::new(config.secrets());
        let (stop, rx) = tokio::sync::watch::channel(false);
        let handles = berth::checks::spawn_all(&health, &config.checks, &[], &secrets, &rx);
        Running {
            health,
            stop,
            handles,
        }
    }

    /// Waits until check `idx` is `want`; its last error.
    async fn wait(&self, idx: usize, want: Status) -> Option<CheckError> {
        let start = Instant::now();
        while self.health.status(idx) != want {
            assert!(
                start.elapsed() < SLACK,
                "check {idx} never became {want:?}: {:?}",
                self.health.snapshot(idx)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.health.snapshot(idx).error
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        for h in self.handles {
            tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .expect("checker stops")
                .unwrap();
        }
    }
}

/// One run of the first check of `yaml`, bounded by its timeout.
async fn once(yaml: &str) -> Result<(), CheckError> {
    let config = berth::config::parse(yaml, &|_| None).unwrap();
    let secrets = config.secrets();
    let spec = &config.checks[0];
    let mut probe = spec.def.probe(spec.timeout);
    match tokio::time::timeout(spec.timeout, probe.check(&secrets)).await {
        Ok(r) => r,
        Err(_) => Err(CheckError::new("timeout", "")),
    }
}

/// A config of one check with a roomy timeout (for [`once`]), or on a
/// short interval (for [`Running`]).
fn one_check(body: &str) -> String {
    format!("checks:\n  - {{name: dep, interval: 3s, timeout: 2s, failureThreshold: 1, {body}}}\n")
}

fn one_fast_check(body: &str) -> String {
    format!(
        "checks:\n  - {{name: dep, interval: 300ms, timeout: 250ms, failureThreshold: 1, {body}}}\n"
    )
}

/// The check is up through the forwarder on one kept connection (or a
/// fresh one per run with `reuses = false`), down (refused or cut) when the
/// forwarder stops, and up again when it resumes.
async fn up_down_up(fwd: &mut Forwarder, body: &str, reuses: bool, secret: Option<&str>) {
    let checks = Running::start(&one_fast_check(body));
    assert_eq!(checks.wait(0, Status::Up).await, None);
    let accepted = fwd.accepted();
    let failures = checks.health.snapshot(0).failures_total;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(checks.health.status(0), Status::Up);
    if reuses {
        // A run that timed out on a stalled machine reconnects, rightly;
        // without one, every run must have used the same connection.
        if checks.health.snapshot(0).failures_total == failures {
            assert_eq!(
                fwd.accepted(),
                accepted,
                "~5 runs in 1.5 s must reuse one connection"
            );
        }
    } else {
        assert!(fwd.accepted() >= accepted + 3, "a connection per run");
    }

    fwd.stop();
    let e = checks.wait(0, Status::Down).await.unwrap();
    assert!(
        ["connection_refused", "connection_lost"].contains(&e.kind),
        "{e}"
    );
    if let Some(secret) = secret {
        assert!(!e.to_string().contains(secret), "{e}");
    }
    fwd.resume();
    assert_eq!(checks.wait(0, Status::Up).await, None);
    checks.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_up_down_and_back_up() {
    mysql_user();
    let mut fwd = Forwarder::start("127.0.0.1:3306");
    let body = format!(
        "type: mysql, url: \"mysql://{MYSQL_USER}:{MYSQL_PW}@{}/\"",
        fwd.addr()
    );
    up_down_up(&mut fwd, &body, true, Some(MYSQL_PW)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_up_down_and_back_up() {
    require(RABBITMQ, "RabbitMQ");
    let mut fwd = Forwarder::start("127.0.0.1:5672");
    let body = format!("type: amqp, url: \"amqp://guest:guest@{}/%2f\"", fwd.addr());
    up_down_up(&mut fwd, &body, false, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_up_down_and_back_up() {
    require(NATS, "NATS");
    let mut fwd = Forwarder::start("127.0.0.1:4222");
    let body = format!("type: nats, url: \"nats://{}\"", fwd.addr());
    up_down_up(&mut fwd, &body, true, None).await;
}

/// MariaDB: the database in the URL is used (a missing one is named), the
/// server's lack of TLS is accepted by `preferred` and refused by
/// `required`, and a wrong password is `auth_failed` without the password.
#[tokio::test]
async fn mysql_login_outcomes() {
    mysql_user();
    let check = |url: String| one_check(&format!("type: mysql, url: \"{url}\""));
    let base = format!("mysql://{MYSQL_USER}:{MYSQL_PW}@127.0.0.1:{MARIADB}");
    assert_eq!(once(&check(format!("{base}/"))).await, Ok(()));
    assert_eq!(
        once(&check(format!("{base}/?ssl-mode=preferred"))).await,
        Ok(())
    );
    assert_eq!(once(&check(format!("{base}/berth_test"))).await, Ok(()));
    // Granted but never created: the server's 1049.
    let e = once(&check(format!("{base}/berth_no_such_db")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "database_not_found", "{e}");
    assert!(e.detail.contains("berth_no_such_db"), "{e}");

    // This server has TLS off: `required` must not silently go plain.
    let have_ssl = Command::new("mariadb")
        .args(["-uroot", "-N", "-e", "SELECT @@have_ssl"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let required = once(&check(format!("{base}/?ssl-mode=required"))).await;
    if have_ssl == "YES" {
        assert_eq!(required, Ok(()));
    } else {
        let e = required.unwrap_err();
        assert_eq!(e.kind, "tls_failed", "{e}");
        assert!(e.detail.contains("does not offer TLS"), "{e}");
    }

    let wrong = "Wr0ng-pw-for-berth";
    let e = once(&check(format!(
        "mysql://{MYSQL_USER}:{wrong}@127.0.0.1:{MARIADB}/"
    )))
    .await
    .unwrap_err();
    assert_eq!(e.kind, "auth_failed", "{e}");
    assert!(e.detail.starts_with("1045:"), "{e}");
    assert!(!e.to_string().contains(wrong), "{e}");
}

/// RabbitMQ: a wrong password is `auth_failed` (403 ACCESS_REFUSED) and a
/// virtual host that does not exist is `not_allowed` (530).
#[tokio::test]
async fn amqp_login_and_vhost_outcomes() {
    require(RABBITMQ, "RabbitMQ");
    let check = |url: String| one_check(&format!("type: amqp, url: \"{url}\""));
    assert_eq!(
        once(&check(format!("amqp://guest:guest@127.0.0.1:{RABBITMQ}"))).await,
        Ok(())
    );
    let wrong = "Wr0ng-pw-for-berth";
    let e = once(&check(format!(
        "amqp://guest:{wrong}@127.0.0.1:{RABBITMQ}/%2f"
    )))
    .await
    .unwrap_err();
    assert_eq!(e.kind, "auth_failed", "{e}");
    assert!(e.detail.starts_with("403"), "{e}");
    assert!(!e.to_string().contains(wrong), "{e}");

    let e = once(&check(format!(
        "amqp://guest:guest@127.0.0.1:{RABBITMQ}/berth-no-such-vhost"
    )))
    .await
    .unwrap_err();
    assert_eq!(e.kind, "not_allowed", "{e}");
    assert!(e.detail.starts_with("530"), "{e}");
}

/// A private `nats-server` on a free port; killed on drop.
struct NatsServer {
    port: u16,
    child: Child,
}

impl NatsServer {
    fn start(args: &[&str]) -> NatsServer {
        let port = free_port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nats-server (apt-get install nats-server)");
        let server = NatsServer { port, child };
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "nats-server did not listen"
        );
        server
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// NATS with a password: right one up, wrong one `auth_failed`
/// ('Authorization Violation'), never echoed.
#[tokio::test]
async fn nats_credentials() {
    let pw = "nats-pw-for-berth";
    let server = NatsServer::start(&["--user", "berth", "--pass", pw]);
    let check = |url: String| one_check(&format!("type: nats, url: \"{url}\""));
    assert_eq!(
        once(&check(format!(
            "nats://berth:{pw}@127.0.0.1:{}",
            server.port
        )))
        .await,
        Ok(())
    );
    let wrong = "Wr0ng-pw-for-berth";
    let e = once(&check(format!(
        "nats://berth:{wrong}@127.0.0.1:{}",
        server.port
    )))
    .await
    .unwrap_err();
    assert_eq!(e.kind, "auth_failed", "{e}");
    assert!(e.detail.contains("Authorization Violation"), "{e}");
    assert!(!e.to_string().contains(wrong), "{e}");
    let e = once(&check(format!("nats://127.0.0.1:{}", server.port)))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "auth_failed", "no credentials: {e}");
}

/// NATS with TLS required: `tls://` with the right CA is up, and so is
/// `nats://` (the server's INFO asks for TLS); another CA is `tls_failed`.
#[tokio::test]
async fn nats_tls() {
    let ca = TestCa::new();
    let cert = ca.server_cert.display().to_string();
    let key = ca.server_key.display().to_string();
    let server = NatsServer::start(&["--tls", "--tlscert", &cert, "--tlskey", &key]);
    let check = |url: String, ca: &TestCa| {
        one_check(&format!(
            "type: nats, url: \"{url}\", caFile: \"{}\"",
            ca.ca_cert.display()
        ))
    };
    assert_eq!(
        once(&check(format!("tls://127.0.0.1:{}", server.port), &ca)).await,
        Ok(())
    );
    assert_eq!(
        once(&check(format!("nats://localhost:{}", server.port), &ca)).await,
        Ok(())
    );
    let other = TestCa::new();
    let e = once(&check(format!("tls://127.0.0.1:{}", server.port), &other))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "tls_failed", "{e}");
    assert!(e.detail.contains("not signed by a trusted CA"), "{e}");
    // And a plain server cannot pass for a TLS one.
    require(NATS, "NATS");
    let e = once(&check(format!("tls://127.0.0.1:{NATS}"), &ca))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "tls_failed", "{e}");
}

/// `localhost` resolves to 127.0.0.1 (from /etc/hosts, through the system
/// resolver); expecting another address is `unexpected_answer`; a name
/// under `.invalid` (RFC 6761: never resolves) is `not_found`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers() {
    let checks = Running::start(
        "checks:\n  \
         - {name: local, type: dns, host: localhost, expect: [127.0.0.1], interval: 1s, timeout: 900ms, failureThreshold: 1}\n  \
         - {name: elsewhere, type: dns, host: localhost, expect: [127.0.0.1, 10.9.9.9], interval: 1s, timeout: 900ms, failureThreshold: 1}\n  \
         - {name: nowhere, type: dns, host: berth-test.invalid, interval: 1s, timeout: 900ms, failureThreshold: 1}\n  \
         - {name: any, type: dns, host: localhost, interval: 1s, timeout: 900ms, failureThreshold: 1}\n",
    );
    assert_eq!(checks.wait(0, Status::Up).await, None);
    let e = checks.wait(1, Status::Down).await.unwrap();
    assert_eq!(e.kind, "unexpected_answer", "{e}");
    assert!(
        e.detail.contains("10.9.9.9") && e.detail.contains("127.0.0.1"),
        "{e}"
    );
    let e = checks.wait(2, Status::Down).await.unwrap();
    assert_eq!(e.kind, "not_found", "{e}");
    assert_eq!(checks.wait(3, Status::Up).await, None);
    checks.stop().await;
}

/// Wrong passwords for all three through the real binary: every check is
/// down with `auth_failed` in /api/v1/health (loopback: with details), and
/// no password appears in the JSON or the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_never_show_in_health_or_log() {
    mysql_user();
    require(RABBITMQ, "RabbitMQ");
    let nats_pw = "nats-right-pw-4berth";
    let nats = NatsServer::start(&["--user", "berth", "--pass", nats_pw]);
    let (m, a, n) = ("Wr0ng-mysql-pw", "Wr0ng-amqp-pw", "Wr0ng-nats-pw");
    let berth = harness::Running::start(&format!(
        "checks:\n  \
         - {{name: db, type: mysql, url: \"mysql://{MYSQL_USER}:{m}@127.0.0.1:{MARIADB}/\", interval: 500ms, timeout: 450ms, failureThreshold: 1}}\n  \
         - {{name: mq, type: amqp, url: \"amqp://guest:{a}@127.0.0.1:{RABBITMQ}/%2f\", interval: 500ms, timeout: 450ms, failureThreshold: 1}}\n  \
         - {{name: bus, type: nats, url: \"nats://berth:{n}@127.0.0.1:{}\", interval: 500ms, timeout: 450ms, failureThreshold: 1}}\n",
        nats.port
    ));
    let url = berth.url("/api/v1/health/");
    let start = Instant::now();
    let body = loop {
        let (_, body) = harness::get(&url).await;
        if body.matches("auth_failed").count() == 3 {
            break body;
        }
        assert!(start.elapsed() < SLACK, "not all auth_failed: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for pw in [m, a, n, nats_pw] {
        assert!(!body.contains(pw), "{pw} in the health JSON: {body}");
    }
    assert!(
        body.contains("Access denied"),
        "details for loopback: {body}"
    );
    let log = berth.log();
    for pw in [m, a, n, nats_pw] {
        assert!(!log.contains(pw), "{pw} in the log:\n{log}");
    }
}

/// Bad URLs and values are configuration errors naming the field, and a
/// value from `${…}` is never repeated.
#[test]
fn config_errors_name_the_field() {
    let err = |body: &str, env: &[(&str, &str)]| {
        let yaml = format!("checks:\n  - {{name: dep, {body}}}\n");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        berth::config::parse(&yaml, &|k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .unwrap_err()
    };
    for (body, field, says) in [
        (
            "type: mysql, url: \"postgres://u:pw@h/db\"",
            "checks[0].url",
            "mysql://",
        ),
        (
            "type: mysql, url: \"mysql://u:pw@/db\"",
            "checks[0].url",
            "no host",
        ),
        (
            "type: mysql, url: \"mysql://h/db\"",
            "checks[0].url",
            "no user",
        ),
        ("type: mysql", "checks[0].url", "required"),
        (
            "type: mysql, url: \"mysql://u:pw@h/db?ssl-mode=always\"",
            "checks[0].url",
            "ssl-mode",
        ),
        (
            "type: mysql, url: \"mysql://u:pw@h/db?ssl-mode=verify_ca&ssl-ca=/nonexistent/ca.pem\"",
            "checks[0].url",
            "/nonexistent/ca.pem",
        ),
        (
            "type: amqp, url: \"http://u:pw@h/\"",
            "checks[0].url",
            "amqp://",
        ),
        (
            "type: amqp, url: \"amqp://u:pw@:5672/\"",
            "checks[0].url",
            "no host",
        ),
        ("type: nats, url: \"nats://h:0\"", "checks[0].url", "port"),
        (
            "type: nats, url: \"tls://h\", caFile: /nonexistent/ca.pem",
            "checks[0].caFile",
            "/nonexistent/ca.pem",
        ),
        ("type: dns", "checks[0].host", "required"),
        (
            "type: dns, host: \"http://h/\"",
            "checks[0].host",
            "host name",
        ),
        (
            "type: dns, host: h, expect: [10.0.0.1, nope]",
            "checks[0].expect[1]",
            "IP address",
        ),
        ("type: dns, host: h, url: x", "checks[0].url", "unknown key"),
    ] {
        let e = err(body, &[]);
        assert_eq!(e.field, field, "{body}: {e:?}");
        assert!(e.message.contains(says), "{body}: {e:?}");
        assert!(!e.message.contains("pw@"), "{body}: {e:?}");
    }
    let secret = "sup3r-secret-value";
    for (body, env) in [
        (
            "type: mysql, url: \"${DB_URL}\"",
            format!("mariadb-ish://app:{secret}@db/app"),
        ),
        (
            "type: amqp, url: \"${DB_URL}\"",
            format!("amqp://app:{secret}@:1/"),
        ),
        ("type: nats, url: \"${DB_URL}\"", secret.to_string()),
        (
            "type: dns, host: h, expect: [\"${DB_URL}\"]",
            secret.to_string(),
        ),
        // A CA file path from the environment is a value too.
        (
            "type: mysql, url: \"${DB_URL}\"",
            format!("mysql://u@h/?ssl-mode=verify_ca&ssl-ca=/{secret}"),
        ),
        (
            "type: amqp, url: \"${DB_URL}\"",
            format!("amqps://u@h/?cacertfile=/{secret}"),
        ),
        (
            "type: nats, url: \"nats://h\", caFile: \"/${DB_URL}\"",
            secret.to_string(),
        ),
    ] {
        let e = err(body, &[("DB_URL", &env)]);
        assert!(!format!("{e:?}").contains(secret), "{body}: {e:?}");
        assert!(
            e.message.contains("${DB_URL}") || !e.message.contains("CA file"),
            "{body}: {e:?}"
        );
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A private MariaDB with TLS on (certificate from a fresh [`TestCa`]) and
/// a user that may only log in over TLS (`REQUIRE SSL`); killed on drop.
/// The machine's MariaDB has TLS off, and must not be reconfigured.
struct TlsMariaDb {
    port: u16,
    ca: TestCa,
    child: Child,
    dir: tempfile::TempDir,
}

const TLS_USER: &str = "berth_tls";
const TLS_PW: &str = "berth-tls-pw-3Kd";

impl TlsMariaDb {
    fn start() -> TlsMariaDb {
        let dir = tempfile::Builder::new()
            .prefix("berth-mariadb-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let as_root: &[&str] = if running_as_root() {
            &["--user=root"]
        } else {
            &[]
        };
        let out = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--auth-root-authentication-method=normal"])
            .arg(format!("--datadir={}", data.display()))
            .args(as_root)
            .output()
            .expect("run mariadb-install-db (apt-get install mariadb-server)");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ca = TestCa::new();
        let port = free_port();
        let server = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("mariadbd");
        let socket = dir.path().join("sock");
        let child = Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .args(["--bind-address=127.0.0.1", "--skip-log-bin"])
            .arg(format!("--ssl-cert={}", ca.server_cert.display()))
            .arg(format!("--ssl-key={}", ca.server_key.display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!(
                "--log-error={}",
                dir.path().join("err.log").display()
            ))
            .args(as_root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run mariadbd");
        let db = TlsMariaDb {
            port,
            ca,
            child,
            dir,
        };
        assert!(
            wait_for_port(port, Duration::from_secs(60)),
            "private MariaDB did not listen: {}",
            std::fs::read_to_string(db.dir.path().join("err.log")).unwrap_or_default()
        );
        let out = Command::new("mariadb")
            .arg(format!("--socket={}", socket.display()))
            .args(["-uroot", "-e"])
            // @localhost too: install-db's anonymous ''@localhost would
            // otherwise win for connections from 127.0.0.1.
            .arg(format!(
                "CREATE USER '{TLS_USER}'@'%' IDENTIFIED BY '{TLS_PW}' REQUIRE SSL; \
                 CREATE USER '{TLS_USER}'@'localhost' IDENTIFIED BY '{TLS_PW}' REQUIRE SSL"
            ))
            .output()
            .expect("run mariadb");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        db
    }
}

impl Drop for TlsMariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// MySQL over TLS (SSLRequest, then the login inside TLS) against a server
/// whose user may only log in over TLS: every mode that uses TLS is up
/// (so TLS really was used), `disabled` is refused by the server, and a
/// certificate from another CA is `tls_failed`.
#[tokio::test]
async fn mysql_tls_modes() {
    let db = TlsMariaDb::start();
    let check = |q: String| {
        one_check(&format!(
            "type: mysql, url: \"mysql://{TLS_USER}:{TLS_PW}@127.0.0.1:{}/{q}\"",
            db.port
        ))
    };
    let ca = db.ca.ca_cert.display().to_string();
    for q in [
        String::new(), // preferred: TLS because the server offers it
        "?ssl-mode=required".to_string(),
        format!("?ssl-mode=verify_ca&ssl-ca={ca}"),
        format!("?ssl-mode=verify_identity&ssl-ca={ca}"),
    ] {
        assert_eq!(once(&check(q.clone())).await, Ok(()), "{q}");
    }
    let e = once(&check("?ssl-mode=disabled".into())).await.unwrap_err();
    assert_eq!(e.kind, "auth_failed", "REQUIRE SSL refuses plain: {e}");
    assert!(!e.to_string().contains(TLS_PW), "{e}");

    let other = TestCa::new();
    let e = once(&check(format!(
        "?ssl-mode=verify_ca&ssl-ca={}",
        other.ca_cert.display()
    )))
    .await
    .unwrap_err();
    assert_eq!(e.kind, "tls_failed", "{e}");
    assert!(e.detail.contains("not signed by a trusted CA"), "{e}");
    // The compiled-in roots do not know a private CA either.
    let e = once(&check("?ssl-mode=verify_identity".into()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "tls_failed", "{e}");
}

/// A TLS-terminating haproxy in front of the machine's RabbitMQ (RabbitMQ's
/// own TLS listener would mean reconfiguring the shared broker).
struct TlsProxy {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TlsProxy {
    fn start(ca: &TestCa, backend: &str) -> TlsProxy {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("server.pem");
        let mut both = std::fs::read(&ca.server_cert).unwrap();
        both.extend(std::fs::read(&ca.server_key).unwrap());
        std::fs::write(&pem, both).unwrap();
        let port = free_port();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
                 timeout client 30s\n  timeout server 30s\nfrontend tls\n  \
                 bind 127.0.0.1:{port} ssl crt {}\n  default_backend plain\n\
                 backend plain\n  server broker {backend}\n",
                pem.display()
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run haproxy (apt-get install haproxy)");
        let proxy = TlsProxy {
            port,
            child,
            _dir: dir,
        };
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "haproxy did not listen"
        );
        proxy
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `amqps://`: verified against `cacertfile`, refused with the built-in
/// roots (a private CA), accepted unverified with `verify=verify_none`.
#[tokio::test]
async fn amqps_through_a_tls_terminator() {
    require(RABBITMQ, "RabbitMQ");
    let ca = TestCa::new();
    let proxy = TlsProxy::start(&ca, &format!("127.0.0.1:{RABBITMQ}"));
    let check = |q: String| {
        one_check(&format!(
            "type: amqp, url: \"amqps://guest:guest@127.0.0.1:{}/%2f{q}\"",
            proxy.port
        ))
    };
    assert_eq!(
        once(&check(format!("?cacertfile={}", ca.ca_cert.display()))).await,
        Ok(())
    );
    assert_eq!(once(&check("?verify=verify_none".into())).await, Ok(()));
    let e = once(&check(String::new())).await.unwrap_err();
    assert_eq!(e.kind, "tls_failed", "{e}");
    assert!(e.detail.contains("not signed by a trusted CA"), "{e}");
}

/// Servers that accept the connection and never answer: each protocol
/// check is `down` with kind `timeout` after its timeout and keeps being
/// retried (its half-open connection dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_servers_are_timeouts() {
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hole.local_addr().unwrap();
    // Accepts (the kernel does) and holds every connection, silently.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hole.incoming().flatten().take(256) {
            held.push(s);
        }
    });
    let checks = Running::start(&format!(
        "checks:\n  \
         - {{name: db, type: mysql, url: \"mysql://u:topsecretpw@{addr}/\", interval: 500ms, timeout: 300ms, failureThreshold: 1}}\n  \
         - {{name: mq, type: amqp, url: \"amqp://u:topsecretpw@{addr}/\", interval: 500ms, timeout: 300ms, failureThreshold: 1}}\n  \
         - {{name: bus, type: nats, url: \"nats://u:topsecretpw@{addr}\", interval: 500ms, timeout: 300ms, failureThreshold: 1}}\n"
    ));
    for i in 0..3 {
        let e = checks.wait(i, Status::Down).await.unwrap();
        assert_eq!(e.kind, "timeout", "{i}: {e}");
    }
    let start = Instant::now();
    while (0..3).any(|i| checks.health.snapshot(i).failures_total < 3) {
        assert!(start.elapsed() < SLACK, "a checker is stuck");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    checks.stop().await;
}

/// A name in /etc/hosts: up, removed (down, `not_found`), back (up).
/// berth runs in a private mount namespace with a temporary file
/// bind-mounted over /etc/hosts, so the test edits "its" /etc/hosts
/// without touching the machine's (needs root, as `unshare --mount` does).
/// Its nsswitch.conf says `hosts: files`, so a removed name is a definite
/// "no such name" whatever DNS this machine can reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_name_in_etc_hosts_up_down_and_back_up() {
    assert!(
        running_as_root(),
        "this test needs root (unshare --mount, to give berth its own /etc/hosts)"
    );
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    let with = "127.0.0.1 localhost\n10.77.0.7 berth-dns-test.example\n";
    let without = "127.0.0.1 localhost\n";
    std::fs::write(&hosts, with).unwrap();
    let nsswitch = dir.path().join("nsswitch.conf");
    std::fs::write(&nsswitch, "passwd: files\ngroup: files\nhosts: files\n").unwrap();
    let port = free_port();
    let config = dir.path().join("berth.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:{port}\"\nchecks:\n  - {{name: svc, type: dns, \
             host: berth-dns-test.example, expect: [10.77.0.7], interval: 300ms, \
             timeout: 250ms, failureThreshold: 1}}\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("berth.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount --bind \"$1\" /etc/hosts && mount --bind \"$4\" /etc/nsswitch.conf \
             && exec \"$2\" serve --config \"$3\"",
        )
        .arg("sh")
        .arg(&hosts)
        .arg(harness::BERTH)
        .arg(&config)
        .arg(&nsswitch)
        .env_remove("BERTH_LISTEN")
        .env_remove("BERTH_CONFIG")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("run unshare");
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _berth = Kill(child);
    assert!(
        wait_for_port(port, Duration::from_secs(20)),
        "berth in its mount namespace did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let url = format!("http://127.0.0.1:{port}/api/v1/health/");
    let wait = |want: &'static str| {
        let url = url.clone();
        async move {
            let start = Instant::now();
            loop {
                let (_, body) = harness::get(&url).await;
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                    if v["checks"][0]["status"] == want {
                        return v["checks"][0]["error"].as_str().unwrap_or("").to_string();
                    }
                }
                assert!(start.elapsed() < SLACK, "never {want}: {body}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(wait("up").await, "");
    // In place: the bind mount holds this inode.
    std::fs::write(&hosts, without).unwrap();
    let error = wait("down").await;
    assert!(error.starts_with("not_found"), "{error}");
    std::fs::write(&hosts, with).unwrap();
    assert_eq!(wait("up").await, "");
}
