//! jobqueue over TLS, against real servers with TLS on (the test kit's
//! private PostgreSQL with `ssl = on` and `redis-server --tls-port`, both
//! with a throwaway CA): migrate, enqueue and a worker running a job over
//! `sslmode=verify-full`, with the server's own word (`pg_stat_ssl`) that
//! the connections are encrypted; `rediss://` for the rate limiter; bad TLS
//! settings are configuration errors.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use jobqueue::NewJob;
use serde_json::json;

use common::{eventually, spawn_jobqueue};

fn jobqueue(sub: &str, database_url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jobqueue"))
        .arg(sub)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("LOG_FORMAT", "json")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_migrate_enqueue_and_work_over_verify_full() {
    let pg = tokio::task::spawn_blocking(berth_tests::Postgres::start_tls)
        .await
        .unwrap();
    let ca = pg.tls.as_ref().unwrap().ca_cert.display().to_string();
    let tls = format!("sslmode=verify-full&sslrootcert={ca}");
    let url = format!("{}?{tls}", pg.url("postgres"));
    // The seed's SQLAlchemy spelling keeps working with TLS options.
    let asyncpg_url = url.replace("postgres://", "postgresql+asyncpg://");

    let out = jobqueue("migrate", &asyncpg_url);
    assert!(
        out.status.success(),
        "migrate over TLS: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The server says this connection is encrypted.
    let client = jobqueue::db::connect(&url).await.unwrap();
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "pg_stat_ssl.ssl = f");

    let queue = jobqueue::connect(&url, 2).unwrap();
    let jobs: Vec<NewJob> = (0..3)
        .map(|_| NewJob::new("sleep").payload(json!({"ms": 1500})))
        .collect();
    queue.enqueue_batch(&jobs).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let env = vec![
        ("DATABASE_URL", asyncpg_url.clone()),
        ("WORKER_POLL_INTERVAL_SECONDS", "0.2".to_string()),
        ("WORKER_CONCURRENCY", "3".to_string()),
    ];
    let mut worker = spawn_jobqueue("worker", &env, &log);
    let count = |state: &str| -> i64 {
        pg.psql(
            "postgres",
            &format!("SELECT count(*) FROM jobs WHERE status = '{state}'"),
        )
        .parse()
        .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(20), || count("running") > 0).await,
        "the worker never claimed a job"
    );
    // While it works: every worker connection (pool, LISTEN) is encrypted.
    let (encrypted, plain) = {
        let q = |ssl: bool| -> i64 {
            pg.psql(
                "postgres",
                &format!(
                    "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                     WHERE a.application_name = 'jobqueue' AND s.ssl = {ssl} \
                     AND a.pid <> pg_backend_pid()"
                ),
            )
            .parse()
            .unwrap()
        };
        (q(true), q(false))
    };
    assert!(encrypted >= 2, "{encrypted} encrypted jobqueue connections");
    assert_eq!(plain, 0, "unencrypted jobqueue connections");
    assert!(
        eventually(Duration::from_secs(30), || count("succeeded") == 3).await,
        "jobs did not finish over TLS:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    common::sigterm(&worker);
    let status = tokio::task::spawn_blocking(move || {
        common::wait_exit(&mut worker, Duration::from_secs(30))
    })
    .await
    .unwrap()
    .expect("worker exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&pg.password), "password leaked:\n{text}");
}

/// verify-full against the wrong CA fails (no silent downgrade) and says why
/// without the password; a bad sslmode or CA file is exit 64 naming
/// DATABASE_URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_wrong_ca_and_bad_settings_fail_clearly() {
    let pg = tokio::task::spawn_blocking(berth_tests::Postgres::start_tls)
        .await
        .unwrap();
    let other = berth_tests::TestCa::new();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url("postgres"),
        other.ca_cert.display()
    );
    let out = jobqueue("migrate", &url);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("UnknownIssuer"), "says why: {all}");
    assert!(!all.contains(&pg.password), "password leaked: {all}");

    let secret = "postgresql+asyncpg://app:hunter2-secret@127.0.0.1:1/db";
    for (sub, query, says) in [
        ("migrate", "?sslmode=verify-everything", "unknown sslmode"),
        ("worker", "?sslmode=bogus", "unknown sslmode"),
        (
            "worker",
            "?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
    ] {
        let out = jobqueue(sub, &format!("{secret}{query}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{sub} {query}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains("DATABASE_URL") && stderr.contains(says),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "password leaked: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_jobqueue"))
        .arg("api")
        .env_clear()
        .env("DATABASE_URL", secret)
        .env(
            "REDIS_URL",
            "rediss://:hunter2-secret@cache:6380/0?sslrootcert=/nonexistent/ca.pem",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("REDIS_URL") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}

/// The API's rate limiter counts in Redis over `rediss://` (CA from the URL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_rate_limiter_uses_rediss() {
    let redis = tokio::task::spawn_blocking(berth_tests::Redis::start_tls)
        .await
        .unwrap();
    let ca = redis.tls.as_ref().unwrap().ca_cert.display().to_string();
    let url = format!("{}?sslrootcert={ca}", redis.url());
    let limiter = jobqueue::ratelimit::RateLimiter::new(
        3,
        Some(&url),
        Arc::new(jobqueue::metrics::Metrics::default()),
    );
    limiter.spawn_connector();
    let l = limiter.clone();
    assert!(
        eventually(Duration::from_secs(10), || l.redis_up()).await,
        "never connected to Redis over TLS"
    );
    let mut allowed = Vec::new();
    for _ in 0..4 {
        allowed.push(limiter.allow("tls-client", 1).await);
    }
    assert_eq!(allowed, [true, true, true, false]);
    // The count is in Redis, read back over TLS.
    let client = berth_tls::redis_tls::client(&url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("jobqueue:ratelimit:tls-client:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
}
