#!/usr/bin/env bash
# bench/jobqueue/hot-success-pages.sh: the heap pages that 50,000 processed
# jobs leave, today's schema against hot-success-experiment.patch's
# (successes as heap-only updates, fillfactor 30), as the retained history
# grows. Plain SQL, CYCLES times: 50 inserts of 1,000 jobs, 98 rounds of
# the worker's claim of 512 and the success statement of each side (as
# the patch writes it), then VACUUM (which frees the dead versions' room
# for the next cycle). Prints, per side and cycle, the finished jobs kept,
# the updates stored as HOT and the heap's pages. Not a test. Needs a
# binary from before migration 8 (b4c5fa7 or earlier), which shipped the
# experiment's schema.
#
# Env: CYCLES [3], BENCH_PG_URL [postgres://postgres@127.0.0.1:5432] (creates and drops
# the database bench_jq_pages), JOBQUEUE_BIN [target/release/jobqueue, for
# `jobqueue migrate`].
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PG=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
BIN=${JOBQUEUE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/jobqueue}
DB=bench_jq_pages
CYCLES=${CYCLES:-3}
[ -x "$BIN" ] || { echo "no jobqueue binary at $BIN (cargo build --release -p jobqueue)" >&2; exit 2; }
trap 'psql "$PG/postgres" -qX -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT
for side in today hot; do
  psql "$PG/postgres" -qX -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null 2>&1
  DATABASE_URL="$PG/$DB" "$BIN" migrate >/dev/null
  if [ "$(psql "$PG/$DB" -AtX -c 'SELECT max(version) FROM jobqueue_migrations')" -ge 8 ]; then
    echo "this compares the schema before migration 8 with the experiment's; since" >&2
    echo "migration 8 ships the experiment's fillfactor and HOT successes, run it with" >&2
    echo "JOBQUEUE_BIN built at b4c5fa7 or earlier" >&2
    exit 2
  fi
  if [ "$side" = hot ]; then
    psql "$PG/$DB" -qX -v ON_ERROR_STOP=1 -c "DROP INDEX jobs_finished_idx" -c "ALTER TABLE jobs SET (fillfactor = 30)"
    success="finished_at = now(), updated_at = now(), started_at = j.updated_at, lease_token = NULL, locked_by = NULL"
  else
    success="status = 'succeeded', finished_at = now(), updated_at = now(), started_at = j.updated_at, lease_token = NULL, lease_expires_at = NULL, locked_by = NULL"
  fi
  for cycle in $(seq 1 "$CYCLES"); do
    {
      for _ in $(seq 1 50); do
        echo "INSERT INTO jobs (kind, payload) SELECT 'noop', '{}' FROM generate_series(1, 1000);"
      done
      for i in $(seq $((cycle * 1000 + 1)) $((cycle * 1000 + 98))); do
        echo "UPDATE jobs AS j SET status = 'running', attempts = j.attempts + 1, lease_token = $i,
                lease_expires_at = now() + interval '30 s', locked_by = 'worker-0123456789abcdef', updated_at = now()
              WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM jobs WHERE status = 'queued' AND group_key IS NULL
                AND queue = 'default' AND run_at <= now() ORDER BY priority DESC, run_at, id LIMIT 512 FOR UPDATE SKIP LOCKED));"
        echo "UPDATE jobs AS j SET $success WHERE j.lease_token = $i AND j.status = 'running' AND j.finished_at IS NULL;"
      done
      echo "VACUUM jobs;"
    } | psql "$PG/$DB" -qX -v ON_ERROR_STOP=1 >/dev/null
    psql "$PG/$DB" -AtX -F ' ' -c "SELECT '$side, cycle $cycle: finished jobs kept', count(*) FILTER (WHERE finished_at IS NOT NULL),
        '| HOT updates', (SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'jobs'),
        '| heap pages after VACUUM', pg_relation_size('jobs') / 8192 FROM jobs"
  done
done
