//! The features users of River, graphile-worker, pg-boss and Oban expect,
//! against a real PostgreSQL: groups (with several worker processes),
//! per-queue concurrency, pause/resume, timeouts, output and progress,
//! `?wait=`, expiring uniqueness, `enqueue_tx` and the `testing` helpers.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use jobqueue::api::{router, ApiState};
use jobqueue::config::{ApiConfig, Env};
use jobqueue::{JobContext, JobError, NewJob, Registry, Status, Worker, WorkerOptions};
use serde_json::{json, Value};
use tower::ServiceExt;

use common::{eventually, spawn_jobqueue, Db};

fn options(queues: &[&str]) -> WorkerOptions {
    WorkerOptions {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        concurrency: 4,
        poll_interval: Duration::from_millis(200),
        lease_duration: Duration::from_secs(30),
        shutdown_timeout: Duration::from_secs(5),
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_millis(200),
        ..Default::default()
    }
}

struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<Result<(), jobqueue::Error>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.handle.await.unwrap().unwrap();
    }
}

fn start(db: &Db, registry: Registry, opts: WorkerOptions) -> Running {
    let worker = Worker::new(&db.url, registry, opts).unwrap();
    let (stop, shutdown) = jobqueue::shutdown::Shutdown::manual();
    Running {
        stop,
        handle: tokio::spawn(worker.run(shutdown)),
    }
}

fn app(db: &Db) -> axum::Router {
    let cfg =
        ApiConfig::from_env(&Env::from_pairs([("API_REQUEST_TIMEOUT_SECONDS", "30")])).unwrap();
    router(
        ApiState::new(db.queue(), &cfg),
        cfg.body_limit,
        cfg.request_timeout,
    )
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// When a job ran: `(started_at, finished_at)`.
type Interval = (DateTime<Utc>, DateTime<Utc>);

/// `(started_at, finished_at)` of every succeeded job, by the given column.
fn intervals(db: &Db, key: &str, filter: &str) -> HashMap<String, Vec<Interval>> {
    let out = db.sql(&format!(
        "SELECT string_agg({key} || '|' || started_at || '|' || finished_at, E'\\n')
         FROM jobs WHERE status = 'succeeded' AND {filter}"
    ));
    let mut map: HashMap<String, Vec<_>> = HashMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.split('|');
        let k = parts.next().unwrap().to_string();
        let parse = |s: &str| {
            DateTime::parse_from_str(&format!("{s}:00"), "%Y-%m-%d %H:%M:%S%.f%:z")
                .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z"))
                .unwrap()
                .with_timezone(&Utc)
        };
        let a = parse(parts.next().unwrap());
        let b = parse(parts.next().unwrap());
        map.entry(k).or_default().push((a, b));
    }
    map
}

/// The most intervals open at one instant.
fn max_overlap(iv: &[Interval]) -> usize {
    let mut events: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for (a, b) in iv {
        events.push((*a, 1));
        events.push((*b, -1));
    }
    // Ends before starts at the same instant: touching is not overlapping.
    events.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in events {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

/// Three worker processes, 8 slots each, four groups of 8 jobs: no group
/// ever has two jobs running at once (their `started_at`..`finished_at`
/// intervals never overlap), with `WORKER_GROUP_CONCURRENCY=2` never
/// three, and ungrouped jobs run beside them.
#[tokio::test]
async fn serial_group_limits_hold_across_worker_processes() {
    let db = Db::start().await;
    let q = db.queue();
    let dir = tempfile::tempdir().unwrap();
    for (limit, queue) in [(1, "g1"), (2, "g2")] {
        let mut jobs = Vec::new();
        for g in 0..4 {
            for _ in 0..8 {
                jobs.push(
                    NewJob::new("sleep")
                        .queue(queue)
                        .group(format!("tenant-{g}"))
                        .payload(json!({"ms": 60})),
                );
            }
        }
        for _ in 0..20 {
            jobs.push(NewJob::new("sleep").queue(queue).payload(json!({"ms": 30})));
        }
        q.enqueue_batch(&jobs).await.unwrap();
        let mut workers: Vec<_> = (0..3)
            .map(|i| {
                spawn_jobqueue(
                    "worker",
                    &[
                        ("DATABASE_URL", db.url.clone()),
                        ("WORKER_QUEUES", queue.to_string()),
                        ("WORKER_CONCURRENCY", "8".into()),
                        ("WORKER_GROUP_CONCURRENCY", limit.to_string()),
                        ("WORKER_POLL_INTERVAL_SECONDS", "0.5".into()),
                    ],
                    &dir.path().join(format!("{queue}-{i}.log")),
                )
            })
            .collect();
        let done = eventually(Duration::from_secs(60), || {
            db.count(&format!("queue = '{queue}' AND status = 'succeeded'")) == 52
        })
        .await;
        for w in &mut workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        assert!(
            done,
            "not all jobs of {queue} succeeded: {}",
            db.sql("SELECT status, count(*) FROM jobs GROUP BY 1")
        );
        let per_group = intervals(
            &db,
            "group_key",
            &format!("queue = '{queue}' AND group_key IS NOT NULL"),
        );
        assert_eq!(per_group.len(), 4);
        for (g, iv) in &per_group {
            assert_eq!(iv.len(), 8);
            let overlap = max_overlap(iv);
            assert!(
                overlap <= limit,
                "{queue}: group {g} ran {overlap} at once (limit {limit}): {iv:?}"
            );
        }
        // Across groups, jobs did run in parallel (the limit is per group).
        let all: Vec<_> = per_group.values().flatten().copied().collect();
        assert!(max_overlap(&all) >= 2, "groups never ran side by side");
        // Every job ran on one of the processes exactly once.
        let starts = common::starts_per_job(
            &(0..3)
                .map(|i| dir.path().join(format!("{queue}-{i}.log")))
                .collect::<Vec<_>>(),
        );
        assert!(
            starts.values().all(|n| *n == 1),
            "a job ran twice: {starts:?}"
        );
    }
}

/// Groups of one queue take turns: a tenant that enqueued 30 jobs first
/// does not hold back one that enqueued 3 after it.
#[tokio::test]
async fn groups_share_a_queue_fairly() {
    let db = Db::start().await;
    let q = db.queue();
    let big: Vec<NewJob> = (0..30)
        .map(|_| NewJob::new("sleep").group("big").payload(json!({"ms": 20})))
        .collect();
    q.enqueue_batch(&big).await.unwrap();
    let small: Vec<NewJob> = (0..3)
        .map(|_| {
            NewJob::new("sleep")
                .group("small")
                .payload(json!({"ms": 20}))
        })
        .collect();
    q.enqueue_batch(&small).await.unwrap();
    let w = start(
        &db,
        Registry::with_builtins(),
        WorkerOptions {
            concurrency: 2,
            ..options(&["default"])
        },
    );
    assert!(
        eventually(Duration::from_secs(30), || db.count("status = 'succeeded'")
            == 33)
        .await
    );
    w.stop().await;
    // The small tenant's last job finished before the big one's 10th.
    let small_last = db.sql("SELECT max(finished_at) FROM jobs WHERE group_key = 'small'");
    let big_10th = db.sql("SELECT finished_at FROM jobs WHERE group_key = 'big' ORDER BY finished_at OFFSET 9 LIMIT 1");
    assert!(
        small_last < big_10th,
        "small group waited: {small_last} vs {big_10th}"
    );
}

/// Group fetchers are woken by `NOTIFY jobqueue, 'group'` sent by the code
/// (migration 5 dropped the row triggers that used to send it): with a poll
/// interval of a minute, only the wake-ups can make these jobs run within
/// seconds. Covered: a grouped insert (single and batch), a grouped job's
/// completion freeing its group's place for the other worker, and a
/// running grouped job cancelled through the API.
#[tokio::test]
async fn group_places_are_announced_without_waiting_for_the_poll() {
    let db = Db::start().await;
    let q = db.queue();
    let slow_poll = || WorkerOptions {
        concurrency: 2,
        group_concurrency: 1,
        poll_interval: Duration::from_secs(60),
        ..options(&["default"])
    };
    let a = start(&db, Registry::with_builtins(), slow_poll());
    let b = start(&db, Registry::with_builtins(), slow_poll());
    // Both workers have looked once and are asleep until a NOTIFY.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let t = Instant::now();
    q.enqueue(&NewJob::new("sleep").group("g").payload(json!({"ms": 200})))
        .await
        .unwrap();
    q.enqueue_batch(&[
        NewJob::new("sleep").group("g").payload(json!({"ms": 200})),
        NewJob::new("sleep").group("g").payload(json!({"ms": 200})),
    ])
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || db.count("status = 'succeeded'")
            == 3)
        .await,
        "grouped jobs waited for the poll: {} succeeded after {:?}",
        db.count("status = 'succeeded'"),
        t.elapsed()
    );
    // One at a time (limit 1), each started right after the previous one.
    let iv = intervals(&db, "group_key", "true");
    assert_eq!(max_overlap(&iv["g"]), 1, "group limit held");

    // A running grouped job cancelled: its place is free at once.
    let (long, _) = q
        .enqueue(
            &NewJob::new("sleep")
                .group("h")
                .payload(json!({"ms": 30000})),
        )
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || db
            .has_status(long.id, "running"))
        .await
    );
    let (next, _) = q
        .enqueue(&NewJob::new("sleep").group("h").payload(json!({"ms": 10})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        db.has_status(next.id, "queued"),
        "the group's only place is taken"
    );
    q.cancel(long.id).await.unwrap();
    assert!(
        eventually(Duration::from_secs(20), || db
            .has_status(next.id, "succeeded"))
        .await,
        "the cancelled job's place was not announced"
    );
    a.stop().await;
    b.stop().await;
}

/// `WORKER_QUEUES=bulk:2,mail:1`: each queue has its own slots; a flood
/// in `bulk` never delays `mail`, and neither exceeds its concurrency.
#[tokio::test]
async fn queues_have_their_own_concurrency() {
    let db = Db::start().await;
    let q = db.queue();
    let bulk: Vec<NewJob> = (0..12)
        .map(|_| {
            NewJob::new("sleep")
                .queue("bulk")
                .payload(json!({"ms": 150}))
        })
        .collect();
    q.enqueue_batch(&bulk).await.unwrap();
    let opts = WorkerOptions {
        queues: vec![],
        queue_concurrency: vec![("bulk".into(), 2), ("mail".into(), 1)],
        ..options(&[])
    };
    let w = start(&db, Registry::with_builtins(), opts);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mail, _) = q
        .enqueue(
            &NewJob::new("sleep")
                .queue("mail")
                .payload(json!({"ms": 10})),
        )
        .await
        .unwrap();
    let t0 = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || db
            .has_status(mail.id, "succeeded"))
        .await
    );
    let mail_latency = t0.elapsed();
    assert!(
        eventually(Duration::from_secs(30), || db.count("status = 'succeeded'")
            == 13)
        .await
    );
    w.stop().await;
    assert!(
        db.count(
            "queue = 'bulk' AND finished_at < (SELECT finished_at FROM jobs WHERE queue = 'mail')"
        ) < 12,
        "mail waited for the whole bulk queue"
    );
    assert!(
        mail_latency < Duration::from_secs(2),
        "mail took {mail_latency:?}"
    );
    let bulk_iv = intervals(&db, "queue", "queue = 'bulk'");
    assert!(max_overlap(&bulk_iv["bulk"]) <= 2);
    assert_eq!(
        max_overlap(&bulk_iv["bulk"]),
        2,
        "bulk never used its 2 slots"
    );
}

/// Pause: no claim from the queue (ungrouped or grouped) by any of two
/// worker processes until resume; then the jobs run within a second or two.
#[tokio::test]
async fn serial_paused_queue_is_never_claimed_from() {
    let db = Db::start().await;
    let app = app(&db);
    let dir = tempfile::tempdir().unwrap();
    let mut workers: Vec<_> = (0..2)
        .map(|i| {
            spawn_jobqueue(
                "worker",
                &[
                    ("DATABASE_URL", db.url.clone()),
                    ("WORKER_QUEUES", "default,other".into()),
                    ("WORKER_POLL_INTERVAL_SECONDS", "0.2".into()),
                ],
                &dir.path().join(format!("w{i}.log")),
            )
        })
        .collect();
    let (s, v) = call(&app, "POST", "/api/v1/queues/default/pause", None).await;
    assert_eq!(
        (s, &v),
        (StatusCode::OK, &json!({"queue": "default", "paused": true}))
    );
    let (s, _) = call(&app, "POST", "/api/v1/queues/default/pause", None).await;
    assert_eq!(s, StatusCode::OK, "pause is idempotent");
    for body in [
        json!({"kind": "noop"}),
        json!({"kind": "noop", "group": "g"}),
        json!({"kind": "noop", "queue": "other"}),
    ] {
        assert_eq!(
            call(&app, "POST", "/api/v1/jobs", Some(body)).await.0,
            StatusCode::CREATED
        );
    }
    assert!(
        eventually(Duration::from_secs(10), || db
            .count("queue = 'other' AND status = 'succeeded'")
            == 1)
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        db.count("queue = 'default' AND status = 'queued' AND attempts = 0"),
        2,
        "a paused queue was claimed from"
    );
    let (_, queues) = call(&app, "GET", "/api/v1/queues", None).await;
    let default = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "default")
        .unwrap()
        .clone();
    assert_eq!(default["paused"], true);
    assert_eq!(default["depth"], 2);
    // A paused queue without jobs is listed too.
    call(&app, "POST", "/api/v1/queues/empty/pause", None).await;
    let (_, queues) = call(&app, "GET", "/api/v1/queues", None).await;
    assert!(queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["queue"] == "empty" && q["paused"] == true));
    let t0 = Instant::now();
    let (s, v) = call(&app, "POST", "/api/v1/queues/default/resume", None).await;
    assert_eq!(
        (s, &v),
        (
            StatusCode::OK,
            &json!({"queue": "default", "paused": false})
        )
    );
    assert!(
        eventually(Duration::from_secs(10), || db
            .count("queue = 'default' AND status = 'succeeded'")
            == 2)
        .await
    );
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "resume took {:?}",
        t0.elapsed()
    );
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    // Hostile queue names in the path: 400 naming the field.
    for bad in ["bad%20queue", "a:b", "%00"] {
        let (s, v) = call(&app, "POST", &format!("/api/v1/queues/{bad}/pause"), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("queue:"),
            "{v}"
        );
    }
}

/// A handler past its `timeout_seconds` is aborted; the attempt counts
/// and fails with error kind `timeout`; the last attempt makes it dead.
#[tokio::test]
async fn timed_out_handler_is_aborted_and_its_attempt_counted() {
    let db = Db::start().await;
    let q = db.queue();
    let finished = Arc::new(Mutex::new(0));
    let seen = finished.clone();
    let registry = Registry::with_builtins().register("slow", move |_ctx: JobContext| {
        let seen = seen.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            *seen.lock().unwrap() += 1;
            Ok(())
        }
    });
    let (job, _) = q
        .enqueue(&NewJob::new("slow").timeout_seconds(1).max_attempts(2))
        .await
        .unwrap();
    let w = start(&db, registry, options(&["default"]));
    let t0 = Instant::now();
    assert!(eventually(Duration::from_secs(20), || db.has_status(job.id, "dead")).await);
    let took = t0.elapsed();
    w.stop().await;
    let job = q.get(job.id).await.unwrap();
    assert_eq!(job.attempts, 2);
    assert!(
        job.last_error.as_deref().unwrap().starts_with("timeout:"),
        "{:?}",
        job.last_error
    );
    assert!(
        took < Duration::from_secs(15),
        "two 1 s timeouts took {took:?}"
    );
    assert_eq!(*finished.lock().unwrap(), 0, "the handler ran to its end");
}

/// The database takes exactly the timeouts the API takes (one range:
/// `MAX_TIMEOUT_SECONDS`, and migration 7's function): plain SQL that
/// writes a value outside it, on INSERT or on UPDATE, fails with the
/// CHECK's SQLSTATE and name; NULL (no timeout) and both ends pass.
#[tokio::test]
async fn the_database_takes_the_timeouts_the_api_takes() {
    let db = Db::start().await;
    let q = db.queue();
    let client = q.pool().get().await.unwrap();
    let max = jobqueue::job::MAX_TIMEOUT_SECONDS;
    for ok in [None, Some(1), Some(max)] {
        client
            .execute(
                "INSERT INTO jobs (kind, timeout_seconds) VALUES ('noop', $1)",
                &[&ok],
            )
            .await
            .unwrap_or_else(|e| panic!("{ok:?} refused: {e}"));
    }
    let id: i64 = db.sql("SELECT min(id) FROM jobs").parse().unwrap();
    for bad in [0, -1, max + 1, i32::MAX, i32::MIN] {
        for sql in [
            "INSERT INTO jobs (kind, timeout_seconds) VALUES ('noop', $1)",
            "UPDATE jobs SET timeout_seconds = $1 WHERE id = $2",
        ] {
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                if sql.starts_with("UPDATE") {
                    vec![&bad, &id]
                } else {
                    vec![&bad]
                };
            let err = client.execute(sql, &params).await.expect_err(sql);
            let db_err = err.as_db_error().expect("a database error");
            assert_eq!(
                db_err.code(),
                &tokio_postgres::error::SqlState::CHECK_VIOLATION,
                "{bad}: {sql}"
            );
            assert_eq!(
                db_err.constraint(),
                Some("jobs_timeout_seconds_check"),
                "{bad}: {sql}"
            );
        }
    }
    assert_eq!(db.count("true"), 3);
    assert_eq!(db.count("timeout_seconds IS NULL"), 1);
}

/// Output (returned, or `echo`), progress (seen while running), and
/// `started_at`, through the API; `?wait=` answers when the job ends.
#[tokio::test]
async fn output_progress_started_at_and_wait() {
    let db = Db::start().await;
    let app = app(&db);
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let registry =
        Registry::with_builtins().register_returning("report", move |ctx: JobContext| {
            let mut release = release_rx.clone();
            async move {
                ctx.set_progress(json!({"done": 1, "total": 2})).await?;
                while !*release.borrow() {
                    release
                        .changed()
                        .await
                        .map_err(|_| JobError::retry("gone"))?;
                }
                Ok(json!({"sum": 42, "text": "<b>ok</b>"}))
            }
        });
    let w = start(&db, registry, options(&["default"]));
    let (_, job) = call(
        &app,
        "POST",
        "/api/v1/jobs",
        Some(json!({"kind": "report"})),
    )
    .await;
    let id = job["id"].as_i64().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || db
            .count(&format!("id = {id} AND progress IS NOT NULL"))
            == 1)
        .await
    );
    // ?wait= on a running job: answers when the wait ends.
    let t0 = Instant::now();
    let (s, running) = call(&app, "GET", &format!("/api/v1/jobs/{id}?wait=700ms"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        t0.elapsed() >= Duration::from_millis(650),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(running["status"], "running");
    assert_eq!(running["progress"], json!({"done": 1, "total": 2}));
    assert!(running["started_at"].as_str().is_some());
    assert_eq!(
        running["started_at"], running["updated_at"],
        "a progress report does not move a running job's stamps"
    );
    assert!(running["output"].is_null());
    // ?wait= answers as soon as it finishes.
    let waiter = {
        let app = app.clone();
        tokio::spawn(async move {
            call(&app, "GET", &format!("/api/v1/jobs/{id}?wait=20s"), None).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    release_tx.send(true).unwrap();
    let (s, done) = waiter.await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["output"], json!({"sum": 42, "text": "<b>ok</b>"}));
    assert_eq!(
        done["started_at"], running["started_at"],
        "the attempt's start outlives it"
    );
    // echo: output = payload (ungrouped and grouped).
    for body in [
        json!({"kind": "echo", "payload": {"x": [1, "two"]}}),
        json!({"kind": "echo", "group": "g", "payload": {"x": 3}}),
    ] {
        let (_, job) = call(&app, "POST", "/api/v1/jobs", Some(body.clone())).await;
        let (_, done) = call(
            &app,
            "GET",
            &format!("/api/v1/jobs/{}?wait=10s", job["id"]),
            None,
        )
        .await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["output"], body["payload"]);
        assert!(done["started_at"].as_str().unwrap() <= done["finished_at"].as_str().unwrap());
    }
    w.stop().await;
    // Bad waits and unknown parameters: 400 naming the field.
    for bad in ["wait=soon", "wait=-1s", "wait=1h", "bogus=1"] {
        let (s, v) = call(&app, "GET", &format!("/api/v1/jobs/{id}?{bad}"), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
}

/// Every way an attempt ends keeps when it started (the claim's stamp,
/// shown as `started_at` while it runs): completion (alone, with output,
/// or in the fetcher's store-and-claim statement), failure (retried and
/// dead), cancellation and lease expiry. A job never claimed has none.
#[tokio::test]
async fn every_end_of_an_attempt_keeps_its_start() {
    let db = Db::start().await;
    let q = db.queue();
    let queues = vec!["default".to_string()];
    let mut ids = Vec::new();
    for i in 0..8 {
        let job = NewJob::new("noop").max_attempts(if i == 4 { 1 } else { 3 });
        ids.push(q.enqueue(&job).await.unwrap().0.id);
    }
    let never = q.enqueue(&NewJob::new("noop")).await.unwrap().0;
    assert_eq!(never.started_at, None, "a queued job has not started");
    let mut claimed = q
        .claim(&queues, 7, Duration::from_secs(60), "w1")
        .await
        .unwrap();
    claimed.sort_by_key(|c| c.id);
    assert_eq!(claimed.len(), 7);
    let mut started = HashMap::new();
    for c in &claimed {
        let job = q.get(c.id).await.unwrap();
        assert_eq!(job.status, Status::Running);
        let at = job.started_at.expect("a running job has started");
        assert_eq!(at, job.updated_at);
        started.insert(c.id, at);
    }
    // Time passes between the claim and each end.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let lease = |c: &jobqueue::ClaimedJob| (c.id, c.lease_token);
    assert_eq!(q.complete(&[lease(&claimed[0])]).await.unwrap().len(), 1);
    let output = json!({"ok": true});
    let with_output = [(claimed[1].id, claimed[1].lease_token, &output)];
    assert_eq!(q.complete_with_output(&with_output).await.unwrap().len(), 1);
    let failure = |c: &jobqueue::ClaimedJob| jobqueue::queue::Failure {
        id: c.id,
        lease_token: c.lease_token,
        error: "boom".into(),
        retry_in: Duration::from_secs(60),
        permanent: false,
    };
    let failed = q
        .fail(&[failure(&claimed[2]), failure(&claimed[4])])
        .await
        .unwrap();
    let mut statuses: Vec<Status> = failed.iter().map(|f| f.1).collect();
    statuses.sort_by_key(|s| s.to_string());
    assert_eq!(statuses, [Status::Dead, Status::Queued]);
    assert_eq!(
        q.cancel(claimed[3].id).await.unwrap().status,
        Status::Cancelled
    );
    // The store-and-claim statement ends claimed[5] and claims the next job.
    let (more, done) = q
        .claim_and_complete(
            &queues,
            1,
            Duration::from_secs(60),
            "w1",
            &[lease(&claimed[5])],
            None,
        )
        .await
        .unwrap();
    assert_eq!(done, [claimed[5].id]);
    assert_eq!(more.len(), 1);
    // claimed[6]: its lease runs out and the reaper takes it back.
    db.sql(&format!(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = {}",
        claimed[6].id
    ));
    assert_eq!(q.reap_expired().await.unwrap(), (1, 0));
    for c in &claimed {
        let job = q.get(c.id).await.unwrap();
        assert_ne!(job.status, Status::Running, "job {}", c.id);
        assert_eq!(
            job.started_at,
            Some(started[&c.id]),
            "job {}: {:?}",
            c.id,
            job.status
        );
        assert!(job.updated_at > started[&c.id], "job {}", c.id);
    }
    assert_eq!(q.get(never.id).await.unwrap().started_at, None);
}

/// `unique_while` frees the key when the job leaves those states;
/// `unique_for_seconds` frees it after the period.
#[tokio::test]
async fn expiring_uniqueness() {
    let db = Db::start().await;
    let app = app(&db);
    let body =
        json!({"kind": "noop", "idempotency_key": "k1", "unique_while": ["queued", "running"]});
    let (s1, a) = call(&app, "POST", "/api/v1/jobs", Some(body.clone())).await;
    let (s2, b) = call(&app, "POST", "/api/v1/jobs", Some(body.clone())).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a["id"], b["id"]);
    assert_eq!(a["unique_while"], json!(["queued", "running"]));
    let w = start(&db, Registry::with_builtins(), options(&["default"]));
    assert!(
        eventually(Duration::from_secs(10), || db.count("status = 'succeeded'")
            == 1)
        .await
    );
    w.stop().await;
    let (s3, c) = call(&app, "POST", "/api/v1/jobs", Some(body.clone())).await;
    assert_eq!(s3, StatusCode::CREATED, "{c}");
    assert_ne!(c["id"], a["id"]);
    // A different job under a live key: 409.
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/jobs",
        Some(json!({"kind": "echo", "idempotency_key": "k1", "unique_while": ["queued"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    let timed = json!({"kind": "noop", "idempotency_key": "k2", "unique_for_seconds": 1});
    let (_, a) = call(&app, "POST", "/api/v1/jobs", Some(timed.clone())).await;
    let (s, b) = call(&app, "POST", "/api/v1/jobs", Some(timed.clone())).await;
    assert_eq!((s, &a["id"]), (StatusCode::OK, &b["id"]));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (s, c) = call(&app, "POST", "/api/v1/jobs", Some(timed.clone())).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(c["id"], a["id"]);
    // The default stays: a key is unique for ever.
    let plain = json!({"kind": "noop", "idempotency_key": "k3"});
    call(&app, "POST", "/api/v1/jobs", Some(plain.clone())).await;
    assert_eq!(
        call(&app, "POST", "/api/v1/jobs", Some(plain)).await.0,
        StatusCode::OK
    );
    assert_eq!(db.count("idempotency_key = 'k3'"), 1);
}

/// A job that left its `unique_while` statuses gave its key to a newer job
/// (the enqueue took it), and comes back to them without a unique
/// violation: retried after a failure, re-queued by the reaper. The newer
/// job keeps the key. (Before migration 6 the index tested the status, and
/// those UPDATEs failed, with their whole batch.)
#[tokio::test]
async fn a_job_that_gave_its_key_away_comes_back_without_a_conflict() {
    let db = Db::start().await;
    let q = db.queue();
    let queues = vec!["default".to_string()];
    let job = NewJob::new("noop")
        .idempotency_key("k")
        .unique_while(&[Status::Queued])
        .max_attempts(5);
    let (old, inserted) = q.enqueue(&job).await.unwrap();
    assert!(inserted);
    let (same, inserted) = q.enqueue(&job).await.unwrap();
    assert_eq!(
        (same.id, inserted),
        (old.id, false),
        "queued: the key is held"
    );
    let claimed = q
        .claim(&queues, 1, Duration::from_secs(60), "w1")
        .await
        .unwrap();
    assert_eq!(claimed[0].id, old.id);
    // Running is outside unique_while: the next enqueue takes the key.
    let (new, inserted) = q.enqueue(&job).await.unwrap();
    assert!(inserted);
    assert_ne!(new.id, old.id);
    assert_eq!(q.get(old.id).await.unwrap().idempotency_key, None);
    assert_eq!(
        q.get(new.id).await.unwrap().idempotency_key.as_deref(),
        Some("k")
    );
    // The old job fails and is queued again, next to the new one.
    let failed = q
        .fail(&[jobqueue::queue::Failure {
            id: old.id,
            lease_token: claimed[0].lease_token,
            error: "boom".into(),
            retry_in: Duration::ZERO,
            permanent: false,
        }])
        .await
        .unwrap();
    assert_eq!(failed, [(old.id, Status::Queued)]);
    // Both run; their leases run out; the reaper queues both again.
    let both = q
        .claim(&queues, 2, Duration::from_secs(60), "w1")
        .await
        .unwrap();
    assert_eq!(both.len(), 2);
    db.sql("UPDATE jobs SET lease_expires_at = now() - interval '1 second'");
    assert_eq!(q.reap_expired().await.unwrap(), (2, 0));
    assert_eq!(db.count("status = 'queued'"), 2);
    // The key stayed with the new job: the same request finds it.
    let (again, inserted) = q.enqueue(&job).await.unwrap();
    assert_eq!((again.id, inserted), (new.id, false));
    assert_eq!(db.count("idempotency_key = 'k'"), 1);
}

/// Every new field answers 400 naming it, never 5xx.
#[tokio::test]
async fn new_fields_reject_what_they_cannot_take() {
    let db = Db::start().await;
    let app = app(&db);
    let cases = [
        (json!({"kind": "noop", "group": "a b"}), "group:"),
        (json!({"kind": "noop", "group": ""}), "group:"),
        (json!({"kind": "noop", "group": "x\u{0}y"}), "group:"),
        (json!({"kind": "noop", "group": 7}), "group"),
        (
            json!({"kind": "noop", "timeout_seconds": 0}),
            "timeout_seconds:",
        ),
        (
            json!({"kind": "noop", "timeout_seconds": -1}),
            "timeout_seconds:",
        ),
        (
            json!({"kind": "noop", "timeout_seconds": 1e20}),
            "timeout_seconds:",
        ),
        (
            json!({"kind": "noop", "timeout_seconds": "5"}),
            "timeout_seconds:",
        ),
        (
            json!({"kind": "noop", "timeout_seconds": 604801}),
            "timeout_seconds:",
        ),
        (
            json!({"kind": "noop", "idempotency_key": "k", "unique_while": ["bogus"]}),
            "unique_while:",
        ),
        (
            json!({"kind": "noop", "idempotency_key": "k", "unique_while": []}),
            "unique_while:",
        ),
        (
            json!({"kind": "noop", "idempotency_key": "k", "unique_while": "queued"}),
            "unique_while:",
        ),
        (
            json!({"kind": "noop", "unique_while": ["queued"]}),
            "unique_while:",
        ),
        (
            json!({"kind": "noop", "unique_for_seconds": 5}),
            "unique_for_seconds:",
        ),
        (
            json!({"kind": "noop", "idempotency_key": "k", "unique_for_seconds": 0}),
            "unique_for_seconds:",
        ),
        (
            json!({"kind": "noop", "idempotency_key": "k", "unique_for_seconds": 99999999999i64}),
            "unique_for_seconds:",
        ),
        (json!({"kind": "noop", "queue": "a:b"}), "queue:"),
    ];
    for (body, field) in cases {
        let (s, v) = call(&app, "POST", "/api/v1/jobs", Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{body}: {msg}");
        let (s, v) = call(
            &app,
            "POST",
            "/api/v1/jobs/batch",
            Some(json!({"jobs": [body.clone()]})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "batch {body}: {v}");
    }
    for bad in ["kind=a%20b", "kind=%00"] {
        let (s, v) = call(&app, "GET", &format!("/api/v1/jobs?{bad}"), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().starts_with("kind:"));
    }
    // kind filter works.
    call(&app, "POST", "/api/v1/jobs", Some(json!({"kind": "echo"}))).await;
    call(&app, "POST", "/api/v1/jobs", Some(json!({"kind": "noop"}))).await;
    let (_, v) = call(&app, "GET", "/api/v1/jobs?kind=echo", None).await;
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["kind"], "echo");
}

/// `enqueue_tx`: the job exists exactly when the caller's transaction
/// commits; `testing::work_off` runs it inline.
#[tokio::test]
async fn enqueue_in_the_callers_transaction_and_testing_helpers() {
    let db = Db::start().await;
    let queue = db.queue();
    let mut client = queue.pool().get().await.unwrap();
    client
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY)")
        .await
        .unwrap();
    {
        let tx = client.transaction().await.unwrap();
        tx.execute("INSERT INTO orders VALUES (1)", &[])
            .await
            .unwrap();
        jobqueue::enqueue_tx(&*tx, &NewJob::new("echo").payload(json!({"order": 1})))
            .await
            .unwrap();
        tx.rollback().await.unwrap();
    }
    assert_eq!(db.count("true"), 0, "a rolled-back enqueue left a job");
    {
        let tx = client.transaction().await.unwrap();
        tx.execute("INSERT INTO orders VALUES (2)", &[])
            .await
            .unwrap();
        let (job, created) = jobqueue::enqueue_tx(
            &*tx,
            &NewJob::new("echo")
                .payload(json!({"order": 2}))
                .idempotency_key("order-2"),
        )
        .await
        .unwrap();
        assert!(created);
        // Visible inside the transaction, not outside it yet.
        assert_eq!(db.count("true"), 0);
        let (again, created) = jobqueue::enqueue_tx(
            &*tx,
            &NewJob::new("echo")
                .payload(json!({"order": 2}))
                .idempotency_key("order-2"),
        )
        .await
        .unwrap();
        assert_eq!((again.id, created), (job.id, false));
        tx.commit().await.unwrap();
    }
    let registry = Registry::with_builtins().register("flaky", |ctx: JobContext| async move {
        if ctx.attempt < 2 {
            Err(JobError::retry("first attempt fails"))
        } else {
            Ok(())
        }
    });
    let echo_jobs = jobqueue::testing::enqueued(&queue, "echo").await.unwrap();
    assert_eq!(echo_jobs.len(), 1);
    queue.enqueue(&NewJob::new("flaky")).await.unwrap();
    queue
        .enqueue(
            &NewJob::new("fail")
                .payload(json!({"times": 9}))
                .max_attempts(2),
        )
        .await
        .unwrap();
    let report = jobqueue::testing::work_off(&queue, &registry, &["default"])
        .await
        .unwrap();
    assert_eq!(
        report,
        jobqueue::testing::WorkOff {
            succeeded: 2,
            failed: 3,
            dead: 1
        }
    );
    assert_eq!(
        queue.get(echo_jobs[0].id).await.unwrap().output,
        Some(json!({"order": 2}))
    );
    assert_eq!(
        jobqueue::testing::run(&registry, "echo", json!([1]))
            .await
            .unwrap(),
        Some(json!([1]))
    );
    assert!(jobqueue::testing::run(&registry, "nope", json!({}))
        .await
        .is_err());
    let st = queue.get(echo_jobs[0].id).await.unwrap().status;
    assert_eq!(st, Status::Succeeded);
}
