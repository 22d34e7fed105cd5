//! The real `jobqueue` binary as a process: configuration errors, graceful
//! SIGTERM, handing back unfinished jobs, the heartbeat file, and the chaos
//! test (kill -9 workers, restart PostgreSQL; nothing is lost).
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use jobqueue::NewJob;
use serde_json::json;

use common::{eventually, spawn_jobqueue, starts_per_job, Db};

#[test]
fn bad_configuration_exits_64_naming_the_variable() {
    let secret_url = "postgresql+asyncpg://app:hunter2-secret@127.0.0.1:1/db";
    let cases: &[(&str, &[(&str, &str)], &str)] = &[
        (
            "worker",
            &[("WORKER_BATCH_SIZE", "lots")],
            "WORKER_BATCH_SIZE",
        ),
        (
            "worker",
            &[("WORKER_CONCURRENCY", "0")],
            "WORKER_CONCURRENCY",
        ),
        (
            "worker",
            &[("WORKER_POLL_INTERVAL_SECONDS", "-1")],
            "WORKER_POLL_INTERVAL_SECONDS",
        ),
        (
            "worker",
            &[("WORKER_LEASE_DURATION_SECONDS", "forever")],
            "WORKER_LEASE_DURATION_SECONDS",
        ),
        ("worker", &[("WORKER_QUEUES", "a b")], "WORKER_QUEUES"),
        (
            "worker",
            &[("WORKER_SHUTDOWN_TIMEOUT_SECONDS", "x")],
            "WORKER_SHUTDOWN_TIMEOUT_SECONDS",
        ),
        ("worker", &[("METRICS_LISTEN", "nope")], "METRICS_LISTEN"),
        (
            "reaper",
            &[("REAPER_INTERVAL_SECONDS", "0")],
            "REAPER_INTERVAL_SECONDS",
        ),
        (
            "reaper",
            &[("REAPER_RETENTION_HOURS", "-5")],
            "REAPER_RETENTION_HOURS",
        ),
        ("api", &[("API_LISTEN", "8000")], "API_LISTEN"),
        ("api", &[("REDIS_URL", "localhost:6379")], "REDIS_URL"),
        (
            "api",
            &[("API_BODY_LIMIT_BYTES", "1")],
            "API_BODY_LIMIT_BYTES",
        ),
        ("migrate", &[("LOG_LEVEL", "chatty")], "LOG_LEVEL"),
        ("migrate", &[("LOG_FORMAT", "xml")], "LOG_FORMAT"),
    ];
    for (sub, env, var) in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobqueue"));
        cmd.arg(sub).env_clear().env("DATABASE_URL", secret_url);
        for (k, v) in env.iter() {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{sub} {env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(var), "{stderr} should name {var}");
        assert!(!stderr.contains("hunter2"), "password leaked: {stderr}");
    }
    // DATABASE_URL missing or wrong.
    for (env, var) in [
        (None, "DATABASE_URL"),
        (Some("mysql://u:hunter2@h/db"), "DATABASE_URL"),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobqueue"));
        cmd.arg("worker").env_clear();
        if let Some(url) = env {
            cmd.env("DATABASE_URL", url);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(
            stderr.contains(var) && !stderr.contains("hunter2"),
            "{stderr}"
        );
    }
    // Unknown subcommand and stray arguments.
    for args in [vec!["frobnicate"], vec!["worker", "--queues=x"], vec![]] {
        let out = Command::new(env!("CARGO_BIN_EXE_jobqueue"))
            .args(&args)
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
    }
}

fn worker_env(db: &Db, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = vec![
        ("DATABASE_URL", db.url.clone()),
        ("WORKER_POLL_INTERVAL_SECONDS", "0.2".into()),
    ];
    for (k, v) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        env.push((k, v.to_string()));
    }
    env
}

/// SIGTERM with jobs in flight: the worker stops claiming, finishes what it
/// holds, exits 0; nothing runs twice, the rest stays queued untouched.
#[tokio::test]
async fn worker_sigterm_finishes_jobs_in_flight() {
    let db = Db::start().await;
    let q = db.queue();
    let jobs: Vec<NewJob> = (0..12)
        .map(|_| NewJob::new("sleep").payload(json!({"ms": 4000})))
        .collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let heartbeat = dir.path().join("heartbeat");
    let log = dir.path().join("worker.log");
    let env = worker_env(
        &db,
        &[
            ("WORKER_CONCURRENCY", "6"),
            ("WORKER_BATCH_SIZE", "6"),
            ("WORKER_SHUTDOWN_TIMEOUT_SECONDS", "20"),
            ("WORKER_HEARTBEAT_FILE", heartbeat.to_str().unwrap()),
        ],
    );
    let mut child = spawn_jobqueue("worker", &env, &log);
    assert!(
        eventually(Duration::from_secs(20), || db.count("status = 'running'")
            == 6)
        .await
    );
    // Heartbeat is being touched while the worker is busy.
    assert!(eventually(Duration::from_secs(5), || heartbeat.exists()).await);
    let m1 = std::fs::metadata(&heartbeat).unwrap().modified().unwrap();
    // Touched at most once a second: 2.5 s leaves room on a loaded machine.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let m2 = std::fs::metadata(&heartbeat).unwrap().modified().unwrap();
    assert!(m2 > m1, "heartbeat not refreshed while jobs run");

    common::sigterm(&child);
    let sent = Instant::now();
    let status =
        tokio::task::spawn_blocking(move || common::wait_exit(&mut child, Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("worker exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(sent.elapsed() < Duration::from_secs(20));
    // The six held jobs finished; the other six were never started.
    assert_eq!(db.count("status = 'succeeded'"), 6);
    assert_eq!(db.count("status = 'queued' AND attempts = 0"), 6);
    let starts = starts_per_job(std::slice::from_ref(&log));
    assert_eq!(starts.len(), 6);
    assert!(starts.values().all(|n| *n == 1), "{starts:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("stopped claiming"));
    assert!(text.contains("worker stopped"));
    assert!(!text.contains(&db.pg.password));
}

/// Jobs that cannot finish within the shutdown timeout are handed back:
/// queued again, attempt not counted, picked up by the next worker.
#[tokio::test]
async fn worker_hands_back_unfinished_jobs_on_shutdown_timeout() {
    let db = Db::start().await;
    let q = db.queue();
    let jobs: Vec<NewJob> = (0..3)
        .map(|_| NewJob::new("sleep").payload(json!({"ms": 60000})))
        .collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = worker_env(&db, &[("WORKER_SHUTDOWN_TIMEOUT_SECONDS", "1")]);
    let mut child = spawn_jobqueue("worker", &env, &dir.path().join("w.log"));
    assert!(
        eventually(Duration::from_secs(20), || db
            .count("status = 'running' AND attempts = 1")
            == 3)
        .await
    );
    common::sigterm(&child);
    // A second SIGTERM (berth's notify, then kubelet's) must not cut the drain short.
    tokio::time::sleep(Duration::from_millis(200)).await;
    common::sigterm(&child);
    let sent = Instant::now();
    let status =
        tokio::task::spawn_blocking(move || common::wait_exit(&mut child, Duration::from_secs(20)))
            .await
            .unwrap()
            .expect("worker exits");
    assert!(status.success(), "{status:?}");
    assert!(
        sent.elapsed() >= Duration::from_millis(700),
        "left before the shutdown timeout"
    );
    assert!(sent.elapsed() < Duration::from_secs(10));
    assert_eq!(
        db.count("status = 'queued' AND attempts = 0 AND lease_token IS NULL"),
        3
    );
    let text = std::fs::read_to_string(dir.path().join("w.log")).unwrap();
    assert!(text.contains("handed back"), "{text}");
}

/// At-least-once under chaos: thousands of jobs, workers killed with
/// SIGKILL again and again, PostgreSQL restarted once. Every job ends
/// `succeeded`, none is lost, and extra executions are bounded by what the
/// killed workers (and the workers cut off by the restart) held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_chaos_kill9_workers_and_restart_postgres() {
    const JOBS: usize = 3000;
    const WORKERS: usize = 3;
    const CONCURRENCY: usize = 16;
    const KILLS: usize = 6;
    let db = Db::start().await;
    let q = db.queue();
    // Every fifth job is grouped (60 groups of 10, one at a time per
    // group): the grouped claim path must lose nothing either.
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|i| {
            let job = NewJob::new("sleep")
                .payload(json!({"ms": 60 + (i % 7) * 20}))
                .max_attempts(100);
            if i % 5 == 0 {
                job.group(format!("g{}", (i / 5) % 60))
            } else {
                job
            }
        })
        .collect();
    for chunk in jobs.chunks(1000) {
        q.enqueue_batch(chunk).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let env = worker_env(
        &db,
        &[
            ("WORKER_CONCURRENCY", "16"),
            ("WORKER_BATCH_SIZE", "8"),
            ("WORKER_LEASE_DURATION_SECONDS", "3"),
            ("LOG_LEVEL", "info"),
        ],
    );
    let mut logs: Vec<PathBuf> = Vec::new();
    let spawn = |logs: &mut Vec<PathBuf>| {
        let log = dir.path().join(format!("worker-{}.log", logs.len()));
        let child = spawn_jobqueue("worker", &env, &log);
        logs.push(log);
        child
    };
    let mut workers: Vec<_> = (0..WORKERS).map(|_| spawn(&mut logs)).collect();
    let mut reaper = spawn_jobqueue(
        "reaper",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("REAPER_INTERVAL_SECONDS", "0.5".into()),
            ("REAPER_DEPTH_INTERVAL_SECONDS", "1".into()),
        ],
        &dir.path().join("reaper.log"),
    );
    let started = Instant::now();
    let mut kills = 0;
    let mut restarted = false;
    while kills < KILLS {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let victim = kills % WORKERS;
        workers[victim].kill().unwrap(); // SIGKILL
        workers[victim].wait().unwrap();
        kills += 1;
        workers[victim] = spawn(&mut logs);
        if kills == 3 && !restarted {
            let pg = &db.pg;
            tokio::task::block_in_place(|| pg.restart());
            restarted = true;
        }
    }
    let all_done = eventually(Duration::from_secs(90), || {
        db.count("status = 'succeeded'") == JOBS as i64
    })
    .await;
    let elapsed = started.elapsed();
    for w in &mut workers {
        common::sigterm(w);
    }
    common::sigterm(&reaper);
    for w in &mut workers {
        let _ = common::wait_exit(w, Duration::from_secs(20));
    }
    let _ = common::wait_exit(&mut reaper, Duration::from_secs(10));
    let summary = db.sql("SELECT status || ':' || count(*) FROM jobs GROUP BY status");
    assert!(
        all_done,
        "not every job succeeded after {elapsed:?}: {summary}"
    );
    assert_eq!(db.count("true"), JOBS as i64, "jobs lost or invented");

    let starts = starts_per_job(&logs);
    let ids: Vec<i64> = db
        .sql("SELECT id FROM jobs ORDER BY id")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let never_started: Vec<_> = ids.iter().filter(|id| !starts.contains_key(id)).collect();
    assert!(
        never_started.is_empty(),
        "succeeded without a logged start: {never_started:?}"
    );
    let executions: usize = starts.values().sum();
    let duplicates = executions - JOBS;
    // Each killed worker held at most CONCURRENCY unacknowledged jobs; the
    // restart may cost every live worker its held set once more.
    let bound = (KILLS + WORKERS) * CONCURRENCY;
    eprintln!(
        "chaos: {JOBS} jobs, {kills} kills, 1 PostgreSQL restart, {executions} executions, {duplicates} duplicates (bound {bound}), {elapsed:?}"
    );
    assert!(
        duplicates <= bound,
        "{duplicates} duplicate executions > bound {bound}"
    );
    let attempts_total: i64 = db.sql("SELECT sum(attempts) FROM jobs").parse().unwrap();
    assert!(attempts_total as usize >= JOBS);
}

/// The reaper process killed with SIGKILL while it leads: its successor
/// (a new process, as after a pod restart) takes the leadership once the
/// server ends the dead session, and its first pass sweeps every lease,
/// however long ago it expired (a running pass reads only the leases that
/// expired since its previous pass), and gives a lease time to a finished
/// row an older release left without one.
#[tokio::test]
async fn a_killed_reapers_successor_sweeps_every_expired_lease() {
    let db = Db::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("REAPER_INTERVAL_SECONDS", "0.2".into()),
    ];
    let running = |lease: &str| -> i64 {
        db.sql(&format!(
            "INSERT INTO jobs (kind, status, attempts, lease_token, lease_expires_at)
             VALUES ('noop', 'running', 1, 7, {lease}) RETURNING id"
        ))
        .parse()
        .unwrap()
    };
    let mut first = spawn_jobqueue("reaper", &env, &dir.path().join("first.log"));
    let just_expired = running("now() + interval '500 milliseconds'");
    assert!(
        eventually(Duration::from_secs(10), || db
            .has_status(just_expired, "queued"))
        .await,
        "the leader did not re-queue a lease that expired while it ran"
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let long_expired = running("now() - interval '3 hours'");
    let old_success: i64 = db
        .sql(
            "INSERT INTO jobs (kind, status, attempts, finished_at)
             VALUES ('noop', 'succeeded', 1, now() - interval '1 day') RETURNING id",
        )
        .parse()
        .unwrap();
    let mut successor = spawn_jobqueue("reaper", &env, &dir.path().join("successor.log"));
    assert!(
        eventually(Duration::from_secs(20), || db
            .has_status(long_expired, "queued"))
        .await,
        "the successor's first pass missed a lease that expired 3 hours ago"
    );
    assert_eq!(
        db.count(&format!(
            "id = {old_success} AND lease_expires_at = finished_at"
        )),
        1
    );
    common::sigterm(&successor);
    let status = common::wait_exit(&mut successor, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
