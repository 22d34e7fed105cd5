//! berth's `postgres` and `redis` checks over TLS, against real servers with
//! TLS on (private PostgreSQL with `ssl = on`, `redis-server --tls-port`)
//! using a throwaway CA from the test kit. No mocks: the handshake, the
//! verification and the failure messages are the real ones.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::{check_config, get, wait_status, Running};

/// Polls `/api/v1/health/` (from loopback: full error detail) until every
/// named check has left `unknown`, then returns name → (status, error).
async fn settled(berth: &Running, names: &[&str]) -> Vec<(String, String, String)> {
    let start = Instant::now();
    loop {
        let (_, body) = get(&berth.url("/api/v1/health/")).await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let checks: Vec<(String, String, String)> = json["checks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or("").to_string(),
                            c["status"].as_str().unwrap_or("").to_string(),
                            c["error"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let done = names.iter().all(|n| {
            checks
                .iter()
                .any(|(name, status, _)| name == n && status != "unknown")
        });
        if done {
            return checks;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "checks never settled: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn find<'a>(checks: &'a [(String, String, String)], name: &str) -> &'a (String, String, String) {
    checks
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

/// Every named check is `up`.
fn assert_up(checks: &[(String, String, String)], names: &[&str]) {
    for name in names {
        let (_, status, error) = find(checks, name);
        assert_eq!(status, "up", "{name}: {error}");
    }
}

/// The named check is `down` with kind `tls_failed` and `reason` in its
/// error; returns the error text for further assertions.
fn assert_tls_down<'a>(
    checks: &'a [(String, String, String)],
    name: &str,
    reason: &str,
) -> &'a str {
    let (_, status, error) = find(checks, name);
    assert_eq!(status, "down", "{name}");
    assert!(
        error.starts_with("tls_failed") && error.contains(reason),
        "a clear reason: {error}"
    );
    error
}

fn pg_check(name: &str, url: &str) -> String {
    format!(
        "  - {{name: {name}, type: postgres, url: \"{url}\", critical: false, interval: 1s, timeout: 900ms, failureThreshold: 1}}\n"
    )
}

/// verify-full with the right CA is up (and the server sees an encrypted
/// connection); verify-full with another CA is down with a reason that says
/// so; require (no verification) and verify-ca through `localhost` are up.
/// The password shows nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_postgres_verify_full_up_wrong_ca_down() {
    let pg = berth_tests::Postgres::start_tls();
    let ca = pg.tls.as_ref().unwrap().ca_cert.display().to_string();
    let other = berth_tests::TestCa::new();
    let base = pg.url("postgres");
    let by_name = base.replace("@127.0.0.1:", "@localhost:");
    let yaml = format!(
        "checks:\n{}{}{}{}",
        pg_check(
            "full",
            &format!("{base}?sslmode=verify-full&sslrootcert={ca}")
        ),
        pg_check(
            "wrongca",
            &format!(
                "{base}?sslmode=verify-full&sslrootcert={}",
                other.ca_cert.display()
            )
        ),
        pg_check("require", &format!("{base}?sslmode=require")),
        pg_check(
            "verifyca",
            &format!("{by_name}?sslmode=verify-ca&sslrootcert={ca}")
        ),
    );
    let berth = Running::start(&yaml);
    let checks = settled(&berth, &["full", "wrongca", "require", "verifyca"]).await;
    assert_up(&checks, &["full", "require", "verifyca"]);
    assert_tls_down(&checks, "wrongca", "not signed by a trusted CA");
    let encrypted = pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'berth' AND s.ssl",
    );
    assert_eq!(encrypted, "3", "three encrypted berth connections");

    // Redacted view (the kind only) for a caller without the token is
    // covered elsewhere; here: no password in the full view or the log.
    let (_, body) = get(&berth.url("/api/v1/health/")).await;
    assert!(!body.contains(&pg.password), "password leaked: {body}");
    let log = berth.log();
    assert!(!log.contains(&pg.password), "password leaked:\n{log}");
    assert!(
        log.contains("not signed by a trusted CA"),
        "log says why:\n{log}"
    );
}

/// A certificate from the right CA for another host name: `verify-full`
/// refuses it (and says so), `verify-ca` accepts it (chain only), as libpq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_postgres_host_name_checked_by_verify_full_only() {
    let pg =
        berth_tests::Postgres::start_tls_with(berth_tests::TestCa::with_names("DNS:db.invalid"));
    let ca = pg.tls.as_ref().unwrap().ca_cert.display().to_string();
    let base = pg.url("postgres");
    let yaml = format!(
        "checks:\n{}{}",
        pg_check(
            "full",
            &format!("{base}?sslmode=verify-full&sslrootcert={ca}")
        ),
        pg_check("ca", &format!("{base}?sslmode=verify-ca&sslrootcert={ca}")),
    );
    let berth = Running::start(&yaml);
    let checks = settled(&berth, &["full", "ca"]).await;
    let (_, status, error) = find(&checks, "ca");
    assert_eq!(status, "up", "verify-ca: {error}");
    assert_tls_down(&checks, "full", "not valid for the host name");
}

/// Against a server without TLS: `require` fails and says the server has no
/// TLS; `prefer`, `disable` and no sslmode (the default, `prefer`) connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_postgres_require_fails_on_plain_server_prefer_and_default_work() {
    let pg = berth_tests::Postgres::start();
    let base = pg.url("postgres");
    let yaml = format!(
        "checks:\n{}{}{}{}",
        pg_check("require", &format!("{base}?sslmode=require")),
        pg_check("prefer", &format!("{base}?sslmode=prefer")),
        pg_check("disable", &format!("{base}?sslmode=disable")),
        pg_check("default", &base),
    );
    let berth = Running::start(&yaml);
    let checks = settled(&berth, &["require", "prefer", "disable", "default"]).await;
    assert_up(&checks, &["prefer", "disable", "default"]);
    let error = assert_tls_down(&checks, "require", "server does not support TLS");
    assert!(!error.contains(&pg.password));
}

/// `rediss://` with the server's CA is up; with another CA it is down and
/// says why; `#insecure` (no verification) is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_redis_rediss_up_wrong_ca_down() {
    let redis = berth_tests::Redis::start_tls();
    let ca = redis.tls.as_ref().unwrap().ca_cert.display().to_string();
    let other = berth_tests::TestCa::new();
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let check = |name: &str, url: &str| {
        format!(
            "  - {{name: {name}, type: redis, url: \"{url}\", critical: false, interval: 1s, timeout: 900ms, failureThreshold: 1}}\n"
        )
    };
    let yaml = format!(
        "checks:\n{}{}{}",
        check("cache", &format!("{url}?sslrootcert={ca}")),
        check(
            "wrongca",
            &format!("{url}?sslrootcert={}", other.ca_cert.display())
        ),
        check("insecure", &format!("{url}#insecure")),
    );
    let berth = Running::start(&yaml);
    let checks = settled(&berth, &["cache", "wrongca", "insecure"]).await;
    assert_up(&checks, &["cache", "insecure"]);
    assert_tls_down(&checks, "wrongca", "not signed by a trusted CA");
    // And the whole thing is ready once the critical set (none here) is.
    wait_status(
        &berth.url("/api/v1/health/ready"),
        200,
        Duration::from_secs(10),
    )
    .await;
}

/// Bad TLS options are configuration errors: exit 64, one line naming the
/// field, no password.
#[test]
fn tls_bad_sslmode_and_ca_file_are_config_errors() {
    let cases = [
        (
            "postgres",
            "postgres://u:hunter2@db:5432/x?sslmode=verify-everything",
            "unknown sslmode",
        ),
        (
            "postgres",
            "postgres://u:hunter2@db:5432/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
        (
            "redis",
            "rediss://:hunter2@cache:6380/0?sslrootcert=/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
    ];
    for (kind, url, says) in cases {
        let out = check_config(
            &format!("checks:\n  - {{name: d, type: {kind}, url: \"{url}\"}}\n"),
            &[],
        );
        assert_eq!(out.code, Some(64), "{url}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {:?}", out.stderr);
        assert!(lines[0].contains("checks[0].url"), "{}", lines[0]);
        assert!(lines[0].contains(says), "{}", lines[0]);
        assert!(!lines[0].contains("hunter2"), "{}", lines[0]);
    }
    // rediss:// and sslmode=require are accepted now.
    let out = check_config(
        "checks:\n  - {name: a, type: redis, url: \"rediss://:pw@cache:6380/0\"}\n  \
         - {name: b, type: postgres, url: \"postgres://u:pw@db/x?sslmode=require\"}\n",
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}
