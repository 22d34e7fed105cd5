//! Successes as heap-only updates (migration 8) and what that asks of the
//! reaper, against a real PostgreSQL: no index refers to a column a
//! success writes, successes are HOT, the reaper reads a window of leases
//! and a new leader sweeps them all, retention finds finished jobs by
//! their lease time, and a database of migration 7 upgrades in place.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use jobqueue::queue::Failure;
use jobqueue::{NewJob, Reaper, ReaperOptions, Registry, Worker, WorkerOptions};

use common::{eventually, Db};

fn reaper(db: &Db, retention: Option<Duration>) -> Reaper {
    Reaper::new(
        &db.url,
        ReaperOptions {
            interval: Duration::from_secs(60),
            depth_interval: Duration::from_secs(60),
            retention,
        },
    )
    .unwrap()
}

/// Claims up to `limit` ungrouped jobs of queue `default` (30 s lease).
async fn claim(q: &jobqueue::Queue, limit: usize) -> Vec<jobqueue::queue::ClaimedJob> {
    q.claim(
        &["default".to_string()],
        limit,
        Duration::from_secs(30),
        "w",
    )
    .await
    .unwrap()
}

/// Claims up to 10 grouped jobs of queue `default`, at most `group_limit`
/// running per group; returns their ids.
async fn claim_grouped(q: &jobqueue::Queue, group_limit: usize) -> Vec<i64> {
    q.claim_grouped(
        &["default".to_string()],
        10,
        group_limit,
        "",
        Duration::from_secs(30),
        "w",
    )
    .await
    .unwrap()
    .jobs
    .iter()
    .map(|j| j.id)
    .collect()
}

/// The columns an `UPDATE … SET a = …, b = … FROM` statement writes.
fn columns_set(sql: &str) -> BTreeSet<String> {
    let sql = sql
        .lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let set = sql
        .split(" SET ")
        .nth(1)
        .unwrap()
        .split(" FROM ")
        .next()
        .unwrap();
    set.split(',')
        .filter_map(|part| {
            part.split_once('=')
                .map(|(name, _)| name.trim().to_string())
        })
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

/// Every column of `jobs` that an index refers to, by key or predicate.
fn indexed_columns(db: &Db) -> BTreeSet<String> {
    db.sql(
        "SELECT string_agg(DISTINCT a.attname, ',')
         FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum > 0
         WHERE i.indrelid = 'jobs'::regclass
           AND (a.attnum = ANY (i.indkey)
                OR pg_get_expr(i.indpred, i.indrelid) ~ ('\\m' || a.attname || '\\M'))",
    )
    .split(',')
    .map(str::to_string)
    .collect()
}

/// What PostgreSQL counted for `jobs`: (updates, heap-only updates). The
/// counters reach the statistics a moment after the transactions end.
async fn updates_counted(db: &Db, at_least: i64) -> (i64, i64) {
    let read = || {
        let row = db.sql(
            "SELECT n_tup_upd || ',' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'jobs'",
        );
        let (all, hot) = row.split_once(',').unwrap();
        (all.parse::<i64>().unwrap(), hot.parse::<i64>().unwrap())
    };
    eventually(Duration::from_secs(15), || read().0 >= at_least).await;
    read()
}

/// The worker's success statements (store by address, store-and-claim)
/// write no column an index refers to, but `group_done`, which stays NULL
/// for an ungrouped job: PostgreSQL can store its success as a heap-only
/// update. A new index on a column a success writes, or a success that
/// starts writing an indexed column, fails here.
#[tokio::test]
async fn no_index_refers_to_a_column_a_success_writes() {
    let db = Db::start().await;
    let indexed = indexed_columns(&db);
    assert!(
        indexed.contains("group_done") && indexed.contains("lease_expires_at"),
        "{indexed:?}"
    );
    let success = columns_set(jobqueue::queue::COMPLETE_AT_SQL);
    for column in ["status", "finished_at", "lease_token", "updated_at"] {
        assert!(success.contains(column), "{column} not in {success:?}");
    }
    assert!(!success.contains("lease_expires_at"), "{success:?}");
    let store_and_claim = jobqueue::queue::store_and_claim_by_address_sql(false, false);
    let stored = store_and_claim.split("claimed AS").next().unwrap();
    assert_eq!(columns_set(stored), success);
    // One indexed column is written, and only for a grouped job: an
    // ungrouped one's `group_done` stays NULL, which PostgreSQL counts as
    // unchanged.
    let both: BTreeSet<String> = indexed.intersection(&success).cloned().collect();
    assert_eq!(
        both,
        BTreeSet::from(["group_done".to_string()]),
        "indexed and written by a success"
    );
    let sql = jobqueue::queue::COMPLETE_AT_SQL
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        sql.contains("group_done = CASE WHEN j.group_key IS NOT NULL THEN true END"),
        "{sql}"
    );
}

/// 3,000 no-op jobs through a real worker: nearly every success is a
/// heap-only update (the claims cannot be: they take the job out of the
/// claim index). Before migration 8, none was.
#[tokio::test]
async fn successes_are_heap_only_updates() {
    let db = Db::start().await;
    let q = db.queue();
    let jobs: Vec<NewJob> = (0..3000).map(|_| NewJob::new("noop")).collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let worker = Worker::new(
        &db.url,
        Registry::with_builtins(),
        WorkerOptions {
            concurrency: 64,
            ..Default::default()
        },
    )
    .unwrap();
    let (stop, shutdown) = jobqueue::shutdown::Shutdown::manual();
    let running = tokio::spawn(worker.run(shutdown));
    assert!(
        eventually(Duration::from_secs(60), || db.count("status = 'succeeded'")
            == 3000)
        .await,
        "{} of 3000 succeeded",
        db.count("status = 'succeeded'")
    );
    let _ = stop.send(true);
    running.await.unwrap().unwrap();
    let (updates, hot) = updates_counted(&db, 6000).await;
    assert!(
        updates >= 6000,
        "{updates} updates counted for 3000 claims and successes"
    );
    assert!(
        hot >= 2700,
        "{hot} of {updates} updates heap-only, for 3000 successes"
    );
    // A success keeps the lease time it held (retention reads it).
    assert_eq!(
        db.count("status = 'succeeded' AND lease_expires_at IS NULL"),
        0
    );
}

/// A claim whose statement began before a reaper pass, with a lease that
/// ran out before the pass, but that committed after it (the pass could
/// not see it): the next pass, whose window reaches back past the start
/// of the previous one, re-queues it.
#[tokio::test]
async fn a_claim_that_commits_after_a_pass_with_its_lease_past_is_reaped_by_the_next() {
    let db = Db::start().await;
    let q = db.queue();
    let id = q.enqueue(&NewJob::new("noop")).await.unwrap().0.id;
    let reaper = reaper(&db, None);
    reaper.reap_once().await; // the leader's first pass: a full sweep
    let client = jobqueue::db::connect(&db.url).await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "UPDATE jobs SET status = 'running', attempts = 1, lease_token = 7,
                 lease_expires_at = now() + interval '1 second', locked_by = 'slow'
             WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // the lease runs out
    reaper.reap_once().await;
    client.batch_execute("COMMIT").await.unwrap();
    assert!(
        db.has_status(id, "running"),
        "the pass saw a claim that had not committed"
    );
    reaper.reap_once().await;
    assert!(
        db.has_status(id, "queued"),
        "the next pass missed the late claim"
    );
    assert_eq!(
        db.count(&format!(
            "id = {id} AND lease_expires_at IS NULL AND last_error LIKE 'lease expired%'"
        )),
        1
    );
}

/// A pass reads only the leases that expired since the previous pass (so
/// it does not walk the history kept); a lease further back (a claim in
/// flight for an hour, a row written by hand) waits for a full sweep,
/// which a new leader (a restarted or killed reaper's successor) does
/// first. The sweep also repairs rows whose lease time or `group_done`
/// disagrees with their status (an older release's writes during a
/// rolling upgrade, plain SQL).
#[tokio::test]
async fn a_pass_reads_its_window_and_a_new_leader_sweeps_them_all() {
    let db = Db::start().await;
    let first = reaper(&db, None);
    first.reap_once().await;
    let row = |status: &str, lease: &str, finished: &str| -> i64 {
        db.sql(&format!(
            "INSERT INTO jobs (kind, status, attempts, lease_token, lease_expires_at, finished_at)
             VALUES ('noop', '{status}', 1, 7, {lease}, {finished}) RETURNING id"
        ))
        .parse()
        .unwrap()
    };
    let long_ago = row("running", "now() - interval '1 hour'", "NULL");
    let just_now = row("running", "now() - interval '1 second'", "NULL");
    let no_lease = row("running", "NULL", "NULL");
    let old_success = row("succeeded", "NULL", "now() - interval '2 hours'");
    // Plain SQL that put a job back without clearing its lease time (the
    // claim index would never see it), and grouped rows whose group_done
    // disagrees with their status (one finished by an older release, one
    // put back by hand).
    let queued_leased = row("queued", "now() + interval '1 hour'", "NULL");
    let grouped = |status: &str, done: &str, finished: &str| -> i64 {
        db.sql(&format!(
            "INSERT INTO jobs (kind, status, group_key, group_done, lease_expires_at, finished_at)
             VALUES ('noop', '{status}', 'g', {done}, now(), {finished}) RETURNING id"
        ))
        .parse()
        .unwrap()
    };
    let grouped_finished = grouped("succeeded", "NULL", "now()");
    let grouped_back = grouped("queued", "true", "NULL");
    first.reap_once().await;
    assert!(
        db.has_status(just_now, "queued"),
        "the window missed a lease that just expired"
    );
    assert!(
        db.has_status(long_ago, "running"),
        "a window pass walked back an hour"
    );
    assert!(db.has_status(no_lease, "running"));

    let successor = reaper(&db, None);
    successor.reap_once().await;
    assert!(
        db.has_status(long_ago, "queued"),
        "the new leader's sweep missed it"
    );
    assert!(
        db.has_status(no_lease, "queued"),
        "a running row without a lease was left"
    );
    assert_eq!(
        db.count(&format!(
            "id = {old_success} AND lease_expires_at = finished_at AND status = 'succeeded'"
        )),
        1,
        "the sweep gives a finished row its finish time as lease time"
    );
    assert_eq!(
        db.count("(lease_expires_at IS NULL) <> (status = 'queued')"),
        0
    );
    assert_eq!(
        db.count(&format!("id = {grouped_finished} AND group_done")),
        1
    );
    assert_eq!(
        db.count(&format!("id = {grouped_back} AND group_done IS NULL")),
        1
    );
    // Both put-back jobs are claimable again, each by its own path.
    let q = db.queue();
    let plain = claim(&q, 10).await;
    let plain: BTreeSet<i64> = plain.iter().map(|j| j.id).collect();
    assert!(plain.contains(&queued_leased), "{plain:?}");
    assert_eq!(claim_grouped(&q, 5).await, vec![grouped_back]);
}

/// Retention deletes what finished before the cutoff, found by lease time:
/// a success (which keeps its lease), a job cancelled while queued and a
/// dead one (which get the time they finished), and a row an older
/// release finished without a lease time (repaired by the sweep). It
/// keeps queued and running jobs, and a success whose lease has not yet
/// passed the cutoff.
#[tokio::test]
async fn retention_deletes_finished_jobs_by_their_lease_time() {
    let db = Db::start().await;
    let q = db.queue();
    let ids = q
        .enqueue_batch(&(0..5).map(|_| NewJob::new("noop")).collect::<Vec<_>>())
        .await
        .unwrap();
    let held = claim(&q, 3).await;
    let (succeeded, dead, running) = (&held[0], &held[1], &held[2]);
    q.complete(&[(succeeded.id, succeeded.lease_token)])
        .await
        .unwrap();
    q.fail(&[Failure {
        id: dead.id,
        lease_token: dead.lease_token,
        error: "boom".into(),
        retry_in: Duration::ZERO,
        permanent: true,
    }])
    .await
    .unwrap();
    let queued: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| !held.iter().any(|h| h.id == *id))
        .collect();
    let cancelled = queued[0];
    let still_queued = queued[1];
    q.cancel(cancelled).await.unwrap();
    assert_eq!(
        db.count("(lease_expires_at IS NULL) <> (status = 'queued')"),
        0
    );
    let lease_later = db
        .sql(
            "INSERT INTO jobs (kind, status, attempts, lease_expires_at, finished_at)
             VALUES ('noop', 'succeeded', 1, now() - interval '30 minutes', now() - interval '2 hours')
             RETURNING id",
        )
        .parse::<i64>()
        .unwrap();
    let no_lease = db
        .sql(
            "INSERT INTO jobs (kind, status, attempts, finished_at)
             VALUES ('noop', 'succeeded', 1, now() - interval '2 hours') RETURNING id",
        )
        .parse::<i64>()
        .unwrap();
    // Two hours pass for everything that exists.
    db.sql(&format!(
        "UPDATE jobs SET finished_at = finished_at - interval '2 hours',
                         lease_expires_at = lease_expires_at - interval '2 hours',
                         run_at = run_at - interval '2 hours'
         WHERE id NOT IN ({lease_later}, {no_lease})"
    ));
    // The running job's lease ran out two hours ago: the pass re-queues it
    // before retention, which never takes an unfinished job.
    reaper(&db, Some(Duration::from_secs(3600)))
        .reap_once()
        .await;
    let left: BTreeSet<i64> = db
        .sql("SELECT string_agg(id::text, ',') FROM jobs")
        .split(',')
        .map(|id| id.parse().unwrap())
        .collect();
    let expected: BTreeSet<i64> = [still_queued, running.id, lease_later].into();
    assert_eq!(
        left, expected,
        "deleted: succeeded {}, dead {}, cancelled {cancelled}, no lease {no_lease}",
        succeeded.id, dead.id
    );
    assert!(db.has_status(running.id, "queued"));
}

/// A database at migration 7 with jobs in every state upgrades to 8 in
/// place: `group_done` is set for the finished grouped job, finished jobs get
/// their finish time as lease time, running ones keep theirs, the new
/// indexes are the ones the claims use, and a group's running job still
/// counts against its limit.
#[tokio::test]
async fn migrate_to_8_gives_finished_jobs_lease_times_and_claims_as_before() {
    let db = Db::start_empty().await;
    let mut client = jobqueue::db::connect(&db.url).await.unwrap();
    jobqueue::migrate::run_until(&mut client, 7).await.unwrap();
    db.sql(
        "INSERT INTO jobs (kind, status, group_key, attempts, lease_token, lease_expires_at, finished_at) VALUES
             ('noop', 'queued', NULL, 0, NULL, NULL, NULL),
             ('noop', 'queued', NULL, 0, NULL, NULL, NULL),
             ('noop', 'queued', 'g', 0, NULL, NULL, NULL),
             ('noop', 'queued', 'g', 0, NULL, NULL, NULL),
             ('noop', 'running', 'g', 1, 5, now() + interval '10 minutes', NULL),
             ('noop', 'running', NULL, 1, 6, now() + interval '10 minutes', NULL),
             ('noop', 'succeeded', NULL, 1, NULL, NULL, now() - interval '1 day'),
             ('noop', 'dead', 'g', 5, NULL, NULL, now() - interval '2 days'),
             ('noop', 'cancelled', NULL, 0, NULL, NULL, now() - interval '3 days')",
    );
    let running_lease = db.sql("SELECT string_agg(lease_expires_at::text, ',' ORDER BY id) FROM jobs WHERE status = 'running'");
    assert_eq!(jobqueue::migrate(&db.url).await.unwrap(), vec![8]);
    assert_eq!(db.count("group_done"), 1, "the dead grouped job");
    assert_eq!(db.count("group_key IS NOT NULL AND group_done IS NULL"), 3);
    assert_eq!(
        db.count("(lease_expires_at IS NULL) <> (status = 'queued')"),
        0
    );
    assert_eq!(
        db.count("status IN ('succeeded', 'dead', 'cancelled') AND lease_expires_at = finished_at"),
        3
    );
    assert_eq!(
        db.sql("SELECT string_agg(lease_expires_at::text, ',' ORDER BY id) FROM jobs WHERE status = 'running'"),
        running_lease
    );
    let options =
        db.sql("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'jobs'");
    assert!(options.contains("fillfactor=30"), "{options}");
    let claim_index = db.sql("SELECT pg_get_indexdef('jobs_claim_idx'::regclass)");
    assert!(
        claim_index.ends_with("WHERE ((lease_expires_at IS NULL) AND (group_key IS NULL))"),
        "{claim_index}"
    );

    let q = db.queue();
    assert_eq!(
        claim_grouped(&q, 2).await.len(),
        1,
        "group g runs one job of its limit of 2 already"
    );
    let plain = claim(&q, 10).await;
    assert_eq!(plain.len(), 2);
    q.complete(&[(plain[0].id, plain[0].lease_token)])
        .await
        .unwrap();
    assert_eq!(
        db.count("status = 'succeeded' AND lease_expires_at IS NOT NULL"),
        2
    );
}
