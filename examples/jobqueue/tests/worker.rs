//! Worker, lease and reaper semantics against a real PostgreSQL, with
//! workers running in-process (custom kinds record what ran).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use jobqueue::{JobContext, JobError, NewJob, Registry, Status, Worker, WorkerOptions};
use serde_json::json;

use common::{eventually, Db};

fn options(queues: &[&str]) -> WorkerOptions {
    WorkerOptions {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        concurrency: 4,
        batch_size: 4,
        poll_interval: Duration::from_millis(100),
        lease_duration: Duration::from_secs(30),
        shutdown_timeout: Duration::from_secs(5),
        retry_base: Duration::from_millis(200),
        retry_max: Duration::from_secs(5),
        ..Default::default()
    }
}

struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<Result<(), jobqueue::Error>>,
    metrics: Arc<jobqueue::metrics::Metrics>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.handle.await.unwrap().unwrap();
    }
}

fn start(db: &Db, registry: Registry, opts: WorkerOptions) -> Running {
    let worker = Worker::new(&db.url, registry, opts).unwrap();
    let metrics = worker.metrics();
    let (stop, shutdown) = jobqueue::shutdown::Shutdown::manual();
    Running {
        stop,
        handle: tokio::spawn(worker.run(shutdown)),
        metrics,
    }
}

/// Waits up to `within` for `n` jobs to have succeeded; fails the test
/// with the count reached otherwise.
async fn until_succeeded(db: &Db, n: i64, within: Duration) {
    assert!(
        eventually(within, || db.count("status = 'succeeded'") == n).await,
        "{} of {n} succeeded",
        db.count("status = 'succeeded'")
    );
}

/// The versions of every migration from the `applied`-th on, in order:
/// what an upgrade from a database with `applied` migrations applies.
fn versions_after(applied: usize) -> Vec<i32> {
    jobqueue::migrate::MIGRATIONS[applied..]
        .iter()
        .map(|m| m.0)
        .collect()
}

async fn status_of(q: &jobqueue::Queue, id: i64) -> jobqueue::Job {
    q.get(id).await.unwrap()
}

#[tokio::test]
async fn worker_runs_by_priority_then_run_at() {
    let db = Db::start().await;
    let q = db.queue();
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    let registry = Registry::new().register("record", move |ctx: JobContext| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .push(ctx.payload["n"].as_i64().unwrap());
            Ok(())
        }
    });
    let t0 = Utc::now() - chrono::Duration::seconds(10);
    let jobs = vec![
        NewJob::new("record")
            .payload(json!({"n": 1}))
            .priority(0)
            .run_at(t0),
        NewJob::new("record")
            .payload(json!({"n": 2}))
            .priority(5)
            .run_at(t0 + chrono::Duration::seconds(2)),
        NewJob::new("record")
            .payload(json!({"n": 3}))
            .priority(5)
            .run_at(t0 + chrono::Duration::seconds(1)),
        NewJob::new("record")
            .payload(json!({"n": 4}))
            .priority(-3)
            .run_at(t0),
        NewJob::new("record")
            .payload(json!({"n": 5}))
            .priority(10)
            .run_at(t0 + chrono::Duration::seconds(5)),
        // Another queue: not ours.
        NewJob::new("record")
            .payload(json!({"n": 6}))
            .queue("other"),
    ];
    q.enqueue_batch(&jobs).await.unwrap();
    let mut opts = options(&["default"]);
    opts.concurrency = 1;
    opts.batch_size = 1;
    let w = start(&db, registry, opts);
    assert!(eventually(Duration::from_secs(20), || order.lock().unwrap().len() == 5).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*order.lock().unwrap(), vec![5, 3, 2, 1, 4]);
    w.stop().await;
    assert_eq!(db.count("status = 'succeeded'"), 5);
    assert_eq!(
        db.count("queue = 'other' AND status = 'queued' AND attempts = 0"),
        1
    );
}

#[tokio::test]
async fn worker_waits_for_run_at_and_wakes_on_notify() {
    let db = Db::start().await;
    let q = db.queue();
    let mut opts = options(&["default"]);
    // Long poll: only NOTIFY can explain a prompt start.
    opts.poll_interval = Duration::from_secs(30);
    let w = start(&db, Registry::with_builtins(), opts);
    tokio::time::sleep(Duration::from_millis(500)).await; // worker idle, listening
    let (job, _) = q.enqueue(&NewJob::new("noop")).await.unwrap();
    let started = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || db
            .has_status(job.id, "succeeded"))
        .await,
        "NOTIFY did not wake the worker"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    w.stop().await;

    // run_at in the future: not before it is due.
    let mut opts = options(&["default"]);
    opts.poll_interval = Duration::from_millis(100);
    let due = Utc::now() + chrono::Duration::milliseconds(2500);
    let (later, _) = q.enqueue(&NewJob::new("noop").run_at(due)).await.unwrap();
    let w = start(&db, Registry::with_builtins(), opts);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        status_of(&q, later.id).await.status,
        Status::Queued,
        "ran before run_at"
    );
    assert!(
        eventually(Duration::from_secs(10), || db
            .has_status(later.id, "succeeded"))
        .await
    );
    let finished: String = db.sql(&format!(
        "SELECT finished_at >= run_at FROM jobs WHERE id = {}",
        later.id
    ));
    assert_eq!(finished, "t");
    w.stop().await;
}

#[tokio::test]
async fn worker_retries_with_backoff_then_dead() {
    let db = Db::start().await;
    let q = db.queue();
    let (flaky, _) = q
        .enqueue(
            &NewJob::new("fail")
                .payload(json!({"times": 2}))
                .max_attempts(5),
        )
        .await
        .unwrap();
    let (hopeless, _) = q
        .enqueue(
            &NewJob::new("fail")
                .payload(json!({"times": 100}))
                .max_attempts(3),
        )
        .await
        .unwrap();
    let (unknown, _) = q
        .enqueue(&NewJob::new("no-such-kind").max_attempts(1))
        .await
        .unwrap();
    let (bad_payload, _) = q
        .enqueue(
            &NewJob::new("sleep")
                .payload(json!({"ms": "soon"}))
                .max_attempts(5),
        )
        .await
        .unwrap();
    let w = start(&db, Registry::with_builtins(), options(&["default"]));
    let ids = format!(
        "({}, {}, {}, {})",
        flaky.id, hopeless.id, unknown.id, bad_payload.id
    );
    assert!(
        eventually(Duration::from_secs(30), || db
            .count(&format!("id IN {ids} AND status IN ('succeeded', 'dead')"))
            == 4)
        .await,
        "jobs did not settle"
    );
    w.stop().await;

    let f = status_of(&q, flaky.id).await;
    assert_eq!(f.status, Status::Succeeded);
    assert_eq!(f.attempts, 3);
    assert!(f
        .last_error
        .as_deref()
        .unwrap()
        .contains("failing on purpose"));
    // Two backoffs of >= base/2 and >= base (base 200 ms, jitter [d/2, d]).
    let span = (f.finished_at.unwrap() - f.created_at).num_milliseconds();
    assert!(span >= 300, "retries were not delayed: {span} ms");

    let h = status_of(&q, hopeless.id).await;
    assert_eq!(h.status, Status::Dead);
    assert_eq!(h.attempts, 3);
    assert!(h.finished_at.is_some());

    let u = status_of(&q, unknown.id).await;
    assert_eq!(u.status, Status::Dead);
    assert!(u.last_error.unwrap().contains("no handler registered"));

    // A payload that cannot parse is permanent: dead after one attempt.
    let b = status_of(&q, bad_payload.id).await;
    assert_eq!(b.status, Status::Dead);
    assert_eq!(b.attempts, 1);

    // Retry through the store: dead → queued with fresh attempts.
    let again = q.retry(hopeless.id).await.unwrap();
    assert_eq!((again.status, again.attempts), (Status::Queued, 0));
}

#[tokio::test]
async fn lease_expiry_requeues_and_fences_the_old_holder() {
    let db = Db::start().await;
    let q = db.queue();
    let (job, _) = q
        .enqueue(&NewJob::new("noop").max_attempts(3))
        .await
        .unwrap();
    let queues = vec!["default".to_string()];

    // Worker A claims with a short lease and stalls past it.
    let a = q
        .claim(&queues, 10, Duration::from_millis(300), "worker-a")
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].attempt, 1);
    assert_eq!(
        db.sql(&format!("SELECT locked_by FROM jobs WHERE id = {}", job.id)),
        "worker-a"
    );
    // Nobody else can claim a held job.
    assert!(q
        .claim(&queues, 10, Duration::from_secs(30), "worker-b")
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (requeued, dead) = q.reap_expired().await.unwrap();
    assert_eq!((requeued, dead), (1, 0));
    let j = status_of(&q, job.id).await;
    assert_eq!(j.status, Status::Queued);
    assert!(j.last_error.unwrap().contains("lease expired"));

    // Worker B claims the next attempt.
    let b = q
        .claim(&queues, 10, Duration::from_secs(30), "worker-b")
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].attempt, 2);
    assert_ne!(a[0].lease_token, b[0].lease_token);

    // A wakes up: every write with its stale token is a no-op.
    let stale = [(job.id, a[0].lease_token)];
    assert!(q.complete(&stale).await.unwrap().is_empty());
    assert!(q
        .extend(&stale, Duration::from_secs(60))
        .await
        .unwrap()
        .is_empty());
    assert!(q.release(&stale).await.unwrap().is_empty());
    let failure = jobqueue::queue::Failure {
        id: job.id,
        lease_token: a[0].lease_token,
        error: "stale".into(),
        retry_in: Duration::ZERO,
        permanent: true,
    };
    assert!(q.fail(&[failure]).await.unwrap().is_empty());
    let j = status_of(&q, job.id).await;
    assert_eq!((j.status, j.attempts), (Status::Running, 2));
    assert_eq!(
        db.sql(&format!("SELECT locked_by FROM jobs WHERE id = {}", job.id)),
        "worker-b"
    );

    // B's lease is valid: extend and complete work.
    let fresh = [(job.id, b[0].lease_token)];
    assert_eq!(
        q.extend(&fresh, Duration::from_secs(60)).await.unwrap(),
        vec![job.id]
    );
    assert_eq!(q.complete(&fresh).await.unwrap(), vec![job.id]);
    assert_eq!(status_of(&q, job.id).await.status, Status::Succeeded);
    // Completing twice is fenced too.
    assert!(q.complete(&fresh).await.unwrap().is_empty());

    // Exhausted attempts: an expired last attempt goes dead.
    let (last, _) = q
        .enqueue(&NewJob::new("noop").max_attempts(1))
        .await
        .unwrap();
    let c = q
        .claim(&queues, 10, Duration::from_millis(100), "worker-c")
        .await
        .unwrap();
    assert_eq!(c.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q.reap_expired().await.unwrap(), (0, 1));
    assert_eq!(status_of(&q, last.id).await.status, Status::Dead);
}

/// A worker whose lease is taken away (reaped while the handler is still
/// running) aborts the handler and never records an outcome.
#[tokio::test]
async fn worker_aborts_handler_when_lease_is_lost_or_job_cancelled() {
    let db = Db::start().await;
    let q = db.queue();
    let finished = Arc::new(Mutex::new(Vec::new()));
    let f2 = finished.clone();
    let registry = Registry::new().register("slow", move |ctx: JobContext| {
        let f2 = f2.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            f2.lock().unwrap().push(ctx.id);
            Ok::<(), JobError>(())
        }
    });
    let (cancel_me, _) = q.enqueue(&NewJob::new("slow")).await.unwrap();
    let (steal_me, _) = q.enqueue(&NewJob::new("slow")).await.unwrap();
    let mut opts = options(&["default"]);
    opts.lease_duration = Duration::from_secs(2); // extended every ~0.67 s
                                                  // Both slots busy: the worker cannot re-claim the stolen job itself.
    opts.concurrency = 2;
    opts.batch_size = 2;
    let w = start(&db, registry, opts);
    assert!(
        eventually(Duration::from_secs(10), || db.count("status = 'running'")
            == 2)
        .await
    );

    // Steal the other: as if the reaper re-queued it after a long pause and
    // another worker claimed it — in one statement, so this worker cannot
    // race the "thief" for it.
    db.sql(&format!(
        "UPDATE jobs SET lease_token = 424242, locked_by = 'thief', attempts = attempts + 1,
             lease_expires_at = now() + interval '60 seconds' WHERE id = {}",
        steal_me.id
    ));
    // Cancel one via the API's store call.
    let c = q.cancel(cancel_me.id).await.unwrap();
    assert_eq!(c.status, Status::Cancelled);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        finished.lock().unwrap().is_empty(),
        "handlers should have been aborted"
    );
    assert_eq!(status_of(&q, cancel_me.id).await.status, Status::Cancelled);
    let s = status_of(&q, steal_me.id).await;
    assert_eq!(s.status, Status::Running);
    assert_eq!(
        db.sql(&format!(
            "SELECT locked_by FROM jobs WHERE id = {}",
            steal_me.id
        )),
        "thief"
    );
    w.stop().await;
}

#[tokio::test]
async fn concurrent_migrate_is_safe() {
    let Db { pg, url } = Db::start_empty().await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move { jobqueue::migrate(&url).await }));
    }
    let mut applied = 0;
    for t in tasks {
        applied += t.await.unwrap().expect("migrate").len();
    }
    assert_eq!(
        applied,
        jobqueue::migrate::MIGRATIONS.len(),
        "each migration applied exactly once"
    );
    let rows = pg.psql("postgres", "SELECT count(*) FROM jobqueue_migrations");
    assert_eq!(rows, jobqueue::migrate::MIGRATIONS.len().to_string());
    // And the binary, twice at once, in separate processes.
    let dir = tempfile::tempdir().unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|i| {
            common::spawn_jobqueue(
                "migrate",
                &[("DATABASE_URL", url.clone())],
                &dir.path().join(format!("m{i}.log")),
            )
        })
        .collect();
    for c in &mut children {
        let status = common::wait_exit(c, Duration::from_secs(30)).expect("migrate exits");
        assert!(status.success());
    }
    let log = std::fs::read_to_string(dir.path().join("m0.log")).unwrap();
    assert!(!log.contains(&pg.password), "password in migrate logs");
    assert!(log.contains("migrations done"));
}

/// The worker's own writes commit asynchronously and are planned per call
/// (see `db::pool_async_commit`), while enqueueing stays durable — and
/// options the user put in the URL survive.
#[tokio::test]
async fn worker_connections_commit_async_and_enqueue_stays_durable() {
    let db = Db::start().await;
    // The test kit's cluster runs with synchronous_commit=off; make the
    // database default durable so the two pools can differ.
    db.sql("ALTER DATABASE postgres SET synchronous_commit = on");
    let show = |pool: deadpool_postgres::Pool| async move {
        let c = pool.get().await.unwrap();
        let row = c
            .query_one(
                "SELECT current_setting('synchronous_commit'), current_setting('plan_cache_mode'),
                        current_setting('statement_timeout')",
                &[],
            )
            .await
            .unwrap();
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
        )
    };
    let worker = Worker::new(&db.url, Registry::with_builtins(), options(&["default"])).unwrap();
    let (sync, plans, _) = show(worker.queue().pool().clone()).await;
    assert_eq!(
        (sync.as_str(), plans.as_str()),
        ("off", "force_custom_plan")
    );
    let (sync, plans, _) = show(db.queue().pool().clone()).await;
    assert_eq!((sync.as_str(), plans.as_str()), ("on", "auto"));

    let sep = if db.url.contains('?') { '&' } else { '?' };
    let with_options = format!("{}{sep}options=-c%20statement_timeout%3D12345", db.url);
    let pool = jobqueue::db::pool_async_commit(&with_options, 1).unwrap();
    let (sync, _, timeout) = show(pool).await;
    assert_eq!((sync.as_str(), timeout.as_str()), ("off", "12345ms"));
}

/// A database at schema version 1 (jobs waiting in it) upgrades in place:
/// the jobs survive, and an INSERT in plain SQL still wakes an idle worker
/// through the new statement-level trigger, whatever queue it listens on.
#[tokio::test]
async fn migrate_upgrades_a_version_1_schema_in_place() {
    let db = Db::start_empty().await;
    let (_, _, v1) = jobqueue::migrate::MIGRATIONS[0];
    db.sql(v1);
    db.sql(
        "CREATE TABLE jobqueue_migrations (version integer PRIMARY KEY, name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO jobqueue_migrations (version, name) VALUES (1, 'v1');
         INSERT INTO jobs (queue, kind) VALUES ('mail', 'noop'), ('mail', 'noop');",
    );
    // Up to migration 7 first: the retention BRIN of migration 2 is there
    // until migration 8 replaces it with the lease index.
    let mut client = jobqueue::db::connect(&db.url).await.unwrap();
    let applied = jobqueue::migrate::run_until(&mut client, 7)
        .await
        .expect("upgrade to 7");
    let index = db.sql("SELECT pg_get_indexdef('jobs_finished_idx'::regclass)");
    assert!(index.contains("WHERE (finished_at IS NOT NULL)"), "{index}");
    let applied = [applied, jobqueue::migrate(&db.url).await.expect("upgrade")].concat();
    assert_eq!(applied, versions_after(1));
    assert_eq!(db.count("status = 'queued'"), 2);
    assert_eq!(
        db.sql("SELECT to_regclass('jobs_finished_idx') IS NULL"),
        "t"
    );
    let mut opts = options(&["mail", "other"]);
    opts.poll_interval = Duration::from_secs(30); // only NOTIFY explains a prompt start
    let w = start(&db, Registry::with_builtins(), opts);
    assert!(
        eventually(Duration::from_secs(5), || db.count("status = 'succeeded'")
            == 2)
        .await,
        "the version-1 jobs did not run after the upgrade"
    );
    tokio::time::sleep(Duration::from_millis(300)).await; // idle again, listening
    db.sql("INSERT INTO jobs (queue, kind) VALUES ('other', 'noop')");
    assert!(
        eventually(Duration::from_secs(5), || db.count("status = 'succeeded'")
            == 3)
        .await,
        "a plain-SQL INSERT did not wake the worker"
    );
    w.stop().await;
}

/// A database at schema version 5 where a key is held twice (the old index
/// counted only the job in its `unique_while` statuses) upgrades to 6:
/// the job the old index counted keeps the key, the other gives it up,
/// and the new unique index is built.
#[tokio::test]
async fn migrate_to_6_keeps_the_key_with_the_job_that_held_it() {
    let db = Db::start_empty().await;
    db.sql(
        "CREATE TABLE jobqueue_migrations (version integer PRIMARY KEY, name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());",
    );
    for (version, name, sql) in &jobqueue::migrate::MIGRATIONS[..5] {
        db.sql(sql);
        db.sql(&format!(
            "INSERT INTO jobqueue_migrations (version, name) VALUES ({version}, '{name}')"
        ));
    }
    db.sql(
        "INSERT INTO jobs (kind, status, idempotency_key, unique_states) VALUES
             ('a', 'running', 'k', '{queued}'), ('b', 'queued', 'k', '{queued}'),
             ('c', 'succeeded', 'k2', '{queued}'), ('d', 'succeeded', 'k3', NULL);",
    );
    let applied = jobqueue::migrate(&db.url).await.expect("upgrade");
    assert_eq!(applied, versions_after(5));
    assert_eq!(
        db.sql("SELECT kind FROM jobs WHERE idempotency_key = 'k'"),
        "b"
    );
    assert_eq!(db.count("kind = 'a' AND idempotency_key IS NULL"), 1);
    // Held once: kept, whatever the status (released by the next enqueue).
    assert_eq!(db.count("idempotency_key IN ('k2', 'k3')"), 2);
    let index = db.sql("SELECT pg_get_indexdef('jobs_idempotency_key_idx'::regclass)");
    assert!(
        index.ends_with("WHERE (idempotency_key IS NOT NULL)"),
        "{index}"
    );
}

/// A column the statements return changes type under them (a migration,
/// or a DBA): PostgreSQL refuses every statement prepared before with
/// "cached plan must not change result type" (SQLSTATE 0A000). The
/// library fails one call, then prepares again; a running worker keeps
/// claiming. The library part runs before the worker starts: a worker's
/// failed claim would mark the refusal first and spare the library its
/// one failure.
#[tokio::test]
async fn statements_prepared_before_a_column_changed_type_are_prepared_again() {
    let db = Db::start().await;
    let q = db.queue();
    let jobs: Vec<NewJob> = (0..5)
        .map(|_| NewJob::new("noop").timeout_seconds(30))
        .collect();
    let first = q.enqueue_batch(&jobs).await.unwrap()[0];
    q.get(first).await.expect("prepared before the change");
    db.sql(
        "CREATE DOMAIN test_seconds AS integer;
         ALTER TABLE jobs ALTER COLUMN timeout_seconds TYPE test_seconds",
    );
    let err = q
        .get(first)
        .await
        .expect_err("PostgreSQL refuses the old plan");
    assert_eq!(err.sqlstate(), Some("0A000"), "{err}");
    assert_eq!(q.get(first).await.expect("prepared again").id, first);

    // The worker prepares its claim on the domain type, which then goes.
    let mut opts = options(&["default"]);
    opts.poll_interval = Duration::from_millis(100);
    let w = start(&db, Registry::with_builtins(), opts);
    assert!(
        eventually(Duration::from_secs(10), || db.count("status = 'succeeded'")
            == 5)
        .await
    );
    db.sql("ALTER TABLE jobs ALTER COLUMN timeout_seconds TYPE integer");
    q.enqueue_batch(&jobs).await.unwrap();
    q.enqueue_batch(&jobs).await.unwrap();
    assert!(
        eventually(Duration::from_secs(20), || db.count("status = 'succeeded'")
            == 15)
        .await,
        "the worker stopped claiming: {} of 15 jobs done",
        db.count("status = 'succeeded'")
    );
    w.stop().await;
}

/// With only the concurrency set, the adaptive batch and prefetch never
/// lease more jobs than the concurrency (the `kill -9` bound): sampled in
/// the database while short and long jobs churn through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_never_holds_more_leases_than_its_concurrency() {
    holds_at_most_its_concurrency(6, 600).await;
}

/// The same where two claims are in flight (claims of half the slots up to
/// 512 slots, of 512 above) and the second passes over the jobs the first
/// is taking: every job runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_claims_in_flight_never_hold_more_leases_nor_run_a_job_twice() {
    for concurrency in [
        jobqueue::worker::TWO_CLAIMS_FROM + 1,
        2 * jobqueue::worker::MAX_AUTO_BATCH + 88,
    ] {
        assert_eq!(jobqueue::worker::claims_in_flight(concurrency, true), 2);
        let db = holds_at_most_its_concurrency(concurrency, 10 * concurrency).await;
        assert_eq!(db.count("attempts <> 1"), 0, "a job was claimed twice");
    }
}

/// Runs `total` short and long jobs at `concurrency`, sampling the leases
/// held in the database; returns the database for more checks.
async fn holds_at_most_its_concurrency(concurrency: usize, total: usize) -> Db {
    let db = Db::start().await;
    let q = db.queue();
    let jobs: Vec<NewJob> = (0..total)
        .map(|i| NewJob::new("sleep").payload(json!({"ms": if i % 7 == 0 { 20 } else { 0 }})))
        .collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let w = start(
        &db,
        Registry::with_builtins(),
        WorkerOptions {
            concurrency,
            worker_id: "bounded".into(),
            ..Default::default()
        },
    );
    let client = q.pool().get().await.unwrap();
    let mut max_held = 0i64;
    let mut samples = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'running'),
                        count(*) FILTER (WHERE status = 'succeeded')
                 FROM jobs",
                &[],
            )
            .await
            .unwrap();
        let (held, done): (i64, i64) = (row.get(0), row.get(1));
        max_held = max_held.max(held);
        samples += 1;
        if done == total as i64 || std::time::Instant::now() > deadline {
            break;
        }
    }
    w.stop().await;
    assert_eq!(db.count("status = 'succeeded'"), total as i64);
    assert!(samples > 10, "sampled {samples} times");
    assert!(
        max_held <= concurrency as i64,
        "held {max_held} leases at once with concurrency {concurrency}"
    );
    assert!(max_held >= 2, "jobs ran concurrently ({max_held})");
    db
}

/// The combined store-and-claim statement is fenced like `complete`: a
/// success under a stale token is discarded, and the claim still leases.
#[tokio::test]
async fn claim_and_complete_is_fenced() {
    let db = Db::start().await;
    let q = db.queue();
    q.enqueue_batch(&[
        NewJob::new("noop"),
        NewJob::new("noop"),
        NewJob::new("noop"),
    ])
    .await
    .unwrap();
    let queues = vec!["default".to_string()];
    let lease = Duration::from_secs(30);
    let held = q.claim(&queues, 2, lease, "w").await.unwrap();
    assert_eq!(held.len(), 2);
    let done = [
        (held[0].id, held[0].lease_token),
        (held[1].id, held[1].lease_token.wrapping_add(1)), // stale token
    ];
    let (claimed, completed) = q
        .claim_and_complete(&queues, 5, lease, "w", &done, None)
        .await
        .unwrap();
    assert_eq!(completed, vec![held[0].id]);
    assert_eq!(
        claimed.len(),
        1,
        "the third job is leased in the same statement"
    );
    assert_eq!(status_of(&q, held[0].id).await.status, Status::Succeeded);
    assert_eq!(status_of(&q, held[1].id).await.status, Status::Running);
    assert_eq!(status_of(&q, claimed[0].id).await.status, Status::Running);

    // More finished jobs than the positional fence takes: the unnest join.
    let many = jobqueue::queue::POSITIONAL_FENCE_MAX + 16;
    let jobs: Vec<NewJob> = (0..many + 5).map(|_| NewJob::new("noop")).collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let held = q.claim(&queues, many, lease, "w").await.unwrap();
    assert_eq!(held.len(), many);
    let mut done: Vec<(i64, i64)> = held.iter().map(|j| (j.id, j.lease_token)).collect();
    done[3].1 = done[3].1.wrapping_add(1); // stale token
    let (claimed, completed) = q
        .claim_and_complete(&queues, 5, lease, "w", &done, None)
        .await
        .unwrap();
    assert_eq!(completed.len(), many - 1);
    assert!(!completed.contains(&held[3].id));
    assert_eq!(claimed.len(), 5);
}

/// Enqueues `jobs` no-op jobs, claims `held` of them (each with its row's
/// address) and moves `held[1]`'s row with a progress report, as a handler
/// would: its claim's address is stale from then on.
async fn claimed_with_the_second_row_moved(
    q: &jobqueue::Queue,
    jobs: usize,
    held: usize,
) -> Vec<jobqueue::queue::ClaimedJob> {
    let new: Vec<NewJob> = (0..jobs).map(|_| NewJob::new("noop")).collect();
    q.enqueue_batch(&new).await.unwrap();
    let claimed = q
        .claim(&["default".to_string()], held, Duration::from_secs(30), "w")
        .await
        .unwrap();
    assert_eq!(claimed.len(), held);
    assert!(
        claimed.iter().all(|j| j.tid.is_some()),
        "a claim returns addresses"
    );
    assert!(q
        .set_progress(claimed[1].id, claimed[1].lease_token, &json!({"pct": 50}))
        .await
        .unwrap());
    claimed
}

/// The held jobs' ids, lease tokens and addresses as SQL array literals,
/// for `EXPLAIN EXECUTE` of the worker's statements.
fn sql_arrays(held: &[jobqueue::queue::ClaimedJob]) -> (String, String, String) {
    let array = |items: Vec<String>| format!("'{{{}}}'", items.join(","));
    (
        array(held.iter().map(|j| j.id.to_string()).collect()),
        array(held.iter().map(|j| j.lease_token.to_string()).collect()),
        array(
            held.iter()
                .map(|j| format!("\"{}\"", j.tid.unwrap()))
                .collect(),
        ),
    )
}

/// The text of an `EXPLAIN`, one plan line per row.
fn plan_text(rows: Vec<tokio_postgres::SimpleQueryMessage>) -> String {
    rows.into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The fetcher stores a success where its claim left the row (a TID
/// fetch, `queue/tid.rs`). A row that moved since (here a progress report)
/// is not found there: it is not stored, its slot is not given to a new
/// job, and storing it by id afterwards works.
#[tokio::test]
async fn successes_are_stored_at_their_rows_and_by_id_once_a_row_moved() {
    let db = Db::start().await;
    let q = db.queue();
    let queues = vec!["default".to_string()];
    let lease = Duration::from_secs(30);
    // held[1]'s row moves: a progress report writes a new version.
    let held = claimed_with_the_second_row_moved(&q, 8, 3).await;
    let done: Vec<(i64, i64)> = held.iter().map(|j| (j.id, j.lease_token)).collect();
    let addresses: Vec<jobqueue::queue::Tid> = held.iter().filter_map(|j| j.tid).collect();
    let (claimed, mut completed) = q
        .claim_and_complete_at(&queues, 3, lease, "w", &done, &addresses, None)
        .await
        .unwrap();
    completed.sort_unstable();
    assert_eq!(completed, vec![held[0].id, held[2].id]);
    assert_eq!(
        claimed.len(),
        2,
        "the moved job keeps its slot: 3 slots, 2 stored, 2 claimed"
    );
    assert_eq!(status_of(&q, held[1].id).await.status, Status::Running);
    assert_eq!(db.count("status = 'running'"), 3);
    // By id, as the completer does it.
    let (_, completed) = q
        .claim_and_complete(&queues, 1, lease, "w", &[done[1]], None)
        .await
        .unwrap();
    assert_eq!(completed, vec![held[1].id]);
    assert_eq!(status_of(&q, held[1].id).await.status, Status::Succeeded);
    // A stale token at the right address is still refused: the address
    // is a way in, not the fence.
    let again = q.claim(&queues, 1, lease, "w").await.unwrap();
    let stale = [(again[0].id, again[0].lease_token.wrapping_add(1))];
    let (_, completed) = q
        .claim_and_complete_at(
            &queues,
            1,
            lease,
            "w",
            &stale,
            &[again[0].tid.unwrap()],
            None,
        )
        .await
        .unwrap();
    assert!(completed.is_empty());
    assert_eq!(status_of(&q, again[0].id).await.status, Status::Running);
    // Addresses must pair with the finished jobs.
    assert!(q
        .claim_and_complete_at(&queues, 1, lease, "w", &stale, &addresses, None)
        .await
        .is_err());
}

/// The completer stores successes where their claim left the rows too
/// (`queue/complete_at.rs`), fenced like `complete`: a stale token at the
/// right address is refused, a row that moved since its claim is not
/// found there (and is stored by id afterwards), and on a table of any
/// size PostgreSQL fetches each row by address, never through the primary
/// key or the lease index.
#[tokio::test]
async fn the_completer_stores_successes_at_their_rows_fenced() {
    let db = Db::start().await;
    let q = db.queue();
    let queues = vec!["default".to_string()];
    let lease = Duration::from_secs(30);
    // held[1]'s row moves (a progress report); held[2]'s token is stale.
    let held = claimed_with_the_second_row_moved(&q, 6, 4).await;
    let mut done: Vec<(i64, i64)> = held.iter().map(|j| (j.id, j.lease_token)).collect();
    done[2].1 = done[2].1.wrapping_add(1);
    let addresses: Vec<jobqueue::queue::Tid> = held.iter().filter_map(|j| j.tid).collect();
    let mut completed = q.complete_at(&done, &addresses).await.unwrap();
    completed.sort_unstable();
    assert_eq!(completed, vec![held[0].id, held[3].id]);
    assert_eq!(status_of(&q, held[0].id).await.status, Status::Succeeded);
    assert_eq!(status_of(&q, held[1].id).await.status, Status::Running);
    assert_eq!(status_of(&q, held[2].id).await.status, Status::Running);
    // The moved row by id, as the completer then does.
    assert_eq!(q.complete(&[done[1]]).await.unwrap(), vec![held[1].id]);
    assert_eq!(status_of(&q, held[1].id).await.status, Status::Succeeded);
    // Stored once: the same call again finds nothing.
    assert!(q.complete_at(&done, &addresses).await.unwrap().is_empty());
    // Addresses must pair with the finished jobs; nothing to store is no
    // statement at all.
    assert!(q.complete_at(&done, &addresses[..1]).await.is_err());
    assert!(q.complete_at(&[], &[]).await.unwrap().is_empty());

    // The plan on a grown table, with the worker's connection settings
    // (each execution planned for its parameters).
    db.sql("INSERT INTO jobs (kind) SELECT 'noop' FROM generate_series(1, 200000)");
    db.sql("VACUUM ANALYZE jobs");
    let held = q.claim(&queues, 10, lease, "w").await.unwrap();
    assert_eq!(held.len(), 10);
    let (ids, tokens, tids) = sql_arrays(&held);
    let pool = jobqueue::db::pool_async_commit(&db.url, 1).unwrap();
    let client = pool.get().await.unwrap();
    client
        .batch_execute(&format!(
            "PREPARE complete_at(bigint[], bigint[], tid[]) AS {}",
            jobqueue::queue::COMPLETE_AT_SQL
        ))
        .await
        .unwrap();
    let plan = plan_text(
        client
            .simple_query(&format!(
                "EXPLAIN EXECUTE complete_at({ids}, {tokens}, {tids})"
            ))
            .await
            .unwrap(),
    );
    assert!(plan.contains("Tid Scan on jobs j"), "by address:\n{plan}");
    assert!(!plan.contains("Seq Scan on jobs"), "{plan}");
    assert!(!plan.contains("jobs_pkey"), "{plan}");
    assert!(!plan.contains("jobs_lease_idx"), "{plan}");
}

/// A worker whose handlers report progress (their rows move while they
/// run) still stores every success, none as a lost lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stores_jobs_whose_rows_moved_while_they_ran() {
    let db = Db::start().await;
    let q = db.queue();
    let registry = Registry::new().register("reporting", |ctx: JobContext| async move {
        ctx.set_progress(json!({"step": 1})).await?;
        Ok(())
    });
    let jobs: Vec<NewJob> = (0..200).map(|_| NewJob::new("reporting")).collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let w = start(&db, registry, options(&["default"]));
    until_succeeded(&db, 200, Duration::from_secs(30)).await;
    assert_eq!(db.count("progress IS NULL"), 0);
    assert_eq!(w.metrics.worker_lease_lost_total.get(&[]), 0);
    assert_eq!(
        w.metrics.job_completed_total.get(&["default", "reporting"]),
        200
    );
    w.stop().await;
}

/// With two claims in flight (200 slots and more) the completer stores
/// most successes, at their rows' addresses; rows that moved while their
/// handlers ran (half of these jobs report progress) are stored by id:
/// every job succeeds once, none counted as a lost lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_claims_in_flight_store_moved_and_unmoved_rows_alike() {
    let db = Db::start().await;
    let q = db.queue();
    let registry = Registry::new()
        .register("reporting", |ctx: JobContext| async move {
            ctx.set_progress(json!({"step": 1})).await?;
            Ok(())
        })
        .register("quiet", |_ctx: JobContext| async { Ok(()) });
    let jobs: Vec<NewJob> = (0..2000)
        .map(|i| NewJob::new(if i % 2 == 0 { "reporting" } else { "quiet" }))
        .collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let opts = WorkerOptions {
        concurrency: 256,
        batch_size: 1,
        ..options(&["default"])
    };
    let w = start(&db, registry, opts);
    until_succeeded(&db, 2000, Duration::from_secs(60)).await;
    assert_eq!(db.count("attempts <> 1"), 0, "each job ran once");
    assert_eq!(db.count("progress IS NOT NULL"), 1000);
    assert_eq!(w.metrics.worker_lease_lost_total.get(&[]), 0);
    assert_eq!(
        w.metrics.job_completed_total.get(&["default", "reporting"])
            + w.metrics.job_completed_total.get(&["default", "quiet"]),
        2000
    );
    w.stop().await;
}

/// A completer write that fails part-way (here PostgreSQL refuses the
/// failed attempt's statement for a while) resumes at the statement that
/// failed: the outputs stored before it are not stored again, which would
/// find their rows no longer `running` and count them as lost leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_write_that_fails_part_way_resumes_where_it_failed() {
    let db = Db::start().await;
    let q = db.queue();
    db.sql("CREATE TABLE refuse_failures (until_cleared boolean)");
    db.sql("INSERT INTO refuse_failures VALUES (true)");
    db.sql(
        "CREATE FUNCTION refuse_failure() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF EXISTS (SELECT FROM refuse_failures) THEN \
         RAISE EXCEPTION 'failed attempts refused for the test'; END IF; RETURN NEW; END $$",
    );
    db.sql(
        "CREATE TRIGGER refuse_failure BEFORE UPDATE ON jobs FOR EACH ROW \
         WHEN (OLD.status = 'running' AND NEW.status IN ('queued', 'dead')) \
         EXECUTE FUNCTION refuse_failure()",
    );
    // Four handlers that end together, so that their outcomes share one
    // write: three successes with an output (stored by the completer,
    // before the failures) and one failure.
    let together = Arc::new(tokio::sync::Barrier::new(4));
    let (a, b) = (together.clone(), together);
    let registry = Registry::new()
        .register("with_output", move |ctx: JobContext| {
            let together = a.clone();
            async move {
                together.wait().await;
                ctx.set_output(json!({"ok": true}));
                Ok(())
            }
        })
        .register("failing", move |_ctx: JobContext| {
            let together = b.clone();
            async move {
                together.wait().await;
                Err(jobqueue::JobError::permanent("no"))
            }
        });
    let mut jobs: Vec<NewJob> = (0..3).map(|_| NewJob::new("with_output")).collect();
    jobs.push(NewJob::new("failing").max_attempts(1));
    q.enqueue_batch(&jobs).await.unwrap();
    let w = start(&db, registry, options(&["default"]));
    // The outputs are stored.
    until_succeeded(&db, 3, Duration::from_secs(30)).await;
    // The failure's statement is refused meanwhile (and retried).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(db.count("status = 'running'"), 1);
    db.sql("DELETE FROM refuse_failures");
    assert!(
        eventually(Duration::from_secs(30), || db.count("status = 'dead'") == 1).await,
        "the failure is stored once PostgreSQL takes it"
    );
    assert_eq!(w.metrics.worker_lease_lost_total.get(&[]), 0);
    assert_eq!(
        w.metrics
            .job_completed_total
            .get(&["default", "with_output"]),
        3
    );
    assert_eq!(w.metrics.job_failed_total.get(&["default", "failing"]), 1);
    w.stop().await;
}

/// The store-and-claim statement's generic plan (planned once per claim
/// connection, kept until the table's statistics change) fetches rows by
/// address, and keeps doing so when the table it was planned on was a few
/// pages and has since grown: never a scan of the table or of its
/// primary key.
#[tokio::test]
async fn the_claim_plan_fetches_by_address_on_a_table_of_any_size() {
    let db = Db::start().await;
    let q = db.queue();
    let jobs: Vec<NewJob> = (0..50).map(|_| NewJob::new("noop")).collect();
    q.enqueue_batch(&jobs).await.unwrap();
    db.sql("VACUUM ANALYZE jobs");
    let held = q
        .claim(&["default".to_string()], 10, Duration::from_secs(30), "w")
        .await
        .unwrap();
    let (ids, tokens, tids) = sql_arrays(&held);
    let pool = jobqueue::db::pool_async_commit_generic_plans(&db.url, 1).unwrap();
    let client = pool.get().await.unwrap();
    // Each statement with the worker's eight parameters, then `more`:
    // the PREPARE and the EXPLAIN of one execution.
    let statement = |name: &str, sql: &str, more_types: &str, more_args: &str| {
        (
            format!(
                "PREPARE {name}(bigint[], bigint[], text, bigint, bigint, float8, text, tid[]{more_types}) AS {sql}"
            ),
            format!(
                "EXPLAIN EXECUTE {name}({ids}, {tokens}, 'default', 10, 1, 30000, 'w', {tids}{more_args})"
            ),
        )
    };
    let (prepare, explain) = statement(
        "store_and_claim",
        jobqueue::queue::store_and_claim_by_address_sql(false, false),
        "",
        "",
    );
    // The same from a position, passing over the jobs of a claim in
    // flight (`ClaimFrom::skip`): two index range scans, never the table.
    let (prepare_skipping, explain_skipping) = statement(
        "store_and_claim_skipping",
        jobqueue::queue::store_and_claim_by_address_sql(true, true),
        ", int, timestamptz, bigint, bigint",
        ", 0, '-infinity', 0, 5",
    );
    client.batch_execute(&prepare).await.unwrap();
    client.batch_execute(&prepare_skipping).await.unwrap();
    let small = plan_text(client.simple_query(&explain).await.unwrap());
    let small_skipping = plan_text(client.simple_query(&explain_skipping).await.unwrap());
    // The table grows 4,000-fold; nothing analyses it.
    db.sql("INSERT INTO jobs (kind) SELECT 'noop' FROM generate_series(1, 200000)");
    let grown = plan_text(client.simple_query(&explain).await.unwrap());
    let grown_skipping = plan_text(client.simple_query(&explain_skipping).await.unwrap());
    for (name, plan) in [("small", &small_skipping), ("grown", &grown_skipping)] {
        assert_eq!(
            plan.matches(" Scan using jobs_claim_idx on jobs").count(),
            2,
            "{name}, skipping: the jobs passed over, then the claim:\n{plan}"
        );
        assert!(
            !plan.contains("Seq Scan on jobs"),
            "{name}, skipping:\n{plan}"
        );
    }
    for (name, plan) in [
        ("small", &small),
        ("grown", &grown),
        ("small, skipping", &small_skipping),
        ("grown, skipping", &grown_skipping),
    ] {
        assert_eq!(
            plan.matches("Tid Scan on jobs j").count(),
            2,
            "{name}: the finished and the claimed rows by address:\n{plan}"
        );
        assert!(!plan.contains("Seq Scan on jobs"), "{name}:\n{plan}");
        assert!(!plan.contains("jobs_pkey"), "{name}:\n{plan}");
        assert!(!plan.contains("jobs_lease_idx"), "{name}:\n{plan}");
    }
}

/// Every connection runs without JIT (db.rs says why: a re-planned
/// statement can cross `jit_above_cost` and compile for 200 ms); a URL's
/// own `options` still wins.
#[tokio::test]
async fn connections_run_without_jit_unless_the_url_asks() {
    let db = Db::start().await;
    let show_jit = |url: String| async move {
        let queue = jobqueue::connect(&url, 1).unwrap();
        let client = queue.pool().get().await.unwrap();
        let row = client.query_one("SHOW jit", &[]).await.unwrap();
        row.get::<_, String>(0)
    };
    assert_eq!(show_jit(db.url.clone()).await, "off");
    let sep = if db.url.contains('?') { '&' } else { '?' };
    assert_eq!(
        show_jit(format!("{}{sep}options=-c%20jit%3Don", db.url)).await,
        "on"
    );
}

/// A claim from a position that skips `n` jobs leaves the next `n`
/// claimable jobs to the claim in flight taking them — counted whether or
/// not that claim has locked them yet — and takes the ones after; with
/// fewer left, it finds none (and the fetcher scans in full).
#[tokio::test]
async fn a_claim_skipping_from_a_position_leaves_the_jobs_in_flight_to_it() {
    let db = Db::start().await;
    let q = db.queue();
    let jobs: Vec<NewJob> = (0..30).map(|_| NewJob::new("noop")).collect();
    let ids = q.enqueue_batch(&jobs).await.unwrap();
    let queues = vec!["default".to_string()];
    let lease = Duration::from_secs(30);
    let first = q.claim(&queues, 1, lease, "w").await.unwrap();
    assert_eq!(first[0].id, ids[0]);
    let from = jobqueue::queue::ClaimFrom::of(&first[0]);
    let claimed_ids =
        |jobs: &[jobqueue::queue::ClaimedJob]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    // Another claim has locked the next 5 and not yet updated them.
    let mut in_flight = q.pool().get().await.unwrap();
    let tx = in_flight.transaction().await.unwrap();
    tx.query(
        "SELECT 1 FROM jobs WHERE id = ANY($1) FOR UPDATE",
        &[&ids[1..6].to_vec()],
    )
    .await
    .unwrap();
    let after = q
        .claim_from(&queues, 5, lease, "w", Some(&from.skipping(5)))
        .await
        .unwrap();
    assert_eq!(
        claimed_ids(&after),
        ids[6..11],
        "the locked five count as skipped"
    );
    drop(tx);
    drop(in_flight);
    // Unlocked: the next 5 (ids[1..6]) are passed over all the same.
    let after = q
        .claim_from(&queues, 5, lease, "w", Some(&from.skipping(5)))
        .await
        .unwrap();
    assert_eq!(claimed_ids(&after), ids[11..16]);
    // The same in the store-and-claim statement, by address.
    let done: Vec<(i64, i64)> = after.iter().map(|j| (j.id, j.lease_token)).collect();
    let addresses: Vec<jobqueue::queue::Tid> = after.iter().filter_map(|j| j.tid).collect();
    let (more, completed) = q
        .claim_and_complete_at(
            &queues,
            5,
            lease,
            "w",
            &done,
            &addresses,
            Some(&from.skipping(5)),
        )
        .await
        .unwrap();
    assert_eq!(completed.len(), 5);
    assert_eq!(claimed_ids(&more), ids[16..21]);
    // Fewer jobs left than skipped: nothing.
    let none = q
        .claim_from(&queues, 5, lease, "w", Some(&from.skipping(100)))
        .await
        .unwrap();
    assert!(none.is_empty());
    // What was passed over is still there for a claim without a position.
    let rest = q.claim(&queues, 100, lease, "w").await.unwrap();
    assert_eq!(claimed_ids(&rest), [&ids[1..6], &ids[21..30]].concat());
}

/// A claim from a position ([`jobqueue::queue::ClaimFrom`]) starts its
/// scan there: it takes the jobs at and after it of the same priority,
/// passes over a job before it and lower priorities, and both forms are
/// fenced and stored in one statement as before. A claim without a
/// position takes what was passed over.
#[tokio::test]
async fn a_claim_from_a_position_starts_there_and_a_full_claim_does_not() {
    let db = Db::start().await;
    let q = db.queue();
    let t0 = Utc::now() - chrono::Duration::seconds(60);
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let ids = q
        .enqueue_batch(&[
            NewJob::new("noop").run_at(at(1)),
            NewJob::new("noop").run_at(at(2)),
            NewJob::new("noop").run_at(at(3)),
            NewJob::new("noop").run_at(at(4)).priority(-1),
        ])
        .await
        .unwrap();
    let queues = vec!["default".to_string()];
    let lease = Duration::from_secs(30);
    let first = q.claim(&queues, 1, lease, "w").await.unwrap();
    assert_eq!(first[0].id, ids[0]);
    let from = jobqueue::queue::ClaimFrom::of(&first[0]);
    // Something lands before the position: a run_at in the past.
    let early = q
        .enqueue(&NewJob::new("noop").run_at(at(0)))
        .await
        .unwrap()
        .0
        .id;
    let done = [(first[0].id, first[0].lease_token)];
    let (claimed, completed) = q
        .claim_and_complete(&queues, 10, lease, "w", &done, Some(&from))
        .await
        .unwrap();
    assert_eq!(completed, vec![ids[0]]);
    let got: Vec<i64> = claimed.iter().map(|j| j.id).collect();
    assert_eq!(
        got,
        vec![ids[1], ids[2]],
        "from the position, same priority"
    );
    let none = q
        .claim_from(&queues, 10, lease, "w", Some(&from))
        .await
        .unwrap();
    assert!(
        none.is_empty(),
        "the early job and priority -1 are passed over"
    );
    let full = q.claim(&queues, 10, lease, "w").await.unwrap();
    let got: Vec<i64> = full.iter().map(|j| j.id).collect();
    assert_eq!(got, vec![early, ids[3]], "a full claim, in claim order");
}

/// A busy worker claims from its position, yet a job that lands before
/// that position — a higher priority, or a `run_at` in the past — starts
/// long before the backlog ahead of it is done: the fetcher's full scans
/// find it within `FULL_SCAN_EVERY`, and a claim from the position that
/// comes back short is followed by a full one (lower priorities still run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_landing_before_the_claim_position_are_not_left_behind() {
    let db = Db::start().await;
    let q = db.queue();
    let ran = Arc::new(Mutex::new(Vec::<(String, std::time::Instant)>::new()));
    let seen = ran.clone();
    let registry = Registry::new().register("tagged", move |ctx: JobContext| {
        let seen = seen.clone();
        async move {
            let tag = ctx.payload["tag"].as_str().unwrap_or("").to_string();
            seen.lock().unwrap().push((tag, std::time::Instant::now()));
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        }
    });
    // 2 slots × 5 ms: the backlog takes ≥ 5 s.
    let backlog: Vec<NewJob> = (0..2000)
        .map(|_| NewJob::new("tagged").payload(json!({"tag": "backlog"})))
        .collect();
    q.enqueue_batch(&backlog).await.unwrap();
    q.enqueue(
        &NewJob::new("tagged")
            .payload(json!({"tag": "low"}))
            .priority(-5),
    )
    .await
    .unwrap();
    let mut opts = options(&["default"]);
    opts.concurrency = 2;
    opts.batch_size = 1;
    let w = start(&db, registry, opts);
    assert!(eventually(Duration::from_secs(20), || ran.lock().unwrap().len() >= 100).await);
    let urgent_at = std::time::Instant::now();
    q.enqueue_batch(&[
        NewJob::new("tagged")
            .payload(json!({"tag": "urgent"}))
            .priority(10),
        NewJob::new("tagged")
            .payload(json!({"tag": "overdue"}))
            .run_at(Utc::now() - chrono::Duration::hours(1)),
    ])
    .await
    .unwrap();
    let started = |tag: &str| {
        ran.lock()
            .unwrap()
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, at)| *at)
    };
    assert!(
        eventually(Duration::from_secs(30), || started("urgent").is_some()
            && started("overdue").is_some())
        .await
    );
    let backlog_left = 2000
        - ran
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == "backlog")
            .count();
    for tag in ["urgent", "overdue"] {
        let waited = started(tag).unwrap() - urgent_at;
        assert!(
            waited < Duration::from_secs(2),
            "{tag} waited {waited:?} behind the backlog"
        );
    }
    assert!(
        backlog_left > 500,
        "the backlog was nearly done ({backlog_left} left): the test proves nothing"
    );
    // The lower priority runs last, once the position's priority runs out.
    assert!(eventually(Duration::from_secs(60), || started("low").is_some()).await);
    let order: Vec<String> = ran.lock().unwrap().iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(order.last().map(String::as_str), Some("low"));
    w.stop().await;
    assert_eq!(db.count("status = 'succeeded'"), 2003);
}
