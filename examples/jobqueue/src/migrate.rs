//! Schema migrations, embedded in the binary.
//!
//! `jobqueue migrate` may run from several pods at once (a Helm hook Job
//! retried, two releases, an init container per replica). Every run takes a
//! session-level `pg_advisory_lock` first, so runs serialise; each migration
//! is applied in its own transaction together with its row in
//! `jobqueue_migrations`, so a crash leaves either all or none of it.

use tokio_postgres::Client;

/// Advisory lock key for migrations ("jobqmigr" in ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x6a6f_6271_6d69_6772;

/// (version, name, SQL). Append only: never edit an applied migration.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "jobs table, claim index, notify trigger",
        r#"
CREATE TABLE jobs (
    id               bigserial PRIMARY KEY,
    queue            text        NOT NULL DEFAULT 'default',
    kind             text        NOT NULL,
    payload          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status           text        NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'dead', 'cancelled')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer     NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    priority         integer     NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    last_error       text,
    -- Fencing token of the current lease: every write by a worker compares it,
    -- so a worker whose lease expired (and whose job was re-claimed) can no
    -- longer complete, fail or extend that job.
    lease_token      bigint,
    lease_expires_at timestamptz,
    locked_by        text,
    idempotency_key  text
);

-- Claim order: highest priority first, then oldest run_at, then id.
CREATE INDEX jobs_claim_idx ON jobs (queue, priority DESC, run_at, id) WHERE status = 'queued';
-- Reaper: expired leases.
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE status = 'running';
-- Reaper: retention of finished jobs. BRIN, not B-tree: finished rows are
-- appended in finishing order, and a BRIN costs next to nothing on the hot
-- completion path (a B-tree insert per completed job would).
CREATE INDEX jobs_finished_idx ON jobs USING brin (finished_at) WITH (autosummarize = on);
CREATE UNIQUE INDEX jobs_idempotency_key_idx ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Wake idle workers when jobs are inserted, whoever inserts them (API,
-- library, plain SQL). One notification per queue per statement, not per
-- row: a 10,000-row batch costs one NOTIFY.
CREATE FUNCTION jobqueue_notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobqueue', q.queue)
    FROM (SELECT DISTINCT queue FROM new_rows WHERE status = 'queued') AS q;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobqueue_notify_insert();

-- The table churns (every job is inserted, updated twice, deleted): vacuum
-- it eagerly so the claim index stays small.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
                      autovacuum_analyze_scale_factor = 0.02);
"#,
    ),
    (
        2,
        "cheaper enqueue: notify without a transition table, partial BRIN",
        r#"
-- Measured with examples that alternate statements between two databases
-- (so machine noise cancels out): 1000-job batch inserts went from 99,500
-- to 118,800 jobs/s with both changes below.
--
-- 1. The insert trigger of migration 1 captured every new row in a
--    transition table to send one NOTIFY per distinct queue: ~10 % of a
--    batch insert. It now sends one NOTIFY with an empty payload per
--    statement, which every idle worker takes as "check your queues" (one
--    index probe each). Workers of the inserted queue woke anyway; workers
--    of other queues now wake too, and find nothing.
DROP TRIGGER jobs_notify_insert ON jobs;
DROP FUNCTION jobqueue_notify_insert();
CREATE FUNCTION jobqueue_notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobqueue', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobqueue_notify_insert();

-- 2. The retention BRIN indexed every row, so every insert and every claim
--    paid a BRIN update for a NULL `finished_at` (~7 % of an insert). Only
--    finished rows matter to the reaper's `finished_at < cutoff`, which
--    implies this predicate.
DROP INDEX jobs_finished_idx;
CREATE INDEX jobs_finished_idx ON jobs USING brin (finished_at) WITH (autosummarize = on)
    WHERE finished_at IS NOT NULL;
"#,
    ),
    (
        3,
        "groups, timeouts, output, progress, expiring uniqueness, paused queues",
        r#"
-- Every new column is nullable without a default: adding it rewrites
-- nothing, and a job that does not use a feature stores nothing for it.
ALTER TABLE jobs
    ADD COLUMN group_key       text,
    ADD COLUMN timeout_seconds integer CHECK (timeout_seconds BETWEEN 1 AND 604800),
    ADD COLUMN output          jsonb,
    ADD COLUMN progress        jsonb,
    ADD COLUMN started_at      timestamptz,
    -- The statuses in which the idempotency key is unique (NULL: all of
    -- them, forever, as before), and until when (NULL: no end).
    ADD COLUMN unique_states   text[],
    ADD COLUMN unique_until    timestamptz;

-- The fast claim path takes ungrouped jobs only; grouped jobs are claimed
-- under a per-group lock that counts what runs (worker/group_fetcher.rs).
DROP INDEX jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued' AND group_key IS NULL;
CREATE INDEX jobs_group_claim_idx ON jobs (group_key, queue, priority DESC, run_at, id)
    WHERE status = 'queued' AND group_key IS NOT NULL;
CREATE INDEX jobs_group_running_idx ON jobs (group_key)
    WHERE status = 'running' AND group_key IS NOT NULL;

-- An idempotency key is unique among the jobs whose status is one of their
-- unique_states (all statuses when NULL). The index follows every status
-- change by itself: a finished job leaves it when `queued`/`running` was
-- all it asked for.
DROP INDEX jobs_idempotency_key_idx;
CREATE UNIQUE INDEX jobs_idempotency_key_idx ON jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND (unique_states IS NULL OR status = ANY (unique_states));

-- Wake the workers' group fetchers (payload 'group') when a grouped job is
-- inserted, and when one leaves `running` (a place in its group is free).
-- Row triggers whose WHEN clause is false for ungrouped jobs cost those
-- nothing but the test, and ungrouped inserts do not wake group fetchers
-- (the statement trigger's '' wakes only the fetchers). PostgreSQL sends
-- one notification per transaction for equal payloads.
CREATE FUNCTION jobqueue_notify_group() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobqueue', 'group');
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_group AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (OLD.group_key IS NOT NULL AND OLD.status = 'running' AND NEW.status <> 'running')
    EXECUTE FUNCTION jobqueue_notify_group();
CREATE TRIGGER jobs_notify_group_insert AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.group_key IS NOT NULL AND NEW.status = 'queued')
    EXECUTE FUNCTION jobqueue_notify_group();

-- Paused queues: claims skip them (the claim statements test this table).
CREATE TABLE jobqueue_paused_queues (
    queue     text PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);
"#,
    ),
    (
        4,
        "schedules",
        r#"
-- Cron schedules (examples/jobqueue/README.md, "Schedules"). The reaper's
-- leader locks due rows (next_fire_at <= now(), FOR UPDATE SKIP LOCKED),
-- inserts the job for the latest due fire time and moves next_fire_at past
-- now() in one transaction: each fire time is enqueued once.
CREATE TABLE jobqueue_schedules (
    name         text        PRIMARY KEY,
    cron         text        NOT NULL,
    timezone     text        NOT NULL DEFAULT 'UTC',
    -- {"kind","payload","queue","priority","max_attempts"}
    job          jsonb       NOT NULL,
    next_fire_at timestamptz NOT NULL,
    last_fire_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobqueue_schedules_due_idx ON jobqueue_schedules (next_fire_at);
"#,
    ),
    (
        5,
        "group wake-ups sent by the code, not by row triggers",
        r#"
-- Migration 3's row triggers cost every job, grouped or not: an AFTER
-- UPDATE row trigger makes PostgreSQL fetch the old row version of every
-- updated row to test the WHEN clause, and every job is updated twice
-- (claim, completion). Measured with pgbench (one client, databases
-- alternating, a claim of 12 jobs plus their completion per transaction,
-- against migration 2's schema): 0.92x with the triggers, 1.02x without
-- them and the group indexes, and the group indexes alone 1.00x (within
-- the noise). The code that queues a grouped job or frees a group's place now
-- sends NOTIFY jobqueue, 'group' itself (examples/jobqueue/src/queue/mod.rs,
-- notify_group); the group fetchers' poll covers anything else.
DROP TRIGGER jobs_notify_group ON jobs;
DROP TRIGGER jobs_notify_group_insert ON jobs;
DROP FUNCTION jobqueue_notify_group();
"#,
    ),
    (
        6,
        "unused features cost less: one group index, key released by the enqueue",
        r#"
-- Jobs that use no feature still paid for migration 3's schema on every
-- UPDATE statement: PostgreSQL prepares each partial index predicate (and
-- parses and prepares each CHECK constraint) of the table once per
-- statement, and tests them on every new row version. Counted with
-- bench/jobqueue/claim-sql-instructions.sh (CPU instructions under
-- callgrind, repeating to 0.02 %; the worker's store-and-claim statement at
-- concurrency 24): the two group indexes cost 1.7 % of the base schema's
-- instructions, the status test in the idempotency index 0.9 %.
--
-- 1. Not done: moving the timeout_seconds range from its CHECK into a
--    domain (checked only on assignment) would save another 1.6 %, but it
--    changes the column's type, and PostgreSQL then fails every statement
--    prepared before the migration that returns the column ("cached plan
--    must not change result type"): workers and API replicas still
--    running during an upgrade would stop claiming and answering. The
--    pod test serial_pod_worker_drain_loses_no_jobs caught it when a
--    worker prepared its claim between two migrations.

-- 2. One group index instead of two. Status comes second: a group's running
--    jobs (counted under the group lock) and its queued ones (claimed) are
--    each one range; `group_key IS NOT NULL` comes first in the predicate
--    so that an ungrouped row fails it at the first test. Finished jobs
--    are not in it, so finding the groups with queued jobs never walks
--    past the history.
CREATE INDEX jobs_group_idx ON jobs (group_key, status, queue, priority DESC, run_at, id)
    WHERE group_key IS NOT NULL AND status IN ('queued', 'running');
DROP INDEX jobs_group_claim_idx;
DROP INDEX jobs_group_running_idx;

-- 3. The idempotency index goes back to migration 1's predicate: at most
--    one job holds a key, and an enqueue releases it from a holder outside
--    its unique_states or past its unique_until (queue/enqueue.rs). With
--    the status in the predicate (migration 3) every UPDATE prepared and
--    tested it (0.9 %), and a job coming back into a unique status (a
--    retry, the reaper) while a newer job held its key failed with a
--    unique violation. Before the index is built, keys held twice keep
--    only the holder the old index counted.
UPDATE jobs AS j SET idempotency_key = NULL
WHERE j.idempotency_key IS NOT NULL
  AND NOT (j.unique_states IS NULL OR j.status = ANY (j.unique_states))
  AND EXISTS (SELECT FROM jobs AS o WHERE o.idempotency_key = j.idempotency_key AND o.id <> j.id);
DROP INDEX jobs_idempotency_key_idx;
CREATE UNIQUE INDEX jobs_idempotency_key_idx ON jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- 4. (No DDL.) The ungrouped claims no longer write started_at: a running
--    job's start is its updated_at, which nothing changes while it runs
--    (progress reports leave it alone), and the statement that ends an
--    attempt copies it into started_at. A running row stays as narrow as
--    before the features: writing started_at at the claim cost 2.1 % of
--    the instructions (mostly new heap pages for the wider rows), the copy
--    costs 0.5 %.
"#,
    ),
    (
        7,
        "the timeout range tested by a function",
        r#"
-- PostgreSQL rebuilds every CHECK constraint of a table from its stored
-- text on each statement that writes it (reads the node tree, simplifies
-- it, compiles it), whatever columns the statement sets. Migration 3's
-- `timeout_seconds BETWEEN 1 AND 604800` is a tree of five nodes, paid by
-- every claim and every completion of every job; a call of a STRICT
-- function on the column is two, and the function never runs for a NULL
-- (a job without a timeout). Counted with
-- bench/jobqueue/claim-sql-instructions.sh: the store-and-claim statement
-- goes from +5.6 % to +4.5 % of the base schema's instructions (dropping
-- the constraint altogether: +3.9 %). PL/pgSQL, not SQL: a SQL function
-- would be inlined, its body parsed again on every statement.
--
-- Same name, same range, same error (SQLSTATE 23514) for plain SQL that
-- writes a bad value; the API and the library refuse it before that
-- (job.rs, MAX_TIMEOUT_SECONDS; a test holds the two together). The
-- column keeps its type, so statements prepared before this migration by
-- replicas still running stay valid (see migration 6, 1.). Adding the
-- constraint checks the existing rows under the table's lock: 0.3 s for
-- 2,000,000 jobs, 200,000 of them with a timeout.
CREATE FUNCTION jobqueue_timeout_seconds_valid(seconds integer) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $fn$ BEGIN RETURN seconds BETWEEN 1 AND 604800; END $fn$;
ALTER TABLE jobs
    DROP CONSTRAINT jobs_timeout_seconds_check,
    ADD CONSTRAINT jobs_timeout_seconds_check CHECK (jobqueue_timeout_seconds_valid(timeout_seconds));
"#,
    ),
    (
        8,
        "successes as heap-only updates",
        r#"
-- A success used to add a new row version elsewhere in the table plus a
-- primary-key entry: PostgreSQL stores an update as heap-only (HOT, no
-- index entry) only when no column an index refers to (key or predicate)
-- changes, and a success changed `status` (in the claim, lease and group
-- indexes' predicates), `lease_expires_at` (the lease index's key) and
-- `finished_at` (the retention BRIN; BRIN blocks HOT before PostgreSQL
-- 16). Index maintenance was a third of PostgreSQL's CPU per job. After
-- this migration no index refers to a column that the success of an
-- ungrouped job changes
-- (examples/jobqueue/README.md, "Successes are heap-only updates", has the
-- figures):
--
-- * the claim index is partial on `lease_expires_at IS NULL` (with
--   `group_key IS NULL`): a queued job has no lease time, and every job
--   that left `queued` has one (below);
-- * the group index leaves out finished jobs by `group_done` (a new
--   column, true once a grouped job finished, NULL otherwise), which a
--   success of an ungrouped job leaves NULL; a group's running and queued
--   jobs are told apart by the lease time, its second key;
-- * a success keeps the lease time it held. The lease index holds every
--   job that ever left `queued`, so it no longer tells a running job from
--   a finished one: the reaper reads the leases that expired since its
--   last pass (reaper.rs), and the finished rows' lease times serve
--   retention in place of the BRIN. The statements that finish a job
--   without a lease (cancel while queued, dead) set it to the moment it
--   finished;
-- * fillfactor 30: room in each page for a row's queued, running and
--   finished versions, so the success finds space next to the claim's
--   version (at 50 a third of successes found it, at 100 one in a
--   hundred).
--
-- Why not generated columns (`is_queued` computed from `status`), which
-- would hold the indexes to the status whoever writes: PostgreSQL 15
-- computes every stored generated column of a row on every UPDATE, and
-- builds the row a second time to do it: 8 % of PostgreSQL's CPU per job
-- at concurrency 2048 (perf). The code keeps `lease_expires_at` and
-- `group_done` right instead (`lease_expires_at IS NULL` exactly when
-- `status = 'queued'`), the claims still test the status, and the
-- reaper's hourly sweep repairs rows that other writers (plain SQL, a
-- release before this one during a rolling upgrade) left inconsistent
-- (queue/repair_lease_times.rs).
DROP INDEX jobs_claim_idx;
DROP INDEX jobs_lease_idx;
DROP INDEX jobs_group_idx;
DROP INDEX jobs_finished_idx;
ALTER TABLE jobs ADD COLUMN group_done boolean;
-- One rewrite of the table gives every finished row its lease time and
-- every finished grouped row its `group_done`: an UPDATE would leave a
-- dead version of each behind. The columns keep their types: statements
-- prepared before the migration stay valid.
ALTER TABLE jobs
    ALTER COLUMN lease_expires_at TYPE timestamptz USING (CASE
        WHEN status = 'queued' THEN NULL
        WHEN status = 'running' THEN lease_expires_at
        ELSE coalesce(lease_expires_at, finished_at, updated_at) END),
    ALTER COLUMN group_done TYPE boolean USING (CASE
        WHEN group_key IS NOT NULL AND status NOT IN ('queued', 'running') THEN true END);
-- The rewrite packed the rows kept; pages filled from now on keep room.
ALTER TABLE jobs SET (fillfactor = 30);
CREATE INDEX jobs_claim_idx ON jobs (queue, priority DESC, run_at, id)
    WHERE lease_expires_at IS NULL AND group_key IS NULL;
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
CREATE INDEX jobs_group_idx ON jobs (group_key, lease_expires_at, queue, priority DESC, run_at, id)
    WHERE group_key IS NOT NULL AND group_done IS NULL;
"#,
    ),
];

/// The newest schema version this binary knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0)
}

/// Applies every pending migration. Returns the versions applied by this
/// call (empty when the schema was already current).
pub async fn run(client: &mut Client) -> crate::error::Result<Vec<i32>> {
    run_until(client, latest_version()).await
}

/// Applies the pending migrations up to version `last`: what a database
/// that an older release migrated holds (the upgrade tests start there).
pub async fn run_until(client: &mut Client, last: i32) -> crate::error::Result<Vec<i32>> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let result = apply_pending(client, last).await;
    // Unlock even on failure; if the connection itself died, the server
    // released the session lock already.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    result
}

async fn apply_pending(client: &mut Client, last: i32) -> crate::error::Result<Vec<i32>> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS jobqueue_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let applied: Vec<i32> = client
        .query("SELECT version FROM jobqueue_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut done = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) || *version > last {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql)
            .await
            .map_err(|e| crate::Error::Migration {
                version: *version,
                name: name.to_string(),
                cause: crate::DbFailure::from_pg(&e),
            })?;
        tx.execute(
            "INSERT INTO jobqueue_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "migration applied");
        done.push(*version);
    }
    Ok(done)
}

/// The schema version in the database (0 when never migrated).
pub async fn current_version(client: &Client) -> crate::error::Result<i32> {
    let exists: bool = client
        .query_one("SELECT to_regclass('jobqueue_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM jobqueue_migrations", &[])
        .await?
        .get(0);
    Ok(v.unwrap_or(0))
}
